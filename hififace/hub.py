"""Hugging Face Hub packaging shared by every hififace model class.

`HubMixin` is `huggingface_hub.PyTorchModelHubMixin` with two changes:

- weights load **strictly**: a missing, unexpected or wrongly shaped tensor raises
  `CheckpointError` naming the tensors (the upstream mixin defaults to `strict=False`);
- only `model.safetensors` is read; a pickled `pytorch_model.bin` is refused;
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
from pathlib import Path

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
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = ""
) -> None:
    """Load `state_dict` into `model`, raising `CheckpointError` unless names and shapes match exactly."""
    problem = state_dict_mismatch(model, state_dict)
    if problem:
        where = f" from {source}" if source else ""
        raise CheckpointError(f"cannot load {type(model).__name__}{where}: {problem}")
    model.load_state_dict(state_dict, strict=True)


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


def looks_like_path(name: str | os.PathLike) -> bool:
    """Whether `name` is meant as a local path rather than a Hub repo id ("owner/name").

    The one rule of hififace for "local folder or Hub id" (`HubMixin.from_pretrained`,
    `HifiFacePipeline.from_pretrained`). True for anything that exists on disk, for absolute, home
    and explicitly relative paths, for more than one "/", and when its first component is an
    existing local folder (`models/hififace-256` next to a `models/` folder).
    """
    name = os.fspath(name)
    if os.path.exists(os.path.expanduser(name)):
        return True
    if name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1:
        return True
    return "/" in name and os.path.isdir(name.split("/", 1)[0])


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
        return super().generate_model_card(*args, **kwargs)

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
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", strict: bool = False, **kwargs):
        # A local folder loads here, quietly; a Hub id goes through huggingface_hub's download path.
        if not os.path.isdir(model_id):
            return super()._from_pretrained(
                model_id=model_id, map_location=map_location, strict=strict, **kwargs
            )
        model_kwargs = {k: v for k, v in kwargs.items() if k not in _HUB_DOWNLOAD_ARGS}
        source = os.path.join(model_id, "config.json")
        check_config(cls, model_kwargs, source)
        try:
            model = cls(**model_kwargs)
        except (TypeError, ValueError) as error:  # a value of the right type out of range
            raise CheckpointError(f"{source} does not build a {cls.__name__}: {error}") from None
        weights = os.path.join(model_id, "model.safetensors")
        return cls._load_as_safetensor(model, weights, map_location, strict)

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
