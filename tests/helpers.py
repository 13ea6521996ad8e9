"""Small things many tests share: the tiny model and the photos that ship in installed packages."""

import importlib.util
from pathlib import Path

import pytest
import torch

from hififace import HifiFace

# A narrow generator with small priors: ArcFace IResNet-18, and the 3DMM regressor (still a
# ResNet-50) seeing 64-px inputs. Fast on a CPU; the plumbing is real, the weights random.
TINY = dict(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64)


def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HifiFace saved with save_pretrained, built once per test session."""
    folder = tmp_path_factory.getbasetemp() / "tiny-hififace"
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        HifiFace(**TINY).save_pretrained(folder)
    return folder


def insightface_photo(name: str = "t1.jpg") -> Path:
    """A photo that ships inside the insightface package (t1.jpg: six people)."""
    spec = importlib.util.find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "images" / name if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip(f"insightface's {name} is not installed")
    return path


def shipped_photos(folder: Path, coffee: str = "coffee.png") -> dict[str, Path]:
    """The astronaut (one face) and a coffee cup (no face) saved into `folder`, and t1.jpg (six faces)."""
    from PIL import Image
    from skimage import data

    paths = {"astronaut": folder / "astronaut.png", "coffee": folder / coffee}
    Image.fromarray(data.astronaut()).save(paths["astronaut"])
    Image.fromarray(data.coffee()).save(paths["coffee"])
    paths["group"] = insightface_photo("t1.jpg")
    return paths


def place_in_hub_cache(cache_dir: Path, repo_id: str, folder: Path, commit: str, refs=("main",)) -> Path:
    """Copy a model folder into a Hugging Face cache as the model repo `repo_id` at `commit`.

    The layout is huggingface_hub's (models--OWNER--NAME/refs, snapshots/COMMIT): offline
    (`local_files_only=True` or HF_HUB_OFFLINE=1) it resolves `repo_id` at `refs` or `commit`.
    """
    import shutil

    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return repo
