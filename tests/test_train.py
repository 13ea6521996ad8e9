"""`accelerate launch train_accelerate.py` end to end on real face crops, on the CPU.

A tiny generator (with full-size but randomly initialised priors), the synthetic BFM, a random
face parser for the masks and LPIPS on a random AlexNet (torchvision reads it from TORCH_HOME, as
it would read the downloaded ImageNet weights): the plumbing is real, the weights are not.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hififace import FaceParser, HifiFace
from hififace.convert import convert_bfm
from hififace.data import preprocess
from hififace.faces import load_detector

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train_accelerate.py"


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
    # LPIPS's AlexNet trunk: torchvision loads the ImageNet file from TORCH_HOME when it is there.
    from torchvision.models import alexnet

    checkpoints = root / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(alexnet().state_dict(), checkpoints / "alexnet-owt-7be5be79.pth")
    return root


def launch(
    workspace: Path, out: str, *args: str, processes: int = 1, precision: str = "no"
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

    second = launch(
        workspace, "run", "--max_train_steps", "5", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2",
        "--resume_from_checkpoint", "latest",
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
