"""HifiFace training objective: one small function per term, and one module that weighs them.

The equations are those of the loss section of the HifiFace paper (Wang et al., IJCAI 2021,
https://arxiv.org/abs/2106.09965, Sec. 3.3); each docstring names the term it implements. The full
objective is L = L_sid + L_real:

    L = λ_shape L_shape + λ_id L_id + L_adv + λ_seg L_seg + λ_rec L_rec + λ_cyc L_cyc + λ_lpips L_lpips

with λ = 0.5, 5, 1, 100, 20, 1, 5. The adversarial part follows StarGAN v2 (Choi et al., CVPR 2020):
non-saturating logistic loss and an R1 penalty on real images.

Conventions: images are RGB in [0, 1], NCHW; "L1" is the mean absolute difference over all elements
(`F.l1_loss`), so terms do not scale with the image size; losses are scalars averaged over the batch.

Precision under bf16/fp16 autocast: the shape path (F_3d, the BFM projection, L_shape) runs in fp32
(`hififace.priors.face3d.full_precision`), and the R1 penalty is computed in fp32 from an inner
gradient that can be loss-scaled (`r1_penalty`'s `grad_scale`), as in PyTorch's AMP recipe for
gradient penalties.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

try:
    import kornia.morphology as _morphology
except ImportError:  # kornia is optional: a flat square dilation is also a max-pool
    _morphology = None

# v_sid = [c_fuse (257 3DMM coefficients) | v_id(I_s) (512, L2-normalised)]
_NUM_COEFFS = 257

Tensor = torch.Tensor


def _check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} differ in shape")


def _resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize, align_corners False; antialiased when shrinking (a box-like prefilter, so a
    downsampled target is the local average rather than an aliased sample)."""
    size = tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _pair_weights(same_identity: Tensor, batch: int, like: Tensor) -> Tensor:
    """(B,) 0/1 weights of the same-identity pairs, as `like`'s dtype and device."""
    if same_identity.shape != (batch,):
        raise ValueError(f"same_identity must have shape ({batch},), got {tuple(same_identity.shape)}")
    return same_identity.to(device=like.device, dtype=like.dtype)


def _at_least_fp32(x: Tensor) -> Tensor:
    """`x` in fp32 when it is in a 16-bit float type (fp64 stays fp64)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _shrink_like_generator(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Nearest-neighbour resize: the generator fills I_low's background with exactly this of I_t
    (`SemanticFacialFusion`, Eq. 3), so L_rec's target for I_low must be the same samples or it would
    leave a residual where M_low = 0 and push M_low up."""
    return F.interpolate(x, size=tuple(size), mode="nearest")


def _mean_over_pairs(per_sample: Tensor, weights: Tensor, num_pairs: Tensor | float | None) -> Tensor:
    # With no same-identity pair this is 0 and still part of the graph (every rank of a distributed
    # run then backpropagates through the same terms).
    if num_pairs is None:
        num_pairs = weights.sum().clamp(min=1.0)
    return (per_sample * weights).sum() / num_pairs


# ----------------------------------------------------------------------------------------------
# Generator terms


def shape_loss(q_fuse: Tensor, q_r: Tensor, q_low: Tensor) -> Tensor:
    """Shape loss L_shape, the geometric half of the paper's 3D shape-aware identity loss L_sid.

    L_shape = mean|q_fuse - q_r| + mean|q_fuse - q_low|, means over batch, points and coordinates.

    Args:
        q_fuse (Tensor (B, 68, 2)): landmarks of c_fuse (source shape, target pose and expression);
            treated as a constant (detached here).
        q_r (Tensor (B, 68, 2)): landmarks regressed from the result I_r.
        q_low (Tensor (B, 68, 2)): landmarks regressed from the low-resolution result I_low.
    """
    _check_same_shape("q_fuse", q_fuse, "q_r", q_r)
    _check_same_shape("q_fuse", q_fuse, "q_low", q_low)
    # fp32 even under autocast: the landmarks are pixel coordinates up to ~224 (see face3d.full_precision)
    q_fuse = _at_least_fp32(q_fuse.detach())
    return F.l1_loss(_at_least_fp32(q_r), q_fuse) + F.l1_loss(_at_least_fp32(q_low), q_fuse)


def identity_loss(v_source: Tensor, v_result: Tensor, v_low: Tensor) -> Tensor:
    """Identity loss L_id of the paper's L_sid: (1 - cos(v_s, v_r)) + (1 - cos(v_s, v_low)), batch mean.

    Args:
        v_source (Tensor (B, D)): ArcFace embedding of the source I_s.
        v_result (Tensor (B, D)): embedding of the result I_r.
        v_low (Tensor (B, D)): embedding of the low-resolution result I_low.
    """
    _check_same_shape("v_source", v_source, "v_result", v_result)
    _check_same_shape("v_source", v_source, "v_low", v_low)
    cos_r = F.cosine_similarity(v_source, v_result, dim=1)
    cos_low = F.cosine_similarity(v_source, v_low, dim=1)
    return (1.0 - cos_r).mean() + (1.0 - cos_low).mean()


def _logistic_real(logits: Tensor) -> Tensor:
    """-log sigmoid(logits), batch mean: the cost of an image being judged fake."""
    return F.softplus(-logits).mean()


def _logistic_fake(logits: Tensor) -> Tensor:
    """-log(1 - sigmoid(logits)), batch mean: the cost of an image being judged real."""
    return F.softplus(logits).mean()


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """Adversarial loss L_adv of the generator (non-saturating, on I_r only): E[softplus(-D(I_r))]."""
    return _logistic_real(fake_logits)


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss (StarGAN v2 Eq. 1): E[softplus(-D(real))] + E[softplus(D(fake))]."""
    return _logistic_real(real_logits) + _logistic_fake(fake_logits)


def r1_penalty(
    real_logits: Tensor, real_images: Tensor, gamma: float = 1.0, grad_scale: float = 1.0
) -> Tensor:
    """R1 gradient penalty on real images (Mescheder et al., ICML 2018; used by StarGAN v2).

    R1 = gamma / 2 * E_x ||grad_x D(x)||^2, the squared norm summed over each image's pixels and
    channels and averaged over the batch: StarGAN v2's `r1_reg` times `gamma` (its `lambda_reg`).
    x must be the image D's convolutions see, in [-1, 1] as StarGAN v2 trains: the gradient with
    respect to a [0, 1] image mapped to 2x - 1 inside D is twice as large and its square 4x.

    Mixed precision (PyTorch's AMP recipe for gradient penalties): the inner gradient is taken of the
    logits times `grad_scale` (the GradScaler's scale under fp16, so small input gradients do not
    underflow in D's fp16 backward), then unscaled; the penalty is computed in fp32 outside autocast.
    An overflow makes the penalty non-finite, which the GradScaler then handles as a skipped step.

    Args:
        real_logits (Tensor (B,)): D(real_images), computed with the graph kept.
        real_images (Tensor (B, 3, S, S)): the real batch in [-1, 1], the input of D's convolutions;
            must require grad before D is applied.
        gamma (float, 1.0): penalty weight.
        grad_scale (float, 1.0): loss scale of the inner gradient (1 outside fp16 training).
    """
    if not real_images.requires_grad:
        raise ValueError("real_images must require grad before the discriminator is applied")
    batch = real_logits.shape[0]
    with torch.autocast(real_logits.device.type, enabled=False):
        # grad of the sum = batch * grad of the mean (D treats images independently). The mean gives
        # each logit an upstream gradient of scale / batch, as D's own loss does, so the inner fp16
        # backward overflows no sooner than D's; the sum would give each logit the whole scale, which
        # overflows fp16 (largest 65504) at the GradScaler's default 2^16.
        scaled = _at_least_fp32(real_logits).mean() * grad_scale
        (grad,) = torch.autograd.grad(scaled, real_images, create_graph=True)
        grad = _at_least_fp32(grad) * (batch / grad_scale)
        return 0.5 * gamma * grad.pow(2).flatten(1).sum(1).mean()


def segmentation_loss(mask_target: Tensor, mask_low: Tensor, mask: Tensor) -> Tensor:
    """Segmentation loss L_seg of the paper's realism loss L_real.

    L_seg = L1(resize(M_tar), M_low) + L1(M_tar, M_r). M_tar is resized to M_low's size bilinearly
    (align_corners False, antialiased when shrinking), which gives soft edges matching the sigmoid
    output M_low rather than the aliased samples of nearest-neighbour resizing.

    Args:
        mask_target (Tensor (B, 1, S, S)): face mask of the target I_t in [0, 1] (dilated parsing).
        mask_low (Tensor (B, 1, s, s)): low-resolution mask M_low predicted by the generator.
        mask (Tensor (B, 1, S, S)): full-resolution mask M_r predicted by the generator.
    """
    _check_same_shape("mask_target", mask_target, "mask", mask)
    return F.l1_loss(mask_low, _resize(mask_target, mask_low.shape[-2:])) + F.l1_loss(mask, mask_target)


def reconstruction_loss(
    image: Tensor, image_low: Tensor, target: Tensor, same_identity: Tensor, num_pairs: Tensor | None = None
) -> Tensor:
    """Reconstruction loss L_rec of the paper's L_real, on same-identity pairs.

    L_rec = L1(I_r, I_t) + L1(I_low, resize(I_t)), averaged over the pairs with I_s and I_t of the
    same person (0, with a graph, when there are none). I_t is shrunk to I_low's size by the same
    nearest-neighbour sampling the generator uses for I_low's background, so a perfect I_low with
    M_low = 0 outside the face costs nothing.

    Args:
        image (Tensor (B, 3, S, S)): result I_r.
        image_low (Tensor (B, 3, s, s)): low-resolution result I_low.
        target (Tensor (B, 3, S, S)): target I_t.
        same_identity (Tensor (B,), bool or 0/1 float): which pairs share the identity.
        num_pairs (Tensor or None, None): what the sum over pairs is divided by; None: this batch's
            same-identity pairs. Data-parallel training passes the global count over the processes
            divided by their number, so that the averaged gradients are those of the global mean.
    """
    _check_same_shape("image", image, "target", target)
    weights = _pair_weights(same_identity, image.shape[0], image)
    target_low = _shrink_like_generator(target, image_low.shape[-2:])
    per_sample = (image - target).abs().flatten(1).mean(1)
    per_sample = per_sample + (image_low - target_low).abs().flatten(1).mean(1)
    return _mean_over_pairs(per_sample, weights, num_pairs)


def cycle_loss(target: Tensor, cycled: Tensor) -> Tensor:
    """Cycle loss L_cyc of the paper's L_real: L1(I_t, G(source=I_t, target=I_r)), the target's identity
    put back on the result (`cycled` is that second generator output)."""
    _check_same_shape("target", target, "cycled", cycled)
    return F.l1_loss(cycled, target)


def lpips_loss(
    lpips_fn: Callable[..., Tensor],
    image: Tensor,
    target: Tensor,
    same_identity: Tensor,
    num_pairs: Tensor | None = None,
) -> Tensor:
    """Perceptual loss L_lpips of the paper's L_real: LPIPS (Zhang et al., CVPR 2018) between I_r and I_t
    on same-identity pairs.

    Args:
        lpips_fn (callable): an `lpips.LPIPS` module (or alike); called as
            `lpips_fn(image, target, normalize=True)` since the images are in [0, 1].
        image (Tensor (B, 3, S, S)): result I_r.
        target (Tensor (B, 3, S, S)): target I_t.
        same_identity (Tensor (B,), bool or 0/1 float): which pairs share the identity.
        num_pairs (Tensor or None, None): divisor of the sum over pairs, as in `reconstruction_loss`.

    Returns the distance averaged over the same-identity pairs (0, with a graph, when there are none).
    """
    _check_same_shape("image", image, "target", target)
    weights = _pair_weights(same_identity, image.shape[0], image)
    distance = lpips_fn(image, target, normalize=True).reshape(image.shape[0])
    return _mean_over_pairs(distance, weights, num_pairs)


def dilate_mask(mask: Tensor, kernel_size: int) -> Tensor:
    """Dilate a (B, C, H, W) float mask with a flat square kernel (for M_tar at training time).

    Uses `kornia.morphology.dilation` when kornia is installed; otherwise the identical max-pool.
    Pixels outside the image are ignored (not treated as 0 or 1).

    Args:
        mask (Tensor (B, C, H, W)): float mask, usually in [0, 1].
        kernel_size (int): odd side of the square structuring element; 1 leaves the mask unchanged.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if mask.ndim != 4:
        raise ValueError(f"mask must have shape (B, C, H, W), got {tuple(mask.shape)}")
    if kernel_size == 1:
        return mask
    if _morphology is not None:
        kernel = torch.ones(kernel_size, kernel_size, device=mask.device, dtype=mask.dtype)
        return _morphology.dilation(mask, kernel)
    return F.max_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2)


# ----------------------------------------------------------------------------------------------
# The weighted objective


@dataclass
class LossWeights:
    """The λ of the full objective (paper defaults) and the R1 weight of the discriminator."""

    shape: float = 0.5
    id: float = 5.0
    adv: float = 1.0
    seg: float = 100.0
    rec: float = 20.0
    cyc: float = 1.0
    lpips: float = 5.0
    r1_gamma: float = 1.0


class SwapOutput(Protocol):
    """What `HifiFaceLoss` reads from the generator's output."""

    image: Tensor  # I_r (B, 3, S, S)
    image_low: Tensor  # I_low (B, 3, S/4, S/4) (S/8 for the 512 model)
    mask: Tensor  # M_r (B, 1, S, S)
    mask_low: Tensor  # M_low (B, 1, S/4, S/4)
    identity: Tensor  # v_sid (B, 769) = [c_fuse (257) | v_id(I_s) (512)]


ImageFn = Callable[[Tensor], Tensor]


class HifiFaceLoss(nn.Module):
    """Weighs the HifiFace terms and reports each under a stable name.

    It owns no trainable network: the frozen priors are given to the constructor (those that are
    modules are put in eval mode with `requires_grad=False`, and stay in eval mode; bound methods
    such as `arcface.embed` are used as given), the discriminator to each call (it is trained, and
    may be wrapped for distributed training). Gradients flow through the priors to the generator's
    outputs.

    Args:
        face3d (callable): images (B, 3, S, S) in [0, 1] -> 3DMM coefficients (B, 257).
        arcface_embed (callable): images (B, 3, S, S) in [0, 1] -> L2-normalised embeddings (B, 512).
        bfm (callable or None): coefficients (B, 257) -> 68 projected landmarks (B, 68, 2); None only
            with a shape weight of 0.
        lpips_fn (callable or None, None): an `lpips.LPIPS`; None leaves the LPIPS term out.
        weights (LossWeights, paper defaults): the λ of the objective and the R1 gamma; may be changed later
            through `self.weights`.
    """

    def __init__(
        self,
        face3d: ImageFn,
        arcface_embed: ImageFn,
        bfm: Callable[[Tensor], Tensor] | None,
        lpips_fn: Callable[..., Tensor] | None = None,
        weights: LossWeights | None = None,
    ) -> None:
        super().__init__()
        for prior in (face3d, arcface_embed, bfm, lpips_fn):
            if isinstance(prior, nn.Module):
                prior.requires_grad_(False).eval()
        self.face3d = face3d
        self.arcface_embed = arcface_embed
        self.bfm = bfm
        self.lpips_fn = lpips_fn
        self.weights = weights if weights is not None else LossWeights()
        self.eval()

    def train(self, mode: bool = True) -> HifiFaceLoss:
        # Nothing here is trained: the priors stay in eval mode (LPIPS would otherwise turn on dropout).
        return super().train(False)

    def generator_loss(
        self,
        out: SwapOutput,
        target: Tensor,
        mask_target: Tensor,
        same_identity: Tensor,
        *,
        discriminator: ImageFn,
        cycled: Tensor | None = None,
        num_pairs: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's objective L = L_sid + L_real.

        Args:
            out (SwapOutput): generator output for (source I_s, target I_t).
            target (Tensor (B, 3, S, S)): I_t.
            mask_target (Tensor (B, 1, S, S)): M_tar, the (dilated) face mask of I_t.
            same_identity (Tensor (B,)): which pairs share the identity (L_rec, L_lpips).
            discriminator (callable): images -> logits (B,).
            cycled (Tensor (B, 3, S, S) or None): G(source=I_t, target=I_r), computed by the caller;
                None leaves the cycle term out.
            num_pairs (Tensor or None, None): divisor of L_rec and L_lpips (see `reconstruction_loss`);
                None: this batch's same-identity pairs.

        Returns `(total, terms)`: the weighted sum (with graph) and the detached terms
        `loss/G/{shape,id,adv,seg,rec,cyc,lpips,total}` (cyc and lpips only when computed).
        """
        w = self.weights
        image, image_low = out.image, out.image_low
        # F_3d and F_id see I_low at the result's size.
        image_low_up = F.interpolate(image_low, size=image.shape[-2:], mode="bilinear", align_corners=False)
        c_fuse = out.identity[:, :_NUM_COEFFS]
        v_source = out.identity[:, _NUM_COEFFS:].detach()

        embed = self.arcface_embed
        computed = {
            "shape": lambda: shape_loss(*self.shape_landmarks(c_fuse, image, image_low_up)),
            "id": lambda: identity_loss(v_source, embed(image), embed(image_low_up)),
            "adv": lambda: generator_adversarial_loss(discriminator(image)),
            "seg": lambda: segmentation_loss(mask_target, out.mask_low, out.mask),
            "rec": lambda: reconstruction_loss(image, image_low, target, same_identity, num_pairs),
        }
        if cycled is not None:
            computed["cyc"] = lambda: cycle_loss(target, cycled)
        if self.lpips_fn is not None:
            computed["lpips"] = lambda: lpips_loss(self.lpips_fn, image, target, same_identity, num_pairs)
        if w.shape != 0 and self.bfm is None:
            raise ValueError("the shape loss needs the BFM landmark model (or a shape weight of 0)")
        # a term weighted 0 is left out, so its networks (F_3d, F_id, D, LPIPS) do not run at all
        terms = {name: term() for name, term in computed.items() if getattr(w, name) != 0}

        total = sum(getattr(w, name) * value for name, value in terms.items())
        return total, self._named("G", terms, total)

    def shape_landmarks(self, c_fuse: Tensor, image: Tensor, image_low_up: Tensor) -> tuple[Tensor, ...]:
        """The landmarks L_shape compares: q_fuse (of c_fuse), q_r (of I_r), q_low (of I_low).

        Args:
            c_fuse (Tensor (B, 257)): fused 3DMM coefficients (the first part of v_sid).
            image (Tensor (B, 3, S, S)): I_r.
            image_low_up (Tensor (B, 3, S, S)): I_low upsampled to S.

        Each (B, 68, 2), in fp32 also under autocast when F_3d and the BFM are hififace's modules.
        """
        bfm, face3d = self.bfm, self.face3d
        return bfm(c_fuse), bfm(face3d(image)), bfm(face3d(image_low_up))

    def discriminator_loss(
        self, discriminator: ImageFn, real_images: Tensor, fake_images: Tensor, grad_scale: float = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The discriminator's objective: logistic loss plus R1 (gamma = `weights.r1_gamma`) on reals.

        Args:
            discriminator (callable): images in [0, 1] -> logits (B,), mapping them to [-1, 1] first as
                `hififace.models.Discriminator` does; R1 is taken with respect to that [-1, 1] image.
            real_images (Tensor (B, 3, S, S)): real faces (the targets I_t).
            fake_images (Tensor (B, 3, S, S)): results I_r; detached here.
            grad_scale (float, 1.0): the GradScaler's scale under fp16 (see `r1_penalty`).

        Returns `(total, terms)` with the detached terms `loss/D/{real,fake,r1,total}`.
        """
        # StarGAN v2 differentiates with respect to the [-1, 1] image its convolutions see: make that
        # image the leaf and give D (s + 1) / 2, which D maps back to s with a derivative of exactly 1.
        signed = (real_images.detach() * 2.0 - 1.0).requires_grad_(True)
        real_logits = discriminator((signed + 1.0) / 2.0)
        fake_logits = discriminator(fake_images.detach())
        terms = {
            "real": _logistic_real(real_logits),
            "fake": _logistic_fake(fake_logits),
            "r1": r1_penalty(real_logits, signed, self.weights.r1_gamma, grad_scale),
        }
        total = terms["real"] + terms["fake"] + terms["r1"]
        return total, self._named("D", terms, total)

    @staticmethod
    def _named(player: str, terms: dict[str, Tensor], total: Tensor) -> dict[str, Tensor]:
        named = {f"loss/{player}/{name}": value.detach() for name, value in terms.items()}
        named[f"loss/{player}/total"] = total.detach()
        return named
