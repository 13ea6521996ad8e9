"""Training step speed: one generator step and one discriminator step with every loss term.

    python benchmarks/train_step.py           # about 4 minutes on a quiet 2-core CPU
    python benchmarks/train_step.py --quick   # tiny config only, seconds

The step is the one of `train_accelerate.py`, written out here without Accelerate (one process):
G(I_s, I_t), the cycle pass G(I_t, I_r), `HifiFaceLoss.generator_loss` (shape, id, adv, seg, rec,
cyc, LPIPS), backward, clipping, Adam; then `discriminator_loss` (logistic + R1), backward, Adam;
then the EMA of the generator. Under bf16 autocast for the mixed-precision variant, as
`accelerator.autocast()` does. LPIPS is AlexNet with random backbone weights (`pnet_rand`; the
ImageNet weights cannot be downloaded here: same FLOPs), the BFM is the synthetic test fixture.

Configs: the tiny config (narrow generator, ArcFace r18, D 8..16) and the paper's full configuration
(the release generator, ArcFace r100, D 64..512) at the batch this machine's memory allows. Reports
images/s, peak memory, FLOPs per image (forward and backward, `torch.utils.flop_counter`) and the
model FLOP utilisation where the device's peak is known (GPUs).
Writes benchmarks/results/train_step-<machine>.json.
"""

from __future__ import annotations

import tempfile
import warnings

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

from hififace import Discriminator, HifiFace
from hififace.losses import HifiFaceLoss, dilate_mask

# Dense bf16 tensor-core peaks (FLOP/s) for the model FLOP utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
PLANS = {  # name: (generator, discriminator widths, batch)
    "cpu": [("tiny", 4), ("full", 2)],
    "cuda": [("tiny", 16), ("full", 16)],
    "quick": [("tiny", 2)],
}


def add_options(parser) -> None:
    parser.add_argument("--full-batch", type=int, help="batch of the full configuration (default: 2 on CPU)")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    plan = PLANS["quick" if args.quick else device.type]
    if args.full_batch:
        plan = [(n, args.full_batch if n == "full" else b) for n, b in plan]
    repeats = args.repeats or (1 if args.quick else 2)
    configs = []
    for name, batch in plan:
        configs.append(benchmark(name, batch, args.warmup, repeats, device))
    save(
        "train_step",
        {
            "benchmark": "training step: G step + D step with all losses (train_accelerate.py's step)",
            "machine": machine,
            "memory_method": memory_method(device),
            "flops_method": "torch.utils.flop_counter.FlopCounterMode over one whole step (forward, backward, R1)",
            "timing_method": f"{args.warmup} warm-up + {repeats} timed steps per variant, variants interleaved",
            "configs": configs,
        },
        args,
    )


def benchmark(name: str, batch: int, warmup: int, repeats: int, device: torch.device) -> dict:
    print(f"\n== training step, {name} config, batch {batch} ==", flush=True)
    torch.manual_seed(0)
    if name == "tiny":
        generator, d_widths = HifiFace(**TINY), (8, 16)
    else:
        generator, d_widths = release_model(256), (64, 512)
    step = TrainStep(generator.to(device), Discriminator(256, *d_widths).to(device), device)
    source, target = (x.to(device) for x in faces(batch, 256))
    flops = count_flops(lambda: step(source, target, "float32")) / batch
    runners = {dtype: (lambda dtype=dtype: step(source, target, dtype)) for dtype in ("float32", "bfloat16")}
    record = run_interleaved(runners, warmup, repeats, device)
    base = timing_summary(record["float32"]["times"], batch)["median_s"]
    rows = {}
    for dtype, r in record.items():
        row = timing_summary(r["times"], batch, flops)
        row["ratio_vs_fp32"] = row["median_s"] / base
        row["peak_memory_bytes"] = r["peak_bytes"]
        row["memory_increase_bytes"] = r["increase_bytes"]
        row["losses_of_last_step"] = r["output"]
        peak = _device_peak(device)
        if peak and dtype == "bfloat16":
            row["model_flop_utilisation"] = row["achieved_gflop_per_s"] * 1e9 / peak
        rows[dtype] = row
    print_table(
        [{"variant": k, **v, "peak": gb(v["peak_memory_bytes"])} for k, v in rows.items()],
        [
            ("variant", "variant", "s"),
            ("s/step", "median_s", ".2f"),
            ("min", "min_s", ".2f"),
            ("max", "max_s", ".2f"),
            ("img/s", "images_per_s", ".3f"),
            ("GFLOP/s", "achieved_gflop_per_s", ".0f"),
            ("vs fp32", "ratio_vs_fp32", ".2f"),
            ("peak", "peak", "s"),
        ],
    )
    print(f"FLOPs per image and step: {flops / 1e9:.0f} G")
    return {
        "config": name,
        "batch": batch,
        "generator_parameters": sum(p.numel() for p in generator.parameters() if p.requires_grad),
        "discriminator_widths": d_widths,
        "flops_per_image": flops,
        "variants": rows,
    }


class TrainStep:
    """train_accelerate.py's step on one process: G step, D step, EMA."""

    def __init__(self, generator: HifiFace, discriminator: Discriminator, device: torch.device):
        import lpips
        from diffusers.training_utils import EMAModel

        from hififace.convert import convert_bfm

        with tempfile.TemporaryDirectory() as tmp:
            bfm = convert_bfm(FIXTURES / "bfm_synthetic_front.mat", tmp).to(device)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained`
            warnings.simplefilter("ignore", UserWarning)
            lpips_fn = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).to(device)
        self.generator, self.discriminator = generator.train(), discriminator.train()
        self.criterion = HifiFaceLoss(
            face3d=generator.identity.face3d,
            arcface_embed=generator.identity.arcface.embed,
            bfm=bfm,
            lpips_fn=lpips_fn,
        ).to(device)
        self.trainable = [p for p in generator.parameters() if p.requires_grad]
        self.ema = EMAModel(self.trainable, decay=0.999)
        self.opt_g = torch.optim.Adam(self.trainable, lr=1e-4, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.0, 0.99))
        self.device = device

    def __call__(self, source: torch.Tensor, target: torch.Tensor, dtype: str) -> dict[str, float]:
        batch = source.shape[0]
        mask = dilate_mask((target.mean(1, keepdim=True) > 0.4).float(), 9)  # M_tar stand-in
        same = torch.arange(batch, device=source.device) % 2 == 0
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
        g, d = self.generator, self.discriminator

        d.requires_grad_(False)
        with autocast:
            out = g(source, target)
            cycled = g(target, out.image).image
            loss_g, terms = self.criterion.generator_loss(
                out, target, mask, same, discriminator=d, cycled=cycled
            )
        d.requires_grad_(True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, 10.0)
        self.opt_g.step()
        self.opt_g.zero_grad(set_to_none=True)

        with autocast:
            loss_d, d_terms = self.criterion.discriminator_loss(d, target, out.image)
        loss_d.backward()
        torch.nn.utils.clip_grad_norm_(d.parameters(), 10.0)
        self.opt_d.step()
        self.opt_d.zero_grad(set_to_none=True)
        self.ema.step(self.trainable)
        return {k: float(v) for k, v in {**terms, **d_terms}.items()}


def _device_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None  # no reliable CPU peak: report achieved FLOP/s only
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


if __name__ == "__main__":
    main()
