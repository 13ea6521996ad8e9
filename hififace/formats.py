"""The file suffixes hififace reads and writes, listed once (imports nothing from hififace).

- `IMAGE_SUFFIXES`: still images read (Pillow); `IMAGE_OUTPUT_FORMATS`: those written, with the
  Pillow format name (PNG, JPEG, WebP carry the AI-generated metadata).
- `VIDEO_SUFFIXES`: videos read (anything FFmpeg reads; these are the names a folder scan takes);
  `VIDEO_OUTPUT_SUFFIXES`: containers written (H.264 plus the input's audio).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "IMAGE_OUTPUT_FORMATS",
    "IMAGE_OUTPUT_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MP4_LIKE_SUFFIXES",
    "VIDEO_OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "is_image",
    "is_video",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
IMAGE_OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
IMAGE_OUTPUT_SUFFIXES = frozenset(IMAGE_OUTPUT_FORMATS)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
VIDEO_OUTPUT_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv"})
# Containers of the MP4 family: their metadata needs "use_metadata_tags", and "faststart" helps streaming.
MP4_LIKE_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})


def is_image(path: str | os.PathLike) -> bool:
    """True when the file name has an image suffix (`IMAGE_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | os.PathLike) -> bool:
    """True when the file name has a video suffix (`VIDEO_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
