"""Property-based fuzzing (Hypothesis) of the readers users feed files to: random and mutated bytes.

Each reader either returns a result or raises its one documented error type with a one-line
message: never a traceback of another kind, never a hang (every example has a deadline). The
example counts are small so that the file runs in seconds; the seeds are derandomised so a failure
reproduces.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, tiny_model_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

FUZZ = settings(
    max_examples=40,
    deadline=5000,  # ms per example: a reader that hangs fails instead of blocking the suite
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png(mode: str = "RGB") -> bytes:
    photo = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(photo).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((40, 48, 3), 90, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


SEEDS = [_png(), _png("RGBA"), _png("I;16"), _png("P"), _jpeg()]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed file with a few bytes overwritten, a cut, or bytes inserted; or plain random bytes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


def _one_line(error: BaseException) -> None:
    assert str(error) and "\n" not in str(error), repr(error)


@FUZZ
@given(data=mutated(SEEDS))
def test_image_loader_returns_rgb_or_one_image_error(tmp_path, data):
    from hififace.imageio import ImageError, load_image

    path = tmp_path / "fuzz.png"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as error:
        _one_line(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@pytest.fixture(scope="module")
def video_seed(tmp_path_factory) -> bytes:
    import av

    path = tmp_path_factory.mktemp("video") / "seed.mp4"
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt, stream.options = "yuv420p", {"g": "3"}
        for i in range(6):
            frame = np.full((64, 64, 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_video_reader_yields_frames_or_one_video_error(tmp_path, video_seed, data):
    from hififace.video import VideoError
    from hififace.video.io import VideoReader

    path = tmp_path / "fuzz.mp4"
    path.write_bytes(data.draw(mutated([video_seed])))
    try:
        with VideoReader(path) as reader:
            frames = [
                f for batch in reader.batches(4, on_audio=lambda packet: None, max_frames=100) for f in batch
            ]
    except VideoError as error:
        _one_line(error)
        return
    assert 0 < len(frames) <= 100
    assert reader.damage() == "" or "skipped" in reader.damage() or "truncated" in reader.damage()


CSV_SEEDS = [
    b"source,target,name\na.png,b.png,one\nc.png,d.png,two\n",
    b"\xef\xbb\xbfsource,target,swapped,identity\nx/a.png,y/b.png,s.png,id1\n",
]


@FUZZ
@given(data=mutated(CSV_SEEDS))
def test_pairs_csv_reader_returns_pairs_or_one_value_error(tmp_path, data):
    from hififace.evaluation.pairs import read_pairs_csv

    path = tmp_path / "pairs.csv"
    path.write_bytes(data)
    try:
        pairs = read_pairs_csv(path)
    except ValueError as error:
        _one_line(error)
        return
    assert pairs and all(p.source and p.target for p in pairs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(FUZZ, max_examples=25, deadline=30000)  # building a model: slow on a busy machine
@given(
    raw=st.one_of(st.binary(max_size=64), st.just(None)),
    changes=st.dictionaries(
        st.sampled_from(sorted({*TINY, "sff", "image_size", "coeff_dims"})), JSON_VALUES, max_size=2
    ),
)
def test_config_loader_builds_the_model_or_names_the_problem(tmp_path, model_dir, raw, changes):
    from hififace import HifiFace
    from hififace.hub import CheckpointError

    folder = tmp_path / "model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_bytes(raw if raw is not None else json.dumps(config).encode())
    try:
        model = HifiFace.from_pretrained(folder)
    except CheckpointError as error:
        _one_line(error)
        return
    assert isinstance(model, HifiFace)
