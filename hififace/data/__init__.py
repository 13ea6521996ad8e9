"""Training data: `preprocess` raw photos into aligned crops, then `FacePairDataset` pairs them.

    from hififace.data import FacePairDataset, preprocess

    summary = preprocess("vggface2/train", "data/vggface2-256", size=256, parser="bisenet", workers=8)
    dataset = FacePairDataset("data/vggface2-256", same_identity_ratio=0.5)

Names import on first use, so that preprocessing workers do not load torch unless they parse.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "FacePairDataset": "hififace.data.dataset",
    "PreprocessSummary": "hififace.data.preprocessing",
    "blur_score": "hififace.data.preprocessing",
    "face_size": "hififace.data.preprocessing",
    "preprocess": "hififace.data.preprocessing",
    "INDEX_NAME": "hififace.data.index",
    "read_index": "hififace.data.index",
}

__all__ = [
    "INDEX_NAME",
    "FacePairDataset",
    "PreprocessSummary",
    "blur_score",
    "face_size",
    "preprocess",
    "read_index",
]

if TYPE_CHECKING:
    from hififace.data.dataset import FacePairDataset
    from hififace.data.index import INDEX_NAME, read_index
    from hififace.data.preprocessing import PreprocessSummary, blur_score, face_size, preprocess


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hififace.data' has no attribute {name!r}")
