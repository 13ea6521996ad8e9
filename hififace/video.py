"""Face swapping through a video: decode, swap in batches, smooth landmarks, encode, keep the audio.

    summary = swap_video(pipeline, "source.jpg", "clip.mp4", "swapped.mp4", progress=print)
    # VideoSummary(frames=250, swapped=241, passed_through=9, fps=25.0, audio=True, ...)

- The source's identity code is computed once for the whole video.
- Frames are decoded with PyAV, faces detected per frame, and their five landmarks smoothed over
  time with a one-euro filter (Casiez et al., CHI 2012) per tracked face, so the aligned crop does
  not jitter. A track restarts at a scene cut, when its face goes missing, or when it jumps.
- The aligned crops of `batch_size` frames go through the generator together.
- Frames without a (chosen) face are encoded unchanged (as decoded) and counted.
- Every frame keeps its timestamp: same frame count and frame rate as the input. The audio stream
  is copied as it is (transcoded to the container's default codec only when the output container
  cannot hold it); other streams (subtitles, data) are dropped.
- The output (H.264 in .mp4, .mov, .m4v or .mkv) carries "AI-generated" tags in its container
  metadata and is written to a temporary file in the same folder, then renamed over `video_out`,
  so a failed run never leaves a half-written video.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hififace.faces import Face, FaceChoice, select_faces
from hififace.faces.types import Image, Landmarks5
from hififace.pipeline import AI_METADATA, HifiFacePipeline, SwapError

__all__ = [
    "OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "LandmarkSmoother",
    "VideoError",
    "VideoSummary",
    "is_video",
    "swap_video",
]

# Files read as videos (by the command line; `swap_video` reads whatever FFmpeg can).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
# Containers written: H.264 video plus the input's audio.
OUTPUT_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv"})
_MP4_LIKE = frozenset({".mp4", ".mov", ".m4v"})

ProgressFn = Callable[[int, "int | None"], None]


class VideoError(SwapError):
    """A video cannot be read or written: missing, unreadable, no video stream, no frames, too long."""


@dataclass(frozen=True)
class VideoSummary:
    """What `swap_video` did.

    Attributes:
        path (Path): the video written.
        frames (int): frames read and written (equal counts).
        swapped (int): frames in which at least one face was swapped.
        passed_through (int): frames written unchanged because no (chosen) face was found.
        fps (float): the frame rate (the input's average rate, kept in the output).
        audio (bool): whether an audio stream was carried over.
    """

    path: Path
    frames: int
    swapped: int
    passed_through: int
    fps: float
    audio: bool


def is_video(path: str | os.PathLike) -> bool:
    """True when the file name has a video suffix (`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class LandmarkSmoother:
    """Five-point landmarks smoothed over time with a one-euro filter per tracked face.

    The one-euro filter is a low-pass filter whose cutoff rises with speed: still faces are
    smoothed hard (no jitter), moving faces follow with little lag. Speed is measured in face
    sizes per second (the eye-to-mouth distance), so the settings do not depend on resolution.

    Args:
        min_cutoff (float, default 1.0): cutoff in Hz when the face is still; lower = smoother.
        beta (float, default 2.0): how fast the cutoff rises with speed (Hz per face size per
            second); higher = less lag when the face moves, more jitter.
        derivative_cutoff (float, default 1.0): cutoff in Hz of the speed estimate.
        max_jump (float, default 0.5): a face farther than this many box widths from every track
            of the previous frame starts a new track (no smoothing across the jump).
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 2.0,
        derivative_cutoff: float = 1.0,
        max_jump: float = 0.5,
    ):
        if min_cutoff <= 0 or derivative_cutoff <= 0 or beta < 0 or max_jump <= 0:
            raise ValueError("min_cutoff, derivative_cutoff and max_jump must be > 0, beta >= 0")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        self.max_jump = max_jump
        self._tracks: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Forget every track (call it at a scene cut)."""
        self._tracks = []

    def __call__(self, faces: Sequence[Face], t: float) -> list[Landmarks5]:
        """Smoothed landmarks for `faces` (same order) seen at time `t` in seconds.

        Tracks not matched by a face in this call end; faces without a track start one and come
        back unchanged.
        """
        previous, tracks, out = list(self._tracks), [], [None] * len(faces)
        # Larger faces pick their track first.
        for i in sorted(range(len(faces)), key=lambda k: -faces[k].area):
            face = faces[i]
            track = self._nearest(previous, face)
            raw = face.landmarks.astype(np.float64)
            if track is None or t <= track["t"]:
                track = {"x": raw, "dx": np.zeros_like(raw)}
            else:
                previous.remove(track)
                dt = t - track["t"]
                scale = max(_face_scale(raw), 1.0)
                dx = (raw - track["x"]) / dt
                dx_hat = _lerp(track["dx"], dx, _alpha(self.derivative_cutoff, dt))
                speed = np.linalg.norm(dx_hat, axis=1, keepdims=True) / scale
                cutoff = self.min_cutoff + self.beta * speed
                track = {"x": _lerp(track["x"], raw, _alpha(cutoff, dt)), "dx": dx_hat}
            track.update(t=t, center=np.array(face.center), width=face.width)
            tracks.append(track)
            out[i] = track["x"].astype(np.float32)
        self._tracks = tracks
        return out

    def _nearest(self, tracks: list[dict[str, Any]], face: Face) -> dict[str, Any] | None:
        best, best_distance = None, math.inf
        for track in tracks:
            distance = float(np.linalg.norm(track["center"] - np.array(face.center)))
            if distance < best_distance and distance <= self.max_jump * max(track["width"], face.width):
                best, best_distance = track, distance
        return best


def swap_video(
    pipeline: HifiFacePipeline,
    source: Any,
    video_in: str | os.PathLike,
    video_out: str | os.PathLike,
    face: str | int = "largest",
    reference: Any = None,
    identity_strength: float = 1.0,
    shape_strength: float = 1.0,
    mask_erode: int | None = None,
    mask_blur: int | None = None,
    batch_size: int = 8,
    smoothing: LandmarkSmoother | bool = True,
    cut_threshold: float = 0.2,
    max_frames: int | None = None,
    crf: int = 18,
    progress: ProgressFn | None = None,
) -> VideoSummary:
    """Swap the source's face into every frame of a video.

    Args:
        pipeline (HifiFacePipeline): detector and generator.
        source (path, PIL image, numpy array or SourceIdentity): the face to put in.
        video_in (path): any video FFmpeg reads.
        video_out (path): .mp4, .mov, .m4v or .mkv; replaced atomically when done.
        face, reference, identity_strength, shape_strength, mask_erode, mask_blur: as in
            `HifiFacePipeline.swap`, applied per frame. A frame where the choice finds no face (no
            face at all, an index beyond the faces present, nobody like the reference) passes through.
        batch_size (int, default 8): frames whose faces go through the generator together.
        smoothing (LandmarkSmoother or bool, default True): the landmark filter; True for a
            default `LandmarkSmoother`, False to align every frame on its raw landmarks.
        cut_threshold (float, default 0.2): a scene cut (tracks restart) when the mean absolute
            difference of consecutive 32 x 32 grayscale thumbnails, in [0, 1], exceeds it.
        max_frames (int, optional): refuse videos with more frames.
        crf (int, default 18): H.264 quality (lower = better, larger).
        progress (callable (done, total or None), optional): called after every batch of frames.

    Returns:
        VideoSummary.

    Raises:
        VideoError: missing or unreadable input, no video stream, no frames, too many frames, or an
            output suffix that is not a supported container.
        InvalidImageError, ImageTooLargeError, NoFaceError (source), FaceChoiceError, SwapError.
    """
    import av

    video_in, video_out = Path(video_in), Path(video_out)
    if video_out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise VideoError(
            f"{video_out}: cannot write {video_out.suffix or 'a file without suffix'}; use .mp4, .mov or .mkv"
        )
    if not video_in.is_file():
        raise VideoError(
            f"{video_in}: no such file" if not video_in.is_dir() else f"{video_in}: is a folder, not a video"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pipeline.check_inputs(identity_strength, shape_strength)
    # The choice and the source first: bad ones should fail before any frame is decoded.
    choice = FaceChoice.parse(face) if not isinstance(face, str) or reference is None else None
    source = pipeline.encode_source(source)
    choice = choice or pipeline.face_choice(face, reference)
    smoother = LandmarkSmoother() if smoothing is True else (smoothing or None)

    def choose(image: Image, faces: list[Face]) -> list[Face]:
        return select_faces(faces, choice, embed=lambda some: pipeline.embed_faces(image, some))

    try:
        container = av.open(str(video_in))
    except av.error.EOFError as e:
        raise VideoError(f"{video_in}: the video has no frames (the file ends before any)") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{video_in}: cannot read the video ({e})") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"{video_in}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pipeline.check_pixels(stream.width, stream.height, f"the frames of {video_in}")
        audio = container.streams.audio[0] if container.streams.audio else None
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        total = stream.frames or None

        video_out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{video_out.stem}.", suffix=video_out.suffix, dir=video_out.parent
        )
        os.close(fd)
        counts = {"frames": 0, "swapped": 0, "passed_through": 0}
        last_thumb: list[np.ndarray | None] = [None]
        try:
            options = (
                {"movflags": "+use_metadata_tags+faststart"} if video_out.suffix.lower() in _MP4_LIKE else {}
            )
            with av.open(tmp_name, "w", options=options) as out:
                out.metadata.update(
                    {
                        "comment": AI_METADATA["description"],
                        "description": AI_METADATA["description"],
                        "ai_generated": AI_METADATA["ai_generated"],
                        "encoder_software": AI_METADATA["software"],
                    }
                )
                encoder = _video_encoder(out, stream, rate, crf)
                audio_out, transcode_audio = _audio_stream(out, audio)

                def flush(frames: list) -> None:
                    _swap_batch(
                        pipeline, source, frames, choose, smoother, cut_threshold, last_thumb, encoder, out,
                        counts, identity_strength, shape_strength, mask_erode, mask_blur,
                    )  # fmt: skip
                    if progress is not None:
                        progress(counts["frames"], total)

                pending: list = []
                streams = (stream, audio) if audio is not None else (stream,)
                for packet in container.demux(*streams):
                    if packet.stream is audio:
                        _write_audio(out, packet, audio_out, transcode_audio)
                        continue
                    for frame in _decode(packet, video_in):
                        pending.append(frame)
                        if max_frames is not None and counts["frames"] + len(pending) > max_frames:
                            raise VideoError(f"{video_in}: has more than {max_frames} frames, the limit here")
                        if len(pending) == batch_size:
                            flush(pending)
                            pending = []
                if pending:
                    flush(pending)
                for packet in encoder.encode():
                    out.mux(packet)
                if transcode_audio:
                    for packet in audio_out.encode():
                        out.mux(packet)
                if counts["frames"] == 0:
                    raise VideoError(f"{video_in}: the video has no frames")
            os.chmod(tmp_name, 0o666 & ~_umask())
            os.replace(tmp_name, video_out)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise
    return VideoSummary(
        path=video_out,
        frames=counts["frames"],
        swapped=counts["swapped"],
        passed_through=counts["passed_through"],
        fps=float(rate),
        audio=audio is not None,
    )


def _swap_batch(
    pipeline: HifiFacePipeline,
    source: Any,
    frames: list,
    choose: Callable[[Image, list[Face]], list[Face]],
    smoother: LandmarkSmoother | None,
    cut_threshold: float,
    last_thumb: list,
    encoder: Any,
    out: Any,
    counts: dict[str, int],
    identity_strength: float,
    shape_strength: float,
    mask_erode: int | None,
    mask_blur: int | None,
) -> None:
    """Detect, smooth, swap (one generator pass for the whole batch), paste, encode."""
    import av

    images = [frame.to_ndarray(format="rgb24") for frame in frames]
    jobs: list[tuple[int, Face]] = []
    for i, (frame, image) in enumerate(zip(frames, images, strict=True)):
        thumb = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.float32) / 255.0
        chosen = choose(image, pipeline.detect_faces(image))
        if smoother is not None:
            if last_thumb[0] is not None and float(np.abs(thumb - last_thumb[0]).mean()) > cut_threshold:
                smoother.reset()
            t = float(frame.time) if frame.time is not None else counts["frames"] + i
            landmarks = smoother(chosen, t)
        else:
            landmarks = [f.landmarks for f in chosen]
        last_thumb[0] = thumb
        jobs.extend(
            (i, dataclasses.replace(f, landmarks=lm)) for f, lm in zip(chosen, landmarks, strict=True)
        )

    swaps = pipeline.swap_faces(source, [(images[i], f) for i, f in jobs], identity_strength, shape_strength)
    per_frame: dict[int, list] = {}
    for (i, _), swap in zip(jobs, swaps, strict=True):
        per_frame.setdefault(i, []).append(swap)

    for i, frame in enumerate(frames):
        if i in per_frame:
            new = av.VideoFrame.from_ndarray(
                pipeline.composite(images[i], per_frame[i], mask_erode, mask_blur), format="rgb24"
            )
            new.pts, new.time_base = frame.pts, frame.time_base
            counts["swapped"] += 1
        else:
            new = frame  # unchanged: the decoded picture goes straight back to the encoder
            new.pict_type = av.video.frame.PictureType.NONE
            counts["passed_through"] += 1
        if new.pts is None:
            new.pts = counts["frames"]
        for packet in encoder.encode(new):
            out.mux(packet)
        counts["frames"] += 1


def _decode(packet: Any, video_in: Path) -> list:
    import av

    try:
        return packet.decode()
    except av.error.FFmpegError as e:
        raise VideoError(f"{video_in}: cannot decode the video ({e})") from e


def _video_encoder(out: Any, stream: Any, rate: Fraction, crf: int) -> Any:
    codec = (
        "libx264" if "libx264" in out.supported_codecs or _has_encoder("libx264") else out.default_video_codec
    )
    encoder = out.add_stream(codec, rate=rate)
    encoder.width, encoder.height = stream.width, stream.height
    # 4:2:0 needs even sides; odd-sized videos keep full chroma rather than losing a pixel row.
    encoder.pix_fmt = "yuv420p" if stream.width % 2 == 0 and stream.height % 2 == 0 else "yuv444p"
    encoder.time_base = stream.time_base
    if codec == "libx264":
        encoder.options = {"crf": str(crf), "preset": "medium"}
    return encoder


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def _audio_stream(out: Any, audio: Any) -> tuple[Any, bool]:
    """(output audio stream, whether it is transcoded); copied when the container can hold the codec."""
    if audio is None:
        return None, False
    if audio.codec_context.name in out.supported_codecs:
        return out.add_stream_from_template(audio), False
    transcoded = out.add_stream(out.default_audio_codec, rate=audio.codec_context.sample_rate)
    return transcoded, True


def _write_audio(out: Any, packet: Any, audio_out: Any, transcode: bool) -> None:
    if not transcode:
        if packet.dts is None:  # the demuxer's end-of-stream marker
            return
        packet.stream = audio_out
        out.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None
        for encoded in audio_out.encode(frame):
            out.mux(encoded)


def _face_scale(landmarks: np.ndarray) -> float:
    """Eye-centre to mouth-centre distance: a face size that barely changes with yaw."""
    return float(np.linalg.norm(landmarks[:2].mean(axis=0) - landmarks[3:].mean(axis=0)))


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


def _lerp(previous: np.ndarray, current: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    return previous + alpha * (current - previous)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
