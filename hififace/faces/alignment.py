"""Face alignment: map five landmarks onto a template with a similarity transform.

A similarity transform (rotation, uniform scale, translation: 4 degrees of freedom) is fitted to the
five landmark pairs by exact least squares (Umeyama, "Least-squares estimation of transformation
parameters between two point patterns", TPAMI 1991), then the image is warped so that the face's
landmarks land on the template.

Templates are given once, in the 112 x 112 coordinates they were published in, and scaled to any
crop size by size / 112:

- "frontal": the template the public HifiFace release (xuehy/HiFiFace-pytorch) aligned its 256
  crops with; eyes level and symmetric.
- "arcface": insightface's ArcFace template (`arcface_dst`), used to crop 112 faces for recognition.

All functions are pure and work on (x, y) pixel coordinates; matrices are (2, 3) float64 arrays
that map image coordinates to crop coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np

from hififace.faces.types import Image, Matrix, Points

TEMPLATE_SIZE = 112

TEMPLATES: dict[str, tuple[tuple[float, float], ...]] = {
    "frontal": (
        (39.730, 51.138),
        (72.270, 51.138),
        (56.000, 68.493),
        (42.463, 87.010),
        (69.537, 87.010),
    ),
    "arcface": (
        (38.2946, 51.6963),
        (73.5318, 51.5014),
        (56.0252, 71.7366),
        (41.5493, 92.3655),
        (70.7299, 92.2041),
    ),
}

_BORDERS = {
    "reflect": cv2.BORDER_REFLECT_101,
    "constant": cv2.BORDER_CONSTANT,
    "replicate": cv2.BORDER_REPLICATE,
}


def template_points(name: str = "frontal", size: int = 256) -> Points:
    """The five template points of `name` for a square crop of `size` pixels, float32 (5, 2)."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown alignment template {name!r}; known: {', '.join(TEMPLATES)}")
    if size <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    return np.asarray(TEMPLATES[name], dtype=np.float32) * np.float32(size / TEMPLATE_SIZE)


def estimate_similarity(src_points: Points, dst_points: Points) -> Matrix:
    """Least-squares similarity transform taking `src_points` onto `dst_points` (Umeyama 1991).

    Args:
        src_points ((N, 2) array): points in the source frame, N >= 2, not all equal.
        dst_points ((N, 2) array): corresponding points in the destination frame.

    Returns:
        (2, 3) float64 matrix M with dst ≈ M @ [x, y, 1]; it minimises the sum of squared
        distances over all similarity transforms (reflections excluded).
    """
    src = np.asarray(src_points, dtype=np.float64)
    dst = np.asarray(dst_points, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(
            f"need two matching (N, 2) point arrays with N >= 2, got {src.shape} and {dst.shape}"
        )
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= np.finfo(np.float64).eps:
        raise ValueError("the source points all coincide; no similarity transform fits them")
    # Umeyama eq. 38-42: covariance, its SVD, a sign fix that forbids reflections.
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src_var
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def transform_points(points: Points, matrix: Matrix) -> Points:
    """Apply an affine (2, 3) matrix to (N, 2) points; returns float64 (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: Matrix) -> Matrix:
    """The inverse of an invertible affine (2, 3) matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear = matrix[:, :2]
    if abs(np.linalg.det(linear)) <= 1e-12:
        raise ValueError("the affine matrix is singular and cannot be inverted")
    inverse_linear = np.linalg.inv(linear)
    return np.concatenate([inverse_linear, -inverse_linear @ matrix[:, 2:]], axis=1)


def alignment_matrix(landmarks: Points, size: int = 256, template: str = "frontal") -> Matrix:
    """The (2, 3) matrix taking image coordinates to the `size` crop where `landmarks` meet `template`."""
    return estimate_similarity(landmarks, template_points(template, size))


def align_face(
    image: Image,
    landmarks: Points,
    size: int = 256,
    template: str = "frontal",
    border: str = "reflect",
) -> tuple[Image, Matrix]:
    """Crop a face so that its five landmarks land on a template.

    Args:
        image (Image): the whole picture, (H, W, C).
        landmarks ((5, 2) array): the face's five points in insightface's order.
        size (int, default 256): side of the square crop.
        template (str, default "frontal"): a key of `TEMPLATES`.
        border (str, default "reflect"): how pixels beyond the image edge are filled: "reflect"
            (mirror, without repeating the edge pixel), "replicate" or "constant" (black). Mirroring
            keeps the crop looking like a photograph when a face touches the image edge, which is
            what the generator was trained on; black wedges are out of its distribution and bleed
            into the regions it blends. Nothing beyond the image edge is ever pasted back.

    Returns:
        (crop, matrix): the (size, size, C) crop, same dtype as `image`, and the (2, 3) matrix from
        image to crop coordinates (give it to `paste_back`).
    """
    if border not in _BORDERS:
        raise ValueError(f"unknown border {border!r}; use one of {', '.join(_BORDERS)}")
    matrix = alignment_matrix(landmarks, size, template)
    # Bilinear, as insightface's norm_crop, the usual way face-swap training crops are made;
    # bicubic is slightly sharper but overshoots (rings) at hard edges.
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[border], borderValue=0
    )
    return crop, matrix
