"""hififace.atomic: a target is either the old version or the whole new one, never half of it."""

from __future__ import annotations

import os

import pytest

from hififace.atomic import atomic_folder, atomic_path, atomic_write


def test_atomic_write_replaces_the_file_and_keeps_its_permissions(tmp_path):
    path = tmp_path / "index.jsonl"
    path.write_text("old\n")
    path.chmod(0o640)
    with atomic_write(path, "w") as f:
        f.write("new\n")
        assert path.read_text() == "old\n"  # not visible before the block ends
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl"]


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path):
    with atomic_write(tmp_path / "new.bin") as f:
        f.write(b"\x00\x01")
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
    assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01"


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_path(path, keep_suffix=True) as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp.name.startswith(".clip.mp4.")
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb'"), atomic_write(path, "a"):
        pass


def test_atomic_folder_replaces_a_whole_folder(tmp_path):
    target = tmp_path / "models" / "hififace-256"
    with atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("{}")
        assert not target.exists()
    assert sorted(os.listdir(target)) == ["config.json"]
    with atomic_folder(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"w")
    assert sorted(os.listdir(target)) == ["model.safetensors"]  # the old folder is gone whole
    with pytest.raises(KeyError), atomic_folder(target) as tmp:
        (tmp / "partial").write_text("x")
        raise KeyError("interrupted")
    assert sorted(os.listdir(target)) == ["model.safetensors"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["hififace-256"]
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="is a file, not a folder"), atomic_folder(tmp_path / "file"):
        pass
