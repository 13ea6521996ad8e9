"""Paste a swapped crop back into the whole image.

The generator's mask M_r says where the crop should replace the target. It is softened (eroded,
then feathered with a Gaussian) in crop pixels, warped back into the image with the inverse of the
alignment transform, and used as the alpha of a blend. Pixels where the warped mask is exactly zero
are copied from the input untouched, so a swap never changes anything outside the face.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from hififace.faces.alignment import invert_affine, transform_points
from hififace.faces.types import Image, Mask, Matrix

# Bilinear interpolation reads a 2 x 2 neighbourhood, so a warped pixel can be non-zero up to one
# source pixel away from the mask's support; one more pixel covers rounding of the footprint.
_SUPPORT_MARGIN = 2


def soften_mask(mask: Mask, erode: int = 0, blur: int = 0) -> Mask:
    """Shrink a mask, then feather its edge.

    Args:
        mask ((H, W) float array in [0, 1], or bool): the mask in crop pixels.
        erode (int, default 0): erosion radius in crop pixels (elliptical kernel 2 * erode + 1).
        blur (int, default 0): feather radius in crop pixels (Gaussian kernel 2 * blur + 1).

    Both steps treat everything outside the crop as 0, so a mask that touches the crop's edge is
    also shrunk and feathered there: the pasted crop then has no hard seam along its own border.

    Returns:
        float32 (H, W) mask in [0, 1].
    """
    mask = _check_mask(mask)
    if erode < 0 or blur < 0:
        raise ValueError(f"erode and blur are radii in pixels and must be >= 0, got {erode} and {blur}")
    if erode > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        mask = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (2 * blur + 1, 2 * blur + 1), 0, borderType=cv2.BORDER_CONSTANT)
    return np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)


def warp_mask_to_image(mask: Mask, matrix: Matrix, image_shape: tuple[int, ...]) -> Mask:
    """The crop mask warped into the whole image: float32 (H, W), exactly 0 outside its footprint.

    Args:
        mask ((h, w) float array in [0, 1]): mask in crop pixels.
        matrix ((2, 3) array): image-to-crop transform returned by `align_face`.
        image_shape (tuple): the image's shape, (H, W) or (H, W, C).

    This is the alpha that `paste_back` blends with (useful to display or inspect).
    """
    mask = _check_mask(mask)
    full = np.zeros(image_shape[:2], dtype=np.float32)
    region = _mask_region(mask, matrix, image_shape)
    if region is not None:
        x0, y0, x1, y1 = region
        full[y0:y1, x0:x1] = _warp_into(mask, matrix, region, cv2.BORDER_CONSTANT)
    return full


def paste_back(image: Image, crop: NDArray, mask: Mask, matrix: Matrix) -> Image:
    """Blend an aligned crop back into the image it was cut from.

    Args:
        image (Image): the whole picture, uint8 (H, W, 3); not modified.
        crop ((h, w, 3) array): the new crop, uint8 or floating point in [0, 1].
        mask ((h, w) float array in [0, 1]): alpha in crop pixels, 1 = take the crop. Soften it
            first with `soften_mask`; it is used as given.
        matrix ((2, 3) array): image-to-crop transform returned by `align_face`.

    Returns:
        uint8 (H, W, 3): a new image, bit-identical to `image` wherever the warped mask
        (`warp_mask_to_image`) is exactly 0.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"paste_back expects a uint8 (H, W, C) image, got {image.dtype} {image.shape}")
    mask = _check_mask(mask)
    crop = _crop_as_float(crop)
    if crop.shape[:2] != mask.shape or crop.shape[2] != image.shape[2]:
        raise ValueError(
            f"crop {crop.shape} and mask {mask.shape} must cover the same pixels, with the image's "
            f"{image.shape[2]} channels"
        )
    out = image.copy()
    region = _mask_region(mask, matrix, image.shape)
    if region is None:
        return out
    x0, y0, x1, y1 = region
    alpha = _warp_into(mask, matrix, region, cv2.BORDER_CONSTANT)[:, :, None]
    # Replicate the crop's edge: where the mask is positive right at the crop border, bilinear
    # samples fall just outside the crop and must not be darkened by a black border.
    warped = _warp_into(crop, matrix, region, cv2.BORDER_REPLICATE)
    if warped.ndim == 2:
        warped = warped[:, :, None]
    original = image[y0:y1, x0:x1].astype(np.float32)
    blended = np.clip(np.rint(original + alpha * (warped - original)), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(alpha > 0, blended, image[y0:y1, x0:x1])
    return out


def _check_mask(mask: Mask) -> Mask:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask.astype(np.float32)
    if not np.issubdtype(mask.dtype, np.floating):
        raise ValueError(f"a mask must be floating point in [0, 1] or bool, got {mask.dtype}")
    mask = mask.astype(np.float32, copy=False)
    if mask.size and (not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1):
        raise ValueError("mask values must be finite and in [0, 1]")
    return mask


def _crop_as_float(crop: NDArray) -> NDArray[np.float32]:
    crop = np.asarray(crop)
    if crop.ndim != 3:
        raise ValueError(f"a crop must be (h, w, C), got shape {crop.shape}")
    if crop.dtype == np.uint8:
        return crop.astype(np.float32)
    if np.issubdtype(crop.dtype, np.floating):
        if not np.isfinite(crop).all() or crop.min() < 0 or crop.max() > 1:
            raise ValueError("a floating-point crop must hold finite values in [0, 1]")
        return crop.astype(np.float32) * 255.0
    raise ValueError(f"a crop must be uint8 or floating point in [0, 1], got {crop.dtype}")


def _mask_region(
    mask: Mask, matrix: Matrix, image_shape: tuple[int, ...]
) -> tuple[int, int, int, int] | None:
    """Image-pixel box (x0, y0, x1, y1), end exclusive, outside which the warped mask is 0."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    m = _SUPPORT_MARGIN
    corners = np.array(
        [
            [cols[0] - m, rows[0] - m],
            [cols[-1] + m, rows[0] - m],
            [cols[0] - m, rows[-1] + m],
            [cols[-1] + m, rows[-1] + m],
        ],
        dtype=np.float64,
    )
    footprint = transform_points(corners, invert_affine(matrix))
    height, width = image_shape[:2]
    x0 = max(int(np.floor(footprint[:, 0].min())) - m, 0)
    y0 = max(int(np.floor(footprint[:, 1].min())) - m, 0)
    x1 = min(int(np.ceil(footprint[:, 0].max())) + m + 1, width)
    y1 = min(int(np.ceil(footprint[:, 1].max())) + m + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _warp_into(
    array: NDArray, matrix: Matrix, region: tuple[int, int, int, int], border: int
) -> NDArray[np.float32]:
    """Warp a crop-space array into the image box `region` (crop-to-image = inverse of `matrix`)."""
    x0, y0, x1, y1 = region
    crop_to_region = invert_affine(matrix)
    crop_to_region[:, 2] -= (x0, y0)
    return cv2.warpAffine(
        array.astype(np.float32, copy=False),
        crop_to_region,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=border,
        borderValue=0,
    )
