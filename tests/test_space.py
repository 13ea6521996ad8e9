"""`hififace space` writes a Space that starts from its own folder alone, with its model from a Hub cache."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import yaml
from helpers import TINY, place_in_hub_cache, shipped_photos
from PIL import Image as PILImage

from hififace import HifiFace
from hififace.cli import main
from hififace.convert import save_converted
from hififace.space import front_matter, gpu_seconds, parse_model

CHROMIUM = Path("/usr/bin/chromium")
REPO = "someone/tiny-hififace"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def read_front_matter(folder: Path) -> dict:
    return yaml.safe_load((folder / "README.md").read_text(encoding="utf-8").split("---")[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> dict:
    """A tiny converted model as a Hub repo in a fresh HF_HOME, and the Space written for it."""
    root = tmp_path_factory.mktemp("space")
    torch.manual_seed(0)
    (root / "generator.pth").write_bytes(b"stands for the release file: only hashed for the card")
    save_converted(
        HifiFace(**TINY),
        root / "model",
        root / "generator.pth",
        command="hififace-pytorch",
        description="tiny",
    )
    # dlib: the test is offline, so insightface's detector pack cannot be fetched
    (root / "model" / "pipeline.json").write_text(json.dumps({"detector": "dlib", "mask_blur": 8}))
    place_in_hub_cache(root / "hf-home" / "hub", REPO, root / "model", COMMIT)
    assert main(["space", str(root / "Space"), "--model", f"{REPO}@{COMMIT}", "--hardware", "cpu-basic"]) == 0
    return {"folder": root / "Space", "hf_home": root / "hf-home", "root": root}


@pytest.fixture(scope="module")
def space_env(space) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "GRADIO_", "HIFIFACE_"))}
    env.update(HF_HOME=str(space["hf_home"]), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    return env


@pytest.fixture(scope="module")
def space_url(space, space_env):
    """`python app.py` in the Space folder (not the repository), as the Space runs it."""
    port = free_port()
    env = {**space_env, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    log = open(space["root"] / "app.log", "w")  # noqa: SIM115 (closed at teardown)
    app = subprocess.Popen([sys.executable, "app.py"], cwd=space["folder"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert app.poll() is None, (space["root"] / "app.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Space did not start in 180 s"
                time.sleep(1)
        yield url
    finally:
        app.terminate()
        app.wait(timeout=30)
        log.close()


def test_space_folder_is_complete_and_self_contained(space, space_env):
    folder = space["folder"]
    assert {p.name for p in folder.iterdir()} == {
        "README.md",
        "app.py",
        "hififace_app.py",
        "hififace",
        "requirements.txt",
    }
    config = read_front_matter(folder)
    assert config["app_file"] == "app.py" and (folder / config["app_file"]).is_file()
    assert config["sdk"] == "gradio" and config["sdk_version"] == __import__("gradio").__version__
    assert config["models"] == [REPO]
    assert config["preload_from_hub"] == [f"{REPO} config.json,model.safetensors,pipeline.json {COMMIT}"]
    assert config["license"] == "other" and "insightface" in config["license_link"]
    assert len(config["short_description"]) <= 60 and config["suggested_hardware"] == "cpu-basic"
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements and "av" in " ".join(requirements)
    # The package imported from the Space folder is its own copy, not the repository's.
    where = subprocess.run(
        [sys.executable, "-c", "import hififace; print(hififace.__file__)"],
        cwd=folder, env=space_env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).resolve() == (folder / "hififace" / "__init__.py").resolve()


def test_front_matter_fits_the_hardware():
    zero = front_matter(REPO, None, "zero-a10g", "6.0.0")
    assert zero["python_version"] in ("3.10", "3.12")  # the only ones ZeroGPU accepts
    assert zero["suggested_hardware"] == "zero-a10g" and zero["preload_from_hub"][0].startswith(f"{REPO} ")
    # a branch or tag cannot be preloaded (preload_from_hub takes commits): the app fetches it
    assert "preload_from_hub" not in front_matter(REPO, "v1", "t4-small", "6.0.0")
    assert "models" not in front_matter(None, None, "cpu-basic", "6.0.0")
    with pytest.raises(ValueError, match="unknown hardware 'a100'"):
        front_matter(REPO, None, "a100", "6.0.0")
    assert parse_model(f"{REPO}@v1") == (REPO, "v1") and parse_model(REPO) == (REPO, None)
    with pytest.raises(ValueError, match="must be a Hub model repo"):
        parse_model("./models/hififace-256")


def test_zero_gpu_duration_follows_the_work():
    image, clip, long_video = gpu_seconds(1), gpu_seconds(frames=100), gpu_seconds(frames=3000, faces=4)
    assert image == 20 < clip < long_video <= 600
    assert gpu_seconds(frames=100, faces=4) > clip
    with pytest.raises(ValueError, match="frames and faces must be >= 1"):
        gpu_seconds(frames=0)


def test_writing_into_a_folder_with_files_is_refused(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("x")
    assert main(["space", str(tmp_path)]) == 1
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_started_space_swaps_through_gradio_client(space_url, space):
    from gradio_client import Client, handle_file

    photos = shipped_photos(space["root"])
    client = Client(space_url, verbose=False)
    result = client.predict(
        handle_file(photos["astronaut"]), handle_file(photos["astronaut"]), api_name="/swap_image"
    )
    with PILImage.open(result[0] if isinstance(result, (list, tuple)) else result) as swapped:
        assert swapped.size == (512, 512) and swapped.text["ai_generated"] == "true"


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_started_space_opens_in_chromium(space_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page()
            page.goto(space_url)
            expect(page.locator("#responsible-use")).to_contain_text("Use responsibly")
            expect(page.locator("#swap-image")).to_be_visible()
            expect(page.locator("#no-model")).to_have_count(0)  # the model loaded from the cache
            # the detector came from the repo's pipeline.json (the app's default is the saved one)
            assert "DlibDetector(" in page.content()
        finally:
            browser.close()
