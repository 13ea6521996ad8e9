"""`hififace swap` on an image and a folder, with a tiny model saved here; errors as one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import shipped_photos, tiny_model_dir
from PIL import Image as PILImage

from hififace.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return shipped_photos(tmp_path_factory.mktemp("photos"), coffee="coffee.jpg")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["swap", "--detector", "dlib", "--device", "cpu", "--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_swap_an_image_with_the_model_from_the_environment(photos, model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HIFIFACE_MODEL", str(model_dir))
    out = tmp_path / "swapped.png"
    steps = tmp_path / "steps"
    code, stdout, err = run(
        capsys,
        "--source", str(photos["astronaut"]),
        "--target", str(photos["group"]),
        "--output", str(out),
        "--face", "1",
        "--save-intermediates", str(steps),
    )  # fmt: skip
    assert code == 0, err
    assert "1 face(s) swapped" in stdout
    with PILImage.open(out) as swapped, PILImage.open(photos["group"]) as target:
        assert swapped.size == target.size
        assert swapped.text["ai_generated"] == "true"
    assert sorted(p.name for p in steps.iterdir()) == sorted(
        f"face0_{n}.png"
        for n in ("source_crop", "target_crop", "image_out", "image", "image_low", "mask", "mask_low")
        + ("mask_model", "mask_box", "paste_mask")  # the paste-back masks composite used
    )


def test_swap_a_folder_keeps_going_past_a_faceless_image(photos, model_dir, tmp_path, capsys):
    targets = tmp_path / "targets"
    targets.mkdir()
    shutil.copy(photos["astronaut"], targets / "a.png")
    shutil.copy(photos["coffee"], targets / "b.jpg")
    (targets / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "--source",
        str(photos["astronaut"]),
        "--target",
        str(targets),
        "--output",
        str(out),
        "--model",
        str(model_dir),
    )
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]
    assert f"skipped {targets / 'b.jpg'}: no face found in the target image" in err
    assert (
        err.strip().splitlines()[-1]
        == "hififace: error: 1 of 2 targets failed (see above); the others were written"
    )

    with PILImage.open(out / "a.png") as swapped:
        assert swapped.size == (512, 512) and swapped.text["ai_generated"] == "true"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--output", "{tmp}/o.png"],
            "no model: pass --model DIR_OR_REPO or set HIFIFACE_MODEL; convert the public release",
        ),
        (["--output", "{tmp}/o.png", "--model", "{tmp}/none"], "model folder {tmp}/none does not exist"),
        (
            ["--output", "{tmp}/o.mp4", "--model", "{model}"],
            "--output {tmp}/o.mp4: an image is written as .png, .jpg or .webp",
        ),
        (
            ["--output", "{tmp}/o.png", "--model", "{model}", "--face", "reference"],
            "--face reference needs --reference IMAGE",
        ),
    ],
)
def test_errors_end_in_one_line(photos, model_dir, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("HIFIFACE_MODEL", raising=False)
    fill = {"tmp": str(tmp_path), "model": str(model_dir)}
    args = [a.format(**fill) for a in args]
    code, _, err = run(
        capsys, "--source", str(photos["astronaut"]), "--target", str(photos["astronaut"]), *args
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hififace: error: "), err
    assert message.format(**fill) in lines[0]
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- masks, several sources, mapping, enhancer


def test_swap_with_masks_two_source_photos_and_a_face_mapping(photos, model_dir, tmp_path, capsys):
    out = tmp_path / "masked.png"
    code, stdout, err = run(
        capsys, "--model", str(model_dir), "--source", str(photos["astronaut"]), "--source",
        str(photos["astronaut"]), "--target", str(photos["astronaut"]), "--output", str(out),
        "--mask", "model,box", "--mask-padding", "0.1,0.05,0.05,0.05", "--save-intermediates", str(tmp_path / "parts"),
    )  # fmt: skip
    assert code == 0, err
    assert out.is_file() and (tmp_path / "parts" / "face0_mask_box.png").is_file()
    with PILImage.open(tmp_path / "parts" / "face0_mask_box.png") as box:
        assert box.getpixel((0, 0)) == (0, 0, 0) and box.getpixel((128, 128)) == (255, 255, 255)

    # the astronaut's own face as the reference: she receives the (same) source, through --map
    mapped = tmp_path / "mapped.png"
    code, stdout, err = run(
        capsys, "--model", str(model_dir), "--map", f"{photos['astronaut']}={photos['astronaut']}",
        "--target", str(photos["astronaut"]), "--output", str(mapped),
    )  # fmt: skip
    assert code == 0, err
    assert "1 face(s) swapped" in stdout
    with PILImage.open(mapped) as a, PILImage.open(out) as b:
        assert a.size == b.size


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "{astronaut}", "--mask", "model,region"], "hififace convert bisenet"),
        (["--source", "{astronaut}", "--mask", "model,box,nose"], "unknown mask 'nose'"),
        (["--source", "{astronaut}", "--regions", "skin,teeth"], "unknown region 'teeth'"),
        (["--source", "{astronaut}", "--mask-padding", "a,b"], "--mask-padding a,b: give 1 or 4"),
        (["--map", "{astronaut}={coffee}"], "no face found in the reference image {coffee}"),
        (["--map", "{astronaut}"], "--map {astronaut}: write it as SOURCE=REFERENCE"),
        (["--source", "{astronaut}", "--map", "{astronaut}={astronaut}"], "either --source or --map"),
        ([], "give --source IMAGE"),
        (
            ["--source", "{astronaut}", "--enhancer", "{tmp}/weights.pth"],
            "enhancer {tmp}/weights.pth is not a network",
        ),
        (["--source", "{astronaut}", "--source", "{coffee}"], "no face found in the source image {coffee}"),
    ],
)
def test_quality_option_errors_are_one_line_and_write_nothing(
    photos, model_dir, tmp_path, capsys, args, message
):
    import torch

    torch.save({"weight": torch.zeros(3)}, tmp_path / "weights.pth")
    fill = {"tmp": str(tmp_path), "astronaut": str(photos["astronaut"]), "coffee": str(photos["coffee"])}
    args = [a.format(**fill) for a in args]
    code, _, err = run(
        capsys,
        "--model",
        str(model_dir),
        "--target",
        str(photos["astronaut"]),
        "--output",
        str(tmp_path / "o.png"),
        *args,
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hififace: error: "), err
    assert message.format(**fill) in lines[0], lines[0]
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- start-up (issue 16: a fast command)

# Modules a one-photo swap never needs; each costs from a tenth of a second to a second to import.
NOT_ON_THE_SWAP_PATH = (
    "torchvision", "kornia", "scipy", "skimage", "insightface", "onnxruntime", "gradio", "accelerate",
    "matplotlib", "sklearn", "pandas", "lpips", "av",
)  # fmt: skip

_SWAP_AND_LIST_MODULES = """
import json, sys
from hififace import cli
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_a_swap_imports_only_what_it_needs(photos, model_dir, tmp_path):
    import json
    import subprocess
    import sys

    parsed = subprocess.run(
        [sys.executable, "-c", "import sys; from hififace.cli import build_parser; "
         "build_parser().parse_args(['swap', '--source', 'a.png', '--target', 'b.png', '--output', 'c.png']); "
         "print(sorted({m.split('.')[0] for m in sys.modules}))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for heavy in ("torch", "numpy", "cv2", "PIL", "dlib", *NOT_ON_THE_SWAP_PATH):
        assert f"'{heavy}'" not in parsed.stdout, f"parsing a swap command imports {heavy}"

    out = tmp_path / "o.png"
    command = ["swap", "--model", str(model_dir), "--source", str(photos["astronaut"]), "--target",
               str(photos["astronaut"]), "--output", str(out), "--detector", "dlib", "--no-progress"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _SWAP_AND_LIST_MODULES, *command], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and out.is_file(), done.stderr
    assert not set(NOT_ON_THE_SWAP_PATH) & set(report["modules"])


def test_the_module_command_exits_with_its_code_and_flushed_output(photos, model_dir, tmp_path):
    """`python -m hififace` leaves without the interpreter's teardown (`cli.run`): nothing is lost."""
    import subprocess
    import sys

    out = tmp_path / "o.png"
    swap = ["swap", "--model", str(model_dir), "--source", str(photos["astronaut"]), "--detector", "dlib",
            "--no-progress", "--output", str(out)]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "hififace", *swap, "--target", str(photos["astronaut"])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and out.is_file(), done.stderr
    assert "face(s) swapped" in done.stdout  # printed just before the exit: flushed into the pipe
    failed = subprocess.run(
        [sys.executable, "-m", "hififace", *swap, "--target", str(tmp_path / "missing.png")],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1].startswith("hififace: error:")
