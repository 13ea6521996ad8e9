"""The pairs an evaluation scores: where they come from and how their images are read.

A `Pair` names a source image (the face to put in), a target image (the picture to change) and,
when the swap was made elsewhere, the swapped image. An image reference is a file path, or a
video path with ``#N`` for its frame N (0-based), e.g. ``videos/000.mp4#40``.

- `read_pairs_csv`: a CSV with a header row; columns ``source`` and ``target`` (required),
  ``swapped`` (the swapped image, when it exists already), ``name`` (the pair's name: output and
  cache names, and ``<name>.<ext>`` in a ``--swapped`` folder) and ``identity`` (who the source
  is, for ID retrieval: swaps whose source is another picture of the same person then count as
  right). Relative paths are relative to the CSV's folder.
- `pair_folders`: two (or three) folders whose files are paired by name without suffix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from hififace.faces.types import Image
from hififace.formats import IMAGE_SUFFIXES, is_image, is_video
from hififace.imageio import ImageError, load_image


@dataclass(frozen=True)
class Pair:
    """One evaluation pair.

    Attributes:
        name (str): unique within the set.
        source (str): image reference of the face to put in.
        target (str): image reference of the picture to change.
        swapped (str or None): the swapped image; None when the model makes it.
        identity (str): the source's identity label for ID retrieval (default: `source`).
    """

    name: str
    source: str
    target: str
    swapped: str | None = None
    identity: str = ""

    @property
    def identity_label(self) -> str:
        return self.identity or self.source


def split_reference(ref: str) -> tuple[str, int | None]:
    """("video.mp4", 12) for "video.mp4#12"; (ref, None) for a plain path."""
    path, sep, frame = ref.rpartition("#")
    if sep and frame.isdigit() and is_video(path):
        return path, int(frame)
    return ref, None


def load_reference(ref: str, max_pixels: int | None = None) -> Image:
    """The RGB uint8 image an image reference names (a file, or a video's frame).

    Raises:
        ImageError: the file is missing, unreadable or too small, or the video has no such frame.
    """
    path, frame = split_reference(ref)
    if frame is None:
        return load_image(path) if max_pixels is None else load_image(path, max_pixels=max_pixels)
    return read_video_frame(path, frame)


def read_video_frame(path: str | os.PathLike, index: int) -> Image:
    """Frame `index` (0-based, in decoding order) of a video, as RGB uint8, decoded with PyAV.

    Frames are decoded from the start: for large sets, extract the frames to images first.
    """
    try:
        import av
    except ImportError as e:
        raise ImageError(f"{path}: reading video frames needs PyAV (pip install av) ({e})") from e
    if not Path(path).is_file():
        raise ImageError(f"{path}: no such video")
    try:
        with av.open(str(path)) as container:
            count = 0
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 == index:
                    return frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise ImageError(f"{path}: cannot decode the video ({e})") from e
    raise ImageError(f"{path}: no frame {index} (the video has {count})")


def reference_stamp(ref: str) -> dict:
    """What identifies an image reference's content for the cache: path, frame, size and mtime."""
    path, frame = split_reference(ref)
    try:
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime = None, None
    return {"path": os.path.abspath(path), "frame": frame, "size": size, "mtime": mtime}


def read_pairs_csv(path: str | os.PathLike, swapped_dir: str | os.PathLike | None = None) -> list[Pair]:
    """Pairs from a CSV (see the module docstring), in file order.

    Args:
        path (path): the CSV file.
        swapped_dir (path, optional): a folder of swapped images named ``<name>.<ext>``; rows
            without a ``swapped`` column value look there.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such pairs file")
    base = path.parent
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = {"source", "target"} - set(columns)
        if missing:
            raise ValueError(
                f"{path}: the header row needs the columns source and target (missing: {', '.join(sorted(missing))})"
            )
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not rows:
        raise ValueError(f"{path}: no pairs")

    def resolve(ref: str) -> str:
        return ref if os.path.isabs(split_reference(ref)[0]) else str(base / ref)

    names = [row.get("name") or _default_name(row["target"]) for row in rows]
    if len(set(names)) != len(names):
        if any(row.get("name") for row in rows):
            raise ValueError(f"{path}: pair names repeat; give every row a unique name")
        names = [f"{i:06d}_{name}" for i, name in enumerate(names)]  # same file names in several folders
    pairs = []
    for row, name in zip(rows, names, strict=True):
        if not row.get("source") or not row.get("target"):
            raise ValueError(f"{path}: pair {name} lacks a source or a target")
        swapped = resolve(row["swapped"]) if row.get("swapped") else None
        if swapped is None and swapped_dir is not None:
            swapped = _find_by_name(Path(swapped_dir), name)
        pairs.append(
            Pair(
                name=name,
                source=resolve(row["source"]),
                target=resolve(row["target"]),
                swapped=swapped,
                identity=row.get("identity", ""),
            )
        )
    return pairs


def pair_folders(
    sources: str | os.PathLike, targets: str | os.PathLike, swapped: str | os.PathLike | None = None
) -> tuple[list[Pair], dict[str, list[str]]]:
    """Pairs of the images in `sources` and `targets` with the same name (suffix aside), by name.

    Returns:
        (pairs, unpaired): unpaired = {"sources": [...], "targets": [...]} file names left alone.
    """
    found = {}
    for role, folder in (("sources", sources), ("targets", targets)):
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"--{role} {folder}: no such folder")
        files = _images(folder)
        if not files:
            raise ValueError(f"--{role} {folder}: no images in this folder")
        found[role] = files
    if swapped is not None and not Path(swapped).is_dir():
        raise ValueError(f"--swapped {swapped}: no such folder")
    names = sorted(set(found["sources"]) & set(found["targets"]))
    if not names:
        raise ValueError(f"no file names in common between {sources} and {targets}")
    unpaired = {
        role: sorted(str(found[role][n].name) for n in set(found[role]) - set(names)) for role in found
    }
    pairs = [
        Pair(
            name=name,
            source=str(found["sources"][name]),
            target=str(found["targets"][name]),
            swapped=None if swapped is None else _find_by_name(Path(swapped), name),
        )
        for name in names
    ]
    return pairs, unpaired


def _images(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if file.is_file() and is_image(file):
            if file.stem in files:
                raise ValueError(
                    f"{folder}: two images named {file.stem} ({files[file.stem].name}, {file.name})"
                )
            files[file.stem] = file
    return files


def _find_by_name(folder: Path, name: str) -> str:
    """DIR/<name>.<image suffix>; a name that does not exist yet (reported per pair as missing)."""
    for suffix in sorted(IMAGE_SUFFIXES):  # a fixed order, should several exist
        for candidate in (folder / f"{name}{suffix}", folder / f"{name}{suffix.upper()}"):
            if candidate.is_file():
                return str(candidate)
    return str(folder / f"{name}.png")


def _default_name(target: str) -> str:
    path, frame = split_reference(target)
    stem = Path(path).stem
    return stem if frame is None else f"{stem}_f{frame:05d}"
