"""maum-ai/hififace's Lightning release converts safely into a HifiFace that reproduces maum-ai's code.

`fixtures/maumai_golden.npz` holds the outputs of maum-ai's own code on the synthetic release (every
tensor of the checkpoint's state_dict, seeded values; `synthetic.build`). The test writes the
`generator.*` part of that state_dict in the release's container (`synthetic.lightning_checkpoint`:
Lightning callback class, OmegaConf-like objects, `typing.Any`, `defaultdict`, storages tagged
`cuda:0` under `archive/`), converts it with `hififace convert maum-ai` and compares every array.
"""

import hashlib

import numpy as np
import pytest
import torch
from synthetic import build, lightning_checkpoint, save_zip_checkpoint

from hififace import HifiFace
from hififace.cli import main
from hififace.convert import convert_maum_ai, load_checkpoint
from hififace.hub import CheckpointError

ATOL = 1e-5
TSV = "maumai_hififace_state_dict.tsv"


@pytest.fixture(scope="module")
def release(tmp_path_factory, fixtures_dir):
    """The synthetic release as a Lightning checkpoint, converted by the command line."""
    folder = tmp_path_factory.mktemp("maumai")
    state = build(fixtures_dir / TSV, seed=0, prefix="generator.")
    # A loss-side copy of a prior, as the real file has: it must be ignored, not converted.
    state["g_loss.f_id.conv1.weight"] = torch.full_like(
        state["generator.id_extractor.f_id.conv1.weight"], 9.0
    )
    save_zip_checkpoint(lightning_checkpoint(state), folder / "hififace_opensouce_299999.ckpt")
    del state
    src, out = folder / "hififace_opensouce_299999.ckpt", folder / "out"
    assert main(["convert", "maum-ai", str(src), str(out)]) == 0
    return folder


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return dict(np.load(fixtures_dir / "maumai_golden.npz"))


@pytest.fixture(scope="module")
def model(release):
    return HifiFace.from_pretrained(release / "out")


@pytest.fixture()
def golden_threads():
    """The golden was made with 2 threads: the thread count alone moves image_out by ~2e-5 in fp32."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _inputs(golden):
    return tuple(torch.from_numpy(golden[k]).float() / 255 for k in ("source_u8", "target_u8"))


def test_identity_vectors_reproduce_maumai_code(model, golden, golden_threads):
    source, target = _inputs(golden)
    with torch.no_grad():
        code = model.encode_source(source)
        produced = {
            "coeff_source": code.coeffs,
            "coeff_target": model.identity.face3d(target),
            "v_sid": model.identity.fuse(code, target),
            "v_sid_interp_all": model.identity.fuse(code, target, 0.5, 0.5),
            "v_sid_interp_identity": model.identity.fuse(code, target, 1.0, 0.5),
            "v_sid_interp_3d": model.identity.fuse(code, target, 0.5, 1.0),
        }
    for name, value in produced.items():
        np.testing.assert_allclose(value.numpy(), golden[name], atol=ATOL, rtol=0, err_msg=name)


def test_generator_reproduces_maumai_code(model, golden, golden_threads):
    """Every image and mask, plain and interpolated, from the golden's identity vectors."""
    _, target = _inputs(golden)
    image_low_out = []
    hook = model.sff.fuse_blocks[0].register_forward_hook(lambda m, i, o: image_low_out.append(o[:, :3]))
    with torch.no_grad():
        out = model.generate(target, torch.from_numpy(golden["v_sid"]))
        interp = model.generate(target, torch.from_numpy(golden["v_sid_interp_all"]))
    hook.remove()
    produced = dict(
        out, image_low_out=image_low_out[0], image_interp=interp["image"], mask_interp=interp["mask"]
    )
    assert set(produced) | {"source_u8", "target_u8"} == {
        k for k in golden if not k.startswith(("v_sid", "coeff"))
    }
    for name, value in produced.items():
        np.testing.assert_allclose(value.numpy(), golden[name], atol=ATOL, rtol=0, err_msg=name)
    # tanh masks are not probabilities: 39% of M_r is negative on these inputs
    assert model.mask_range == (-1.0, 1.0) and (out["mask"] < 0).float().mean() > 0.3


def test_whole_swap_reproduces_maumai_code(model, golden, golden_threads):
    """End to end, images in -> images out; the identity's fp32 rounding (7e-7) carries through the
    generator (outputs up to 5.5), hence 3e-5 here: a real mistake moves them by 1e-3 or more."""
    source, target = _inputs(golden)
    with torch.no_grad():
        out = model(source, target)
        interp = model(source, target, shape_strength=0.5, identity_strength=0.5)
    produced = {"image": out.image, "mask": out.mask, "image_low": out.image_low, "image_out": out.image_out}
    produced.update(image_interp=interp.image, mask_interp=interp.mask)
    for name, value in produced.items():
        np.testing.assert_allclose(value.numpy(), golden[name], atol=3e-5, rtol=0, err_msg=name)


def test_converted_release_has_the_public_sizes_and_config(model, release):
    assert len(model.state_dict()) == 1421
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 57_596_438
    config = (release / "out" / "config.json").read_text()
    assert '"sff": "maum-ai"' in config


def test_model_card_names_source_and_licences(release):
    card = (release / "out" / "README.md").read_text()
    with (release / "hififace_opensouce_299999.ckpt").open("rb") as src:
        digest = hashlib.file_digest(src, "sha256").hexdigest()
    assert "hififace_opensouce_299999.ckpt" in card
    assert digest in card
    assert "BSD-3-Clause" in card and "non-commercial" in card
    assert "license: other" in card and "license: mit" not in card


def test_weights_only_torch_load_refuses_the_container(release):
    """What the safe reader is for: torch's own safe loader rejects the Lightning globals."""
    with pytest.raises(CheckpointError, match="refused: it pickles pytorch_lightning"):
        load_checkpoint(release / "hififace_opensouce_299999.ckpt")


def test_mismatched_tensors_are_named(tmp_path):
    state = {
        "generator.sff_module.z_fuse_block.side_path.0.weight": torch.zeros(3, 256, 1, 1),
        "generator.sff_module.extra_head.weight": torch.zeros(1),
        "g_loss.f_3d.fc.weight": torch.zeros(1),
    }
    save_zip_checkpoint(lightning_checkpoint(state), tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError) as error:
        convert_maum_ai(tmp_path / "bad.ckpt", tmp_path / "out")
    message = str(error.value)
    assert "1213 missing: identity.face3d.backbone.conv1.weight" in message
    assert "unexpected: sff.extra_head.weight" in message
    assert "sff.fuse_blocks.0.skip.weight (3, 256, 1, 1) != (259, 256, 1, 1)" in message
    assert "g_loss" not in message
    assert not (tmp_path / "out").exists()


def test_checkpoint_without_generator_is_one_clear_line(tmp_path, capsys):
    save_zip_checkpoint(
        lightning_checkpoint({"discriminator.layer0.0.weight": torch.zeros(2)}), tmp_path / "d.ckpt"
    )
    assert main(["convert", "maum-ai", str(tmp_path / "d.ckpt"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no generator.* tensors" in err[0] and "discriminator" in err[0]
