"""The index of a preprocessed dataset: one JSON object per line in ``OUT/index.jsonl``.

Every source image that preprocessing looked at has one record; ``status`` says what became of it:

- ``"kept"``: an aligned crop was written. Fields: ``identity``, ``source`` (the image's path
  relative to RAW, "/"-separated), ``file`` (the crop, relative to OUT), ``mask`` (the parsing
  mask relative to OUT, or null without a parser), ``size`` (crop side), ``box`` ([x1, y1, x2, y2]
  in the original image), ``landmarks`` (five [x, y] in the original image), ``score`` (detector
  confidence), ``faces`` (how many faces were found; the largest is kept), ``face_size`` (side, in
  original pixels, of the square the crop covers), ``blur`` (variance of the Laplacian on the
  crop's inner face) and ``matrix`` (the 2x3 map from image to crop coordinates).
- ``"too_small"``, ``"blurry"``: the same measurements, no ``file``.
- ``"no_face"``: nothing found.
- ``"error"``: unreadable or corrupt; ``error`` holds the message. Retried on the next run.

Lines are appended one at a time, each with a single write, so a crash leaves at most a truncated
last line; `rebuild_index` drops it (and any record whose files are missing) when a run resumes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hififace.atomic import atomic_write

logger = logging.getLogger("hififace")

INDEX_NAME = "index.jsonl"
STATUSES = ("kept", "no_face", "too_small", "blurry", "error")

Record = dict[str, Any]


def read_index(path: str | os.PathLike) -> list[Record]:
    """All complete records of an index file, in file order; a later record of a source replaces an earlier one.

    A line that is not a complete JSON object (a run killed mid-write) is skipped with a warning.
    """
    return _read(Path(path))[0]


def _read(path: Path) -> tuple[list[Record], int]:
    """The records of `read_index` and the number of non-empty lines they came from."""
    records: dict[str, Record] = {}
    lines = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            lines += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s: line %d is not complete JSON; ignoring it", path, number)
                continue
            if not line.endswith("\n") or not isinstance(record, dict) or "source" not in record:
                logger.warning("%s: line %d is incomplete; ignoring it", path, number)
                continue
            records.pop(record["source"], None)  # keep the file order of the latest record
            records[record["source"]] = record
    return list(records.values()), lines


def record_files_exist(record: Record, out_dir: Path) -> bool:
    """Whether every file a record points to (crop, mask) is on disk."""
    return all((out_dir / record[key]).is_file() for key in ("file", "mask") if record.get(key))


def rebuild_index(out_dir: str | os.PathLike) -> list[Record]:
    """Make ``out_dir/index.jsonl`` consistent before a run resumes, and return its records.

    Keeps the latest record of each source; drops unreadable lines, ``"error"`` records (so those
    images are tried again) and ``"kept"`` records whose crop or mask is missing. The file is
    rewritten atomically, and only when something changed.
    """
    out_dir = Path(out_dir)
    path = out_dir / INDEX_NAME
    if not path.exists():
        return []
    records, lines = _read(path)
    kept = [
        r
        for r in records
        if r.get("status") in STATUSES
        and r["status"] != "error"
        and (r["status"] != "kept" or record_files_exist(r, out_dir))
    ]
    if len(kept) != lines:
        logger.info(
            "%s: rebuilt with %d records (%d lines dropped or to redo)", path, len(kept), lines - len(kept)
        )
        write_records_atomic(path, kept)
    return kept


def write_records_atomic(path: Path, records: Iterable[Record]) -> None:
    """Write a whole index through a temporary file and `os.replace`."""
    with atomic_write(path, "w") as f:
        f.writelines(_line(r) for r in records)


class IndexWriter:
    """Appends records to an index, one complete line per `os.write` on an O_APPEND descriptor."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, record: Record) -> None:
        data = _line(record).encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):  # a short write on a regular file means the disk is full
            raise OSError(f"{self.path}: short write ({written} of {len(data)} bytes); is the disk full?")

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _line(record: Record) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
