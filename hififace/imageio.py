"""Reading and writing still images as RGB uint8 arrays.

`load_image` accepts a path, a PIL image or a numpy array and always returns an `Image`
(uint8, (H, W, 3), RGB), so that everything downstream handles a single layout:

- EXIF orientation is applied (a phone photo comes out the way it is displayed);
- grayscale, palette, CMYK and 16-bit images are converted (16-bit by rounding value / 257);
- an alpha channel is composited onto a white background (``background``), the way most viewers
  show it. Dropping alpha instead would expose whatever colours sit under transparent pixels,
  often black or noise, which the face detector would then see;
- multi-frame files (GIF, TIFF) give their first frame;
- a missing, unreadable or corrupt file, an image under 32 px on a side or over the pixel limit
  (40 megapixels by default, checked from the header before decoding) raises `ImageError` naming it.

`save_image` writes PNG, JPEG or WebP atomically (`hififace.atomic.atomic_write`), with optional
text metadata such as ``{"ai_generated": "true"}``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image as PILImage
from PIL import ImageOps, PngImagePlugin, UnidentifiedImageError

from hififace.atomic import atomic_write
from hififace.formats import IMAGE_OUTPUT_FORMATS
from hififace.types import Image

MAX_PIXELS = 40_000_000
MIN_SIDE = 32
WHITE = (255, 255, 255)

_EXIF_SOFTWARE = 0x0131
_EXIF_IMAGE_DESCRIPTION = 0x010E


class ImageError(ValueError):
    """An image cannot be used: missing, unreadable, corrupt, too small or too large."""


def load_image(
    src: str | os.PathLike | PILImage.Image | NDArray,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    background: tuple[int, int, int] = WHITE,
) -> Image:
    """Load an image as RGB uint8 (H, W, 3).

    Args:
        src (path, PIL image or numpy array): a numpy array is read as (H, W), (H, W, 1),
            (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16, bool, or floating point in [0, 1].
        max_pixels (int, default 40 000 000): refuse larger images.
        min_side (int, default 32): refuse images with a shorter side.
        background (RGB tuple, default white): what transparent pixels are composited onto.

    Raises:
        ImageError: the image is missing, unreadable, corrupt, too small or too large.
    """
    if isinstance(src, (str, os.PathLike)):
        return _load_file(Path(src), max_pixels, min_side, background)
    if isinstance(src, PILImage.Image):
        name = getattr(src, "filename", "") or "<PIL image>"
        _check_size(src.width, src.height, name, max_pixels, min_side)
        return _pil_to_rgb(ImageOps.exif_transpose(src), background, name)
    if isinstance(src, np.ndarray):
        image = as_rgb(src, background)
        _check_size(image.shape[1], image.shape[0], "<array>", max_pixels, min_side)
        return image
    raise TypeError(f"load_image takes a path, a PIL image or a numpy array, not {type(src).__name__}")


def as_rgb(array: NDArray, background: tuple[int, int, int] = WHITE) -> Image:
    """Convert a grayscale, RGB or RGBA array to RGB uint8 (H, W, 3); see `load_image` for the layouts."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"expected an image array (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    array = _to_uint8(array)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    if array.shape[2] == 4:
        return _composite(array, background)
    return np.ascontiguousarray(array)


def save_image(
    path: str | os.PathLike,
    image: Image,
    metadata: dict[str, str] | None = None,
    quality: int = 95,
) -> Path:
    """Write an RGB uint8 image to PNG, JPEG or WebP (chosen by the suffix), atomically.

    Args:
        path (path): destination; its folder must exist.
        image (Image): uint8 (H, W, 3) RGB.
        metadata (dict of str to str, optional): PNG: one text chunk per key. JPEG and WebP: EXIF
            ImageDescription holds the dict as JSON, and EXIF Software its "software" value.
        quality (int, default 95): JPEG / WebP quality.

    Returns:
        The path written.
    """
    path = Path(path)
    file_format = IMAGE_OUTPUT_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise ImageError(
            f"{path}: cannot save {path.suffix or 'a file without suffix'}; use .png, .jpg or .webp"
        )
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"save_image takes uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}

    options: dict = {}
    if file_format == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            info.add_text(key, value)
        options["pnginfo"] = info
    else:
        options["quality"] = quality
        if metadata:
            exif = PILImage.Exif()
            exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(metadata, sort_keys=True)
            if "software" in metadata:
                exif[_EXIF_SOFTWARE] = metadata["software"]
            options["exif"] = exif.tobytes()

    with atomic_write(path) as f:
        PILImage.fromarray(image, mode="RGB").save(f, format=file_format, **options)
    return path


def _load_file(path: Path, max_pixels: int, min_side: int, background: tuple[int, int, int]) -> Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit, checked below from the header, replaces Pillow's warning.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as pil:
                _check_size(pil.width, pil.height, str(path), max_pixels, min_side)
                pil.load()
                return _pil_to_rgb(ImageOps.exif_transpose(pil), background, str(path))
    except ImageError:
        raise
    except PILImage.DecompressionBombError as e:
        raise ImageError(f"{path}: too large to decode ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{path}: not an image file, or a format Pillow cannot read") from e
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncated or corrupt data as OSError (or SyntaxError for some headers).
        raise ImageError(f"{path}: cannot read the image ({e})") from e


def _check_size(width: int, height: int, name: str, max_pixels: int, min_side: int) -> None:
    if min(width, height) < min_side:
        raise ImageError(
            f"{name}: {width}x{height} is too small (the shorter side must be at least {min_side} px)"
        )
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} ({width * height / 1e6:.1f} MP) is larger than the limit of "
            f"{max_pixels / 1e6:.1f} MP"
        )


def _pil_to_rgb(pil: PILImage.Image, background: tuple[int, int, int], name: str) -> Image:
    mode = pil.mode
    if mode.startswith("I") or mode == "F":
        return as_rgb(_high_depth_to_uint8(np.asarray(pil), mode, name), background)
    if mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        # "1", CMYK, YCbCr, LAB, HSV, and the alpha-carrying PA, RGBa (premultiplied), La.
        has_alpha = mode.endswith(("A", "a"))
        try:
            pil = pil.convert("RGBA" if has_alpha else "RGB")
        except ValueError as e:
            raise ImageError(f"{name}: unsupported image mode {mode}") from e
    array = np.asarray(pil)
    if array.ndim == 3 and array.shape[2] == 2:  # LA: gray + alpha
        array = np.concatenate([np.repeat(array[:, :, :1], 3, axis=2), array[:, :, 1:]], axis=2)
    return as_rgb(array, background)


def _high_depth_to_uint8(array: NDArray, mode: str, name: str) -> NDArray[np.uint8]:
    # Pillow reads 16-bit grayscale as "I;16*" (uint16) or "I" (int32 holding 0..65535) and
    # 32-bit float TIFFs as "F"; the latter have no fixed range, so they must be in [0, 1].
    if mode == "F":
        return _to_uint8(array.astype(np.float32), name)
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() > 65535:
        raise ImageError(f"{name}: {mode} values outside 0..65535 are not supported")
    return _to_uint8(array.astype(np.uint16), name)


def _to_uint8(array: NDArray, name: str = "<array>") -> NDArray[np.uint8]:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.rint(array.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ImageError(f"{name}: a floating-point image must hold finite values in [0, 1]")
        return np.rint(array * 255.0).astype(np.uint8)
    raise ImageError(f"{name}: unsupported pixel type {array.dtype}; use uint8, uint16 or floats in [0, 1]")


def _composite(rgba: NDArray[np.uint8], background: tuple[int, int, int]) -> Image:
    alpha = rgba[:, :, 3:].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32)
    back = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    return np.rint(rgb * alpha + back * (1.0 - alpha)).astype(np.uint8)
