"""What this machine's cores can compute for the generator: bf16 against int8, in the same run.

    python benchmarks/peak.py            # the 256 generator's convolutions; about 2 minutes on 2 cores
    python benchmarks/peak.py --quick    # tiny config

Issue 16 asks for 0.15 s per image at 256. The generator needs about 228 GFLOP per face (encoder,
decoder and SFF), so that means 1.5 TFLOP/s. This script measures what the cores give:

- `matmul`: the best 2048^2 matrix product in bf16 and in int8 (`torch._int_mm`, int32 sums). On a
  CPU with AVX-512 VNNI but without AMX, int8 has twice bf16's multiply-adds per instruction.
- `convolutions`: every convolution of one generator pass (`HifiFace.generate` at batch 1), each
  distinct shape timed alone and weighted by how often it runs. bf16 runs channels-last through
  oneDNN, as the pipeline's fast path does. int8 runs as oneDNN's quantised convolution (uint8
  activations, int8 weights packed once, per-tensor scales), the kernel an int8-quantised model
  would call.
  The sum is a lower bound on a whole int8 generator: quantising and dequantising between layers,
  the normalisations and SFF's blending come on top, and so does the quality cost.

Writes benchmarks/results/peak-<machine>.json.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import Counter

import numpy as np
import torch
from common import count_flops, machine_info, matmul_peak_gflops, parse_args, release_model, save, tiny_model

from hififace.fast import inference_context

GOAL_S = 0.15  # issue 16, item 5: seconds per image at 256


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the whole measurement")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    torch.backends.quantized.engine = "onednn"
    model = tiny_model() if args.quick else release_model(256)
    shapes, flops = generator_convolutions(model)
    rows = {"matmul bf16": [], "matmul int8": [], "convolutions bf16": [], "convolutions int8": []}
    repeats = 2 if args.quick else 5
    per_shape: dict[str, dict[Shape, float]] = {}
    for i in range(1 if args.quick else args.rounds):
        rows["matmul bf16"].append(matmul_peak_gflops("cpu", torch.bfloat16))
        rows["matmul int8"].append(matmul_peak_gflops("cpu", torch.int8))
        for precision in ("bf16", "int8"):
            per_shape[precision] = convolutions_seconds(shapes, precision, repeats)
            rows[f"convolutions {precision}"].append(
                sum(shapes[k] * t for k, t in per_shape[precision].items())
            )
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in rows.items()))
    medians = {k: float(np.median(v)) for k, v in rows.items()}
    conv_flops = sum(count * conv_flop(shape) for shape, count in shapes.items())
    result = {
        "benchmark": "bf16 against int8 on this CPU: matrix-product peaks and the generator's convolutions",
        "machine": machine_info("cpu"),
        "machine_after": {"load_average": [round(x, 2) for x in os.getloadavg()]},
        "model": "tiny config" if args.quick else "the 256 release layout (synthetic weights)",
        "generator_gflop_per_image": flops / 1e9,
        "convolution_gflop_per_image": conv_flops / 1e9,
        "distinct_convolution_shapes": len(shapes),
        "matmul_peak_gop_per_s": {"bf16": medians["matmul bf16"], "int8": medians["matmul int8"]},
        "convolutions_s_per_image": {
            "bf16": medians["convolutions bf16"],
            "int8": medians["convolutions int8"],
        },
        "convolutions_gop_per_s": {
            p: conv_flops / medians[f"convolutions {p}"] / 1e9 for p in ("bf16", "int8")
        },
        "generator_s_at_matmul_peak": {p: flops / (medians[f"matmul {p}"] * 1e9) for p in ("bf16", "int8")},
        "goal_s_per_image": GOAL_S,
        "per_shape_last_round": [
            {
                "input": list(shape[0]),
                "weight": list(shape[1]),
                "stride": list(shape[2]),
                "count": count,
                "gflop_each": conv_flop(shape) / 1e9,
                "bf16_s": per_shape["bf16"][shape],
                "int8_s": per_shape["int8"][shape],
            }
            for shape, count in shapes.most_common()
        ],
        "runs": rows,
        "method": "medians of interleaved rounds; each convolution shape timed alone (best of its repeats) "
        "and weighted by its count in one generator pass",
    }
    result["int8_convolutions_alone_within_goal"] = medians["convolutions int8"] <= GOAL_S
    for key in ("matmul_peak_gop_per_s", "convolutions_s_per_image", "convolutions_gop_per_s"):
        print(f"{key}: " + ", ".join(f"{p} {v:.3f}" for p, v in result[key].items()))
    save("peak", result, args)


Shape = tuple[tuple[int, ...], tuple[int, ...], tuple[int, int], tuple[int, int], int]


def generator_convolutions(model: torch.nn.Module) -> tuple[Counter[Shape], int]:
    """(input shape, weight shape, stride, padding, groups) of every convolution of one generator
    pass at batch 1, counted; and the pass's FLOPs."""
    shapes: Counter[Shape] = Counter()

    def record(module: torch.nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError(f"{module}: only zero, numeric padding is timed here")
        shapes[
            (tuple(inputs[0].shape), tuple(module.weight.shape), module.stride, module.padding, module.groups)
        ] += 1

    parts = (model.encoder, model.decoder, model.sff)
    hooks = [
        m.register_forward_pre_hook(record)
        for p in parts
        for m in p.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    size = model.image_size
    target = torch.rand(1, 3, size, size)
    with inference_context("cpu"):
        v_sid = torch.randn(1, model.identity.dim)
        model.generate(target, v_sid)
        for hook in hooks:
            hook.remove()
        flops = count_flops(lambda: model.generate(target, v_sid))
    return shapes, flops


def conv_flop(shape: Shape) -> int:
    """Multiply-adds x 2 of one convolution of `shape`."""
    (n, _, h, w), (out_c, in_c, kh, kw), (sh, sw), (ph, pw), _ = shape
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return 2 * n * out_c * out_h * out_w * in_c * kh * kw


def convolutions_seconds(shapes: Counter[Shape], precision: str, repeats: int) -> dict[Shape, float]:
    """Seconds of one call of each convolution shape at `precision`, each timed alone (best of `repeats`)."""
    seconds = {}
    for shape in shapes:
        run = _int8_convolution(shape) if precision == "int8" else _bf16_convolution(shape)
        run()  # oneDNN builds its primitive on the first call
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        seconds[shape] = best
    return seconds


def _bf16_convolution(shape: Shape):
    size, weight_shape, stride, padding, groups = shape
    x = torch.randn(size, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(weight_shape, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    bias = torch.randn(weight_shape[0], dtype=torch.bfloat16)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return torch.nn.functional.conv2d(x, weight, bias, stride, padding, 1, groups)

    return run


def _int8_convolution(shape: Shape):
    size, weight_shape, stride, padding, groups = shape
    with warnings.catch_warnings():  # quantised tensors are deprecated in favour of torchao's flows
        warnings.simplefilter("ignore")
        x = torch.quantize_per_tensor(torch.randn(size), 0.05, 128, torch.quint8)
        x = x.contiguous(memory_format=torch.channels_last)
        weight = torch.quantize_per_tensor(torch.randn(weight_shape), 0.01, 0, torch.qint8)
    # packed once, as a quantised model holds its weights (the functional form packs on every call)
    packed = torch.ops.quantized.conv2d_prepack(
        weight, torch.randn(weight_shape[0]), list(stride), list(padding), [1, 1], groups
    )

    def run() -> torch.Tensor:
        return torch.ops.quantized.conv2d(x, packed, 0.05, 128)

    return run


if __name__ == "__main__":
    main()
