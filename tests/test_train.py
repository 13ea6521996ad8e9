"""`accelerate launch train_accelerate.py` end to end on real face crops, on the CPU.

A tiny generator (with full-size but randomly initialised priors), the synthetic BFM, a random
face parser for the masks and LPIPS on a random VGG16 (the default) or AlexNet (torchvision reads
them from TORCH_HOME, as it would read the downloaded ImageNet weights; lpips' own linear layers
ship in its package): the plumbing is real, the weights are not. Also: `train_step` in-process
(fp16 GradScaler skips) and the L_rec normalisation under two-process DDP.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from hififace import FaceParser, HifiFace
from hififace.convert import convert_bfm
from hififace.data import preprocess
from hififace.faces import load_detector

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train_accelerate.py"


def _random_imagenet_trunks(checkpoints: Path) -> None:
    """Random stand-ins for the torchvision ImageNet files LPIPS loads: AlexNet and VGG16."""
    from torchvision.models import alexnet, vgg16

    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(alexnet().state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    with torch.device("meta"):
        shapes = {name: value.shape for name, value in vgg16().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in shapes.items():
        if name.startswith("features.") and name.endswith(".weight"):  # He-scaled random convolutions
            state[name] = torch.randn(shape, generator=g) * math.sqrt(2.0 / math.prod(shape[1:]))
        else:
            # biases, and the 120 M classifier values LPIPS never runs: one stored zero broadcast to
            # each shape (torch.save keeps the view), so the file is 59 MB instead of 528 MB
            state[name] = torch.zeros(1).expand(shape)
    torch.save(state, checkpoints / "vgg16-397923af.pth")


def _faces_tree(raw: Path) -> None:
    """RAW/<identity>/<file>: four people from photos that ship with skimage and insightface."""
    import insightface
    from skimage import data

    astronaut = data.astronaut()
    group = np.asarray(Image.open(Path(insightface.__file__).parent / "data/images/t1.jpg").convert("RGB"))
    people = {"astronaut": astronaut}
    for k, face in enumerate(load_detector("dlib").detect(group)[:3]):
        x1, y1, x2, y2 = face.box
        m = 0.8 * (x2 - x1)
        box = [int(max(0, x1 - m)), int(max(0, y1 - m)), int(x2 + m), int(y2 + m)]
        people[f"group-{k}"] = np.ascontiguousarray(group[box[1] : box[3], box[0] : box[2]])
    for name, image in people.items():
        (raw / name).mkdir(parents=True)
        Image.fromarray(image).save(raw / name / "a.png")
        Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(raw / name / "b.png")  # a second photo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, fixtures_dir):
    root = tmp_path_factory.mktemp("train")
    FaceParser().save_pretrained(root / "parser")
    _faces_tree(root / "raw")
    summary = preprocess(
        root / "raw", root / "data", size=256, parser=root / "parser", min_face_size=32,
        blur_threshold=0, workers=0, detector="dlib", progress=False,
    )  # fmt: skip
    assert summary.kept >= 6, summary
    HifiFace(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64).save_pretrained(
        root / "model"
    )
    convert_bfm(fixtures_dir / "bfm_synthetic_front.mat", root / "bfm")
    # LPIPS's trunks: torchvision loads the ImageNet files from TORCH_HOME when they are there.
    _random_imagenet_trunks(root / "torch-home" / "hub" / "checkpoints")
    return root


# Put first on PYTHONPATH, this makes every torch.load in the training process a weights_only=True
# load, whatever its caller asks for: a checkpoint part that needs unpickling fails the resume.
STRICT_TORCH_LOAD = """
import torch

_load = torch.load


def _weights_only_load(*args, **kwargs):
    kwargs["weights_only"] = True
    return _load(*args, **kwargs)


torch.load = _weights_only_load
"""


def launch(
    workspace: Path,
    out: str,
    *args: str,
    processes: int = 1,
    precision: str = "no",
    strict_load: bool = False,
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1"]
    command += ["--mixed_precision", precision, "--dynamo_backend", "no", "--num_processes", str(processes)]
    if processes > 1:
        command += ["--multi_gpu", "--main_process_port", "29517"]
    command += [str(SCRIPT), "--data_dir", str(workspace / "data"), "--output_dir", str(workspace / out)]
    command += ["--pretrained_model", str(workspace / "model"), "--bfm", str(workspace / "bfm")]
    command += ["--d_base_channels", "8", "--d_max_channels", "16", "--train_batch_size", "2"]
    command += ["--dataloader_num_workers", "0", "--log_steps", "1", "--sample_steps", "2", *args]
    env = dict(
        os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", TORCH_HOME=str(workspace / "torch-home")
    )
    env["OMP_NUM_THREADS"] = "1" if processes > 1 else env.get("OMP_NUM_THREADS", "2")
    if strict_load:
        site = workspace / "strict-torch-load"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(STRICT_TORCH_LOAD)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    result.log = result.stdout + result.stderr
    return result


def checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("checkpoint-", ".checkpoint-")))


def generator_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / "model.safetensors")


def test_train_checkpoint_resume_and_export(workspace):
    first = launch(
        workspace,
        "run",
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "1",
        "--checkpoints_total_limit",
        "2",
    )
    assert first.returncode == 0, first.log[-4000:]
    run = workspace / "run"
    assert checkpoints(run) == ["checkpoint-2", "checkpoint-3"]  # the limit removed checkpoint-1
    assert (run / "samples" / "00000002.png").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    # the EMA is in safetensors, not pickled by Accelerate (custom_checkpoint_0.pkl)
    assert (run / "checkpoint-3" / "ema.safetensors").is_file()
    assert not list(run.rglob("custom_checkpoint_*"))

    second = launch(
        workspace, "run", "--max_train_steps", "5", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2",
        "--resume_from_checkpoint", "latest", strict_load=True,
    )  # fmt: skip
    assert second.returncode == 0, second.log[-4000:]
    assert "resumed from" in second.log and "at step 3" in second.log
    assert checkpoints(run) == ["checkpoint-4", "checkpoint-5"]

    # the same 5 steps in one go give the same weights: step, optimisers, RNG and data position resumed
    straight = launch(workspace, "straight", "--max_train_steps", "5", "--checkpointing_steps", "5")
    assert straight.returncode == 0, straight.log[-4000:]
    resumed, direct = (
        generator_weights(run / "checkpoint-5"),
        generator_weights(workspace / "straight" / "checkpoint-5"),
    )
    for name in resumed:
        torch.testing.assert_close(resumed[name], direct[name], rtol=0, atol=1e-6, msg=name)
    # the EMA was resumed from ema.safetensors: it counts on from step 3 (a fresh EMA would say 1)
    with safe_open(str(run / "checkpoint-4" / "ema.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["ema"])["optimization_step"] == 4

    model = HifiFace.from_pretrained(run / "generator")  # the exported EMA generator
    assert model.encoder.conv_in.out_channels == 8
    card = (run / "generator" / "README.md").read_text()
    assert "trained with hififace's train_accelerate.py for 5 steps" in card


def test_two_process_ddp_in_bf16_keeps_replicas_identical(workspace):
    result = launch(
        workspace,
        "ddp",
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "2",
        processes=2,
        precision="bf16",
    )
    assert result.returncode == 0, result.log[-4000:]
    assert "replicas in sync: 2 processes hold identical weights" in result.log
    assert "2 processes" in result.log and "4 per step" in result.log
    assert "Mixed precision type: bf16" in result.log
    assert checkpoints(workspace / "ddp") == ["checkpoint-2"]


def test_non_finite_losses_stop_the_run_and_keep_the_checkpoint(workspace):
    # an absurd learning rate sends the weights to infinity after the first step
    result = launch(
        workspace, "nan", "--max_train_steps", "6", "--checkpointing_steps", "1", "--learning_rate", "1e30",
        "--d_learning_rate", "1e30", "--max_nonfinite_steps", "2",
    )  # fmt: skip
    assert result.returncode != 0
    assert "update skipped" in result.log
    assert "stopping: 2 non-finite losses in a row" in result.log
    assert "the last good checkpoint is checkpoint-1" in result.log
    assert checkpoints(workspace / "nan") == ["checkpoint-1"]


def test_overfitting_a_few_faces_lowers_the_reconstruction_loss(workspace):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = launch(
        workspace, "overfit", "--max_train_steps", "40", "--checkpointing_steps", "1000", "--learning_rate", "1e-3",
        "--same_identity_ratio", "1", "--no-flip", "--sample_steps", "1000",
        "--lpips_net", "alex",  # 40 steps: the lighter trunk (the default VGG runs in the other runs)
    )  # fmt: skip
    assert result.returncode == 0, result.log[-4000:]
    events = EventAccumulator(
        str(next((workspace / "overfit" / "logs").rglob("events.out.tfevents.*")).parent)
    )
    events.Reload()
    rec = [e.value for e in events.Scalars("loss/G/rec")]
    first, last = np.mean(rec[:5]), np.mean(rec[-5:])
    print(f"reconstruction loss: first 5 steps {first:.4f}, last 5 steps {last:.4f}")
    assert last < 0.6 * first


def test_options_have_defaults_help_and_yaml(tmp_path):
    sys.path.insert(0, str(REPO))
    from train_accelerate import parse_args

    config = tmp_path / "config.yaml"
    config.write_text("data_dir: d\npretrained_model: m\nbfm: b\nlambda_rec: 3.5\n")
    args = parse_args(["--config", str(config), "--lambda_id", "2"])
    assert (args.lambda_rec, args.lambda_id, args.lambda_seg, args.adam_beta1, args.adam_beta2) == (
        3.5,
        2,
        100,
        0,
        0.99,
    )
    config.write_text("data_dir: d\nlamda_rec: 3\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])
    text = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True).stdout
    for option in (
        "--checkpoints_total_limit",
        "--resume_from_checkpoint",
        "--report_to",
        "--bfm",
        "--lambda_lpips",
    ):
        assert option in text


def test_two_processes_normalise_l_rec_by_the_global_pair_count(tmp_path):
    """The same global batch on one process and split over two DDP processes (2 pairs and 1 pair)."""
    results = {}
    for processes in (1, 2):
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1"]
        command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--num_processes", str(processes)]
        if processes > 1:
            command += ["--multi_gpu", "--main_process_port", "29518"]
        out = tmp_path / f"{processes}.json"
        command += [str(REPO / "tests" / "ddp_pair_count.py"), str(out)]
        env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        results[processes] = json.loads(out.read_text())
    one, two = results[1], results[2]
    assert two["processes"] == 2
    assert one["value"] == pytest.approx(one["single_value"], rel=1e-6)
    assert two["value"] == pytest.approx(one["single_value"], rel=1e-6)
    np.testing.assert_allclose(two["grad"], one["single_grad"], rtol=1e-5, atol=1e-9)
    # what it guards against: each process dividing by its own count is measurably off
    assert abs(two["value_with_local_counts"] - one["single_value"]) > 1e-3


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory, fixtures_dir):
    root = tmp_path_factory.mktemp("step")
    HifiFace(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64).save_pretrained(
        root / "model"
    )
    convert_bfm(fixtures_dir / "bfm_synthetic_front.mat", root / "bfm")
    return root


def test_a_step_the_grad_scaler_skips_leaves_ema_and_schedules_unchanged(tiny_parts):
    sys.path.insert(0, str(REPO))
    from accelerate import Accelerator

    from train_accelerate import build_models, build_optimizers, parse_args, prepare, train_step

    args = parse_args(
        ["--data_dir", "unused", "--pretrained_model", str(tiny_parts / "model"), "--bfm", str(tiny_parts / "bfm"),
         "--lambda_lpips", "0", "--d_base_channels", "8", "--d_max_channels", "16",
         "--lr_scheduler", "linear", "--max_train_steps", "10"]
    )  # fmt: skip
    accelerator = Accelerator(cpu=True)
    # fp16's GradScaler (an fp16 Accelerator needs a GPU): at an infinite scale every gradient
    # overflows, so the scaler skips each optimiser step as it does after an fp16 overflow
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    models = build_models(args)
    optimizers = build_optimizers(args, models)
    prepare(accelerator, models, optimizers, None)
    g = torch.Generator().manual_seed(0)
    batch = {
        "source": torch.rand(2, 3, 256, 256, generator=g),
        "target": torch.rand(2, 3, 256, 256, generator=g),
        "mask": (torch.rand(2, 1, 256, 256, generator=g) > 0.5).float(),
        "same_identity": torch.tensor([True, False]),
    }

    def state():
        return (
            [p.detach().clone() for p in models.ema.shadow_params],
            models.ema.optimization_step,
            optimizers.generator_schedule.get_last_lr(),
            optimizers.discriminator_schedule.get_last_lr(),
            [p.detach().clone() for p in models.trainable[:3]],
        )

    def unchanged(before, after):
        return (
            all(torch.equal(a, b) for a, b in zip(before[0], after[0], strict=True))
            and before[1:4] == after[1:4]
            and all(torch.equal(a, b) for a, b in zip(before[4], after[4], strict=True))
        )

    before = state()
    result = train_step(accelerator, models, optimizers, batch)
    assert not result.updated_g and not result.updated_d
    assert unchanged(before, state())

    accelerator.scaler.update(new_scale=1.0)  # a scale that does not overflow: the same step updates
    result = train_step(accelerator, models, optimizers, batch)
    assert result.finite and result.updated_g and result.updated_d
    after = state()
    assert after[1] == before[1] + 1  # the EMA stepped once
    assert after[2] != before[2] and after[3] != before[3]  # so did both schedules
    assert not any(torch.equal(a, b) for a, b in zip(before[4], after[4], strict=True))
    assert set(result.terms) >= {"grad_norm/G", "grad_norm/D", "loss/D/r1", "loss/G/rec"}


def test_a_checkpoint_written_mid_training_serves_as_a_pipeline(workspace, tmp_path):
    """checkpoint-N/generator_ema loads with HifiFacePipeline.from_pretrained and swaps, mid-run."""
    from hififace.pipeline import HifiFacePipeline

    result = launch(workspace, "midrun", "--max_train_steps", "2", "--checkpointing_steps", "1")
    assert result.returncode == 0, result.log[-4000:]
    folder = workspace / "midrun" / "checkpoint-1" / "generator_ema"
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    card = (folder / "README.md").read_text()
    assert "license: other" in card and "insightface" in card and '"max_train_steps": 2' in card
    pipeline = HifiFacePipeline.from_pretrained(folder, detector="dlib")
    from skimage import data

    photo = data.astronaut()  # one face, found by dlib
    swapped = pipeline.swap(photo, photo).image
    assert np.asarray(swapped).shape == photo.shape
    # the export at the end carries the last sample grid into its card
    export = workspace / "midrun" / "generator"
    assert (export / "sample_grid.png").is_file() and "![samples](sample_grid.png)" in (
        export / "README.md"
    ).read_text()
