"""Face swapping on whole images: detect → choose → align → swap → blend → paste.

    pipeline = HifiFacePipeline.from_pretrained("models/hififace-256")   # fp32, on the CPU
    pipeline.to("cuda")                                                   # the caller moves it
    result = pipeline.swap("source.jpg", "target.jpg")                    # the largest target face
    result.save("swapped.png")                                            # tagged as AI-generated

`swap` is the composition of public steps, each usable alone, in the order the data flows:

1. `read_image`: the project's loader (EXIF, alpha, 16-bit, pixel limit), errors naming the role;
2. `detect_faces`: faces and their five landmarks (on a downscaled copy of large images);
3. `face_choice` and `choose_faces`: which target faces (`hififace.faces.FaceChoice`);
4. `encode_source` (or `encode_crops`): the source's identity code, 3DMM coefficients and ArcFace
   embedding (the priors of v_sid, HifiFace https://arxiv.org/abs/2106.09965 §3.1), computed once
   and reusable over many targets; `embed_faces` gives ArcFace embeddings of faces in an image;
5. `swap_faces`: align the faces and run the generator in batches; per face I_r, I_low, M_r,
   M_low and I_out (`FaceSwap`);
6. `composite`: soften each M_r and paste I_r back. Pixels outside the pasted region stay
   bit-identical to the input.

Videos go through `hififace.video.swap_video(pipeline, ...)`, built on the same steps.

Every input the pipeline cannot use raises a `SwapError` subclass (`hififace.errors`, re-exported
here) with a one-line message.
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

from hififace.errors import (
    FaceChoiceError,
    ImageTooLargeError,
    InvalidImageError,
    ModelLoadError,
    NoFaceError,
    SwapError,
)
from hififace.faces import (
    Face,
    FaceChoice,
    FaceDetector,
    align_face,
    load_detector,
    paste_back,
    select_faces,
    soften_mask,
)
from hififace.fast import as_dtype, inference_context, optimize
from hififace.hub import looks_like_path
from hififace.imageio import MAX_PIXELS, ImageError, load_image, save_image
from hififace.tensors import images_to_tensor, tensor_to_images, to_uint8_rgb
from hififace.types import Image, Landmarks5, Mask, Matrix

if TYPE_CHECKING:
    from hififace.models.generator import HifiFace
    from hififace.priors.identity import IdentityCode

__all__ = [
    "AI_METADATA",
    "FaceChoice",
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

_WEIGHTS_HELP = (
    "get weights with `hififace convert hififace-pytorch generator_<iter>.pth models/hififace-256` "
    "(the public HiFiFace-pytorch release), or train a model"
)


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
            name: to_uint8_rgb(getattr(self, name))
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
        looks_local = looks_like_path(name)
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

    def swap(
        self,
        source: Any,
        target: str | os.PathLike | PILImage.Image | np.ndarray,
        face: str | int | FaceChoice = "largest",
        reference: Any = None,
        identity_strength: float = 1.0,
        shape_strength: float = 1.0,
        mask_erode: int | None = None,
        mask_blur: int | None = None,
    ) -> SwapResult:
        """Swap the source's face onto faces of the target image: the public steps in a row.

        Args:
            source (path, PIL image, numpy array or SourceIdentity): the face to put in; its largest face.
            target (path, PIL image or numpy array): the picture to change (RGB, RGBA or grayscale).
            face (str, int or FaceChoice, default "largest"): which target faces: "largest", "all",
                an index counted left to right from 0 (int or digit string), "reference", or a
                `FaceChoice` made once (`face_choice`).
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
        self.check_inputs(identity_strength, shape_strength)
        source = self.encode_source(source)
        image, name = self.read_image(target, "target")
        faces = self.detect_faces(image)
        if not faces:
            raise NoFaceError("target", name)
        chosen = self.choose_faces(image, faces, self.face_choice(face, reference), name=name)
        swaps = self.swap_faces(source, [(image, f) for f in chosen], identity_strength, shape_strength)
        swapped = self.composite(image, swaps, mask_erode, mask_blur)
        return SwapResult(image=_like_input(target, swapped), faces=swaps)

    def check_inputs(self, identity_strength: float = 1.0, shape_strength: float = 1.0) -> None:
        """Raise `SwapError` unless both strengths are numbers from 0 to 1 (before any work is done)."""
        for name, value in (("identity_strength", identity_strength), ("shape_strength", shape_strength)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise SwapError(f"{name} must be a number from 0 to 1, got {value!r}")

    def check_pixels(self, width: int, height: int, what: str) -> None:
        """Raise `ImageTooLargeError` when `width` x `height` exceeds `max_pixels`; `what` names the image."""
        if width * height > self.max_pixels:
            raise ImageTooLargeError(
                f"{what} is {width}x{height} ({width * height / 1e6:.1f} MP), larger than the limit of "
                f"{self.max_pixels / 1e6:.1f} MP"
            )

    def read_image(self, src: Any, role: str = "target") -> tuple[Image, str | None]:
        """Load an image with `hififace.imageio.load_image`, refusing more than `max_pixels`.

        Args:
            src (path, PIL image or numpy array): the image.
            role (str, default "target"): what it is ("source", "target", "reference"), for messages.

        Returns:
            (uint8 (H, W, 3) RGB image, its file name or None).

        Raises:
            ImageTooLargeError (checked from the header, before decoding), InvalidImageError.
        """
        name = _name_of(src)
        size = _peek_size(src)
        if size is not None:
            self.check_pixels(size[0], size[1], f"the {role} image" + (f" {name}" if name else ""))
        try:
            return load_image(src, max_pixels=self.max_pixels), name
        except ImageError as e:
            raise InvalidImageError(f"cannot use the {role} image: {e}") from e
        except TypeError as e:
            raise InvalidImageError(
                f"the {role} image must be a path, a PIL image or a numpy array ({e})"
            ) from e

    def detect_faces(self, image: Image) -> list[Face]:
        """Every face of `image` with its box and five landmarks in the image's pixels, left to right.

        Images with a side over `detect_max_side` are detected on a downscaled copy (far faster on
        large photos); boxes and landmarks are scaled back, so faces are aligned and pasted at full
        resolution.
        """
        height, width = image.shape[:2]
        scale = min(1.0, self.detect_max_side / max(height, width))
        if scale == 1.0:
            return self.detector.detect(image)
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

    def face_choice(self, face: str | int | FaceChoice = "largest", reference: Any = None) -> FaceChoice:
        """The user's face choice parsed once; a reference photo is embedded here, once.

        Args:
            face (str, int or FaceChoice, default "largest"): as in `swap`.
            reference (path, PIL image, numpy array or (512,) embedding, optional): for face="reference".

        Raises:
            FaceChoiceError: an unknown choice, or "reference" without a reference.
            InvalidImageError, ImageTooLargeError, NoFaceError: the reference photo cannot be used.
        """
        if isinstance(face, FaceChoice):
            return face
        wants_reference = isinstance(face, str) and face.strip().lower() == "reference"
        if not wants_reference or reference is None:
            return FaceChoice.parse(face, threshold=self.reference_threshold)
        if isinstance(reference, np.ndarray) and reference.ndim == 1:
            embedding = reference
        else:
            image, name = self.read_image(reference, "reference")
            faces = self.detect_faces(image)
            if not faces:
                raise NoFaceError("reference", name)
            embedding = self.embed_faces(image, select_faces(faces, "largest"))[0]
        return FaceChoice.parse(face, reference=embedding, threshold=self.reference_threshold)

    def choose_faces(
        self, image: Image, faces: Sequence[Face], choice: FaceChoice, name: str | None = None
    ) -> list[Face]:
        """The faces of a still image that `choice` picks, left to right; never none.

        Args:
            image (Image): the image the faces were found in (a "reference" choice embeds them).
            faces (sequence of Face): its faces (`detect_faces`).
            choice (FaceChoice): from `face_choice`.
            name (str, optional): the image's file name, for messages.

        Raises:
            NoFaceError: no faces, or none similar enough to the reference.
            FaceChoiceError: an index beyond the faces present.
        """
        if not faces:
            raise NoFaceError("target", name)
        if choice.out_of_range(len(faces)):
            count = f"{len(faces)} face" + ("s" if len(faces) != 1 else "")
            raise FaceChoiceError(
                f"the target image has {count}; face index {choice.index} is out of range "
                f"(0 to {len(faces) - 1}, counted from the left)"
            )
        chosen = select_faces(faces, choice, embed=lambda some: self.embed_faces(image, some))
        if not chosen:
            raise NoFaceError(
                "target", name, f" similar enough to the reference (threshold {choice.threshold})"
            )
        return chosen

    def encode_source(self, source: Any, face: Face | None = None) -> SourceIdentity:
        """Align the source face and compute its identity code once (reusable over many targets).

        Args:
            source (path, PIL image, numpy array or SourceIdentity): a SourceIdentity is returned as is.
            face (Face, optional): the source face, when already detected; else the largest face found.

        Raises:
            InvalidImageError, ImageTooLargeError, NoFaceError.
        """
        if isinstance(source, SourceIdentity):
            return source
        image, name = self.read_image(source, "source")
        if face is None:
            faces = self.detect_faces(image)
            if not faces:
                raise NoFaceError("source", name)
            face = select_faces(faces, "largest")[0]
        crop, _ = align_face(image, face.landmarks, self.image_size, self.template)
        return SourceIdentity(code=self.encode_crops([crop]), crop=crop, face=face, name=name)

    def encode_crops(self, crops: Sequence[Image]) -> IdentityCode:
        """3DMM coefficients (N, 257) and ArcFace embeddings (N, 512) of aligned uint8 (S, S, 3) crops.

        The priors of the shape-aware identity v_sid (paper §3.1), `batch_size` crops at a time;
        the tensors stay on the pipeline's device.
        """
        codes = []
        for start in range(0, len(crops), self.batch_size):
            with self._inference():
                codes.append(
                    self.model.encode_source(self._to_tensor(crops[start : start + self.batch_size]))
                )
        if len(codes) == 1:
            return codes[0]
        return type(codes[0])(
            coeffs=torch.cat([c.coeffs for c in codes]), embedding=torch.cat([c.embedding for c in codes])
        )

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> np.ndarray:
        """float32 (N, 512): the unit ArcFace embedding of each face, as the model's identity prior sees it."""
        crops = [align_face(image, f.landmarks, self.image_size, self.template)[0] for f in faces]
        embeddings = []
        for start in range(0, len(crops), self.batch_size):
            with self._inference():
                batch = self.model.identity.arcface.embed(
                    self._to_tensor(crops[start : start + self.batch_size])
                )
            embeddings.append(batch.float().cpu().numpy())
        return np.concatenate(embeddings) if embeddings else np.zeros((0, 512), np.float32)

    def swap_faces(
        self,
        source: SourceIdentity,
        faces: Sequence[tuple[Image, Face]],
        identity_strength: float = 1.0,
        shape_strength: float = 1.0,
    ) -> list[FaceSwap]:
        """Align every (image, face) and run the generator on `batch_size` crops at a time.

        Args:
            source (SourceIdentity): from `encode_source`; or one whose code has a row per face
                (codes of several sources concatenated), so that faces of different sources go
                through the generator together (the app batches its users' requests this way).
            faces (sequence of (Image, Face)): the faces to swap, each with the image it is in; the
                crop is aligned on `face.landmarks` (a video passes smoothed ones, with
                `dataclasses.replace`).
            identity_strength, shape_strength (float in [0, 1], default 1.0): as in `swap`.

        Returns:
            one FaceSwap per face, in order: I_r, I_low, M_r, M_low, I_out and the crops.
        """
        self.check_inputs(identity_strength, shape_strength)
        aligned = [align_face(image, face.landmarks, self.image_size, self.template) for image, face in faces]
        code = _code_to(source.code, self.device)
        per_face = len(code) > 1
        if per_face and len(code) != len(faces):
            raise ValueError(f"the source has {len(code)} identity codes for {len(faces)} faces")
        swaps = []
        for start in range(0, len(aligned), self.batch_size):
            chunk = aligned[start : start + self.batch_size]
            rows = slice(start, start + len(chunk))
            with self._inference():
                out = self.model(
                    type(code)(coeffs=code.coeffs[rows], embedding=code.embedding[rows])
                    if per_face
                    else code,
                    self._to_tensor([crop for crop, _ in chunk]),
                    shape_strength=shape_strength,
                    identity_strength=identity_strength,
                )
            images = {
                k: tensor_to_images(getattr(out, k))
                for k in ("image_out", "image", "image_low", "mask", "mask_low")
            }
            for i, (crop, matrix) in enumerate(chunk):
                face = faces[start + i][1]
                swaps.append(
                    FaceSwap(
                        box=tuple(float(v) for v in face.box),
                        landmarks=np.asarray(face.landmarks, dtype=np.float32),
                        matrix=matrix,
                        source_crop=source.crop,
                        target_crop=crop,
                        **{k: v[i] for k, v in images.items()},
                    )
                )
        return swaps

    def composite(
        self,
        image: Image,
        swaps: Sequence[FaceSwap],
        mask_erode: int | None = None,
        mask_blur: int | None = None,
    ) -> Image:
        """Paste swapped faces back: soften each M_r, warp I_r and the mask into the image, alpha-blend.

        Args:
            image (Image): the image the faces were aligned from; not modified.
            swaps (sequence of FaceSwap): from `swap_faces` (or your own, e.g. an edited `image`),
                pasted in order.
            mask_erode, mask_blur (int, optional): override the pipeline's mask softening (radii in
                crop pixels at 256, scaled with the model's image size).

        Returns:
            a new uint8 (H, W, 3) image, bit-identical to `image` outside the pasted masks.
        """
        scale = self.image_size / 256
        erode = round((self.mask_erode if mask_erode is None else mask_erode) * scale)
        blur = round((self.mask_blur if mask_blur is None else mask_blur) * scale)
        for swap in swaps:
            image = paste_back(image, swap.image, soften_mask(swap.mask, erode, blur), swap.matrix)
        return image

    # ---------------------------------------------------------------- internals

    def _to_tensor(self, crops: Sequence[Image]) -> torch.Tensor:
        return images_to_tensor(crops, self.device)

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


def _code_to(code: IdentityCode, device: torch.device) -> IdentityCode:
    if code.coeffs.device == device:
        return code
    return type(code)(coeffs=code.coeffs.to(device), embedding=code.embedding.to(device))
