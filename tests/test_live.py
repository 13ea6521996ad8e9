"""Live swapping (`hififace.video.live`, `hififace live`) with a tiny model and a clip standing in for a camera."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import tiny_model_dir
from PIL import Image as PILImage
from skimage import data

from hififace.cli import main as cli_main
from hififace.errors import NoFaceError, SwapError
from hififace.faces import DlibDetector
from hififace.faces.masks import PARSER_HELP, MaskOptions
from hififace.pipeline import HifiFacePipeline
from hififace.priors.parsing import FaceParser
from hififace.video.live import (
    STAGES,
    Camera,
    CameraError,
    FrameGrabber,
    LiveFrame,
    LiveSwapper,
    VirtualCamera,
    open_camera,
    run_live,
)
from hififace.video.swap import FrameSwapper
from hififace.video.tracking import FaceFollower, FaceTracker, LandmarkSmoother

FPS = 10


def write_clip(path: Path, frames: int, with_face: bool = True) -> Path:
    """`frames` frames of the astronaut (256 x 256) drifting right, or of a coffee cup (no face)."""
    picture = data.astronaut() if with_face else data.coffee()[:, :400]
    picture = np.ascontiguousarray(np.array(PILImage.fromarray(picture).resize((256, 256))))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for i in range(frames):
            frame = np.roll(picture, i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def pipeline(model_dir) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(model_dir, detector="dlib")


@pytest.fixture(scope="module")
def source(pipeline, photos):
    """The astronaut's identity code, computed once for the tests that are not about encoding."""
    return pipeline.encode_source(photos["astronaut"])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live-photos")
    paths = {"astronaut": folder / "astronaut.png", "coffee": folder / "coffee.png"}
    PILImage.fromarray(data.astronaut()).save(paths["astronaut"])
    PILImage.fromarray(data.coffee()).save(paths["coffee"])
    return paths


def test_live_swapper_swaps_faces_and_passes_empty_frames_through(pipeline, source):
    swapper = LiveSwapper(pipeline, source, identity_strength=0.8)
    assert swapper.source is source  # encoded once, by the caller here
    assert swapper.pipeline.detect_max_side == 320 and pipeline.detect_max_side == 1600
    frame = np.array(PILImage.fromarray(data.astronaut()).resize((256, 256)))
    swapped, swaps = swapper(frame, 0.0)
    assert len(swaps) == 1 and swapped.shape == frame.shape
    assert np.abs(swapped.astype(int) - frame).max() > 0
    # the same as the still-image steps on the same face (first frame: the smoother starts there)
    face = pipeline.detect_faces(frame)[0]
    still = pipeline.composite(frame, pipeline.swap_faces(source, [(frame, face)], 0.8, 1.0))
    np.testing.assert_array_equal(swapped, still)

    empty = np.array(PILImage.fromarray(data.coffee()).resize((256, 192)))
    out, swaps = swapper(empty, 0.1)
    assert out is empty and swaps == []
    assert (swapper.swapped, swapper.passed_through) == (1, 1)


def test_live_swapper_refuses_a_source_without_a_face(pipeline, photos):
    with pytest.raises(NoFaceError, match="no face found in the source image"):
        LiveSwapper(pipeline, photos["coffee"])


class SlowCamera(Camera):
    """A camera at 100 fps whose frames are numbered in their pixels."""

    def __init__(self, frames: int):
        self.left, self.count = frames, 0

    def read(self) -> LiveFrame | None:
        if self.left == 0:
            return None
        time.sleep(0.01)
        self.left -= 1
        self.count += 1
        return LiveFrame(np.full((4, 4, 3), self.count - 1, np.uint8), time.monotonic(), self.count - 1)


def test_frame_grabber_drops_frames_instead_of_queueing_them():
    seen = []
    with FrameGrabber(SlowCamera(40)) as grabber:
        for frame in grabber:
            seen.append(frame.index)
            time.sleep(0.05)  # a consumer 5x slower than the camera
    assert seen == sorted(seen) and seen[-1] == 39  # always the newest; the stream's end arrives
    assert len(seen) < 20 and grabber.dropped == 40 - len(seen)


def test_run_live_records_every_frame_of_a_file_with_the_ai_tags(pipeline, source, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 3)
    out = tmp_path / "out.mp4"
    readouts = []
    summary = run_live(
        pipeline,
        source,
        open_camera(clip, realtime=False),
        record=out,
        on_frame=lambda n, fps: readouts.append((n, fps)),
    )
    assert (summary.frames, summary.swapped, summary.passed_through, summary.dropped) == (3, 3, 0, 0)
    assert summary.stopped == "end of stream" and [n for n, _ in readouts] == [1, 2, 3]
    with av.open(str(out)) as result:
        assert result.metadata["ai_generated"] == "true"
        frames = [f.time for f in result.decode(video=0)]
    assert len(frames) == 3
    np.testing.assert_allclose(frames, np.arange(3) / FPS, atol=2e-3)  # the clip's own times kept


def test_run_live_in_realtime_drops_frames_and_bounds_latency(pipeline, source, tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", 10)
    # A swap that takes three frame intervals, however fast this machine is: frames must be dropped.
    swap_faces = HifiFacePipeline.swap_faces
    monkeypatch.setattr(
        HifiFacePipeline,
        "swap_faces",
        lambda self, *a, **k: time.sleep(3 / FPS) or swap_faces(self, *a, **k),
    )
    summary = run_live(pipeline, source, open_camera(clip), smoothing=False)
    assert summary.frames + summary.dropped == 10 and summary.frames == summary.swapped
    assert summary.dropped > 0 and len(summary.latency_ms) == summary.frames
    # a frame waits for the swap in progress at most, never for a backlog of queued frames
    slowest = max(summary.work_ms)
    assert all(ms <= 2 * slowest + 1000 / FPS + 50 for ms in summary.latency_ms)


def test_ctrl_c_finalises_the_recording(pipeline, source, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 10)
    out = tmp_path / "out.mp4"
    main_thread = threading.get_ident()

    def interrupt(shown: int, fps: float) -> None:
        if shown == 2 and threading.get_ident() == main_thread:
            raise KeyboardInterrupt

    summary = run_live(pipeline, source, open_camera(clip, realtime=False), record=out, on_frame=interrupt)
    assert summary.stopped == "interrupted" and summary.frames == 2
    with av.open(str(out)) as result:
        assert sum(1 for _ in result.decode(video=0)) == 2
    assert not list(tmp_path.glob(".out.mp4.*"))  # no temporary file left


def test_bad_cameras_give_one_clear_message(tmp_path):
    with pytest.raises(CameraError, match="no camera at index 57"):
        open_camera(57)
    with pytest.raises(CameraError, match="missing.mp4: no such video file"):
        open_camera(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(CameraError, match="broken.mp4: cannot read the video"):
        open_camera(broken)


def test_a_camera_that_stops_mid_stream_ends_the_recording_cleanly(pipeline, source, tmp_path):
    clip = write_clip(tmp_path / "clip.ts", 8)  # MPEG-TS: readable up to where it is cut
    cut = tmp_path / "cut.ts"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])  # the file ends mid-stream
    out = tmp_path / "out.mp4"
    summary = run_live(pipeline, source, open_camera(cut, realtime=False), record=out)
    assert summary.stopped == "end of stream" and 0 < summary.frames < 8
    with av.open(str(out)) as result:
        assert sum(1 for _ in result.decode(video=0)) == summary.frames


def test_virtual_camera_needs_its_optional_package():
    try:  # pyvirtualcam is an optional extra, not needed by the tests
        import pyvirtualcam  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match='pip install "hififace\\[live\\]"'):
            VirtualCamera()
    else:
        assert VirtualCamera().camera is None  # opened on the first frame only


def test_cli_live_records_a_clip(model_dir, photos, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", 3)
    out = tmp_path / "recording.mp4"
    args = ["live", "--model", str(model_dir), "--source", str(photos["astronaut"]), "--detector", "dlib"]
    code = cli_main([*args, "--camera", str(clip), "--every-frame", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "3 frames: 3 swapped, 0 passed through, 0 dropped" in captured.out
    with av.open(str(out)) as result:
        assert result.metadata["ai_generated"] == "true"
        assert "AI-generated" in result.metadata["comment"]
        assert sum(1 for _ in result.decode(video=0)) == 3

    assert cli_main([*args, "--camera", "57"]) == 1
    assert capsys.readouterr().err.strip() == (
        "hififace: error: no camera at index 57 (is one connected, and not used by another program?)"
    )
    bad_source = [*args[:3], "--detector", "dlib", "--source", str(photos["coffee"])]
    assert cli_main([*bad_source, "--camera", str(clip), "--output", str(tmp_path / "none.mp4")]) == 1
    assert "no face found in the source image" in capsys.readouterr().err
    assert not list(tmp_path.glob("*none.mp4*"))  # nothing recorded, no temporary file left


@pytest.fixture(scope="module")
def parser_dir(tmp_path_factory) -> Path:
    """A random-weight BiSeNet saved like `hififace convert bisenet` saves the real one."""
    import torch

    folder = tmp_path_factory.mktemp("live-parser")
    torch.manual_seed(0)
    FaceParser().save_pretrained(folder)
    return folder


REGION_OPTIONS = {"masks": "model,box,region", "regions": "skin,nose,mouth", "mask_padding": 0.1}


def test_live_swapper_takes_the_mask_options_of_the_image_swap(model_dir, parser_dir, pipeline, source):
    parsing = HifiFacePipeline.from_pretrained(model_dir, detector="dlib", parser=parser_dir)
    frame = np.array(PILImage.fromarray(data.astronaut()).resize((256, 256)))
    plain, _ = LiveSwapper(parsing, source)(frame, 0.0)
    masked, swaps = LiveSwapper(parsing, source, **REGION_OPTIONS)(frame, 0.0)
    assert set(swaps[0].masks) == {"model", "box", "region"}
    assert np.abs(masked.astype(int) - plain).max() > 0  # the region mask changed what was pasted
    # the first frame (the smoother starts there) is the image swap of that frame with the same options
    np.testing.assert_array_equal(masked, parsing.swap(source, frame, **REGION_OPTIONS).image)
    with pytest.raises(SwapError, match="face parser"):  # checked when the options are set, not per frame
        LiveSwapper(pipeline, source, masks="region")


def test_cli_live_takes_the_swap_commands_mask_options(
    model_dir, parser_dir, photos, tmp_path, capsys, monkeypatch
):
    clip = write_clip(tmp_path / "clip.mp4", 2)
    used = []
    composite = HifiFacePipeline.composite
    monkeypatch.setattr(
        HifiFacePipeline,
        "composite",
        lambda self, *a, **k: used.append(k["masks"]) or composite(self, *a, **k),
    )
    args = ["live", "--model", str(model_dir), "--source", str(photos["astronaut"]), "--detector", "dlib"]
    args += ["--camera", str(clip), "--every-frame", "--mask", "model,box,region", "--regions", "skin,nose"]
    assert cli_main(args) == 1
    assert capsys.readouterr().err.strip() == f"hififace: error: {PARSER_HELP}"
    assert cli_main([*args, "--mask-padding", "0.1,0.2", "--parser", str(parser_dir)]) == 1
    assert "mask padding must be 1 or 4 fractions" in capsys.readouterr().err  # before the camera opens
    code = cli_main([*args, "--mask-padding", "0.1", "--parser", str(parser_dir)])
    assert code == 0, capsys.readouterr().err
    assert used == [MaskOptions(("model", "box", "region"), ("skin", "nose"), (0.1,) * 4)] * 2


# ------------------------------------------------------------------ speed: detection cut, stages


def moving_clip(path: Path, frames: int) -> Path:
    """`frames` 640 x 480 frames of the astronaut drifting right, turning and coming closer, 10 fps."""
    photo = cv2.resize(data.astronaut()[:384], (640, 480), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            matrix = cv2.getRotationMatrix2D((320, 240), 0.5 * i, 1 + 0.01 * i)
            matrix[0, 2] += 3 * i
            frame = cv2.warpAffine(photo, matrix, (640, 480), borderMode=cv2.BORDER_REFLECT_101)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_live_cuts_detection_and_stays_within_the_video_paths_bounds(pipeline, source, tmp_path, monkeypatch):
    """The live loop detects at 320 px every 10th frame and follows the face in between; its frames
    stay within the bf16 fast path's bound (mean 1.6 levels on the face) of the video path's."""
    with av.open(str(moving_clip(tmp_path / "clip.mp4", 12))) as clip:
        frames = list(clip.decode(video=0))
    images = [frame.to_ndarray(format="rgb24") for frame in frames]
    video_swapper = FrameSwapper(
        pipeline, source, pipeline.face_choice("largest"), FaceTracker(LandmarkSmoother())
    )
    video = [frame.to_ndarray(format="rgb24") for frame in video_swapper(frames, 0)]
    video_tracker = FaceTracker(LandmarkSmoother())  # the video path's landmarks, step by step

    searched = []
    detect = DlibDetector.detect
    monkeypatch.setattr(
        DlibDetector, "detect", lambda self, image: searched.append(image.shape[:2]) or detect(self, image)
    )
    live = LiveSwapper(pipeline, source)
    differences = []
    for frame, image, expected in zip(frames, images, video, strict=True):
        out, swaps = live(image, float(frame.time))
        assert len(swaps) == 1
        with monkeypatch.context() as m:
            m.setattr(DlibDetector, "detect", detect)
            landmarks = video_tracker(image, pipeline.detect_faces(image), float(frame.time))[0].landmarks
        assert np.abs(swaps[0].landmarks - landmarks).max() < 1.5  # observed 0.9 px
        face = np.abs(expected.astype(int) - image).max(axis=2) > 0  # where the video path pasted
        differences.append(np.abs(out.astype(int) - expected)[face].mean())
    # whole frames (at <= 320 px) on frames 0 and 10 only; followed faces in regions of ~128 px
    assert [shape for shape in searched if max(shape) > 200] == [(240, 320), (240, 320)]
    assert len(searched) == 12 and max(max(shape) for shape in searched[1:10]) < 200
    assert np.mean(differences) < 1.6 and max(differences) < 2.5, differences  # observed 1.0, 1.7


def test_face_follower_loses_faces_and_redetects(pipeline):
    frame = cv2.resize(data.astronaut()[:384], (640, 480), interpolation=cv2.INTER_AREA)
    faces = pipeline.detect_faces(frame)
    follower = FaceFollower(pipeline.detector.detect, redetect_every=3)
    assert follower.follow(frame) is None  # nothing to follow yet
    follower.update(faces)
    moved = np.roll(frame, 5, axis=1)
    followed = follower.follow(moved)
    assert len(followed) == 1 and abs(followed[0].center[0] - faces[0].center[0] - 5) < 8  # box: ±2 px
    follower.update(followed)
    assert len(follower.follow(moved)) == 1
    assert follower.follow(moved) is None  # the third frame: the whole frame again
    follower.update(faces)
    empty = cv2.resize(data.coffee(), (640, 480))
    assert follower.follow(empty) is None  # lost: the caller searches the whole frame
    with pytest.raises(ValueError, match="redetect_every"):
        FaceFollower(pipeline.detector.detect, redetect_every=0)


def test_run_live_times_every_stage_of_every_frame(pipeline, source, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 3)
    summary = run_live(pipeline, source, open_camera(clip, realtime=False))
    assert set(summary.stages_ms) == set(STAGES)
    assert all(len(ms) == 3 and min(ms) >= 0 for ms in summary.stages_ms.values())
    for name in ("capture", "detect", "landmarks", "priors", "generator", "paste"):
        assert min(summary.stages_ms[name]) > 0, name
    swap_stages = [sum(summary.stages_ms[name][i] for name in STAGES[2:]) for i in range(3)]
    assert all(s <= w + 1e-6 for s, w in zip(swap_stages, summary.work_ms, strict=True))
    table = summary.stage_table()
    assert table["generator"]["mean_ms"] > 0 and 0 < table["generator"]["share"] < 1
    assert summary.camera_ms == pytest.approx(sum(summary.stages_ms["capture"]))
    model = pipeline.model  # the timing hooks are gone after each frame
    assert not model._forward_hooks and not model.identity.face3d._forward_pre_hooks
