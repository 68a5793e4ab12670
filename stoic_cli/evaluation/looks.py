"""What the judges see in one image (dlib's descriptor and face box, MediaPipe's blendshapes,
a thumbnail for the sheets), and opening and closing the judges around an evaluation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from stoic_cli.evaluation.judges import ExpressionJudge, IdentityJudge, expression_intensity, smile
from stoic_cli.evaluation.sheets import face_region, thumb


@dataclass
class Look:
    descriptor: np.ndarray | None
    box: np.ndarray | None
    blendshapes: dict | None
    thumb: np.ndarray | None = None

    @property
    def smile(self) -> float | None:
        return smile(self.blendshapes)

    @property
    def intensity(self) -> float | None:
        return expression_intensity(self.blendshapes)


def look(rgb: np.ndarray, identity, expression, box=None, with_thumb: bool = True) -> Look:
    """Judge one image. `box` (the input's face, for an edit of the same photo) picks the face
    dlib describes and frames the thumbnail at the same place as the input's, so that a sheet's
    columns line up."""
    found = identity.analyze(rgb, box)
    descriptor, found_box = (None, None) if found is None else found
    bs = expression.blendshapes(rgb)
    tile = thumb(rgb, face_region(found_box if box is None else box, rgb.shape)) if with_thumb else None
    return Look(descriptor, found_box, bs, tile)


def with_judges(identity, expression, work: Callable):
    """work(identity, expression), with the default judge for any not given. A MediaPipe judge
    opened here is closed here: it holds native resources."""
    owned = expression is None
    identity = identity or IdentityJudge()
    expression = expression or ExpressionJudge()
    try:
        return work(identity, expression)
    finally:
        if owned:
            expression.close()
