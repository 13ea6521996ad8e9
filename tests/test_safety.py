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
