"""Images between numpy and torch: the one place the layouts and value ranges are converted.

In the spirit of diffusers' `image_processor.py`: the pipeline, video, evaluation and data code
hand numpy images to the networks and take their outputs back through these functions only.

- numpy images are uint8 (H, W, 3) RGB (`hififace.types.Image`), masks float32 (H, W) in [0, 1];
- network inputs and outputs are float (B, C, H, W) tensors in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hififace.types import Image

__all__ = ["images_to_tensor", "masks_to_tensor", "tensor_to_images", "to_uint8", "to_uint8_rgb"]


def images_to_tensor(
    images: Sequence[Image] | Image, device: str | torch.device | None = None
) -> torch.Tensor:
    """uint8 (H, W, C) images, or one (B, H, W, C) array, as a float32 (B, C, H, W) tensor in [0, 1].

    Args:
        images (sequence of uint8 (H, W, C) arrays, or a uint8 (B, H, W, C) array): same sizes.
        device (str or torch.device, optional): where the tensor goes (the uint8 batch is moved
            first, a quarter of the float32 bytes).
    """
    batch = np.stack(images) if not isinstance(images, np.ndarray) else np.ascontiguousarray(images)
    if batch.dtype != np.uint8 or batch.ndim != 4:
        raise ValueError(f"expected uint8 (H, W, C) images, got {batch.dtype} {batch.shape[1:]}")
    return torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def masks_to_tensor(
    masks: Sequence[np.ndarray] | np.ndarray, device: str | torch.device | None = None
) -> torch.Tensor:
    """uint8 (H, W) masks (0..255), or one (B, H, W) array, as a float32 (B, 1, H, W) tensor in [0, 1]."""
    batch = np.stack(masks) if not isinstance(masks, np.ndarray) else np.ascontiguousarray(masks)
    if batch.dtype != np.uint8 or batch.ndim != 3:
        raise ValueError(f"expected uint8 (H, W) masks, got {batch.dtype} {batch.shape[1:]}")
    return torch.from_numpy(batch).to(device)[:, None].float().div_(255.0)


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) tensor → float32 (B, H, W, C), or (B, H, W) for one channel, clipped to [0, 1]."""
    array = x.detach().float().clamp_(0.0, 1.0).cpu().numpy().transpose(0, 2, 3, 1)
    return np.ascontiguousarray(array[..., 0] if array.shape[-1] == 1 else array)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """A float array in [0, 1] (values outside are clipped) as uint8 0..255, rounded; uint8 as it is."""
    if array.dtype == np.uint8:
        return array
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def to_uint8_rgb(array: np.ndarray) -> Image:
    """An image (H, W, 3) or mask (H, W), float in [0, 1] or uint8, as a displayable uint8 RGB image."""
    array = to_uint8(np.asarray(array))
    return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array)
