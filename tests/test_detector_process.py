"""The face detector in a child process (`hififace.faces.detector_process`): the same faces as the
detector in this process, from prefetched results or on request; its failures handled; and
`hififace swap` writing the same bytes with it as without it."""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import shipped_photos, tiny_model_dir

from hififace.faces import DlibDetector, detection_input
from hififace.faces.detection import DetectorUnavailable
from hififace.faces.detector_process import DetectorProcess, image_digest, receive_message, send_message
from hififace.imageio import load_image


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return shipped_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def dlib_detector() -> DlibDetector:
    return DlibDetector()


def assert_same_faces(found, expected) -> None:
    assert len(found) == len(expected) > 0
    for a, b in zip(found, expected, strict=True):
        assert a.box == b.box and a.score == b.score
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.landmarks68, b.landmarks68)


def test_prefetched_and_requested_faces_are_the_detectors_own(photos, dlib_detector, caplog):
    group = load_image(photos["group"])
    astronaut = load_image(photos["astronaut"])
    # a small max_side: the child must shrink the group photo as the pipeline would, or miss it
    with DetectorProcess(
        "dlib", prefetch=[photos["group"], photos["coffee"], "missing.png"], max_side=500
    ) as child:
        child.wait()
        assert child.child_report["torch_imported"] is False  # the child exists to skip torch's import
        assert child.load_seconds > 0 and "DlibDetector" in repr(child)
        small, scale = detection_input(group, 500)
        assert scale < 1
        with caplog.at_level(logging.DEBUG, logger="hififace"):
            assert_same_faces(child.detect(small), dlib_detector.detect(small))  # six faces, prefetched
            # one request, then the child is killed: a prefetched answer needs no child at all
            assert_same_faces(child.detect(astronaut), dlib_detector.detect(astronaut))
            os.kill(child.pid, signal.SIGKILL)
            assert_same_faces(child.detect(small), dlib_detector.detect(small))
            assert "loading the detector in this process" not in caplog.text
            # a new image with the child gone: the detector is loaded here and the swap goes on
            flipped = np.ascontiguousarray(astronaut[:, ::-1])
            assert_same_faces(child.detect(flipped), dlib_detector.detect(flipped))
            assert "loading the detector in this process" in caplog.text
    with pytest.raises(ProcessLookupError):  # closed: the child is gone and reaped
        os.kill(child.pid, 0)


def test_later_prefetches_are_used(photos, dlib_detector, caplog):
    astronaut = load_image(photos["astronaut"])
    with DetectorProcess("dlib") as child, caplog.at_level(logging.DEBUG, logger="hififace"):
        child.prefetch([photos["astronaut"]])
        faces = child.detect(astronaut)
        os.kill(child.pid, signal.SIGKILL)  # answered from the prefetch: nothing more is asked of the child
        assert_same_faces(child.detect(astronaut), faces)
        assert "loading the detector in this process" not in caplog.text
    assert_same_faces(faces, dlib_detector.detect(astronaut))


def test_an_unavailable_detector_fails_as_in_this_process(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))  # no pack here, downloads off
    with pytest.raises(DetectorUnavailable, match="not found at"):
        DetectorProcess("insightface").wait()
    with DetectorProcess("dlib") as child:  # a request the detector cannot take: its error, raised here
        with pytest.raises(RuntimeError, match="detector process"):
            child.detect(np.zeros((40, 40, 5), np.uint8))


def test_messages_round_trip_and_a_cut_stream_is_refused():
    stream = io.BytesIO()
    pixels = np.arange(24, dtype=np.uint8)
    send_message(stream, {"kind": "detect", "shape": [2, 4, 3]}, memoryview(pixels))
    send_message(stream, {"kind": "ready"})
    data = stream.getvalue()
    stream = io.BytesIO(data)
    header, payload = receive_message(stream)
    assert header == {"kind": "detect", "shape": [2, 4, 3], "bytes": 24} and payload == pixels.tobytes()
    assert receive_message(stream) == ({"kind": "ready", "bytes": 0}, b"")
    assert receive_message(stream) is None
    end_of_first = data.index(b'{"kind": "ready"') - 4
    for cut in (2, end_of_first - 5):  # inside the length, inside the pixels
        with pytest.raises(ValueError, match="ended inside"):
            receive_message(io.BytesIO(data[:cut]))
    # the digest tells pixels, shapes and dtypes apart
    image = np.zeros((4, 6, 3), np.uint8)
    keys = {image_digest(image), image_digest(image.reshape(6, 4, 3)), image_digest(image.astype(np.float32))}
    image[0, 0, 0] = 1
    assert len(keys | {image_digest(image)}) == 4


def test_the_command_writes_the_same_files_with_and_without_the_process(photos, tmp_path_factory, tmp_path):
    """Fresh processes, as a user runs them: a folder of two targets (the second prefetched during
    the first swap), with and without the detector process."""
    model = tiny_model_dir(tmp_path_factory)
    targets = tmp_path / "targets"
    targets.mkdir()
    shutil.copy(photos["group"], targets / "a.jpg")
    shutil.copy(photos["astronaut"], targets / "b.png")
    outputs = {}
    for switch in ("1", "0"):
        out = tmp_path / f"out{switch}"
        done = subprocess.run(
            [sys.executable, "-m", "hififace", "swap", "--model", str(model), "--source", str(photos["astronaut"]),
             "--target", str(targets), "--output", str(out), "--face", "all", "--no-progress", "--detector", "dlib"],
            capture_output=True, text=True, env={**os.environ, "HIFIFACE_DETECTOR_PROCESS": switch},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "a.jpg -> " in done.stdout and "6 face(s) swapped" in done.stdout
        assert ("detector DetectorProcess(DlibDetector" in done.stderr) == (switch == "1"), done.stderr
        outputs[switch] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(outputs["1"]) == ["a.jpg", "b.png"]
    assert outputs["1"] == outputs["0"]


def test_the_command_takes_the_models_saved_detector(photos, tmp_path_factory, tmp_path):
    """The child starts before the model loads, so the command reads the saved setting first."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir(tmp_path_factory), model)
    (model / "pipeline.json").write_text('{"detector": "insightface"}')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSIGHTFACE_HOME": str(tmp_path / "no-packs")}
    errors = set()
    for switch in ("1", "0"):
        done = subprocess.run(
            [sys.executable, "-m", "hififace", "swap", "--model", str(model), "--source", str(photos["astronaut"]),
             "--target", str(photos["astronaut"]), "--output", str(tmp_path / "o.png"), "--no-progress"],
            capture_output=True, text=True, env={**env, "HIFIFACE_DETECTOR_PROCESS": switch},
        )  # fmt: skip
        assert done.returncode == 1
        errors.add(done.stderr.strip().splitlines()[-1])
    assert len(errors) == 1 and "insightface model pack 'buffalo_l' not found" in errors.pop()


def test_saved_settings_are_read_from_a_folder_or_the_hub_cache_only(tmp_path_factory, tmp_path):
    from helpers import place_in_hub_cache

    from hififace.settings import saved_settings

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir(tmp_path_factory), model)
    assert saved_settings(model) == {}  # no pipeline.json
    (model / "pipeline.json").write_text('{"detector": "dlib", "detect_max_side": 900}')
    assert saved_settings(model) == {"detector": "dlib", "detect_max_side": 900}
    cache = tmp_path / "hub"
    place_in_hub_cache(cache, "someone/hififace-tiny", model, "a" * 40)
    assert saved_settings("someone/hififace-tiny", cache_dir=cache)["detect_max_side"] == 900
    assert saved_settings("someone/not-cached", cache_dir=cache) == {}  # and nothing is downloaded
    (model / "pipeline.json").write_text("{not json")
    assert saved_settings(model) == {}  # the model's loading reports it
