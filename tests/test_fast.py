"""The fast inference paths (hififace.fast) stay within stated bounds of fp32 eager.

Bounds are on I_r: the maximum absolute difference and the mean absolute difference in 8-bit levels
(both images rounded to uint8, as they are saved). They hold for the tiny config with random weights
and for the synthetic public release (every tensor of HiFiFace-pytorch, seeded values: activations of
the released network's scale) on the fixture faces; each bound is about 1.5x what was observed.
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import build

from hififace import HifiFace
from hififace.convert import HIFIFACE_PYTORCH_KEYS, load_converted
from hififace.fast import cpu_flags, inference_context, optimize

# (max |ΔI_r|, mean |Δ| in 8-bit levels), observed: tiny bf16 0.048 / 0.40, fp16 0.0048 / 0.05,
# channels-last 1.4e-6 / 0; release bf16 0.039 / 1.10, fp16 0.0065 / 0.18 (on 8 faces in
# benchmarks/generator.py: bf16 0.051 / 1.25, channels-last 7.7e-6 / 0.0002).
BOUNDS = {
    ("tiny", "channels_last"): (1e-4, 0.01),
    ("tiny", "bfloat16"): (0.07, 0.6),
    ("tiny", "channels_last+bfloat16"): (0.07, 0.6),
    ("tiny", "float16"): (0.008, 0.08),
    ("release", "bfloat16"): (0.06, 1.6),
    ("release", "channels_last+bfloat16"): (0.06, 1.6),
    ("release", "float16"): (0.01, 0.3),
}


def levels(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two [0, 1] images in 8-bit levels, after rounding each to uint8."""

    def q(x):
        return (x.float().clamp(0, 1) * 255).round()

    return float((q(a) - q(b)).abs().mean())


@pytest.fixture(scope="module")
def faces(fixtures_dir):
    golden = np.load(fixtures_dir / "hififace_pytorch_golden.npz")
    source = torch.from_numpy(golden["source_u8"]).float() / 255
    target = torch.from_numpy(golden["target_u8"]).float() / 255
    return torch.cat([source, target]), torch.cat([target, source])  # two swaps, one batch


@pytest.fixture(scope="module")
def models(fixtures_dir):
    torch.manual_seed(0)
    tiny = HifiFace(base_channels=8, max_channels=16, arcface_depth=18).eval()
    state = build(fixtures_dir / "hififace_pytorch_generator_state_dict.tsv")
    release = load_converted(HifiFace(), state, HIFIFACE_PYTORCH_KEYS)
    return {"tiny": tiny, "release": release}


@pytest.fixture(scope="module")
def reference(models, faces):
    """fp32 eager I_r of each model."""
    with torch.inference_mode():
        return {name: model(*faces).image for name, model in models.items()}


# float16 is a GPU path. A CPU without fp16 units (no AVX-512 FP16 / AMX-FP16) runs fp16
# convolutions in reference kernels: the release model took 684 s for its two faces on a 2-core
# AMD EPYC, against about 2 s in bf16. There the fp16 plumbing is still checked on the tiny model.
NATIVE_FP16 = bool({"avx512_fp16", "amx_fp16"} & cpu_flags())
CASES = [
    ("tiny", "channels_last"),  # fp32 channels-last only differs by rounding: the tiny model suffices
    *(
        (name, variant)
        for name in ("tiny", "release")
        for variant in ("bfloat16", "channels_last+bfloat16", "float16")
        if name == "tiny" or variant != "float16"
    ),
    pytest.param(
        "release",
        "float16",
        marks=pytest.mark.skipif(not NATIVE_FP16, reason="this CPU has no fp16 units (reference kernels)"),
    ),
]


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_fast_path_is_within_its_bound(models, faces, reference, name, variant):
    model = models[name]
    if variant.startswith("channels_last"):
        model = optimize(copy.deepcopy(model), channels_last=True)
    dtype = variant.removeprefix("channels_last").removeprefix("+") or "float32"
    with inference_context("cpu", dtype):
        image = model(*faces).image
    difference = float((image.float() - reference[name]).abs().max())
    max_abs, mean_levels = BOUNDS[name, variant]
    assert difference < max_abs
    assert levels(image, reference[name]) < mean_levels
    if dtype != "float32":
        assert difference > 1e-4  # it did run in reduced precision


def test_compiled_sff_in_bfloat16_is_within_the_bf16_bound(models, faces):
    """`optimize(compile=True)` compiles each part on first use; the SFF (every op kind of the
    generator but down-sampling) is compiled here, which keeps the test to ~25 s on 2 cores."""
    model = copy.deepcopy(models["tiny"])
    _, target = faces
    with torch.inference_mode():
        v_sid = model.identity(*faces)
        z_enc, bottleneck = model.encoder(target)
        z_dec = model.decoder(bottleneck, v_sid)
        expected = model.sff(target, z_enc, z_dec, v_sid)["image"]
    optimize(model, channels_last=True, compile=True)
    assert all(part._compiled_call_impl is not None for part in (model.encoder, model.decoder, model.sff))
    with inference_context("cpu", "bfloat16"):
        image = model.sff(target, z_enc, z_dec, v_sid)["image"]
    assert float((image.float() - expected).abs().max()) < 0.07
    assert levels(image, expected) < 0.6
    assert list(model.state_dict()) == list(models["tiny"].state_dict())  # save_pretrained unchanged


def test_one_source_code_serves_a_batch_of_frames(models, faces):
    model = models["tiny"]
    source, target = faces
    frames = torch.cat([target, target.flip(-1), source])
    with inference_context():
        code = model.encode_source(source[:1])
        batched = model(code, frames).image
        one_by_one = torch.cat([model(source[:1], frame[None]).image for frame in frames])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)


def test_inference_context_autocasts_only_below_float32():
    with inference_context("cpu", torch.float32):
        assert torch.is_inference_mode_enabled() and not torch.is_autocast_enabled("cpu")
    with inference_context("cpu", "bfloat16"):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not torch.is_inference_mode_enabled()
    with pytest.raises(ValueError, match="dtype must be one of"), inference_context("cpu", "int8"):
        pass


def test_optimize_puts_every_convolution_in_channels_last(models):
    model = optimize(copy.deepcopy(models["tiny"]).train())
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not model.training


def test_generator_benchmark_quick_run_writes_its_json(tmp_path):
    """Smoke run of `benchmarks/generator.py --quick` (tiny config): every variant timed and compared."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "generator.py"
    subprocess.run(
        [sys.executable, str(script), "--quick", "--out-dir", str(tmp_path)], check=True, capture_output=True
    )
    (path,) = tmp_path.glob("generator-quick-*.json")
    result = json.loads(path.read_text())
    config = result["configs"][0]
    assert config["flops_per_image"] > 0 and result["machine"]["torch"] == torch.__version__
    for name, variant in config["variants"].items():
        assert variant["images_per_s"] > 0 and variant["peak_memory_bytes"] > 0
        difference = variant["difference_vs_fp32"]["max_abs"]
        assert difference == 0 if name == "fp32" else 0 <= difference < 0.1
