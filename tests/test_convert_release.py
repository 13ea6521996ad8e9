"""The public HiFiFace-pytorch release converts into a HifiFace that reproduces that project's outputs.

`fixtures/hififace_pytorch_golden.npz` holds the outputs of the HiFiFace-pytorch code itself on the
synthetic release (every tensor of the public file, seeded values; `synthetic.build`).
"""

import numpy as np
import pytest
import torch
from synthetic import build

from hififace import HifiFace
from hififace.cli import main
from hififace.convert import convert_hififace_pytorch
from hififace.hub import CheckpointError

ATOL = 1e-4


@pytest.fixture(scope="module")
def release(tmp_path_factory, fixtures_dir):
    """The synthetic release written as `generator_<iter>.pth`, converted by the command line."""
    folder = tmp_path_factory.mktemp("release")
    state = build(fixtures_dir / "hififace_pytorch_generator_state_dict.tsv")
    torch.save(state, folder / "generator_320000.pth")
    assert (
        main(["convert", "hififace-pytorch", str(folder / "generator_320000.pth"), str(folder / "out")]) == 0
    )
    return folder


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    return dict(np.load(fixtures_dir / "hififace_pytorch_golden.npz"))


@pytest.fixture(scope="module")
def model(release):
    return HifiFace.from_pretrained(release / "out")


def test_converted_release_reproduces_the_public_code(model, golden):
    source = torch.from_numpy(golden["source_u8"]).float() / 255
    target = torch.from_numpy(golden["target_u8"]).float() / 255
    with torch.no_grad():
        out = model(source, target)
        interp = model(source, target, shape_strength=0.5, identity_strength=0.5)
    produced = {
        "v_sid": out.identity,
        "image": out.image,
        "image_low": out.image_low,
        "mask": out.mask,
        "mask_low": out.mask_low,
        "image_out": out.image_out,
        "image_interp": interp.image,
        "mask_interp": interp.mask,
    }
    for name, value in produced.items():
        np.testing.assert_allclose(value.numpy(), golden[name], atol=ATOL, rtol=0, err_msg=name)


def test_converted_release_has_the_public_sizes(model, fixtures_dir):
    rows = (fixtures_dir / "hififace_pytorch_generator_state_dict.tsv").read_text().splitlines()[1:]
    assert len(model.state_dict()) == len(rows) == 1425
    assert sum(p.numel() for p in model.parameters()) == 151_087_369
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 61_896_584


def test_model_card_says_where_the_weights_came_from(release):
    card = (release / "out" / "README.md").read_text()
    assert "generator_320000.pth" in card and "SHA-256" in card
    assert "HiFiFace-pytorch" in card and "2106.09965" in card


def test_release_missing_a_tensor_is_named(tmp_path, fixtures_dir):
    state = build(fixtures_dir / "hififace_pytorch_generator_state_dict.tsv")
    del state["sff_module.f_up.m_r_net.0.weight"]
    state["decoder.block_list.0.adain1.std_style_fc.weight"] = torch.zeros(3, 769)
    torch.save(state, tmp_path / "generator.pth")
    with pytest.raises(CheckpointError) as error:
        convert_hififace_pytorch(tmp_path / "generator.pth", tmp_path / "out")
    message = str(error.value)
    assert "missing: sff.mask_head.weight" in message
    assert "decoder.blocks.0.adain1.scale.weight (3, 769) != (512, 769)" in message
    assert not (tmp_path / "out").exists()


def test_wrong_checkpoint_kind_is_one_clear_line(tmp_path, fixtures_dir, capsys):
    torch.save(
        build(fixtures_dir / "bisenet_face_parsing_state_dict.tsv", seed=5), tmp_path / "79999_iter.pth"
    )
    assert main(["convert", "hififace-pytorch", str(tmp_path / "79999_iter.pth"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hififace: error: ")
    assert "looks like a face-parsing.PyTorch BiSeNet checkpoint" in err[0]
