"""The pipeline settings saved beside a model (`pipeline.json`), read without torch.

`HifiFacePipeline.save_pretrained` writes them and `HifiFacePipeline.from_pretrained` applies them.
`saved_settings` lets a command see them before it imports torch. For example, `hififace swap`
starts its detector in a child process first, and that detector must be the one the model folder
names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hififace.errors import ModelLoadError

PIPELINE_SETTINGS = "pipeline.json"


def read_settings_file(file: str | os.PathLike) -> dict[str, Any]:
    """The JSON object of a `pipeline.json` file.

    Raises:
        ModelLoadError: the file cannot be read or is not JSON.
    """
    try:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the pipeline settings {file}: {e}") from e


def saved_settings(
    model: str | os.PathLike, revision: str | None = None, cache_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The saved settings of a model folder, or of a Hub repository already in the local cache
    (`cache_dir`, default huggingface_hub's).

    Nothing is downloaded. Returns {} when the model has no `pipeline.json`, when a Hub repository
    is not cached, or when the file cannot be read. Loading the model reports the problem.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        file: str | os.PathLike | None = folder / PIPELINE_SETTINGS
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            file = try_to_load_from_cache(
                os.fspath(model), PIPELINE_SETTINGS, cache_dir=cache_dir, revision=revision
            )
        except Exception:  # not a repository id, or no cache: the model's loading says what is wrong
            return {}
    if not isinstance(file, (str, os.PathLike)) or not Path(file).is_file():
        return {}
    try:
        settings = read_settings_file(file)
    except ModelLoadError:
        return {}
    return settings if isinstance(settings, dict) else {}
