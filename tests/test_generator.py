"""The HifiFace generator: shapes, frozen priors, identity reuse, Hub round trip, bad input."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hififace import HifiFace, IdentityCode
from hififace.hub import CheckpointError, load_state_dict_strict

TINY = dict(base_channels=8, max_channels=16, arcface_depth=18)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HifiFace(**TINY).eval()


def faces(batch: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size, low", [(256, 64), (512, 64)])
def test_output_shapes_and_ranges(size, low):
    torch.manual_seed(0)
    model = HifiFace(image_size=size, **TINY).eval()
    with torch.no_grad():
        out = model(faces(2, size, 1), faces(2, size, 2))
    assert out.image.shape == out.image_out.shape == (2, 3, size, size)
    assert out.mask.shape == (2, 1, size, size)
    assert out.image_low.shape == (2, 3, low, low)
    assert out.mask_low.shape == (2, 1, low, low)
    assert out.identity.shape == (2, 257 + 512)
    for mask in (out.mask, out.mask_low):
        assert 0 < mask.min() and mask.max() < 1
    # ArcFace part of v_sid is a unit vector
    torch.testing.assert_close(out.identity[:, 257:].norm(dim=1), torch.ones(2))


def test_image_is_mask_blend_of_output_and_target(tiny):
    target = faces(1, seed=3)
    with torch.no_grad():
        out = tiny(faces(1, seed=4), target)
    expected = out.mask * out.image_out + (1 - out.mask) * target
    torch.testing.assert_close(out.image, expected)


def test_trainable_parameters_are_exactly_the_generator():
    model = HifiFace(**TINY)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name.split(".")[0] for name, p in model.named_parameters() if not p.requires_grad}
    assert trainable == {"encoder", "decoder", "sff"}
    assert frozen == {"identity"}


def test_gradients_reach_generator_through_priors_but_priors_stay_frozen():
    torch.manual_seed(0)
    model = HifiFace(**TINY).train()
    assert model.training and not model.identity.training
    assert not any(m.training for m in model.identity.modules())
    out = model(faces(2, seed=5), faces(2, seed=6))
    # a loss that only sees the result through the frozen priors, like the shape and id losses
    loss = model.identity.face3d(out.image).square().mean() + model.identity.arcface.embed(out.image).sum()
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("identity."):
            assert p.grad is None, name
    grads = [p.grad for p in model.encoder.parameters()] + [p.grad for p in model.sff.upsample.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # batch-norm statistics of the priors did not move
    before = {k: v.clone() for k, v in model.identity.state_dict().items()}
    model(faces(2, seed=7), faces(2, seed=8))
    for k, v in model.identity.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_source_identity_is_reusable_across_targets(tiny):
    source, targets = faces(1, seed=9), faces(3, seed=10)
    with torch.no_grad():
        code = tiny.encode_source(source)
        assert isinstance(code, IdentityCode) and code.coeffs.shape == (1, 257)
        batched = tiny(code, targets).image
        one_by_one = torch.cat([tiny(source, t[None]).image for t in targets])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)


def test_strength_zero_keeps_the_target_identity(tiny):
    source, target = faces(1, seed=11), faces(1, seed=12)
    with torch.no_grad():
        v_sid = tiny(source, target, shape_strength=0.0, identity_strength=0.0).identity
        own = tiny.identity.encode(target)
        half = tiny(source, target, shape_strength=0.5, identity_strength=0.5).identity
        full = tiny(source, target).identity
    torch.testing.assert_close(v_sid, torch.cat([own.coeffs, own.embedding], 1))
    torch.testing.assert_close(half, (v_sid + full) / 2)


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["base_channels"] == 8 and config["arcface_depth"] == 18
    card = (tmp_path / "README.md").read_text()
    assert "2106.09965" in card and "library_name: hififace" in card
    loaded = HifiFace.from_pretrained(tmp_path)
    assert not loaded.training
    source, target = faces(1, seed=13), faces(1, seed=14)
    with torch.no_grad():
        a, b = tiny(source, target), loaded(source, target)
    for name in ("image", "image_low", "mask", "mask_low", "image_out", "identity"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_missing_or_extra_tensor_fails_loudly(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["sff.mask_head.weight"]
    weights["sff.unknown"] = torch.zeros(1)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing: sff\.mask_head\.weight.*unexpected: sff\.unknown"):
        HifiFace.from_pretrained(tmp_path)


def test_folder_without_weights_fails(tmp_path):
    HifiFace(**TINY).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        HifiFace.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "target, message",
    [
        (torch.rand(1, 3, 128, 128), r"128×128 but this model takes 256×256"),
        (torch.rand(1, 4, 256, 256), r"must be a \(B, 3, 256, 256\) tensor"),
        (torch.rand(3, 256, 256), r"must be a \(B, 3, 256, 256\) tensor"),
        (torch.full((1, 3, 256, 256), float("nan")), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(tiny, target, message):
    with pytest.raises(ValueError, match=message):
        tiny(faces(1), target)


def test_unsupported_size_and_batch_mismatch(tiny):
    with pytest.raises(ValueError, match="image_size must be one of"):
        HifiFace(image_size=384, **TINY)
    with pytest.raises(ValueError, match="2 source faces for 3 targets"):
        tiny(tiny.encode_source(faces(2)), faces(3))


def test_full_model_has_the_public_release_sizes():
    model = HifiFace()
    total = sum(p.numel() for p in model.parameters())
    generator = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total == 151_087_369
    assert generator == 61_896_584


def test_from_priors_builds_a_trainable_generator_around_converted_priors(tmp_path):
    from hififace import ArcFace, Face3DRegressor

    arcface, face3d = ArcFace(depth=18), Face3DRegressor(input_size=64)
    arcface.save_pretrained(tmp_path / "arcface")
    face3d.save_pretrained(tmp_path / "face3d")
    model = HifiFace.from_priors(
        str(tmp_path / "arcface"), str(tmp_path / "face3d"), base_channels=8, max_channels=16
    )
    for name, value in arcface.state_dict().items():
        assert torch.equal(model.identity.arcface.state_dict()[name], value), name
    for name, value in face3d.state_dict().items():
        assert torch.equal(model.identity.face3d.state_dict()[name], value), name
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (config["arcface_depth"], config["face3d_input_size"], config["base_channels"]) == (18, 64, 8)
    assert not any(p.requires_grad for p in model.identity.parameters())


def test_a_missing_local_folder_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch):
    from hififace.hub import looks_like_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("./nothing", str(tmp_path / "nothing"), "models/hififace-256", "a/b/c"):
        assert looks_like_path(name)
        with pytest.raises(CheckpointError, match="no model folder at"):
            HifiFace.from_pretrained(name)
    assert not looks_like_path("hififace/hififace-256")  # a Hub repo id: no local "hififace" folder


# --- the maum-ai SFF variant (HifiFace(sff="maum-ai")) ---------------------------------------------


# the 3DMM regressor (a full ResNet-50) sees 64 px here, to keep these tests fast on a CPU
TINY_MAUM = dict(TINY, face3d_input_size=64, sff="maum-ai")


@pytest.fixture(scope="module")
def tiny_maum():
    torch.manual_seed(0)
    return HifiFace(**TINY_MAUM).eval()


@pytest.mark.parametrize("size, low", [(256, 64), (512, 64)])
def test_maum_variant_shapes_and_tanh_masks(size, low):
    torch.manual_seed(0)
    model = HifiFace(image_size=size, **TINY_MAUM).eval()
    with torch.no_grad():
        out = model(faces(2, size, 1), faces(2, size, 2))
    assert out.image.shape == out.image_out.shape == (2, 3, size, size)
    assert out.mask.shape == (2, 1, size, size) and out.mask_low.shape == (2, 1, low, low)
    assert out.image_low.shape == (2, 3, low, low)
    assert model.mask_range == (-1.0, 1.0)
    for mask in (out.mask, out.mask_low):  # tanh: negative values are part of the release's masks
        assert -1 < mask.min() < 0 < mask.max() < 1


def test_maum_variant_blends_as_the_release(tiny_maum):
    target = faces(1, seed=3)
    raw_low = []
    hook = tiny_maum.sff.fuse_blocks[0].register_forward_hook(lambda m, i, o: raw_low.append(o[:, :3]))
    with torch.no_grad():
        out = tiny_maum(faces(1, seed=4), target)
    hook.remove()
    torch.testing.assert_close(out.image, out.mask * out.image_out + (1 - out.mask) * target)
    quarter = target[:, :, ::4, ::4]  # nearest ¼-size target
    torch.testing.assert_close(out.image_low, out.mask_low * raw_low[0] + (1 - out.mask_low) * quarter)


def test_maum_variant_identity_uses_bilinear_arcface_and_renormalises_mixes(tiny_maum):
    import torch.nn.functional as F

    source, target = faces(1, seed=5), faces(1, seed=6)
    arcface = tiny_maum.identity.arcface
    with torch.no_grad():
        bilinear = F.normalize(arcface(F.interpolate(source * 2 - 1, size=112, mode="bilinear")), dim=-1)
        code = tiny_maum.encode_source(source)
        half = tiny_maum(code, target, identity_strength=0.5).identity[:, 257:]
        v_t = tiny_maum.identity.encode(target).embedding
    torch.testing.assert_close(code.embedding, bilinear)
    assert (code.embedding - arcface.embed(source)).abs().max() > 1e-4  # not the bicubic resize
    torch.testing.assert_close(half, F.normalize(code.embedding + v_t, dim=-1))


def test_maum_variant_round_trip_keeps_the_variant(tiny_maum, tmp_path):
    tiny_maum.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["sff"] == "maum-ai"
    assert "license: other" in (tmp_path / "README.md").read_text()
    loaded = HifiFace.from_pretrained(tmp_path)
    source, target = faces(1, seed=13), faces(1, seed=14)
    with torch.no_grad():
        a, b = tiny_maum(source, target, 1.0, 0.5), loaded(source, target, 1.0, 0.5)
    for name in ("image", "image_low", "mask", "mask_low", "image_out", "identity"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # the two layouts do not load into each other
    with pytest.raises(
        CheckpointError, match=r"missing: sff\.mask_low_head\.weight.*unexpected: sff\.mask_low_head\.conv1"
    ):
        load_state_dict_strict(HifiFace(**TINY), load_file(tmp_path / "model.safetensors"))


def test_default_variant_is_unchanged_and_bad_variants_are_one_line():
    model = HifiFace(**TINY)
    assert type(model.identity).__name__ == "ShapeAwareIdentity" and model.mask_range == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"sff must be one of \['hififace-pytorch', 'maum-ai'\]"):
        HifiFace(sff="simswap", **TINY)
    bilinear = HifiFace(arcface_resize="bilinear", **TINY).identity  # the resize alone, no renormalising
    assert (bilinear.arcface_resize, bilinear.renormalise_mix) == ("bilinear", False)
    with pytest.raises(ValueError, match="arcface_resize must be one of"):
        HifiFace(arcface_resize="nearest", **TINY)


def test_full_maum_model_has_the_release_sizes():
    model = HifiFace(sff="maum-ai")
    assert len(model.state_dict()) == 1421  # the checkpoint's generator.* tensors
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 57_596_438
