"""Which target faces to swap when a picture holds several: one `FaceChoice`, one `select_faces`.

A `FaceChoice` is parsed once from what the user gives and then applied to every image or frame:

- "largest": the face with the largest box (ties: higher score);
- "all": every face;
- "index": one or several faces by position, counted from 0, left to right ("2", or "0,2" for the
  first and the third: `FaceChoice.indices`);
- "reference": every face whose ArcFace cosine similarity to a reference embedding (a unit
  vector, `FaceChoice.reference`) is at least `threshold`: the same person as in a reference photo.
  `select_faces` then needs `embed`, which turns faces into embeddings (the pipeline's
  `embed_faces`).

`select_faces` returns the chosen faces left to right, possibly none: an image without faces, an
index beyond the faces present, or nobody like the reference. Of several indices, those within the
faces present are returned (`FaceChoice.out_of_range` says whether any is beyond them). Whether that is an error is the
caller's policy: `HifiFacePipeline.choose_faces` raises for still images, `hififace.video` passes
such a frame through unchanged and counts it.

A `FaceMap` maps several sources onto target faces: each target face goes to the most similar
reference embedding (cosine at least `threshold`) and receives that reference's source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hififace.errors import FaceChoiceError
from hififace.faces.types import Embedding, Face, sort_left_to_right

__all__ = [
    "MODES",
    "FaceChoice",
    "FaceChoiceError",
    "FaceMap",
    "FaceSelectionError",
    "cosine_similarity",
    "select_faces",
]

MODES = ("largest", "all", "index", "reference")

# The old name of the one face-choice error, kept so that existing imports still work.
FaceSelectionError = FaceChoiceError

EmbedFn = Callable[[Sequence[Face]], np.ndarray]


@dataclass(frozen=True, eq=False)
class FaceChoice:
    """Which faces to swap, decided once for a whole image, folder or video.

    Args:
        mode (str): "largest", "all", "index" or "reference" (see the module docstring).
        index (int, default 0): with mode "index", the face's position from the left, from 0.
        reference (float (512,) array or None, default None): with mode "reference", the unit
            ArcFace embedding of the person to replace.
        threshold (float, default 0.3): with mode "reference", the minimum cosine similarity kept.
        indices (sequence of int, default ()): with mode "index", several positions at once; kept
            sorted without repeats. Empty means `(index,)`; `index` becomes the first of them.

    Raises:
        FaceChoiceError: unknown mode, or mode "reference" without a finite, non-zero embedding.
    """

    mode: str
    index: int = 0
    reference: np.ndarray | None = None
    threshold: float = 0.3
    indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FaceChoiceError(f"unknown face choice {self.mode!r}; use one of {', '.join(MODES)}")
        if self.mode == "reference":
            if self.reference is None:
                raise FaceChoiceError('face="reference" needs a reference image of the person to replace')
            # Frozen dataclass: object.__setattr__ is how it normalises a field.
            object.__setattr__(self, "reference", _unit(np.asarray(self.reference, dtype=np.float64).ravel()))
        indices = tuple(sorted({int(i) for i in self.indices})) or (int(self.index),)
        object.__setattr__(self, "indices", indices if self.mode == "index" else ())
        object.__setattr__(self, "index", indices[0])

    @classmethod
    def parse(
        cls, face: Any = "largest", reference: Embedding | None = None, threshold: float = 0.3
    ) -> FaceChoice:
        """A `FaceChoice` from what a user gives.

        Args:
            face (str, int, sequence of int or FaceChoice, default "largest"): "largest", "all",
                "reference", a face index counted from the left (int or digit string), several of
                them ("0,2", or a list of ints), or a FaceChoice (returned as is).
            reference (array, optional): the reference embedding, for face="reference".
            threshold (float, default 0.3): minimum cosine similarity, for face="reference".

        Raises:
            FaceChoiceError: anything else, or "reference" without an embedding.
        """
        if isinstance(face, FaceChoice):
            return face
        if _is_index(face):
            return cls("index", index=int(face))
        if isinstance(face, (list, tuple)) and face and all(_is_index(i) for i in face):
            return cls("index", indices=tuple(face))
        if isinstance(face, str):
            text = face.strip().lower()
            if text in ("largest", "all"):
                return cls(text)
            if text == "reference":
                return cls("reference", reference=reference, threshold=threshold)
            parts = [part.strip() for part in text.split(",")]
            if all(part.lstrip("-").isdigit() for part in parts):
                return cls("index", indices=tuple(int(part) for part in parts))
        raise FaceChoiceError(
            "face must be 'largest', 'all', 'reference' or a face index (0 = leftmost; several as "
            f"'0,2'), got {face!r}"
        )

    def out_of_range(self, count: int) -> bool:
        """Whether this is an index choice with an index beyond `count` faces."""
        return bool(self.out_of_range_indices(count))

    def out_of_range_indices(self, count: int) -> list[int]:
        """The indices of this choice beyond `count` faces (none for the other modes)."""
        return [i for i in self.indices if not 0 <= i < count]

    def __str__(self) -> str:
        """The text `parse` reads back: "largest", "all", "reference", "2" or "0,2"."""
        return ",".join(map(str, self.indices)) if self.mode == "index" else self.mode

    def __repr__(self) -> str:
        if self.mode == "index" and len(self.indices) > 1:
            return f"FaceChoice('index', indices={self.indices})"
        if self.mode == "index":
            return f"FaceChoice('index', index={self.index})"
        if self.mode == "reference":
            return f"FaceChoice('reference', threshold={self.threshold})"
        return f"FaceChoice({self.mode!r})"


def select_faces(
    faces: Sequence[Face], choice: FaceChoice | str | int = "largest", embed: EmbedFn | None = None
) -> list[Face]:
    """The faces `choice` picks, left to right; possibly none (see the module docstring).

    Args:
        faces (sequence of Face): the detected faces, in any order.
        choice (FaceChoice, str or int, default "largest"): a FaceChoice, or what `FaceChoice.parse` reads.
        embed (callable faces -> (N, D) array, optional): needed by a "reference" choice; called
            once with every face.

    Raises:
        FaceChoiceError: a bad choice, or a "reference" choice without `embed`.
    """
    choice = FaceChoice.parse(choice)
    ordered = sort_left_to_right(faces)
    if choice.mode == "all":
        return ordered
    if choice.mode == "largest":
        return [max(ordered, key=lambda face: (face.area, face.score))] if ordered else []
    if choice.mode == "index":
        return [ordered[i] for i in choice.indices if 0 <= i < len(ordered)]
    if embed is None:
        raise FaceChoiceError('a "reference" face choice needs an embed function')
    if not ordered:
        return []
    embeddings = np.asarray(embed(ordered), dtype=np.float64).reshape(len(ordered), -1)
    if embeddings.shape[1] != choice.reference.shape[0]:
        raise FaceChoiceError(
            f"embed returned {embeddings.shape[1]} values per face, the reference has {choice.reference.shape[0]}"
        )
    return [
        face
        for face, embedding in zip(ordered, embeddings, strict=True)
        if float(_unit(embedding) @ choice.reference) >= choice.threshold
    ]


def _is_index(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def cosine_similarity(a: Embedding, b: Embedding) -> float:
    """Cosine of the angle between two embeddings."""
    return float(
        _unit(np.asarray(a, dtype=np.float64).ravel()) @ _unit(np.asarray(b, dtype=np.float64).ravel())
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    if not np.isfinite(norm) or norm == 0:
        raise FaceChoiceError("an embedding is zero or not finite")
    return vector / norm


@dataclass(frozen=True, eq=False)
class FaceMap:
    """Which source each target face receives: the one whose reference face it looks like most.

    Args:
        references (float (K, D) array): the reference embeddings, one per mapping entry.
        sources (sequence of K objects): what each reference maps to (the pipeline's encoded
            sources); kept as given.
        threshold (float, default 0.3): a target face less similar (cosine) to every reference
            receives nothing.

    Raises:
        FaceChoiceError: no entries, a count mismatch, or a zero or non-finite embedding.
    """

    references: np.ndarray
    sources: tuple[Any, ...]
    threshold: float = 0.3

    def __post_init__(self) -> None:
        references = np.asarray(self.references, dtype=np.float64)
        if references.ndim != 2 or len(references) == 0 or len(references) != len(self.sources):
            raise FaceChoiceError(
                f"a face mapping needs one reference embedding per source, got {references.shape} "
                f"for {len(self.sources)} sources"
            )
        object.__setattr__(self, "references", np.stack([_unit(r) for r in references]))
        object.__setattr__(self, "sources", tuple(self.sources))

    def assign(self, embeddings: np.ndarray) -> list[int | None]:
        """For each target embedding (N, D), the index of its source, or None below the threshold."""
        embeddings = np.asarray(embeddings, dtype=np.float64).reshape(-1, self.references.shape[1])
        out: list[int | None] = []
        for embedding in embeddings:
            similarity = self.references @ _unit(embedding)
            best = int(np.argmax(similarity))
            out.append(best if similarity[best] >= self.threshold else None)
        return out

    def __len__(self) -> int:
        return len(self.sources)
