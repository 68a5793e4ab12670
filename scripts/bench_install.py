"""Size of a CPU install of stoic (issue #24's target: <= 500 MB; a benchmark, not a test).

Makes a fresh virtual environment, runs `pip install REPO` (base dependencies only, from the
package registry), and prints what that install added: site-packages less what every venv
brings (pip, setuptools), plus the models under share/stoic; the largest packages; and
whether torch or OpenCV came along (they must not).

    python scripts/bench_install.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_OWN = ("pip", "setuptools", "pkg_resources", "_distutils_hack")


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file() and not f.is_symlink()]
    return sum(f.stat().st_size for f in files) / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Build the venv here and keep it.")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        venv = opts.keep or Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True)
        site = next((venv / "lib").glob("python3*/site-packages"))
        entries = {p.name: size_mb(p) for p in site.iterdir()}
        own = sum(v for k, v in entries.items() if k.split("-")[0] in VENV_OWN)
        models = size_mb(venv / "share" / "stoic") if (venv / "share" / "stoic").exists() else 0.0
        added = sum(entries.values()) - own
        print(f"{'largest entries in site-packages':40} {'MB':>8}")
        for name, mb in sorted(entries.items(), key=lambda kv: -kv[1])[:8]:
            print(f"{name:40} {mb:8.1f}")
        print(f"{'site-packages (less pip, setuptools)':40} {added:8.1f}")
        print(f"{'models (share/stoic)':40} {models:8.1f}")
        print(f"{'the install':40} {added + models:8.1f}   (target <= 500)")
        heavy = [k for k in entries if k.split("-")[0].lower() in ("torch", "cv2", "opencv_python_headless")]
        print("torch / OpenCV installed:", ", ".join(heavy) or "none")


if __name__ == "__main__":
    main()
