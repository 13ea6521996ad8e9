"""The Gradio app on 127.0.0.1 with a tiny model: the /swap_image API, a real browser, the no-model page."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import shipped_photos, tiny_model_dir
from PIL import Image as PILImage
from skimage import data

from hififace.pipeline import HifiFacePipeline

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def load_app():
    spec = importlib.util.spec_from_file_location("hififace_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_module():
    return load_app()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return shipped_photos(tmp_path_factory.mktemp("app-photos"), coffee="coffee.png")


@pytest.fixture(scope="module")
def app_url(app_module, tmp_path_factory):
    model = tiny_model_dir(tmp_path_factory)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp_path_factory.mktemp("examples-cache"))
    port = free_port()
    demo = app_module.main(
        [
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--detector",
            "dlib",
            "--device",
            "cpu",
            "--mcp",
        ],
        block=False,
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_swap_image_api(app_url, photos):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    assert "/swap_image" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    result = client.predict(
        handle_file(photos["astronaut"]), handle_file(photos["group"]), api_name="/swap_image"
    )
    with PILImage.open(result) as swapped, PILImage.open(photos["group"]) as target:
        assert swapped.format == "PNG" and swapped.size == target.size
        assert swapped.text["ai_generated"] == "true"
    with pytest.raises(AppError, match="No face found in the source image"):
        client.predict(handle_file(photos["coffee"]), handle_file(photos["group"]), api_name="/swap_image")
    with pytest.raises(AppError, match="face index 7 is out of range"):
        client.predict(
            handle_file(photos["astronaut"]),
            handle_file(photos["astronaut"]),
            face="7",
            api_name="/swap_image",
        )
    with pytest.raises(AppError, match="has 1 face; face indices 2, 7 are out of range"):  # several faces
        client.predict(
            handle_file(photos["astronaut"]),
            handle_file(photos["astronaut"]),
            face="0,2,7",
            api_name="/swap_image",
        )


def table(rows: list[list[str]]) -> dict:
    """The face-mapping table as the API takes a Dataframe."""
    return {"headers": ["source file name", "reference file name"], "data": rows}


def test_swap_image_api_masks_sources_and_mapping(app_url, photos, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    astronaut = handle_file(photos["astronaut"])
    first = client.predict(
        astronaut, astronaut, masks=["model", "box"], mask_padding=0.2, more_sources=[astronaut],
        api_name="/swap_image",
    )  # fmt: skip
    with PILImage.open(first) as swapped:
        assert swapped.size == (512, 512)
    with pytest.raises(AppError, match="hififace convert bisenet"):  # no parser loaded
        client.predict(astronaut, astronaut, masks=["model", "region"], api_name="/swap_image")

    reference = tmp_path / "her.png"  # the astronaut's face again, as the reference
    PILImage.fromarray(data.astronaut()[:300, 100:400]).save(reference)
    result = client.predict(
        None, handle_file(photos["group"]), mapping=table([["astronaut.png", "her.png"]]),
        mapping_files=[astronaut, handle_file(reference)], api_name="/swap_image",
    )  # fmt: skip
    with PILImage.open(result) as swapped:
        assert swapped.size == PILImage.open(photos["group"]).size
    with pytest.raises(AppError, match="nobody.png is not among the uploaded mapping photos"):
        client.predict(
            None, astronaut, mapping=table([["nobody.png", "her.png"]]), mapping_files=[handle_file(reference)],
            api_name="/swap_image",
        )  # fmt: skip


def three_frame_clip(clip: Path) -> Path:
    """Three frames of the astronaut (256 x 256) at 10 fps."""
    import av
    import numpy as np

    frame = np.ascontiguousarray(data.astronaut()[::2, ::2])
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return clip


def test_swap_video_api(app_url, tmp_path):
    import av
    from gradio_client import Client, handle_file

    clip = three_frame_clip(tmp_path / "clip.mp4")
    source = tmp_path / "source.png"
    PILImage.fromarray(data.astronaut()).save(source)

    video, note = Client(app_url, verbose=False).predict(
        handle_file(source), handle_file(clip), api_name="/swap_video"
    )
    assert note.startswith("3 frames at 10 fps: 3 swapped, 0 without a face left unchanged")
    with av.open(video) as result:
        assert result.metadata["ai_generated"] == "true"
        assert sum(1 for _ in result.decode(video=0)) == 3


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_swaps_and_toggles_the_mask_without_rerunning(app_url, photos, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    runs = []
    swap = HifiFacePipeline.swap_faces  # the app's batched handler runs the generator through it
    monkeypatch.setattr(
        HifiFacePipeline, "swap_faces", lambda self, *a, **k: runs.append(1) or swap(self, *a, **k)
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(app_url)
            expect(page.locator("#responsible-use")).to_contain_text("Use responsibly")
            page.locator("#image-source input[type=file]").set_input_files(str(photos["astronaut"]))
            page.locator("#image-target input[type=file]").set_input_files(str(photos["group"]))
            expect(page.locator("#image-target img")).to_be_visible()
            page.locator("#swap-image").click()
            expect(page.locator("#image-result img")).to_be_visible(timeout=60_000)
            assert runs == [1]

            mask_view = page.locator("#view-mask")
            expect(mask_view).to_be_hidden()
            page.locator("#show-mask input[type=checkbox]").check()
            expect(page.locator("#view-mask img")).to_be_visible(timeout=10_000)
            page.locator("#show-mask_low input[type=checkbox]").check()
            expect(page.locator("#view-mask_low img")).to_be_visible(timeout=10_000)
            page.locator("#show-paste_mask input[type=checkbox]").check()  # the masks: same toggles
            expect(page.locator("#view-paste_mask img")).to_be_visible(timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "app-image-swap.png"), full_page=True)
            page.locator("#show-mask input[type=checkbox]").uncheck()
            expect(mask_view).to_be_hidden(timeout=10_000)
            expect(page.locator("#view-mask_low img")).to_be_visible()
            assert runs == [1]  # toggling showed the kept result; the model did not run again
        finally:
            browser.close()


def test_without_a_model_the_app_explains_how_to_get_one(app_module, tmp_path, monkeypatch):
    monkeypatch.delenv("HIFIFACE_MODEL", raising=False)
    port = free_port()
    demo = app_module.main(["--host", "127.0.0.1", "--port", str(port)], block=False)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            config = json.load(response)
    finally:
        demo.close()
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "hififace convert hififace-pytorch generator_<iter>.pth models/hififace-256" in texts
    assert "Traceback" not in texts
    assert not any(d.get("api_name") == "swap_image" for d in config["dependencies"])

    broken = app_module.create_app(str(tmp_path / "missing"))
    texts = " ".join(str(getattr(b, "value", "")) for b in broken.blocks.values())
    assert f"model folder {tmp_path / 'missing'} does not exist" in texts


def test_gpu_decorator_is_a_no_op_without_spaces(app_module):
    if app_module.spaces is not None:
        pytest.skip("the spaces package is installed")

    def f():
        return 1

    assert app_module.gpu(60)(f) is f


def test_mcp_server_offers_the_swap(app_url):
    with urllib.request.urlopen(f"{app_url}gradio_api/mcp/schema", timeout=30) as response:
        tools = {tool["name"]: tool for tool in json.load(response)}
    assert "swap_image" in tools
    assert {"source", "target", "face"} <= set(tools["swap_image"]["inputSchema"]["properties"])
    assert not any("live" in name for name in tools)  # the webcam stream is no tool


def fake_camera_clip(path: Path, frames: int = 10) -> Path:
    """A .y4m clip (320 x 240, 4:2:0) of the astronaut drifting, for Chromium's fake camera."""
    import cv2
    import numpy as np

    picture = cv2.resize(data.astronaut()[:384], (320, 240), interpolation=cv2.INTER_AREA)
    with path.open("wb") as out:
        out.write(b"YUV4MPEG2 W320 H240 F10:1 Ip A1:1 C420jpeg\n")
        for i in range(frames):
            out.write(
                b"FRAME\n" + cv2.cvtColor(np.roll(picture, i, axis=1), cv2.COLOR_RGB2YUV_I420).tobytes()
            )
    return path


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_live_tab_swaps_the_fake_camera(app_url, photos, tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    clip = fake_camera_clip(tmp_path / "camera.y4m")
    used = []  # the masks each live frame was pasted with (the app runs in this process)
    composite = HifiFacePipeline.composite
    monkeypatch.setattr(
        HifiFacePipeline,
        "composite",
        lambda self, *a, **k: used.append(k.get("masks")) or composite(self, *a, **k),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(app_url)
            page.get_by_role("tab", name="Live").click()
            readout = page.locator("#live-fps textarea")
            page.locator("#live-source input[type=file]").set_input_files(str(photos["coffee"]))
            expect(readout).to_have_value(re.compile("Cannot use the source: no face found"), timeout=30_000)
            page.locator("#live-source input[type=file]").set_input_files(str(photos["astronaut"]))
            expect(readout).to_have_value(re.compile("Source set"), timeout=60_000)
            page.get_by_text("Advanced: masks", exact=True).click()  # issue 10's masks, as on the Image tab
            masks = page.locator("#live-masks")
            masks.get_by_label("region").check()  # this app has no face parser: one clear message
            expect(readout).to_have_value(
                re.compile("Cannot use these options: .*face parser"), timeout=30_000
            )
            masks.get_by_label("region").uncheck()
            masks.get_by_label("box").uncheck()
            expect(readout).to_have_value(re.compile(r"Source set \(masks model\)"), timeout=30_000)
            page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
            page.locator("#live-camera button", has_text="Record").click()
            expect(readout).to_have_value(re.compile(r"fps · [1-9]\d* frames swapped"), timeout=90_000)
            expect(page.locator("#live-result img")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "app-live.png"), full_page=True)
        finally:
            browser.close()
    assert used and {m.types for m in used} == {("model",)}  # every live frame took the tab's masks


@contextlib.contextmanager
def group_photo_page(app_url: str, photos: dict[str, Path]) -> Iterator[tuple]:
    """The app in Chromium with the astronaut as source and t1.jpg as target, its faces in the gallery.

    Yields (page, the gallery's thumbnails, the target's pixels, the faces the app finds in it)."""
    from playwright.sync_api import expect, sync_playwright

    from hififace.faces import load_detector
    from hififace.imageio import load_image

    target = load_image(photos["group"])
    faces = load_detector("dlib").detect(target)  # what the app finds: t1.jpg is under 1600 px
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(app_url)
            page.locator("#image-source input[type=file]").set_input_files(str(photos["astronaut"]))
            page.locator("#image-target input[type=file]").set_input_files(str(photos["group"]))
            thumbnails = page.locator("#image-faces .thumbnail-item")
            expect(thumbnails).to_have_count(len(faces), timeout=60_000)
            yield page, thumbnails, target, faces
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_click_a_face_swaps_only_it_with_slider_and_closeups(app_url, photos):
    from playwright.sync_api import expect

    chosen = 2
    with group_photo_page(app_url, photos) as (page, thumbnails, target, faces):
        thumbnails.nth(chosen).click()
        expect(page.locator("#image-face input")).to_have_value(f"face {chosen + 1} from the left")
        page.locator("#swap-image").click()
        expect(page.locator("#image-result img")).to_be_visible(timeout=90_000)
        expect(page.locator("#image-slider img")).to_have_count(2, timeout=30_000)
        expect(page.locator("#image-closeups .thumbnail-item")).to_have_count(1, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-image-looking.png"), full_page=True)
        src = page.locator("#image-result img").get_attribute("src")
    assert_only_these_faces_changed(app_url, src, target, faces, [chosen])


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_click_several_faces_swaps_only_them(app_url, photos):
    from playwright.sync_api import expect

    with group_photo_page(app_url, photos) as (page, thumbnails, target, faces):
        assert len(faces) >= 4
        face_input = page.locator("#image-face input")
        for index, shown in ((3, "face 4 from the left"), (0, "faces 1, 4 from the left"),
                             (2, "faces 1, 3, 4 from the left"), (2, "faces 1, 4 from the left")):  # fmt: skip
            thumbnails.nth(index).click()  # the last click takes face 3 out again
            expect(face_input).to_have_value(shown, timeout=10_000)
        gallery = page.locator("#image-faces")
        expect(gallery).to_contain_text("✓ face 1: swapped", timeout=10_000)
        expect(gallery).to_contain_text("✓ face 4: swapped")
        expect(gallery.get_by_text("✓ face", exact=False)).to_have_count(2)
        page.locator("#swap-image").click()
        expect(page.locator("#image-closeups .thumbnail-item")).to_have_count(2, timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "app-image-several-faces.png"), full_page=True)
        src = page.locator("#image-result img").get_attribute("src")
    assert_only_these_faces_changed(app_url, src, target, faces, [0, 3])


def assert_only_these_faces_changed(app_url, src, target, faces, chosen: list[int]) -> None:
    """The result at `src` differs from `target` only near the `chosen` faces; the others are untouched."""
    import numpy as np

    with urllib.request.urlopen(urllib.parse.urljoin(app_url, src), timeout=30) as response:
        swapped = np.asarray(PILImage.open(io.BytesIO(response.read())).convert("RGB"))
    changed = np.argwhere(np.any(swapped != target, axis=2))
    near = np.zeros(len(changed), bool)
    for i in chosen:
        x1, y1, x2, y2 = faces[i].box
        margin = x2 - x1  # the aligned crop (forehead to chin) reaches beyond the detector's box
        inside = (changed[:, 1] >= x1 - margin) & (changed[:, 1] <= x2 + margin)
        inside &= (changed[:, 0] >= y1 - margin) & (changed[:, 0] <= y2 + margin)
        assert inside.any(), f"face {i} did not change"
        near |= inside
    assert near.all()  # nothing changed away from the chosen faces
    for i, face in enumerate(faces):  # every other face is left exactly as it was
        x1, y1, x2, y2 = (round(v) for v in face.box)
        assert i in chosen or np.array_equal(swapped[y1:y2, x1:x2], target[y1:y2, x1:x2])


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_browser_examples_are_cached_at_first_click(app_url):
    from playwright.sync_api import expect, sync_playwright

    cache = Path(os.environ["GRADIO_EXAMPLES_CACHE"])
    assert not any(p.is_file() for p in cache.rglob("*"))  # lazy: nothing computed at start
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(app_url)
            page.locator("table tbody tr").first.click()
            expect(page.locator("#image-slider img")).to_have_count(2, timeout=90_000)
            expect(page.locator("#image-result img")).to_be_visible()
            cached = sorted(p.suffix for p in cache.rglob("*") if p.is_file())
            assert ".csv" in cached and ".png" in cached  # the first click computed and kept it
            page.reload()
            page.locator("table tbody tr").first.click()  # a later visitor: served from the cache
            expect(page.locator("#image-slider img")).to_have_count(2, timeout=10_000)
        finally:
            browser.close()


def test_the_app_calls_its_detector_from_one_thread_at_a_time(app_module):
    import threading
    import time

    class Probe:
        inside = peak = 0

        def detect(self, image):
            Probe.inside += 1
            Probe.peak = max(Probe.peak, Probe.inside)
            time.sleep(0.02)
            Probe.inside -= 1
            return []

    detector = app_module.SerialDetector(app_module.SerialDetector(Probe()))
    assert isinstance(detector.detector, Probe)  # not wrapped twice
    threads = [threading.Thread(target=detector.detect, args=(None,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Probe.peak == 1  # dlib's HOG detector aborts the process when two threads are in it


# -- issue 15: uploads decoded by the project's loader, files deleted ---------------------------


@pytest.fixture(scope="module")
def short_lived_app(app_module, tmp_path_factory):
    """An app whose files live 20 s (longer than a request waits in its queue here), with Gradio's cache in a folder of its own."""
    import os

    cache = tmp_path_factory.mktemp("gradio-cache")
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    port = free_port()
    model = tiny_model_dir(tmp_path_factory)
    argv = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port), "--detector", "dlib"]
    demo = app_module.main(
        [*argv, "--device", "cpu", "--delete-after", "20", "--max-queue", "30"],
        block=False,
    )
    yield demo, f"http://127.0.0.1:{port}/", cache, str(model)
    demo.close()
    if previous is None:
        os.environ.pop("GRADIO_TEMP_DIR")
    else:
        os.environ["GRADIO_TEMP_DIR"] = previous


EXAMPLE_FILES = {"astronaut.png", "t1.jpg", "astronaut-clip.mp4"}  # the page's examples, kept on purpose


def _files(*folders: Path) -> list[Path]:
    """Uploads and results left in `folders` (the examples Gradio caches for the page do not count)."""
    return [
        p for folder in folders if folder.exists() for p in folder.rglob("*")
        if p.is_file() and p.name not in EXAMPLE_FILES
    ]  # fmt: skip


def _small_photos(folder: Path) -> dict[str, Path]:
    import numpy as np

    photo = np.asarray(PILImage.fromarray(data.astronaut()).resize((256, 256)))
    paths = {"rgb": folder / "rgb.png", "16bit": folder / "deep.png", "rgba": folder / "rgba.png"}
    PILImage.fromarray(photo).save(paths["rgb"])
    deep = np.asarray(PILImage.fromarray(photo).convert("L"), dtype=np.uint16) * 257  # 16-bit grey
    PILImage.fromarray(deep).save(paths["16bit"])
    rgba = np.dstack([photo, np.where(np.arange(256)[None, :] < 200, 255, 0).repeat(256, 0)]).astype(np.uint8)
    PILImage.fromarray(rgba, "RGBA").save(paths["rgba"])
    return paths


def test_uploads_are_decoded_like_the_cli_and_every_file_is_deleted(short_lived_app, tmp_path, monkeypatch):
    import time
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    demo, url, cache, model = short_lived_app
    photos = _small_photos(tmp_path)
    downloads = tmp_path / "client"

    def swap(pair: tuple[str, str]) -> str:
        client = Client(url, verbose=False, download_files=str(downloads))
        return client.predict(
            handle_file(photos[pair[0]]), handle_file(photos[pair[1]]), api_name="/swap_image"
        )

    # 20 swaps from 10 clients at once, each answered with its own result
    pairs = [("rgb", "16bit"), ("rgb", "rgba"), ("16bit", "rgb"), ("rgba", "rgb")] * 5
    with ThreadPoolExecutor(10) as clients:
        results = list(clients.map(swap, pairs))
    assert len(results) == 20 and all(r and Path(r).is_file() for r in results), results
    for index, result in enumerate(results[4:], start=4):  # the same pair, first or later: the same result
        with PILImage.open(result) as again, PILImage.open(results[index % 4]) as first:
            assert np.array_equal(np.asarray(again), np.asarray(first))

    # the 16-bit and RGBA photos swap in the app exactly as on the command line
    from hififace.cli import main

    for index, (source, target) in enumerate(pairs[:4]):
        cli_out = tmp_path / f"cli-{index}.png"
        code = main(["swap", "--source", str(photos[source]), "--target", str(photos[target]), "--output",
                     str(cli_out), "--model", model, "--detector", "dlib", "--device", "cpu", "--no-progress"])  # fmt: skip
        assert code == 0
        with PILImage.open(results[index]) as app_result, PILImage.open(cli_out) as cli_result:
            assert np.array_equal(
                np.asarray(app_result.convert("RGB")), np.asarray(cli_result.convert("RGB"))
            )

    # a corrupt upload and a PNG whose header claims 13000 x 13000: one line, the loader's words
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(photos["rgb"].read_bytes()[:300])
    with pytest.raises(AppError, match="Cannot use the target image: ") as caught:
        swap_file = Client(url, verbose=False, download_files=str(downloads))
        swap_file.predict(handle_file(photos["rgb"]), handle_file(corrupt), api_name="/swap_image")
    assert "\n" not in str(caught.value) and "upstream" not in str(caught.value)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(13000, 13000))
    with pytest.raises(AppError, match=r"is 13000x13000 \(169.0 MP\), larger than the limit") as caught:
        swap_file.predict(handle_file(photos["rgb"]), handle_file(huge), api_name="/swap_image")
    assert str(cache) not in str(caught.value)  # the server's upload folder is not shown

    # after the stated time no upload and no result is left on the server
    config = json.loads(urllib.request.urlopen(url + "config", timeout=30).read())
    note = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert "deleted 20 seconds after they were written" in note
    assert _files(cache, demo.hififace_output_dir), "the swaps wrote nothing to delete"
    deadline = time.monotonic() + 60  # 20 s of life, checked every 20 s
    while _files(cache, demo.hififace_output_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _files(cache, demo.hififace_output_dir) == []


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` RGB pixels, with a few bytes of pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(1 + 3 * width))  # one row; decoding it all would need 507 MB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_the_app_deletes_its_files_when_it_stops(app_module, tmp_path_factory, tmp_path, monkeypatch):
    import time

    from gradio_client import Client, handle_file

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    photos = _small_photos(tmp_path)
    port = free_port()
    argv = ["--model", str(tiny_model_dir(tmp_path_factory)), "--host", "127.0.0.1", "--port", str(port)]
    demo = app_module.main([*argv, "--detector", "dlib", "--device", "cpu"], block=False)
    Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "client")).predict(
        handle_file(photos["rgb"]), handle_file(photos["rgba"]), api_name="/swap_image"
    )
    assert _files(tmp_path / "cache", demo.hififace_output_dir)
    demo.close()
    deadline = time.monotonic() + 10
    while _files(tmp_path / "cache", demo.hififace_output_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _files(tmp_path / "cache", demo.hififace_output_dir) == []


def test_face_clicks_toggle_faces_in_and_out_of_the_choice(app_module):
    import numpy as np

    from hififace.faces import Face

    toggle = app_module._toggle_face
    assert toggle("largest", 2, 6) == "2" and toggle("2", 0, 6) == "0,2" and toggle("0,2", 2, 6) == "0"
    assert toggle("0", 0, 6) == "largest"  # no face left: back to the default
    assert toggle("all", 1, 3) == "0,2" and toggle("reference", 1, 3) == "1" and toggle("junk", 1, 3) == "1"
    faces = app_module._faces_per_frame  # ZeroGPU's duration counts the faces chosen
    assert (faces("0,2,5"), faces("3"), faces("largest"), faces("all"), faces("bad")) == (3, 1, 1, 4, 1)
    choices = dict((value, label) for label, value in app_module._face_choices("0,2"))
    assert (
        choices["0,2"] == "faces 1, 3 from the left"
        and app_module._face_choices("3") == app_module.FACE_CHOICES
    )

    def face(x: float, size: float) -> Face:
        return Face(box=(x, 0, x + size, size), score=1.0, landmarks=np.zeros((5, 2), np.float32))

    crop = np.full((32, 32, 3), 200, np.uint8)
    state = {"faces": [face(0, 10), face(50, 30), face(100, 20)], "crops": [crop] * 3}
    captions = lambda choice: [c for _, c in app_module._captioned_faces(state, choice)]  # noqa: E731
    assert captions("largest") == ["face 1", "✓ face 2: swapped", "face 3"]
    assert captions("0,2") == ["✓ face 1: swapped", "face 2", "✓ face 3: swapped"]
    assert captions("reference") == ["face 1", "face 2", "face 3"]  # unknown until the swap embeds them
    framed = app_module._captioned_faces(state, "0")[0][0]
    assert framed.shape == (38, 38, 3) and (framed[0, 0] != 200).any() and (framed[3:-3, 3:-3] == 200).all()


def test_the_video_swap_shows_its_progress_in_frames(app_module, photos, tmp_path_factory, tmp_path):
    pipeline = HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")
    _, swap_video = app_module._handlers(pipeline, tmp_path, None)
    calls = []
    swap_video(
        str(photos["astronaut"]),
        str(three_frame_clip(tmp_path / "clip.mp4")),
        progress=lambda value, desc=None, unit=None: calls.append((value, desc, unit)),
    )
    assert calls[0] == ((0, None), "Swapping faces", "frames")  # at once, before the first frame
    assert calls[-1] == ((3, 3), "Swapping faces", "frames")


# -- issue 15: image swaps of several users batched through the generator -----------------------


def test_batch_size_option_and_its_default_rule(app_module):
    assert app_module.parse_args([]).batch_size is None
    assert app_module.parse_args(["--batch-size", "4"]).batch_size == 4
    with pytest.raises(SystemExit):
        app_module.parse_args(["--batch-size", "0"])
    assert app_module.default_batch_size("cpu") == app_module.BATCH_SIZE_CPU == 1
    assert app_module.default_batch_size("cuda:0") == app_module.BATCH_SIZE_GPU == 8


@pytest.fixture(scope="module")
def batch_pipeline(tmp_path_factory) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")


def test_batched_handler_answers_each_request_with_every_option(app_module, batch_pipeline, tmp_path):
    import numpy as np

    photos = _small_photos(tmp_path)
    coffee = tmp_path / "coffee.png"
    PILImage.fromarray(data.coffee()).save(coffee)
    handler = app_module._batched_image_handler(batch_pipeline, tmp_path)
    rgb, rgba = str(photos["rgb"]), str(photos["rgba"])
    paths, states = handler(
        [rgb, str(coffee), rgba, rgb],  # the second: no face in the source
        [rgba, rgb, rgb, None],  # the fourth: no target
        ["largest", "largest", "0", "largest"],
        [None] * 4,
        [1.0, 1.0, 0.6, 1.0],
        [1.0, 1.0, 0.3, 1.0],
        [None, None, ["box"], None],
        [None] * 4,
        [None, None, 0.2, None],
        [None] * 4,
        [None, None, [rgb], None],  # more photos of the source person
        [None] * 4,
        [None] * 4,
    )
    assert paths[1] is None and paths[3] is None
    assert states[1] == {"error": "No face found in the source image coffee.png"}  # no folder shown
    assert states[3] == {"error": "Upload a target image: the picture to put the face into."}
    with pytest.raises(app_module.gr.Error, match="No face found in the source image"):
        app_module._show_all(states[1], *[True] * len(app_module.INTERMEDIATES))
    expected = [
        batch_pipeline.swap(rgb, rgba),
        batch_pipeline.swap([rgba, rgb], rgb, face="0", identity_strength=0.6, shape_strength=0.3,
                            masks=batch_pipeline.mask_options(["box"], None, 0.2)),
    ]  # fmt: skip
    for index, alone in zip((0, 2), expected, strict=True):
        with PILImage.open(paths[index]) as swapped:
            assert swapped.text["ai_generated"] == "true"
            diff = np.abs(np.asarray(swapped.convert("RGB"), np.int16) - np.asarray(alone.image, np.int16))
        assert diff.max() <= 1
        assert {"mask_low", "closeups", "before", "after"} <= set(states[index])
        assert states[index]["after"] == paths[index]
    assert "mask_box" in states[2] and "mask_model" not in states[2]

    # alone in its batch, a request fails with its message, as without batching
    with pytest.raises(app_module.gr.Error, match="No face found in the source image"):
        handler([str(coffee)], [rgb], ["largest"], [None], [1.0], [1.0], *[[None]] * 7)


def test_batched_app_keeps_the_api_and_runs_waiting_requests_together(
    app_module, batch_pipeline, tmp_path, monkeypatch
):
    import threading
    import time

    from gradio_client import Client, handle_file

    one = app_module.build_demo(batch_pipeline, examples_dir=tmp_path / "examples")
    demo = app_module.build_demo(batch_pipeline, examples_dir=tmp_path / "examples", batch_size=3)
    api = [d.get_api_info()["named_endpoints"]["/swap_image"] for d in (one, demo)]
    assert api[0] == api[1]
    swap_fns = [f for d in (one, demo) for f in d.fns.values() if f.api_name == "swap_image"]
    assert [(f.batch, f.max_batch_size) for f in swap_fns][1] == (True, 3) and not swap_fns[0].batch
    one.close()

    batches, started, release = [], threading.Event(), threading.Event()
    swap_many = batch_pipeline.swap_many

    def held_swap_many(requests, max_batch=None):
        batches.append(len(requests))
        started.set()
        release.wait(60)  # the first batch waits until the others are queued behind it
        return swap_many(requests, max_batch)

    monkeypatch.setattr(batch_pipeline, "swap_many", held_swap_many)
    photos = _small_photos(tmp_path)
    coffee = tmp_path / "coffee.png"
    PILImage.fromarray(data.coffee()).save(coffee)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    clients = []
    try:
        clients += [Client(url, verbose=False, download_files=str(tmp_path / "client")) for _ in range(4)]
        rgb, rgba = handle_file(photos["rgb"]), handle_file(photos["rgba"])
        first = clients[0].submit(rgb, rgba, api_name="/swap_image")
        assert started.wait(60)
        jobs = [
            clients[1].submit(rgba, rgb, api_name="/swap_image"),
            clients[2].submit(handle_file(coffee), rgb, api_name="/swap_image"),
            clients[3].submit(rgb, rgb, masks=["box"], mask_padding=0.2, api_name="/swap_image"),
        ]
        deadline = time.monotonic() + 30
        while len(demo._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        release.set()
        results = [job.result(timeout=120) for job in (first, *jobs)]
    finally:
        release.set()
        for client in clients:
            client.close()
        demo.close()
    assert batches == [1, 3]  # the three waiting users' requests went through as one batch
    assert results[2] is None  # the faceless source: no picture for that user only
    for result in (results[0], results[1], results[3]):
        with PILImage.open(result) as swapped:
            assert swapped.size == (256, 256) and swapped.text["ai_generated"] == "true"
