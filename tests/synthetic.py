"""Seeded synthetic weights for a tensor list (TSV of key, shape, dtype), as the reference goldens use.

Our own implementation of the rule documented in `reference/synthetic_release.py` (shared folder):
values are drawn in file order from one `torch.Generator` seeded with `seed`, so the result is
identical bit for bit. The first matching rule gives a tensor's values:

  num_batches_tracked        0 (int64, no draw)
  running_mean               0.01 * randn
  running_var                1 + 0.1 * rand
  final_layers.*.weight      randn * 20 / sqrt(fan_in)
  *style_fc.weight           randn / sqrt(shape[1])
  std_style_fc.bias          1 + 0.1 * randn
  mean_style_fc.bias         0.1 * randn
  rank >= 2                  randn * 0.5 / sqrt(fan_in)       (fan_in = product of dims after the first)
  prelu                      0.25 (no draw)
  batch-norm weight          1 + 0.05 * randn                 (key has "bn", "features" or "downsample.1")
  anything else              0.01 * randn
"""

from __future__ import annotations

import collections
import contextlib
import io
import math
import pickle
import sys
import types
import typing
import warnings
import zipfile
from pathlib import Path

import torch


def read_tsv(path: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every row of a `key<TAB>shape<TAB>dtype` file; shape "scalar" is ()."""
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        key, shape, _ = line.split("\t")
        rows.append((key, () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))))
    return rows


def _value(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=g)

    def fan_in() -> float:
        return math.sqrt(math.prod(shape[1:]))

    is_bn_weight = key.endswith("weight") and any(s in key for s in ("bn", "features", "downsample.1"))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_mean"):
        return 0.01 * randn()
    if key.endswith("running_var"):
        return 1.0 + 0.1 * torch.rand(shape, generator=g)
    if "final_layers" in key and key.endswith("weight"):
        return randn() * (20.0 / fan_in())
    if key.endswith("style_fc.weight"):
        return randn() / math.sqrt(shape[1])
    if key.endswith("std_style_fc.bias"):
        return 1.0 + 0.1 * randn()
    if key.endswith("mean_style_fc.bias"):
        return 0.1 * randn()
    if len(shape) >= 2:
        return randn() * (0.5 / fan_in())
    if "prelu" in key:
        return torch.full(shape, 0.25)
    if is_bn_weight:
        return 1.0 + 0.05 * randn()
    return 0.01 * randn()


def build(tsv_path: str | Path, seed: int = 0, prefix: str = "") -> dict[str, torch.Tensor]:
    """Synthetic state dict for every row of `tsv_path`, seeded by `seed`.

    With `prefix`, only the rows whose key starts with it, which must be the file's leading rows
    (e.g. "generator." in maum-ai's checkpoint): they get the very values the whole file would.
    """
    rows = read_tsv(tsv_path)
    kept = [(key, shape) for key, shape in rows if key.startswith(prefix)]
    if rows[: len(kept)] != kept:
        raise ValueError(f"the rows starting with {prefix!r} are not the leading rows of {tsv_path}")
    g = torch.Generator().manual_seed(seed)
    return {key: _value(key, shape, g) for key, shape in kept}


# --- a PyTorch Lightning 1.4.5 checkpoint, as maum-ai/hififace's release is stored ---------------
# Stand-ins carry the module and class names of the real globals; only these names reach the file.
# The pickle then holds what the real one holds: Lightning's callback class as a dict key, OmegaConf
# containers (built with NEWOBJ + BUILD), `typing.Any`, `collections.defaultdict`, and storages
# tagged 'cuda:0' in zip records under 'archive/'.


def _stand_in(module: str, name: str) -> type:
    return type(name, (), {"__module__": module, "__qualname__": name})


LIGHTNING_GLOBALS = [
    _stand_in("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
    _stand_in("omegaconf.listconfig", "ListConfig"),
    _stand_in("omegaconf.dictconfig", "DictConfig"),
    _stand_in("omegaconf.nodes", "AnyNode"),
    _stand_in("omegaconf.base", "ContainerMetadata"),
]
_STORAGE_CLASSES = {torch.float32: torch.FloatStorage, torch.int64: torch.LongStorage}


def _instance(cls: type, **state: object) -> object:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _omegaconf_betas() -> object:
    """An OmegaConf-like `betas` list [0, 0.999] with metadata and a parent, as AdamW pickles it."""
    _, list_config, dict_config, any_node, metadata = LIGHTNING_GLOBALS

    def meta(key: object) -> object:
        return _instance(
            metadata,
            ref_type=typing.Any,
            key=key,
            flags={},
            resolver_cache=collections.defaultdict(dict),
        )

    parent = _instance(dict_config, _metadata=meta("params"), _parent=None, _content={})
    betas = _instance(list_config, _metadata=meta("betas"), _parent=parent)
    betas._content = [
        _instance(any_node, _metadata=meta(i), _parent=betas, _val=v) for i, v in enumerate((0, 0.999))
    ]
    parent._content["betas"] = betas
    return betas


def lightning_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, object]:
    """What Lightning 1.4.5 writes for a module with this `state_dict` and one AdamW optimizer."""
    ordered = collections.OrderedDict(state_dict)
    ordered._metadata = {"": {"version": 1}}  # as nn.Module.state_dict() leaves it
    adamw = {"lr": 1e-4, "betas": _omegaconf_betas(), "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False}
    return {
        "epoch": 5,
        "global_step": 300000,
        "pytorch-lightning_version": "1.4.5",
        "state_dict": ordered,
        "callbacks": {
            LIGHTNING_GLOBALS[0]: {"monitor": "validation / g_loss", "best_model_score": torch.tensor(3.2)}
        },
        "optimizer_states": [
            {"state": {}, "param_groups": [dict(adamw, params=list(range(len(state_dict))))]}
        ],
        "lr_schedulers": [],
    }


class _Pickler(pickle.Pickler):
    """torch.save's pickling, with every storage tagged `location` and kept for the zip records."""

    def __init__(self, file: io.BytesIO, location: str):
        super().__init__(file, protocol=2)
        self.location = location
        self.records: dict[str, torch.UntypedStorage] = {}
        self.keys: dict[int, str] = {}

    def persistent_id(self, obj: object) -> tuple | None:
        if not isinstance(obj, torch.TypedStorage):
            return None
        with warnings.catch_warnings():  # torch.save itself still goes through TypedStorage
            warnings.simplefilter("ignore", UserWarning)
            raw = obj.untyped()
        if raw.data_ptr() not in self.keys:
            key = str(len(self.keys))
            self.keys[raw.data_ptr()] = key
            self.records[key] = raw
        return ("storage", _STORAGE_CLASSES[obj.dtype], self.keys[raw.data_ptr()], self.location, obj.size())


@contextlib.contextmanager
def _importable(classes: list[type]):
    """Make the stand-ins findable under their module names while pickling (pickle checks that)."""
    added = []
    for cls in classes:
        parts = cls.__module__.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        setattr(sys.modules[cls.__module__], cls.__qualname__, cls)
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


def save_zip_checkpoint(
    obj: object, path: str | Path, location: str = "cuda:0", prefix: str = "archive/"
) -> None:
    """Write `obj` in torch's zip format, storages tagged `location`, records under `prefix`."""
    buffer = io.BytesIO()
    with _importable(LIGHTNING_GLOBALS):
        pickler = _Pickler(buffer, location)
        pickler.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}data.pkl", buffer.getvalue())
        archive.writestr(f"{prefix}byteorder", "little")
        for key, storage in pickler.records.items():
            with archive.open(f"{prefix}data/{key}", "w", force_zip64=True) as record:
                record.write(torch.empty(0, dtype=torch.uint8).set_(storage).numpy().data)
        archive.writestr(f"{prefix}version", "3\n")
