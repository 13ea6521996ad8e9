"""Array aliases shared by every layer (imports nothing from hififace).

- `Image`: uint8 array (H, W, 3), RGB.
- `Mask`: float32 array (H, W), values in [0, 1].
- `Landmarks5`: float32 array (5, 2) of (x, y) pixel coordinates, insightface's order:
  left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner, where
  "left" means the left side of the image (the subject's right).
- `Landmarks68`: float32 array (68, 2), the iBUG 300-W points (dlib's shape predictor).
- `Matrix`: float64 array (2, 3), an affine map of (x, y, 1) column vectors.
- `Box`: (x1, y1, x2, y2) in pixels.
- `Embedding`: a face embedding, (512,) for ArcFace.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Mask = NDArray[np.float32]
Points = NDArray[np.floating]
Landmarks5 = NDArray[np.float32]
Landmarks68 = NDArray[np.float32]
Matrix = NDArray[np.float64]
Box = tuple[float, float, float, float]
Embedding = NDArray[np.floating]
