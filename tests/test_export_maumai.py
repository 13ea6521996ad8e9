"""ONNX export of the maum-ai variant: tanh masks, the 256->259 fusion block and bilinear ArcFace resize
survive the export, and onnxruntime matches PyTorch (tiny config)."""

import numpy as np
import onnx
import pytest
import torch

from hififace import HifiFace
from hififace.cli import main
from hififace.export import GENERATOR_OUTPUTS, check_onnx

ATOL = 1e-4  # fp32 in both, as tests/test_export.py


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny maum-ai model written by the command line, generator and identity, symbolic batch."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("maum-onnx")
    model = HifiFace(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64, sff="maum-ai")
    model.eval().save_pretrained(folder / "model")
    args = ["export-onnx", str(folder / "model"), str(folder / "g.onnx"), "--dynamic-batch"]
    assert main(args + ["--identity", str(folder / "id.onnx")]) == 0
    return model, folder / "g.onnx", folder / "id.onnx"


def test_maum_generator_and_identity_match_pytorch(exported):
    model, generator, identity = exported
    diffs = check_onnx(model, generator, batch=2)
    assert set(diffs) == set(GENERATOR_OUTPUTS) and max(diffs.values()) < ATOL, diffs
    assert check_onnx(model, identity, batch=2)["v_sid"] < ATOL
    ops = {node.op_type for node in onnx.load(generator).graph.node}
    assert "Tanh" in ops and "Sigmoid" not in ops  # the variant's masks, not the default's
    resizes = [n for n in onnx.load(identity).graph.node if n.op_type == "Resize"]
    modes = {a.s.decode() for n in resizes for a in n.attribute if a.name == "mode"}
    assert "linear" in modes and "cubic" not in modes  # maum-ai's bilinear resize to 112


def test_maum_onnx_pair_makes_the_swap_with_negative_masks(exported):
    import onnxruntime

    model, *paths = exported
    generator, identity = (
        onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in paths
    )
    source, target = torch.rand(2, 1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    (v_sid,) = identity.run(None, {"source": source.numpy(), "target": target.numpy()})
    outputs = dict(
        zip(GENERATOR_OUTPUTS, generator.run(None, {"target": target.numpy(), "v_sid": v_sid}), strict=True)
    )
    with torch.inference_mode():
        expected = model(source, target)
    for name, value in outputs.items():
        np.testing.assert_allclose(value, getattr(expected, name).numpy(), atol=ATOL, rtol=0, err_msg=name)
    assert outputs["mask"].min() < 0  # raw tanh masks come out as the release computes them
