"""Live face swapping from a camera (or a video file standing in for one), frame by frame.

    pipeline = HifiFacePipeline.from_pretrained("models/hififace-256", dtype="bfloat16")
    summary = run_live(pipeline, "me.jpg", open_camera(0), record="recording.mp4")
    # LiveSummary(frames=412, swapped=398, passed_through=14, dropped=903, fps=4.1, ...)

The pieces, each usable alone (the Gradio app's Live tab uses `LiveSwapper` directly):

- `open_camera`: an int opens a camera device (OpenCV); a path opens a video file that stands in for
  one, paced at its own frame rate (or read frame by frame with `realtime=False`);
- `FrameGrabber`: reads the camera on a thread and keeps only the newest frame, so that when the
  model falls behind frames are dropped, never queued: latency stays one frame's work;
- `LiveSwapper`: one frame in, the swapped frame out, on the pipeline's public steps with the same
  face choice, strengths, masks, tracking and landmark smoothing as `swap_video`; the source's
  identity code is computed once; a frame without a (chosen) face passes through unchanged;
- `LiveRecorder` (H.264 with the "AI-generated" tags, atomic) and `VirtualCamera` (`pyvirtualcam`,
  the optional extra `hififace[live]`) are the outputs;
- `run_live`: the loop, with a frames-per-second readout; Ctrl-C ends it with the recording finalised.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hififace.atomic import atomic_path
from hififace.errors import SwapError
from hififace.faces import DlibDetector, Face, FaceChoice, five_from_68, select_faces
from hififace.faces.detection import predict_landmarks68
from hififace.faces.masks import MaskOptions
from hififace.formats import MP4_LIKE_SUFFIXES, VIDEO_OUTPUT_SUFFIXES
from hififace.pipeline import FaceSwap, HifiFacePipeline
from hififace.types import Image
from hififace.video.swap import VIDEO_METADATA
from hififace.video.tracking import FaceFollower, FaceTracker, LandmarkSmoother

__all__ = [
    "Camera",
    "CameraError",
    "FpsMeter",
    "FrameGrabber",
    "LiveFrame",
    "LiveRecorder",
    "LiveSummary",
    "LiveSwapper",
    "STAGES",
    "VirtualCamera",
    "open_camera",
    "run_live",
]

# Live frames are detected at this size at most: faces in front of a webcam are large, and the
# detector's time grows with the pixels (the pipeline's default of 1600 is for photos). On a 640 x 480
# frame dlib's HOG (one upsampling: faces from about 80 px of the frame) took 4x less at 320 than at 640;
# dlib's 68 landmarks are then placed again on the full-resolution frame (2-3 ms a face), so the
# alignment keeps full-resolution precision.
LIVE_DETECT_MAX_SIDE = 320
# Full-frame detection once every this many frames; in between, faces are looked for only near where
# they were (`FaceFollower`), and the whole frame again as soon as one is lost.
LIVE_REDETECT_EVERY = 10
# What a frame's time is spent on (`LiveSwapper.times`, `LiveSummary.stages_ms`), in milliseconds:
# capture (camera read and RGB conversion, on the camera's thread for a realtime camera), wait (for
# the next frame), detect (full frame at <= detect_max_side, or the followed faces' regions),
# landmarks (68 points again at full resolution, face choice, smoothing), align (alignment and
# tensor conversion around the model), priors (the target's 3DMM coefficients, and ArcFace when
# identity_strength < 1), generator (encoder, decoder, SFF), paste (masks and paste-back), output
# (recording, virtual camera).
STAGES = ("capture", "wait", "detect", "landmarks", "align", "priors", "generator", "paste", "output")
MILLISECOND = Fraction(1, 1000)


class CameraError(SwapError):
    """A camera cannot be used: no such device, an unreadable file, no frames, a missing package."""


@dataclass(frozen=True)
class LiveFrame:
    """One camera frame.

    Attributes:
        image (uint8 (H, W, 3)): the picture, RGB.
        time (float): when it was captured, in seconds on `time.monotonic()`'s clock (a file read
            frame by frame: its presentation time in the file).
        index (int): its position in the camera's stream, from 0 (frames dropped count too).
    """

    image: Image
    time: float
    index: int


class Camera:
    """A source of frames: `read()` returns the next `LiveFrame`, or None once the stream ended.

    Attributes:
        name (str): what it is, for messages.
        fps (float): the nominal frame rate.
        realtime (bool): frames come at the camera's pace, whatever the reader does (a device, or a
            file paced like one); False: each `read()` decodes the next frame of a file.
        read_ms (float): the work of the last `read()` in milliseconds (decoding, RGB conversion),
            without the time spent waiting for the frame.
    """

    name = "camera"
    fps = 30.0
    realtime = True
    read_ms = 0.0

    def read(self) -> LiveFrame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DeviceCamera(Camera):
    """A camera device through OpenCV (V4L2 on Linux, AVFoundation on macOS, DirectShow/MSMF on Windows)."""

    def __init__(self, index: int):
        import cv2

        self.name = f"camera {index}"
        self.capture = cv2.VideoCapture(index)
        if not self.capture.isOpened():
            self.capture.release()
            raise CameraError(
                f"no camera at index {index} (is one connected, and not used by another program?)"
            )
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) or 30.0
        self.count = 0

    def read(self) -> LiveFrame | None:
        import cv2

        ok, bgr = self.capture.read()  # blocks until the device has a frame: waiting, not work
        captured = time.monotonic()
        if not ok or bgr is None:
            return None
        start = time.perf_counter()
        frame = LiveFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), captured, self.count)
        self.read_ms = (time.perf_counter() - start) * 1000
        self.count += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class _FileCamera(Camera):
    """A video file standing in for a camera: decoded with PyAV, paced at its frame rate when `realtime`."""

    def __init__(self, path: Path, realtime: bool):
        import av

        self.name, self.realtime = str(path), realtime
        if not path.is_file():
            raise CameraError(f"{path}: no such video file (a camera is a number: --camera 0)")
        try:
            self.container = av.open(str(path))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise CameraError(f"{path}: cannot read the video ({e})") from e
        if not self.container.streams.video:
            self.container.close()
            raise CameraError(f"{path}: has no video stream")
        stream = self.container.streams.video[0]
        self.fps = float(stream.average_rate or stream.guessed_rate or 25)
        self.frames = self._decode(stream)
        self.start: float | None = None
        self.count = 0

    def _decode(self, stream: Any) -> Iterator[Any]:
        import av

        try:
            yield from self.container.decode(stream)
        except av.error.FFmpegError:
            return  # a damaged or truncated file ends the stream, as an unplugged camera would

    def read(self) -> LiveFrame | None:
        start = time.perf_counter()
        frame = next(self.frames, None)
        if frame is None:
            return None
        self.read_ms = (time.perf_counter() - start) * 1000
        t = float(frame.time) if frame.time is not None else self.count / self.fps
        if self.realtime:
            # Hand the frame over when a camera would have captured it, counted from the first.
            self.start = time.monotonic() - t if self.start is None else self.start
            delay = self.start + t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = self.start + t
        start = time.perf_counter()
        live = LiveFrame(frame.to_ndarray(format="rgb24"), t, self.count)
        self.read_ms += (time.perf_counter() - start) * 1000
        self.count += 1
        return live

    def close(self) -> None:
        self.container.close()


def open_camera(camera: int | str | os.PathLike, realtime: bool = True) -> Camera:
    """A camera device (an int, or a string of digits) or a video file standing in for one (a path).

    Args:
        camera (int, str or path): device index (0 is the default camera) or a video file.
        realtime (bool, default True): a file hands out its frames at its own frame rate, as a
            camera would (frames the swap cannot keep up with are dropped); False reads every frame.

    Raises:
        CameraError: no such device or file, or the file has no video stream.
    """
    if isinstance(camera, int) or (isinstance(camera, str) and camera.strip().isdigit()):
        return _DeviceCamera(int(camera))
    return _FileCamera(Path(camera), realtime)


class FrameGrabber:
    """Read a realtime camera on a thread, keeping only its newest frame (a context manager).

    When the consumer is slower than the camera, frames it never took are dropped (and counted), so
    what it gets is never older than one frame's work.

    Args:
        camera (Camera): the camera; read on the grabber's thread only.

    Attributes:
        dropped (int): frames replaced by a newer one before anyone took them.
        last_read_ms (float): the camera's work for the frame the consumer took last (`Camera.read_ms`).
        read_ms (float): the camera's work for every frame read so far, dropped ones included.
    """

    def __init__(self, camera: Camera):
        self.camera = camera
        self.dropped = 0
        self.last_read_ms = self.read_ms = 0.0
        self._latest: tuple[LiveFrame, float] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="hififace-camera", daemon=True)

    def __enter__(self) -> FrameGrabber:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.camera.read()
                with self._ready:
                    if frame is None:
                        break
                    self.dropped += self._latest is not None
                    self._latest = frame, self.camera.read_ms
                    self.read_ms += self.camera.read_ms
                    self._ready.notify()
        except BaseException as e:  # handed to the consumer, who reports it
            self._error = e
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify()

    def __iter__(self) -> Iterator[LiveFrame]:
        """The newest frame each time the consumer asks, until the camera ends."""
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._latest is not None or self._ended)
                latest, self._latest = self._latest, None
            frame = None if latest is None else latest[0]
            if latest is not None:
                self.last_read_ms = latest[1]
            if frame is None:
                if self._error is not None:
                    raise CameraError(f"{self.camera.name} failed: {self._error}") from self._error
                return
            yield frame


class FpsMeter:
    """Frames per second over the last `window` frames (the readout)."""

    def __init__(self, window: int = 30):
        self.times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> float:
        """Count a frame shown at `now` (default: now); returns the current rate."""
        self.times.append(time.monotonic() if now is None else now)
        return self.fps

    @property
    def fps(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


class LiveSwapper:
    """Swap the source's face into one live frame after another, tracking faces between frames.

    Built on the public steps (`detect_faces`, `select_faces`, `swap_faces`, `composite`) with the
    tracking and landmark smoothing of `swap_video`. Frames come one at a time (batch 1: waiting
    for a batch would add its length to the latency). What is cut for speed, against the video path:
    detection on a copy at most `detect_max_side` large, with dlib's 68 landmarks placed again at
    full resolution; between full detections, faces looked for only near the previous frame's
    (`FaceFollower`), which also spares a "reference" choice its per-frame ArcFace embeddings.

    Args:
        pipeline (HifiFacePipeline): detector and generator (its dtype decides the fast path).
        source (path, PIL image, numpy array or SourceIdentity): the face to put in; encoded once, here.
        face, reference, identity_strength, shape_strength, mask_erode, mask_blur: as in
            `HifiFacePipeline.swap`; a frame where the choice finds no face passes through.
        smoothing (LandmarkSmoother or bool, default True): as in `swap_video`.
        detect_max_side (int, default 320): frames are detected on a copy at most this large.
        redetect_every (int, default 10): the whole frame is searched every this many frames (and
            whenever a followed face is lost); 1 searches every frame (no following).
        masks, regions, mask_padding (optional): the paste-back masks, as in `HifiFacePipeline.swap`
            (e.g. "model,box,region", "skin,nose,mouth", 0.05); the pipeline's when not given.

    Raises:
        InvalidImageError, ImageTooLargeError, NoFaceError (source or reference), FaceChoiceError,
        SwapError (strengths; bad mask options, or "region"/"occlusion" without a face parser).

    Attributes:
        swapped, passed_through (int): frames so far with / without a swapped face.
        times (dict of str to float): milliseconds the last frame spent per stage (`STAGES`).
    """

    def __init__(
        self,
        pipeline: HifiFacePipeline,
        source: Any,
        face: str | int | FaceChoice = "largest",
        reference: Any = None,
        identity_strength: float = 1.0,
        shape_strength: float = 1.0,
        mask_erode: int | None = None,
        mask_blur: int | None = None,
        smoothing: LandmarkSmoother | bool = True,
        detect_max_side: int = LIVE_DETECT_MAX_SIDE,
        redetect_every: int = LIVE_REDETECT_EVERY,
        masks: MaskOptions | str | Sequence[str] | None = None,
        regions: str | Sequence[str] | None = None,
        mask_padding: float | Sequence[float] | None = None,
    ):
        pipeline.check_inputs(identity_strength, shape_strength)
        self.masks = pipeline.mask_options(masks, regions, mask_padding)  # checked before any frame
        # A shallow copy shares the model and the detector; only the detection size differs.
        self.pipeline = copy.copy(pipeline)
        self.pipeline.detect_max_side = min(pipeline.detect_max_side, detect_max_side)
        self.source = pipeline.encode_source(source)
        self.choice = pipeline.face_choice(face, reference)
        smoother = LandmarkSmoother() if smoothing is True else (smoothing or None)
        self.tracker = FaceTracker(smoother)
        self.strengths = (identity_strength, shape_strength)
        self.mask = (mask_erode, mask_blur)
        self.swapped = self.passed_through = 0
        self.follower = FaceFollower(pipeline.detector.detect, redetect_every)
        detector = pipeline.detector
        self.predictor_path = detector.predictor_path if isinstance(detector, DlibDetector) else None
        self.times: dict[str, float] = {}

    def __call__(self, image: Image, t: float) -> tuple[Image, list[FaceSwap]]:
        """(the frame to show, its swapped faces) for the RGB frame `image` captured at `t` seconds.

        Without a chosen face the frame itself comes back (the same array) with no swaps.
        """
        pipeline = self.pipeline
        self.times = times = dict.fromkeys(STAGES[2:-1], 0.0)
        chosen = self._find_faces(image, times)
        with _stage(times, "landmarks"):
            faces = self.tracker(image, chosen, t)
        if not faces:
            self.passed_through += 1
            return image, []
        with _stage(times, "align"), _ModelClock(pipeline.model, times):
            swaps = pipeline.swap_faces(self.source, [(image, f) for f in faces], *self.strengths)
        times["align"] -= times["priors"] + times["generator"]  # what swap_faces does around the model
        with _stage(times, "paste"):
            image = pipeline.composite(image, swaps, *self.mask, masks=self.masks)
        self.swapped += 1
        return image, swaps

    def _find_faces(self, image: Image, times: dict[str, float]) -> list[Face]:
        """The chosen faces of `image`: followed from the previous frame, else detected and chosen."""
        pipeline, follower = self.pipeline, self.follower
        with _stage(times, "detect"):
            chosen = follower.follow(image)  # found in regions scaled down around each face
            reduced = chosen is not None or max(image.shape[:2]) > pipeline.detect_max_side
            if chosen is None:
                found = pipeline.detect_faces(image)
        with _stage(times, "landmarks"):
            if chosen is None:
                chosen = select_faces(
                    found, self.choice, embed=lambda some: pipeline.embed_faces(image, some)
                )
            if reduced:
                chosen = [self._full_resolution(image, face) for face in chosen]
        follower.update(chosen)
        return chosen

    def _full_resolution(self, image: Image, face: Face) -> Face:
        """dlib's 68 landmarks placed again on the full-resolution frame, in the box found at reduced size.

        The detector's own points were placed on the reduced copy: up to half a pixel of that copy,
        a pixel or more of the frame, which the alignment would turn into shimmer.
        """
        if self.predictor_path is None or face.landmarks68 is None:
            return face  # no 68-point predictor (insightface: five points from its own network)
        points = predict_landmarks68(image, face.box, self.predictor_path)
        return Face(box=face.box, score=face.score, landmarks=five_from_68(points), landmarks68=points)


class _ModelClock:
    """Time the model's priors and its whole forward inside a `with` block, into `times`.

    Forward hooks on the model and on its prior networks (F_3d, ArcFace), registered for the block
    only and counting only this thread's calls (the model may be shared with other threads, e.g.
    the app's image tab). "generator" gets the forward's time minus the priors'. On a GPU each hook
    synchronises, so the split is the work's, not the launches'.
    """

    def __init__(self, model: torch.nn.Module, times: dict[str, float]):
        self.model, self.times = model, times
        self.thread = threading.get_ident()
        self.cuda = next(model.parameters()).device.type == "cuda"
        self.started: dict[int, float] = {}
        self.handles: list[Any] = []

    def __enter__(self) -> _ModelClock:
        identity = self.model.identity
        for module, stage in (
            (self.model, "model"),
            (identity.face3d, "priors"),
            (identity.arcface, "priors"),
        ):
            self.handles.append(module.register_forward_pre_hook(self._start))
            self.handles.append(module.register_forward_hook(functools.partial(self._stop, stage)))
        return self

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _start(self, module: torch.nn.Module, args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.started[id(module)] = self._now()

    def _stop(self, stage: str, module: torch.nn.Module, args: Any, output: Any) -> None:
        start = self.started.pop(id(module), None)
        if start is not None and threading.get_ident() == self.thread:
            self.times[stage] = self.times.get(stage, 0.0) + (self._now() - start) * 1000

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        model_ms = self.times.pop("model", 0.0)
        self.times["generator"] = self.times.get("generator", 0.0) + max(model_ms - self.times["priors"], 0.0)


@contextlib.contextmanager
def _stage(times: dict[str, float], name: str) -> Iterator[None]:
    """Add the time of the `with` block to `times[name]`, in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + (time.perf_counter() - start) * 1000


class LiveRecorder:
    """Write live frames as H.264 with the "AI-generated" tags, atomically (a context manager).

    Frames keep their capture times (millisecond time base), so a recording with dropped frames
    still plays at the real speed. The file appears only when the `with` block ends without an
    error (Ctrl-C inside `run_live` ends it normally, so the recording is kept).

    Args:
        path (path): .mp4, .mov, .m4v or .mkv.
        fps (float, default 30.0): the nominal frame rate written in the stream.
        crf (int, default 20): H.264 quality (lower = better, larger).

    Attributes:
        frames (int): frames written.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, crf: int = 20):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
            raise CameraError(
                f"{self.path}: cannot record to {self.path.suffix or 'a file without suffix'}; use .mp4, .mov or .mkv"
            )
        self.fps, self.crf = fps, crf
        self.frames = 0
        self._stack = contextlib.ExitStack()
        self._stream: Any = None
        self._first: float | None = None
        self._last_pts = -1

    def __enter__(self) -> LiveRecorder:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._stack.enter_context(atomic_path(self.path, keep_suffix=True))
        mp4 = self.path.suffix.lower() in MP4_LIKE_SUFFIXES
        options = {"movflags": "+use_metadata_tags+faststart"} if mp4 else {}
        self.out = self._stack.enter_context(av.open(str(tmp), "w", options=options))
        self.out.metadata.update(VIDEO_METADATA)
        return self

    def write(self, image: Image, t: float) -> None:
        """Encode the RGB frame `image` captured at `t` seconds (the first frame is time 0)."""
        import av

        if self._stream is None:
            self._stream = self._open_stream(image.shape[1], image.shape[0])
            self._first = t
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        # Strictly increasing times: two frames within a millisecond get consecutive stamps.
        self._last_pts = max(self._last_pts + 1, round((t - self._first) * 1000))
        frame.pts, frame.time_base = self._last_pts, MILLISECOND
        for packet in self._stream.encode(frame):
            self.out.mux(packet)
        self.frames += 1

    def _open_stream(self, width: int, height: int) -> Any:
        codec = "libx264" if "libx264" in self.out.supported_codecs else self.out.default_video_codec
        stream = self.out.add_stream(codec, rate=Fraction(round(self.fps * 1000), 1000))
        stream.width, stream.height = width, height
        # 4:2:0 needs even sides; odd-sized frames keep full chroma rather than losing a pixel row.
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.time_base = MILLISECOND
        if codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        return stream

    def __exit__(self, kind: type | None, error: BaseException | None, tb: Any) -> bool | None:
        if kind is None and self._stream is not None:
            try:
                for packet in self._stream.encode():
                    self.out.mux(packet)
            except BaseException as e:
                self._stack.__exit__(type(e), e, e.__traceback__)  # removes the temporary file
                raise
        elif kind is None:
            # Nothing was recorded (the camera gave no frame): leave no empty file behind.
            error = CameraError(f"{self.path}: not written, the camera gave no frame")
            self._stack.__exit__(type(error), error, None)
            raise error
        return self._stack.__exit__(kind, error, tb)


class VirtualCamera:
    """Frames out to a virtual camera that video-call programs can pick (`pyvirtualcam`).

    Opened on the first frame (its size fixes the camera's). Needs the optional package
    `pyvirtualcam` (`pip install "hififace[live]"`) and a virtual camera driver: v4l2loopback on
    Linux, OBS's virtual camera on Windows and macOS.

    Args:
        fps (float, default 30.0): the frame rate announced to the programs reading it.

    Raises:
        CameraError: pyvirtualcam is not installed (at construction), or no driver (first frame).
    """

    def __init__(self, fps: float = 30.0):
        try:
            import pyvirtualcam
        except ImportError as e:
            raise CameraError(
                'a virtual camera needs the optional package pyvirtualcam: pip install "hififace[live]"'
            ) from e
        self.module, self.fps, self.camera = pyvirtualcam, fps, None

    def send(self, image: Image) -> None:
        """Show the RGB frame `image` (all frames must have the first one's size)."""
        if self.camera is None:
            try:
                self.camera = self.module.Camera(
                    width=image.shape[1], height=image.shape[0], fps=self.fps, fmt=self.module.PixelFormat.RGB
                )
            except RuntimeError as e:
                raise CameraError(f"no virtual camera driver: {e}") from e
        self.camera.send(np.ascontiguousarray(image))

    def close(self) -> None:
        if self.camera is not None:
            self.camera.close()


@dataclass(frozen=True)
class LiveSummary:
    """What `run_live` did.

    Attributes:
        frames (int): frames swapped or passed through (shown / recorded).
        swapped, passed_through (int): of those, with / without a swapped face.
        dropped (int): camera frames skipped because the swap was busy (0 when reading every frame).
        fps (float): frames shown per second over the run.
        latency_ms (list of float): per frame shown, capture to output, in milliseconds (realtime
            cameras only: a file read frame by frame has no capture time).
        work_ms (list of float): per frame shown, the time of the swap and the outputs, in milliseconds.
        stopped (str): "end of stream", "interrupted" (Ctrl-C) or "max_frames".
        recording (Path or None): the recording written.
        stages_ms (dict of str to list of float): per frame shown, the milliseconds of each stage
            (`STAGES`; 0 where a frame skipped it, e.g. no swap when no face was in view).
        camera_ms (float): the camera's work for every frame read, dropped ones included (on the
            camera's thread for a realtime camera: it competes with the swap for the CPU).
    """

    frames: int
    swapped: int
    passed_through: int
    dropped: int
    fps: float
    latency_ms: list[float] = field(repr=False)
    work_ms: list[float] = field(repr=False)
    stopped: str
    recording: Path | None
    stages_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)
    camera_ms: float = 0.0

    @property
    def median_latency_ms(self) -> float:
        return float(np.median(self.latency_ms)) if self.latency_ms else float("nan")

    def stage_table(self) -> dict[str, dict[str, float]]:
        """Per stage: the median and mean milliseconds per frame shown, and its share of the mean work."""
        total = float(np.mean(self.work_ms)) if self.work_ms else 0.0
        return {
            name: {
                "median_ms": float(np.median(ms)),
                "mean_ms": float(np.mean(ms)),
                "share": float(np.mean(ms)) / total if total > 0 else 0.0,
            }
            for name, ms in self.stages_ms.items()
            if ms
        }


def run_live(
    pipeline: HifiFacePipeline,
    source: Any,
    camera: Camera,
    record: str | os.PathLike | None = None,
    virtual_camera: bool | VirtualCamera = False,
    max_frames: int | None = None,
    on_frame: Callable[[int, float], None] | None = None,
    **swap_options: Any,
) -> LiveSummary:
    """Swap the source's face into a camera's frames until the stream ends or Ctrl-C.

    Args:
        pipeline (HifiFacePipeline): detector and generator.
        source (path, PIL image, numpy array or SourceIdentity): the face to put in; encoded once.
        camera (Camera): from `open_camera`; closed here when done.
        record (path, optional): also write the swapped frames here (`LiveRecorder`).
        virtual_camera (bool or VirtualCamera, default False): also show them on a virtual camera.
        max_frames (int, optional): stop after this many frames shown.
        on_frame (callable (frames shown, fps), optional): called after each frame (the readout).
        **swap_options: face, reference, identity_strength, shape_strength, mask_erode, mask_blur,
            smoothing, detect_max_side, masks, regions, mask_padding (`LiveSwapper`).

    Returns:
        LiveSummary. Ctrl-C ends the loop normally: the recording is finalised and kept.

    Raises:
        CameraError: the camera fails, or an output cannot be used; the source errors of `LiveSwapper`.
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(camera)
        swapper = LiveSwapper(pipeline, source, **swap_options)  # source errors before any frame
        recorder = stack.enter_context(LiveRecorder(record, camera.fps)) if record else None
        virtual = virtual_camera if isinstance(virtual_camera, VirtualCamera) else None
        if virtual_camera is True:
            virtual = VirtualCamera(camera.fps)
        if virtual is not None:
            stack.callback(virtual.close)
        grabber = stack.enter_context(FrameGrabber(camera)) if camera.realtime else None
        frames = iter(grabber) if grabber is not None else iter(camera.read, None)
        meter, latency, work, shown, stopped = FpsMeter(), [], [], 0, "end of stream"
        stages: dict[str, list[float]] = {name: [] for name in STAGES}
        started = waited = time.monotonic()
        try:
            for frame in frames:
                taken = time.monotonic()
                image, _ = swapper(frame.image, frame.time)
                swapped = time.monotonic()
                if recorder is not None:
                    recorder.write(image, frame.time)
                if virtual is not None:
                    virtual.send(image)
                now = time.monotonic()
                capture = grabber.last_read_ms if grabber is not None else camera.read_ms
                # a file read frame by frame is read in the wait: its reading is the capture
                wait = (taken - waited) * 1000 - (capture if grabber is None else 0.0)
                times = {"capture": capture, "wait": max(wait, 0.0), **swapper.times}
                times["output"] = (now - swapped) * 1000
                for name in STAGES:
                    stages[name].append(times.get(name, 0.0))
                waited = now
                work.append((now - taken) * 1000)
                if camera.realtime:  # a file read frame by frame has no capture time to measure from
                    latency.append((now - frame.time) * 1000)
                shown += 1
                fps = meter.tick(now)
                if on_frame is not None:
                    on_frame(shown, fps)
                if max_frames is not None and shown >= max_frames:
                    stopped = "max_frames"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
        elapsed = time.monotonic() - started
    return LiveSummary(
        frames=shown,
        swapped=swapper.swapped,
        passed_through=swapper.passed_through,
        dropped=grabber.dropped if grabber is not None else 0,
        fps=shown / elapsed if elapsed > 0 else 0.0,
        latency_ms=latency,
        work_ms=work,
        stopped=stopped,
        recording=Path(record) if record else None,
        stages_ms=stages,
        camera_ms=grabber.read_ms if grabber is not None else float(sum(stages["capture"])),
    )
