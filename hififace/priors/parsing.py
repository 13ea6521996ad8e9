"""Face parser: face-parsing.PyTorch's BiSeNet, 19 CelebAMask-HQ classes per pixel.

BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation (Yu et al., ECCV 2018),
https://arxiv.org/abs/1808.00897; face-parsing code and weights (`79999_iter.pth`):
https://github.com/zllrunning/face-parsing.PyTorch. HifiFace uses the parser for the ground-truth
masks of its segmentation loss and for blending.

That variant keeps only BiSeNet's context path: a ResNet-18 whose 1/8 features stand in for the
spatial path, attention refinement modules on the 1/16 and 1/32 features with a global-context
term, a feature fusion module, and three output heads. Only the main head is used at inference;
the two auxiliary heads exist so that the original checkpoint loads strictly. Parameter names are
those of `79999_iter.pth`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hififace.hub import HubMixin

# CelebAMask-HQ label of each class index, in face-parsing.PyTorch's order
CELEBAMASK_LABELS: tuple[str, ...] = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
# the inner face HifiFace swaps: skin, brows, eyes, glasses, nose, mouth, lips (not ears, neck, hair)
FACE_CLASSES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet-18 block; same names and maths as torchvision's."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 features (128, 256, 512 channels)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(F.max_pool2d(x, kernel_size=3, stride=2, padding=1))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    """conv → features re-weighted per channel by a sigmoid of their global average."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    """ResNet-18 with attention refinement and a global-context term; returns 1/8, 1/8, 1/16 features."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[-2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[-2:], mode="nearest")
        return feat8, self.conv_head16(up16), up32


class FeatureFusion(nn.Module):
    """Concatenate, 1×1 conv, then add a squeeze-and-excitation re-weighting of the result."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, kernel_size=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, kernel_size=1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * attention + feat


class OutputHead(nn.Module):
    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class FaceParser(
    nn.Module,
    HubMixin,
    license="mit",
    tags=["hififace", "face-parsing", "bisenet", "image-segmentation"],
):
    """face-parsing.PyTorch's BiSeNet: face image → per-pixel logits of the CelebAMask-HQ classes.

    face-parsing.PyTorch is MIT-licensed. Labels are listed in `CELEBAMASK_LABELS`.

    Args:
        num_classes (int, 19): number of classes.
    """

    def __init__(self, num_classes: int = 19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, num_classes)
        # auxiliary heads of training, kept for strict loading of the original checkpoint
        self.conv_out16 = OutputHead(128, 64, num_classes)
        self.conv_out32 = OutputHead(128, 64, num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Main-head logits (B, num_classes, H, W) of images (B, 3, H, W), RGB in [0, 1].

        ImageNet normalisation happens here; the original was trained on 512×512 faces.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(image.shape)}")
        feat8, context8, _ = self.cp((image - self.mean) / self.std)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=True)

    @torch.no_grad()
    def parse(self, image: torch.Tensor) -> torch.Tensor:
        """Class index (B, H, W) of each pixel of images (B, 3, H, W), RGB in [0, 1]."""
        return self(image).argmax(dim=1)


def face_mask(labels: torch.Tensor, classes: tuple[int, ...] = FACE_CLASSES) -> torch.Tensor:
    """Float mask (B, 1, H, W), 1 where `labels` (B, H, W) is one of `classes`."""
    wanted = torch.as_tensor(classes, device=labels.device)
    return torch.isin(labels, wanted).unsqueeze(1).float()
