"""Write files and folders atomically: into a temporary name beside the target, then rename.

A reader (or a crash) never sees a half-written file: the target is either the old version or the
new one. The temporary name starts with a dot and sits in the same folder, so `os.replace` is a
rename on one file system. On any error the temporary file or folder is removed and the error
raised. Imports nothing from hififace.

    with atomic_write("index.jsonl", "w") as f:      # an open file object
        f.write(...)
    with atomic_path("clip.mp4") as tmp:              # a path, for writers that open files themselves
        av.open(str(tmp), "w") ...
    with atomic_folder("models/hififace-256") as tmp: # a whole folder
        model.save_pretrained(tmp)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_folder", "atomic_path", "atomic_write"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary file path beside `path`, renamed over `path` when the block ends without error.

    Args:
        path (path): the file to write; its folder must exist.
        keep_suffix (bool, default False): end the temporary name with `path`'s suffix (for
            writers that choose the format by suffix, such as FFmpeg); else with ".tmp".

    The new file gets the permissions a plain `open` would give it, or those of the file it replaces.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix if keep_suffix else ".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes the file private to its owner; give it the permissions of a plain open().
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None, **options: Any
) -> Iterator[IO]:
    """An open file that replaces `path` when the block ends without error (flushed and synced first).

    Args:
        path (path): the file to write; its folder must exist.
        mode (str, default "wb"): "w" or "wb" (text or binary).
        encoding (str, optional): for text mode; "utf-8" when not given.
        **options: other arguments of `open` (e.g. newline).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        encoding = encoding or "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, **options) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `path` that becomes `path` when the block ends without error.

    An existing folder at `path` is replaced whole (moved aside, then deleted once the new one is in
    place); an existing file there is an error.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private to its owner
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the old folder back
                os.replace(old / path.name, path)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
