"""What a batch will do, decided before its first photo: every input file found (folders
walked in a stable order), each one's output name, and the --shard split of the inputs."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from stoic_cli.face.images import IMAGE_EXTENSIONS

# Outputs in these formats could not carry the provenance tag (or would lose colours): PNG instead.
RETAGGED_EXTENSIONS = {".bmp": ".png", ".gif": ".png"}


@dataclass
class Job:
    source: Path
    output: Path | None  # None for commands that write no image (detect)
    readable: bool = True  # False: found in a folder, but not an image stoic reads
    in_folder: bool = False  # found by walking a folder (not named by the user)
    key: str = ""  # what --shard splits on: the path below its folder, or the path as named
    extras: list[Path] = field(default_factory=list)  # other files it writes (sheets, strips), before `output`
    provenance: dict | None = None  # the tag its outputs carry; filled in by run_jobs


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand_inputs(inputs: Iterable[str | Path], recursive: bool = False) -> list[tuple[Path, Path | None]]:
    """(file, the folder it was found under or None) for every file, in a stable order. Hidden
    files are left out (stoic's own temporaries among them); a file reached twice by the same
    path counts once, a symlink and its target are two inputs."""
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file() and not f.name.startswith(".")
                           and not any(part.startswith(".") for part in f.relative_to(p).parts[:-1]))
            found.extend((f, p) for f in files)
        else:
            found.append((p, None))
    seen, unique = set(), []
    for f, root in found:
        key = os.path.normpath(os.path.abspath(f))
        if key not in seen:
            seen.add(key)
            unique.append((f, root))
    return unique


def output_path(source: Path, root: Path | None, out_dir: Path | None, suffix: str,
                ext: str | None = None) -> Path:
    ext = ext or source.suffix or ".png"
    ext = RETAGGED_EXTENSIONS.get(ext.lower(), ext)
    name = f"{source.stem}_{suffix}{ext}"
    if out_dir is None:
        return source.with_name(name)
    if root is not None:
        rel = source.parent.relative_to(root)
        return out_dir / rel / name
    return out_dir / name


def plan_jobs(inputs: Iterable[str | Path], suffix: str | None, out_dir: str | Path | None = None,
              recursive: bool = False) -> list[Job]:
    out = Path(out_dir) if out_dir else None
    jobs = []
    for f, root in expand_inputs(inputs, recursive):
        readable = root is None or is_image(f)  # a file the user names is always tried
        key = f.relative_to(root).as_posix() if root is not None else f.as_posix()
        jobs.append(Job(f, output_path(f, root, out, suffix) if suffix else None, readable,
                        in_folder=root is not None, key=key))
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" (1 <= K <= N) -> (K, N); ValueError otherwise."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/8")
    return k, n


def shard(jobs: list[Job], k: int, n: int) -> list[Job]:
    """The K-th of N disjoint parts of the planned inputs. An input's part depends only on its
    key (its path below the folder given), never on the listing's order or on the machine, so
    N schedulers' jobs cover every input once and their reports concatenate into the whole."""
    if n == 1:
        return jobs
    part = lambda job: int.from_bytes(hashlib.sha256(job.key.encode()).digest()[:8], "big") % n
    return [j for j in jobs if part(j) == k - 1]
