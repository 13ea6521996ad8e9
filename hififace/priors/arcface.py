"""ArcFace identity network F_id: insightface's arcface_torch IResNet.

ArcFace: Additive Angular Margin Loss for Deep Face Recognition (Deng et al., CVPR 2019),
https://arxiv.org/abs/1801.07698; code and weights: https://github.com/deepinsight/insightface
(`recognition/arcface_torch`). Parameter names are those of arcface_torch's `backbone.pth`, so its
files load after a plain conversion (`hififace convert arcface`).

The network sees a 112×112 face in [-1, 1]: a 3×3 stem, four stages of "improved" basic blocks
(BN → conv → BN → PReLU → conv(stride) → BN, plus the shortcut), then BN → flatten → dropout →
fc (512·7·7 → 512) → BatchNorm1d. HifiFace uses the L2-normalised output as v_id.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hififace.hub import HubMixin

# blocks per stage for each depth, as in arcface_torch's iresnet18 ... iresnet200
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
INPUT_SIZE = 112
STAGE_WIDTHS = (64, 128, 256, 512)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Improved residual block; the stride sits on the second convolution."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(cout, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class ArcFace(
    nn.Module,
    HubMixin,
    license="other",
    license_name="insightface-non-commercial-research",
    license_link="https://github.com/deepinsight/insightface#license",
    tags=["hififace", "face-recognition", "arcface", "iresnet"],
):
    """insightface arcface_torch IResNet: a face image → a 512-d identity embedding.

    The arcface_torch code is MIT-licensed; insightface's pretrained models (and the data they were
    trained on) are for non-commercial research only, which is why the model card says "other".
    Precision: fp32 by default; inside a bf16/fp16 autocast region (mixed-precision training or
    inference) its convolutions and linear layers follow autocast like the generator's. Only the
    3DMM path (F_3d, BFM landmarks, L_shape) is held in fp32, see `hififace.priors.face3d`.

    Args:
        depth (int, 100): IResNet depth, one of 18, 34, 50, 100, 200.
        embedding_dim (int, 512): size of the embedding (arcface_torch's `num_features`).
        dropout (float, 0.0): dropout before the fc layer (training only; arcface_torch's default).
    """

    def __init__(self, depth: int = 100, embedding_dim: int = 512, dropout: float = 0.0):
        super().__init__()
        if depth not in IRESNET_LAYERS:
            raise ValueError(f"depth must be one of {sorted(IRESNET_LAYERS)}, got {depth}")
        self.depth = depth
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (width, blocks) in enumerate(zip(STAGE_WIDTHS, IRESNET_LAYERS[depth], strict=True), start=1):
            stage = [IBasicBlock(cin, width, stride=2)]
            stage += [IBasicBlock(width, width) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        feature_size = INPUT_SIZE // 16
        self.fc = nn.Linear(512 * feature_size * feature_size, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        # arcface_torch keeps the scale of the last batch norm fixed at 1 during training
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised embeddings (B, embedding_dim) of faces (B, 3, 112, 112) in [-1, 1]."""
        if x.ndim != 4 or x.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected faces of shape (B, 3, 112, 112), got {tuple(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings (B, embedding_dim) of aligned faces (B, 3, H, W), RGB in [0, 1].

        As in HiFiFace-pytorch: (x − 0.5)/0.5, then bicubic resize to 112 (align_corners False,
        no antialias). Both steps are linear, so their order only matters at rounding level; this
        is the released code's order.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        x = F.interpolate((image - 0.5) / 0.5, size=INPUT_SIZE, mode="bicubic", align_corners=False)
        return F.normalize(self(x), dim=-1, p=2)
