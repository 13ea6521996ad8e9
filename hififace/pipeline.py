"""Face swapping on whole images: detect → align → swap → blend → paste.

    pipeline = HifiFacePipeline.from_pretrained("models/hififace-256")   # fp32, on the CPU
    pipeline.to("cuda")                                                   # the caller moves it
    result = pipeline.swap("source.jpg", "target.jpg")                    # the largest target face
    result.save("swapped.png")                                            # tagged as AI-generated

`swap` finds the source's largest face and the chosen target faces, aligns each onto the template
the model was trained with, runs the generator (HifiFace, https://arxiv.org/abs/2106.09965) on the
aligned crops, softens the predicted mask M_r and pastes I_r back. Pixels outside the pasted
region are bit-identical to the input. `SwapResult.faces` keeps, per swapped face, the aligned
crops and every intermediate of the generator (I_out, I_r, I_low, M_r, M_low).

`swap_video` does the same over the frames of a video (see `hififace.video`). The source's
identity code is computed once per call; `encode_source` returns it for reuse across calls.

Every input the pipeline cannot use raises a `SwapError` subclass with a one-line message.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image as PILImage

from hififace.faces import (
    Face,
    FaceDetector,
    FaceSelectionError,
    align_face,
    load_detector,
    paste_back,
    select_faces,
    soften_mask,
)
from hififace.faces.types import Image, Landmarks5, Mask, Matrix
from hififace.fast import as_dtype, inference_context, optimize
from hififace.imageio import MAX_PIXELS, ImageError, load_image, save_image

if TYPE_CHECKING:
    from hififace.models.generator import HifiFace
    from hififace.priors.identity import IdentityCode
    from hififace.video import VideoSummary

__all__ = [
    "AI_METADATA",
    "FaceChoiceError",
    "FaceSwap",
    "HifiFacePipeline",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelLoadError",
    "NoFaceError",
    "SourceIdentity",
    "SwapError",
    "SwapResult",
]

# The machine-readable marker every swapped output carries (PNG text chunks, EXIF, video tags).
AI_METADATA = {
    "ai_generated": "true",
    "software": "hififace",
    "description": "AI-generated: a face was swapped with HifiFace (https://arxiv.org/abs/2106.09965)",
}

FACE_MODES = ("largest", "all", "reference")
_WEIGHTS_HELP = (
    "get weights with `hififace convert hififace-pytorch generator_<iter>.pth models/hififace-256` "
    "(the public HiFiFace-pytorch release), or train a model"
)


class SwapError(ValueError):
    """An input the pipeline cannot swap; the message says which input and why, in one line."""


class InvalidImageError(SwapError):
    """An image file is missing, unreadable, corrupt or too small."""


class ImageTooLargeError(SwapError):
    """An image (or video frame) has more pixels than the pipeline's `max_pixels`."""


class NoFaceError(SwapError):
    """No face was found in an image.

    Attributes:
        role (str): which input: "source", "target" or "reference".
        name (str or None): the file name, when the image came from a file.
    """

    def __init__(self, role: str, name: str | None = None, detail: str = ""):
        self.role = role
        self.name = name
        where = f" {name}" if name else ""
        super().__init__(f"no face found in the {role} image{where}{detail}")


class FaceChoiceError(SwapError):
    """The `face` choice is invalid for the target (unknown mode, index out of range, no reference)."""


class ModelLoadError(RuntimeError):
    """The model folder or Hub repository cannot be loaded."""


@dataclass
class SourceIdentity:
    """The source face and its identity code, computed once and reusable over many targets.

    Attributes:
        code (IdentityCode): 3DMM coefficients (1, 257) and ArcFace embedding (1, 512) of the source.
        crop (uint8 (S, S, 3)): the aligned source face the code was computed from.
        face (Face): the source face as detected in its image.
        name (str or None): the source file name, when it came from a file.
    """

    code: IdentityCode
    crop: Image
    face: Face
    name: str | None = None


@dataclass
class FaceSwap:
    """One swapped face and the generator's intermediates (S = the model's image size).

    Attributes:
        box (tuple of 4 floats): the target face's (x1, y1, x2, y2) in the target image's pixels.
        landmarks (float32 (5, 2)): the five points the crop was aligned with.
        matrix (float64 (2, 3)): image-to-crop transform (`align_face`).
        source_crop (uint8 (S, S, 3)): the aligned source face.
        target_crop (uint8 (S, S, 3)): the aligned target face.
        image_out (float32 (S, S, 3)): I_out, the decoded face before blending, clipped to [0, 1].
        image (float32 (S, S, 3)): I_r, I_out blended into the target crop with M_r, in [0, 1].
        image_low (float32 (S/4, S/4, 3)): I_low, the low-resolution swap (S/8 for a 512 model).
        mask (float32 (S, S)): M_r, the predicted face mask in [0, 1].
        mask_low (float32, I_low's size): M_low, the feature-fusion mask in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: Landmarks5
    matrix: Matrix
    source_crop: Image
    target_crop: Image
    image_out: np.ndarray
    image: np.ndarray
    image_low: np.ndarray
    mask: Mask
    mask_low: Mask

    def intermediates(self) -> dict[str, Image]:
        """Every crop and intermediate as a displayable uint8 RGB image, keyed by field name."""
        return {
            name: _to_uint8_rgb(getattr(self, name))
            for name in ("source_crop", "target_crop", "image_out", "image", "image_low", "mask", "mask_low")
        }


@dataclass
class SwapResult:
    """What `HifiFacePipeline.swap` returns.

    Attributes:
        image (PIL image or numpy array): the swapped picture, the target's size; a PIL RGB image
            when the target was a PIL image or a path, a uint8 (H, W, 3) RGB array when it was an array.
        faces (list of FaceSwap): the swapped faces, left to right.
    """

    image: PILImage.Image | Image
    faces: list[FaceSwap] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the swapped image (PNG, JPEG or WebP by suffix) with the AI-generated metadata."""
        return save_image(
            path, np.asarray(self.image.convert("RGB")) if _is_pil(self.image) else self.image, AI_METADATA
        )

    def save_intermediates(self, folder: str | os.PathLike, prefix: str = "") -> list[Path]:
        """Write every face's crops and intermediates as PNGs named ``{prefix}face{i}_{name}.png``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, face in enumerate(self.faces):
            for name, picture in face.intermediates().items():
                written.append(save_image(folder / f"{prefix}face{i}_{name}.png", picture, AI_METADATA))
        return written


class HifiFacePipeline:
    """Swap a source face into whole images and videos with a HifiFace generator.

    Args:
        model (HifiFace): the generator with its priors; put in eval mode here.
        detector (FaceDetector): finds faces and their five landmarks (`hififace.faces.load_detector`).
        dtype (str or torch.dtype, default "float32"): "float16" or "bfloat16" run the model under
            autocast (GPU; bfloat16 also on CPU); "float32" runs it as it is.
        batch_size (int, default 8): faces per generator call.
        max_pixels (int, default 40 000 000): larger images and video frames are refused.
        template (str, default "frontal"): the alignment template the model was trained with.
        mask_erode (int, default 5): erosion radius of M_r before pasting, in crop pixels at 256
            (scaled with the model's image size).
        mask_blur (int, default 10): feather radius of M_r before pasting, in crop pixels at 256.
        detect_max_side (int, default 1600): images with a longer side are downscaled for detection
            only (faces are still aligned and pasted at full resolution).
        reference_threshold (float, default 0.3): minimum ArcFace cosine similarity for face="reference".
    """

    def __init__(
        self,
        model: HifiFace,
        detector: FaceDetector,
        dtype: str | torch.dtype = "float32",
        batch_size: int = 8,
        max_pixels: int = MAX_PIXELS,
        template: str = "frontal",
        mask_erode: int = 5,
        mask_blur: int = 10,
        detect_max_side: int = 1600,
        reference_threshold: float = 0.3,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        self.model = model.eval()
        self.detector = detector
        self.dtype = as_dtype(dtype)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.template = template
        self.mask_erode = mask_erode
        self.mask_blur = mask_blur
        self.detect_max_side = detect_max_side
        self.reference_threshold = reference_threshold
        self._check_dtype()

    @classmethod
    def from_pretrained(
        cls,
        model_repo_or_dir: str | os.PathLike,
        detector: str | FaceDetector = "auto",
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        **pipeline_options: Any,
    ) -> HifiFacePipeline:
        """Load a converted or trained model folder / Hub repository and a face detector.

        Args:
            model_repo_or_dir (str or path): a folder written by `save_pretrained` or `hififace
                convert`, or a Hub repository id.
            detector (str or FaceDetector, default "auto"): "auto", "insightface" or "dlib"
                (`load_detector`), or a detector instance.
            revision, cache_dir, token: passed to `HifiFace.from_pretrained` for Hub repositories.
            **pipeline_options: the other `HifiFacePipeline` arguments (dtype, batch_size, ...).

        Raises:
            ModelLoadError: the folder does not exist or holds no model, or the repository cannot be had.
        """
        from hififace.models.generator import HifiFace

        name = os.fspath(model_repo_or_dir)
        path = Path(name).expanduser()
        looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
        if looks_local and not path.is_dir():
            raise ModelLoadError(f"model folder {name} does not exist; {_WEIGHTS_HELP}")
        if looks_local and not (path / "config.json").is_file():
            raise ModelLoadError(f"{name} holds no hififace model (no config.json); {_WEIGHTS_HELP}")
        try:
            model = HifiFace.from_pretrained(
                str(path) if looks_local else name, revision=revision, cache_dir=cache_dir, token=token
            )
        except Exception as e:  # hub, network and checkpoint errors all end as one line
            raise ModelLoadError(
                f"cannot load the model {name} ({type(e).__name__}: {_first_line(e)}); {_WEIGHTS_HELP}"
            ) from e
        if isinstance(detector, str):
            detector = load_detector(detector)
        return cls(model, detector, **pipeline_options)

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> HifiFacePipeline:
        """Move the model to `device` and/or change the autocast dtype; returns self."""
        if device is not None:
            self.model.to(device)
        if dtype is not None:
            self.dtype = as_dtype(dtype)
        self._check_dtype()
        return self

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        """Side of the aligned crops the model takes (S)."""
        return self.model.image_size

    # ---------------------------------------------------------------- the task, step by step

    def encode_source(self, source: Any) -> SourceIdentity:
        """Find the source's largest face, align it and compute its identity code once.

        Args:
            source (path, PIL image, numpy array or SourceIdentity): a SourceIdentity is returned as is.

        Raises:
            InvalidImageError, ImageTooLargeError, NoFaceError.
        """
        if isinstance(source, SourceIdentity):
            return source
        image, name = self._load(source, "source")
        faces = self._detect(image)
        if not faces:
            raise NoFaceError("source", name)
        face = select_faces(faces, "largest")[0]
        crop, _ = align_face(image, face.landmarks, self.image_size, self.template)
        with self._inference():
            code = self.model.encode_source(self._to_tensor([crop]))
        return SourceIdentity(code=code, crop=crop, face=face, name=name)

    def swap(
        self,
        source: Any,
        target: str | os.PathLike | PILImage.Image | np.ndarray,
        face: str | int = "largest",
        reference: Any = None,
        identity_strength: float = 1.0,
        shape_strength: float = 1.0,
        mask_erode: int | None = None,
        mask_blur: int | None = None,
    ) -> SwapResult:
        """Swap the source's face onto faces of the target image.

        Args:
            source (path, PIL image, numpy array or SourceIdentity): the face to put in; its largest face.
            target (path, PIL image or numpy array): the picture to change (RGB, RGBA or grayscale).
            face (str or int, default "largest"): which target faces: "largest", "all", an index
                counted left to right from 0 (int or digit string), or "reference".
            reference (path, PIL image, numpy array or (512,) embedding): with face="reference",
                a photo of the person to replace; every target face at least `reference_threshold`
                similar (ArcFace cosine) is swapped.
            identity_strength (float in [0, 1], default 1.0): 0 keeps the target's ArcFace identity.
            shape_strength (float in [0, 1], default 1.0): 0 keeps the target's 3D face shape.
            mask_erode, mask_blur (int, optional): override the pipeline's mask softening.

        Returns:
            SwapResult: the image (same size as the target; PIL for PIL or path input, numpy for
            numpy input) and the swapped faces with their intermediates.

        Raises:
            InvalidImageError, ImageTooLargeError, NoFaceError (source, target or reference), FaceChoiceError.
        """
        _check_strength("identity_strength", identity_strength)
        _check_strength("shape_strength", shape_strength)
        source = self.encode_source(source)
        image, name = self._load(target, "target")
        faces = self._detect(image)
        if not faces:
            raise NoFaceError("target", name)
        chosen = self._choose(image, faces, face, reference)
        if not chosen:
            raise NoFaceError(
                "target", name, f" similar enough to the reference (threshold {self.reference_threshold})"
            )
        swaps = self._swap_faces(
            source, [(image, f.box, f.landmarks) for f in chosen], identity_strength, shape_strength
        )
        swapped = self._paste(image, swaps, mask_erode, mask_blur)
        return SwapResult(image=_like_input(target, swapped), faces=swaps)

    def swap_video(
        self, source: Any, video_in: str | os.PathLike, video_out: str | os.PathLike, **options: Any
    ) -> VideoSummary:
        """Swap the source's face through a video; see `hififace.video.swap_video` for the options."""
        from hififace.video import swap_video

        return swap_video(self, source, video_in, video_out, **options)

    # ---------------------------------------------------------------- steps (also used by video)

    def _load(self, src: Any, role: str) -> tuple[Image, str | None]:
        name = _name_of(src)
        size = _peek_size(src)
        if size is not None:
            self._check_pixels(size[0], size[1], f"the {role} image" + (f" {name}" if name else ""))
        try:
            return load_image(src, max_pixels=self.max_pixels), name
        except ImageError as e:
            raise InvalidImageError(f"cannot use the {role} image: {e}") from e
        except TypeError as e:
            raise InvalidImageError(
                f"the {role} image must be a path, a PIL image or a numpy array ({e})"
            ) from e

    def _check_pixels(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"{what} is {width}x{height} ({width * height / 1e6:.1f} MP), larger than the limit of "
                f"{self.max_pixels / 1e6:.1f} MP"
            )

    def _detect(self, image: Image) -> list[Face]:
        height, width = image.shape[:2]
        scale = min(1.0, self.detect_max_side / max(height, width))
        if scale == 1.0:
            return self.detector.detect(image)
        # Detection on a smaller copy: far faster on large photos; landmarks are scaled back.
        import cv2

        small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        return [
            Face(
                box=tuple(v / scale for v in f.box),
                score=f.score,
                landmarks=f.landmarks / scale,
                landmarks68=None if f.landmarks68 is None else f.landmarks68 / scale,
            )
            for f in self.detector.detect(small)
        ]

    def _choose(self, image: Image, faces: Sequence[Face], face: str | int, reference: Any) -> list[Face]:
        mode, index = _parse_face(face)
        if mode == "index" and not 0 <= index < len(faces):
            count = f"{len(faces)} face" + ("s" if len(faces) != 1 else "")
            raise FaceChoiceError(
                f"the target image has {count}; face index {index} is out of range "
                f"(0 to {len(faces) - 1}, counted from the left)"
            )
        try:
            if mode != "reference":
                return select_faces(faces, mode, index=index)
            if reference is None:
                raise FaceChoiceError('face="reference" needs a reference image of the person to replace')
            return select_faces(
                faces,
                "reference",
                reference_embedding=self._reference_embedding(reference),
                embed_fn=lambda f: self._embed(image, f.landmarks),
                threshold=self.reference_threshold,
            )
        except FaceSelectionError as e:
            raise FaceChoiceError(str(e)) from e

    def _reference_embedding(self, reference: Any) -> np.ndarray:
        if isinstance(reference, np.ndarray) and reference.ndim == 1:
            return reference
        image, name = self._load(reference, "reference")
        faces = self._detect(image)
        if not faces:
            raise NoFaceError("reference", name)
        return self._embed(image, select_faces(faces, "largest")[0].landmarks)

    def _embed(self, image: Image, landmarks: Landmarks5) -> np.ndarray:
        """The L2-normalised ArcFace embedding of one face, as the model's identity prior sees it."""
        crop, _ = align_face(image, landmarks, self.image_size, self.template)
        with self._inference():
            embedding = self.model.identity.arcface.embed(self._to_tensor([crop]))
        return embedding[0].float().cpu().numpy()

    def _swap_faces(
        self,
        source: SourceIdentity,
        faces: Sequence[tuple[Image, tuple[float, float, float, float], Landmarks5]],
        identity_strength: float,
        shape_strength: float,
    ) -> list[FaceSwap]:
        """Align every (image, box, landmarks) face and run the generator in batches."""
        aligned = [
            align_face(image, landmarks, self.image_size, self.template) for image, _, landmarks in faces
        ]
        code = _code_to(source.code, self.device)
        swaps = []
        for start in range(0, len(aligned), self.batch_size):
            chunk = aligned[start : start + self.batch_size]
            with self._inference():
                out = self.model(
                    code,
                    self._to_tensor([crop for crop, _ in chunk]),
                    shape_strength=shape_strength,
                    identity_strength=identity_strength,
                )
            images = {
                k: _to_numpy(getattr(out, k)) for k in ("image_out", "image", "image_low", "mask", "mask_low")
            }
            for i, (crop, matrix) in enumerate(chunk):
                _, box, landmarks = faces[start + i]
                swaps.append(
                    FaceSwap(
                        box=tuple(float(v) for v in box),
                        landmarks=np.asarray(landmarks, dtype=np.float32),
                        matrix=matrix,
                        source_crop=source.crop,
                        target_crop=crop,
                        **{k: v[i] for k, v in images.items()},
                    )
                )
        return swaps

    def _paste(
        self,
        image: Image,
        swaps: Sequence[FaceSwap],
        mask_erode: int | None = None,
        mask_blur: int | None = None,
    ) -> Image:
        """Soften each M_r, warp I_r and the mask back into the image, alpha-blend; faces in order."""
        scale = self.image_size / 256
        erode = round((self.mask_erode if mask_erode is None else mask_erode) * scale)
        blur = round((self.mask_blur if mask_blur is None else mask_blur) * scale)
        for swap in swaps:
            image = paste_back(image, swap.image, soften_mask(swap.mask, erode, blur), swap.matrix)
        return image

    def _to_tensor(self, crops: Sequence[Image]) -> torch.Tensor:
        batch = torch.from_numpy(np.stack(crops)).to(self.device)
        return batch.permute(0, 3, 1, 2).float().div_(255.0)

    def _inference(self) -> contextlib.AbstractContextManager:
        """No autograd; autocast to the pipeline's dtype unless it is float32."""
        return inference_context(self.device, self.dtype)

    def _check_dtype(self) -> None:
        if self.dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError("float16 needs a GPU; on the CPU use float32 (default) or bfloat16")
        if self.dtype != torch.float32:
            # channels-last convolutions pay off with reduced precision (about 0.45x the fp32 time
            # on a CPU with bf16, benchmarks/results); in fp32 they are slower there
            optimize(self.model, channels_last=True)

    def __repr__(self) -> str:
        return (
            f"HifiFacePipeline(image_size={self.image_size}, detector={self.detector!r}, "
            f"device={self.device}, dtype={str(self.dtype).removeprefix('torch.')})"
        )


# -------------------------------------------------------------------- small helpers


def _check_strength(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise SwapError(f"{name} must be a number from 0 to 1, got {value!r}")


def _parse_face(face: str | int) -> tuple[str, int]:
    """("largest" | "all" | "reference" | "index", index) from the user's face choice."""
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool):
        return "index", int(face)
    if isinstance(face, str):
        text = face.strip().lower()
        if text in FACE_MODES:
            return text, 0
        if text.lstrip("-").isdigit():
            return "index", int(text)
    raise FaceChoiceError(
        f"face must be 'largest', 'all', 'reference' or a face index (0 = leftmost), got {face!r}"
    )


def _name_of(src: Any) -> str | None:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if _is_pil(src):
        return getattr(src, "filename", "") or None
    return None


def _peek_size(src: Any) -> tuple[int, int] | None:
    """(width, height) without decoding pixels, or None when it cannot be had cheaply."""
    if _is_pil(src):
        return src.size
    if isinstance(src, np.ndarray) and src.ndim in (2, 3):
        return src.shape[1], src.shape[0]
    if isinstance(src, (str, os.PathLike)) and os.path.isfile(src):
        try:
            with PILImage.open(src) as pil:  # reads the header only
                return pil.size
        except Exception:  # load_image reports unreadable files with its own message
            return None
    return None


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _is_pil(value: Any) -> bool:
    return isinstance(value, PILImage.Image)


def _like_input(target: Any, image: Image) -> PILImage.Image | Image:
    """The swapped picture in the target's type: numpy in, numpy out; PIL or a path in, PIL out."""
    return image if isinstance(target, np.ndarray) else PILImage.fromarray(image, mode="RGB")


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) tensor → float32 (B, H, W, C), or (B, H, W) for one channel, clipped to [0, 1]."""
    array = x.detach().float().clamp_(0.0, 1.0).cpu().numpy().transpose(0, 2, 3, 1)
    return np.ascontiguousarray(array[..., 0] if array.shape[-1] == 1 else array)


def _to_uint8_rgb(array: np.ndarray) -> Image:
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array)


def _code_to(code: IdentityCode, device: torch.device) -> IdentityCode:
    if code.coeffs.device == device:
        return code
    return type(code)(coeffs=code.coeffs.to(device), embedding=code.embedding.to(device))
