"""The evaluation's resumable per-pair cache: one JSON record per pair, keyed by what it depends on.

    cache = PairCache("eval-out")
    key = pair_key(settings, pair)
    record = cache.read(key, need_grid=False, need_fid=True)    # None: compute the pair
    cache.write(record, fid_features)                           # record["key"] names the files

Files: ``OUT/cache/<key>.json`` (the record) and ``OUT/cache/<key>.fid.npy`` (the Inception
features of the aligned target and swapped faces, (2, 2048), when FID is on). The key hashes the
pair's files (path, frame, size, mtime) and every setting that changes the scores (`model_stamp`
for the weights), so a re-run reuses what was done and an interrupted run continues.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from hififace.atomic import atomic_write
from hififace.evaluation.pairs import Pair, reference_stamp

CACHE_VERSION = 1


def pair_key(settings: dict[str, Any], pair: Pair) -> str:
    """The pair's cache key: a hash of the scoring settings and of its files' stamps."""
    stamp = {
        "settings": settings,
        "name": pair.name,
        "identity": pair.identity_label,
        "source": reference_stamp(pair.source),
        "target": reference_stamp(pair.target),
        "swapped": None if pair.swapped is None else reference_stamp(pair.swapped),
    }
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:24]


def model_stamp(model: str | os.PathLike | None) -> Any:
    """What identifies the model's weights: a folder's files (size, mtime), or a Hub repo id."""
    if model is None:
        return None
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"repo": os.fspath(model)}
    files = {}
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix in (".json", ".safetensors", ".bin"):
            stat = file.stat()
            files[file.name] = [stat.st_size, stat.st_mtime_ns]
    return {"path": str(path.resolve()), "files": files}


class PairCache:
    """Per-pair records under ``<out>/cache``.

    Args:
        out (path): the evaluation's output folder; thumbnail paths in records are relative to it.
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.folder = self.out / "cache"
        self.folder.mkdir(parents=True, exist_ok=True)

    def read(self, key: str, need_grid: bool, need_fid: bool) -> dict[str, Any] | None:
        """The cached record, or None when the pair must be computed (again).

        Args:
            key (str): the pair's `pair_key`.
            need_grid (bool): the pair is sampled for the report: its thumbnails must exist too.
            need_fid (bool): FID is on: a scored pair must have its Inception features too.
        """
        try:
            record = json.loads((self.folder / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None
        grid = record.get("grid") or {}
        if need_grid and (not grid or not all((self.out / p).is_file() for p in grid.values())):
            return None  # sampled for the report now: its thumbnails are made again
        if need_fid and record["status"] == "ok" and not self._fid_path(key).is_file():
            return None
        return record

    def write(self, record: dict[str, Any], fid_features: np.ndarray | None = None) -> None:
        """Store a record (under ``record["key"]``) and, when given, its FID features as float32."""
        key = record["key"]
        # Each file whole or not at all, the features first: an interrupted run must leave nothing
        # half-written, nor a record that reads as complete without its features.
        if fid_features is not None:
            with atomic_write(self._fid_path(key), "wb") as f:
                np.save(f, np.asarray(fid_features, dtype=np.float32))
        with atomic_write(self.folder / f"{key}.json", "w") as f:
            f.write(json.dumps(record))

    def fid_features(self, key: str) -> np.ndarray | None:
        """The pair's (2, D) Inception features (target, swapped), or None when not cached."""
        path = self._fid_path(key)
        return np.load(path) if path.is_file() else None

    def _fid_path(self, key: str) -> Path:
        return self.folder / f"{key}.fid.npy"
