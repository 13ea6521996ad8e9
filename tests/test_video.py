"""swap_video on a short clip made here from a real photo, with a sine-wave audio track (PyAV)."""

from __future__ import annotations

import gc
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import tiny_model_dir
from skimage import data

import hififace.video.swap
from hififace import HifiFacePipeline
from hififace.faces import Face
from hififace.pipeline import FaceChoiceError, NoFaceError, SwapError
from hififace.video import LandmarkSmoother, VideoError, VideoSummary, is_video, swap_video
from hififace.video.swap import FEATURE_MAPS_PER_FACE, GENERATOR_MEMORY, faces_per_pass

FPS = 10
FRAMES = 12
NO_FACE_FRAMES = (8, 9)
SAMPLE_RATE = 16000


def clip_frames() -> list[np.ndarray]:
    """The astronaut at 256 x 256 drifting right, with two faceless grey frames in the middle."""
    photo = np.ascontiguousarray(data.astronaut()[::2, ::2])
    grey = np.full_like(photo, 128)
    return [grey if i in NO_FACE_FRAMES else np.roll(photo, 2 * i, axis=1) for i in range(FRAMES)]


def write_clip(path: Path, frames: list[np.ndarray], audio: bool = True) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            t = np.arange(int(SAMPLE_RATE * len(frames) / FPS)) / SAMPLE_RATE
            wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                chunk = av.AudioFrame.from_ndarray(
                    wave[None, start : start + 1024], format="flt", layout="mono"
                )
                chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)


def read_clip(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "rate": video.average_rate,
            "metadata": dict(container.metadata),
            "audio": [(s.codec_context.name, s.codec_context.sample_rate) for s in container.streams.audio],
        }
        info["frames"] = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return info


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "astronaut.mp4"
    write_clip(path, clip_frames())
    return path


@pytest.fixture(scope="module")
def source(pipeline):
    return pipeline.encode_source(data.astronaut())


def test_video_round_trip_keeps_frames_rate_and_audio(pipeline, clip, tmp_path, monkeypatch):
    calls, progress = [], []
    encode = pipeline.model.encode_source
    monkeypatch.setattr(pipeline.model, "encode_source", lambda x: calls.append(1) or encode(x))
    out = tmp_path / "swapped.mp4"

    summary = swap_video(
        pipeline,
        data.astronaut(),
        clip,
        out,
        batch_size=5,
        progress=lambda done, total: progress.append((done, total)),
    )

    assert calls == [1]  # the source's identity once for the whole video
    assert summary == VideoSummary(
        path=out, frames=FRAMES, swapped=FRAMES - 2, passed_through=2, fps=float(FPS), audio=True
    )
    assert progress == [(5, FRAMES), (10, FRAMES), (12, FRAMES)]
    original, swapped = read_clip(clip), read_clip(out)
    assert len(swapped["frames"]) == len(original["frames"]) == FRAMES
    assert swapped["rate"] == original["rate"] == Fraction(FPS)
    assert swapped["audio"] == original["audio"] == [("aac", SAMPLE_RATE)]
    assert swapped["metadata"]["ai_generated"] == "true"
    assert "AI-generated" in swapped["metadata"]["comment"]
    # Faceless frames pass through (re-encoded only); frames with a face change around it.
    for i in NO_FACE_FRAMES:
        assert np.abs(swapped["frames"][i].astype(int) - original["frames"][i]).mean() < 2
    face_change = np.abs(
        swapped["frames"][0][40:90, 85:135].astype(int) - original["frames"][0][40:90, 85:135]
    )
    assert face_change.mean() > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swapped.mp4"]  # no temporary file left


def test_video_without_audio_and_face_index_beyond_the_faces(pipeline, source, tmp_path):
    silent = tmp_path / "silent.mkv"
    write_clip(silent, clip_frames()[:3], audio=False)
    summary = swap_video(pipeline, source, silent, tmp_path / "out.mkv", face=5)
    assert (summary.frames, summary.swapped, summary.passed_through, summary.audio) == (3, 0, 3, False)
    assert len(read_clip(tmp_path / "out.mkv")["frames"]) == 3


def test_video_errors(pipeline, source, clip, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoError, match="missing.mp4: no such file"):
        swap_video(pipeline, source, tmp_path / "missing.mp4", out)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoError, match="junk.mp4: cannot read the video"):
        swap_video(pipeline, source, junk, out)
    with pytest.raises(VideoError, match="cannot write .gif; use .mp4, .mov or .mkv"):
        swap_video(pipeline, source, clip, tmp_path / "out.gif")

    # A container whose video stream holds no frame (only audio packets were written).
    empty = tmp_path / "empty.mkv"
    with av.open(str(empty), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
        for packet in [*sound.encode(chunk), *sound.encode()]:
            container.mux(packet)
    with pytest.raises(VideoError, match="empty.mkv: the video has no frames"):
        swap_video(pipeline, source, empty, out)
    with pytest.raises(VideoError, match="has more than 4 frames"):
        swap_video(pipeline, source, clip, out, max_frames=4)
    with pytest.raises(NoFaceError, match="no face found in the source image"):
        swap_video(pipeline, data.coffee(), clip, out)
    with pytest.raises(FaceChoiceError, match="needs a reference image"):
        swap_video(pipeline, source, clip, out, face="reference")
    with pytest.raises(SwapError, match="identity_strength"):
        swap_video(pipeline, source, clip, out, identity_strength=2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mkv", "junk.mp4"]  # nothing half-written


def _face(points: np.ndarray) -> Face:
    x, y = points[:, 0], points[:, 1]
    return Face(box=(x.min() - 20, y.min() - 30, x.max() + 20, y.max() + 20), score=1.0, landmarks=points)


def test_landmark_smoother_removes_jitter_and_restarts_on_jumps():
    rng = np.random.default_rng(0)
    still = np.array([(100, 100), (140, 100), (120, 120), (105, 140), (135, 140)], dtype=np.float32)
    smoother = LandmarkSmoother()
    raw, smooth = [], []
    for i in range(60):
        noisy = still + rng.normal(0, 1.0, still.shape).astype(np.float32)
        raw.append(noisy)
        smooth.append(smoother([_face(noisy)], i / 25)[0])
    assert np.std(np.stack(smooth[10:]), axis=0).mean() < 0.5 * np.std(np.stack(raw[10:]), axis=0).mean()

    # A face moving steadily (one face size, 40 px, per second) is followed with little lag.
    moving = LandmarkSmoother()
    for i in range(50):
        position = still + np.float32(40 * i / 25)
        followed = moving([_face(position)], i / 25)[0]
    assert np.abs(followed - position).max() < 3.0

    # A face far from every track starts a new one: its landmarks come back unsmoothed.
    moved = still + 200
    np.testing.assert_array_equal(smoother([_face(moved)], 61 / 25)[0], moved)
    # After reset() (a scene cut) likewise, even at the same place.
    smoother([_face(moved)], 62 / 25)
    smoother.reset()
    jittered = moved + 1.5
    np.testing.assert_array_equal(smoother([_face(jittered)], 63 / 25)[0], jittered)


def test_is_video():
    assert is_video("a/b/clip.MP4") and is_video("x.mkv")
    assert not is_video("photo.png") and not is_video("folder")


def test_video_masks_and_enhancer_reach_every_frame(pipeline, source, tmp_path, monkeypatch):
    """The paste-back masks and the enhancer are applied per frame, as on still images."""
    frames = clip_frames()[:3]
    short = tmp_path / "short.mp4"
    write_clip(short, frames, audio=False)
    enhanced, composited = [], []
    monkeypatch.setattr(pipeline, "enhancer", object())  # any enhancer: enhance_faces is spied on
    monkeypatch.setattr(
        pipeline, "enhance_faces", lambda swaps, blend=None: enhanced.append(len(swaps)) or swaps
    )
    composite = pipeline.composite

    def spy(image, swaps, *args, **kwargs):
        composited.append(kwargs["masks"].types)
        return composite(image, swaps, *args, **kwargs)

    monkeypatch.setattr(pipeline, "composite", spy)
    summary = swap_video(pipeline, source, short, tmp_path / "out.mp4", masks="model,box")
    assert summary.swapped == 3 and sum(enhanced) == 3
    assert composited == [("model", "box")] * 3


def _live_frames() -> int:
    """Decoded or encoded `av.VideoFrame`s Python still holds."""
    return sum(isinstance(o, av.VideoFrame) for o in gc.get_objects())


def test_video_memory_does_not_grow_with_the_clip(pipeline, source, tmp_path):
    """Frames are freed once encoded: a 20-frame clip holds no more frames (av or numpy) than a 4-frame one."""
    photo = np.ascontiguousarray(data.astronaut()[::2, ::2])
    held: list[int] = []  # live av frames after each batch
    peaks = {}
    tracemalloc.start()  # numpy's arrays are traced (the encoder's own buffers are not)
    try:
        for frames in (4, 20):
            clip = tmp_path / f"clip-{frames}.mp4"
            write_clip(clip, [np.roll(photo, 3 * i, axis=1) for i in range(frames)], audio=False)
            held.clear()
            tracemalloc.reset_peak()
            summary = swap_video(
                pipeline,
                source,
                clip,
                tmp_path / "out.mp4",
                batch_size=2,
                progress=lambda *_: held.append(_live_frames()),
            )
            assert summary.swapped == frames
            peaks[frames] = (max(held), tracemalloc.get_traced_memory()[1] / 2**20)
    finally:
        tracemalloc.stop()
    # The same few frames are alive after every batch (PyAV's and the reader's last); frames kept
    # would count up to 20 more here. A 256 x 256 frame is 0.19 MB: 16 more kept would be 3 MB.
    assert peaks[20][0] <= peaks[4][0] + 1, peaks
    assert peaks[20][1] < peaks[4][1] + 1.0, peaks


def test_video_faces_go_through_the_generator_in_bounded_passes(
    pipeline, source, clip, tmp_path, monkeypatch
):
    # The tiny model's activations are small: a pass takes the whole batch, as a photo's does.
    assert faces_per_pass(pipeline) == pipeline.batch_size == 8
    one_face = FEATURE_MAPS_PER_FACE * pipeline.model.encoder.conv_in.out_channels * 256**2 * 4
    assert faces_per_pass(pipeline, memory=3.5 * one_face) == 3
    assert faces_per_pass(pipeline, memory=1) == 1
    with monkeypatch.context() as gpu:  # on a GPU the activations are not the process's memory
        gpu.setattr(HifiFacePipeline, "device", property(lambda self: torch.device("cuda")))
        assert faces_per_pass(pipeline, memory=1) == 8
    # The release-scale model at 256 (64 channels) in the default budget: 2 faces a pass.
    assert int(GENERATOR_MEMORY // (one_face * 64 / pipeline.model.encoder.conv_in.out_channels)) == 2
    passes = []
    swap_faces = pipeline.swap_faces
    monkeypatch.setattr(
        pipeline, "swap_faces", lambda s, faces, *a: passes.append(len(faces)) or swap_faces(s, faces, *a)
    )
    monkeypatch.setattr(hififace.video.swap, "faces_per_pass", lambda pipeline: 2)
    summary = swap_video(pipeline, source, clip, tmp_path / "out.mp4", batch_size=5)
    assert summary.swapped == FRAMES - 2
    assert passes == [2, 2, 1, 2, 1, 2]  # frames 0-4, 5-9 (8 and 9 without a face), 10-11
