"""FID between swapped and real target faces, with pytorch-fid (the PyTorch port of the TF FID code).

`FIDFeatures.load()` gives the 2048-d pool3 features of pytorch-fid's FID Inception network, or
raises `FIDUnavailable` with the reason (package missing; weights absent and downloads off or
failing). The FID itself is pytorch-fid's `calculate_frechet_distance` of the two feature sets'
means and covariances. Nothing here downloads unless downloads are allowed (see `offline()`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hififace.faces.detection import offline
from hififace.tensors import images_to_tensor

INSTALL_HINT = (
    "install pytorch-fid (`pip install pytorch-fid`); its Inception weights "
    "(pt_inception-2015-12-05-6726825d.pth) are downloaded on first use into torch's hub cache "
    "(<TORCH_HOME>/hub/checkpoints), or put the file there by hand"
)
# Fewer images than feature dimensions give a singular covariance and a biased-high FID.
RECOMMENDED_IMAGES = 2048


class FIDUnavailable(RuntimeError):
    """FID cannot be computed here; the message says why and what to install."""


def fid_unavailable_reason() -> str | None:
    """None when FID can be computed here; else a one-line "FID skipped: ..." reason.

    Needs the pytorch-fid package, and its Inception weights in torch's hub cache unless downloads
    are allowed (`hififace.faces.detection.offline()` is false).
    """
    try:
        from pytorch_fid import inception
    except ImportError:
        return f"FID skipped: pytorch-fid is not installed; {INSTALL_HINT}"
    url = getattr(inception, "FID_WEIGHTS_URL", "")
    weights = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if url and not weights.is_file() and offline():
        return (
            f"FID skipped: its Inception weights are not at {weights} and downloads are off; {INSTALL_HINT}"
        )
    return None


class FIDFeatures:
    """pytorch-fid's Inception pool3 features of face crops (uint8 RGB, any size: resized to 299)."""

    def __init__(self, network: torch.nn.Module, device: str | torch.device = "cpu"):
        self.network = network.eval().to(device)
        self.device = torch.device(device)

    @classmethod
    def load(cls, device: str | torch.device = "cpu") -> FIDFeatures:
        """Build pytorch-fid's FID Inception network (downloading its weights only when allowed)."""
        reason = fid_unavailable_reason()
        if reason is not None:
            raise FIDUnavailable(reason)
        from pytorch_fid import inception

        try:
            network = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        except Exception as e:  # a failed download ends here
            raise FIDUnavailable(
                f"cannot load the FID Inception network ({type(e).__name__}: {e}); {INSTALL_HINT}; "
                "or pass --no-fid"
            ) from e
        return cls(network, device)

    def __call__(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 2048) float32 features of N uint8 (H, W, 3) RGB crops."""
        if not len(crops):
            return np.zeros((0, 2048), np.float32)
        with torch.inference_mode():
            features = self.network(images_to_tensor(crops, self.device))[0]
        return features.reshape(len(crops), -1).float().cpu().numpy()


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID = Fréchet distance of Gaussians fitted to two (N, 2048) feature sets (pytorch-fid's formula)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least two images on each side")
    return float(
        calculate_frechet_distance(
            real.mean(axis=0), np.cov(real, rowvar=False), fake.mean(axis=0), np.cov(fake, rowvar=False)
        )
    )
