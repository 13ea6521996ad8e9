"""HifiFace face swapping in the browser: a Gradio app, also a Hugging Face Space.

    python app.py --model models/hififace-256 [--host 127.0.0.1 --port 7860]
    HIFIFACE_MODEL=user/hififace-256 HIFIFACE_REVISION=v1 python app.py

The model (a folder written by `hififace convert` / `save_pretrained`, or a Hub repository) loads
once at start. Without one, the app shows how to get weights instead of failing. The image swap is
also an API endpoint, `/swap_image` (source and target image first, every other input optional):

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860").predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/swap_image")

With `--mcp`, the app also serves Gradio's MCP server (`/gradio_api/mcp/sse`), so assistants can
call the swap as a tool. The Live tab swaps the browser's webcam stream frame by frame.

Everything the app makes carries an "AI-generated" marker (PNG text chunks, video metadata tags).

Uploads are handed to the pipeline as files and decoded by the project's own loader (the same pixel
limit, read from the header before decoding, the same RGBA and 16-bit handling and one-line errors
as the command line). Uploads and results are deleted after `--delete-after` seconds and when the
app stops. A bounded queue turns requests away
with "try again" when it is full. With `--batch-size N` (default: 8 on a GPU, 1 on a CPU), the
image swaps of up to N waiting users go through the generator together (Gradio batching).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from hififace.atomic import atomic_path
from hififace.faces import FaceChoice, FaceChoiceError, select_faces
from hififace.faces.masks import DEFAULT_MASKS, DEFAULT_REGIONS, MASK_TYPES, REGION_GROUPS
from hififace.imageio import save_image
from hififace.pipeline import AI_METADATA, HifiFacePipeline, ModelLoadError, SwapError, SwapResult
from hififace.space import gpu_seconds
from hififace.tensors import to_uint8_rgb
from hififace.video import swap_video as swap_video_file
from hififace.video.live import FpsMeter, LiveSwapper

try:  # Hugging Face ZeroGPU Spaces: a GPU is attached only while a decorated function runs.
    import spaces
except ImportError:
    spaces = None

logger = logging.getLogger("hififace")

TITLE = "HifiFace face swap"
RESPONSIBLE_USE = (
    "**Use responsibly.** Swap only faces of people who agreed to it; never to deceive, harass, "
    "impersonate or make sexual imagery of anyone. Every result is labelled as AI-generated in its "
    "metadata; keep that label and say that the picture is synthetic when you share it."
)
# Uploads and results live on the server only this long (seconds), then are deleted; all of them
# when the app stops. Gradio checks every DELETE_EVERY seconds, so a file lives at most the sum.
DELETE_AFTER = 600
DELETE_EVERY = 60
MAX_QUEUE = 20  # waiting requests past which new ones get "queue is full, try again"
# Image swaps of different users that run through the generator together (`--batch-size`). On a GPU
# a batch of faces costs little more than one; on a CPU the generator's time grows with the faces
# and each user waits for the whole batch (benchmarks/load.py, README "Load": 0.96x the requests/s
# at 8 on 2 cores, the generator 0.52x the faces/s), so there it is 1.
BATCH_SIZE_GPU = 8
BATCH_SIZE_CPU = 1


def default_batch_size(device: Any) -> int:
    """`--batch-size` when none is given: `BATCH_SIZE_GPU` on a CUDA device, `BATCH_SIZE_CPU` elsewhere."""
    return BATCH_SIZE_GPU if str(device).startswith("cuda") else BATCH_SIZE_CPU


def privacy_note(delete_after: int = DELETE_AFTER, every: int = DELETE_EVERY) -> str:
    """What the page says about uploads and results, from the deletion settings actually used."""
    return (
        f"**Your files.** Uploads and results are kept on this server only to serve your result: "
        f"they are deleted {_duration(delete_after)} after they were written (checked every "
        f"{_duration(every)}, so within {_duration(delete_after + every)} at most), and all of them "
        "when the app stops. Until then, anyone with a result's link can open it."
    )


def _duration(seconds: int) -> str:
    if seconds % 60 == 0 and seconds >= 60:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def uploaded_image(**options: Any) -> gr.Image:
    """A `gr.Image` input that hands the uploaded file over untouched, as a path.

    Gradio's own preprocessing opens the file with PIL (a corrupt upload becomes "upstream app
    raised an exception") and converts it to RGB (16-bit PNGs clip to white, alpha is dropped);
    the pipeline's loader does all of that the project's way instead. (Not a subclass: Gradio
    writes a .pyi file beside the module of every component class.)
    """
    image = gr.Image(type="filepath", image_mode=None, **options)
    gradio_preprocess = image.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None or payload.path is None:  # data: URLs (webcam) go the Gradio way
            return gradio_preprocess(payload)
        return str(payload.path)

    image.preprocess = preprocess
    return image


NO_MODEL = """
# HifiFace: no model configured

This app needs HifiFace weights. Start it with `python app.py --model DIR_OR_REPO`, or set the
`HIFIFACE_MODEL` environment variable (a Space: *Settings → Variables*) to a folder or a Hugging
Face Hub repository.

**Get weights** (either way gives a folder that `--model` takes):

1. Convert the public, MIT-licensed release of HiFiFace-pytorch (`generator_<iter>.pth`):

       hififace convert hififace-pytorch generator_<iter>.pth models/hififace-256
       python app.py --model models/hififace-256

   Add `--push-to-hub USER/hififace-256` to the convert command to use it from a Space.
2. Or train your own with `accelerate launch train_accelerate.py ...` and point `--model` at the
   saved folder.
"""
# Faces per frame assumed for ZeroGPU's duration when "all" (or those like a reference) are swapped.
GUESSED_FACES = 4
# (key of FaceSwap.intermediates(), label); the low-resolution ones are shown enlarged.
INTERMEDIATES = (
    ("mask_low", "M_low: feature-fusion mask (low resolution)"),
    ("mask", "M_r: face mask"),
    ("image_low", "I_low: low-resolution swap"),
    ("image_out", "I_out: decoded face before blending"),
    ("source_crop", "Aligned source face"),
    ("target_crop", "Aligned target face"),
    ("mask_model", "Mask: M_r softened"),
    ("mask_box", "Mask: crop box, feathered"),
    ("mask_region", "Mask: parsed regions"),
    ("mask_occlusion", "Mask: occlusion"),
    ("paste_mask", "Final paste-back mask"),
    ("enhanced", "Enhanced face (restoration)"),
)
FACE_CHOICES = [
    ("the largest face", "largest"),
    ("all faces", "all"),
    ("faces like the reference (Advanced)", "reference"),
] + [(f"face {i + 1} from the left", str(i)) for i in range(10)]


def gpu(duration: int | Callable[..., int]) -> Callable[[Callable], Callable]:
    """`spaces.GPU(duration=...)` where the `spaces` package exists, a no-op elsewhere.

    `duration` may be a function of the call's arguments (ZeroGPU's dynamic duration)."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def build_demo(
    pipeline: HifiFacePipeline,
    max_video_frames: int | None = 3000,
    examples_dir: Path | None = None,
    delete_after: int = DELETE_AFTER,
    delete_every: int = DELETE_EVERY,
    batch_size: int = 1,
) -> gr.Blocks:
    """The app's page for a loaded pipeline: an Image tab and a Video tab on the same handlers.

    Args:
        pipeline (HifiFacePipeline): loaded once, shared by every request.
        max_video_frames (int, default 3000): longest video accepted.
        examples_dir (Path, optional): where the example files are written.
        delete_after (int, default 600): seconds after which uploads and results are deleted.
        delete_every (int, default 60): seconds between two deletion rounds.
        batch_size (int, default 1): image swaps of different users run through the generator
            together (`/swap_image` as a Gradio batch); 1 runs each request on its own.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    output_dir = Path(tempfile.mkdtemp(prefix="hififace-app-"))
    # The page runs handlers at once (the face gallery while a swap runs, the Live tab beside both).
    pipeline.detector = SerialDetector(pipeline.detector)
    examples = _example_files(examples_dir or Path(tempfile.gettempdir()) / "hififace-examples")
    swap_image, swap_video = _handlers(pipeline, output_dir, max_video_frames)
    # Gradio's cache (uploads, and the copies of results it serves) is swept by delete_cache; our
    # own result files by a sweeper of output_dir; both are emptied when the app stops.
    with gr.Blocks(title=TITLE, delete_cache=(delete_every, delete_after)) as demo:
        gr.Markdown(
            f"# {TITLE}\nHifiFace (IJCAI 2021, [paper](https://arxiv.org/abs/2106.09965)) puts the face "
            "of a source photo into a target photo or video, keeping the target's expression, pose, light "
            "and background and carrying the source's face shape."
        )
        gr.Markdown(RESPONSIBLE_USE, elem_id="responsible-use")
        gr.Markdown(privacy_note(delete_after, delete_every), elem_id="privacy")
        with gr.Tabs():
            with gr.Tab("Image"):
                batched = _batched_image_handler(pipeline, output_dir) if batch_size > 1 else None
                _image_tab(swap_image, examples, pipeline, batched, batch_size)
            with gr.Tab("Video"):
                _video_tab(swap_video, examples)
            with gr.Tab("Live"):
                _live_tab(pipeline)
        gr.Markdown(
            f"Model: {pipeline.image_size}×{pipeline.image_size}, detector `{pipeline.detector!r}`, "
            f"device `{pipeline.device}`. Faces are aligned, swapped and pasted back; pixels away from "
            "the swapped faces are left exactly as they were."
        )
    demo.hififace_output_dir = output_dir
    _start_sweeper(demo, output_dir, delete_after, delete_every)
    return demo


def sweep(folder: Path, age: float | None) -> int:
    """Delete the files in `folder` older than `age` seconds (all when `age` is None); their count."""
    now, deleted = time.time(), 0
    for file in list(folder.glob("*")):
        try:
            if age is None or now - file.stat().st_mtime > age:
                file.unlink()
                deleted += 1
        except FileNotFoundError:  # a concurrent sweep got it first
            continue
    return deleted


def _start_sweeper(demo: gr.Blocks, folder: Path, age: int, every: int) -> None:
    """Sweep `folder` every `every` seconds; remove it when the app is closed, once the launched app
    has stopped, or at exit."""
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    close = demo.close

    def close_and_remove(*args: Any, **kwargs: Any) -> Any:
        # demo.close() removes the folder itself: the watcher below may not see the app running
        try:
            return close(*args, **kwargs)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    demo.close = close_and_remove

    def run() -> None:
        launched, last_sweep = False, time.monotonic()
        while True:
            time.sleep(0.5)  # notice a stopped app quickly; sweep only every `every` seconds
            running = bool(getattr(demo, "is_running", False))
            if launched and not running:  # demo.close() was called
                shutil.rmtree(folder, ignore_errors=True)
                return
            launched = launched or running
            if time.monotonic() - last_sweep >= every and folder.is_dir():
                sweep(folder, age)
                last_sweep = time.monotonic()

    threading.Thread(target=run, name="hififace-sweeper", daemon=True).start()


def _handlers(
    pipeline: HifiFacePipeline, output_dir: Path, max_video_frames: int | None
) -> tuple[Callable, Callable]:
    """The image and video swap functions the page (and its API) calls; results go to `output_dir`."""

    def image_seconds(source=None, target=None, face="largest", *rest, **options) -> int:
        return gpu_seconds(frames=1, faces=_faces_per_frame(face))

    def video_seconds(source=None, video=None, face="largest", *rest, **options) -> int:
        return gpu_seconds(
            frames=_frame_count(video, max_video_frames),
            faces=_faces_per_frame(face),
        )

    @gpu(duration=image_seconds)
    def swap_image(
        source,
        target,
        face="largest",
        reference=None,
        identity_strength=1.0,
        shape_strength=1.0,
        masks=None,
        regions=None,
        mask_padding=None,
        enhancer_blend=None,
        more_sources=None,
        mapping=None,
        mapping_files=None,
    ):
        """Swap the face of a source photo into a target photo (an AI-generated result, PNG).

        Args:
            source: photo with the face to put in (its largest face).
            target: photo to put the face into.
            face: which target faces: largest, all, reference, or face indices from the left ("0", "0,2").
            reference: with face="reference", a photo of the person to replace.
            identity_strength: 0 to 1, how much of the source's identity.
            shape_strength: 0 to 1, how much of the source's face shape.
            masks, regions, mask_padding: paste-back masks (model, box, region, occlusion), the face
                parts swapped with "region", and the box mask's feather.
            enhancer_blend: 0 to 1, how much of the restored face (with an enhancer loaded).
            more_sources: more photos of the same person, averaged with the source.
            mapping, mapping_files: (source, reference) file names and the uploaded files they name.
        """
        request, folders = _image_request(
            pipeline, source, target, face, reference, identity_strength, shape_strength, masks,
            regions, mask_padding, enhancer_blend, more_sources, mapping, mapping_files,
        )  # fmt: skip
        with _as_gradio_error(*folders):
            result = pipeline.swap(**request)
        path = save_image(output_dir / f"swapped-{uuid.uuid4().hex[:12]}.png", result.image, AI_METADATA)
        return str(path), _intermediates(result) | _closeups(target, result, str(path))

    @gpu(duration=video_seconds)
    def swap_video(
        source,
        video,
        face="largest",
        reference=None,
        identity_strength=1.0,
        shape_strength=1.0,
        masks=None,
        regions=None,
        mask_padding=None,
        enhancer_blend=None,
        more_sources=None,
        mapping=None,
        mapping_files=None,
        progress=gr.Progress(),  # noqa: B008 (how Gradio asks for a progress tracker)
    ):
        pairs = _mapping_pairs(mapping, mapping_files)
        source = _sources(source, more_sources) if not pairs else None
        _require(source is not None or bool(pairs), "Upload a source image: the face to put in.")
        _require(video, "Upload a target video.")
        _require(
            face != "reference" or reference is not None,
            "Upload a reference face (Advanced) to use that choice.",
        )
        out = output_dir / f"swapped-{uuid.uuid4().hex[:12]}.mp4"
        progress((0, None), desc="Swapping faces", unit="frames")
        with _as_gradio_error(hide=str(Path(video).parent) + os.sep):
            quality = _quality(pipeline, masks, regions, mask_padding, enhancer_blend)
            if quality.get("enhancer_blend") is not None:
                pipeline.enhancer_blend = quality["enhancer_blend"]  # one model, one request at a time
            summary = swap_video_file(
                pipeline,
                source,
                video,
                out,
                face=face or "largest",
                reference=reference,
                identity_strength=float(identity_strength),
                shape_strength=float(shape_strength),
                max_frames=max_video_frames,
                masks=quality.get("masks"),
                mapping=pairs or None,
                progress=lambda done, total: progress((done, total), desc="Swapping faces", unit="frames"),
            )
        note = (
            f"{summary.frames} frames at {summary.fps:g} fps: {summary.swapped} swapped, "
            f"{summary.passed_through} without a face left unchanged"
            + (", audio kept." if summary.audio else ".")
        )
        return str(out), note

    return swap_image, swap_video


def _batched_image_handler(pipeline: HifiFacePipeline, output_dir: Path) -> Callable:
    """`/swap_image` as a Gradio batch (`batch=True`): the image swaps of several waiting users at once.

    Gradio calls it with one list per input (an entry per request) and takes one list per output.
    Each request is checked and turned into `swap`'s arguments as the one-at-a-time handler does
    (`_image_request`: masks, several sources, face mapping, restoration blend); then
    `HifiFacePipeline.swap_many` runs the faces of all of them through the generator together.
    Results, intermediates and close-ups are kept per request as the one-at-a-time handler keeps
    them. A request that fails gets no picture and its own message in its state, which the page
    shows to that user alone (`_show_all`); the others get their results. Alone in its batch, a
    request fails with its message exactly as the one-at-a-time handler does. (A Gradio batch
    cannot fail one request: an API client whose request fails beside others gets `None`.)
    """

    def batch_seconds(source=None, target=None, face=None, *rest, **options) -> int:
        faces = list(face or [])
        guess = GUESSED_FACES if any(f in ("all", "reference") for f in faces) else 1
        return gpu_seconds(frames=max(1, len(faces)), faces=guess)

    # The names, defaults and docstring are one request's: Gradio shows them as the API (the same as
    # the one-at-a-time handler's) and fills in omitted ones per request; the values arrive as lists.
    # (This function is long only by that signature and docstring.)
    @gpu(duration=batch_seconds)
    def swap_image(
        source,
        target,
        face="largest",
        reference=None,
        identity_strength=1.0,
        shape_strength=1.0,
        masks=None,
        regions=None,
        mask_padding=None,
        enhancer_blend=None,
        more_sources=None,
        mapping=None,
        mapping_files=None,
    ):
        """Swap the face of a source photo into a target photo (an AI-generated result, PNG).

        Args:
            source: photo with the face to put in (its largest face).
            target: photo to put the face into.
            face: which target faces: largest, all, reference, or face indices from the left ("0", "0,2").
            reference: with face="reference", a photo of the person to replace.
            identity_strength: 0 to 1, how much of the source's identity.
            shape_strength: 0 to 1, how much of the source's face shape.
            masks, regions, mask_padding: paste-back masks (model, box, region, occlusion), the face
                parts swapped with "region", and the box mask's feather.
            enhancer_blend: 0 to 1, how much of the restored face (with an enhancer loaded).
            more_sources: more photos of the same person, averaged with the source.
            mapping, mapping_files: (source, reference) file names and the uploaded files they name.
        """
        columns = (source, target, face, reference, identity_strength, shape_strength, masks, regions,
                   mask_padding, enhancer_blend, more_sources, mapping, mapping_files)  # fmt: skip
        requests: dict[int, dict[str, Any]] = {}
        folders: dict[int, list[str]] = {}
        messages: dict[int, str] = {}
        for i, values in enumerate(zip(*columns, strict=True)):
            try:
                requests[i], folders[i] = _image_request(pipeline, *values)
            except gr.Error as error:
                messages[i] = error.message
            except Exception as error:  # one user's odd API input must not fail the batch's others
                logger.exception("image request %d of a batch could not be read", i + 1)
                messages[i] = f"This request could not be read ({type(error).__name__}: {error})."
        paths: list[str | None] = [None] * len(source)
        states: list[dict[str, Any]] = [{} for _ in source]
        for i, result in zip(requests, pipeline.swap_many(list(requests.values())), strict=True):
            if isinstance(result, SwapError):
                messages[i] = _error_message(result, *folders[i])
                continue
            path = save_image(output_dir / f"swapped-{uuid.uuid4().hex[:12]}.png", result.image, AI_METADATA)
            paths[i], states[i] = str(path), _intermediates(result) | _closeups(target[i], result, str(path))
        if len(source) == 1 and messages:
            raise gr.Error(messages[0])
        for i, message in sorted(messages.items()):
            states[i] = {"error": message}
            logger.info("image request %d of a batch of %d failed: %s", i + 1, len(source), message)
        return paths, states

    return swap_image


def _image_tab(
    swap_image: Callable,
    examples: dict[str, list] | None,
    pipeline: HifiFacePipeline,
    swap_images: Callable | None = None,
    batch_size: int = 1,
) -> None:
    """Inputs, result, options and the intermediates viewer of the Image tab (inside a gr.Tab).

    With `swap_images` (`_batched_image_handler`) and a `batch_size` over 1, the swap button and
    `/swap_image` run it as a Gradio batch; the examples always run `swap_image`."""
    with gr.Row():
        source = uploaded_image(label="Source face", elem_id="image-source")
        target = uploaded_image(label="Target image", elem_id="image-target")
        result = gr.Image(
            label="Swapped (AI-generated)",
            type="filepath",
            format="png",
            interactive=False,
            elem_id="image-result",
        )
    face, reference, identity, shape = _options("image")
    quality = _quality_options("image")
    run = gr.Button("Swap faces", variant="primary", elem_id="swap-image")
    state = gr.State({})
    gr.Markdown("Show what the model computed (no new run):")
    with gr.Row():
        toggles = [
            gr.Checkbox(label=label, value=False, elem_id=f"show-{key}") for key, label in INTERMEDIATES
        ]
    with gr.Row():
        views = [
            gr.Image(label=label, visible=False, interactive=False, format="png", elem_id=f"view-{key}")
            for key, label in INTERMEDIATES
        ]
    slider, closeups = _looking_widgets(pipeline, target, face)
    if examples:
        gr.Examples(
            examples["image"],
            inputs=[source, target],
            outputs=[result, slider, closeups],
            fn=lambda s, t: _swap_and_look(swap_image, s, t),
            cache_examples=True,
            cache_mode="lazy",  # the first visitor to click an example computes it, the others see it at once
            label="Examples (photos shipped with scikit-image and insightface)",
        )

    batching = {"batch": True, "max_batch_size": batch_size} if swap_images and batch_size > 1 else {}
    run.click(
        swap_images if batching else swap_image,
        [source, target, face, reference, identity, shape, *quality],
        [result, state],
        api_name="swap_image",
        **batching,
    ).then(_show_all, [state, *toggles], views, api_visibility="private", queue=False).then(
        _look, state, [slider, closeups], api_visibility="private", queue=False
    )
    for (key, _), toggle, view in zip(INTERMEDIATES, toggles, views, strict=True):
        toggle.change(
            lambda data, on, key=key: _view(data, key, on),
            [state, toggle],
            view,
            api_visibility="private",
            queue=False,
        )


class SerialDetector:
    """A face detector that one thread at a time may call (the app's handlers run in parallel).

    dlib's HOG detector is not thread-safe: two threads in `detect` at once abort the process.

    Args:
        detector (FaceDetector): the detector to guard; a SerialDetector is not wrapped twice.
    """

    def __init__(self, detector: Any):
        self.detector = detector.detector if isinstance(detector, SerialDetector) else detector
        self.lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list:
        with self.lock:
            return self.detector.detect(image)

    def __repr__(self) -> str:
        return repr(self.detector)


def _looking_widgets(
    pipeline: HifiFacePipeline, target: gr.Image, face: gr.Dropdown
) -> tuple[gr.ImageSlider, gr.Gallery]:
    """The target's detected faces (click faces to choose them), the before/after slider and the close-ups.

    Clicking a face adds it to the chosen faces or takes it out again (the face choice becomes
    "0,2" style indices); the gallery's captions mark the faces the current choice swaps. In a group
    photo or a wide shot the faces are small: the slider and the close-ups (target crop beside the
    swapped crop, one per face) show the swap without downloading the picture.
    """
    detected = gr.Gallery(
        label="Faces in the target: click faces to choose which are swapped (click again to leave one out)",
        columns=8,
        height=190,
        object_fit="contain",  # the whole face with its frame
        allow_preview=False,
        interactive=False,
        elem_id="image-faces",
    )
    slider = gr.ImageSlider(
        label="Before / after (drag)", type="filepath", interactive=False, elem_id="image-slider"
    )
    closeups = gr.Gallery(
        label="Close-ups: target face | swapped face",
        columns=3,
        height=320,
        preview=False,
        object_fit="contain",
        interactive=False,
        elem_id="image-closeups",
    )

    found = gr.State({"faces": [], "crops": []})  # the target's faces, left to right, and their crops

    def faces_of(upload: Any, choice: str | None) -> tuple[list[tuple[np.ndarray, str]], dict]:
        faces, crops = [], []
        if upload is not None:
            try:  # the pipeline's own loader: the same pixels (and face order) the swap will see
                image, _ = pipeline.read_image(upload, "target")
                faces = pipeline.detect_faces(image)
                crops = [_face_crop(image, f.box) for f in faces]
            except SwapError:
                pass  # the swap itself reports what is wrong with the picture
        state = {"faces": faces, "crops": crops}
        return _captioned_faces(state, choice), state

    def choose(state: dict, choice: str | None, event: gr.SelectData) -> gr.Dropdown:
        # the gallery's order is the face index: left to right, from 0
        value = _toggle_face(choice, event.index, len(state["faces"]))
        return gr.Dropdown(choices=_face_choices(value), value=value)

    target.change(faces_of, [target, face], [detected, found], api_visibility="private")
    detected.select(choose, [found, face], face, api_visibility="private", queue=False)
    face.change(
        lambda state, choice: gr.Gallery(_captioned_faces(state, choice), selected_index=None),
        [found, face],
        detected,
        api_visibility="private",
        queue=False,
    )
    return slider, closeups


def _faces_per_frame(face: Any) -> int:
    """Faces a choice swaps per frame, for ZeroGPU's duration: a guess for "all" and "reference"."""
    if face in ("all", "reference"):
        return GUESSED_FACES
    try:
        return max(1, len(FaceChoice.parse(face or "largest").indices))
    except FaceChoiceError:
        return 1  # the swap reports the bad choice


def _toggle_face(choice: str | None, index: int, count: int) -> str:
    """The face choice after clicking face `index` of `count`: in or out of the chosen faces.

    From "all", the click leaves that face out; from "largest" or "reference", it starts a choice of
    that face alone; when no face is left, the choice falls back to "largest"."""
    try:
        current = FaceChoice.parse(choice or "largest")
    except FaceChoiceError:
        current = FaceChoice("largest")
    chosen = set(range(count)) if current.mode == "all" else set(current.indices)
    chosen ^= {index}
    return str(FaceChoice("index", indices=tuple(chosen))) if chosen else "largest"


def _face_choices(value: str | None) -> list[tuple[str, str]]:
    """The face dropdown's choices, with a choice of several faces ("0,2") added when `value` is one."""
    if not value or value in {v for _, v in FACE_CHOICES}:
        return FACE_CHOICES
    try:
        indices = FaceChoice.parse(value).indices
    except FaceChoiceError:
        return FACE_CHOICES  # typed text: the swap reports what is wrong with it
    return [*FACE_CHOICES, (f"faces {', '.join(str(i + 1) for i in indices)} from the left", value)]


def _captioned_faces(state: dict, choice: str | None) -> list[tuple[np.ndarray, str]]:
    """The gallery of the target's faces; the ones `choice` swaps are framed and captioned with a check mark."""
    faces = state["faces"]
    try:
        current = FaceChoice.parse(choice or "largest")
        picked = [] if current.mode == "reference" else select_faces(faces, current)
    except FaceChoiceError:
        picked = []
    chosen = {i for i, f in enumerate(faces) if any(f is p for p in picked)}
    return [
        (_framed(crop), f"✓ face {i + 1}: swapped") if i in chosen else (crop, f"face {i + 1}")
        for i, crop in enumerate(state["crops"])
    ]


def _framed(crop: np.ndarray, color: tuple[int, int, int] = (34, 197, 94)) -> np.ndarray:
    """`crop` inside a coloured frame (a chosen face in the gallery: the frame shows at any size)."""
    width = max(3, min(crop.shape[:2]) // 16)
    framed = np.empty((crop.shape[0] + 2 * width, crop.shape[1] + 2 * width, 3), np.uint8)
    framed[:] = color
    framed[width:-width, width:-width] = crop[..., :3]
    return framed


def _face_crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.25) -> np.ndarray:
    """The face's box grown by `margin` of its size on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = image.shape[:2]
    top, bottom = max(0, int(y1 - dy)), min(height, int(y2 + dy) + 1)
    left, right = max(0, int(x1 - dx)), min(width, int(x2 + dx) + 1)
    return image[top:bottom, left:right]


def _closeups(target: Any, result: SwapResult, after: str) -> dict[str, Any]:
    """What the slider and the close-ups show, kept with the intermediates (no new run)."""
    pairs = [
        (np.concatenate([face.target_crop, to_uint8_rgb(face.image)], axis=1), f"face {i + 1}")
        for i, face in enumerate(result.faces)
    ]
    return {"before": target, "after": after, "closeups": pairs}


def _swap_and_look(swap_image: Callable, source: Any, target: Any) -> tuple:
    """An example's outputs: the swapped picture, the slider and the close-ups (cached as files)."""
    path, data = swap_image(source, target)
    return (path, *_look(data))


def _look(data: dict[str, Any]) -> tuple[Any, list]:
    """(before/after pair for the slider, close-ups) from a swap's kept state."""
    if "after" not in data:
        return None, []
    before = data["before"]
    if isinstance(before, np.ndarray):  # the slider shows files: keep the exact pixels as PNG
        before = str(
            save_image(Path(data["after"]).with_name(Path(data["after"]).stem + "-before.png"), before)
        )
    return (before, data["after"]), data["closeups"]


def _live_tab(pipeline: HifiFacePipeline) -> None:
    """The browser's webcam streamed to the server, swapped frame by frame, with a speed readout.

    The source identity is computed once when the source photo is set; frames keep the tab's face
    choice, strengths and paste-back masks (set again when an option changes), and pass through
    unchanged when no face is in view (a message in the readout, never an error dialog per frame).
    Frames arriving while one is being swapped are dropped, not queued: Gradio keeps only the
    newest frame a stream sent (each one replaces the last), so the delay stays one frame's work.
    """
    gr.Markdown(
        "Allow the camera, set a source face, then start the stream. Use it only with the consent of "
        "the people shown, and tell viewers that the picture is synthetic."
    )
    with gr.Row():
        source = gr.Image(label="Source face", type="numpy", elem_id="live-source")
        camera = gr.Image(
            label="Camera", sources=["webcam"], streaming=True, type="numpy", elem_id="live-camera"
        )
        view = gr.Image(label="Swapped live (AI-generated)", interactive=False, elem_id="live-result")
    readout = gr.Textbox(label="Live", interactive=False, value="Set a source face.", elem_id="live-fps")
    face, reference, identity, shape = _options("live")[:4]
    with gr.Accordion("Advanced: masks", open=False):
        masks, padding, regions = _mask_inputs("live")
    session = gr.State(None)

    def set_source(image, *options, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        if image is None:
            return None, "Set a source face."
        progress(0, desc="Encoding the source face")
        try:
            code = pipeline.encode_source(image)  # once per source photo, reused by every option change
        except SwapError as error:
            return None, f"Cannot use the source: {error}"
        return configure({"source": code}, *options, progress=progress)

    def configure(state, face, reference, identity, shape, masks, regions, padding, progress=gr.Progress()):  # noqa: B008
        if not state:
            return None, "Set a source face."
        progress(0.5, desc="Setting the face choice and masks")  # a reference photo is embedded here
        try:
            quality = _quality(pipeline, masks, regions, padding, None)
            swapper = LiveSwapper(
                pipeline, state["source"], face or "largest", reference, float(identity), float(shape),
                masks=quality.get("masks"),
            )  # fmt: skip
        except SwapError as error:
            return state | {"swapper": None}, f"Cannot use these options: {error}"
        masks = ", ".join(swapper.masks.types)  # the readout says which options the frames get
        return state | {
            "swapper": swapper,
            "meter": FpsMeter(),
        }, f"Source set (masks {masks}): start the camera stream."

    def swap_frame(frame, state):
        if frame is None:
            return None, gr.skip()
        if not state or state.get("swapper") is None:
            return frame, "No source face set: showing the camera as it is."
        try:
            swapped, faces = state["swapper"](frame, time.monotonic())
        except Exception as error:  # one bad frame must not end the stream: show it unchanged
            logger.warning("live frame passed through: %s", error)
            return frame, f"Frame shown unchanged ({error})."
        fps = state["meter"].tick()
        swapper = state["swapper"]
        status = "" if faces else " (no face in view: passing through)"
        return swapped, (
            f"{fps:.1f} fps · {swapper.swapped} frames swapped · {swapper.passed_through} passed through{status}"
        )

    options = [face, reference, identity, shape, masks, regions, padding]
    # The source and the options are set one at a time, in order (one concurrency group): the
    # session kept is the one of the last change, never an earlier one that finished late.
    source.change(
        set_source,
        [source, *options],
        [session, readout],
        api_visibility="private",
        show_progress="full",
        concurrency_limit=1,
        concurrency_id="live-options",
    )
    for component in options:
        component.change(
            configure,
            [session, *options],
            [session, readout],
            api_visibility="private",
            concurrency_limit=1,
            concurrency_id="live-options",
        )
    camera.stream(
        swap_frame,
        [camera, session],
        [view, readout],
        stream_every=0.1,
        show_progress="hidden",  # a spinner over every frame would flicker
        concurrency_limit=1,
        concurrency_id="live",
        time_limit=600,
        api_visibility="private",
    )


def _video_tab(swap_video: Callable, examples: dict[str, list] | None) -> None:
    """Inputs, result and options of the Video tab (inside a gr.Tab)."""
    with gr.Row():
        v_source = uploaded_image(label="Source face", elem_id="video-source")
        v_target = gr.Video(label="Target video", elem_id="video-target")
        v_result = gr.Video(label="Swapped (AI-generated)", interactive=False, elem_id="video-result")
    v_face, v_reference, v_identity, v_shape = _options("video")
    v_quality = _quality_options("video")
    v_run = gr.Button("Swap faces in the video", variant="primary", elem_id="swap-video")
    v_note = gr.Markdown()
    if examples:
        gr.Examples(examples["video"], inputs=[v_source, v_target], label="Example")
    v_run.click(
        swap_video,
        [v_source, v_target, v_face, v_reference, v_identity, v_shape, *v_quality],
        [v_result, v_note],
        api_name="swap_video",
    )


def build_no_model_demo(problem: str | None = None) -> gr.Blocks:
    """One screen that says how to get weights (and, when loading failed, why)."""
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(NO_MODEL, elem_id="no-model")
        if problem:
            gr.Markdown(f"**The configured model could not be loaded:** {problem}", elem_id="model-problem")
        gr.Markdown(RESPONSIBLE_USE)
    return demo


def create_app(
    model: str | None,
    device: str | None = None,
    detector: str | None = None,
    dtype: str = "auto",
    max_video_frames: int | None = 3000,
    revision: str | None = None,
    parser: str | None = None,
    enhancer: str | None = None,
    delete_after: int = DELETE_AFTER,
    batch_size: int | None = None,
) -> gr.Blocks:
    """Load the pipeline once and build the page, or the how-to-get-weights page without a model.

    `detector` defaults to the model's saved pipeline setting (else "auto"); `dtype` "auto" runs
    bfloat16 + channels-last on hardware with native bf16, else float32; `revision` is the branch,
    tag or commit of a Hub model repository; `batch_size` defaults to `default_batch_size(device)`."""
    if not model:
        return build_no_model_demo()
    options = {"dtype": dtype} if dtype else {}
    try:
        pipeline = HifiFacePipeline.from_pretrained(
            model, detector=detector, revision=revision, parser=parser, enhancer=enhancer, **options
        )
    except ModelLoadError as e:
        logger.error("%s", e)
        return build_no_model_demo(str(e))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline.to(device)
    logger.info("hififace: %s on %s (dtype %s)", pipeline.precision, device, dtype)
    every = max(1, min(DELETE_EVERY, delete_after))
    return build_demo(
        pipeline,
        max_video_frames=max_video_frames,
        delete_after=delete_after,
        delete_every=every,
        batch_size=default_batch_size(pipeline.device) if batch_size is None else batch_size,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HifiFace face swapping app (Gradio).")
    parser.add_argument(
        "--model",
        default=os.environ.get("HIFIFACE_MODEL"),
        help="model folder or Hub repository (default: $HIFIFACE_MODEL)",
    )
    parser.add_argument(
        "--revision",
        default=os.environ.get("HIFIFACE_REVISION") or None,
        help="branch, tag or commit of a Hub model repository (default: $HIFIFACE_REVISION, else main)",
    )
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--detector",
        choices=["auto", "insightface", "dlib"],
        help="face detector (default: the model's saved setting, else auto)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="auto (default): bfloat16 + channels-last on hardware with native bf16, else float32",
    )
    parser.add_argument(
        "--parser", help="face parser folder (`hififace convert bisenet`): region/occlusion masks"
    )
    parser.add_argument(
        "--enhancer", help="face-restoration checkpoint (GFPGAN, RestoreFormer, CodeFormer ...)"
    )
    parser.add_argument("--max-file-size", default="50mb", help="largest upload accepted (default 50mb)")
    parser.add_argument(
        "--max-video-frames", type=int, default=3000, help="longest video accepted, in frames"
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve Gradio's MCP server, so assistants can call the swap (needs gradio[mcp])",
    )
    parser.add_argument(
        "--delete-after",
        type=int,
        default=DELETE_AFTER,
        metavar="SECONDS",
        help=f"delete uploads and results this long after they were written (default {DELETE_AFTER})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=MAX_QUEUE,
        help=f"waiting requests past which new ones are told to try again (default {MAX_QUEUE})",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"image swaps of up to N waiting users run through the generator together (default "
        f"{BATCH_SIZE_GPU} on a GPU, {BATCH_SIZE_CPU} on a CPU: measured in benchmarks/load.py)",
    )
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main(argv: list[str] | None = None, block: bool = True) -> gr.Blocks:
    """Parse the arguments, load once, launch. With block=False, return the running app."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    demo = create_app(
        args.model,
        args.device,
        args.detector,
        args.dtype,
        args.max_video_frames,
        revision=args.revision,
        parser=args.parser,
        enhancer=args.enhancer,
        delete_after=args.delete_after,
        batch_size=args.batch_size,
    )
    # one swap (or one batch of image swaps) at a time (the model is shared); past max_size Gradio
    # answers "Queue is full! Please try again." instead of letting waits grow without end
    demo.queue(default_concurrency_limit=1, max_size=args.max_queue)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=args.max_file_size,
        prevent_thread_lock=not block,
        footer_links=["api", "gradio"],
        **({"mcp_server": True} if args.mcp else {}),
    )
    return demo


# ------------------------------------------------------------------------------ helpers


def _options(prefix: str) -> tuple[gr.Dropdown, gr.Image, gr.Slider, gr.Slider]:
    face = gr.Dropdown(
        FACE_CHOICES,
        value="largest",
        label="Which target face(s)",
        info="or type face indices from the left, from 0: 0,2 swaps the first and the third",
        allow_custom_value=True,  # several faces ("0,2"), from clicks on the face gallery or the API
        elem_id=f"{prefix}-face",
    )
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            identity = gr.Slider(
                0, 1, value=1.0, step=0.05, label="Identity strength (ArcFace identity of the source)"
            )
            shape = gr.Slider(
                0, 1, value=1.0, step=0.05, label="Shape strength (3D face shape of the source)"
            )
        reference = uploaded_image(label="Reference face: swap the target faces that look like this person")
    return face, reference, identity, shape


def _frame_count(video: str | None, max_frames: int | None) -> int:
    """Frames a video swap will do (the container's count, else 25 fps × 60 s), for ZeroGPU's duration."""
    frames = None
    if video:
        with contextlib.suppress(Exception):  # an unreadable video fails later with its own message
            from hififace.video import VideoReader

            with VideoReader(Path(video)) as reader:
                frames = reader.info.frames
    frames = frames or 25 * 60
    return max(1, min(frames, max_frames) if max_frames else frames)


def _quality_options(prefix: str) -> list[gr.components.Component]:
    """Masks, several source photos, face mapping and restoration: a second Advanced accordion."""
    with gr.Accordion("Advanced: masks, several sources, face mapping, restoration", open=False):
        masks, padding, regions = _mask_inputs(prefix)
        blend = gr.Slider(0, 1, value=0.8, step=0.05, label="Face restoration blend (with --enhancer)")
        more = gr.File(
            label="More photos of the source person (identities averaged)", file_count="multiple",
            file_types=["image"], elem_id=f"{prefix}-more-sources",
        )  # fmt: skip
        files = gr.File(
            label="Face mapping: upload the source and reference photos", file_count="multiple",
            file_types=["image"], elem_id=f"{prefix}-mapping-files",
        )  # fmt: skip
        mapping = gr.Dataframe(
            headers=["source file name", "reference file name"], datatype=["str", "str"],
            row_count=(1, "dynamic"), col_count=(2, "fixed"), type="array", elem_id=f"{prefix}-mapping",
            label="Face mapping: target faces like the reference receive the source (replaces Source face)",
        )  # fmt: skip
    return [masks, regions, padding, blend, more, mapping, files]


def _mask_inputs(prefix: str) -> tuple[gr.CheckboxGroup, gr.Slider, gr.CheckboxGroup]:
    """The paste-back mask inputs (issue 10's masks), shared by the Image, Video and Live tabs."""
    with gr.Row():
        masks = gr.CheckboxGroup(
            list(MASK_TYPES), value=list(DEFAULT_MASKS), label="Paste-back masks (multiplied)",
            elem_id=f"{prefix}-masks",
        )  # fmt: skip
        padding = gr.Slider(
            0, 0.3, value=0.05, step=0.01, label="Box mask feather (fraction of the crop)",
            elem_id=f"{prefix}-mask-padding",
        )  # fmt: skip
    regions = gr.CheckboxGroup(
        list(REGION_GROUPS),
        value=list(DEFAULT_REGIONS),
        label="Regions swapped (region mask, face parser)",
        elem_id=f"{prefix}-regions",
    )
    return masks, padding, regions


def _quality(pipeline: HifiFacePipeline, masks, regions, mask_padding, enhancer_blend) -> dict[str, Any]:
    """The pipeline options of the quality inputs; inputs left empty keep the pipeline's defaults."""
    options: dict[str, Any] = {}
    if masks:
        options["masks"] = pipeline.mask_options(masks, regions or None, mask_padding)
    if enhancer_blend is not None and pipeline.enhancer is not None:
        options["enhancer_blend"] = float(enhancer_blend)
    return options


def _image_request(
    pipeline: HifiFacePipeline,
    source: Any,
    target: Any,
    face: Any,
    reference: Any,
    identity_strength: Any,
    shape_strength: Any,
    masks: Any,
    regions: Any,
    mask_padding: Any,
    enhancer_blend: Any,
    more_sources: Any,
    mapping: Any,
    mapping_files: Any,
) -> tuple[dict[str, Any], list[str]]:
    """One image request's `HifiFacePipeline.swap` arguments, and its upload folders (kept out of messages).

    Raises:
        gr.Error: a missing upload or reference, a bad face-mapping row, mask options the pipeline refuses.
    """
    pairs = _mapping_pairs(mapping, mapping_files)
    source = _sources(source, more_sources) if not pairs else None
    _require(source is not None or bool(pairs), "Upload a source image: the face to put in.")
    _require(target, "Upload a target image: the picture to put the face into.")
    _require(
        face != "reference" or reference is not None,
        "Upload a reference face (Advanced) to use that choice.",
    )
    folders = _upload_folders(source, target, reference)
    with _as_gradio_error(*folders):
        request = dict(
            source=source,
            target=target,
            face=face or "largest",
            reference=reference,
            identity_strength=float(identity_strength),
            shape_strength=float(shape_strength),
            **_quality(pipeline, masks, regions, mask_padding, enhancer_blend),
            mapping=pairs or None,
        )
    return request, folders


def _sources(source: Any, more: Any) -> Any:
    """The source photo and any extra photos of the same person, as one list (or the one photo)."""
    extra = [getattr(f, "name", f) for f in (more or [])]
    if source is None:
        return extra or None
    return [source, *extra] if extra else source


def _mapping_pairs(rows: Any, files: Any) -> list[tuple[str, str]]:
    """(reference, source) paths from the mapping table's filled rows of uploaded file names."""
    rows = rows.values.tolist() if hasattr(rows, "values") else (rows or [])
    uploaded = {Path(getattr(f, "name", f)).name: str(getattr(f, "name", f)) for f in (files or [])}
    pairs = []
    for row in rows:
        cells = [str(c).strip() if c is not None else "" for c in list(row)[:2]]
        if len(cells) < 2 or not any(cells):
            continue
        if not all(cells):
            raise gr.Error("Each face-mapping row needs a source file name and a reference file name.")
        missing = [c for c in cells if c not in uploaded]
        if missing:
            raise gr.Error(f"Face mapping: {missing[0]} is not among the uploaded mapping photos.")
        pairs.append((uploaded[cells[1]], uploaded[cells[0]]))
    return pairs


def _upload_folders(*files: Any) -> list[str]:
    """Gradio's folders of the uploaded files, to keep them out of messages."""
    return [str(Path(file).parent) + os.sep for file in files if isinstance(file, str) and os.sep in file]


def _require(condition: Any, message: str) -> None:
    if condition is None or condition is False:
        raise gr.Error(message)


@contextlib.contextmanager
def _as_gradio_error(hide: str | None = None, *more: str | None) -> Iterator[None]:
    """Turn the pipeline's input errors into `gr.Error` messages (optionally hiding temp folders)."""
    try:
        yield
    except SwapError as error:
        raise gr.Error(_error_message(error, hide, *more)) from error


def _error_message(error: SwapError, *hide: str | None) -> str:
    """The pipeline's one-line message for the page: the folders `hide` removed, a capital first."""
    message = str(error)
    for folder in hide:
        message = message.replace(folder, "") if folder else message
    return message[:1].upper() + message[1:]


def _intermediates(result: SwapResult) -> dict[str, np.ndarray]:
    """Each intermediate of every swapped face, faces side by side, low resolution enlarged."""
    size = max(face.target_crop.shape[0] for face in result.faces)
    rows: dict[str, list[np.ndarray]] = {}
    for face in result.faces:
        for key, picture in face.intermediates().items():
            factor = max(1, size // picture.shape[0])
            rows.setdefault(key, []).append(picture.repeat(factor, axis=0).repeat(factor, axis=1))
    return {key: np.concatenate(pictures, axis=1) for key, pictures in rows.items()}


def _view(data: dict[str, np.ndarray], key: str, on: bool) -> dict:
    return gr.update(value=data.get(key), visible=bool(on) and key in data)


def _show_all(data: dict[str, np.ndarray], *checked: bool) -> list[dict]:
    if "error" in data:  # this user's request failed inside a batch of several
        raise gr.Error(data["error"])
    return [_view(data, key, on) for (key, _), on in zip(INTERMEDIATES, checked, strict=True)]


def _example_files(folder: Path) -> dict[str, list[list[str]]] | None:
    """Examples from photos that ship in installed packages (skimage's astronaut, insightface's t1.jpg)."""
    try:
        from skimage import data

        folder.mkdir(parents=True, exist_ok=True)
        astronaut = folder / "astronaut.png"
        if not astronaut.is_file():
            save_image(astronaut, data.astronaut())
        examples: dict[str, list[list[str]]] = {"image": [], "video": []}
        import importlib.util

        spec = importlib.util.find_spec("insightface")
        group = Path(spec.origin).parent / "data" / "images" / "t1.jpg" if spec and spec.origin else None
        if group is not None and group.is_file():
            copy = folder / "t1.jpg"
            if not copy.is_file():
                shutil.copyfile(group, copy)
            examples["image"] += [[str(astronaut), str(copy)], [str(copy), str(astronaut)]]
        clip = folder / "astronaut-clip.mp4"
        if not clip.is_file():
            _write_example_clip(data.astronaut(), clip)
        examples["video"].append(
            [str(copy if group is not None and group.is_file() else astronaut), str(clip)]
        )
        return examples
    except Exception as e:  # examples are a convenience; the app works without them
        logger.warning("no examples: %s", e)
        return None


def _write_example_clip(image: np.ndarray, path: Path, frames: int = 20, fps: int = 10) -> None:
    """A short slow zoom into a still photo, so the Video tab has something to try."""
    import av
    import cv2

    height, width = image.shape[:2]
    with atomic_path(path, keep_suffix=True) as tmp, av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            zoom = 1.0 + 0.1 * i / frames
            matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
            frame = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    main()
