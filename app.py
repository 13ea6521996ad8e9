"""HifiFace face swapping in the browser: a Gradio app, also a Hugging Face Space.

    python app.py --model models/hififace-256 [--host 127.0.0.1 --port 7860]
    HIFIFACE_MODEL=user/hififace-256 python app.py

The model (a folder written by `hififace convert` / `save_pretrained`, or a Hub repository) loads
once at start. Without one, the app shows how to get weights instead of failing. The image swap is
also an API endpoint, `/swap_image` (source and target image first, every other input optional):

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860").predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/swap_image")

Everything the app makes carries an "AI-generated" marker (PNG text chunks, video metadata tags).

Uploads are handed to the pipeline as files and decoded by the project's own loader (the same pixel
limit, read from the header before decoding, the same RGBA and 16-bit handling and one-line errors
as the command line). Uploads and results are deleted after `--delete-after` seconds and when the
app stops. Image swaps of several users are batched through the generator together, and a bounded
queue turns requests away with "try again" when it is full.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
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
from hififace.imageio import save_image
from hififace.pipeline import (
    AI_METADATA,
    HifiFacePipeline,
    ModelLoadError,
    SourceIdentity,
    SwapError,
    SwapResult,
)
from hififace.video import swap_video as swap_video_file

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
# Image swaps of different users that run through the generator together, on a GPU. On a CPU a
# batch costs as much as its requests one by one, and each waits for the whole batch
# (benchmarks/load.py: 0.16 against 0.19 requests/s on 2 busy cores), so there the default is 1.
MAX_BATCH = 4
MAX_QUEUE = 20  # waiting requests past which new ones get "queue is full, try again"


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
# (key of FaceSwap.intermediates(), label); the low-resolution ones are shown enlarged.
INTERMEDIATES = (
    ("mask_low", "M_low: feature-fusion mask (low resolution)"),
    ("mask", "M_r: face mask"),
    ("image_low", "I_low: low-resolution swap"),
    ("image_out", "I_out: decoded face before blending"),
    ("source_crop", "Aligned source face"),
    ("target_crop", "Aligned target face"),
)
FACE_CHOICES = [
    ("the largest face", "largest"),
    ("all faces", "all"),
    ("faces like the reference (Advanced)", "reference"),
] + [(f"face {i + 1} from the left", str(i)) for i in range(10)]


def gpu(duration: int) -> Callable[[Callable], Callable]:
    """`spaces.GPU(duration=...)` where the `spaces` package exists, a no-op elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def build_demo(
    pipeline: HifiFacePipeline,
    max_video_frames: int | None = 3000,
    examples_dir: Path | None = None,
    delete_after: int = DELETE_AFTER,
    delete_every: int = DELETE_EVERY,
    max_batch: int | None = None,
) -> gr.Blocks:
    """The app's page for a loaded pipeline: an Image tab and a Video tab on the same handlers.

    Args:
        pipeline (HifiFacePipeline): loaded once, shared by every request.
        max_video_frames (int, default 3000): longest video accepted.
        examples_dir (Path, optional): where the example files are written.
        delete_after (int, default 600): seconds after which uploads and results are deleted.
        delete_every (int, default 60): seconds between two deletion rounds.
        max_batch (int, optional): `max_batch_size` of `/swap_image`; default `MAX_BATCH` on a
            GPU, 1 on a CPU (see `MAX_BATCH`).
    """
    output_dir = Path(tempfile.mkdtemp(prefix="hififace-app-"))
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
                if max_batch is None:
                    max_batch = MAX_BATCH if pipeline.device.type == "cuda" else 1
                _image_tab(swap_image, examples, max_batch)
            with gr.Tab("Video"):
                _video_tab(swap_video, examples)
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
    """Sweep `folder` every `every` seconds; remove it once the launched app has stopped, or at exit."""
    atexit.register(shutil.rmtree, folder, ignore_errors=True)

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

    @gpu(duration=60)
    def swap_image(source, target, face="largest", reference=None, identity_strength=1.0, shape_strength=1.0):
        """A Gradio batch (`batch=True`): every argument is a list, one entry per waiting request.

        (Names and defaults are one request's: Gradio shows them on the API page and fills them in
        per request; the function itself always receives lists.) Each request is read, detected
        and chosen on its own; then every chosen face of every request with the same strengths
        goes through the generator in one `swap_faces` call, each with its own source's identity
        code. A request that fails alone raises its `gr.Error`; in a batch of several, its result
        is empty and its message goes to that user's page (`_show_all`).
        """
        prepared: dict[int, tuple[SourceIdentity, np.ndarray, list]] = {}
        errors: dict[int, str] = {}
        strengths = list(zip(identity_strength, shape_strength, strict=True))
        for i, request in enumerate(zip(source, target, face, reference, strict=True)):
            try:
                prepared[i] = _prepare(pipeline, *request, *strengths[i])
            except gr.Error as error:
                if len(source) == 1:
                    raise
                errors[i] = error.message
                logger.info("one request of a batch of %d failed: %s", len(source), error.message)
        paths: list[str | None] = [None] * len(source)
        states: list[dict] = [{"error": errors[i]} if i in errors else {} for i in range(len(source))]
        groups: dict[tuple[float, float], list[int]] = {}
        for i in prepared:
            groups.setdefault((float(strengths[i][0]), float(strengths[i][1])), []).append(i)
        for group, members in groups.items():
            for i, result in zip(
                members, _swap_together(pipeline, [prepared[i] for i in members], group), strict=True
            ):
                path = save_image(
                    output_dir / f"swapped-{uuid.uuid4().hex[:12]}.png", result.image, AI_METADATA
                )
                paths[i], states[i] = str(path), _intermediates(result)
        return paths, states

    @gpu(duration=240)
    def swap_video(
        source,
        video,
        face="largest",
        reference=None,
        identity_strength=1.0,
        shape_strength=1.0,
        progress=gr.Progress(),  # noqa: B008 (how Gradio asks for a progress tracker)
    ):
        _require(source, "Upload a source image: the face to put in.")
        _require(video, "Upload a target video.")
        _require(
            face != "reference" or reference is not None,
            "Upload a reference face (Advanced) to use that choice.",
        )
        out = output_dir / f"swapped-{uuid.uuid4().hex[:12]}.mp4"
        progress((0, None), desc="Swapping faces", unit="frames")
        with _as_gradio_error(hide=str(Path(video).parent) + os.sep):
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
                progress=lambda done, total: progress((done, total), desc="Swapping faces", unit="frames"),
            )
        note = (
            f"{summary.frames} frames at {summary.fps:g} fps: {summary.swapped} swapped, "
            f"{summary.passed_through} without a face left unchanged"
            + (", audio kept." if summary.audio else ".")
        )
        return str(out), note

    return swap_image, swap_video


def _image_tab(swap_image: Callable, examples: dict[str, list] | None, max_batch: int = MAX_BATCH) -> None:
    """Inputs, result, options and the intermediates viewer of the Image tab (inside a gr.Tab)."""
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
    if examples:
        gr.Examples(
            examples["image"],
            inputs=[source, target],
            label="Examples (photos shipped with scikit-image and insightface)",
        )

    run.click(
        swap_image,
        [source, target, face, reference, identity, shape],
        [result, state],
        api_name="swap_image",
        batch=True,
        max_batch_size=max_batch,
    ).then(_show_all, [state, *toggles], views, api_visibility="private", queue=False)
    for (key, _), toggle, view in zip(INTERMEDIATES, toggles, views, strict=True):
        toggle.change(
            lambda data, on, key=key: _view(data, key, on),
            [state, toggle],
            view,
            api_visibility="private",
            queue=False,
        )


def _video_tab(swap_video: Callable, examples: dict[str, list] | None) -> None:
    """Inputs, result and options of the Video tab (inside a gr.Tab)."""
    with gr.Row():
        v_source = uploaded_image(label="Source face", elem_id="video-source")
        v_target = gr.Video(label="Target video", elem_id="video-target")
        v_result = gr.Video(label="Swapped (AI-generated)", interactive=False, elem_id="video-result")
    v_face, v_reference, v_identity, v_shape = _options("video")
    v_run = gr.Button("Swap faces in the video", variant="primary", elem_id="swap-video")
    v_note = gr.Markdown()
    if examples:
        gr.Examples(examples["video"], inputs=[v_source, v_target], label="Example")
    v_run.click(
        swap_video,
        [v_source, v_target, v_face, v_reference, v_identity, v_shape],
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
    detector: str = "auto",
    dtype: str = "float32",
    max_video_frames: int | None = 3000,
    delete_after: int = DELETE_AFTER,
    max_batch: int | None = None,
) -> gr.Blocks:
    """Load the pipeline once and build the page, or the how-to-get-weights page without a model."""
    if not model:
        return build_no_model_demo()
    try:
        pipeline = HifiFacePipeline.from_pretrained(model, detector=detector, dtype=dtype)
    except ModelLoadError as e:
        logger.error("%s", e)
        return build_no_model_demo(str(e))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline.to(device)
    every = max(1, min(DELETE_EVERY, delete_after))
    return build_demo(
        pipeline,
        max_batch=max_batch,
        max_video_frames=max_video_frames,
        delete_after=delete_after,
        delete_every=every,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="HifiFace face swapping app (Gradio).")
    parser.add_argument(
        "--model",
        default=os.environ.get("HIFIFACE_MODEL"),
        help="model folder or Hub repository (default: $HIFIFACE_MODEL)",
    )
    parser.add_argument("--host", help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--detector", default="auto", choices=["auto", "insightface", "dlib"], help="face detector"
    )
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="autocast dtype"
    )
    parser.add_argument("--max-file-size", default="50mb", help="largest upload accepted (default 50mb)")
    parser.add_argument(
        "--max-video-frames", type=int, default=3000, help="longest video accepted, in frames"
    )
    parser.add_argument(
        "--delete-after",
        type=int,
        default=DELETE_AFTER,
        metavar="SECONDS",
        help=f"delete uploads and results this long after they were written (default {DELETE_AFTER})",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help=f"image swaps of different users run together (default {MAX_BATCH} on a GPU, 1 on a CPU)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=MAX_QUEUE,
        help=f"waiting requests past which new ones are told to try again (default {MAX_QUEUE})",
    )
    return parser.parse_args(argv)


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
        args.delete_after,
        args.max_batch,
    )
    # one batch at a time (the model is shared); past max_size Gradio answers "Queue is full! Please
    # try again." instead of letting waits grow without end
    demo.queue(default_concurrency_limit=1, max_size=args.max_queue)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=args.max_file_size,
        prevent_thread_lock=not block,
        footer_links=["api", "gradio"],
    )
    return demo


# ------------------------------------------------------------------------------ helpers


def _options(prefix: str) -> tuple[gr.Dropdown, gr.Image, gr.Slider, gr.Slider]:
    face = gr.Dropdown(FACE_CHOICES, value="largest", label="Which target face(s)", elem_id=f"{prefix}-face")
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


def _prepare(
    pipeline: HifiFacePipeline, source: Any, target: Any, face: Any, reference: Any, identity: Any, shape: Any
) -> tuple[SourceIdentity, np.ndarray, list]:
    """One request's source identity, target image and chosen faces (`gr.Error` on bad input)."""
    _require(source, "Upload a source image: the face to put in.")
    _require(target, "Upload a target image: the picture to put the face into.")
    _require(
        face != "reference" or reference is not None, "Upload a reference face (Advanced) to use that choice."
    )
    with _as_gradio_error(*_upload_folders(source, target, reference)):
        pipeline.check_inputs(float(identity), float(shape))
        encoded = pipeline.encode_source(source)
        image, name = pipeline.read_image(target, "target")
        choice = pipeline.face_choice(face or "largest", reference)
        chosen = pipeline.choose_faces(image, pipeline.detect_faces(image), choice, name=name)
    return encoded, image, chosen


def _swap_together(
    pipeline: HifiFacePipeline, requests: list[tuple[SourceIdentity, np.ndarray, list]], strengths: tuple
) -> list[SwapResult]:
    """Swap the chosen faces of several requests in one generator pass, each with its own source."""
    import torch

    jobs = [(r, image, face) for r, (_, image, chosen) in enumerate(requests) for face in chosen]
    codes = [requests[r][0].code for r, _, _ in jobs]
    first = requests[0][0]
    together = dataclasses.replace(
        first,
        code=type(first.code)(
            coeffs=torch.cat([c.coeffs for c in codes]), embedding=torch.cat([c.embedding for c in codes])
        ),
    )
    swaps = pipeline.swap_faces(together, [(image, face) for _, image, face in jobs], *strengths)
    results = []
    for r, (source, image, _) in enumerate(requests):
        mine = [
            dataclasses.replace(s, source_crop=source.crop)
            for (k, _, _), s in zip(jobs, swaps, strict=True)
            if k == r
        ]
        results.append(SwapResult(image=pipeline.composite(image, mine), faces=mine))
    return results


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
        message = str(error)
        for folder in (hide, *more):
            message = message.replace(folder, "") if folder else message
        raise gr.Error(message[:1].upper() + message[1:]) from error


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
