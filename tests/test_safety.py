"""Nothing lost, nothing kept, nothing left running (issue 15): each test reproduces one failure.

Writes that fail midway keep the previous result, output names never collide, outputs are checked
before any work, interrupted runs leave no temporary files or orphan workers, and bad config files
get one line that names the field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY, tiny_model_dir

from hififace import HifiFace
from hififace.hub import CheckpointError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


# -- 1. a failed write of a model folder leaves the previous folder loadable ----------------------


def test_a_failed_save_pretrained_keeps_the_previous_folder_loadable(model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model = HifiFace(**TINY)

    def disk_full(self, save_directory):  # half of the weights written, then the disk is full
        (Path(save_directory) / "model.safetensors").write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(HifiFace, "_save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.save_pretrained(folder, model_card_kwargs={"description": "new"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left
    HifiFace.from_pretrained(folder)  # still loads


def test_convert_into_an_existing_folder_that_fails_keeps_it(model_dir, tmp_path, monkeypatch):
    from hififace.convert import save_converted

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    src = tmp_path / "generator.pth"
    src.write_bytes(b"weights")
    readme = (folder / "README.md").read_bytes()
    monkeypatch.setattr(HifiFace, "_save_pretrained", _raise_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_converted(HifiFace(**TINY), folder, src, command="hififace-pytorch", description="d")
    assert (folder / "README.md").read_bytes() == readme and (folder / "config.json").is_file()
    HifiFace.from_pretrained(folder)
    monkeypatch.undo()
    save_converted(HifiFace(**TINY), folder, src, command="hififace-pytorch", description="d")
    assert "converted with `hififace convert hififace-pytorch`" in (folder / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.pth", "model"]


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


class _Repo:
    def __init__(self, repo_id: str):
        self.repo_id = repo_id


def test_push_to_hub_stages_through_the_atomic_save(monkeypatch, tmp_path):
    staged = []

    def upload_folder(self, *, folder_path, **kwargs):
        staged.append(sorted(p.name for p in Path(folder_path).iterdir()))
        return "https://huggingface.co/u/r/commit/1"

    monkeypatch.setattr("huggingface_hub.HfApi.create_repo", lambda self, repo_id, **k: _Repo(repo_id))
    monkeypatch.setattr("huggingface_hub.HfApi.upload_folder", upload_folder)
    import hififace.hub

    swapped_in = []
    atomic_folder = hififace.hub.atomic_folder

    def spy(path):
        swapped_in.append(Path(path).name)
        return atomic_folder(path)

    monkeypatch.setattr(hififace.hub, "atomic_folder", spy)
    HifiFace(**TINY).save_pretrained(tmp_path / "m", push_to_hub=True, repo_id="u/r")
    assert len(swapped_in) == 2 and swapped_in[0] == "m"  # the folder, then push_to_hub's staging
    assert staged == [["README.md", "config.json", "model.safetensors"]]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


# -- 8. a wrong type in config.json names the field ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("base_channels", "8", r"field 'base_channels' is '8' \(str\); HifiFace needs int"),
        ("coeff_dims", [80, "x"], r"field 'coeff_dims'"),
        ("sff", 3, r"field 'sff' is 3 \(int\)"),
    ],
)
def test_a_wrong_type_in_config_json_names_the_field(model_dir, tmp_path, field, value, message):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        HifiFace.from_pretrained(folder)


def test_a_config_json_that_is_not_an_object_is_one_line(model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        HifiFace.from_pretrained(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="must hold a JSON object, not list"):
        HifiFace.from_pretrained(folder)


def test_a_pickle_that_runs_code_is_refused_not_corrupt(tmp_path):
    import os

    from hififace.convert import load_checkpoint

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"was refused: it pickles (posix|nt)\.system") as caught:
        load_checkpoint(path)
    assert "corrupt" not in str(caught.value)


# -- 2 and 5. outputs are checked before any work ------------------------------------------------


def _swap_cli(capsys, *args: str) -> tuple[int, str]:
    from hififace.cli import main

    code = main(["swap", "--detector", "dlib", "--device", "cpu", "--no-progress", *args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).resize((256, 256)).save(path)
    return path


def test_targets_with_the_same_stem_are_refused_before_the_model_loads(astronaut, tmp_path, capsys):
    from PIL import Image

    targets = tmp_path / "targets"
    targets.mkdir()
    for name in ("a.png", "a.bmp", "a.tif", "b.bmp", "b.png", "c.jpg", "c.png"):
        Image.open(astronaut).save(targets / name)
    # a model folder that does not exist: the clash must be found before loading is even tried
    code, err = _swap_cli(
        capsys, "--source", str(astronaut), "--target", str(targets), "--output", str(tmp_path / "out"),
        "--model", str(tmp_path / "no-model"),
    )  # fmt: skip
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "5 targets would overwrite each other's output" in lines[0], err
    assert "a.bmp, a.png, a.tif -> a.png" in lines[0] and "b.bmp, b.png -> b.png" in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_image_output_into_a_missing_folder_is_made_like_a_video_one(
    astronaut, model_dir, tmp_path, capsys
):
    out = tmp_path / "new" / "deeper" / "swapped.png"
    code, err = _swap_cli(
        capsys, "--source", str(astronaut), "--target", str(astronaut), "--output", str(out),
        "--model", str(model_dir),
    )  # fmt: skip
    assert code == 0, err
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["swapped.png"]


@pytest.mark.parametrize("name", ["swapped.png", "clip.mp4"])
def test_an_output_folder_that_cannot_be_made_fails_before_the_model_loads(astronaut, tmp_path, capsys, name):
    (tmp_path / "file").write_text("in the way")
    out = tmp_path / "file" / name
    code, err = _swap_cli(
        capsys, "--source", str(astronaut), "--target", str(astronaut if name.endswith("png") else tmp_path / "v.mp4"),
        "--output", str(out), "--model", str(tmp_path / "no-model"),
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    if name.endswith(".png"):
        assert (
            lines[0]
            == f"hififace: error: cannot write into {tmp_path / 'file'}: a file of that name is in the way"
        )


# -- 6. a cut or damaged video is decoded as far as it goes, and says so --------------------------


def _write_clip(path: Path, frames: int = 12, side: int = 128) -> list[tuple[int, int]]:
    """A faststart H.264 mp4 of the drifting astronaut (a keyframe every 4 frames); its packets' (pos, size)."""
    import av
    import numpy as np
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[:: 512 // side, :: 512 // side])
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=10)
        video.width = video.height = side
        video.pix_fmt, video.options = "yuv420p", {"g": "4"}
        for i in range(frames):
            for packet in video.encode(
                av.VideoFrame.from_ndarray(np.roll(photo, 2 * i, axis=1), format="rgb24")
            ):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]


@pytest.fixture(scope="module")
def pipeline(model_dir):
    from hififace import HifiFacePipeline

    return HifiFacePipeline.from_pretrained(model_dir, detector="dlib")


def test_a_truncated_or_damaged_video_is_swapped_as_far_as_it_goes_and_reported(
    pipeline, model_dir, astronaut, tmp_path, capsys
):
    from hififace.video import VideoError, swap_video

    clip = tmp_path / "clip.mp4"
    packets = _write_clip(clip)
    whole = clip.read_bytes()
    source = pipeline.encode_source(astronaut)

    half = tmp_path / "half.mp4"
    half.write_bytes(whole[: len(whole) // 2])
    summary = swap_video(pipeline, source, half, tmp_path / "half_out.mp4")
    assert 0 < summary.frames < 12 and summary.missing_frames == 12 - summary.frames
    assert f"truncated: {12 - summary.frames} of 12 declared frames missing" in summary.damage
    code, err = _swap_cli(
        capsys, "--source", str(astronaut), "--target", str(half), "--output", str(tmp_path / "half_cli.mp4"),
        "--model", str(model_dir),
    )  # fmt: skip
    assert code == 0 and f"hififace: warning: {half}: truncated: " in err  # the user is told

    damaged = bytearray(whole)
    pos, _ = packets[5]
    damaged[pos : pos + 4] = b"\xff" * 4  # a NAL length no decoder accepts: that packet is rejected
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(damaged))
    summary = swap_video(pipeline, source, bad, tmp_path / "bad_out.mp4")  # used to abort the video
    assert summary.skipped_packets == 1 and summary.frames == 11
    assert summary.damage == "1 damaged packet(s) skipped; truncated: 1 of 12 declared frames missing"

    for pos, _ in packets:  # every packet damaged: nothing usable is left
        damaged[pos : pos + 4] = b"\xff" * 4
    bad.write_bytes(bytes(damaged))
    with pytest.raises(VideoError, match=r"has no frames \(\d+ damaged packets skipped\)"):
        swap_video(pipeline, source, bad, tmp_path / "none.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bad.mp4",
        "bad_out.mp4",
        "clip.mp4",
        "half.mp4",
        "half_cli.mp4",
        "half_out.mp4",
    ]


# -- 7. interrupted runs leave nothing behind -----------------------------------------------------


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigterm_during_a_video_swap_removes_the_temporary_video(model_dir, astronaut, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    clip = tmp_path / "long.mp4"
    _write_clip(clip, frames=400, side=64)
    out = tmp_path / "out"
    out.mkdir()
    command = [
        sys.executable, "-m", "hififace.cli", "swap", "--source", str(astronaut), "--target", str(clip),
        "--output", str(out / "clip.mp4"), "--model", str(model_dir), "--detector", "dlib",
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob(".clip.mp4.*")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(out.glob(".clip.mp4.*")), f"no temporary video appeared: {process.poll()}"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "hififace: terminated"
    assert list(out.iterdir()) == []


_PREPROCESS = """
import sys
from hififace.data import preprocess
preprocess(sys.argv[1], sys.argv[2], workers=2, detector="dlib", progress=False)
"""


def test_workers_of_a_killed_preprocess_exit(astronaut, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import psutil

    raw = tmp_path / "raw" / "person"
    raw.mkdir(parents=True)
    for i in range(400):  # more than two workers finish before the kill
        shutil.copy(astronaut, raw / f"{i:03d}.png")
    process = subprocess.Popen(
        [sys.executable, "-c", _PREPROCESS, str(tmp_path / "raw"), str(tmp_path / "out")], env=_env()
    )
    parent = psutil.Process(process.pid)
    try:
        deadline = time.monotonic() + 90
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline and process.poll() is None:
            workers = [c for c in parent.children() if "multiprocessing.spawn" in " ".join(c.cmdline())]
            index = tmp_path / "out" / "index.jsonl"
            if len(workers) == 2 and index.is_file() and index.stat().st_size:  # workers busy
                break
            time.sleep(0.05)
        assert len(workers) == 2, "the workers did not start"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=10)
    finally:
        process.kill()
        for worker in workers:  # do not leave orphans behind when the test fails
            if worker.is_running():
                worker.kill()
    assert alive == [], f"workers still running after their parent was killed: {[p.pid for p in alive]}"


# -- load: faces of different sources through the generator together ------------------------------


def test_faces_of_two_sources_swapped_together_match_each_swapped_alone(pipeline, astronaut):
    import dataclasses

    import numpy as np

    image, _ = pipeline.read_image(astronaut)
    face = pipeline.detect_faces(image)[0]
    first = pipeline.encode_source(astronaut)
    second = pipeline.encode_source(np.ascontiguousarray(image[:, ::-1]))
    together = dataclasses.replace(
        first,
        code=type(first.code)(
            coeffs=torch.cat([first.code.coeffs, second.code.coeffs]),
            embedding=torch.cat([first.code.embedding, second.code.embedding]),
        ),
    )
    calls = []
    model = pipeline.model
    original = type(model).forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    type(model).forward = counted
    try:
        both = pipeline.swap_faces(together, [(image, face), (image, face)])
    finally:
        type(model).forward = original
    assert len(calls) == 1  # one generator pass for both requests
    for swap, source in zip(both, (first, second), strict=True):
        alone = pipeline.swap_faces(source, [(image, face)])[0]
        assert np.abs(swap.image.astype(int) - alone.image.astype(int)).max() <= 1
    assert not np.array_equal(both[0].image, both[1].image)
    with pytest.raises(ValueError, match="2 identity codes for 3 faces"):
        pipeline.swap_faces(together, [(image, face)] * 3)
