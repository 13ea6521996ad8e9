"""Hugging Face Hub packaging shared by every hififace model class.

`HubMixin` is `huggingface_hub.PyTorchModelHubMixin` with two changes:

- weights load **strictly**: a missing, unexpected or wrongly shaped tensor raises
  `CheckpointError` naming the tensors (the upstream mixin defaults to `strict=False`);
- only `model.safetensors` is read; a pickled `pytorch_model.bin` is refused;
- a local folder loads without initialising the model first: it is built on the meta device and
  takes the file's tensors as they are (safetensors maps the file copy-on-write), which saves the
  seconds a random initialisation of 150 M values costs (`hififace swap` starts that much sooner).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

_MAX_LISTED = 8
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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load from a local folder or a Hub repo id; a path that is not a folder fails at once."""
        name = os.path.expanduser(str(pretrained_model_name_or_path))
        if not os.path.isdir(name) and looks_like_path(name):
            raise CheckpointError(f"no model folder at {name}")
        return super().from_pretrained(name, *args, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", strict: bool = False, **kwargs):
        # A local folder loads here, quietly; a Hub id goes through huggingface_hub's download path.
        if not os.path.isdir(model_id):
            return super()._from_pretrained(
                model_id=model_id, map_location=map_location, strict=strict, **kwargs
            )
        model_kwargs = {k: v for k, v in kwargs.items() if k not in _HUB_DOWNLOAD_ARGS}
        weights = os.path.join(model_id, "model.safetensors")
        return cls._load_on_meta(model_kwargs, weights, map_location, strict)

    @classmethod
    def _load_on_meta(cls, model_kwargs: dict, model_file: str, map_location: str, strict: bool):
        """Build the model without initialising it (meta device), then take the file's tensors."""
        from safetensors.torch import load_file

        if not os.path.isfile(model_file):
            raise CheckpointError(f"no weights file: {model_file} does not exist")
        with torch.device("meta"):
            model = cls(**model_kwargs)
        state_dict = load_file(model_file, device=str(map_location))
        load_state_dict_strict(model, state_dict, source=model_file, assign=True)
        if has_meta_tensors(model):  # a tensor made in __init__ that the file does not hold: build normally
            return cls._load_as_safetensor(cls(**model_kwargs), model_file, map_location, strict)
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
