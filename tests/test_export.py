"""ONNX export: `hififace export-onnx` files run in onnxruntime and match PyTorch (tiny config)."""

import numpy as np
import onnx
import pytest
import torch

from hififace import HifiFace
from hififace.cli import main
from hififace.export import GENERATOR_OUTPUTS, check_onnx, export_onnx

ATOL = 1e-4  # fp32 in both; observed about 2e-5 (onnxruntime and oneDNN order the sums differently)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny")
    model = HifiFace(base_channels=8, max_channels=16, arcface_depth=18).eval()
    model.save_pretrained(folder / "model")
    return model, folder


@pytest.fixture(scope="module")
def exported(tiny):
    """The command line writes the generator and the identity extractor with a symbolic batch."""
    _, folder = tiny
    args = ["export-onnx", str(folder / "model"), str(folder / "g.onnx"), "--dynamic-batch"]
    assert main(args + ["--identity", str(folder / "id.onnx"), "--check"]) == 0
    return folder / "g.onnx", folder / "id.onnx"


def _shape(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_generator_graph_has_the_documented_inputs_and_outputs(exported):
    graph = onnx.load(exported[0]).graph
    assert [(i.name, _shape(i)) for i in graph.input] == [
        ("target", ["batch", 3, 256, 256]),
        ("v_sid", ["batch", 769]),
    ]
    assert tuple(o.name for o in graph.output) == GENERATOR_OUTPUTS


def test_onnxruntime_matches_pytorch_at_another_batch_size(tiny, exported):
    model, _ = tiny
    diffs = check_onnx(model, exported[0], batch=3)
    assert set(diffs) == set(GENERATOR_OUTPUTS)
    assert max(diffs.values()) < ATOL, diffs
    assert check_onnx(model, exported[1], batch=3)["v_sid"] < ATOL


def test_identity_and_generator_files_together_make_the_swap(tiny, exported):
    import onnxruntime

    model, _ = tiny
    generator, identity = (
        onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in exported
    )
    source, target = torch.rand(2, 1, 3, 256, 256)
    (v_sid,) = identity.run(None, {"source": source.numpy(), "target": target.numpy()})
    outputs = generator.run(None, {"target": target.numpy(), "v_sid": v_sid})
    with torch.inference_mode():
        expected = model(source, target)
    for name, value in zip(GENERATOR_OUTPUTS, outputs, strict=True):
        np.testing.assert_allclose(value, getattr(expected, name).numpy(), atol=ATOL, rtol=0, err_msg=name)


def test_static_export_fixes_the_batch_to_one(tiny, tmp_path):
    model, _ = tiny
    path = export_onnx(model, tmp_path / "static.onnx", opset=18)
    model_proto = onnx.load(path)
    assert _shape(model_proto.graph.input[0]) == [1, 3, 256, 256]
    assert any(o.version == 18 for o in model_proto.opset_import if o.domain in ("", "ai.onnx"))


def test_export_of_a_folder_without_a_model_is_one_clear_line(tmp_path, capsys):
    assert main(["export-onnx", str(tmp_path), str(tmp_path / "g.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no hififace model" in err[0]
    assert not (tmp_path / "g.onnx").exists()
