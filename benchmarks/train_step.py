"""Training step speed: `train_accelerate.train_step` (a G step, a D step with R1, the EMA), timed.

    python benchmarks/train_step.py           # about 15 minutes on a quiet 2-core CPU
    python benchmarks/train_step.py --quick   # tiny config only, under a minute

The step is train_accelerate.py's own: `build_models`, `build_optimizers`, `prepare` and `train_step`
on one process with an `Accelerator(mixed_precision="bf16")`, as `accelerate launch
--mixed_precision bf16` runs it (no gradient clipping, the default). Every loss term runs: L_shape
on the synthetic BFM fixture, L_id, L_adv, L_seg, L_rec, L_cyc and LPIPS on a random VGG16 trunk
(`pnet_rand`: its ImageNet weights cannot be downloaded here; same FLOPs).

Variants, run in interleaved rounds on the same models:
  fp32                  no autocast;
  bf16                  bf16 autocast, the shape path (F_3d, BFM projection, L_shape) in fp32: the
                        training default;
  bf16_shape_autocast   the same with the shape path left to autocast (`keep_full_precision = False`
                        on F_3d and the BFM): the step before the shape path was held in fp32.
`shape_fp32_cost` is what holding the shape path in fp32 costs, as a share of the bf16 step:
1 - t(bf16_shape_autocast) / t(bf16), from the medians and from each round's pair (same-run ratio).

Configs: the tiny config (narrow generator, ArcFace r18, D 8..16; all three variants) and the
paper's full configuration (the release generator, ArcFace r100, D 64..512; the two bf16 variants
on a CPU) at the batch this machine's memory allows. Reports
step time, images/s, peak memory, FLOPs per image (forward and backward, `torch.utils.flop_counter`)
and the model FLOP utilisation where the device's peak is known (GPUs).
Writes benchmarks/results/train_step-<machine>.json.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from common import (
    FIXTURES,
    TINY,
    count_flops,
    faces,
    gb,
    machine_info,
    memory_method,
    parse_args,
    print_table,
    release_model,
    run_interleaved,
    save,
    timing_summary,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hififace import HifiFace  # noqa: E402
from hififace.convert import convert_bfm  # noqa: E402
from train_accelerate import build_models, build_optimizers, prepare, train_step  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s) for the model FLOP utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
VARIANTS = ("fp32", "bf16", "bf16_shape_autocast")
BF16 = VARIANTS[1:]  # the full config's fp32 step takes twice as long and is not what is compared
PLANS = {  # (config, batch, variants)
    "cpu": [("tiny", 4, VARIANTS), ("full", 2, BF16)],
    "cuda": [("tiny", 16, VARIANTS), ("full", 16, VARIANTS)],
    "quick": [("tiny", 2, VARIANTS)],
}


def add_options(parser) -> None:
    parser.add_argument("--full-batch", type=int, help="batch of the full configuration (default: 2 on CPU)")


def main() -> None:
    from accelerate import Accelerator

    args = parse_args(__doc__.splitlines()[0], add_options)
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    plan = PLANS["quick" if args.quick else device.type]
    if args.full_batch:
        plan = [(n, args.full_batch if n == "full" else b, v) for n, b, v in plan]
    repeats = args.repeats or (2 if args.quick else 5)
    accelerator = Accelerator(mixed_precision="bf16", cpu=device.type == "cpu")
    configs = [benchmark(accelerator, *config, args.warmup, repeats) for config in plan]
    save(
        "train_step",
        {
            "benchmark": "training step: train_accelerate.train_step (G step + D step with all losses, EMA)",
            "machine": machine,
            "memory_method": memory_method(device),
            "flops_method": "torch.utils.flop_counter.FlopCounterMode over one whole fp32 step (forward, backward, R1)",
            "timing_method": f"{args.warmup} warm-up + {repeats} timed steps per variant, variants interleaved",
            "configs": configs,
        },
        args,
    )


class Step:
    """train_accelerate.py's models, optimisers and step for one config, switchable between variants."""

    def __init__(self, accelerator, generator: HifiFace, d_widths: tuple[int, int], batch: int):
        import lpips

        from train_accelerate import parse_args as train_options

        self.accelerator = accelerator
        with tempfile.TemporaryDirectory() as tmp:
            convert_bfm(FIXTURES / "bfm_synthetic_front.mat", tmp)
            options = train_options(
                ["--data_dir", "unused", "--pretrained_model", "in-memory", "--bfm", tmp, "--lambda_lpips", "0",
                 "--d_base_channels", str(d_widths[0]), "--d_max_channels", str(d_widths[1])]
            )  # fmt: skip
            self.models = build_models(options, generator=generator)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained`
            warnings.simplefilter("ignore", UserWarning)
            self.models.criterion.lpips_fn = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
        self.models.criterion.lpips_fn.requires_grad_(False)
        self.models.criterion.weights.lpips = 5.0  # the paper's weight, as in training
        self.optimizers = build_optimizers(options, self.models)
        prepare(accelerator, self.models, self.optimizers, None)
        source, target = (x.to(accelerator.device) for x in faces(batch, generator.image_size))
        self.batch = {
            "source": source,
            "target": target,
            "mask": (target.mean(1, keepdim=True) > 0.4).float(),  # M_tar stand-in
            "same_identity": torch.arange(batch, device=source.device) % 2 == 0,
        }
        self.mask_dilation = options.mask_dilation

    def __call__(self, variant: str) -> dict[str, float]:
        from accelerate.utils import AutocastKwargs

        generator = self.accelerator.unwrap_model(self.models.generator)
        keep = variant != "bf16_shape_autocast"
        generator.identity.face3d.keep_full_precision = self.models.criterion.bfm.keep_full_precision = keep
        self.accelerator.autocast_handler = AutocastKwargs(enabled=variant != "fp32")
        result = train_step(
            self.accelerator, self.models, self.optimizers, self.batch, 0.0, self.mask_dilation
        )
        return {k: float(v) for k, v in result.terms.items()}


def benchmark(
    accelerator, name: str, batch: int, variants: tuple[str, ...], warmup: int, repeats: int
) -> dict:
    print(f"\n== training step, {name} config, batch {batch} ==", flush=True)
    torch.manual_seed(0)
    if name == "tiny":
        generator, d_widths = HifiFace(**TINY), (8, 16)
    else:
        generator, d_widths = release_model(256), (64, 512)
    step = Step(accelerator, generator, d_widths, batch)
    flops = count_flops(lambda: step("fp32")) / batch
    runners = {variant: (lambda variant=variant: step(variant)) for variant in variants}
    record = run_interleaved(runners, warmup, repeats, accelerator.device)
    rows = {
        variant: row(record[variant], batch, flops, record.get("fp32"), accelerator.device)
        for variant in variants
    }
    after, before = np.array(record["bf16"]["times"]), np.array(record["bf16_shape_autocast"]["times"])
    paired = 1 - before / after  # per round: the two variants ran back to back
    cost = {
        "from_medians": 1 - rows["bf16_shape_autocast"]["median_s"] / rows["bf16"]["median_s"],
        "paired_median": float(np.median(paired)),
        "paired_min": float(paired.min()),
        "paired_max": float(paired.max()),
        "target": "at most 0.10 of the bf16 step",
    }
    print_table(
        [{"variant": k, **v, "peak": gb(v["peak_memory_bytes"])} for k, v in rows.items()],
        [
            ("variant", "variant", "s"),
            ("s/step", "median_s", ".2f"),
            ("min", "min_s", ".2f"),
            ("max", "max_s", ".2f"),
            ("img/s", "images_per_s", ".3f"),
            ("GFLOP/s", "achieved_gflop_per_s", ".0f"),
            ("peak", "peak", "s"),
        ],
    )
    print(f"FLOPs per image and step: {flops / 1e9:.0f} G")
    print(
        f"shape path in fp32 costs {cost['from_medians']:+.1%} of the bf16 step (medians); "
        f"per round {cost['paired_median']:+.1%} (from {cost['paired_min']:+.1%} to {cost['paired_max']:+.1%})"
    )
    model = accelerator.unwrap_model(step.models.generator)
    return {
        "config": name,
        "batch": batch,
        "generator_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "discriminator_widths": d_widths,
        "flops_per_image": flops,
        "shape_fp32_cost": cost,
        "variants": rows,
    }


def row(record: dict, batch: int, flops: float, fp32: dict | None, device: torch.device) -> dict:
    """One variant's timing summary, memory and last losses."""
    summary = timing_summary(record["times"], batch, flops)
    if fp32 is not None:
        summary["ratio_vs_fp32"] = summary["median_s"] / float(np.median(fp32["times"]))
        summary["paired_ratio_vs_fp32"] = float(
            np.median(np.array(record["times"]) / np.array(fp32["times"]))
        )
    summary["peak_memory_bytes"] = record["peak_bytes"]
    summary["memory_increase_bytes"] = record["increase_bytes"]
    summary["losses_of_last_step"] = record["output"]
    peak = _device_peak(device)
    if peak:
        summary["model_flop_utilisation"] = summary["achieved_gflop_per_s"] * 1e9 / peak
    return summary


def _device_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None  # no reliable CPU peak: report achieved FLOP/s only
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


if __name__ == "__main__":
    main()
