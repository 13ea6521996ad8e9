"""Generator speed: encoder + decoder + SFF from a given v_sid (`HifiFace.generate`), fp32 eager
against each fast path of `hififace.fast`, at 256 and 512, batch 1 and a larger batch.

    python benchmarks/generator.py           # about 6 minutes on a quiet 2-core CPU
    python benchmarks/generator.py --quick   # tiny config, 256 only, seconds (CI smoke run)
    python benchmarks/generator.py --configs 256x1 --variants fp32 channels_last+bf16
    python benchmarks/generator.py --reference-src /tmp/hififace-pytorch-src   # + the public code
    python benchmarks/generator.py --configs 256x1 --experiments   # compile options, AOTInductor, int8

With `--reference-src DIR` (an extracted copy of github.com/xuehy/HiFiFace-pytorch, never part of
this repository) the public generator runs in the same interleaved rounds on the same synthetic
weights (`benchmarks/reference.py`), at 256; without it the JSON says that comparison was not run.
`--experiments` adds the CPU fast-path experiments: `torch.compile` with Inductor's weight freezing
(oneDNN prepacked convolutions) and with max-autotune, `torch.export` + AOTInductor, and torchao
int8 weight-only quantisation (of the Linear layers: torchao's weight-only int8 has no convolution
kernels), and int8 convolutions through torchao's PT2E flow (static activations, calibrated on the
run's inputs; bf16 elsewhere), each with its difference from fp32 eager.

For every variant: median and spread of the timed runs, images/s, achieved FLOP/s (FLOPs counted with
`torch.utils.flop_counter` on the fp32 graph), peak memory, the ratio against fp32 eager measured in
the same interleaved rounds, and the difference of I_r against fp32 eager on the same inputs (the
fixture faces; v_sid from the fp32 priors). Writes benchmarks/results/generator-<machine>.json.
"""

from __future__ import annotations

import copy
import tempfile

import torch
from common import (
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
    # the CPU fast-path experiments (`--experiments`)
    "channels_last+bf16+compile(freezing)": (True, "bfloat16", {"options": {"freezing": True}}),
    "channels_last+bf16+compile(max-autotune)": (
        True,
        "bfloat16",
        {"mode": "max-autotune-no-cudagraphs", "options": {"freezing": True}},
    ),
    "channels_last+bf16+aoti": (True, "bfloat16", "aoti"),
    # GPU: CUDA graphs through torch.compile's reduce-overhead mode (launch overhead gone at batch 1)
    "channels_last+fp16+compile(cudagraphs)": (True, "float16", {"mode": "reduce-overhead"}),
    "channels_last+bf16+compile(cudagraphs)": (True, "bfloat16", {"mode": "reduce-overhead"}),
    "channels_last+bf16+int8wo": (True, "bfloat16", "int8"),
    # int8 convolutions and linears (torchao PT2E, X86InductorQuantizer, static per-tensor
    # activations calibrated on the run's inputs), the other ops in bf16, Inductor with freezing
    "int8+bf16+compile(pt2e)": (False, "bfloat16", "int8-pt2e"),
    # the public HiFiFace-pytorch code, fp32 eager (`--reference-src`, 256 only)
    "hififace-pytorch": (False, "float32", "reference"),
}
EXPERIMENTS = [
    "channels_last+bf16+compile",
    "channels_last+bf16+compile(freezing)",
    "channels_last+bf16+compile(max-autotune)",
    "channels_last+bf16+aoti",
    "channels_last+bf16+int8wo",
    "int8+bf16+compile(pt2e)",
]
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
    parser.add_argument(
        "--reference-src",
        metavar="DIR",
        help="extracted HiFiFace-pytorch source: time its generator in the same rounds (256 only)",
    )
    parser.add_argument(
        "--experiments", action="store_true", help="add the CPU fast-path experiments to every config"
    )


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
    if args.experiments:
        plan = [(c, [*v, *(e for e in EXPERIMENTS if e not in v)]) for c, v in plan]
    reference, comparison = _reference(args)
    repeats = args.repeats or (1 if args.quick else 3)
    models: dict[int, torch.nn.Module] = {}
    results = []
    interrupted = False
    for config, variants in plan:
        size, batch = (int(n) for n in config.split("x"))
        variants = ["fp32", *(v for v in variants if v not in ("fp32", "hififace-pytorch"))]
        if reference is not None and size == 256:
            variants.append("hififace-pytorch")  # the public code only exists at 256
        if size not in models:
            models = {size: (tiny_model() if args.quick else release_model(size)).to(device)}
        try:
            results.append(
                benchmark(
                    models[size], size, batch, variants, args.warmup, repeats, device, args.quick, reference
                )
            )
        except KeyboardInterrupt:  # a time limit (benchmarks/gpu.sh): keep the configs already measured
            interrupted = True
            print(f"interrupted during {config}: writing the configs measured so far", flush=True)
            break
    if reference is not None:
        comparison["ratio_ours_fp32_over_hififace_pytorch"] = {
            f"{c['image_size']}x{c['batch']}": c["variants"]["fp32"]["median_s"]
            / c["variants"]["hififace-pytorch"]["median_s"]
            for c in results
            if "hififace-pytorch" in c["variants"]
        }
    result = {
        "benchmark": "generator (encoder + decoder + SFF from a given v_sid)",
        "machine": machine,
        "machine_after": {"load_average": _load_average()},
        "memory_method": memory_method(device),
        "flops_method": "torch.utils.flop_counter.FlopCounterMode on the fp32 graph (2 FLOPs per multiply-add)",
        "timing_method": f"{args.warmup} warm-up + {repeats} timed runs per variant, variants interleaved per round",
        "difference_method": "I_r of the variant against fp32 eager on the same inputs; levels: both rounded to uint8",
        "compile_cache": compile_cache,
        "reference_comparison": comparison,
        "configs": results,
        "interrupted": interrupted,
    }
    if not args.quick:
        result["targets"] = targets(results) | (gpu_targets(results) if device.type == "cuda" else {})
        for name, target in result["targets"].items():
            print(f"target {name}: {target}")
    save("generator", result, args)


def _load_average() -> list[float]:
    import os

    return [round(x, 2) for x in os.getloadavg()]


def _reference(args) -> tuple[torch.nn.Module | None, dict]:
    """The public generator (or None) and the JSON's statement of whether it was compared."""
    if not args.reference_src:
        return None, {
            "run": False,
            "why": "no --reference-src DIR given: the same-run comparison was not run",
        }
    if args.quick:
        return None, {
            "run": False,
            "why": "--quick uses the tiny config; the public code has only the 256 one",
        }
    from reference import reference_generator

    return reference_generator(args.reference_src).to(args.device), {
        "run": True,
        "what": "HiFiFace-pytorch (github.com/xuehy/HiFiFace-pytorch) encoder + decoder + SFF, fp32 eager, "
        "on the same synthetic weights and inputs, in the same interleaved rounds",
        "source": str(args.reference_src),
    }


def benchmark(
    model,
    size: int,
    batch: int,
    variants: list[str],
    warmup: int,
    repeats: int,
    device,
    quick: bool,
    reference: torch.nn.Module | None = None,
) -> dict:
    print(f"\n== generator {size}x{size}, batch {batch} ==", flush=True)
    sources, targets = (x.to(device) for x in faces(batch, size))
    with inference_context(device):
        v_sid = model.identity(sources, targets)
        flops = count_flops(lambda: model.generate(targets[:1], v_sid[:1]))
    torch._dynamo.reset()  # every compiled variant compiles for this shape, from scratch
    runners, skipped = {}, {}
    for name in variants:
        try:
            runners[name] = _variant(name, model, targets, v_sid, device, reference)
        except Exception as error:  # an experiment the installed stack cannot run is reported, not fatal
            skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            print(f"{name}: not run ({skipped[name]})", flush=True)
    record = run_interleaved(runners, warmup, repeats, device)
    reference_out = record["fp32"]["output"]
    rows = {}
    for name in runners:
        r = record[name]
        row = timing_summary(r["times"], batch, flops)
        row["ratio_vs_fp32"] = row["median_s"] / timing_summary(record["fp32"]["times"], batch)["median_s"]
        row["first_call_s"] = r["first_s"]
        if VARIANTS[name][2]:
            row["compile_s"] = r["first_s"] - row["median_s"]  # first call minus a steady-state call
        row["peak_memory_bytes"] = r["peak_bytes"]
        row["memory_increase_bytes"] = r["increase_bytes"]
        row["difference_vs_fp32"] = image_difference(r["output"]["image"], reference_out["image"])
        row["max_abs_difference_other_outputs"] = {
            k: float((v.float() - reference_out[k].float()).abs().max())
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
        "not_run": skipped,
    }


def _variant(name: str, model, targets, v_sid, device, reference):
    """A function running one variant on (targets, v_sid); returns the outputs as a dict."""
    channels_last, dtype, how = VARIANTS[name]
    if how == "reference":
        from reference import reference_generate

        def run_reference():
            with inference_context(device):
                return {"image": reference_generate(reference, targets, v_sid)}

        return run_reference
    variant_model = model
    if channels_last or how:  # a copy of the generator parts; the priors are not used here
        variant_model = copy.deepcopy(model, memo={id(model.identity): model.identity})
        optimize(variant_model, channels_last=channels_last)
    if how == "aoti":
        return _aoti_runner(variant_model, targets, v_sid, device, dtype)
    if how == "int8-pt2e":
        return _int8_runner(variant_model, targets, v_sid, device, dtype)
    if how == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        # Linear layers only: torchao's int8 weight-only kernels have no convolution path.
        quantize_(
            variant_model,
            Int8WeightOnlyConfig(),
            filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and not fqn.startswith("identity."),
        )
        how = True
    if how:
        options = {"dynamic": False, **(how if isinstance(how, dict) else {})}
        for part in (variant_model.encoder, variant_model.decoder, variant_model.sff):
            part.compile(**options)
    return _runner(variant_model, targets, v_sid, device, dtype)


class _Generate(torch.nn.Module):
    """`generate` under autocast as one module, the form `torch.export` takes."""

    def __init__(self, model, device_type: str, dtype: str):
        super().__init__()
        self.model, self.device_type, self.dtype = model, device_type, dtype

    def forward(self, targets, v_sid):
        with torch.autocast(self.device_type, dtype=getattr(torch, self.dtype)):
            return self.model.generate(targets, v_sid)


def _aoti_runner(model, targets, v_sid, device, dtype):
    """torch.export + AOTInductor (with weight freezing): a compiled package, loaded back and run."""
    wrapper = _Generate(model, device.type, dtype).eval()
    package = tempfile.mkdtemp(prefix="hififace-aoti-") + "/generator.pt2"
    state = {}

    def run():
        if "runner" not in state:  # export + compile on the first call, so first_call_s includes it
            with torch.no_grad():
                exported = torch.export.export(wrapper, (targets, v_sid))
            path = torch._inductor.aoti_compile_and_package(
                exported, package_path=package, inductor_configs={"freezing": True}
            )
            state["runner"] = torch._inductor.aoti_load_package(path)
        with torch.inference_mode():
            return state["runner"](targets, v_sid)

    return run


class _GenerateOnly(torch.nn.Module):
    """`generate` as one module without autocast: the form PT2E quantisation exports."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, targets, v_sid):
        return self.model.generate(targets, v_sid)


def _int8_runner(model, targets, v_sid, device, dtype):
    """int8 through torchao's PT2E flow: export, insert observers (X86InductorQuantizer), calibrate
    on these inputs, convert, then torch.compile with freezing under `dtype` autocast, where
    Inductor lowers the quantised convolutions and linears to oneDNN's int8 kernels."""
    import torch._inductor.config as inductor
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    state = {}

    def run():
        if "compiled" not in state:  # quantise + compile on the first call: first_call_s includes it
            with torch.no_grad():
                exported = torch.export.export(_GenerateOnly(model).eval(), (targets, v_sid)).module()
                quantizer = x86.X86InductorQuantizer().set_global(
                    x86.get_default_x86_inductor_quantization_config()
                )
                prepared = prepare_pt2e(exported, quantizer)
                prepared(targets, v_sid)  # calibration
                state["compiled"] = torch.compile(convert_pt2e(prepared))
        with (
            torch.no_grad(),
            inductor.patch(freezing=True),
            torch.autocast(device.type, dtype=getattr(torch, dtype)),
        ):
            return state["compiled"](targets, v_sid)

    return run


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
            if name != "hififace-pytorch"
        ),
        key=lambda item: item[1],
    )
    goals = {}
    if "hififace-pytorch" in base["variants"]:
        theirs = base["variants"]["hififace-pytorch"]["seconds_per_image"]
        goals["fp32 eager no slower than HiFiFace-pytorch in the same run"] = {
            "ratio": fp32 / theirs,
            "met": fp32 <= theirs,
        }
    fast = [
        (name, v)
        for name, v in base["variants"].items()
        if name not in ("fp32", "hififace-pytorch") and v["difference_vs_fp32"]["mean_levels"] <= 1.6
    ]
    if fast:
        name, v = min(fast, key=lambda item: item[1]["seconds_per_image"])
        goals["0.15 s per image at 256, batch 1, I_r within 1.6 mean 8-bit levels of fp32"] = {
            "best": name,
            "seconds_per_image": v["seconds_per_image"],
            "met": v["seconds_per_image"] <= 0.15,
        }
    return goals | {
        "best path at most half of fp32 eager batch 1 per image": {
            "best": best_name,
            "seconds_per_image": best,
            "ratio": best / fp32,
            "met": best / fp32 <= 0.5,
        },
    }


def gpu_targets(results: list[dict]) -> dict:
    """Issue 16's GPU targets (H100 class), as measured in this run (not asserted)."""
    goals = {}
    for batch, name, test in (
        (1, "under 3 ms per image at 256, batch 1", lambda v: v["seconds_per_image"] < 0.003),
        (32, "over 2,000 images/s at 256, batch 32", lambda v: v["images_per_s"] > 2000),
    ):
        config = next((c for c in results if c["image_size"] == 256 and c["batch"] == batch), None)
        if config is None:
            continue
        best_name, best = min(config["variants"].items(), key=lambda item: item[1]["seconds_per_image"])
        goals[name] = {
            "best": best_name,
            "seconds_per_image": best["seconds_per_image"],
            "images_per_s": best["images_per_s"],
            "met": bool(test(best)),
        }
    return goals


if __name__ == "__main__":
    main()
