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
        save_converted(
            HifiFace(**TINY), folder, src, command="hififace-pytorch", description="d", weights_license="MIT"
        )
    assert (folder / "README.md").read_bytes() == readme and (folder / "config.json").is_file()
    HifiFace.from_pretrained(folder)
    monkeypatch.undo()
    save_converted(
        HifiFace(**TINY), folder, src, command="hififace-pytorch", description="d", weights_license="MIT"
    )
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
