"""Faster HifiFace inference that stays close to fp32: reduced precision, channels-last, compilation.

    import torch
    from hififace import HifiFace
    from hififace.fast import inference_context, optimize

    model = optimize(HifiFace.from_pretrained("models/hififace-256"))  # channels-last, in place
    code = model.encode_source(source)              # once per source face, reused for every target
    with inference_context("cpu", torch.bfloat16):  # bf16 autocast: AVX-512 BF16 / AMX CPUs, GPUs
        out = model(code, targets)                  # a batch of frames per call

Each option, what it costs in accuracy (I_r against fp32 eager; `benchmarks/generator.py` measures
it and `tests/test_fast.py` bounds it), and its time on a 2-core Xeon with AMX-BF16 (256, batch 1,
the time of fp32 eager: `benchmarks/results/generator-*.json`):

- channels-last: the convolution kernels (and so the activations) in NHWC, the layout oneDNN and
  cuDNN are fastest in with 16-bit types. Same arithmetic in another order: differences at float
  rounding level. In fp32 on that CPU it is a little slower (1.1x); with bf16 it gives 0.44x.
- bf16 (CPU and GPU) or fp16 (GPU) autocast: convolutions and linear layers in 16-bit, the rest
  (instance norm, resampling, the final blend) as autocast decides. bf16: about one 8-bit level of
  mean difference on I_r, up to 13 levels on a few pixels (8-13% of them differ by more than 2);
  the errors start in the encoder and add up through the net. fp16 is 6x closer (0.16 levels) but slow on CPUs without AMX-FP16 (1.3x).
- `torch.compile` of the encoder, decoder and SFF: fuses the normalisations, activations and casts
  around the convolutions (with channels-last and bf16: 0.21x, 4.6 images/s). The priors and
  `forward`'s input checks stay eager, so the compiled graphs have no breaks. Compilation runs on
  the first call with each new input shape and dtype, about 50 s on 2 cores (a few seconds when
  torch's cache has it); it pays off for videos and servers, not for one image.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hififace.models.generator import HifiFace

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """`torch.float32`, `torch.bfloat16` or `torch.float16` from a dtype or its name."""
    if isinstance(dtype, str):
        dtype = DTYPES.get(dtype.removeprefix("torch."), dtype)
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


# /proc/cpuinfo flags of x86 CPUs whose bf16 dot products run in hardware (Intel Cooper Lake and
# Sapphire Rapids on, AMD Zen 4 on); oneDNN's bf16 convolutions are 2x fp32 there, slower elsewhere.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` computes bf16 in hardware: CPU flags avx512_bf16 / amx_bf16, or a CUDA GPU with
    bf16 units (Ampere and later; emulated bf16 on older GPUs does not count)."""
    device = torch.device(device)
    if device.type == "cpu":
        return bool(cpu_flags() & NATIVE_BF16_CPU_FLAGS)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return False


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """`as_dtype`, plus "auto": bfloat16 where `device` has native bf16 (`has_native_bf16`), else float32."""
    if isinstance(dtype, str) and dtype == "auto":
        return torch.bfloat16 if has_native_bf16(device) else torch.float32
    return as_dtype(dtype)


def precision_name(dtype: torch.dtype, channels_last: bool) -> str:
    """How a model runs, in words for logs and results: "float32", "bfloat16 + channels-last", ..."""
    name = str(dtype).removeprefix("torch.")
    return f"{name} + channels-last" if channels_last else name


@contextlib.contextmanager
def inference_context(
    device: str | torch.device = "cpu", dtype: str | torch.dtype = torch.float32
) -> Iterator[None]:
    """`torch.inference_mode()`, with autocast to `dtype` on `device`'s type unless it is float32.

    Args:
        device (str or torch.device, "cpu"): where the model runs ("cpu", "cuda", "cuda:1", ...).
        dtype (str or torch.dtype, float32): float32 (plain fp32), bfloat16 (CPU or GPU) or float16
            (meant for GPUs; CPU autocast runs it too, which the tests use, but rarely faster there).
    """
    dtype = as_dtype(dtype)
    autocast = (
        torch.autocast(torch.device(device).type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        yield


def optimize(model: HifiFace, channels_last: bool = True, compile: bool | dict[str, Any] = False) -> HifiFace:
    """Prepare a HifiFace for fast inference, in place; returns it, in eval mode.

    Move the model to its device first (`optimize` keeps the device and the fp32 weights; pick the
    precision at call time with `inference_context`). The state dict keeps its names, so
    `save_pretrained` still works.

    Args:
        model (HifiFace): the model, on its device.
        channels_last (bool, True): convolution kernels in channels-last (NHWC) memory format, priors
            included; inputs need no conversion.
        compile (bool or dict, False): `torch.compile` the encoder, decoder and SFF; a dict is passed
            to `torch.compile` as options (e.g. `{"mode": "max-autotune"}`).
    """
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        options = compile if isinstance(compile, dict) else {}
        # The parts, not `forward`: the input checks and the priors stay eager (no graph breaks).
        for part in (model.encoder, model.decoder, model.sff):
            part.compile(**options)
    return model
