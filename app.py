"""HifiFace face swapping in the browser: a Gradio app, also a Hugging Face Space.

    python app.py --model models/hififace-256 [--host 127.0.0.1 --port 7860]
    HIFIFACE_MODEL=user/hififace-256 python app.py

The model (a folder written by `hififace convert` / `save_pretrained`, or a Hub repository) loads
once at start. Without one, the app shows how to get weights instead of failing. The image swap is
also an API endpoint, `/swap_image` (source and target image first, every other input optional):

    from gradio_client import Client, handle_file
    Client("http://127.0.0.1:7860").predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/swap_image")

Everything the app makes carries an "AI-generated" marker (PNG text chunks, video metadata tags).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from hififace.atomic import atomic_path
from hififace.faces.masks import DEFAULT_MASKS, DEFAULT_REGIONS, MASK_TYPES, REGION_GROUPS
from hififace.imageio import save_image
from hififace.pipeline import AI_METADATA, HifiFacePipeline, ModelLoadError, SwapError, SwapResult
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
    "metadata; keep that label and say that the picture is synthetic when you share it. Uploads are "
    "processed for this request only and are not stored by the app."
)
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


def gpu(duration: int) -> Callable[[Callable], Callable]:
    """`spaces.GPU(duration=...)` where the `spaces` package exists, a no-op elsewhere."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def build_demo(
    pipeline: HifiFacePipeline, max_video_frames: int | None = 3000, examples_dir: Path | None = None
) -> gr.Blocks:
    """The app's page for a loaded pipeline: an Image tab and a Video tab on the same handlers."""
    output_dir = Path(tempfile.mkdtemp(prefix="hififace-app-"))
    examples = _example_files(examples_dir or Path(tempfile.gettempdir()) / "hififace-examples")
    swap_image, swap_video = _handlers(pipeline, output_dir, max_video_frames)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"# {TITLE}\nHifiFace (IJCAI 2021, [paper](https://arxiv.org/abs/2106.09965)) puts the face "
            "of a source photo into a target photo or video, keeping the target's expression, pose, light "
            "and background and carrying the source's face shape."
        )
        gr.Markdown(RESPONSIBLE_USE, elem_id="responsible-use")
        with gr.Tabs():
            with gr.Tab("Image"):
                _image_tab(swap_image, examples)
            with gr.Tab("Video"):
                _video_tab(swap_video, examples)
        gr.Markdown(
            f"Model: {pipeline.image_size}×{pipeline.image_size}, detector `{pipeline.detector!r}`, "
            f"device `{pipeline.device}`. Faces are aligned, swapped and pasted back; pixels away from "
            "the swapped faces are left exactly as they were."
        )
    return demo


def _handlers(
    pipeline: HifiFacePipeline, output_dir: Path, max_video_frames: int | None
) -> tuple[Callable, Callable]:
    """The image and video swap functions the page (and its API) calls; results go to `output_dir`."""

    @gpu(duration=60)
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
        pairs = _mapping_pairs(mapping, mapping_files)
        source = _sources(source, more_sources) if not pairs else None
        _require(source is not None or bool(pairs), "Upload a source image: the face to put in.")
        _require(target, "Upload a target image: the picture to put the face into.")
        _require(
            face != "reference" or reference is not None,
            "Upload a reference face (Advanced) to use that choice.",
        )
        with _as_gradio_error():
            result = pipeline.swap(
                source,
                target,
                face=face or "largest",
                reference=reference,
                identity_strength=float(identity_strength),
                shape_strength=float(shape_strength),
                **_quality(pipeline, masks, regions, mask_padding, enhancer_blend),
                mapping=pairs or None,
            )
        path = save_image(output_dir / f"swapped-{uuid.uuid4().hex[:12]}.png", result.image, AI_METADATA)
        return str(path), _intermediates(result)

    @gpu(duration=240)
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


def _image_tab(swap_image: Callable, examples: dict[str, list] | None) -> None:
    """Inputs, result, options and the intermediates viewer of the Image tab (inside a gr.Tab)."""
    with gr.Row():
        source = gr.Image(label="Source face", type="numpy", elem_id="image-source")
        target = gr.Image(label="Target image", type="numpy", elem_id="image-target")
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
    if examples:
        gr.Examples(
            examples["image"],
            inputs=[source, target],
            label="Examples (photos shipped with scikit-image and insightface)",
        )

    run.click(
        swap_image,
        [source, target, face, reference, identity, shape, *quality],
        [result, state],
        api_name="swap_image",
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
        v_source = gr.Image(label="Source face", type="numpy", elem_id="video-source")
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
    detector: str = "auto",
    dtype: str = "float32",
    max_video_frames: int | None = 3000,
    parser: str | None = None,
    enhancer: str | None = None,
) -> gr.Blocks:
    """Load the pipeline once and build the page, or the how-to-get-weights page without a model."""
    if not model:
        return build_no_model_demo()
    try:
        pipeline = HifiFacePipeline.from_pretrained(
            model, detector=detector, dtype=dtype, parser=parser, enhancer=enhancer
        )
    except ModelLoadError as e:
        logger.error("%s", e)
        return build_no_model_demo(str(e))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline.to(device)
    return build_demo(pipeline, max_video_frames=max_video_frames)


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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, block: bool = True) -> gr.Blocks:
    """Parse the arguments, load once, launch. With block=False, return the running app."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    demo = create_app(
        args.model, args.device, args.detector, args.dtype, args.max_video_frames, args.parser, args.enhancer
    )
    demo.queue(default_concurrency_limit=1)  # one swap at a time: the model is shared
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
        reference = gr.Image(
            label="Reference face: swap the target faces that look like this person", type="numpy"
        )
    return face, reference, identity, shape


def _quality_options(prefix: str) -> list[gr.components.Component]:
    """Masks, several source photos, face mapping and restoration: a second Advanced accordion."""
    with gr.Accordion("Advanced: masks, several sources, face mapping, restoration", open=False):
        with gr.Row():
            masks = gr.CheckboxGroup(
                list(MASK_TYPES), value=list(DEFAULT_MASKS), label="Paste-back masks (multiplied)",
                elem_id=f"{prefix}-masks",
            )  # fmt: skip
            padding = gr.Slider(
                0, 0.3, value=0.05, step=0.01, label="Box mask feather (fraction of the crop)"
            )
            blend = gr.Slider(0, 1, value=0.8, step=0.05, label="Face restoration blend (with --enhancer)")
        regions = gr.CheckboxGroup(
            list(REGION_GROUPS),
            value=list(DEFAULT_REGIONS),
            label="Regions swapped (region mask, face parser)",
        )
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


def _quality(pipeline: HifiFacePipeline, masks, regions, mask_padding, enhancer_blend) -> dict[str, Any]:
    """The pipeline options of the quality inputs; inputs left empty keep the pipeline's defaults."""
    options: dict[str, Any] = {}
    if masks:
        options["masks"] = pipeline.mask_options(masks, regions or None, mask_padding)
    if enhancer_blend is not None and pipeline.enhancer is not None:
        options["enhancer_blend"] = float(enhancer_blend)
    return options


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


def _require(condition: Any, message: str) -> None:
    if condition is None or condition is False:
        raise gr.Error(message)


@contextlib.contextmanager
def _as_gradio_error(hide: str | None = None) -> Iterator[None]:
    """Turn the pipeline's input errors into `gr.Error` messages (optionally hiding a temp folder)."""
    try:
        yield
    except SwapError as error:
        message = str(error).replace(hide, "") if hide else str(error)
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
