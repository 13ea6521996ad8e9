"""A face detector in a child process, loaded and run while the parent imports torch.

A fresh `hififace swap` of one photo used to run these steps one after another on a single core:
- torch's import (about a second);
- loading dlib's 68-point predictor (half a second; a 100 MB file parsed with the GIL held);
- detecting the faces of the source and the target.
`DetectorProcess` starts a child process first (``python -c`` running `serve`). The child imports
numpy, OpenCV and the detector's own package, never torch. On the second core it loads the
detector and detects the faces of the photos the command will read (``prefetch``), while the
parent imports torch and loads the model.

`DetectorProcess.detect(image)` is a `FaceDetector`. It answers from the prefetched results when
the child detected exactly these pixels; a digest of the array decides. `prefetch` queues more
files at any time (`hififace swap` of a folder names the next target while it swaps this one). The child reads each file
with `load_image` and prepares it with `detection_input`, as `HifiFacePipeline` does, so its
digests match. Otherwise `detect` sends the image to the child, which detects it and replies. The
faces are always those of the child's detector, the same class and settings as `load_detector`
builds, so a swap is the same with or without the process (tested).

If the child dies, the detector is loaded in this process instead and the command goes on.

The wire format is the same both ways: a 4-byte big-endian length, a JSON header, then
``header["bytes"]`` raw bytes (an image's pixels). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from hififace.faces.detection import (
    DETECT_MAX_SIDE,
    DetectorUnavailable,
    FaceDetector,
    detection_input,
    load_detector,
)
from hififace.faces.types import Face, Image
from hififace.imageio import MAX_PIXELS, ImageError, load_image

logger = logging.getLogger("hififace")

# The child's first step. `python -c` puts the working folder first on sys.path; the parent's
# package folder replaces it, so the child imports the very package the parent runs (an unrelated
# `hififace` folder where the command runs must not shadow it).
_BOOTSTRAP = (
    "import sys; root = sys.argv[1]; sys.path[0:1] = [] if root in sys.path[1:] else [root]; "
    "from hififace.faces.detector_process import serve; serve()"
)


class DetectorProcess:
    """A `FaceDetector` that runs in a child process, started at once and loaded there.

    Args:
        name (str, default "auto"): the detector, as `load_detector` takes it ("auto", "insightface"
            or "dlib").
        prefetch (paths, default none): image files the caller will detect, in the order it will
            ask; the child reads and detects them as soon as its detector is loaded.
        max_pixels (int, default 40 MP): the `load_image` limit the caller reads the files with.
        max_side (int, default 1600): the `detection_input` size the caller detects at.

    The digests only match when `max_pixels` and `max_side` are the caller's. Other values still
    give the right faces, more slowly: every image is then sent to the child.

    Use it as a context manager, or call `close`, to stop the child.
    """

    def __init__(
        self,
        name: str = "auto",
        prefetch: Iterable[str | os.PathLike] = (),
        max_pixels: int = MAX_PIXELS,
        max_side: int = DETECT_MAX_SIDE,
    ) -> None:
        self.name = name
        self.description: str | None = None  # repr of the child's detector, once loaded
        self.load_seconds: float | None = None  # the child's own time to import and load its detector
        self.child_report: dict[str, Any] = {}  # the child's readiness message
        self._found: dict[str, list[Face]] = {}
        self._outstanding = 0  # files sent for prefetching whose results have not come back
        self._local: FaceDetector | None = None
        self._stop = None
        self._lock = threading.Lock()  # one conversation with the child at a time
        root = str(Path(__file__).resolve().parents[2])
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as e:
            self._fall_back(f"it did not start ({e})")
            return
        self._stop = weakref.finalize(self, _stop_child, self._process)
        paths = [os.fspath(p) for p in prefetch]
        config = {"detector": name, "prefetch": paths, "max_pixels": max_pixels, "max_side": max_side}
        if self._send(config):
            self._outstanding = len(paths)
        else:
            self._fall_back("it did not start")

    def prefetch(self, paths: Iterable[str | os.PathLike]) -> None:
        """Have the child read and detect more files, while this process does other work."""
        paths = [os.fspath(p) for p in paths]
        with self._lock:
            if paths and self._local is None and self._send({"kind": "prefetch", "paths": paths}):
                self._outstanding += len(paths)

    def wait(self) -> None:
        """Block until the child has loaded its detector.

        Raises:
            DetectorUnavailable: the detector cannot be built, as `load_detector` would raise it.
        """
        with self._lock:
            self._wait()

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB image, sorted left to right: from the prefetched results, else from the child."""
        with self._lock:
            return self._detect(image)

    @property
    def pid(self) -> int | None:
        """The child's process id (None when it did not start)."""
        return None if self._stop is None else self._process.pid

    def close(self) -> None:
        """Stop the child (it also stops by itself when this process ends)."""
        if self._stop is not None:
            self._stop()

    def __enter__(self) -> DetectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DetectorProcess({self.description or repr(self.name)})"

    def _wait(self) -> None:
        while self.description is None and self._local is None:
            self._handle(self._receive())

    def _detect(self, image: Image) -> list[Face]:
        self._wait()
        array = np.ascontiguousarray(image)
        key = image_digest(array)
        # The child works in order: the files it was given to prefetch, then this request.
        while key not in self._found and self._outstanding and self._local is None:
            self._handle(self._receive())
        if key in self._found:  # prefetched results stay good after a fall-back too
            return list(self._found[key])
        faces = self._ask(array) if self._local is None else None
        return faces if faces is not None else self._local.detect(image)

    def _ask(self, array: np.ndarray) -> list[Face] | None:
        """The child's faces for `array`; None when it cannot answer (the detector is then loaded here)."""
        request = {"kind": "detect", "shape": list(array.shape), "dtype": array.dtype.str}
        if not self._send(request, memoryview(array).cast("B")):
            self._fall_back("it stopped")
            return None
        while self._local is None:
            message = self._receive()
            if message is not None and message["kind"] == "faces":
                return _faces_from_json(message["faces"])
            if message is not None and message["kind"] == "error":
                raise RuntimeError(f"face detection failed in the detector process: {message['message']}")
            self._handle(message)  # a prefetched result, or the end (a fall-back)
        return None

    def _send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> bool:
        try:
            send_message(self._process.stdin, header, payload)
        except (BrokenPipeError, OSError, ValueError):  # the child is gone, or the pipe closed
            return False
        return True

    def _receive(self) -> dict[str, Any] | None:
        try:
            message = receive_message(self._process.stdout)
        except (OSError, ValueError):
            return None
        return message[0] if message else None

    def _handle(self, message: dict[str, Any] | None) -> None:
        """Take in one message that is not a reply: readiness, a prefetched result, or the end."""
        if message is None:
            self._fall_back(f"it ended (exit code {self._process.poll()})")
            return
        kind = message["kind"]
        if kind == "ready":
            self.child_report = message
            self.description = message["detector"]
            self.load_seconds = message["load_seconds"]
            for line in message["log"]:
                logger.info(line)
        elif kind == "unavailable":
            self.close()
            raise DetectorUnavailable(message["message"])
        elif kind == "prefetched":
            self._outstanding -= 1
            if message["digest"] is not None:
                self._found[message["digest"]] = _faces_from_json(message["faces"])

    def _fall_back(self, why: str) -> None:
        """The child cannot serve: load the detector here, as without the process."""
        logger.debug("face detector process: %s; loading the detector in this process", why)
        self.close()
        self._outstanding = 0
        self._local = load_detector(self.name)
        self.description = self.description or repr(self._local)


def image_digest(image: Image) -> str:
    """A key for an image's exact pixels: its shape, dtype and a BLAKE2b digest of its bytes."""
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(memoryview(array).cast("B"), digest_size=16).hexdigest()
    return f"{array.shape}{array.dtype.str}{digest}"


def send_message(stream: IO[bytes], header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
    """Write one message: length, JSON header (with ``bytes``, the payload's length), payload."""
    data = json.dumps({**header, "bytes": len(payload)}).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    if len(payload):
        stream.write(payload)
    stream.flush()


def receive_message(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """Read one message as (header, payload); None at the end of the stream.

    Raises:
        ValueError: the stream ends inside a message, or its header is not a JSON object.
    """
    size = stream.read(4)
    if not size:
        return None
    if len(size) < 4:
        raise ValueError("the stream ended inside a message")
    header = json.loads(_read_exactly(stream, struct.unpack(">I", size)[0]))
    if not isinstance(header, dict):
        raise ValueError("a message header must be a JSON object")
    return header, _read_exactly(stream, int(header.get("bytes", 0)))


def serve() -> None:
    """The child: load the detector named by the first message, prefetch, then answer requests.

    It reads messages on stdin and writes them on stdout. It ends when stdin closes, which also
    happens when the parent dies. Ctrl-C is left to the parent, which then closes the pipe. It
    leaves with `os._exit`: it has nothing of its own to flush or remove.
    """
    try:
        _serve()
    except BrokenPipeError:  # the parent is gone
        pass
    os._exit(0)


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Messages get their own copy of stdout. File descriptor 1 becomes stderr, so that anything a
    # library prints (insightface prints the models it finds) cannot corrupt the message stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer
    first = receive_message(stdin)
    if first is None:
        return
    config = first[0]
    log = _LogLines()
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        detector = load_detector(config["detector"])
    except DetectorUnavailable as e:
        send_message(out, {"kind": "unavailable", "message": str(e)})
        return
    ready = {
        "kind": "ready",
        "detector": repr(detector),
        "load_seconds": time.perf_counter() - start,
        "log": log.lines,
        "torch_imported": "torch" in sys.modules,  # must stay False: the child exists to avoid it
    }
    send_message(out, ready)
    requests: queue.Queue[tuple[dict[str, Any], bytes] | None] = queue.Queue()
    # A thread keeps reading requests even while the child writes a reply. Otherwise a full stdout
    # pipe and a full stdin pipe could wait on each other.
    threading.Thread(target=_read_requests, args=(stdin, requests), daemon=True).start()
    pending = list(config["prefetch"])
    while True:
        try:  # messages first; prefetch while none waits
            message = requests.get(block=not pending)
        except queue.Empty:
            _prefetch(out, detector, pending.pop(0), config)
            continue
        if message is None:
            return
        if message[0].get("kind") == "prefetch":
            pending.extend(message[0]["paths"])
        else:
            _answer(out, detector, *message)


def _prefetch(out: IO[bytes], detector: FaceDetector, path: str, config: dict[str, Any]) -> None:
    """Read and detect one file as the pipeline will, and say so (digest None: it failed; the parent
    reads the file again and reports the error itself)."""
    result: dict[str, Any] = {"kind": "prefetched", "digest": None, "faces": []}
    try:
        image = load_image(path, max_pixels=config["max_pixels"])
        small, _ = detection_input(image, config["max_side"])
        result.update(digest=image_digest(small), faces=_faces_to_json(detector.detect(small)))
    except (ImageError, OSError, ValueError, RuntimeError):
        pass
    send_message(out, result)


def _answer(out: IO[bytes], detector: FaceDetector, header: dict[str, Any], payload: bytes) -> None:
    try:
        image = np.frombuffer(payload, dtype=np.dtype(header["dtype"])).reshape(header["shape"])
        reply = {"kind": "faces", "faces": _faces_to_json(detector.detect(image))}
    except Exception as e:  # reported to the parent, which raises it where it asked
        reply = {"kind": "error", "message": f"{type(e).__name__}: {e}"}
    send_message(out, reply)


def _read_requests(stdin: IO[bytes], requests: queue.Queue) -> None:
    try:
        while (message := receive_message(stdin)) is not None:
            requests.put(message)
    except (OSError, ValueError):
        pass
    requests.put(None)


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) < size:
        raise ValueError("the stream ended inside a message")
    return data


def _faces_to_json(faces: list[Face]) -> list[dict[str, Any]]:
    # float32 values go through JSON's float64 exactly and come back the same
    return [
        {
            "box": list(face.box),
            "score": face.score,
            "landmarks": face.landmarks.tolist(),
            "landmarks68": None if face.landmarks68 is None else face.landmarks68.tolist(),
        }
        for face in faces
    ]


def _faces_from_json(items: list[dict[str, Any]]) -> list[Face]:
    return [
        Face(
            box=tuple(item["box"]),
            score=item["score"],
            landmarks=item["landmarks"],
            landmarks68=item["landmarks68"],
        )
        for item in items
    ]


def _stop_child(process: subprocess.Popen) -> None:
    """Close the pipes and end the child. It holds no file or state of its own, so a kill is safe,
    and it does not keep the command waiting for the child's interpreter to shut down."""
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    process.kill()
    process.wait()


class _LogLines(logging.Handler):
    """The child's log lines, sent to the parent with its readiness (the parent logs them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
