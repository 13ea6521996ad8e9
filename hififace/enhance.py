"""Face restoration after the swap: GFPGAN, RestoreFormer, CodeFormer, ... loaded with spandrel.

The network runs on the aligned swapped crop (resized to the network's native side, 512 for the
face-restoration networks, and back), its output is blended with the swap, and the pipeline pastes
the blend back with the same mask as the swap. Architectures are not copied here: `spandrel`
(MIT, https://github.com/chaiNNer-org/spandrel) recognises a checkpoint from its keys and builds
the network; CodeFormer and the other non-commercial architectures come from the optional
`spandrel-extra-arches` package, registered when it is installed.

    enhancer = load_enhancer("GFPGANv1.4.pth")
    restored = enhancer.enhance(crops, blend=0.8)     # float32 (N, S, S, 3) in [0, 1]

Checkpoints are read without running pickled code (spandrel's restricted unpickler, or
safetensors); TorchScript files (.pt) are refused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hififace.errors import ModelLoadError, SwapError

__all__ = ["ENHANCER_SUFFIXES", "FACE_RESTORATION_SIZE", "FaceEnhancer", "check_blend", "load_enhancer"]

ENHANCER_SUFFIXES = (".pth", ".ckpt", ".safetensors")

# GFPGAN, RestoreFormer(++) and CodeFormer are all trained on 512 x 512 aligned faces.
FACE_RESTORATION_SIZE = 512

_ENHANCER_HELP = (
    "use a face-restoration checkpoint spandrel reads (GFPGANv1.3/1.4 .pth, RestoreFormer(++) .ckpt; "
    "CodeFormer with `pip install spandrel-extra-arches`)"
)


class FaceEnhancer:
    """A face-restoration network loaded by spandrel, applied to aligned crops.

    Args:
        descriptor (spandrel ImageModelDescriptor): the loaded network (`load_enhancer`).
        name (str, default ""): where it came from, for messages and repr.

    Attributes:
        size (int): the side the network runs at (512 for face restoration, else the crop's).
        architecture (str): spandrel's architecture id, e.g. "GFPGAN".
    """

    def __init__(self, descriptor, name: str = ""):
        self.descriptor = descriptor.eval()
        self.name = name
        self.architecture = descriptor.architecture.id
        self.size = FACE_RESTORATION_SIZE if descriptor.purpose == "FaceSR" else 0

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return self.descriptor.device

    def to(self, device: str | torch.device) -> FaceEnhancer:
        """Move the network; returns self."""
        self.descriptor.to(torch.device(device))
        return self

    def restore(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The network's restoration of each crop: float32 (S, S, 3) in [0, 1], the crop's size.

        Args:
            crops (sequence of (S, S, 3) arrays): uint8, or floating point in [0, 1].
        """
        out = []
        for crop in crops:
            image = torch.from_numpy(_as_float(crop)).permute(2, 0, 1)[None].to(self.device)
            side = image.shape[-1]
            size = self.size or side
            if size != side:
                image = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False).clamp(
                    0, 1
                )
            restored = self.descriptor(image)
            if restored.shape[-1] != side:
                restored = F.interpolate(restored, size=(side, side), mode="area")
            out.append(restored[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy())
        return out

    def enhance(self, crops: Sequence[np.ndarray], blend: float = 0.8) -> list[np.ndarray]:
        """Restored crops blended with the input: crop + blend x (restored - crop), float32 in [0, 1].

        Args:
            crops (sequence of (S, S, 3) arrays): uint8, or floating point in [0, 1].
            blend (float in [0, 1], default 0.8): 0 returns the input crops exactly (as float32).

        Raises:
            SwapError: a blend outside [0, 1].
        """
        check_blend(blend)
        if blend == 0:
            return [_as_float(crop) for crop in crops]
        restored = self.restore(crops)
        return [
            np.clip(_as_float(c) + np.float32(blend) * (r - _as_float(c)), 0, 1)
            for c, r in zip(crops, restored, strict=True)
        ]

    def __repr__(self) -> str:
        return f"FaceEnhancer({self.architecture}, {self.name!r}, size={self.size or 'crop'})"


def check_blend(blend: float) -> None:
    """Raise `SwapError` unless the enhancer blend is a number from 0 to 1."""
    if not isinstance(blend, (int, float)) or not np.isfinite(blend) or not 0.0 <= blend <= 1.0:
        raise SwapError(f"enhancer_blend must be a number from 0 to 1, got {blend!r}")


def load_enhancer(path: str | os.PathLike, device: str | torch.device = "cpu") -> FaceEnhancer:
    """Load a face-restoration checkpoint a user downloaded (GFPGAN, RestoreFormer, CodeFormer, ...).

    Args:
        path (str or path): a .pth, .ckpt or .safetensors file.
        device (str or torch.device, default "cpu"): where to put the network.

    Raises:
        ModelLoadError: a missing file, another suffix, an unreadable file, an architecture spandrel
            does not know, or a network that is not a same-size image restorer (an upscaler, an
            inpainter); the message names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"enhancer {path} does not exist; {_ENHANCER_HELP}")
    if path.suffix.lower() not in ENHANCER_SUFFIXES:
        raise ModelLoadError(
            f"enhancer {path} must be a {', '.join(ENHANCER_SUFFIXES)} file (TorchScript .pt is not read)"
        )
    import spandrel

    _install_extra_architectures()
    loader = spandrel.ModelLoader(device=torch.device(device))
    try:
        descriptor = loader.load_from_state_dict(loader.load_state_dict_from_file(path))
    except spandrel.UnsupportedModelError as e:
        raise ModelLoadError(f"enhancer {path} is not a network spandrel supports; {_ENHANCER_HELP}") from e
    except Exception as e:  # truncated files, foreign pickles, shape mismatches: one line each
        first = (str(e).strip().splitlines() or [""])[0]
        raise ModelLoadError(f"cannot load the enhancer {path} ({type(e).__name__}: {first})") from e
    purpose = getattr(descriptor, "purpose", None)
    if purpose not in ("FaceSR", "Restoration") or descriptor.scale != 1 or descriptor.input_channels != 3:
        raise ModelLoadError(
            f"enhancer {path} holds a {descriptor.architecture.id} {purpose or 'model'} network "
            f"(scale {descriptor.scale}), not a face-restoration network; {_ENHANCER_HELP}"
        )
    return FaceEnhancer(descriptor, name=path.name)


@functools.cache
def _install_extra_architectures() -> None:
    """Register spandrel-extra-arches (CodeFormer, ...) once, when that optional package is there."""
    try:
        import spandrel_extra_arches
    except ImportError:
        return
    spandrel_extra_arches.install()


def _as_float(crop: np.ndarray) -> np.ndarray:
    crop = np.asarray(crop)
    if crop.dtype == np.uint8:
        return crop.astype(np.float32) / 255.0
    return crop.astype(np.float32, copy=False)
