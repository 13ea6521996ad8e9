"""The evaluation metrics of face swapping, one small pure function each.

For a pair (source S, target T) and the swapped image R (T with S's face put in):

- identity cosine: cos(e(R), e(S)) of face-recognition embeddings e (`hififace.faces.cosine_similarity`);
  higher is better.
- ID retrieval: R is counted correct when the nearest source (by cosine) among all the set's
  sources is its own; the set's mean is the top-1 accuracy (paper: 98.48% for HifiFace on FF++).
- pose error: ‖(yaw, pitch, roll)(R) − (yaw, pitch, roll)(T)‖₂ in degrees (paper: 2.63).
- expression error (3DMM): ‖exp(R) − exp(T)‖₂ of the 64 Deep3DFaceRecon expression coefficients.
- expression error (landmarks): RMS distance between the inner 51 landmarks of R and T after
  normalising both for position and size and aligning R onto T with a similarity transform.
- shape error (3DMM): ‖id(R) − id(S)‖₂ of the 80 Deep3DFaceRecon identity coefficients.
- FID: Fréchet distance between Inception features of the swapped and the real target faces.

`summarize` turns per-pair scores into mean, standard deviation and 95% confidence interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hififace.faces.alignment import estimate_similarity, transform_points

# dlib's 68 points without the jaw line (0-16): brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
# The jaw line carries the face's shape, which a shape-aware swapper is meant to change.
INNER_LANDMARKS = tuple(range(17, 68))


def retrieval_hits(
    queries: np.ndarray, gallery: np.ndarray, query_labels: Sequence, gallery_labels: Sequence
) -> np.ndarray:
    """Top-1 identity retrieval: is each query's most similar gallery entry of its own identity?

    Args:
        queries ((N, D) array): embeddings of the swapped faces.
        gallery ((M, D) array): embeddings of every source face of the set.
        query_labels (N labels): the identity each swapped face should have (its source's).
        gallery_labels (M labels): the identity of each gallery entry.

    Returns:
        (N,) float array of 1.0 (hit) and 0.0 (miss); its mean is the ID retrieval accuracy.
        Similarity is the cosine; ties go to the first gallery entry.
    """
    queries = _unit_rows(queries)
    gallery = _unit_rows(gallery)
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("one label per query and per gallery entry is needed")
    if len(queries) == 0:
        return np.zeros(0)
    if len(gallery) == 0:
        raise ValueError("the retrieval gallery is empty")
    nearest = np.argmax(queries @ gallery.T, axis=1)
    labels = list(gallery_labels)
    return np.array([float(labels[j] == q) for j, q in zip(nearest, query_labels, strict=True)])


def angle_difference(a: float, b: float) -> float:
    """a − b in degrees, wrapped to (−180, 180]."""
    d = (a - b) % 360.0
    return d - 360.0 if d > 180.0 else d


def pose_error(pose: Sequence[float], reference: Sequence[float]) -> float:
    """‖Δyaw, Δpitch, Δroll‖₂ in degrees between two (yaw, pitch, roll) triples (each Δ wrapped)."""
    if len(pose) != 3 or len(reference) != 3:
        raise ValueError("a pose is (yaw, pitch, roll)")
    return math.sqrt(sum(angle_difference(a, b) ** 2 for a, b in zip(pose, reference, strict=True)))


def coefficient_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖₂ of two coefficient vectors: the 3DMM expression and shape errors.

    Expression error: a, b = the 64 expression coefficients (`coeff_part(c, "exp")`) of the
    swapped and target faces. Shape error: the 80 identity coefficients (`coeff_part(c, "id")`)
    of the swapped and source faces.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"coefficient vectors differ in size: {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b))


def normalize_shape(points: np.ndarray) -> np.ndarray:
    """Points moved to their centroid and scaled to unit RMS distance from it."""
    p = np.asarray(points, dtype=np.float64)
    centred = p - p.mean(axis=0)
    radius = math.sqrt((centred**2).sum(axis=1).mean())
    if radius == 0:
        raise ValueError("the landmarks all coincide")
    return centred / radius


def landmark_expression_error(
    landmarks68: np.ndarray, reference68: np.ndarray, indices: Sequence[int] = INNER_LANDMARKS
) -> float:
    """Expression difference of two faces from their 68 landmarks, free of position, size and roll.

    Both shapes (the `indices` points: the inner face by default) are normalised to centroid 0
    and unit RMS radius; the first is aligned onto the second with the least-squares similarity
    transform (Umeyama); the result is the RMS distance between corresponding points, in units
    of the face's RMS radius (0 for the same shape anywhere in the image at any size and roll).
    Out-of-plane rotation and face shape still contribute, so compare faces of similar pose.
    """
    p = np.asarray(landmarks68, dtype=np.float64)[list(indices)]
    q = normalize_shape(np.asarray(reference68, dtype=np.float64)[list(indices)])
    aligned = transform_points(p, estimate_similarity(p, q))
    return float(math.sqrt(((aligned - q) ** 2).sum(axis=1).mean()))


def summarize(values: Sequence[float], confidence: float = 0.95) -> dict[str, float | int | list | None]:
    """Mean, standard deviation and confidence interval of per-pair scores.

    The interval is Student's t interval of the mean, mean ± t(1 − α/2, n − 1) · s / √n, with s the
    sample standard deviation; None when there are fewer than two values.

    Returns:
        {"mean", "std", "ci95": [low, high] or None, "n", "min", "max"} (mean etc. None when n = 0).
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0, "min": None, "max": None}
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    interval = None
    if n > 1:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        interval = [mean - half, mean + half]
    return {"mean": mean, "std": std, "ci95": interval, "n": n, "min": float(x.min()), "max": float(x.max())}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        x = x.reshape(len(x), -1) if x.size else x.reshape(0, 0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)
