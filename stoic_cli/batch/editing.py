"""The editing job, outside any command line: what one photo's edit writes (the photo and its
optional input | output sheet and strip), the provenance tag its outputs carry, and the work
itself. `stoic neutralize|transfer|edit` run it in one process (stoic_cli.batch.run_jobs), the
Ray actors of stoic_cli.batch.cluster run the very same object, so both write the same bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stoic_cli.batch.planning import Job
from stoic_cli.batch.runner import file_digest
from stoic_cli.edit.edits import Edit, Reference


def extras_for(output: Path, compare: bool, steps: int, gif: bool) -> list[Path]:
    """The other files an editing job writes, named after its output so that two inputs never
    share one (me.jpg and me.png give me_neutral_compare.jpg and me_neutral_compare.png)."""
    extras = []
    if compare:
        extras.append(output.with_name(f"{output.stem}_compare{output.suffix}"))
    if steps:
        extras.append(output.with_name(f"{output.stem}_strip{'.gif' if gif else output.suffix}"))
    return extras


def provenance_for(pipe, edit: Edit):
    """The tag every output of this run carries: that stoic edited it, how, with which models,
    and from which input (by content, so a rerun recognises its own results). Called with None:
    the part shared by every input."""
    from stoic_cli import __version__

    base = {"software": f"stoic {__version__}", "command": edit.name, "settings": edit.describe(),
            "models": dict(pipe.models.settings.models)}
    return lambda job: {**base, "input": job.source.name, "input_sha256": file_digest(job.source)} if job else base


def reference_source(path: Path) -> str:
    """How a transfer's outputs name their reference: its file name and content digest (no
    folder, so a run on another machine or mount tags its outputs the same)."""
    return f"{path.name} sha256:{file_digest(path)}"


def read_reference(pipe, path: Path) -> Reference:
    """The transfer reference in the photo at `path`; raises ImageError or NoFaceError."""
    from stoic_cli.face.images import load_photo

    return pipe.read_reference(load_photo(path), source=reference_source(path))


def strip_frames(pipe, photo, faces, edit: Edit, steps: int) -> list:
    """The first face from no change to the full edit, cut from the edited photo at the photo's
    own resolution (the aligned crop's square), one frame per step."""
    from stoic_cli.face.alignment import alignment_matrix, crop_region

    x0, y0, x1, y1 = crop_region(alignment_matrix(faces[0].landmarks, pipe.render_size), pipe.render_size,
                                 photo.rgb.shape[:2])
    return [pipe.apply(photo, faces[:1], edit.scaled(float(f))).rgb[y0:y1, x0:x1]
            for f in np.linspace(0, 1, max(2, steps))]


class EditJob:
    """One edit with its options, ready for a batch runner: `extras_for(output)` names the
    sheets and strips, `provenance(job)` is the tag, `work(job)` edits and writes one photo.
    Sheets and strips are written before the photo, so a photo's presence means its job is whole."""

    def __init__(self, pipe, edit: Edit, *, largest: bool = False, compare: bool = False, steps: int = 0,
                 gif: bool = False):
        self.pipe, self.edit = pipe, edit
        self.largest, self.compare, self.steps, self.gif = largest, compare, steps, gif
        self.provenance = provenance_for(pipe, edit)

    def extras_for(self, output: Path) -> list[Path]:
        return extras_for(output, self.compare, self.steps, self.gif)

    def prepare(self, jobs: list[Job]) -> list[Job]:
        """Fill in each job's extras (before output clashes are looked for)."""
        for job in jobs:
            if job.output is not None:
                job.extras = self.extras_for(job.output)
        return jobs

    def work(self, job: Job) -> tuple[int, str]:
        from stoic_cli.face.images import load_photo, save_gif, save_photo

        pipe, edit = self.pipe, self.edit
        photo = load_photo(job.source)
        faces, skipped = pipe.find_faces(photo, self.largest)
        # Sheets and strips need the original photo; without them the photo is edited in place.
        result = pipe.apply(photo, faces, edit, inplace=not (self.compare or self.steps))
        tag = job.provenance
        notes = [skipped.message] if skipped else []
        if self.compare:
            save_photo(photo, np.concatenate([photo.rgb, result.rgb], axis=1), job.extras[0], tag)
        if self.steps:
            frames = strip_frames(pipe, photo, faces, edit, self.steps)
            strip = job.extras[-1]
            if self.gif:
                save_gif(frames, strip, tag)
            else:
                save_photo(photo, np.concatenate(frames, axis=1), strip, tag)
            notes.append(f"strip {strip.name}")
        save_photo(photo, result.rgb, job.output, tag)
        return len(faces), "; ".join(notes)
