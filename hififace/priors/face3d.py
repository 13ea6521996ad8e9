"""3D face priors of HifiFace: the Deep3DFaceRecon coefficient regressor F_3d and the 68 BFM landmarks.

Accurate 3D Face Reconstruction with Weakly-Supervised Learning (Deng et al., CVPR-W 2019),
https://arxiv.org/abs/1903.08527; code and weights: https://github.com/sicxu/Deep3DFaceRecon_pytorch.

`Face3DRegressor` is its `ReconNetWrapper` (ResNet-50, `use_last_fc=False`): a torchvision-layout
ResNet-50 whose pooled 2048-d feature feeds seven 1×1 convolutions, concatenated into 257
coefficients of the Basel Face Model 2009 (layout in `COEFF_LAYOUT`). `BFMLandmarks` turns those
coefficients into the 68 image landmarks the shape loss compares, with the same recentred mean
shape, rotation and pinhole camera as Deep3DFaceRecon's `ParametricFaceModel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hififace.hub import HubMixin

# name -> (start, stop) in the 257 coefficients of Deep3DFaceRecon
COEFF_LAYOUT: dict[str, tuple[int, int]] = {
    "id": (0, 80),
    "exp": (80, 144),
    "tex": (144, 224),
    "angle": (224, 227),
    "gamma": (227, 254),
    "trans": (254, 257),
}
NUM_COEFFS = 257
# sizes of the seven regression heads: id, exp, tex, angle, gamma, (tx, ty), tz
COEFF_DIMS = (80, 64, 80, 3, 27, 2, 1)
NUM_LANDMARKS = 68
RESNET50_LAYERS = (3, 4, 6, 3)


def full_precision(x: torch.Tensor, like: torch.Tensor) -> tuple[torch.autocast, torch.Tensor]:
    """An autocast-off context for `x`'s device and `x` in `like`'s floating dtype.

    The 3DMM path (F_3d's coefficients, the BFM projection and the shape loss) runs in the dtype of
    its own weights, fp32 unless the caller converted the module, even inside a bf16/fp16 autocast
    region: bf16 keeps 8 significant bits, so landmarks beyond 128 px snap to whole pixels and an L1
    loss on them cannot see the sub-pixel shape errors left late in training.
    """
    return torch.autocast(x.device.type, enabled=False), x.to(like.dtype)


def coeff_part(coeffs: torch.Tensor, name: str) -> torch.Tensor:
    """The `name` group ("id", "exp", "tex", "angle", "gamma", "trans") of coefficients (B, 257)."""
    start, stop = COEFF_LAYOUT[name]
    return coeffs[..., start:stop]


def split_coeffs(coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every group of coefficients (B, 257), keyed as in `COEFF_LAYOUT`."""
    return {name: coeff_part(coeffs, name) for name in COEFF_LAYOUT}


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: the stride sits on the 3×3 convolution)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet50Features(nn.Module):
    """torchvision-layout ResNet-50 without its classifier: images → pooled features (B, 2048, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), RESNET50_LAYERS, strict=True), start=1):
            stride = 1 if i == 1 else 2
            stage = [Bottleneck(cin, width, stride)]
            cin = width * Bottleneck.expansion
            stage += [Bottleneck(cin, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1)


class Face3DRegressor(
    nn.Module,
    HubMixin,
    license="mit",
    tags=["hififace", "3dmm", "face-reconstruction", "deep3dfacerecon"],
):
    """Deep3DFaceRecon's 3DMM coefficient regressor (ReconNetWrapper, ResNet-50): face → 257 coefficients.

    Deep3DFaceRecon_pytorch is MIT-licensed. Parameter names are those of its `net_recon` state
    dict (`backbone.*`, `final_layers.*`).

    Args:
        input_size (int, 224): the image is bilinearly resized (align_corners False) to this size
            when it has another one. Deep3DFaceRecon was trained at 224; the HiFiFace-pytorch
            release feeds its 256 crops unresized, which is `input_size=256`.
        coeff_dims (sequence of int, (80, 64, 80, 3, 27, 2, 1)): output size of each 1×1 head,
            concatenated in this order (id, exp, tex, angle, gamma, txy, tz).

    Precision: runs in its weights' dtype (fp32) also under autocast (see `full_precision`); set the
    attribute `keep_full_precision = False` to let autocast choose (only to measure what it saves).
    """

    keep_full_precision = True

    def __init__(self, input_size: int = 224, coeff_dims: Sequence[int] = COEFF_DIMS):
        super().__init__()
        self.input_size = input_size
        self.backbone = ResNet50Features()
        channels = self.backbone.out_channels
        self.final_layers = nn.ModuleList(nn.Conv2d(channels, n, kernel_size=1) for n in coeff_dims)
        self.num_coeffs = sum(coeff_dims)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, 257) of faces (B, 3, H, W), RGB in [0, 1] (no normalisation)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        if self.keep_full_precision and torch.is_autocast_enabled(image.device.type):
            no_autocast, image = full_precision(image, self.backbone.conv1.weight)
            with no_autocast:
                return self._regress(image)
        return self._regress(image)

    def _regress(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2:] != (self.input_size, self.input_size):
            image = F.interpolate(image, size=self.input_size, mode="bilinear", align_corners=False)
        features = self.backbone(image)
        return torch.cat([head(features) for head in self.final_layers], dim=1).flatten(1)


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """R = Rz·Ry·Rx (B, 3, 3) from Euler angles (B, 3) = (x, y, z) in radians, as Deep3DFaceRecon."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def matrix(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=-1).reshape(*x.shape, 3, 3)

    rot_x = matrix(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    rot_y = matrix(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rot_z = matrix(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return rot_z @ rot_y @ rot_x


class BFMLandmarks(
    nn.Module,
    HubMixin,
    license="other",
    license_name="basel-face-model",
    license_link="https://faces.dmi.unibas.ch/bfm/",
    tags=["hififace", "3dmm", "basel-face-model", "landmarks"],
):
    """The 68-landmark part of the Basel Face Model 2009 as Deep3DFaceRecon uses it: coefficients → pixels.

    The BFM is under the Basel Face Model licence (registration, non-commercial): hififace never
    ships it; convert your own `BFM_model_front.mat` with `BFMLandmarks.from_mat` or
    `hififace convert bfm`. Buffers: `mean_shape` (68, 3), recentred by the mean over all BFM
    vertices; `id_base` (68, 3, num_id); `exp_base` (68, 3, num_exp).

    Args:
        num_id (int, 80): identity basis size.
        num_exp (int, 64): expression basis size.
        focal (float, 1015.0): focal length of the pinhole camera, in pixels.
        center (float, 112.0): principal point (both axes), in pixels of the 224 frame.
        camera_distance (float, 10.0): distance of the camera from the origin along +z.

    Precision: projects in the buffers' dtype (fp32) also under autocast (see `full_precision`);
    `keep_full_precision = False` lets autocast choose (only to measure what it saves).
    """

    keep_full_precision = True

    def __init__(
        self,
        num_id: int = 80,
        num_exp: int = 64,
        focal: float = 1015.0,
        center: float = 112.0,
        camera_distance: float = 10.0,
    ):
        super().__init__()
        self.focal = focal
        self.center = center
        self.camera_distance = camera_distance
        self.register_buffer("mean_shape", torch.zeros(NUM_LANDMARKS, 3))
        self.register_buffer("id_base", torch.zeros(NUM_LANDMARKS, 3, num_id))
        self.register_buffer("exp_base", torch.zeros(NUM_LANDMARKS, 3, num_exp))

    @classmethod
    def from_mat(cls, path: str | Path) -> BFMLandmarks:
        """Read Deep3DFaceRecon's `BFM_model_front.mat` (fields meanshape, idBase, exBase, keypoints)."""
        from scipy.io import loadmat

        mat = loadmat(str(path))
        missing = [k for k in ("meanshape", "idBase", "exBase", "keypoints") if k not in mat]
        if missing:
            raise ValueError(f"{path} is not a BFM_model_front.mat: no field {', '.join(missing)}")
        mean = torch.from_numpy(mat["meanshape"].astype("float64")).reshape(-1, 3)
        num_vertices = mean.shape[0]
        id_base = torch.from_numpy(mat["idBase"].astype("float64")).reshape(num_vertices, 3, -1)
        exp_base = torch.from_numpy(mat["exBase"].astype("float64")).reshape(num_vertices, 3, -1)
        keypoints = torch.from_numpy(mat["keypoints"].astype("int64")).reshape(-1) - 1  # 1-based in the file
        if keypoints.numel() != NUM_LANDMARKS:
            raise ValueError(f"{path}: expected {NUM_LANDMARKS} keypoints, got {keypoints.numel()}")
        mean = mean - mean.mean(dim=0, keepdim=True)  # recentre on all vertices, then keep the 68
        model = cls(num_id=id_base.shape[-1], num_exp=exp_base.shape[-1])
        model.mean_shape.copy_(mean[keypoints])
        model.id_base.copy_(id_base[keypoints])
        model.exp_base.copy_(exp_base[keypoints])
        return model

    def shape(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Landmark vertices (B, 68, 3) of the face model: mean + B_id·id + B_exp·exp."""
        id_part = torch.einsum("kdi,bi->bkd", self.id_base, coeff_part(coeffs, "id"))
        exp_part = torch.einsum("kde,be->bkd", self.exp_base, coeff_part(coeffs, "exp"))
        return self.mean_shape + id_part + exp_part

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        """The 68 landmarks (B, 68, 2), in pixels of the 224 frame, of coefficients (B, 257).

        Like Deep3DFaceRecon's `compute_for_render`, v grows with the model's y axis (upwards),
        i.e. it is not flipped to image rows (its landmark loss flips the ground truth instead).
        """
        if coeffs.ndim != 2 or coeffs.shape[1] != NUM_COEFFS:
            raise ValueError(f"expected coefficients of shape (B, {NUM_COEFFS}), got {tuple(coeffs.shape)}")
        if self.keep_full_precision and torch.is_autocast_enabled(coeffs.device.type):
            no_autocast, coeffs = full_precision(coeffs, self.mean_shape)
            with no_autocast:
                return self._project(coeffs)
        return self._project(coeffs)

    def _project(self, coeffs: torch.Tensor) -> torch.Tensor:
        rotation = rotation_matrix(coeff_part(coeffs, "angle"))
        points = self.shape(coeffs) @ rotation.transpose(1, 2) + coeff_part(coeffs, "trans").unsqueeze(1)
        x, y, z = points.unbind(-1)
        z = self.camera_distance - z  # camera at +camera_distance on z, looking at the origin
        return torch.stack([self.focal * x / z + self.center, self.focal * y / z + self.center], dim=-1)
