"""Batch commands over two processes (`accelerate launch`, CPU, gloo) give what one process gives:
`hififace swap` on a folder, `hififace evaluate` and `hififace preprocess`, each file, pair and
identity folder done exactly once, one merged output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_model_dir
from PIL import Image as PILImage
from skimage import data

from hififace.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """targets/: two faces and a cup (no face); src/ and tgt/: two evaluation pairs."""
    root = tmp_path_factory.mktemp("sharding")
    astronaut = data.astronaut()
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    darker = (astronaut * 0.8).astype(np.uint8)
    for folder, files in {
        "targets": {"a.png": astronaut, "b.png": mirrored, "c.png": data.coffee()},
        "src": {"p1.png": mirrored, "p2.png": astronaut},
        "tgt": {"p1.png": astronaut, "p2.png": darker},
        "raw/alice": {"1.png": astronaut, "2.png": mirrored},
        "raw/bob": {"1.png": data.coffee()},
        "raw/carol": {"1.png": darker},
    }.items():
        (root / folder).mkdir(parents=True)
        for name, image in files.items():
            PILImage.fromarray(image).save(root / folder / name)
    PILImage.fromarray(mirrored).save(root / "source.png")
    return root


def commands(inputs: Path, model_dir: Path, out: Path) -> list[list[str]]:
    common = ["--detector", "dlib", "--no-progress"]
    swap = ["swap", "--model", str(model_dir), "--source", str(inputs / "source.png"), *common]
    swap += ["--target", str(inputs / "targets"), "--output", str(out / "swapped"), "--dtype", "float32"]
    evaluate = ["evaluate", "--sources", str(inputs / "src"), "--targets", str(inputs / "tgt"), *common]
    evaluate += ["--model", str(model_dir), "--out", str(out / "eval"), "--no-fid", "--batch-size", "1"]
    preprocess = [
        "preprocess",
        str(inputs / "raw"),
        str(out / "data"),
        "--workers",
        "0",
        "--detector",
        "dlib",
    ]
    preprocess += ["--min-face-size", "0", "--no-progress"]
    return [swap, evaluate, preprocess]


def test_two_processes_swap_and_evaluate_like_one(inputs, model_dir, tmp_path, capsys):
    one = tmp_path / "one"
    codes = [main(argv) for argv in commands(inputs, model_dir, one)]
    single_log = capsys.readouterr()
    assert codes == [1, 0, 0]  # the cup has no face: reported, the other files written

    two = tmp_path / "two"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--multi_gpu"]
    launch += ["--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += [
        "--main_process_port",
        "29531",
        str(REPO / "tests" / "sharded_commands.py"),
        str(tmp_path / "codes.json"),
    ]
    launch += [json.dumps(argv) for argv in commands(inputs, model_dir, two)]
    env = dict(os.environ, ACCELERATE_USE_CPU="true", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    run = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    result = json.loads((tmp_path / "codes.json").read_text())
    assert result == {"codes": [1, 0, 0], "world_size": 2}

    # swap: the same files, each written once, equal to the one-process output
    assert sorted(p.name for p in (two / "swapped").iterdir()) == ["a.png", "b.png"]
    for name in ("a.png", "b.png"):
        a, b = (np.asarray(PILImage.open(d / "swapped" / name)).astype(int) for d in (one, two))
        assert np.abs(a - b).max() <= 1, name  # fp32; thread counts may move the last bit
    for log in (single_log.out, run.stdout):
        assert log.count("face(s) swapped") == 2
    assert run.stderr.count("1 of 3 targets failed") == 1  # merged, said once by the main process
    assert run.stderr.count("skipped") == 1

    # evaluate: one metrics.json and report for the set, every pair computed once
    summaries = [json.loads((d / "eval" / "metrics.json").read_text()) for d in (one, two)]
    assert summaries[1]["cache"] == {"reused": 0, "computed": 2}
    assert (two / "eval" / "report.html").is_file()
    assert len(list((two / "eval" / "cache").glob("*.json"))) == 2
    assert summaries[0]["pairs"] == summaries[1]["pairs"] == 2
    for name, metric in summaries[0]["metrics"].items():
        other = summaries[1]["metrics"][name]
        assert other.get("n") == metric.get("n"), name
        if metric.get("mean") is not None:
            assert other["mean"] == pytest.approx(metric["mean"], rel=1e-3, abs=1e-4), name

    # preprocess: one index with every image once, the same records and crops, one summary
    indexes = [sorted((d / "data" / "index.jsonl").read_text().splitlines()) for d in (one, two)]
    assert len(indexes[1]) == 4 and indexes[0] == indexes[1]
    crops = sorted(p.relative_to(two / "data") for p in (two / "data" / "images").rglob("*.png"))
    assert [str(c) for c in crops] == ["images/alice/1.png", "images/alice/2.png", "images/carol/1.png"]
    for crop in crops:
        assert np.array_equal(*(np.asarray(PILImage.open(d / "data" / crop)) for d in (one, two)))
    summaries = [json.loads((d / "data" / "preprocess_summary.json").read_text()) for d in (one, two)]
    for summary in summaries:
        summary.pop("elapsed_s")
    assert summaries[0] == summaries[1] and summaries[1]["kept"] == 3 and summaries[1]["processed"] == 4
