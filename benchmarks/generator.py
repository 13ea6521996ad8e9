"""Generator speed: encoder + decoder + SFF from a given v_sid (`HifiFace.generate`), fp32 eager
against each fast path of `hififace.fast`, at 256 and 512, batch 1 and a larger batch.

    python benchmarks/generator.py           # about 6 minutes on a quiet 2-core CPU
    python benchmarks/generator.py --quick   # tiny config, 256 only, seconds (CI smoke run)
    python benchmarks/generator.py --configs 256x1 --variants fp32 channels_last+bf16

For every variant: median and spread of the timed runs, images/s, achieved FLOP/s (FLOPs counted with
`torch.utils.flop_counter` on the fp32 graph), peak memory, the ratio against fp32 eager measured in
the same interleaved rounds, and the difference of I_r against fp32 eager on the same inputs (the
fixture faces; v_sid from the fp32 priors). Writes benchmarks/results/generator-<machine>.json.
"""

from __future__ import annotations

import copy

import torch
from common import (
    REFERENCE,
    cold_compile_cache,
    count_flops,
    faces,
    gb,
    image_difference,
    machine_info,
    memory_method,
    parse_args,
    print_table,
    release_model,
    run_interleaved,
    save,
    timing_summary,
    tiny_model,
    weights_note,
)

from hififace.fast import inference_context, optimize

# name: (channels_last, autocast dtype, torch.compile)
VARIANTS = {
    "fp32": (False, "float32", False),
    "channels_last": (True, "float32", False),
    "bf16": (False, "bfloat16", False),
    "fp16": (False, "float16", False),
    "channels_last+bf16": (True, "bfloat16", False),
    "channels_last+fp16": (True, "float16", False),
    "channels_last+compile": (True, "float32", True),
    "channels_last+bf16+compile": (True, "bfloat16", True),
    "channels_last+fp16+compile": (True, "float16", True),
}
ALL_CPU = [
    "fp32",
    "channels_last",
    "bf16",
    "channels_last+bf16",
    "channels_last+fp16",
    "channels_last+bf16+compile",
]
# (size x batch, variants): what a default run measures; 512 and the larger batches keep to the
# essential variants so that the whole run stays at a few minutes on 2 cores.
PLANS = {
    "cpu": [
        ("256x1", ALL_CPU),
        ("256x8", ["fp32", "channels_last", "bf16", "channels_last+bf16", "channels_last+bf16+compile"]),
        ("512x1", ["fp32", "channels_last+bf16"]),
        ("512x4", ["fp32", "channels_last+bf16"]),
    ],
    "cuda": [
        (
            config,
            [
                "fp32",
                "bf16",
                "fp16",
                "channels_last+bf16",
                "channels_last+fp16",
                "channels_last+bf16+compile",
            ],
        )
        for config in ("256x1", "256x32", "512x1", "512x16")
    ],
    "quick": [("256x1", ALL_CPU[:-1]), ("256x2", ["fp32", "channels_last+bf16"])],
}


def add_options(parser) -> None:
    parser.add_argument(
        "--configs", nargs="+", metavar="SxB", help="e.g. 256x1 512x4 (default: a plan per device)"
    )
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="variants for every config")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    compile_cache = cold_compile_cache()
    plan = PLANS["quick" if args.quick else device.type]
    if args.configs:
        plan = [(c, args.variants or next((v for k, v in plan if k == c), ALL_CPU)) for c in args.configs]
    elif args.variants:
        plan = [(c, args.variants) for c, _ in plan]
    repeats = args.repeats or (1 if args.quick else 3)
    models: dict[int, torch.nn.Module] = {}
    results = []
    for config, variants in plan:
        size, batch = (int(n) for n in config.split("x"))
        if "fp32" not in variants:
            variants = ["fp32", *variants]
        if size not in models:
            models = {size: (tiny_model() if args.quick else release_model(size)).to(device)}
        results.append(
            benchmark(models[size], size, batch, variants, args.warmup, repeats, device, args.quick)
        )
    result = {
        "benchmark": "generator (encoder + decoder + SFF from a given v_sid)",
        "machine": machine,
        "memory_method": memory_method(device),
        "flops_method": "torch.utils.flop_counter.FlopCounterMode on the fp32 graph (2 FLOPs per multiply-add)",
        "timing_method": f"{args.warmup} warm-up + {repeats} timed runs per variant, variants interleaved per round",
        "difference_method": "I_r of the variant against fp32 eager on the same inputs; levels: both rounded to uint8",
        "compile_cache": compile_cache,
        "reference": REFERENCE,
        "configs": results,
    }
    if not args.quick:
        result["targets"] = targets(results)
        for name, target in result["targets"].items():
            print(f"target {name}: {target}")
    save("generator", result, args)


def benchmark(
    model, size: int, batch: int, variants: list[str], warmup: int, repeats: int, device, quick: bool
) -> dict:
    print(f"\n== generator {size}x{size}, batch {batch} ==", flush=True)
    sources, targets = (x.to(device) for x in faces(batch, size))
    with inference_context(device):
        v_sid = model.identity(sources, targets)
        flops = count_flops(lambda: model.generate(targets[:1], v_sid[:1]))
    torch._dynamo.reset()  # every compiled variant compiles for this shape, from scratch
    runners = {}
    for name in variants:
        channels_last, dtype, compile_ = VARIANTS[name]
        variant_model = model
        if channels_last or compile_:  # a copy of the generator parts; the priors are not used here
            variant_model = copy.deepcopy(model, memo={id(model.identity): model.identity})
            optimize(
                variant_model, channels_last=channels_last, compile={"dynamic": False} if compile_ else False
            )
        runners[name] = _runner(variant_model, targets, v_sid, device, dtype)
    record = run_interleaved(runners, warmup, repeats, device)
    reference = record["fp32"]["output"]
    rows = {}
    for name in variants:
        r = record[name]
        row = timing_summary(r["times"], batch, flops)
        row["ratio_vs_fp32"] = row["median_s"] / timing_summary(record["fp32"]["times"], batch)["median_s"]
        row["first_call_s"] = r["first_s"]
        if VARIANTS[name][2]:
            row["compile_s"] = r["first_s"] - row["median_s"]  # first call minus a steady-state call
        row["peak_memory_bytes"] = r["peak_bytes"]
        row["memory_increase_bytes"] = r["increase_bytes"]
        row["difference_vs_fp32"] = image_difference(r["output"]["image"], reference["image"])
        row["max_abs_difference_other_outputs"] = {
            k: float((v.float() - reference[k].float()).abs().max())
            for k, v in r["output"].items()
            if k != "image"
        }
        rows[name] = row
    _print(rows, batch)
    return {
        "image_size": size,
        "batch": batch,
        "weights": weights_note(quick, size),
        "generator_parameters": sum(
            p.numel() for n, p in model.named_parameters() if not n.startswith("identity.")
        ),
        "flops_per_image": flops,
        "variants": rows,
    }


def _runner(model, targets, v_sid, device, dtype):
    def run():
        with inference_context(device, dtype):
            return model.generate(targets, v_sid)

    return run


def _print(rows: dict[str, dict], batch: int) -> None:
    table = [
        {
            "variant": name,
            **r,
            "min": r["min_s"] / batch,
            "max": r["max_s"] / batch,
            "peak": gb(r["peak_memory_bytes"]),
            "increase": gb(r["memory_increase_bytes"]),
            "max_abs": r["difference_vs_fp32"]["max_abs"],
            "levels": r["difference_vs_fp32"]["mean_levels"],
        }
        for name, r in rows.items()
    ]
    print_table(
        table,
        [
            ("variant", "variant", "s"),
            ("s/img", "seconds_per_image", ".3f"),
            ("min", "min", ".3f"),
            ("max", "max", ".3f"),
            ("img/s", "images_per_s", ".2f"),
            ("GFLOP/s", "achieved_gflop_per_s", ".0f"),
            ("vs fp32", "ratio_vs_fp32", ".2f"),
            ("peak RSS", "peak", "s"),
            ("+run", "increase", "s"),
            ("max|dI_r|", "max_abs", ".2e"),
            ("mean lvl", "levels", ".3f"),
        ],
    )


def targets(results: list[dict]) -> dict:
    """Issue 5's targets, as measured in this run (not asserted)."""
    at_256 = [c for c in results if c["image_size"] == 256]
    base = next((c for c in at_256 if c["batch"] == 1), None)
    if base is None:
        return {}
    fp32 = base["variants"]["fp32"]["seconds_per_image"]
    best_name, best = min(
        (
            (f"{name}, batch {c['batch']}", v["seconds_per_image"])
            for c in at_256
            for name, v in c["variants"].items()
        ),
        key=lambda item: item[1],
    )
    return {
        "fp32 eager no slower than HiFiFace-pytorch (2.02 s/image)": {
            "seconds_per_image": fp32,
            "met": fp32 <= REFERENCE["seconds_per_image"],
        },
        "best path at most half of fp32 eager batch 1 per image": {
            "best": best_name,
            "seconds_per_image": best,
            "ratio": best / fp32,
            "met": best / fp32 <= 0.5,
        },
    }


if __name__ == "__main__":
    main()
