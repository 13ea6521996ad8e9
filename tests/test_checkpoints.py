"""The safe checkpoint reader: tensors and containers come back, code in a pickle never runs."""

import os
import pickle
import sys
import zipfile

import pytest
import torch
from synthetic import lightning_checkpoint, save_zip_checkpoint

from hififace.checkpoints import CorruptCheckpoint, RefusedPickle, load_tensors, read_zip_checkpoint
from hififace.cli import main
from hififace.convert import convert_maum_ai, load_checkpoint
from hififace.hub import CheckpointError


class RunsShell:
    """Pickles as a call of os.system, the classic malicious checkpoint."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def malicious_checkpoint(path, sentinel):
    state = {"generator.encoder.conv_first.weight": torch.ones(2), "generator.payload": RunsShell(sentinel)}
    torch.save({"state_dict": state}, path)


def test_lightning_container_reads_without_importing_what_it_names(tmp_path):
    state = {"generator.a": torch.arange(6.0).reshape(2, 3), "g_loss.f_id.a": torch.ones(4)}
    state["generator.a_t"] = state["generator.a"].t()  # a strided view sharing the storage
    save_zip_checkpoint(lightning_checkpoint(state), tmp_path / "x.ckpt")
    content, archive = read_zip_checkpoint(tmp_path / "x.ckpt")
    try:
        tensors = load_tensors(content["state_dict"], keep=lambda name: name.startswith("generator."))
    finally:
        archive.close()
    assert set(tensors) == {"generator.a", "generator.a_t"}
    assert torch.equal(tensors["generator.a"], state["generator.a"])
    assert torch.equal(tensors["generator.a_t"], state["generator.a"].t())
    assert tensors["generator.a"].device.type == "cpu"  # saved as 'cuda:0'
    assert content["pytorch-lightning_version"] == "1.4.5"
    (callback,) = content["callbacks"]
    assert callback.__module__ == "stub:pytorch_lightning.callbacks.model_checkpoint"
    assert not any(name.split(".")[0] in ("pytorch_lightning", "omegaconf") for name in sys.modules)


def test_pickle_calling_os_system_is_refused_and_runs_nothing(tmp_path):
    sentinel = tmp_path / "pwned"
    malicious_checkpoint(tmp_path / "evil.ckpt", sentinel)
    with pytest.raises(RefusedPickle, match=r"calls (posix|nt)\.system"):
        read_zip_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"was refused: it calls (posix|nt)\.system"):
        convert_maum_ai(tmp_path / "evil.ckpt", tmp_path / "out")
    assert not sentinel.exists() and not (tmp_path / "out").exists()


def test_protocol_0_instantiation_is_refused_too(tmp_path):
    """INST builds an object by calling its class: a stub refuses that call like a REDUCE."""
    sentinel = tmp_path / "pwned"
    payload = f"(S'touch {sentinel}'\nios\nsystem\n.".encode()
    with zipfile.ZipFile(tmp_path / "inst.ckpt", "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(RefusedPickle, match="calls os.system"):
        read_zip_checkpoint(tmp_path / "inst.ckpt")
    assert not sentinel.exists()
    # and the stock unpickler would indeed have run it
    pickle.loads(payload)
    assert sentinel.exists()


def test_weights_only_loader_says_refused_not_corrupt(tmp_path, capsys):
    sentinel = tmp_path / "pwned"
    malicious_checkpoint(tmp_path / "evil.pth", sentinel)
    with pytest.raises(CheckpointError, match=r"was refused: it pickles (posix|nt)\.system"):
        load_checkpoint(tmp_path / "evil.pth")
    assert main(["convert", "arcface", str(tmp_path / "evil.pth"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "corrupt" not in err[0]
    assert not sentinel.exists()


def test_corrupt_files_are_one_clear_line(tmp_path, capsys):
    (tmp_path / "junk.ckpt").write_bytes(b"not a zip at all")
    assert main(["convert", "maum-ai", str(tmp_path / "junk.ckpt"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a PyTorch zip checkpoint" in err[0]

    save_zip_checkpoint(lightning_checkpoint({"generator.a": torch.ones(8)}), tmp_path / "cut.ckpt")
    with zipfile.ZipFile(tmp_path / "cut.ckpt") as src, zipfile.ZipFile(tmp_path / "short.ckpt", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-4] if name.endswith("data/0") else data)
    with pytest.raises(CheckpointError, match="holds 28 bytes, not 32"):
        convert_maum_ai(tmp_path / "short.ckpt", tmp_path / "out")


def test_tensor_past_its_storage_is_corrupt(tmp_path):
    save_zip_checkpoint(lightning_checkpoint({"generator.a": torch.ones(4)}), tmp_path / "x.ckpt")
    content, archive = read_zip_checkpoint(tmp_path / "x.ckpt")
    stored = content["state_dict"]["generator.a"]
    with pytest.raises(CorruptCheckpoint, match="reaches past its storage"):
        type(stored)(stored.storage, 2, (4,), (1,)).load()
    archive.close()
