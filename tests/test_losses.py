import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hififace import losses
from hififace.losses import (
    HifiFaceLoss,
    LossWeights,
    cycle_loss,
    dilate_mask,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    identity_loss,
    lpips_loss,
    r1_penalty,
    reconstruction_loss,
    segmentation_loss,
    shape_loss,
)
from hififace.models.discriminator import Discriminator

S = 32  # image size of the small cases


def _images(batch: int = 2, size: int = S, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# The terms alone


def test_shape_loss_values():
    q = torch.rand(2, 68, 2) * 224
    assert shape_loss(q, q.clone(), q.clone()).item() == 0.0
    # Every coordinate 2 px off in both predictions: 2 + 2.
    assert shape_loss(q, q + 2.0, q - 2.0).item() == pytest.approx(4.0)
    # Only half the points off by 2 px in one prediction: mean over points gives 1.
    q_r = q.clone()
    q_r[:, :34] += 2.0
    assert shape_loss(q, q_r, q).item() == pytest.approx(1.0)


def test_shape_loss_does_not_train_the_fused_landmarks():
    q_fuse = torch.rand(2, 68, 2, requires_grad=True)
    q_r = torch.rand(2, 68, 2, requires_grad=True)
    shape_loss(q_fuse, q_r, q_r).backward()
    assert q_fuse.grad is None
    assert q_r.grad is not None


def test_shape_loss_rejects_mismatched_landmarks():
    with pytest.raises(ValueError, match="differ in shape"):
        shape_loss(torch.zeros(2, 68, 2), torch.zeros(68, 2), torch.zeros(2, 68, 2))


def test_identity_loss_values():
    v = F.normalize(torch.randn(3, 512), dim=1)
    assert identity_loss(v, v, v).item() == pytest.approx(0.0, abs=1e-6)
    e = torch.eye(3, 512)
    orthogonal = torch.roll(e, 1, dims=0)
    assert identity_loss(e, orthogonal, orthogonal).item() == pytest.approx(2.0)
    assert identity_loss(e, -e, e).item() == pytest.approx(2.0)
    # Cosine ignores the length.
    assert identity_loss(e, 3.0 * e, 0.5 * e).item() == pytest.approx(0.0, abs=1e-6)


def test_adversarial_losses_values():
    zeros = torch.zeros(4)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2.0))
    assert discriminator_adversarial_loss(zeros, zeros).item() == pytest.approx(2.0 * math.log(2.0))
    big = torch.full((4,), 30.0)
    assert generator_adversarial_loss(big).item() == pytest.approx(0.0, abs=1e-6)
    assert discriminator_adversarial_loss(big, -big).item() == pytest.approx(0.0, abs=1e-6)
    # A confident discriminator gives the generator a large (non-saturating) loss: softplus(30) = 30.
    assert generator_adversarial_loss(-big).item() == pytest.approx(30.0)
    # Fake logits only count for the discriminator as "fake": softplus(1) for fake, softplus(-1) for real.
    one = torch.ones(1)
    assert discriminator_adversarial_loss(one, one).item() == pytest.approx(
        math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))
    )


@pytest.mark.parametrize("gamma", [1.0, 10.0])
def test_r1_of_a_linear_discriminator_is_exact(gamma):
    w = torch.randn(3, 4, 4, requires_grad=True)
    x = torch.rand(5, 3, 4, 4, requires_grad=True)
    logits = (w * x).sum(dim=(1, 2, 3))
    r1 = r1_penalty(logits, x, gamma=gamma)
    expected = 0.5 * gamma * w.detach().pow(2).sum()
    torch.testing.assert_close(r1.detach(), expected)
    # The penalty is part of the graph (create_graph): d/dw of gamma/2 |w|^2 is gamma w.
    r1.backward()
    torch.testing.assert_close(w.grad, gamma * w.detach())


def test_r1_needs_images_that_require_grad():
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="require grad"):
        r1_penalty(x.sum(dim=(1, 2, 3)), x)


def test_segmentation_loss_values():
    ones = torch.ones(2, 1, S, S)
    low = torch.ones(2, 1, S // 4, S // 4)
    assert segmentation_loss(ones, low, ones).item() == pytest.approx(0.0, abs=1e-6)
    # M_low wrong everywhere by 1, M_r by 0.5.
    assert segmentation_loss(ones, 0 * low, 0.5 * ones).item() == pytest.approx(1.5)


def test_targets_shrink_with_antialiasing():
    # Fine stripes (one column in four) shrink to their average, 0.25, away from the borders;
    # plain bilinear or nearest sampling would give 0 or 1.
    stripes = torch.zeros(2, 1, S, S)
    stripes[..., ::4] = 1.0
    shrunk = losses._resize(stripes, (S // 4, S // 4))
    torch.testing.assert_close(shrunk[..., 1:-1], torch.full_like(shrunk[..., 1:-1], 0.25))
    # M_low is compared with the shrunk target: the stripes' mean is a perfect M_low inside.
    low = torch.full((2, 1, S // 4, S // 4), 0.25)
    border = (shrunk - low).abs().mean().item()
    assert segmentation_loss(stripes, low, stripes).item() == pytest.approx(border)
    assert border < 0.02


def test_reconstruction_loss_values():
    target = _images(3)
    low_target = F.interpolate(target, size=S // 4, mode="nearest")  # as the generator samples I_t
    same = torch.tensor([True, True, True])
    assert reconstruction_loss(target, low_target, target, same).item() == pytest.approx(0.0, abs=1e-6)

    # Per pair: |d| on I_r plus |e| on I_low; only pairs 0 and 2 are same-identity.
    d = torch.tensor([0.1, 0.7, 0.3]).view(3, 1, 1, 1)
    e = torch.tensor([0.2, 0.9, 0.0]).view(3, 1, 1, 1)
    value = reconstruction_loss(target + d, low_target - e, target, torch.tensor([1.0, 0.0, 1.0]))
    assert value.item() == pytest.approx(((0.1 + 0.2) + (0.3 + 0.0)) / 2)
    same = torch.tensor([True, False, True])
    assert reconstruction_loss(target + d, low_target - e, target, same).item() == pytest.approx(0.3)


def test_reconstruction_loss_without_same_identity_pairs_is_zero_with_a_graph():
    image = _images(2).requires_grad_(True)
    value = reconstruction_loss(
        image, _images(2, S // 4), _images(2, seed=1), torch.zeros(2, dtype=torch.bool)
    )
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(image.grad, torch.zeros_like(image))


def test_reconstruction_loss_checks_same_identity_shape():
    with pytest.raises(ValueError, match=r"same_identity must have shape \(2,\)"):
        reconstruction_loss(_images(2), _images(2, S // 4), _images(2), torch.ones(2, 1))


def test_cycle_loss_values():
    target = _images(2)
    assert cycle_loss(target, target).item() == 0.0
    assert cycle_loss(target, target + 0.25).item() == pytest.approx(0.25)


def _l1_distance(a, b, normalize=False):
    # Stands in for lpips.LPIPS: one distance per pair, shaped (B, 1, 1, 1) as LPIPS returns.
    assert normalize is True
    return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)


def test_lpips_loss_counts_same_identity_pairs_only():
    target = _images(3)
    image = target + torch.tensor([0.5, 0.2, 0.4]).view(3, 1, 1, 1)
    same = torch.tensor([False, True, True])
    assert lpips_loss(_l1_distance, image, target, same).item() == pytest.approx(0.3)
    assert lpips_loss(_l1_distance, image, target, torch.zeros(3)).item() == 0.0


def _offline_lpips():
    lpips = pytest.importorskip("lpips", reason="the lpips package is not installed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Random AlexNet trunk (its ImageNet weights are a torchvision download); the calibrated
            # linear layers ship inside the lpips package and are loaded from disk.
            return lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
    except Exception as error:  # noqa: BLE001 - any failure to build offline means "skip"
        pytest.skip(f"lpips.LPIPS cannot be built offline here: {error}")


def test_lpips_loss_with_real_lpips():
    torch.manual_seed(0)
    lpips_fn = _offline_lpips()
    target = _images(2, 64)
    same = torch.ones(2, dtype=torch.bool)
    assert lpips_loss(lpips_fn, target, target, same).item() == pytest.approx(0.0, abs=1e-6)
    assert lpips_loss(lpips_fn, _images(2, 64, seed=1), target, same).item() > 1e-3


def test_dilate_mask():
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 4, 4] = 1.0
    mask[0, 0, 0, 8] = 1.0  # a corner pixel grows only inside the image
    out = dilate_mask(mask, 3)
    expected = torch.zeros(1, 1, 9, 9)
    expected[0, 0, 3:6, 3:6] = 1.0
    expected[0, 0, 0:2, 7:9] = 1.0
    assert torch.equal(out, expected)
    assert torch.equal(dilate_mask(mask, 1), mask)
    with pytest.raises(ValueError, match="odd and positive"):
        dilate_mask(mask, 4)


def test_dilate_mask_without_kornia_is_the_same(monkeypatch):
    mask = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    mask = mask * torch.rand(2, 1, 16, 16)  # soft values too
    with_kornia = dilate_mask(mask, 5)
    monkeypatch.setattr(losses, "_morphology", None)
    torch.testing.assert_close(dilate_mask(mask, 5), with_kornia)


def _descends(loss_fn, x: torch.Tensor) -> bool:
    x = x.clone().requires_grad_(True)
    before = loss_fn(x)
    (grad,) = torch.autograd.grad(before, x)
    with torch.no_grad():
        after = loss_fn(x - 1e-2 * grad / grad.norm())
    return after.item() < before.item()


@pytest.mark.parametrize(
    "name, loss_fn, x",
    [
        ("shape", lambda q: shape_loss(torch.zeros(2, 68, 2), q, q), torch.rand(2, 68, 2)),
        ("id", lambda v: identity_loss(torch.eye(2, 8), v, v), torch.rand(2, 8)),
        ("adv", generator_adversarial_loss, torch.randn(4)),
        (
            "seg",
            lambda m: segmentation_loss(torch.ones(1, 1, S, S), m[..., ::4, ::4], m),
            torch.rand(1, 1, S, S),
        ),
        (
            "rec",
            lambda i: reconstruction_loss(i, i[..., ::4, ::4], _images(1), torch.ones(1)),
            _images(1, seed=3),
        ),
        ("cyc", lambda i: cycle_loss(_images(1), i), _images(1, seed=3)),
        ("lpips", lambda i: lpips_loss(_l1_distance, i, _images(1), torch.ones(1)), _images(1, seed=3)),
    ],
)
def test_a_step_against_the_gradient_lowers_the_loss(name, loss_fn, x):
    assert _descends(loss_fn, x), name


# ----------------------------------------------------------------------------------------------
# The weighted objective, with stand-in priors


class _Face3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 257)

    def forward(self, images):
        return self.fc(F.adaptive_avg_pool2d(images, 4).flatten(1))


class _ArcFace(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 4 * 4, 512)
        self.dropout = nn.Dropout(0.5)  # would make the loss random in train mode

    def forward(self, images):
        return F.normalize(self.dropout(self.fc(F.adaptive_avg_pool2d(images, 4).flatten(1))), dim=1)


def _bfm(coeffs):
    return 100.0 * coeffs[:, :136].reshape(-1, 68, 2)


def _case(batch: int = 2):
    torch.manual_seed(0)
    out = SimpleNamespace(
        image=_images(batch, seed=1).requires_grad_(True),
        image_low=_images(batch, S // 4, seed=2).requires_grad_(True),
        mask=torch.rand(batch, 1, S, S).requires_grad_(True),
        mask_low=torch.rand(batch, 1, S // 4, S // 4).requires_grad_(True),
        identity=torch.cat([torch.randn(batch, 257), F.normalize(torch.randn(batch, 512), dim=1)], dim=1),
    )
    target = _images(batch, seed=3)
    mask_target = (torch.rand(batch, 1, S, S) > 0.5).float()
    same = torch.tensor([True, False][:batch])
    cycled = _images(batch, seed=4)
    discriminator = Discriminator(image_size=S, base_channels=4, max_channels=8)
    return out, target, mask_target, same, cycled, discriminator


def _loss(lpips_fn=_l1_distance, weights=None):
    torch.manual_seed(0)
    return HifiFaceLoss(_Face3d(), _ArcFace(), _bfm, lpips_fn=lpips_fn, weights=weights)


G_TERMS = ["shape", "id", "adv", "seg", "rec", "cyc", "lpips"]


def test_generator_loss_reports_every_term_and_their_weighted_sum():
    loss = _loss()
    out, target, mask_target, same, cycled, d = _case()
    total, terms = loss.generator_loss(out, target, mask_target, same, discriminator=d, cycled=cycled)
    assert set(terms) == {f"loss/G/{n}" for n in [*G_TERMS, "total"]}

    # Each term recomputed from the pure functions.
    up = F.interpolate(out.image_low, size=S, mode="bilinear", align_corners=False)
    f3d, arc = loss.face3d, loss.arcface_embed
    v_s = out.identity[:, 257:]
    expected = {
        "shape": shape_loss(_bfm(out.identity[:, :257]), _bfm(f3d(out.image)), _bfm(f3d(up))),
        "id": identity_loss(v_s, arc(out.image), arc(up)),
        "adv": generator_adversarial_loss(d(out.image)),
        "seg": segmentation_loss(mask_target, out.mask_low, out.mask),
        "rec": reconstruction_loss(out.image, out.image_low, target, same),
        "cyc": cycle_loss(target, cycled),
        "lpips": lpips_loss(_l1_distance, out.image, target, same),
    }
    for name, value in expected.items():
        torch.testing.assert_close(terms[f"loss/G/{name}"], value.detach(), msg=name)
        assert value.item() > 0, name

    w = LossWeights()
    weighted = sum(getattr(w, n) * expected[n].item() for n in G_TERMS)
    assert w == LossWeights(shape=0.5, id=5, adv=1, seg=100, rec=20, cyc=1, lpips=5, r1_gamma=1)
    assert total.item() == pytest.approx(weighted, rel=1e-6)
    assert terms["loss/G/total"].item() == pytest.approx(weighted, rel=1e-6)
    assert not any(t.requires_grad for t in terms.values())


def test_generator_loss_trains_the_outputs_not_the_priors():
    loss = _loss()
    out, target, mask_target, same, cycled, d = _case()
    out.identity.requires_grad_(True)
    total, _ = loss.generator_loss(out, target, mask_target, same, discriminator=d, cycled=cycled)
    total.backward()
    for name in ["image", "image_low", "mask", "mask_low"]:
        assert getattr(out, name).grad.abs().sum() > 0, name
    assert out.identity.grad is None  # c_fuse and v_id(I_s) are targets, not predictions
    assert all(p.grad is None for p in loss.parameters())


def test_lpips_and_cycle_left_out_when_not_given():
    loss = _loss(lpips_fn=None)
    out, target, mask_target, same, _, d = _case()
    total, terms = loss.generator_loss(out, target, mask_target, same, discriminator=d)
    assert set(terms) == {f"loss/G/{n}" for n in ["shape", "id", "adv", "seg", "rec", "total"]}
    w = loss.weights
    weighted = sum(getattr(w, n) * terms[f"loss/G/{n}"].item() for n in ["shape", "id", "adv", "seg", "rec"])
    assert total.item() == pytest.approx(weighted, rel=1e-6)


def test_weights_can_be_changed():
    out, target, mask_target, same, cycled, d = _case()

    def run(loss):
        return loss.generator_loss(out, target, mask_target, same, discriminator=d, cycled=cycled)

    base_total, terms = run(_loss())
    heavier_total, _ = run(_loss(weights=LossWeights(id=7.0, seg=0.0)))
    expected = base_total.item() + 2.0 * terms["loss/G/id"].item() - 100.0 * terms["loss/G/seg"].item()
    assert heavier_total.item() == pytest.approx(expected, rel=1e-5)

    loss = _loss()
    loss.weights.lpips = 0.0
    total, _ = run(loss)
    assert total.item() == pytest.approx(base_total.item() - 5.0 * terms["loss/G/lpips"].item(), rel=1e-5)


def test_priors_are_frozen_and_stay_in_eval_mode():
    loss = _loss()
    loss.train()
    assert not loss.training
    assert not loss.arcface_embed.training  # its dropout stays off
    assert not any(p.requires_grad for p in loss.parameters())
    out, target, mask_target, same, cycled, d = _case()
    first, _ = loss.generator_loss(out, target, mask_target, same, discriminator=d, cycled=cycled)
    second, _ = loss.generator_loss(out, target, mask_target, same, discriminator=d, cycled=cycled)
    assert first.item() == second.item()


def test_discriminator_loss_terms():
    loss = _loss()
    _, real, _, _, _, d = _case()
    fake = _images(2, seed=5).requires_grad_(True)
    total, terms = loss.discriminator_loss(d, real, fake)
    assert not real.requires_grad  # the caller's batch is left as it was
    assert set(terms) == {"loss/D/real", "loss/D/fake", "loss/D/r1", "loss/D/total"}
    with torch.no_grad():
        adversarial = discriminator_adversarial_loss(d(real), d(fake))
    torch.testing.assert_close(terms["loss/D/real"] + terms["loss/D/fake"], adversarial)
    assert terms["loss/D/r1"].item() > 0
    total.backward()
    assert fake.grad is None  # the generator is not trained by the discriminator's loss
    assert all(p.grad is not None for p in d.parameters())
    assert terms["loss/D/total"].item() == pytest.approx(
        sum(terms[f"loss/D/{n}"].item() for n in ["real", "fake", "r1"])
    )


def test_discriminator_loss_r1_uses_the_gamma_weight():
    w = torch.randn(3, S, S)

    def linear_d(x):
        return (w * x).sum(dim=(1, 2, 3))

    _, terms = _loss(weights=LossWeights(r1_gamma=10.0)).discriminator_loss(
        linear_d, _images(2), _images(2, seed=1)
    )
    # D(x) = w·x on [0, 1] images is (w / 2)·s on the [-1, 1] image s = 2x - 1: the gradient is w / 2
    assert terms["loss/D/r1"].item() == pytest.approx(0.5 * 10.0 * (w / 2).pow(2).sum().item(), rel=1e-5)


def test_terms_weighted_zero_are_not_computed():
    calls = []

    def face3d(images):
        calls.append("face3d")
        return torch.zeros(images.shape[0], 257)

    loss = HifiFaceLoss(face3d, _ArcFace(), None, lpips_fn=None, weights=LossWeights(shape=0.0))
    out, target, mask_target, same, _, d = _case()
    _, terms = loss.generator_loss(out, target, mask_target, same, discriminator=d)
    assert "loss/G/shape" not in terms and "loss/G/id" in terms
    assert calls == []  # F_3d never ran
    with pytest.raises(ValueError, match="needs the BFM"):
        HifiFaceLoss(face3d, _ArcFace(), None).generator_loss(out, target, mask_target, same, discriminator=d)


# ----------------------------------------------------------------------------------------------
# Faithfulness details: R1 as StarGAN v2 takes it, loss-scaled R1, I_low's target, global pair counts


def _stargan_v2_logits(d: Discriminator, signed: torch.Tensor) -> torch.Tensor:
    # StarGAN v2's discriminator body on [-1, 1] images, written out from d's layers
    h = d.conv_in(signed)
    for block in d.blocks:
        h = block(h)
    h = d.conv_out(F.leaky_relu(d.conv_4x4(F.leaky_relu(h, 0.2)), 0.2))
    return h.flatten()


@pytest.mark.parametrize("gamma", [1.0, 10.0])
def test_r1_is_stargan_v2_r1_reg_on_the_signed_image(gamma):
    torch.manual_seed(0)
    d = Discriminator(image_size=S, base_channels=4, max_channels=8).double()
    real = _images(3).double()
    # StarGAN v2 `r1_reg`: 0.5 * mean over the batch of the summed squared gradient w.r.t. x in [-1, 1]
    x = (real * 2 - 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(_stargan_v2_logits(d, x).sum(), x)
    expected = gamma * 0.5 * grad.pow(2).reshape(3, -1).sum(1).mean()
    _, terms = _loss(weights=LossWeights(r1_gamma=gamma)).discriminator_loss(
        d, real, _images(3, seed=1).double()
    )
    torch.testing.assert_close(terms["loss/D/r1"], expected, rtol=1e-6, atol=0)
    # the [0, 1]-input gradient would have given four times this
    y = real.clone().requires_grad_(True)
    (grad01,) = torch.autograd.grad(d(y).sum(), y)
    torch.testing.assert_close(gamma * 0.5 * grad01.pow(2).reshape(3, -1).sum(1).mean(), 4 * expected)


def _quiet_discriminator() -> Discriminator:
    # input gradients around 1e-9, below fp16's smallest subnormal (6e-8): an unscaled fp16 backward
    # loses them. Three layers shrunk 100x (weights still normal fp16 numbers), not one by 1e-6.
    torch.manual_seed(0)
    d = Discriminator(image_size=S, base_channels=4, max_channels=8)
    with torch.no_grad():
        for layer in (d.conv_in, d.conv_4x4, d.conv_out):
            layer.weight.mul_(1e-2)
    return d


def test_r1_under_fp16_autocast_is_loss_scaled():
    d, real, fake = _quiet_discriminator(), _images(2), _images(2, seed=1)
    loss = _loss()
    _, fp32 = loss.discriminator_loss(d, real, fake)
    reference = fp32["loss/D/r1"].item()
    assert 1e-16 < reference < 1e-13  # tiny, as meant

    def r1_fp16(grad_scale: float) -> float:
        with torch.autocast("cpu", dtype=torch.float16):
            total, terms = loss.discriminator_loss(d, real, fake, grad_scale=grad_scale)
        assert total.dtype == torch.float32
        return terms["loss/D/r1"].item()

    scaler = torch.amp.GradScaler("cpu")  # its default scale, 2^16
    assert r1_fp16(scaler.get_scale()) == pytest.approx(reference, rel=0.01, abs=0)
    # without the scale the fp16 backward underflows and R1 silently weakens
    assert r1_fp16(1.0) < 0.5 * reference


def test_r1_overflow_is_left_to_the_grad_scaler():
    torch.manual_seed(0)
    d = Discriminator(image_size=S, base_channels=4, max_channels=8)
    with torch.autocast("cpu", dtype=torch.float16):
        _, terms = _loss().discriminator_loss(d, _images(2), _images(2, seed=1), grad_scale=2.0**40)
    assert not math.isfinite(terms["loss/D/r1"].item())  # a GradScaler skips such a step and backs off


def test_reconstruction_target_for_i_low_is_the_generators_background():
    from hififace import HifiFace

    torch.manual_seed(0)
    g = HifiFace(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64).eval()
    with torch.no_grad():  # M_low = 0: I_low is the generator's own downsample of I_t
        g.sff.mask_low_head.weight.zero_()
        g.sff.mask_low_head.bias.fill_(-100.0)
        target = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
        out = g(torch.rand(2, 3, 256, 256), target)
    same = torch.ones(2)
    value = reconstruction_loss(target, out.image_low, target, same)
    assert value.item() == 0.0
    # the old antialiased bilinear target left an irreducible residual there
    bilinear = F.interpolate(target, size=64, mode="bilinear", antialias=True)
    assert (out.image_low - bilinear).abs().mean().item() > 0.05


def test_pair_count_given_by_the_caller_divides_the_sum():
    target = _images(4)
    image = target + torch.tensor([0.1, 0.2, 0.3, 0.4]).view(4, 1, 1, 1)
    low = F.interpolate(target, size=S // 4, mode="nearest")
    same = torch.tensor([1.0, 0.0, 1.0, 0.0])
    whole = reconstruction_loss(image, low, target, same)
    assert whole.item() == pytest.approx((0.1 + 0.3) / 2)
    # two processes, one pair each would be the local mean; with the global count (2 pairs over 2
    # processes: 1 per process) each process's term averages to the same global mean
    halves = [
        reconstruction_loss(
            image[i : i + 2], low[i : i + 2], target[i : i + 2], same[i : i + 2], torch.tensor(1.0)
        )
        for i in (0, 2)
    ]
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(whole.item())
    distance = lpips_loss(_l1_distance, image, target, same, num_pairs=torch.tensor(4.0))
    assert distance.item() == pytest.approx((0.1 + 0.3) / 4)
