"""Converters of the prior checkpoints, on synthetic files written with the public names and shapes."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from synthetic import build, read_tsv

from hififace.cli import main
from hififace.convert import (
    CheckpointError,
    arcface_depth,
    convert_arcface,
    convert_bfm,
    convert_bisenet,
    convert_deep3d,
    load_checkpoint,
)
from hififace.priors.arcface import ArcFace
from hififace.priors.face3d import BFMLandmarks, Face3DRegressor
from hififace.priors.parsing import FaceParser

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = Path(__file__).parents[2] / "shared" / "reference"
BISENET_TSV = FIXTURES / "bisenet_face_parsing_state_dict.tsv"


class NotATensor:
    pass


@pytest.fixture(scope="module")
def bisenet_weights() -> dict[str, torch.Tensor]:
    return build(BISENET_TSV, seed=5)


@pytest.fixture
def bisenet_pth(tmp_path, bisenet_weights) -> Path:
    path = tmp_path / "79999_iter.pth"
    torch.save(bisenet_weights, path)
    return path


# goldens of the original projects


def test_bisenet_golden(tmp_path, bisenet_pth):
    convert_bisenet(bisenet_pth, tmp_path / "parser")
    model = FaceParser.from_pretrained(tmp_path / "parser")
    golden = np.load(FIXTURES / "bisenet_golden.npz")
    image = torch.from_numpy(golden["image_u8"]).float() / 255
    with torch.no_grad():
        logits = model(image)
    np.testing.assert_allclose(
        logits[:, :, ::8, ::8].numpy(), golden["logits_every_8th_pixel"], rtol=0, atol=1e-5
    )
    assert np.array_equal(logits.argmax(1)[0].numpy(), golden["labels"])
    card = (tmp_path / "parser" / "README.md").read_text()
    assert "79999_iter.pth" in card and "face-parsing.PyTorch" in card and "license: mit" in card


def test_bfm_golden(tmp_path):
    convert_bfm(FIXTURES / "bfm_synthetic_front.mat", tmp_path / "bfm")
    model = BFMLandmarks.from_pretrained(tmp_path / "bfm")
    golden = np.load(FIXTURES / "bfm_landmarks_golden.npz")
    landmarks = model(torch.from_numpy(golden["coeffs"]))
    np.testing.assert_allclose(landmarks.detach().numpy(), golden["landmarks"], rtol=0, atol=1e-4)
    card = (tmp_path / "bfm" / "README.md").read_text()
    assert "Basel Face Model" in card and "bfm_synthetic_front.mat" in card


# round trips of the other sources


def test_arcface_backbone_round_trip(tmp_path):
    original = ArcFace(depth=50).eval()
    for name, buffer in original.named_buffers():  # non-trivial batch-norm statistics
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
    torch.save(original.state_dict(), tmp_path / "backbone.pth")
    converted = convert_arcface(tmp_path / "backbone.pth", tmp_path / "arcface")
    reloaded = ArcFace.from_pretrained(tmp_path / "arcface")
    assert reloaded.training is False and converted.training is False
    assert reloaded._hub_mixin_config["depth"] == 50
    image = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(reloaded.embed(image), original.embed(image))
    card = (tmp_path / "arcface" / "README.md").read_text()
    assert "backbone.pth" in card and "non-commercial" in card


def test_arcface_depth_is_read_from_layer3():
    for depth in (18, 34, 50, 100):
        with torch.device("meta"):
            state = ArcFace(depth=depth).state_dict()
        assert arcface_depth(state) == depth
    prefix = "id_extractor.f_id."
    release = read_tsv(FIXTURES / "hififace_pytorch_generator_state_dict.tsv")
    assert arcface_depth({k[len(prefix) :]: None for k, _ in release if k.startswith(prefix)}) == 100
    with pytest.raises(CheckpointError, match="layer3 has 5 blocks"):
        arcface_depth({f"layer3.{i}.conv1.weight": torch.zeros(1) for i in range(5)})


def test_arcface_from_ddp_file_without_batch_counters(tmp_path):
    original = ArcFace(depth=18).eval()
    state = {f"module.{k}": v for k, v in original.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "backbone.pth")
    converted = convert_arcface(tmp_path / "backbone.pth", tmp_path / "arcface")
    image = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(converted.embed(image), original.embed(image))


def test_deep3d_round_trip(tmp_path):
    prefix = "id_extractor.f_3d."
    lines = (FIXTURES / "hififace_pytorch_generator_state_dict.tsv").read_text().splitlines()
    rows = [line[len(prefix) :] for line in lines[1:] if line.startswith(prefix)]
    (tmp_path / "f3d.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    net_recon = build(tmp_path / "f3d.tsv", seed=1)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}
    torch.save({"net_recon": net_recon, "opt_00": optimizer, "epoch": 20}, tmp_path / "epoch_20.pth")

    command = [
        "convert",
        "deep3d",
        str(tmp_path / "epoch_20.pth"),
        str(tmp_path / "f3d"),
        "--input-size",
        "256",
    ]
    assert main(command) == 0
    reloaded = Face3DRegressor.from_pretrained(tmp_path / "f3d")
    expected = Face3DRegressor(input_size=256).eval()
    expected.load_state_dict(net_recon)
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        coeffs = reloaded(image)
        assert torch.equal(coeffs, expected(image))
    assert reloaded.input_size == 256 and coeffs.abs().max() > 0.1


# bad input


def test_missing_and_misshaped_tensors_are_named(tmp_path, bisenet_weights):
    state = dict(bisenet_weights)
    del state["ffm.conv1.weight"]
    state["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as error:
        convert_bisenet(tmp_path / "broken.pth", tmp_path / "out")
    message = str(error.value)
    assert "1 missing: ffm.conv1.weight" in message
    assert "conv_out.conv_out.weight (18, 256, 1, 1) != (19, 256, 1, 1)" in message
    assert not (tmp_path / "out").exists()


def test_wrong_kind_of_checkpoint_is_named(bisenet_pth, tmp_path):
    with pytest.raises(CheckpointError, match="looks like a face-parsing.PyTorch BiSeNet"):
        convert_arcface(bisenet_pth, tmp_path / "out")
    with pytest.raises(CheckpointError, match="no 'net_recon' entry"):
        convert_deep3d(bisenet_pth, tmp_path / "out")
    torch.save(ArcFace(depth=18).state_dict(), tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError, match="looks like an arcface_torch IResNet"):
        convert_bisenet(tmp_path / "backbone.pth", tmp_path / "out")


def test_unreadable_files_are_refused(tmp_path, bisenet_pth):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(bisenet_pth.read_bytes()[:5000])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint" * 20)
    for path in (corrupt, garbage):
        with pytest.raises(CheckpointError, match="cannot read"):
            load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read"):
        convert_bfm(garbage, tmp_path / "bfm")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pth")


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1), "trap": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused: it pickles .*NotATensor"):
        load_checkpoint(tmp_path / "evil.pth")


def test_state_dict_content_is_checked(tmp_path):
    torch.save({}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no tensors"):
        load_checkpoint(tmp_path / "empty.pth")
    torch.save({"net_recon": {"a": torch.zeros(1)}, "epoch": 20}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match="not tensors .*key="):
        load_checkpoint(tmp_path / "nested.pth")
    assert list(load_checkpoint(tmp_path / "nested.pth", key="net_recon")) == ["a"]


def test_safetensors_sources_convert(tmp_path, bisenet_weights):
    save_file(bisenet_weights, tmp_path / "bisenet.safetensors")
    model = convert_bisenet(tmp_path / "bisenet.safetensors", tmp_path / "parser")
    assert torch.equal(model.conv_out.conv_out.weight, bisenet_weights["conv_out.conv_out.weight"])


# our synthetic rule is the reference one, bit for bit


@pytest.mark.skipif(not (REFERENCE / "synthetic_release.py").is_file(), reason="needs ../shared/reference")
def test_synthetic_matches_reference_bit_for_bit(tmp_path):
    spec = importlib.util.spec_from_file_location("synthetic_release", REFERENCE / "synthetic_release.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    every_rule = [  # one row for each rule of the reference, in an order that mixes generators' draws
        ("a.bn1.num_batches_tracked", "scalar", "int64"),
        ("a.bn1.running_mean", "4", "float32"),
        ("a.bn1.running_var", "4", "float32"),
        ("f.final_layers.3.weight", "3x16x1x1", "float32"),
        ("d.0.mean_style_fc.weight", "8x12", "float32"),
        ("d.0.std_style_fc.bias", "8", "float32"),
        ("d.0.mean_style_fc.bias", "8", "float32"),
        ("e.conv.weight", "5x3x3x3", "float32"),
        ("f.prelu.weight", "6", "float32"),
        ("f.bn2.weight", "6", "float32"),
        ("f.features.weight", "6", "float32"),
        ("f.layer1.0.downsample.1.weight", "6", "float32"),
        ("f.fc.bias", "6", "float32"),
    ]
    tsv = tmp_path / "rules.tsv"
    tsv.write_text("key\tshape\tdtype\n" + "".join("\t".join(row) + "\n" for row in every_rule))
    for path, seed in ((tsv, 3), (BISENET_TSV, 5)):
        ours, theirs = build(path, seed=seed), reference.build(str(path), seed=seed)
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
