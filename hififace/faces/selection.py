"""Which target faces to swap when a picture holds several.

Modes:

- "largest": the face with the largest box (ties: higher score);
- "index": one face by position, counted from 0, left to right;
- "all": every face;
- "reference": every face whose ArcFace cosine similarity to a reference embedding is at least
  `threshold` (the same person as in a reference photo). The caller supplies `embed_fn`, which
  turns a `Face` into an embedding (the pipeline crops it and runs its ArcFace).

The result is always a list sorted left to right (possibly empty: no face, or no face close
enough to the reference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hififace.faces.types import Embedding, Face, sort_left_to_right

MODES = ("largest", "index", "all", "reference")


class FaceSelectionError(ValueError):
    """The requested faces cannot be selected (bad mode, index out of range, missing reference)."""


def select_faces(
    faces: Sequence[Face],
    mode: str = "largest",
    index: int = 0,
    reference_embedding: Embedding | None = None,
    embed_fn: Callable[[Face], Embedding] | None = None,
    threshold: float = 0.3,
) -> list[Face]:
    """Pick the target faces to swap.

    Args:
        faces (sequence of Face): the detected faces, in any order.
        mode (str, default "largest"): "largest", "index", "all" or "reference" (see the module docstring).
        index (int, default 0): with mode "index", the face's position from the left, from 0.
        reference_embedding (array, optional): with mode "reference", the embedding to match.
        embed_fn (callable Face -> array, optional): with mode "reference", computes a face's embedding.
        threshold (float, default 0.3): with mode "reference", the minimum cosine similarity kept.

    Raises:
        FaceSelectionError: unknown mode, index out of range, or "reference" without its inputs.
    """
    ordered = sort_left_to_right(faces)
    if mode == "all":
        return ordered
    if mode == "largest":
        return [max(ordered, key=lambda face: (face.area, face.score))] if ordered else []
    if mode == "index":
        if not 0 <= index < len(ordered):
            count = f"{len(ordered)} face" + ("" if len(ordered) == 1 else "s")
            valid = "" if not ordered else f" (valid: 0 to {len(ordered) - 1}, counted left to right)"
            raise FaceSelectionError(f"target has {count}; --face {index} is out of range{valid}")
        return [ordered[index]]
    if mode == "reference":
        if reference_embedding is None or embed_fn is None:
            raise FaceSelectionError('mode "reference" needs both reference_embedding and embed_fn')
        reference = _unit(np.asarray(reference_embedding, dtype=np.float64).ravel())
        kept = []
        for face in ordered:
            embedding = _unit(np.asarray(embed_fn(face), dtype=np.float64).ravel())
            if embedding.shape != reference.shape:
                raise FaceSelectionError(
                    f"embed_fn returned {embedding.shape[0]} values, the reference has {reference.shape[0]}"
                )
            if float(embedding @ reference) >= threshold:
                kept.append(face)
        return kept
    raise FaceSelectionError(f"unknown face selection mode {mode!r}; use one of {', '.join(MODES)}")


def cosine_similarity(a: Embedding, b: Embedding) -> float:
    """Cosine of the angle between two embeddings."""
    return float(
        _unit(np.asarray(a, dtype=np.float64).ravel()) @ _unit(np.asarray(b, dtype=np.float64).ravel())
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise FaceSelectionError("an embedding is zero or not finite")
    return vector / norm
