"""Hugging Face Hub packaging shared by every hififace model class.

`HubMixin` is `huggingface_hub.PyTorchModelHubMixin` with two changes:

- weights load **strictly**: a missing, unexpected or wrongly shaped tensor raises
  `CheckpointError` naming the tensors (the upstream mixin defaults to `strict=False`);
- only `model.safetensors` is read; a pickled `pytorch_model.bin` is refused;
- a local folder loads without initialising the model first: it is built on the meta device and
  takes copies of the file's tensors, which saves the seconds a random initialisation of 150 M
  values costs (`hififace swap` starts that much sooner).
- `config.json` is checked before the model is built: a value of the wrong type raises
  `CheckpointError` naming the field;
- `save_pretrained` writes a new folder beside the target and swaps it in whole, so a failure at
  any moment (disk full, interrupt) leaves the previous model folder loadable.
"""

from __future__ import annotations

import json
import os
import shutil
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from hififace.atomic import atomic_folder

_MAX_LISTED = 8
# files that save_pretrained writes; any other file of an existing folder is carried into the new one
_MODEL_FILES = {"config.json", "model.safetensors", "README.md"}
# keyword arguments of `_from_pretrained` that are about downloading, not about building the model
_HUB_DOWNLOAD_ARGS = {
    "revision", "cache_dir", "force_download", "proxies", "resume_download", "local_files_only", "token",
}  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint does not match the model it is loaded into."""


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """Describe how `state_dict` differs from `model.state_dict()`, or return None when it fits exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} of the wrong shape: {_listed(wrong_shape)}")
    return "; ".join(problems) or None


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "", assign: bool = False
) -> None:
    """Load `state_dict` into `model`, raising `CheckpointError` unless names and shapes match exactly.

    `assign=True` makes the model's parameters and buffers the given tensors themselves (needed for
    a model built on the meta device) instead of copying into the existing ones.
    """
    problem = state_dict_mismatch(model, state_dict)
    if problem:
        where = f" from {source}" if source else ""
        raise CheckpointError(f"cannot load {type(model).__name__}{where}: {problem}")
    model.load_state_dict(state_dict, strict=True, assign=assign)


def has_meta_tensors(model: nn.Module) -> bool:
    """Whether any parameter, buffer or plain tensor attribute of `model` is still on the meta device."""
    for module in model.modules():
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
        if any(t.is_meta for t in tensors):
            return True
    return False


def _fits(value: object, hint: object) -> bool:
    """Whether a JSON value fits a constructor's type hint (int, float, str, bool, None, lists, unions)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None) or hint is None:
        return value is None
    if hint is float:  # JSON writes 1.0 as 1
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        return all(_fits(v, inner[0]) for v in value) if len(inner) == 1 else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this check does not know: the constructor decides


def check_config(cls: type, config: Mapping[str, object], source: str = "config.json") -> None:
    """Raise `CheckpointError` naming the first field of `config` whose value does not fit `cls.__init__`.

    Args:
        cls (type): the model class whose constructor the config feeds.
        config (mapping): the decoded config values.
        source (str, default "config.json"): what to call the config in the message.
    """
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: nothing to check against
        return
    for name, value in config.items():
        if name in hints and not _fits(value, hints[name]):
            hint = getattr(hints[name], "__name__", None) or str(hints[name]).replace("typing.", "")
            raise CheckpointError(
                f"{source}: field {name!r} is {value!r} ({type(value).__name__}); {cls.__name__} needs {hint}"
            )


def _read_config(folder: str) -> None:
    """Fail with one line when a local folder's config.json is not a JSON object."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} must hold a JSON object, not {type(config).__name__}")


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link (or copy) the files of `old` that save_pretrained does not write into `new`."""
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name in _MODEL_FILES or entry.name.startswith("."):
            continue
        if entry.is_dir():
            shutil.copytree(entry, new / entry.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    try:
        os.link(src, dst)  # instant, and the old folder's copy is deleted right after anyway
    except OSError:
        shutil.copy2(src, dst)


MODEL_CARD_TEMPLATE = """
---
{{ card_data }}
---

# {{ model_name | default("hififace model", true) }}

{{ description | default("A model of the hififace project.", true) }}

- Paper: HifiFace: 3D Shape and Semantic Prior Guided High Fidelity Face Swapping
  (Wang et al., IJCAI 2021), {{ paper_url }}
- Code: {{ repo_url }}
- Licence of these weights: {{ weights_license | default("not stated", true) }}
- Where the weights come from: {{ weights_source | default("initialised by the hififace code (not trained)", true) }}

Load it with the `hififace` package:

```python
from hififace import {{ class_name | default("HifiFace", true) }}
model = {{ class_name | default("HifiFace", true) }}.from_pretrained("path/or/repo-id")
```

Face swapping can deceive. Use it only with the consent of the people shown, label the results as
synthetic, and follow the law where you are.
"""

PAPER_URL = "https://arxiv.org/abs/2106.09965"
REPO_URL = "https://github.com/hififace/hififace"


INSIGHTFACE_LICENSE_LINK = "https://github.com/deepinsight/insightface#license"
_INSIGHTFACE_PART = (
    "its ArcFace identity network (F_id) was trained by insightface, whose pretrained models are for "
    "non-commercial research only, so these weights as a whole are not for commercial use"
)


@dataclass(frozen=True)
class WeightsLicense:
    """How a model card states the licence of its weights.

    Args:
        license (str): the Hub's licence id ("mit", "bsd-3-clause", ...) or "other".
        text (str): the licence in words, naming any non-commercial part and why (the card's body).
        name (str, None): `license_name` when `license` is "other" (a short slug).
        link (str, None): `license_link` when `license` is "other".
    """

    license: str
    text: str
    name: str | None = None
    link: str | None = None


# Per source of weights (the `hififace convert` source names, "trained" for our own training runs).
# Every complete HifiFace holds an ArcFace prior from insightface: none of them is plain "mit".
WEIGHTS_LICENSES: dict[str, WeightsLicense] = {
    "hififace-pytorch": WeightsLicense(
        "other",
        "the generator is MIT, as the HiFiFace-pytorch release; " + _INSIGHTFACE_PART,
        "mit-with-insightface-arcface-non-commercial",
        INSIGHTFACE_LICENSE_LINK,
    ),
    "maum-ai": WeightsLicense(
        "other",
        "the generator is BSD-3-Clause, as maum-ai/hififace; " + _INSIGHTFACE_PART,
        "bsd-3-clause-and-insightface-non-commercial",
        "https://github.com/maum-ai/hififace/blob/main/LICENSE",
    ),
    "trained": WeightsLicense(
        "other",
        "the generator was trained with the hififace code (MIT); " + _INSIGHTFACE_PART,
        "mit-with-insightface-arcface-non-commercial",
        INSIGHTFACE_LICENSE_LINK,
    ),
    "arcface": WeightsLicense(
        "other",
        "insightface's pretrained models are for non-commercial research only (the arcface_torch code is MIT)",
        "insightface-non-commercial-research",
        INSIGHTFACE_LICENSE_LINK,
    ),
    "deep3d": WeightsLicense("mit", "MIT, as the Deep3DFaceRecon_pytorch release"),
    "bisenet": WeightsLicense("mit", "MIT, as the face-parsing.PyTorch release (trained on CelebAMask-HQ)"),
    "bfm": WeightsLicense(
        "other",
        "Basel Face Model licence (https://faces.dmi.unibas.ch/bfm/): do not share",
        "basel-face-model",
        "https://faces.dmi.unibas.ch/bfm/",
    ),
}
# Card kwargs that go into the card's YAML metadata rather than into its text.
CARD_DATA_FIELDS = ("license", "license_name", "license_link", "base_model", "datasets")


def card_metadata(
    source: str, base_model: str | list[str] | None = None, datasets: list[str] | None = None
) -> dict[str, Any]:
    """`model_card_kwargs` that state the licence, base model and data sets of weights from `source`.

    Args:
        source (str): a key of `WEIGHTS_LICENSES` ("hififace-pytorch", "maum-ai", "trained", ...).
        base_model (str or list[str], None): Hub repo id(s) the weights were fine-tuned or
            converted from; None when they come from outside the Hub.
        datasets (list[str], None): Hub data set ids the weights were trained on, when known.
    """
    if source not in WEIGHTS_LICENSES:
        raise ValueError(f"unknown source of weights {source!r}; known: {', '.join(WEIGHTS_LICENSES)}")
    terms = WEIGHTS_LICENSES[source]
    meta: dict[str, Any] = {"license": terms.license, "weights_license": terms.text}
    if terms.license == "other":
        meta.update(license_name=terms.name, license_link=terms.link)
    if base_model:
        meta["base_model"] = base_model
    if datasets:
        meta["datasets"] = list(datasets)
    return meta


def looks_like_path(name: str | os.PathLike) -> bool:
    """Whether `name` is meant as a local path rather than a Hub repo id ("owner/name").

    The one rule of hififace for "local folder or Hub id" (`HubMixin.from_pretrained`,
    `HifiFacePipeline.from_pretrained`, the app, the CLI). True for anything that exists on disk,
    for absolute, home and explicitly relative paths, for more than one "/", and when its first
    component is an existing local folder that is not a Python package (`models/hififace-256` next
    to a `models/` folder). A package folder does not count: inside a Space, whose root holds the
    `hififace/` package, "hififace/hififace-256" is still the Hub repository.
    """
    name = os.fspath(name)
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1:
        return True
    if "/" not in name:
        return False
    first = name.split("/", 1)[0]
    return os.path.isdir(first) and not os.path.isfile(os.path.join(first, "__init__.py"))


class HubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` that loads safetensors only, and strictly, and writes hififace's card."""

    def __init_subclass__(cls, **kwargs) -> None:
        kwargs.setdefault("library_name", "hififace")
        kwargs.setdefault("repo_url", REPO_URL)
        kwargs.setdefault("paper_url", PAPER_URL)
        kwargs.setdefault("model_card_template", MODEL_CARD_TEMPLATE)
        super().__init_subclass__(**kwargs)

    def generate_model_card(self, *args, **kwargs):
        kwargs.setdefault("class_name", type(self).__name__)
        kwargs.setdefault("model_name", f"hififace {type(self).__name__}")
        kwargs.setdefault("description", (type(self).__doc__ or "").strip().split("\n\n")[0])
        kwargs.setdefault("weights_license", self._hub_mixin_info.model_card_data.license)
        # Licence, base model and data sets given per save (`card_metadata`) go into the YAML header.
        metadata = {key: kwargs.pop(key) for key in CARD_DATA_FIELDS if kwargs.get(key) is not None}
        card = super().generate_model_card(*args, **kwargs)
        if metadata.get("license", "other") != "other":
            card.data.license_name = card.data.license_link = None  # the class's "other" terms no longer hold
        for key, value in metadata.items():
            setattr(card.data, key, value)
        return card

    def save_pretrained(self, save_directory, *, push_to_hub: bool = False, repo_id=None, **kwargs):
        """Write the model folder atomically: into a folder beside it, then swapped in whole.

        Takes the arguments of `PyTorchModelHubMixin.save_pretrained`. Files of an existing folder
        that are not the model's own (config.json, model.safetensors, README.md) are kept. Until
        the swap the previous folder stays as it was, so a failed write (disk full, interrupt)
        never leaves a folder that does not load.
        """
        target = Path(save_directory)
        with atomic_folder(target) as tmp:
            _carry_over(target, tmp)
            super().save_pretrained(tmp, **kwargs)
        if push_to_hub:  # upstream's push_to_hub stages through save_pretrained: atomic as well
            push = {k: v for k, v in kwargs.items() if k not in ("config", "model_card_kwargs")}
            return self.push_to_hub(
                repo_id=repo_id or target.name,
                config=kwargs.get("config"),
                model_card_kwargs=kwargs.get("model_card_kwargs"),
                **push,
            )
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load from a local folder or a Hub repo id; a path that is not a folder fails at once."""
        name = os.path.expanduser(str(pretrained_model_name_or_path))
        if not os.path.isdir(name) and looks_like_path(name):
            raise CheckpointError(f"no model folder at {name}")
        if os.path.isdir(name):
            _read_config(name)
        return super().from_pretrained(name, *args, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        map_location: str = "cpu",
        strict: bool = False,
        memory_format: torch.memory_format | None = None,
        **kwargs,
    ):
        # A local folder loads here, quietly; a Hub id goes through huggingface_hub's download path.
        # `memory_format` (from_pretrained(..., memory_format=torch.channels_last)) lays the 4-D
        # weights out as the caller will run them, in the one copy loading makes anyway.
        if not os.path.isdir(model_id):
            model = super()._from_pretrained(
                model_id=model_id, map_location=map_location, strict=strict, **kwargs
            )
            return model if memory_format is None else model.to(memory_format=memory_format)
        model_kwargs = {k: v for k, v in kwargs.items() if k not in _HUB_DOWNLOAD_ARGS}
        source = os.path.join(model_id, "config.json")
        check_config(cls, model_kwargs, source)
        weights = os.path.join(model_id, "model.safetensors")
        try:
            return cls._load_on_meta(model_kwargs, weights, map_location, strict, memory_format)
        except CheckpointError:
            raise
        except (TypeError, ValueError) as error:  # a value of the right type out of range
            raise CheckpointError(f"{source} does not build a {cls.__name__}: {error}") from None

    @classmethod
    def _load_on_meta(
        cls,
        model_kwargs: dict,
        model_file: str,
        map_location: str,
        strict: bool,
        memory_format: torch.memory_format | None = None,
    ):
        """Build the model without initialising it (meta device), then take the file's tensors."""
        from safetensors.torch import load_file

        if not os.path.isfile(model_file):
            raise CheckpointError(f"no weights file: {model_file} does not exist")
        with torch.device("meta"):
            model = cls(**model_kwargs)
        # Copies, not the memory-mapped tensors themselves: convolutions over the mapped (unaligned)
        # memory round differently, which moved swapped pixels by one 8-bit level.
        state_dict = {
            k: v.clone(
                memory_format=memory_format if memory_format and v.dim() == 4 else torch.preserve_format
            )
            for k, v in load_file(model_file, device=str(map_location)).items()
        }
        load_state_dict_strict(model, state_dict, source=model_file, assign=True)
        if has_meta_tensors(model):  # a tensor made in __init__ that the file does not hold: build normally
            model = cls._load_as_safetensor(cls(**model_kwargs), model_file, map_location, strict)
            return model if memory_format is None else model.to(memory_format=memory_format)
        model.eval()
        return model

    @classmethod
    def _load_as_safetensor(cls, model, model_file: str, map_location: str, strict: bool):
        from safetensors.torch import load_file

        if not os.path.isfile(model_file):
            raise CheckpointError(f"no weights file: {model_file} does not exist")
        load_state_dict_strict(model, load_file(model_file, device=str(map_location)), source=model_file)
        model.eval()
        return model

    @classmethod
    def _load_as_pickle(cls, model, model_file: str, map_location: str, strict: bool):
        raise CheckpointError(
            f"{model_file} is a pickle; hififace loads model.safetensors only. "
            "Convert other checkpoints with `hififace convert`."
        )
