"""The HifiFace discriminator: the StarGAN v2 discriminator with a single output.

HifiFace (Wang et al., IJCAI 2021, https://arxiv.org/abs/2106.09965, Sec. 3.3) trains its generator
against the discriminator of StarGAN v2 (Choi et al., "StarGAN v2: Diverse Image Synthesis for
Multiple Domains", CVPR 2020, https://arxiv.org/abs/1912.01865), with one logit per image instead of
one per domain:

    conv3x3(3 -> C)
    N x ResBlk(down), channels doubling from C up to `max_channels`, N = log2(S) - 2
    LReLU -> conv4x4 (valid, 4x4 -> 1x1) -> LReLU -> conv1x1 -> 1 logit

ResBlk is a pre-activation residual block without normalisation, as in StarGAN v2:
main = LReLU -> conv3x3(cin -> cin) -> avgpool2 -> LReLU -> conv3x3(cin -> cout);
skip = conv1x1(cin -> cout, no bias, only when channels change) -> avgpool2;
out = (main + skip) / sqrt(2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hififace.hub import HubMixin

_SLOPE = 0.2


class DownResBlock(nn.Module):
    """Pre-activation residual block that halves the resolution (StarGAN v2 `ResBlk`, no norm)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, _SLOPE))
        h = self.conv2(F.leaky_relu(F.avg_pool2d(h, 2), _SLOPE))
        s = x if self.skip is None else self.skip(x)
        s = F.avg_pool2d(s, 2)
        # Dividing by sqrt(2) keeps the variance of the sum close to that of each branch.
        return (h + s) / math.sqrt(2.0)


class Discriminator(
    nn.Module,
    HubMixin,
    license="mit",
    tags=["hififace", "face-swap", "gan-discriminator"],
):
    """StarGAN v2 discriminator giving one real/fake logit per image.

    Args:
        image_size (int, 256): side S of the square input; a power of two, at least 8. The number of
            downsampling blocks is log2(S) - 2, so the map before the 4x4 convolution is 4x4.
        base_channels (int, 64): channels of the first convolution; each block doubles them...
        max_channels (int, 512): ...up to this many.

    Input: RGB images in [0, 1], shape (B, 3, S, S); they are mapped to [-1, 1] inside, the range
    StarGAN v2 was trained on. Output: logits of shape (B,) (positive = "real").
    """

    def __init__(self, image_size: int = 256, base_channels: int = 64, max_channels: int = 512) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        if base_channels < 1 or max_channels < base_channels:
            raise ValueError(
                f"need 1 <= base_channels <= max_channels, got {base_channels} and {max_channels}"
            )
        self.image_size = image_size

        self.conv_in = nn.Conv2d(3, base_channels, 3, padding=1)
        blocks = []
        channels = base_channels
        for _ in range(int(math.log2(image_size)) - 2):
            out_channels = min(channels * 2, max_channels)
            blocks.append(DownResBlock(channels, out_channels))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.conv_4x4 = nn.Conv2d(channels, channels, 4)
        self.conv_out = nn.Conv2d(channels, 1, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation for leaky-ReLU inputs, zero biases (as StarGAN v2 initialises)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=_SLOPE, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B,) for RGB images in [0, 1] of shape (B, 3, S, S)."""
        s = self.image_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (s, s):
            raise ValueError(f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}")
        h = self.blocks(self.conv_in(images * 2.0 - 1.0))
        h = self.conv_4x4(F.leaky_relu(h, _SLOPE))
        h = self.conv_out(F.leaky_relu(h, _SLOPE))
        return h.flatten()
