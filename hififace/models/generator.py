"""The HifiFace generator: encoder, decoder and Semantic Facial Fusion module.

HifiFace: 3D Shape and Semantic Prior Guided High Fidelity Face Swapping (Wang et al., IJCAI 2021),
https://arxiv.org/abs/2106.09965. Figure 2 of the paper; the structure is the one of the public
HiFiFace-pytorch release (DESIGN §2), so its weights load through `hififace convert hififace-pytorch`.
The other public release, maum-ai/hififace (https://github.com/maum-ai/hififace), shares the encoder,
decoder and priors but has its own SFF module: `HifiFace(sff="maum-ai")` builds that one
(`MaumSemanticFacialFusion`; weights through `hififace convert maum-ai`).

Mask semantics differ between the two SFF variants (`SFF_VARIANTS`):

- "hififace-pytorch": M_r and M_low are sigmoids, in (0, 1): blending weights.
- "maum-ai": M_r and M_low are tanh outputs, in (-1, 1). They are not probabilities: where a mask is
  negative the release's blend m·x + (1 − m)·y extrapolates past y. I_r and I_low are returned as the
  release computes them; whoever composites with a mask clamps it to [0, 1] first (the pipeline
  converts every output with a clamp to [0, 1]).

Conventions: images are RGB float NCHW in [0, 1]; S is the image size (256 or 512).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hififace.hub import HubMixin
from hififace.priors.identity import IdentityCode, ShapeAwareIdentity

LRELU_SLOPE = 0.2
SUPPORTED_SIZES = (256, 512)
# SFF variant -> (range of its masks, how the release resizes faces for ArcFace)
SFF_VARIANTS: dict[str, tuple[tuple[float, float], str]] = {
    "hififace-pytorch": ((0.0, 1.0), "bicubic"),
    "maum-ai": ((-1.0, 1.0), "bilinear"),
}
ARCFACE_RESIZE_MODES = ("bicubic", "bilinear")


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x


class ResBlock(nn.Module):
    """Pre-activation residual block with instance norm.

    main = IN → LReLU → conv3×3 → [resample] → IN → LReLU → conv3×3; skip = conv1×1 → [resample].

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        resample (str | None, None): "down" (2×2 average pooling), "up" (bilinear ×2) or None.
    """

    def __init__(self, in_channels: int, out_channels: int, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_lrelu(F.instance_norm(x)))
        h = self.conv2(_lrelu(F.instance_norm(_resample(h, self.resample))))
        return h + _resample(self.skip(x), self.resample)


class AdaIN(nn.Module):
    """Adaptive instance norm driven by the identity vector: scale(v) · IN(x) + shift(v).

    The scale is used as predicted (not 1 + scale), as in the public release.
    """

    def __init__(self, channels: int, identity_dim: int):
        super().__init__()
        self.scale = nn.Linear(identity_dim, channels)
        self.shift = nn.Linear(identity_dim, channels)

    def forward(self, x: torch.Tensor, v_sid: torch.Tensor) -> torch.Tensor:
        scale = self.scale(v_sid)[:, :, None, None]
        shift = self.shift(v_sid)[:, :, None, None]
        return scale * F.instance_norm(x) + shift


class AdaINResBlock(nn.Module):
    """Residual block whose normalisations are AdaIN on the identity vector.

    main = AdaIN → LReLU → conv3×3 → [up] → AdaIN → LReLU → conv3×3; skip = conv1×1 → [up].
    """

    def __init__(self, in_channels: int, out_channels: int, identity_dim: int, upsample: bool = False):
        super().__init__()
        self.resample = "up" if upsample else None
        self.adain1 = AdaIN(in_channels, identity_dim)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.adain2 = AdaIN(out_channels, identity_dim)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, v_sid: torch.Tensor) -> torch.Tensor:
        h = _resample(self.conv1(_lrelu(self.adain1(x, v_sid))), self.resample)
        h = self.conv2(_lrelu(self.adain2(h, v_sid)))
        return h + _resample(self.skip(x), self.resample)


class Encoder(nn.Module):
    """Encodes the target: conv3×3, then residual blocks down to an S/32 bottleneck.

    Returns (z_enc, bottleneck): z_enc is the fusion-resolution feature (S/4 at 256, S/8 at 512).
    """

    def __init__(self, channels: list[int], downsample: list[bool], fusion_index: int):
        super().__init__()
        self.fusion_index = fusion_index
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            ResBlock(cin, cout, "down" if down else None)
            for cin, cout, down in zip(channels[:-1], channels[1:], downsample, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv_in(x)
        z_enc = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.fusion_index:
                z_enc = x
        return z_enc, x


class Decoder(nn.Module):
    """AdaIN residual blocks from the bottleneck up to the fusion resolution (z_dec)."""

    def __init__(self, channels: list[int], upsample: list[bool], identity_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            AdaINResBlock(cin, cout, identity_dim, up)
            for cin, cout, up in zip(channels[:-1], channels[1:], upsample, strict=True)
        )

    def forward(self, x: torch.Tensor, v_sid: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, v_sid)
        return x


class SemanticFacialFusion(nn.Module):
    """Semantic Facial Fusion module (paper §3.2, Eq. 2-4).

    Blends decoder and encoder features with a learned low-resolution mask M_low, decodes the
    low-resolution result I_low, upsamples to S with F_up and blends the output I_out into the
    target with the predicted mask M_r.
    """

    def __init__(self, channels: int, identity_dim: int, num_upsample: int):
        super().__init__()
        self.sigma = ResBlock(channels, channels)
        self.mask_low_head = nn.Conv2d(channels, 1, 3, padding=1)
        self.fuse_blocks = nn.ModuleList(AdaINResBlock(channels, channels, identity_dim) for _ in range(2))
        self.image_low_head = nn.Conv2d(channels, 3, 3, padding=1)
        self.upsample = nn.Sequential(*(ResBlock(channels, channels, "up") for _ in range(num_upsample)))
        self.image_head = nn.Conv2d(channels, 3, 3, padding=1)
        self.mask_head = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(
        self, target: torch.Tensor, z_enc: torch.Tensor, z_dec: torch.Tensor, v_sid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        mask_low = torch.sigmoid(self.mask_low_head(z_dec))
        z_fuse = mask_low * z_dec + (1 - mask_low) * self.sigma(z_enc)  # Eq. 2
        z = z_fuse
        for block in self.fuse_blocks:
            z = block(z, v_sid)

        # The public release applies these LeakyReLUs in place, so F_up sees LReLU(z) and the mask
        # head sees LReLU(h); its weights were trained that way, so we keep that data flow.
        a = _lrelu(z)
        target_low = F.interpolate(target, size=z.shape[-2:], mode="nearest")
        image_low = mask_low * self.image_low_head(a) + (1 - mask_low) * target_low  # Eq. 3

        b = _lrelu(self.upsample(a))
        image_out = self.image_head(b)
        mask = torch.sigmoid(self.mask_head(b))
        image = mask * image_out + (1 - mask) * target  # Eq. 4
        return dict(image=image, image_low=image_low, mask=mask, mask_low=mask_low, image_out=image_out)


class MaumSemanticFacialFusion(nn.Module):
    """The SFF module of maum-ai/hififace's release (`SemanticFacialFusionModule` there).

    Same equations as `SemanticFacialFusion`, other layers: M_low = tanh(ResBlock(C → 1)(z_dec));
    one AdaIN residual block C → C + 3 after the blend, whose first 3 channels are the raw I_low and
    the other C the features for F_up; F_up is four residual blocks C → C/4 (up) → C/16 (up) → 8 → 4,
    whose channel 0 gives M_r = tanh(·) and channels 1-3 the raw I_out. No activation on images.
    Masks range over (-1, 1) (module docstring).

    Args:
        channels (int): C, the fusion-resolution width (256 in the release).
        identity_dim (int): size of v_sid.
        num_upsample (int): upsampling blocks in F_up (2 at 256; 3 at 512, an extra C/16 block).
    """

    def __init__(self, channels: int, identity_dim: int, num_upsample: int):
        super().__init__()
        self.sigma = ResBlock(channels, channels)
        self.mask_low_head = ResBlock(channels, 1)
        self.fuse_blocks = nn.ModuleList([AdaINResBlock(channels, channels + 3, identity_dim)])
        # The release's widths at C = 256; the floor of 8 keeps narrow test configs non-degenerate.
        wide, narrow = max(channels // 4, 8), max(channels // 16, 8)
        widths = [channels, wide] + [narrow] * (num_upsample - 1) + [8, 4]
        self.upsample = nn.Sequential(
            *(
                ResBlock(cin, cout, "up" if i < num_upsample else None)
                for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            )
        )

    def forward(
        self, target: torch.Tensor, z_enc: torch.Tensor, z_dec: torch.Tensor, v_sid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        mask_low = torch.tanh(self.mask_low_head(z_dec))
        z_fuse = mask_low * z_dec + (1 - mask_low) * self.sigma(z_enc)  # Eq. 2
        z = self.fuse_blocks[0](z_fuse, v_sid)
        image_low_out, z = z[:, :3], z[:, 3:]
        target_low = F.interpolate(target, size=z.shape[-2:], mode="nearest")
        image_low = mask_low * image_low_out + (1 - mask_low) * target_low  # Eq. 3

        h = self.upsample(z)
        mask, image_out = torch.tanh(h[:, :1]), h[:, 1:]
        image = mask * image_out + (1 - mask) * target  # Eq. 4
        return dict(image=image, image_low=image_low, mask=mask, mask_low=mask_low, image_out=image_out)


class ResizedIdentity(ShapeAwareIdentity):
    """`ShapeAwareIdentity` with another ArcFace resize and, optionally, a renormalised identity mix.

    maum-ai's release resizes the face to 112 bilinearly (HiFiFace-pytorch: bicubic) and, when it
    interpolates identities, L2-normalises b·v_s + (1 − b)·v_t again. The weights are the same
    modules under the same names; only the computation of v_id changes.

    Args:
        arcface_resize (str): interpolation mode of the resize to 112 (align_corners False).
        renormalise_mix (bool): L2-normalise interpolated identities (maum-ai) or not (HiFiFace-pytorch).
        arcface_depth, face3d_input_size, coeff_dims, embedding_dim: as `ShapeAwareIdentity`.
    """

    def __init__(
        self,
        arcface_resize: str,
        renormalise_mix: bool,
        arcface_depth: int = 100,
        face3d_input_size: int = 256,
        coeff_dims: list[int] | None = None,
        embedding_dim: int = 512,
    ):
        super().__init__(arcface_depth, face3d_input_size, coeff_dims, embedding_dim)
        self.arcface_resize = arcface_resize
        self.renormalise_mix = renormalise_mix

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised ArcFace embeddings of aligned faces (B, 3, S, S) in [0, 1]."""
        x = F.interpolate((images - 0.5) / 0.5, size=112, mode=self.arcface_resize, align_corners=False)
        return F.normalize(self.arcface(x), dim=-1, p=2)

    def encode(self, images: torch.Tensor) -> IdentityCode:
        return IdentityCode(coeffs=self.face3d(images), embedding=self.embed(images))

    def fuse(
        self,
        source: IdentityCode,
        target: torch.Tensor,
        shape_strength: float = 1.0,
        identity_strength: float = 1.0,
    ) -> torch.Tensor:
        if identity_strength != 1.0:
            mixed = identity_strength * source.embedding + (1 - identity_strength) * self.embed(target)
            if self.renormalise_mix:
                mixed = F.normalize(mixed, dim=-1, p=2)
            source = IdentityCode(coeffs=source.coeffs, embedding=mixed)
        return super().fuse(source, target, shape_strength, 1.0)


@dataclass
class HifiFaceOutput:
    """What `HifiFace.forward` returns.

    Attributes:
        image: I_r, the swapped face blended into the target, (B, 3, S, S).
        image_low: I_low, the low-resolution swap, (B, 3, S/4, S/4) at 256, (B, 3, S/8, S/8) at 512.
        mask: M_r, the predicted face mask, (B, 1, S, S), in `HifiFace.mask_range`: (0, 1) for the
            "hififace-pytorch" SFF, (-1, 1) (tanh, not a probability) for "maum-ai".
        mask_low: M_low, the feature-fusion mask at I_low's resolution, same range as `mask`.
        image_out: I_out, the raw decoded face before blending with M_r, (B, 3, S, S).
        identity: v_sid, the 3D shape-aware identity vector the decoder was driven by, (B, 769).
    """

    image: torch.Tensor
    image_low: torch.Tensor
    mask: torch.Tensor
    mask_low: torch.Tensor
    image_out: torch.Tensor
    identity: torch.Tensor


class HifiFace(
    nn.Module,
    HubMixin,
    license="mit",
    tags=["hififace", "face-swap", "image-to-image"],
    pipeline_tag="image-to-image",
):
    """HifiFace face-swapping generator with its frozen 3D shape-aware identity extractor.

    `HifiFace()` is the full 256 model of the public HiFiFace-pytorch release (151 M values, 61.9 M
    trainable); `HifiFace(sff="maum-ai")` that of maum-ai/hififace (146.9 M values, 57.6 M trainable).

    Args:
        image_size (int, 256): 256, or 512 (one more down block in the encoder, one more up block
            in F_up; fusion stays at 64×64 and I_low is S/8).
        base_channels (int, 64): encoder width after its first conv; widths double per block.
        max_channels (int, 512): widest encoder/decoder feature.
        arcface_depth (int, 100): IResNet depth of the ArcFace identity network (50 or 100 usually).
        face3d_input_size (int, 256): size the 3DMM regressor sees (the release feeds the 256 crop).
        coeff_dims (list[int], [80, 64, 80, 3, 27, 2, 1]): 3DMM coefficient groups (id, exp, tex,
            angle, gamma, xy, z); the first group is the identity (shape) part of c_fuse.
        embedding_dim (int, 512): ArcFace embedding size.
        sff (str, "hififace-pytorch"): SFF variant, a key of `SFF_VARIANTS`: "hififace-pytorch"
            (sigmoid masks) or "maum-ai" (tanh masks in (-1, 1), `MaumSemanticFacialFusion`).
        arcface_resize (str | None, None): how faces are resized to ArcFace's 112 ("bicubic" or
            "bilinear"); None takes the variant's release ("bicubic" for hififace-pytorch,
            "bilinear" for maum-ai). maum-ai also renormalises interpolated identities.
    """

    def __init__(
        self,
        image_size: int = 256,
        base_channels: int = 64,
        max_channels: int = 512,
        arcface_depth: int = 100,
        face3d_input_size: int = 256,
        coeff_dims: list[int] | tuple[int, ...] = (80, 64, 80, 3, 27, 2, 1),
        embedding_dim: int = 512,
        sff: str = "hififace-pytorch",
        arcface_resize: str | None = None,
    ):
        super().__init__()
        if image_size not in SUPPORTED_SIZES:
            raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}, got {image_size}")
        if sff not in SFF_VARIANTS:
            raise ValueError(f"sff must be one of {sorted(SFF_VARIANTS)}, got {sff!r}")
        if arcface_resize is not None and arcface_resize not in ARCFACE_RESIZE_MODES:
            raise ValueError(f"arcface_resize must be one of {ARCFACE_RESIZE_MODES}, got {arcface_resize!r}")
        self.image_size = image_size
        self.sff_variant = sff
        self.mask_range, release_resize = SFF_VARIANTS[sff]
        priors = dict(
            arcface_depth=arcface_depth,
            face3d_input_size=face3d_input_size,
            coeff_dims=list(coeff_dims),
            embedding_dim=embedding_dim,
        )
        if sff == "hififace-pytorch" and arcface_resize in (None, "bicubic"):
            self.identity = ShapeAwareIdentity(**priors)
        else:
            resize = arcface_resize or release_resize
            self.identity = ResizedIdentity(resize, renormalise_mix=sff == "maum-ai", **priors)
        identity_dim = self.identity.dim

        extra = {256: 0, 512: 1}[image_size]  # the 512 layout adds one resolution level
        widths = [min(base_channels * 2**i, max_channels) for i in range(1, 8)]
        encoder_channels = [base_channels] * (1 + extra) + widths
        downsample = [True] * (5 + extra) + [False, False]
        fusion_channels = encoder_channels[2 + extra]  # output of the encoder block that gives z_enc
        self.encoder = Encoder(encoder_channels, downsample, fusion_index=1 + extra)
        self.decoder = Decoder(
            [encoder_channels[-1]] + [max_channels] * 4 + [fusion_channels],
            [False, False, True, True, True],
            identity_dim,
        )
        fusion = SemanticFacialFusion if sff == "hififace-pytorch" else MaumSemanticFacialFusion
        self.sff = fusion(fusion_channels, identity_dim, num_upsample=2 + extra)

    @classmethod
    def from_priors(
        cls,
        arcface: str,
        face3d: str,
        image_size: int = 256,
        base_channels: int = 64,
        max_channels: int = 512,
        sff: str = "hififace-pytorch",
    ) -> HifiFace:
        """A new, untrained generator around converted priors: the start of training from scratch.

        Args:
            arcface (str): `ArcFace` folder or Hub id (`hififace convert arcface`).
            face3d (str): `Face3DRegressor` folder or Hub id (`hififace convert deep3d`); its
                `input_size` becomes `face3d_input_size`.
            image_size, base_channels, max_channels, sff: as in the constructor.
        """
        from hififace.priors.arcface import ArcFace
        from hififace.priors.face3d import Face3DRegressor

        f_id, f_3d = ArcFace.from_pretrained(arcface), Face3DRegressor.from_pretrained(face3d)
        model = cls(
            image_size=image_size,
            base_channels=base_channels,
            max_channels=max_channels,
            arcface_depth=f_id.depth,
            face3d_input_size=f_3d.input_size,
            coeff_dims=[layer.out_channels for layer in f_3d.final_layers],
            embedding_dim=f_id.fc.out_features,
            sff=sff,
        )
        model.identity.arcface.load_state_dict(f_id.state_dict())
        model.identity.face3d.load_state_dict(f_3d.state_dict())
        return model

    def generate_model_card(self, *args, **kwargs):
        card = super().generate_model_card(*args, **kwargs)
        if self.sff_variant == "maum-ai":
            # maum-ai/hififace is BSD-3-Clause, and its ArcFace part is insightface's
            # (non-commercial research only): the class-wide "mit" does not hold for these weights.
            card.data.license = "other"
            card.data.license_name = "bsd-3-clause-and-insightface-non-commercial"
            card.data.license_link = "https://github.com/maum-ai/hififace/blob/main/LICENSE"
        return card

    def train(self, mode: bool = True) -> HifiFace:
        super().train(mode)
        self.identity.eval()  # frozen priors never leave eval mode
        return self

    def encode_source(self, source: torch.Tensor) -> IdentityCode:
        """The source's 3DMM coefficients and ArcFace embedding, to reuse over many targets."""
        return self.identity.encode(self._check_image(source, "source"))

    def forward(
        self,
        source: torch.Tensor | IdentityCode,
        target: torch.Tensor,
        shape_strength: float = 1.0,
        identity_strength: float = 1.0,
    ) -> HifiFaceOutput:
        """Swap the source's identity and face shape onto the target.

        Args:
            source (Tensor | IdentityCode): aligned source faces (B, 3, S, S) in [0, 1], or the
                result of `encode_source` (batch 1 or B) to skip recomputing the priors.
            target (Tensor): aligned target faces (B, 3, S, S) in [0, 1].
            shape_strength (float, 1.0): a in c_id = a·c_s + (1 − a)·c_t (0 keeps the target's shape).
            identity_strength (float, 1.0): b in v_id = b·v_s + (1 − b)·v_t.
        """
        target = self._check_image(target, "target")
        if not isinstance(source, IdentityCode):
            source = self.encode_source(source)
        v_sid = self.identity.fuse(source, target, shape_strength, identity_strength)
        return HifiFaceOutput(**self.generate(target, v_sid), identity=v_sid)

    def generate(self, target: torch.Tensor, v_sid: torch.Tensor) -> dict[str, torch.Tensor]:
        """The generator alone (encoder, decoder, SFF) for a given identity vector, without the priors.

        What `forward` runs after computing v_sid; the ONNX export and the benchmarks call it directly.
        The inputs are not checked.

        Args:
            target (Tensor): aligned target faces (B, 3, S, S) in [0, 1].
            v_sid (Tensor): identity vectors (B, 769), e.g. `HifiFaceOutput.identity` or `identity.fuse`.

        Returns a dict with the `HifiFaceOutput` images: image, image_low, mask, mask_low, image_out.
        """
        z_enc, bottleneck = self.encoder(target)
        z_dec = self.decoder(bottleneck, v_sid)
        return self.sff(target, z_enc, z_dec, v_sid)

    def _check_image(self, x: torch.Tensor, name: str) -> torch.Tensor:
        size = self.image_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a (B, 3, {size}, {size}) tensor, got {shape}")
        if x.shape[-2:] != (size, size):
            raise ValueError(
                f"{name} is {x.shape[-1]}×{x.shape[-2]} but this model takes {size}×{size} aligned faces"
            )
        # In training a non-finite input shows up as a non-finite loss, which the trainer handles.
        if not self.training and not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return x
