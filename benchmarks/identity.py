"""Identity extractor speed (the frozen priors), and what reusing the source's identity saves.

    python benchmarks/identity.py           # about 3 minutes on a quiet 2-core CPU
    python benchmarks/identity.py --quick   # tiny config, seconds

- `encode_source`: Deep3DFaceRecon's ResNet-50 and ArcFace on the source faces (once per source).
- `fuse`: the per-target part of v_sid, the ResNet-50 on the target faces, with a cached source code.
- reuse: the whole swap `model(source_images, targets)` against `model(code, targets)` with the code
  computed once, for a batch of video frames, in fp32 and in the fastest eager path.

Each in fp32 eager and the fast paths, at 256 and 512, batch 1 and a larger batch, with the
difference against fp32 (v_sid, and the ArcFace embedding's cosine similarity).
Writes benchmarks/results/identity-<machine>.json.
"""

from __future__ import annotations

import copy

import torch
from common import (
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

VARIANTS = {  # name: (channels_last, autocast dtype)
    "fp32": (False, "float32"),
    "channels_last": (True, "float32"),
    "bf16": (False, "bfloat16"),
    "channels_last+bf16": (True, "bfloat16"),
}
PLANS = {
    "cpu": ["256x1", "256x8", "512x1", "512x8"],
    "cuda": ["256x1", "256x32", "512x1", "512x32"],
    "quick": ["256x1"],
}
REUSE = {"cpu": "256x8", "cuda": "256x32", "quick": "256x2"}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    plan_key = "quick" if args.quick else device.type
    repeats = args.repeats or (1 if args.quick else 3)
    fast = "channels_last+bf16"  # the fastest eager path on CPUs and GPUs alike
    results, reuse = [], None
    model, model_size = None, None
    for config in PLANS[plan_key] + [REUSE[plan_key]]:
        size, batch = (int(n) for n in config.split("x"))
        if size != model_size:
            model, model_size = (tiny_model() if args.quick else release_model(size)).to(device), size
        if reuse is None and len(results) == len(PLANS[plan_key]):
            reuse = benchmark_reuse(model, size, batch, fast, args.warmup, repeats, device, args.quick)
        else:
            results.append(benchmark(model, size, batch, args.warmup, repeats, device, args.quick))
    save(
        "identity",
        {
            "benchmark": "identity extractor (Deep3DFaceRecon ResNet-50 + ArcFace IResNet) and source reuse",
            "machine": machine,
            "memory_method": memory_method(device),
            "flops_method": "torch.utils.flop_counter.FlopCounterMode on the fp32 graph (2 FLOPs per multiply-add)",
            "timing_method": f"{args.warmup} warm-up + {repeats} timed runs per variant, variants interleaved per round",
            "configs": results,
            "source_reuse": reuse,
        },
        args,
    )


def benchmark(model, size: int, batch: int, warmup: int, repeats: int, device, quick: bool) -> dict:
    print(f"\n== identity {size}x{size}, batch {batch} ==", flush=True)
    sources, targets = (x.to(device) for x in faces(batch, size))
    with inference_context(device):
        code = model.identity.encode(sources)  # the cached source code `fuse` uses, in fp32
        flops = {
            "encode_source": count_flops(lambda: model.identity.encode(sources[:1])),
            "fuse": count_flops(lambda: model.identity.fuse(_first(code), targets[:1])),
        }
    identities = {}
    for name, (channels_last, _) in VARIANTS.items():
        identities[name] = (
            optimize(copy.deepcopy(model.identity), channels_last=True) if channels_last else model.identity
        )
    parts = {
        "encode_source": lambda identity: (
            lambda: torch.cat(list(vars(identity.encode(sources)).values()), dim=1)
        ),
        "fuse": lambda identity: lambda: identity.fuse(code, targets),
    }
    out = {"image_size": size, "batch": batch, "weights": weights_note(quick, size)}
    for part, make in parts.items():
        runners = {}
        for name, (_, dtype) in VARIANTS.items():
            runners[name] = _under(make(identities[name]), device, dtype)
        record = run_interleaved(runners, warmup, repeats, device)
        out[part] = {"flops_per_image": flops[part], "variants": _rows(record, batch, flops[part], part)}
        _print(part, out[part]["variants"], batch)
    return out


def benchmark_reuse(
    model, size: int, batch: int, fast: str, warmup: int, repeats: int, device, quick: bool
) -> dict:
    """Whole swaps of `batch` frames: the source's priors run for every frame, or once before."""
    print(f"\n== source reuse: swap of {batch} frames at {size}x{size} ==", flush=True)
    sources, targets = (x.to(device) for x in faces(batch, size))
    source_images = sources[:1].expand(batch, -1, -1, -1)  # one person, its picture given with every frame
    channels_last, dtype = VARIANTS[fast]
    fast_model = optimize(copy.deepcopy(model), channels_last=channels_last)
    runners = {}
    for name, m, d in (("fp32", model, "float32"), (fast, fast_model, dtype)):
        with inference_context(device, d):
            code = m.encode_source(sources[:1])
        runners[f"{name}, source per frame"] = _under(lambda m=m: m(source_images, targets).image, device, d)
        runners[f"{name}, source reused"] = _under(lambda m=m, code=code: m(code, targets).image, device, d)
    record = run_interleaved(runners, warmup, repeats, device)
    rows = _rows(record, batch, None, "image")
    _print("reuse", rows, batch)
    return {"image_size": size, "batch": batch, "weights": weights_note(quick, size), "variants": rows}


def _first(code):
    from hififace import IdentityCode

    return IdentityCode(coeffs=code.coeffs[:1], embedding=code.embedding[:1])


def _under(fn, device, dtype):
    def run():
        with inference_context(device, dtype):
            return fn()

    return run


def _rows(record: dict, batch: int, flops: int | None, kind: str) -> dict:
    names = list(record)
    base = record[names[0]]
    base_median = timing_summary(base["times"], batch)["median_s"]
    rows = {}
    for name in names:
        r = record[name]
        row = timing_summary(r["times"], batch, flops)
        row["ratio_vs_fp32"] = row["median_s"] / base_median
        row["peak_memory_bytes"] = r["peak_bytes"]
        row["memory_increase_bytes"] = r["increase_bytes"]
        out, ref = r["output"].float(), base["output"].float()
        if kind == "image":
            row["difference_vs_fp32"] = image_difference(out, ref)
        else:  # v_sid (fuse) or [coefficients | embedding] (encode_source): the last 512 are ArcFace
            row["difference_vs_fp32"] = {
                "max_abs_3dmm": float((out[:, :-512] - ref[:, :-512]).abs().max()),
                "max_abs_embedding": float((out[:, -512:] - ref[:, -512:]).abs().max()),
                "min_embedding_cosine": float(
                    torch.nn.functional.cosine_similarity(out[:, -512:], ref[:, -512:]).min()
                ),
            }
        rows[name] = row
    return rows


def _print(part: str, rows: dict, batch: int) -> None:
    table = []
    for name, r in rows.items():
        d = r["difference_vs_fp32"]
        table.append(
            {
                "variant": name,
                **r,
                "increase": gb(r["memory_increase_bytes"]),
                "diff": d.get("max_abs_3dmm", d.get("max_abs")),
                "cos": d.get("min_embedding_cosine", d.get("mean_levels")),
            }
        )
    print_table(
        table,
        [
            (part, "variant", "s"),
            ("s/img", "seconds_per_image", ".4f"),
            ("img/s", "images_per_s", ".2f"),
            ("GFLOP/s", "achieved_gflop_per_s", ".0f"),
            ("vs fp32", "ratio_vs_fp32", ".2f"),
            ("+run", "increase", "s"),
            ("max|d|", "diff", ".2e"),
            ("cos / lvl", "cos", ".5f"),
        ],
    )


if __name__ == "__main__":
    main()
