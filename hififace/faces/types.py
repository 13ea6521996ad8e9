"""`Face`, the detected face every step of `hififace.faces` passes around.

The array aliases (`Image`, `Mask`, `Landmarks5`, ...) live in the floor module `hififace.types`
and are re-exported here, so `hififace.imageio` can use them without importing this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hififace.types import Box, Embedding, Image, Landmarks5, Landmarks68, Mask, Matrix, Points

__all__ = [
    "Box",
    "Embedding",
    "Face",
    "Image",
    "Landmarks5",
    "Landmarks68",
    "Mask",
    "Matrix",
    "Points",
    "sort_left_to_right",
]


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Args:
        box (tuple of 4 floats): (x1, y1, x2, y2) in image pixels, x2 > x1 and y2 > y1.
        score (float): the detector's confidence; its scale depends on the backend (SCRFD: a
            probability in [0, 1]; dlib HOG: an SVM margin, about 0 to 3).
        landmarks (Landmarks5): five points in insightface's order (see the module docstring).
        landmarks68 (Landmarks68 or None, default None): the 68 iBUG points when the backend has them.
    """

    box: Box
    score: float
    landmarks: Landmarks5
    landmarks68: Landmarks68 | None = None

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.box)
        if len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"a face box must be (x1, y1, x2, y2) with x2 > x1 and y2 > y1, got {self.box}")
        landmarks = np.asarray(self.landmarks, dtype=np.float32)
        if landmarks.shape != (5, 2):
            raise ValueError(f"a face needs 5 landmarks of shape (5, 2), got {landmarks.shape}")
        landmarks68 = None
        if self.landmarks68 is not None:
            landmarks68 = np.asarray(self.landmarks68, dtype=np.float32)
            if landmarks68.shape != (68, 2):
                raise ValueError(f"landmarks68 must have shape (68, 2), got {landmarks68.shape}")
            landmarks68.flags.writeable = False
        landmarks.flags.writeable = False
        # The dataclass is frozen; object.__setattr__ is how a frozen dataclass normalises its fields.
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "landmarks68", landmarks68)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels."""
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def __repr__(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"Face(box=({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}), score={self.score:.3f})"


def sort_left_to_right(faces: Iterable[Face]) -> list[Face]:
    """Faces ordered by the x of their box centre (ties by y), the order "face index" counts in."""
    return sorted(faces, key=lambda face: (face.center[0], face.center[1]))
