"""Train HifiFace with 🤗 Accelerate: the paper's full objective, one or many GPUs, CPU too.

    accelerate launch train_accelerate.py --data_dir data/vggface2-256 --output_dir runs/hififace \\
        --pretrained_model models/hififace-256 --bfm models/bfm-landmarks

HifiFace (Wang et al., IJCAI 2021, https://arxiv.org/abs/2106.09965). Each step: a generator
step on L = λ_shape L_shape + λ_id L_id + L_adv + λ_seg L_seg + λ_rec L_rec + λ_cyc L_cyc +
λ_lpips L_lpips (hififace/losses.py), then a discriminator step (logistic loss + R1). Mixed
precision, devices and processes come from `accelerate config` / `accelerate launch` flags.

Checkpoints (`accelerator.save_state`) go to OUTPUT_DIR/checkpoint-STEP: written to a temporary
folder and renamed when complete, so a checkpoint is whole or absent. `--resume_from_checkpoint
latest` continues the step count, optimisers, schedulers, EMA, random states and data position. Each
checkpoint also holds the EMA generator as a `HifiFace.from_pretrained` / `HifiFacePipeline.from_pretrained`
folder, `checkpoint-STEP/generator_ema` (so `hififace swap --model .../checkpoint-STEP/generator_ema`
works mid-run), and the EMA state as `ema.safetensors`: Accelerate's save/load state hooks write and
read it, so nothing in a checkpoint needs `torch.load(weights_only=False)` to resume. At the end,
the EMA generator is exported to OUTPUT_DIR/generator; `--push_to_hub` uploads that folder with a
card naming the training arguments, the base model and the last sample grid.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from hififace import BFMLandmarks, Discriminator, HifiFace
from hififace.data import FacePairDataset
from hififace.losses import HifiFaceLoss, LossWeights, dilate_mask

logger = get_logger("hififace.train")

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# in a checkpoint folder: the EMA state (safetensors + JSON metadata) and the EMA generator
EMA_STATE = "ema.safetensors"
EMA_FOLDER = "generator_ema"
SAMPLE_GRID = "sample_grid.png"


def build_parser() -> argparse.ArgumentParser:
    """Every option of the script, in groups; defaults are the paper's where it gives one."""
    p = argparse.ArgumentParser(
        description="Train HifiFace (paper objective) with Accelerate.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", help="YAML file whose keys (option names without --) set defaults")

    _add_data_and_model_options(p)
    _add_training_options(p)
    return p


def _add_data_and_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data_dir", help="output folder of `hififace preprocess` (index + aligned crops)")
    g.add_argument("--same_identity_ratio", type=float, default=0.5, help="share of same-identity pairs")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="random h-flips")
    g.add_argument("--color_jitter", type=float, default=0.0, help="colour jitter strength (0: off)")
    g.add_argument("--mask_dilation", type=int, default=9, help="dilation kernel (px) of the target mask")
    g.add_argument("--dataloader_num_workers", type=int, default=4, help="data loading processes")

    g = p.add_argument_group("models")
    g.add_argument(
        "--pretrained_model",
        help="HifiFace folder or Hub id to start from; it carries the frozen priors (ArcFace, 3DMM)",
    )
    g.add_argument(
        "--from_scratch",
        action="store_true",
        help="re-initialise the generator (encoder, decoder, SFF) and keep only the priors",
    )
    g.add_argument("--arcface", help="instead of --pretrained_model: converted ArcFace folder or Hub id")
    g.add_argument(
        "--face3d", help="instead of --pretrained_model: converted Deep3DFaceRecon folder or Hub id"
    )
    g.add_argument("--image_size", type=int, default=256, choices=[256, 512], help="with --arcface/--face3d")
    g.add_argument("--base_channels", type=int, default=64, help="generator width, with --arcface/--face3d")
    g.add_argument(
        "--max_channels", type=int, default=512, help="generator maximum width, with --arcface/--face3d"
    )
    g.add_argument("--bfm", help="converted BFM landmark folder (`hififace convert bfm`) for L_shape")
    g.add_argument("--d_base_channels", type=int, default=64, help="discriminator width")
    g.add_argument("--d_max_channels", type=int, default=512, help="discriminator maximum width")
    g.add_argument(
        "--lpips_net",
        default="vgg",
        choices=["vgg", "alex", "squeeze"],
        help="LPIPS backbone (VGG: what both public HifiFace implementations train with, and what LPIPS' "
        "authors recommend for a training loss)",
    )


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("objective (paper defaults)")
    defaults = LossWeights()
    for name in ("shape", "id", "adv", "seg", "rec", "cyc", "lpips"):
        g.add_argument(
            f"--lambda_{name}", type=float, default=getattr(defaults, name), help=f"weight of L_{name}"
        )
    g.add_argument("--r1_gamma", type=float, default=defaults.r1_gamma, help="R1 penalty weight on reals")

    g = p.add_argument_group("optimisation")
    g.add_argument("--output_dir", default="runs/hififace", help="checkpoints, samples, logs, export")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--train_batch_size", type=int, default=4, help="batch per process")
    g.add_argument("--max_train_steps", type=int, default=200_000, help="optimiser steps in all")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per step")
    g.add_argument("--learning_rate", type=float, default=1e-4, help="Adam learning rate of G")
    g.add_argument("--d_learning_rate", type=float, default=1e-4, help="Adam learning rate of D")
    g.add_argument("--adam_beta1", type=float, default=0.0, help="Adam β1")
    g.add_argument("--adam_beta2", type=float, default=0.99, help="Adam β2")
    g.add_argument(
        "--lr_scheduler", default="constant", help="diffusers scheduler name (constant, cosine, ...)"
    )
    g.add_argument("--lr_warmup_steps", type=int, default=0, help="warm-up steps of the scheduler")
    g.add_argument(
        "--max_grad_norm",
        type=float,
        default=0.0,
        help="clip gradients to this norm (0: no clipping, as the paper and StarGAN v2; the norm is logged)",
    )
    g.add_argument("--ema_decay", type=float, default=0.999, help="EMA decay of the generator")
    g.add_argument(
        "--max_nonfinite_steps", type=int, default=10, help="stop after this many bad steps in a row"
    )

    g = p.add_argument_group("checkpoints and logging")
    g.add_argument("--checkpointing_steps", type=int, default=5000, help="save_state every N steps")
    g.add_argument("--checkpoints_total_limit", type=int, default=3, help="keep at most N checkpoints")
    g.add_argument("--resume_from_checkpoint", help="a checkpoint folder, or 'latest'")
    g.add_argument(
        "--report_to", default="tensorboard", help="accelerate tracker(s): tensorboard, wandb, all"
    )
    g.add_argument("--log_steps", type=int, default=10, help="log scalars every N steps")
    g.add_argument("--sample_steps", type=int, default=1000, help="log a sample grid every N steps")
    g.add_argument("--push_to_hub", metavar="REPO", help="upload the exported generator to this Hub repo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; `--config file.yaml` supplies defaults that flags still override."""
    p = build_parser()
    args, _ = p.parse_known_args(argv)
    if args.config:
        import yaml

        values = yaml.safe_load(Path(args.config).read_text()) or {}
        known = {a.dest for a in p._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            p.error(f"{args.config}: unknown options {unknown}")
        p.set_defaults(**values)
    args = p.parse_args(argv)
    if not args.data_dir:
        p.error("--data_dir is required (a folder written by `hififace preprocess`)")
    if bool(args.pretrained_model) == bool(args.arcface or args.face3d):
        p.error("give --pretrained_model (a HifiFace folder or Hub id) or both --arcface and --face3d")
    if not args.pretrained_model and not (args.arcface and args.face3d):
        p.error("training from converted priors needs both --arcface and --face3d")
    if args.lambda_shape > 0 and not args.bfm:
        p.error("--bfm is required for the shape loss (or pass --lambda_shape 0)")
    return args


def checkpoint_steps(output_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in `output_dir`, oldest first."""
    if not output_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for d in output_dir.iterdir() if (m := CHECKPOINT.match(d.name)))


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> None:
    """`save_state` into a temporary folder, rename it when complete, then prune old checkpoints."""
    final = output_dir / f"checkpoint-{step}"
    partial = output_dir / f".checkpoint-{step}.partial"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        if total_limit:
            for old in checkpoint_steps(output_dir)[:-total_limit]:
                shutil.rmtree(output_dir / f"checkpoint-{old}")
        logger.info(f"saved {final}")
    accelerator.wait_for_everyone()


def build_lpips(net: str):
    """LPIPS with its ImageNet backbone (torchvision downloads it once into TORCH_HOME)."""
    import lpips

    try:
        return lpips.LPIPS(net=net, verbose=False)
    except Exception as error:  # typically no network and no cached backbone
        raise RuntimeError(
            f"LPIPS needs torchvision's ImageNet {net} weights; they could not be loaded ({error}). "
            "Run once with network access, put them in $TORCH_HOME/hub/checkpoints, or pass --lambda_lpips 0."
        ) from error


def sample_grid(source, target, out) -> torch.Tensor:
    """Rows of source | target | I_r | I_low | M_r | M_low, as one (3, H, W) image in [0, 1]."""
    from torchvision.utils import make_grid

    size = target.shape[-2:]
    up = lambda x: F.interpolate(x, size=size, mode="nearest")  # noqa: E731
    columns = [
        source,
        target,
        out.image,
        up(out.image_low),
        out.mask.expand_as(target),
        up(out.mask_low).expand_as(target),
    ]
    rows = torch.stack(columns, dim=1).flatten(0, 1).float().clamp(0, 1)
    return make_grid(rows, nrow=len(columns), padding=2)


@dataclass
class Models:
    """The networks of a run. `generator` and `discriminator` are wrapped by `accelerator.prepare`
    (DDP under several processes); `criterion` holds the frozen priors, `ema` the generator's EMA."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    criterion: HifiFaceLoss
    ema: Any  # diffusers.training_utils.EMAModel over `trainable`
    trainable: list[torch.nn.Parameter]


@dataclass
class Optimizers:
    """Adam and a learning-rate schedule for each player."""

    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    generator_schedule: Any
    discriminator_schedule: Any


@dataclass
class StepResult:
    """What one `train_step` did: the logged terms, whether both losses were finite on every process,
    and whether each player's weights changed (not on an accumulation micro-step, a non-finite loss,
    or an fp16 step the GradScaler skipped)."""

    terms: dict[str, torch.Tensor | float]
    finite: bool
    updated_g: bool
    updated_d: bool


def build_models(args: argparse.Namespace, generator: HifiFace | None = None) -> Models:
    """Generator (with its frozen priors), a fresh discriminator, the weighted objective and the EMA.

    Args:
        args (Namespace): `parse_args()`'s options.
        generator (HifiFace or None, None): this generator instead of the one the options name
            (benchmarks and tests build theirs in memory).
    """
    from diffusers.training_utils import EMAModel

    if generator is None and args.pretrained_model:
        generator = HifiFace.from_pretrained(args.pretrained_model)
    elif generator is None:
        generator = HifiFace.from_priors(
            args.arcface, args.face3d, args.image_size, args.base_channels, args.max_channels
        )
    if args.from_scratch:
        for module in (generator.encoder, generator.decoder, generator.sff):
            for layer in module.modules():
                if hasattr(layer, "reset_parameters") and layer is not module:
                    layer.reset_parameters()
    generator.train()
    discriminator = Discriminator(
        image_size=generator.image_size, base_channels=args.d_base_channels, max_channels=args.d_max_channels
    ).train()
    weights = LossWeights(
        shape=args.lambda_shape, id=args.lambda_id, adv=args.lambda_adv, seg=args.lambda_seg,
        rec=args.lambda_rec, cyc=args.lambda_cyc, lpips=args.lambda_lpips, r1_gamma=args.r1_gamma,
    )  # fmt: skip
    criterion = HifiFaceLoss(
        face3d=generator.identity.face3d,
        arcface_embed=generator.identity.arcface.embed,
        bfm=BFMLandmarks.from_pretrained(args.bfm) if args.bfm else None,
        lpips_fn=build_lpips(args.lpips_net) if args.lambda_lpips > 0 else None,
        weights=weights,
    )
    trainable = [p for p in generator.parameters() if p.requires_grad]
    ema = EMAModel(trainable, decay=args.ema_decay)
    return Models(generator, discriminator, criterion, ema, trainable)


def build_optimizers(args: argparse.Namespace, models: Models, num_processes: int = 1) -> Optimizers:
    """Adam (the paper's β = (0, 0.99)) for G and D, each with a diffusers schedule."""
    from diffusers.optimization import get_scheduler

    betas = (args.adam_beta1, args.adam_beta2)
    opt_g = torch.optim.Adam(models.trainable, lr=args.learning_rate, betas=betas)
    opt_d = torch.optim.Adam(models.discriminator.parameters(), lr=args.d_learning_rate, betas=betas)
    # prepared schedulers step once per process for each optimiser step
    schedules = [
        get_scheduler(
            args.lr_scheduler,
            optimizer=opt,
            num_warmup_steps=args.lr_warmup_steps * num_processes,
            num_training_steps=args.max_train_steps * num_processes,
        )
        for opt in (opt_g, opt_d)
    ]
    return Optimizers(opt_g, opt_d, *schedules)


def build_data(
    args: argparse.Namespace, image_size: int
) -> tuple[FacePairDataset, torch.utils.data.DataLoader]:
    """The pair dataset of `--data_dir` and its loader, with clear errors for data that cannot train."""
    dataset = FacePairDataset(
        args.data_dir,
        image_size=image_size,
        same_identity_ratio=args.same_identity_ratio,
        flip=args.flip,
        color_jitter=args.color_jitter,
        seed=args.seed,
    )
    if args.lambda_seg > 0 and not any(r.get("mask") for r in dataset.records):
        raise ValueError(
            f"{args.data_dir} has no face-parsing masks for L_seg: run `hififace preprocess` with "
            "--parser (a converted BiSeNet), or pass --lambda_seg 0"
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
    )  # workers are not persistent: each epoch's workers get the dataset after `set_epoch`
    if len(loader) == 0:
        raise ValueError(
            f"{args.data_dir} has {len(dataset)} images: fewer than one batch of {args.train_batch_size}"
        )
    return dataset, loader


def prepare(
    accelerator: Accelerator,
    models: Models,
    optimizers: Optimizers,
    loader,
    args: argparse.Namespace | None = None,
):
    """`accelerator.prepare` the models, optimisers, schedules and loader in place; returns the loader.

    Also registers the save/load state hooks that keep the EMA in each checkpoint without pickles
    (`register_ema_hooks`); `args` goes into the card of each `generator_ema` folder."""
    (
        models.generator, models.discriminator, optimizers.generator, optimizers.discriminator,
        optimizers.generator_schedule, optimizers.discriminator_schedule, loader,
    ) = accelerator.prepare(
        models.generator, models.discriminator, optimizers.generator, optimizers.discriminator,
        optimizers.generator_schedule, optimizers.discriminator_schedule, loader,
    )  # fmt: skip
    models.criterion.to(accelerator.device)
    models.ema.to(accelerator.device)
    register_ema_hooks(accelerator, models, args)
    return loader


def register_ema_hooks(accelerator: Accelerator, models: Models, args: argparse.Namespace | None) -> None:
    """Save the EMA into every `save_state` folder and read it back in `load_state`, as safetensors.

    `register_for_checkpointing(ema)` would pickle it (`custom_checkpoint_0.pkl`, read back with
    `weights_only=False`); these hooks write `ema.safetensors` (shadow weights, scalars as JSON
    metadata) and the EMA generator as a from_pretrained folder, like diffusers' training scripts.
    """

    def save(_models, _weights, output_dir: str) -> None:
        if accelerator.is_main_process:
            folder = Path(output_dir)
            save_ema_state(models.ema, folder / EMA_STATE)
            match = re.search(r"checkpoint-(\d+)", folder.name)
            g_model = accelerator.unwrap_model(models.generator)
            export(
                g_model,
                models.ema,
                models.trainable,
                folder / EMA_FOLDER,
                args,
                int(match.group(1)) if match else 0,
            )

    def load(_models, input_dir: str) -> None:
        load_ema_state(models.ema, Path(input_dir) / EMA_STATE)

    accelerator.register_save_state_pre_hook(save)
    accelerator.register_load_state_pre_hook(load)


def save_ema_state(ema, path: Path) -> None:
    """diffusers `EMAModel.state_dict()` as safetensors: shadow weights as tensors, the rest as JSON."""
    import json

    from safetensors.torch import save_file

    state = ema.state_dict()
    tensors = {
        f"shadow.{i:05d}": p.detach().cpu().contiguous() for i, p in enumerate(state.pop("shadow_params"))
    }
    save_file(tensors, str(path), metadata={"ema": json.dumps(state)})


def load_ema_state(ema, path: Path) -> None:
    """Read `save_ema_state`'s file into `ema` (on its device), checking the parameter count."""
    import json

    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} holds no {EMA_STATE}: not a checkpoint of this script")
    with safe_open(str(path), framework="pt") as f:
        state = json.loads(f.metadata()["ema"])
        shadow = [f.get_tensor(name) for name in sorted(f.keys())]
    if len(shadow) != len(ema.shadow_params):
        raise ValueError(
            f"{path} holds {len(shadow)} EMA tensors; this generator has {len(ema.shadow_params)}"
        )
    device = ema.shadow_params[0].device if ema.shadow_params else "cpu"
    ema.load_state_dict({**state, "shadow_params": [p.to(device) for p in shadow]})


def pairs_per_process(accelerator: Accelerator, same_identity: torch.Tensor) -> torch.Tensor:
    """Divisor of L_rec and L_lpips: same-identity pairs over all processes, divided by the processes.

    DDP averages the processes' gradients, so each process dividing its own sum by this gives the
    gradient of the mean over the global batch; dividing by the local count would weigh a pair on a
    process with few pairs more than one on a process with many.
    """
    count = same_identity.detach().float().sum().reshape(1)
    if accelerator.num_processes > 1:
        count = accelerator.reduce(count, reduction="sum")
    return count.clamp(min=1.0)[0] / accelerator.num_processes


def train_step(
    accelerator: Accelerator,
    models: Models,
    optimizers: Optimizers,
    batch: dict[str, torch.Tensor],
    max_grad_norm: float = 0.0,
    mask_dilation: int = 1,
) -> StepResult:
    """One optimisation step on one batch (one micro-batch under gradient accumulation): G, then D, then
    the EMA of G.

    Args:
        accelerator (Accelerator): the run's accelerator (autocast, backward, GradScaler, processes).
        models (Models): prepared networks, objective and EMA.
        optimizers (Optimizers): prepared optimisers and schedules.
        batch (dict): `source`, `target` (B, 3, S, S), `mask` (B, 1, S, S), `same_identity` (B,).
        max_grad_norm (float, 0.0): clip the gradient norm to this (0: measure it only).
        mask_dilation (int, 1): dilation kernel of the target mask M_tar (1: as given).
    """
    source, target, same = batch["source"], batch["target"], batch["same_identity"]
    mask = dilate_mask(batch["mask"], mask_dilation) if mask_dilation > 1 else batch["mask"]
    g_model = accelerator.unwrap_model(models.generator)
    d_model = accelerator.unwrap_model(models.discriminator)
    criterion = models.criterion
    with accelerator.accumulate(models.generator, models.discriminator):
        # generator step: D is only a critic here, so its unwrapped copy runs without gradients;
        # the cycle pass uses the unwrapped G too (one DDP forward per backward)
        d_model.requires_grad_(False)
        with accelerator.autocast():
            out = models.generator(source, target)
            cycled = g_model(target, out.image).image if criterion.weights.cyc != 0 else None
            loss_g, terms = criterion.generator_loss(
                out, target, mask, same, discriminator=d_model, cycled=cycled,
                num_pairs=pairs_per_process(accelerator, same),
            )  # fmt: skip
        d_model.requires_grad_(True)
        finite_g, updated_g = _update(
            accelerator, loss_g, optimizers.generator, optimizers.generator_schedule,
            models.trainable, max_grad_norm, terms, "G",
        )  # fmt: skip

        # discriminator step on the same pair: I_t real, I_r fake
        with accelerator.autocast():
            loss_d, d_terms = criterion.discriminator_loss(
                models.discriminator, target, out.image, grad_scale=loss_scale(accelerator)
            )
        terms.update(d_terms)
        finite_d, updated_d = _update(
            accelerator, loss_d, optimizers.discriminator, optimizers.discriminator_schedule,
            list(models.discriminator.parameters()), max_grad_norm, terms, "D",
        )  # fmt: skip
    if updated_g:  # the EMA follows G's updates only: not a skipped one
        models.ema.step(models.trainable)
    return StepResult(terms, finite_g and finite_d, updated_g, updated_d)


def loss_scale(accelerator: Accelerator) -> float:
    """The GradScaler's current scale under fp16 (R1's inner gradient is scaled by it), else 1."""
    scaler = accelerator.scaler
    return float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0


def _update(
    accelerator, loss, optimizer, schedule, parameters, max_grad_norm, terms, name
) -> tuple[bool, bool]:
    """Backward, gradient norm (clipped when asked), optimiser and schedule step.

    Returns (the loss was finite on every process, the weights changed).
    """
    finite = _all_finite(accelerator, loss)
    updated = False
    # With a GradScaler (fp16) a non-finite loss still goes backward: the scaler then skips the step and
    # lowers its scale, which an overflow of the scaled R1 gradient needs. Without one, skip it here.
    if finite or accelerator.scaler is not None:
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            terms[f"grad_norm/{name}"] = _clip(accelerator, parameters, max_grad_norm)
        optimizer.step()
        skipped = bool(getattr(optimizer, "step_was_skipped", False))
        updated = accelerator.sync_gradients and not skipped
        if not skipped:  # a skipped step does not advance the learning-rate schedule
            schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return finite, updated


def make_accelerator(args: argparse.Namespace, output_dir: Path) -> Accelerator:
    """The run's Accelerator (precision and processes from `accelerate launch`), logging and seed."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=args.report_to if args.report_to != "none" else None,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    set_seed(args.seed, device_specific=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers("hififace", config={k: v for k, v in vars(args).items() if v is not None})
    return accelerator


def resume(accelerator: Accelerator, args: argparse.Namespace, output_dir: Path) -> int:
    """Load `--resume_from_checkpoint` (a folder or 'latest') and return its step (0: a new run)."""
    if not args.resume_from_checkpoint:
        return 0
    if args.resume_from_checkpoint == "latest":
        steps = checkpoint_steps(output_dir)
        path = output_dir / f"checkpoint-{steps[-1]}" if steps else None
    else:
        path = Path(args.resume_from_checkpoint)
    if path is None:
        logger.info(f"no checkpoint in {output_dir}: starting a new run")
        return 0
    if not CHECKPOINT.match(path.name) or not path.is_dir():
        raise FileNotFoundError(f"{path} is not a checkpoint-STEP folder")
    accelerator.load_state(str(path))
    step = int(CHECKPOINT.match(path.name).group(1))
    logger.info(f"resumed from {path} at step {step}")
    return step


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = make_accelerator(args, output_dir)
    models = build_models(args)
    dataset, loader = build_data(args, models.generator.image_size)
    optimizers = build_optimizers(args, models, accelerator.num_processes)
    loader = prepare(accelerator, models, optimizers, loader, args)
    global_step = resume(accelerator, args, output_dir)

    total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        f"{len(dataset)} images, {total_batch} per step ({args.train_batch_size} × {accelerator.num_processes} "
        f"processes × {args.gradient_accumulation_steps} accumulation), {args.max_train_steps} steps"
    )
    global_step = train_loop(accelerator, args, models, optimizers, dataset, loader, global_step)

    accelerator.wait_for_everyone()
    g_model = accelerator.unwrap_model(models.generator)
    d_model = accelerator.unwrap_model(models.discriminator)
    check_replicas_in_sync(accelerator, models.trainable + list(d_model.parameters()))
    if global_step % args.checkpointing_steps != 0:
        save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
    if accelerator.is_main_process:
        export(g_model, models.ema, models.trainable, output_dir / "generator", args, global_step)
        if args.push_to_hub:
            push_export(output_dir / "generator", args.push_to_hub)
    accelerator.end_training()


def train_loop(
    accelerator, args, models: Models, optimizers: Optimizers, dataset, loader, global_step: int
) -> int:
    """Epochs of `train_step` from `global_step` to `--max_train_steps`, with logging, samples,
    checkpoints and the non-finite-loss guard; returns the last step."""
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    first_epoch = global_step // steps_per_epoch
    skip_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps
    num_epochs = (
        math.ceil(args.max_train_steps / steps_per_epoch) if global_step < args.max_train_steps else 0
    )
    progress = tqdm(
        total=args.max_train_steps,
        initial=global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    fixed_batch, bad_in_a_row, meter = None, 0, Throughput()
    for epoch in range(first_epoch, num_epochs):
        dataset.set_epoch(epoch)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip_batches) if skip_batches else loader
        skip_batches = 0
        for batch in batches:
            if fixed_batch is None:
                fixed_batch = (batch["source"][:4].clone(), batch["target"][:4].clone())
            result = train_step(
                accelerator, models, optimizers, batch, args.max_grad_norm, args.mask_dilation
            )
            meter.images += batch["source"].shape[0] * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            if not result.finite:
                bad_in_a_row += 1
                report_non_finite(accelerator, args, result, global_step + 1, bad_in_a_row)
                continue
            bad_in_a_row = 0
            global_step += 1
            progress.update(1)
            after_step(accelerator, args, models, optimizers, result, global_step, meter, fixed_batch)
            if global_step >= args.max_train_steps:
                break
        if global_step >= args.max_train_steps:
            break
    progress.close()
    return global_step


class Throughput:
    """Images seen since the last log, for images per second."""

    def __init__(self) -> None:
        self.tick, self.images = time.perf_counter(), 0

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.images / max(now - self.tick, 1e-9)
        self.tick, self.images = now, 0
        return rate


def after_step(
    accelerator,
    args,
    models: Models,
    optimizers: Optimizers,
    result: StepResult,
    step: int,
    meter,
    fixed_batch,
) -> None:
    """Scalars every `--log_steps`, a sample grid every `--sample_steps`, a checkpoint every
    `--checkpointing_steps`."""
    output_dir = Path(args.output_dir)
    if step % args.log_steps == 0 or step == args.max_train_steps:
        logs = {k: float(v) for k, v in result.terms.items()}
        logs["lr/G"] = optimizers.generator_schedule.get_last_lr()[0]
        logs["lr/D"] = optimizers.discriminator_schedule.get_last_lr()[0]
        logs["train/skipped_update/G"] = float(not result.updated_g)  # fp16: the GradScaler skipped it
        logs["train/skipped_update/D"] = float(not result.updated_d)
        if accelerator.scaler is not None:
            logs["train/loss_scale"] = loss_scale(accelerator)
        logs["throughput/images_per_s"] = meter.rate()
        accelerator.log(logs, step=step)
    if step % args.sample_steps == 0 and accelerator.is_main_process:
        g_model = accelerator.unwrap_model(models.generator)
        log_samples(accelerator, g_model, models.ema, models.trainable, fixed_batch, output_dir, step)
    if step % args.checkpointing_steps == 0:
        save_checkpoint(accelerator, output_dir, step, args.checkpoints_total_limit)


def report_non_finite(accelerator, args, result: StepResult, step: int, bad_in_a_row: int) -> None:
    """Warn about a step whose loss was not finite; stop after `--max_nonfinite_steps` in a row."""
    output_dir = Path(args.output_dir)
    g, d = float(result.terms["loss/G/total"]), float(result.terms["loss/D/total"])
    logger.warning(f"step {step}: non-finite loss (G {g:.4g}, D {d:.4g}); update skipped")
    accelerator.log({"train/nonfinite_steps": bad_in_a_row}, step=step)
    if bad_in_a_row >= args.max_nonfinite_steps:
        last = checkpoint_steps(output_dir)
        where = f"checkpoint-{last[-1]}" if last else "none was written yet"
        raise RuntimeError(
            f"stopping: {bad_in_a_row} non-finite losses in a row at step {step}; "
            f"the last good checkpoint is {where} in {output_dir}"
        )


def check_replicas_in_sync(accelerator: Accelerator, parameters: list[torch.Tensor]) -> None:
    """Every process must hold the same weights after data-parallel training; say so, or fail loudly."""
    if accelerator.num_processes == 1:
        return
    fingerprint = torch.stack(
        [torch.stack([p.detach().double().sum(), p.detach().double().square().sum()]) for p in parameters]
    )
    gathered = accelerator.gather(fingerprint[None])
    difference = float((gathered - gathered[:1]).abs().max())
    if difference != 0:
        raise RuntimeError(
            f"the {accelerator.num_processes} processes hold different weights (max difference {difference})"
        )
    logger.info(f"replicas in sync: {accelerator.num_processes} processes hold identical weights")


def _all_finite(accelerator: Accelerator, loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (all ranks then skip or step together)."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    return bool(accelerator.gather(finite).min() > 0)


def _clip(accelerator: Accelerator, parameters, max_norm: float) -> float:
    """Clip to `max_norm` (0: measure only) and return the norm before clipping."""
    norm = accelerator.clip_grad_norm_(parameters, max_norm if max_norm > 0 else float("inf"))
    return float(norm)


@torch.no_grad()
def log_samples(accelerator, g_model, ema, trainable, batch, output_dir: Path, step: int) -> None:
    """A grid made with the EMA weights on a fixed batch: to the trackers and samples/STEP.png."""
    from torchvision.utils import save_image

    ema.store(trainable)
    ema.copy_to(trainable)
    g_model.eval()
    source, target = batch
    grid = sample_grid(source, target, g_model(source, target))
    g_model.train()
    ema.restore(trainable)
    (output_dir / "samples").mkdir(exist_ok=True)
    save_image(grid, output_dir / "samples" / f"{step:08d}.png")
    for tracker in accelerator.trackers:  # every tracker chosen with --report_to
        if tracker.name == "tensorboard":  # add_images: NCHW floats in [0, 1]
            tracker.log_images({"samples": grid[None].cpu().numpy()}, step=step)
        elif tracker.name == "wandb":  # wandb.Image: HWC
            tracker.log_images({"samples": [grid.permute(1, 2, 0).cpu().numpy()]}, step=step)
        elif hasattr(tracker, "log_images"):
            tracker.log_images({"samples": [grid.cpu().numpy()]}, step=step)


def export(
    g_model: HifiFace, ema, trainable, folder: Path, args: argparse.Namespace | None, step: int
) -> None:
    """Save the EMA generator (with its priors) as a `HifiFace.from_pretrained` folder with its card.

    The card states the licence (`hififace.hub.card_metadata("trained")`: the ArcFace prior is
    insightface's, non-commercial), the base model when it is a Hub repo, the training arguments
    and the latest sample grid (copied in as `sample_grid.png`)."""
    import json
    import shutil

    from hififace.hub import card_metadata, looks_like_path

    base = getattr(args, "pretrained_model", None)
    start = "re-initialised generator weights" if args is None or args.from_scratch or not base else base
    settings = {k: v for k, v in sorted(vars(args).items()) if v is not None} if args else {}
    data = Path(args.data_dir).name if args else "?"
    card = {
        "weights_source": f"trained with hififace's train_accelerate.py for {step} steps on {data} "
        f"(EMA decay {getattr(args, 'ema_decay', '?')}, batch {getattr(args, 'train_batch_size', '?')} per "
        f"process), starting from {start}",
        **card_metadata("trained", base_model=base if base and not looks_like_path(base) else None),
    }
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted((Path(args.output_dir) / "samples").glob("*.png")) if args else []
    description = "HifiFace generator (EMA weights) trained with hififace's train_accelerate.py."
    if samples:
        shutil.copyfile(samples[-1], folder / SAMPLE_GRID)
        description += f"\n\nSamples at step {int(samples[-1].stem)} (source, target, swap per row):\n\n![samples]({SAMPLE_GRID})"
    description += (
        "\n\nTraining arguments:\n\n```json\n" + json.dumps(settings, indent=2, default=str) + "\n```"
    )
    card["description"] = description
    ema.store(trainable)
    ema.copy_to(trainable)
    try:
        g_model.save_pretrained(folder, model_card_kwargs=card)
    finally:
        ema.restore(trainable)
    logger.info(f"saved the EMA generator to {folder}")


def push_export(folder: Path, repo_id: str) -> None:
    """Upload the exported generator folder (weights, config, card, sample grid) to a Hub model repo."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo = api.create_repo(repo_id, exist_ok=True).repo_id
    api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="hififace training export")
    logger.info(f"uploaded {folder} to {repo}")


if __name__ == "__main__":
    main()
