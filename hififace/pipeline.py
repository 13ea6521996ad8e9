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
6. `enhance_faces` (optional): a face-restoration network on each I_r (`hififace.enhance`);
7. `composite`: build each face's paste-back mask from the masks picked (`MaskOptions`: M_r
   softened, the feathered crop box, parsed regions, occlusion) and paste I_r back. Pixels outside
   the final mask stay bit-identical to the input.

Several photos of one person are one source (`encode_sources`: averaged identity codes), and
`face_map` maps sources onto target faces by reference photos (`swap(..., mapping=...)`).

Videos go through `hififace.video.swap_video(pipeline, ...)`, built on the same steps.

Every input the pipeline cannot use raises a `SwapError` subclass (`hififace.errors`, re-exported
here) with a one-line message.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image as PILImage

from hififace.atomic import atomic_write
from hififace.enhance import FaceEnhancer, check_blend, load_enhancer
from hififace.errors import (
    FaceChoiceError,
    ImageTooLargeError,
    InvalidImageError,
    ModelLoadError,
    NoFaceError,
    SwapError,
)
from hififace.faces import (
    DETECT_MAX_SIDE,
    Face,
    FaceChoice,
    FaceDetector,
    align_face,
    detection_input,
    load_detector,
    paste_back,
    select_faces,
)
from hififace.faces.masks import PARSER_HELP, MaskOptions, combine_masks, mask_set, parse_crops
from hififace.faces.selection import FaceMap, cosine_similarity
from hififace.fast import inference_context, optimize, precision_name, resolve_dtype
from hififace.formats import IMAGE_SUFFIXES
from hififace.hub import looks_like_path
from hififace.imageio import MAX_PIXELS, ImageError, load_image, save_image
from hififace.settings import PIPELINE_SETTINGS, read_settings_file
from hififace.tensors import images_to_tensor, tensor_to_images, to_uint8_rgb
from hififace.types import Image, Landmarks5, Mask, Matrix

if TYPE_CHECKING:
    from hififace.models.generator import HifiFace
    from hififace.priors.identity import IdentityCode
    from hififace.priors.parsing import FaceParser

__all__ = [
    "AI_METADATA",
    "FaceChoice",
    "FaceChoiceError",
    "FaceMap",
    "FaceSwap",
    "HifiFacePipeline",
    "MaskOptions",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelLoadError",
    "NoFaceError",
    "SourceIdentity",
    "SwapError",
    "SwapRequest",
    "SwapResult",
]

# The machine-readable marker every swapped output carries (PNG text chunks, EXIF, video tags).
AI_METADATA = {
    "ai_generated": "true",
    "software": "hififace",
    "description": "AI-generated: a face was swapped with HifiFace (https://arxiv.org/abs/2106.09965)",
}

DEFAULT_DTYPE = "float32"  # the library's default; the command and the app ask for "auto"
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
        enhanced (float32 (S, S, 3) or None): I_r after face restoration (`enhance_faces`).
        masks (dict of str to float32 (S, S)): the masks `composite` multiplied, by type.
        paste_mask (float32 (S, S) or None): their product, the alpha `composite` pasted with.
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
    enhanced: np.ndarray | None = None
    masks: dict[str, Mask] = field(default_factory=dict)
    paste_mask: Mask | None = None

    def intermediates(self) -> dict[str, Image]:
        """Every crop and intermediate as a displayable uint8 RGB image, keyed by field name.

        After `composite`: also each mask it used as ``mask_<type>`` and their product as
        ``paste_mask``; after `enhance_faces`: ``enhanced``.
        """
        out = {
            name: to_uint8_rgb(getattr(self, name))
            for name in ("source_crop", "target_crop", "image_out", "image", "image_low", "mask", "mask_low")
        }
        if self.enhanced is not None:
            out["enhanced"] = to_uint8_rgb(self.enhanced)
        out.update({f"mask_{name}": to_uint8_rgb(mask) for name, mask in self.masks.items()})
        if self.paste_mask is not None:
            out["paste_mask"] = to_uint8_rgb(self.paste_mask)
        return out


@dataclass
class SwapResult:
    """What `HifiFacePipeline.swap` returns.

    Attributes:
        image (PIL image or numpy array): the swapped picture, the target's size; a PIL RGB image
            when the target was a PIL image or a path, a uint8 (H, W, 3) RGB array when it was an array.
        faces (list of FaceSwap): the swapped faces, left to right.
        precision (str or None): how the generator ran, e.g. "float32" or "bfloat16 + channels-last"
            (`HifiFacePipeline.precision`).
    """

    image: PILImage.Image | Image
    faces: list[FaceSwap] = field(default_factory=list)
    precision: str | None = None

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


@dataclass
class SwapRequest:
    """The arguments of one `HifiFacePipeline.swap` call, for `swap_many` (same names, same defaults).

    Attributes:
        source, target, face, reference, identity_strength, shape_strength, mask_erode,
        mask_blur, masks, regions, mask_padding, mapping, enhancer_blend: as in `swap`.
    """

    source: Any = None
    target: Any = None
    face: str | int | FaceChoice = "largest"
    reference: Any = None
    identity_strength: float = 1.0
    shape_strength: float = 1.0
    mask_erode: int | None = None
    mask_blur: int | None = None
    masks: MaskOptions | str | Sequence[str] | None = None
    regions: str | Sequence[str] | None = None
    mask_padding: float | Sequence[float] | None = None
    mapping: Any = None
    enhancer_blend: float | None = None


@dataclass
class _PreparedRequest:
    """A request read, detected and chosen: its faces grouped by source, ready for the generator."""

    request: SwapRequest
    image: Image
    groups: list[tuple[SourceIdentity, list[Face]]]
    options: MaskOptions


class HifiFacePipeline:
    """Swap a source face into whole images and videos with a HifiFace generator.

    Args:
        model (HifiFace): the generator with its priors; put in eval mode here.
        detector (FaceDetector): finds faces and their five landmarks (`hififace.faces.load_detector`).
        dtype (str or torch.dtype, default "float32"): "float16" or "bfloat16" run the model under
            autocast (GPU; bfloat16 also on CPU); "float32" runs it as it is; "auto" picks bfloat16
            (with channels-last) where the device has native bf16 and float32 elsewhere, again
            whenever the pipeline moves (`hififace.fast.resolve_dtype`).
        batch_size (int, default 8): faces per generator call.
        max_pixels (int, default 40 000 000): larger images and video frames are refused.
        template (str, default "frontal"): the alignment template the model was trained with.
        mask_erode (int, default 5): erosion radius of M_r before pasting, in crop pixels at 256
            (scaled with the model's image size).
        mask_blur (int, default 10): feather radius of M_r before pasting, in crop pixels at 256.
        detect_max_side (int, default 1600): images with a longer side are downscaled for detection
            only (faces are still aligned and pasted at full resolution).
        reference_threshold (float, default 0.3): minimum ArcFace cosine similarity for face="reference",
            for a face mapping, and between the photos of one source.
        masks (MaskOptions, str or sequence, default "model,box"): the paste-back masks
            (`hififace.faces.masks`); a string or sequence is parsed with `MaskOptions.parse`.
        parser (FaceParser or path, optional): the face parser (`hififace convert bisenet`) the
            "region" and "occlusion" masks need; a folder is loaded here.
        enhancer (FaceEnhancer or path, optional): a face-restoration network run on every I_r
            (`hififace.enhance.load_enhancer`); a file is loaded here.
        enhancer_blend (float in [0, 1], default 0.8): how much of the restored face.
    """

    def __init__(
        self,
        model: HifiFace,
        detector: FaceDetector,
        dtype: str | torch.dtype = DEFAULT_DTYPE,
        batch_size: int = 8,
        max_pixels: int = MAX_PIXELS,
        template: str = "frontal",
        mask_erode: int = 5,
        mask_blur: int = 10,
        detect_max_side: int = DETECT_MAX_SIDE,
        reference_threshold: float = 0.3,
        masks: MaskOptions | str | Sequence[str] | None = None,
        parser: FaceParser | str | os.PathLike | None = None,
        enhancer: FaceEnhancer | str | os.PathLike | None = None,
        enhancer_blend: float = 0.8,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        self.model = model.eval()
        self.detector = detector
        self.auto_dtype = isinstance(dtype, str) and dtype == "auto"
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.template = template
        self.mask_erode = mask_erode
        self.mask_blur = mask_blur
        self.detect_max_side = detect_max_side
        self.reference_threshold = reference_threshold
        # "auto", "insightface" or "dlib": what `save_pretrained` records (from_pretrained sets it)
        self.detector_preference = "auto"
        self.masks = masks if isinstance(masks, MaskOptions) else MaskOptions.parse(masks)
        self.parser = load_parser(parser) if isinstance(parser, (str, os.PathLike)) else parser
        if self.masks.needs_parser and self.parser is None:
            raise SwapError(PARSER_HELP)
        check_blend(enhancer_blend)
        self.enhancer = load_enhancer(enhancer) if isinstance(enhancer, (str, os.PathLike)) else enhancer
        self.enhancer_blend = enhancer_blend
        self._check_dtype()

    @classmethod
    def from_pretrained(
        cls,
        model_repo_or_dir: str | os.PathLike,
        detector: str | FaceDetector | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        **pipeline_options: Any,
    ) -> HifiFacePipeline:
        """Load a converted or trained model folder / Hub repository, its pipeline settings and a detector.

        Local folder or Hub id is decided by `hififace.hub.looks_like_path`. Settings saved by
        `save_pretrained` (`pipeline.json`: template, mask softening, detector, dtype, ...) are
        restored; the arguments given here win over them.

        Args:
            model_repo_or_dir (str or path): a folder written by `save_pretrained` or `hififace
                convert`, or a Hub repository id.
            detector (str or FaceDetector, None): "auto", "insightface" or "dlib" (`load_detector`),
                or a detector instance; None takes the saved setting, else "auto".
            revision (str, None): branch, tag or commit of a Hub repository.
            cache_dir, token: passed to huggingface_hub for Hub repositories.
            local_files_only (bool, default False): use the local Hub cache only, never the network.
            force_download (bool, default False): download the Hub files again even when cached.
            **pipeline_options: the other `HifiFacePipeline` arguments (dtype, batch_size, ...).

        Raises:
            ModelLoadError: the folder does not exist or holds no model, the repository cannot be
                had, or its saved settings are not the pipeline's.
        """
        from hififace.models.generator import HifiFace

        name = os.fspath(model_repo_or_dir)
        path = Path(name).expanduser()
        looks_local = looks_like_path(name)
        if looks_local and not path.is_dir():
            raise ModelLoadError(f"model folder {name} does not exist; {_WEIGHTS_HELP}")
        if looks_local and not (path / "config.json").is_file():
            raise ModelLoadError(f"{name} holds no hififace model (no config.json); {_WEIGHTS_HELP}")
        hub = dict(
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        try:
            settings = _read_settings(path if looks_local else None, name, hub)
            # The weights are loaded in the layout the pipeline will run them in (see _check_dtype),
            # in one copy rather than two. The device is the CPU until the caller moves the pipeline.
            dtype = pipeline_options.get("dtype", settings.get("dtype", DEFAULT_DTYPE))
            try:
                channels_last = _runs_channels_last(resolve_dtype(dtype, "cpu"))
            except (TypeError, ValueError):  # the pipeline's constructor names a bad dtype
                channels_last = False
            model = HifiFace.from_pretrained(
                str(path) if looks_local else name,
                memory_format=torch.channels_last if channels_last else None,
                **hub,
            )
        except ModelLoadError:
            raise
        except Exception as e:  # hub, network and checkpoint errors all end as one line
            raise ModelLoadError(
                f"cannot load the model {name} ({type(e).__name__}: {_first_line(e)}); {_WEIGHTS_HELP}"
            ) from e
        saved_detector = settings.pop("detector", "auto")
        detector = saved_detector if detector is None else detector
        preference = detector if isinstance(detector, str) else None
        if isinstance(detector, str):
            detector = load_detector(detector)
        pipeline = cls(model, detector, **{**settings, **pipeline_options})
        pipeline.detector_preference = preference or pipeline.detector_preference
        return pipeline

    def settings(self) -> dict[str, Any]:
        """The pipeline's settings as `save_pretrained` writes them to `pipeline.json` (JSON values)."""
        return {
            "detector": self.detector_preference,
            # "auto" stays "auto": the machine that loads the pipeline decides what it runs
            "dtype": "auto" if self.auto_dtype else str(self.dtype).removeprefix("torch."),
            "batch_size": self.batch_size,
            "max_pixels": self.max_pixels,
            "template": self.template,
            "mask_erode": self.mask_erode,
            "mask_blur": self.mask_blur,
            "detect_max_side": self.detect_max_side,
            "reference_threshold": self.reference_threshold,
        }

    def save_pretrained(
        self, save_directory: str | os.PathLike, model_card_kwargs: dict[str, Any] | None = None
    ) -> Path:
        """Write the model (config.json, model.safetensors, README.md) and `pipeline.json` to a folder.

        `HifiFacePipeline.from_pretrained(save_directory)` gives back this pipeline: same weights,
        same template, mask softening, detector preference and dtype.

        Args:
            save_directory (str or path): the folder (created when missing).
            model_card_kwargs (dict, None): passed to the model card (e.g.
                `hififace.hub.card_metadata("hififace-pytorch")` for the licence).
        """
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, model_card_kwargs=model_card_kwargs or {})
        with atomic_write(folder / PIPELINE_SETTINGS, "w") as f:
            json.dump(self.settings(), f, indent=2, sort_keys=True)
            f.write("\n")
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        commit_message: str = "Upload HifiFace pipeline",
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """`save_pretrained` into a temporary folder and upload it to the Hub repo `repo_id`.

        Args:
            repo_id (str): "owner/name"; created (model repo) when it does not exist.
            private (bool, None): visibility of a repo that this creates.
            token (str, None): Hub token; None uses the logged-in one.
            branch (str, None): the branch to commit to (default: main).
            commit_message (str): the commit's message.
            model_card_kwargs (dict, None): as in `save_pretrained`.

        Returns:
            The URL of the commit.
        """
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="hififace-push-") as tmp:
            self.save_pretrained(tmp, model_card_kwargs=model_card_kwargs)
            info = api.upload_folder(
                repo_id=repo, folder_path=tmp, revision=branch, commit_message=commit_message
            )
        return str(getattr(info, "commit_url", info))

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> HifiFacePipeline:
        """Move the model to `device` and/or change the autocast dtype; returns self."""
        if device is not None:
            self.model.to(device)
            for extra in (self.parser, self.enhancer):
                if extra is not None:
                    extra.to(device)
        if dtype is not None:
            self.auto_dtype = isinstance(dtype, str) and dtype == "auto"
        if dtype is not None or self.auto_dtype:
            self.dtype = resolve_dtype("auto" if self.auto_dtype else dtype, self.device)
        self._check_dtype()
        return self

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """How the generator runs: "float32", or e.g. "bfloat16 + channels-last" (`to` changes it)."""
        return precision_name(self.dtype, channels_last=self.dtype != torch.float32)

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
        masks: MaskOptions | str | Sequence[str] | None = None,
        regions: str | Sequence[str] | None = None,
        mask_padding: float | Sequence[float] | None = None,
        mapping: Any = None,
        enhancer_blend: float | None = None,
    ) -> SwapResult:
        """Swap the source's face onto faces of the target image: the public steps in a row.

        Args:
            source (path, PIL image, numpy array, list of them, folder or SourceIdentity): the face
                to put in (its largest face); several photos of one person are averaged
                (`encode_sources`). None when `mapping` gives the sources.
            target (path, PIL image or numpy array): the picture to change (RGB, RGBA or grayscale).
            face (str, int or FaceChoice, default "largest"): which target faces: "largest", "all",
                an index counted left to right from 0 (int or digit string; several: "0,2"), "reference", or a
                `FaceChoice` made once (`face_choice`).
            reference (path, PIL image, numpy array or (512,) embedding): with face="reference",
                a photo of the person to replace; every target face at least `reference_threshold`
                similar (ArcFace cosine) is swapped.
            identity_strength (float in [0, 1], default 1.0): 0 keeps the target's ArcFace identity.
            shape_strength (float in [0, 1], default 1.0): 0 keeps the target's 3D face shape.
            mask_erode, mask_blur (int, optional): override the pipeline's mask softening.
            masks, regions, mask_padding (optional): override the pipeline's paste-back masks
                (`MaskOptions.parse`: e.g. "model,box,region", "skin,nose,mouth", 0.05).
            mapping (dict reference -> source, sequence of (reference, source) pairs, or FaceMap):
                instead of `source` and `face`, every target face receives the source of the
                reference it looks like most (`face_map`); faces like no reference stay as they are.
            enhancer_blend (float in [0, 1], optional): override the pipeline's enhancer blend.

        Returns:
            SwapResult: the image (same size as the target; PIL for PIL or path input, numpy for
            numpy input) and the swapped faces with their intermediates.

        Raises:
            InvalidImageError, ImageTooLargeError, NoFaceError (source, target or reference),
            FaceChoiceError, SwapError (bad mask options, a source photo unlike the first).
        """
        self.check_inputs(identity_strength, shape_strength)
        options = self.mask_options(masks, regions, mask_padding)
        if enhancer_blend is not None:
            check_blend(enhancer_blend)
        if (source is None) == (mapping is None):
            raise SwapError("give either a source or a face mapping (reference -> source), not both")
        face_map = self.face_map(mapping) if mapping is not None else None
        source = self.encode_source(source) if face_map is None else None
        image, name = self.read_image(target, "target")
        faces = self.detect_faces(image)
        if not faces:
            raise NoFaceError("target", name)
        if face_map is None:
            groups = [(source, self.choose_faces(image, faces, self.face_choice(face, reference), name=name))]
        else:
            groups = self.map_faces(image, faces, face_map, name=name)
        swaps = []
        for group_source, chosen in groups:
            swaps += self.swap_faces(
                group_source, [(image, f) for f in chosen], identity_strength, shape_strength
            )
        swaps.sort(key=lambda s: s.box[0])
        self.enhance_faces(swaps, enhancer_blend)
        swapped = self.composite(image, swaps, mask_erode, mask_blur, masks=options)
        return SwapResult(image=_like_input(target, swapped), faces=swaps, precision=self.precision)

    def mask_options(
        self,
        masks: MaskOptions | str | Sequence[str] | None = None,
        regions: str | Sequence[str] | None = None,
        mask_padding: float | Sequence[float] | None = None,
    ) -> MaskOptions:
        """The paste-back masks: the pipeline's, with what is given replaced (`MaskOptions.parse`).

        Raises:
            SwapError: unknown names, a bad padding, or "region"/"occlusion" without a parser
                (the message says how to get one).
        """
        if isinstance(masks, MaskOptions):
            options = masks
        else:
            options = MaskOptions.parse(
                self.masks.types if masks is None else masks,
                self.masks.regions if regions is None else regions,
                self.masks.padding if mask_padding is None else mask_padding,
            )
        if options.needs_parser and self.parser is None:
            raise SwapError(PARSER_HELP)
        return options

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
        small, scale = detection_input(image, self.detect_max_side)
        if scale == 1.0:
            return self.detector.detect(image)
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
            bad = choice.out_of_range_indices(len(faces))
            raise FaceChoiceError(
                f"the target image has {count}; face "
                + (f"index {bad[0]} is" if len(bad) == 1 else f"indices {', '.join(map(str, bad))} are")
                + f" out of range (0 to {len(faces) - 1}, counted from the left)"
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
            source (path, PIL image, numpy array or SourceIdentity): a SourceIdentity is returned as
                is; a list or tuple of photos, or a folder of them, goes to `encode_sources`.
            face (Face, optional): the source face, when already detected; else the largest face found.

        Raises:
            InvalidImageError, ImageTooLargeError, NoFaceError, SwapError (`encode_sources`).
        """
        if isinstance(source, SourceIdentity):
            return source
        if isinstance(source, (list, tuple)) or (
            isinstance(source, (str, os.PathLike)) and Path(source).expanduser().is_dir()
        ):
            return self.encode_sources(source)
        image, name = self.read_image(source, "source")
        if face is None:
            faces = self.detect_faces(image)
            if not faces:
                raise NoFaceError("source", name)
            face = select_faces(faces, "largest")[0]
        crop, _ = align_face(image, face.landmarks, self.image_size, self.template)
        return SourceIdentity(code=self.encode_crops([crop]), crop=crop, face=face, name=name)

    def encode_sources(self, sources: Sequence[Any] | str | os.PathLike) -> SourceIdentity:
        """Several photos of one person as one source: their identity codes averaged.

        The ArcFace embeddings are averaged and rescaled to their mean norm (unit embeddings stay
        unit), the 3DMM coefficients averaged; this steadies the identity. The crop, face and name
        shown are the first photo's.

        Args:
            sources (sequence of paths, PIL images or arrays, or a folder of images): the photos;
                a folder is read in file-name order.

        Raises:
            InvalidImageError: no photos (an empty folder); NoFaceError: a photo without a face;
            SwapError: a photo whose face is less similar (ArcFace cosine) than
                `reference_threshold` to the first photo's, named in the message.
        """
        if isinstance(sources, (str, os.PathLike)):
            folder = Path(sources).expanduser()
            sources = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not sources:
                raise InvalidImageError(f"the source folder {folder} holds no images")
        if not sources:
            raise InvalidImageError("no source images given")
        encoded = [self.encode_source(s) for s in sources]
        if len(encoded) == 1:
            return encoded[0]
        first = encoded[0]
        for other in encoded[1:]:
            similarity = cosine_similarity(
                first.code.embedding[0].float().cpu().numpy(), other.code.embedding[0].float().cpu().numpy()
            )
            if similarity < self.reference_threshold:
                raise SwapError(
                    f"the source {other.name or 'image'} does not look like the first source "
                    f"{first.name or 'image'} (ArcFace cosine {similarity:.2f} < {self.reference_threshold})"
                )
        embeddings = torch.cat([e.code.embedding for e in encoded])
        mean = embeddings.mean(dim=0, keepdim=True)
        mean = mean * (embeddings.norm(dim=1).mean() / mean.norm().clamp_min(1e-12))
        coeffs = torch.cat([e.code.coeffs for e in encoded]).mean(dim=0, keepdim=True)
        return SourceIdentity(
            code=type(first.code)(coeffs=coeffs, embedding=mean),
            crop=first.crop,
            face=first.face,
            name=first.name,
        )

    def face_map(self, mapping: Any) -> FaceMap:
        """Reference photos embedded and sources encoded once, for `swap(..., mapping=...)` and videos.

        Args:
            mapping (dict reference -> source, sequence of (reference, source) pairs, or FaceMap):
                each reference (path, PIL image, array, or (512,) embedding) is a photo of a person
                in the target; its source (anything `encode_source` takes) replaces that person.

        Raises:
            FaceChoiceError: an empty mapping; NoFaceError: a reference or source without a face
            (named); InvalidImageError, ImageTooLargeError.
        """
        if isinstance(mapping, FaceMap):
            return mapping
        pairs = list(mapping.items()) if isinstance(mapping, dict) else [tuple(p) for p in mapping]
        if not pairs:
            raise FaceChoiceError("the face mapping is empty; give at least one reference and its source")
        references = []
        for reference, _ in pairs:
            if isinstance(reference, np.ndarray) and reference.ndim == 1:
                references.append(reference)
                continue
            image, name = self.read_image(reference, "reference")
            faces = self.detect_faces(image)
            if not faces:
                raise NoFaceError("reference", name)
            references.append(self.embed_faces(image, select_faces(faces, "largest"))[0])
        sources = [self.encode_source(source) for _, source in pairs]
        return FaceMap(np.stack(references), sources, threshold=self.reference_threshold)

    def map_faces(
        self, image: Image, faces: Sequence[Face], face_map: FaceMap, name: str | None = None
    ) -> list[tuple[SourceIdentity, list[Face]]]:
        """The faces of a still image grouped by the source each receives (`FaceMap.assign`).

        Raises:
            NoFaceError: no face is similar enough to any reference.
        """
        ordered = select_faces(faces, "all")
        assigned = face_map.assign(self.embed_faces(image, ordered)) if ordered else []
        groups: dict[int, list[Face]] = {}
        for found, index in zip(ordered, assigned, strict=True):
            if index is not None:
                groups.setdefault(index, []).append(found)
        if not groups:
            raise NoFaceError(
                "target", name, f" similar enough to any mapping reference (threshold {face_map.threshold})"
            )
        return [(face_map.sources[i], groups[i]) for i in sorted(groups)]

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
        code = _code_to(source.code, self.device)
        if len(code) > 1 and len(code) != len(faces):
            raise ValueError(f"the source has {len(code)} identity codes for {len(faces)} faces")
        if len(code) > 1:  # a code per face: several sources' codes concatenated
            rows = [
                type(code)(coeffs=code.coeffs[i : i + 1], embedding=code.embedding[i : i + 1])
                for i in range(len(code))
            ]
            sources = [replace(source, code=row) for row in rows]
        else:
            sources = [source] * len(faces)
        jobs = [
            (s, image, face, identity_strength, shape_strength)
            for s, (image, face) in zip(sources, faces, strict=True)
        ]
        return self._swap_jobs(jobs, self.batch_size)

    def enhance_faces(self, swaps: Sequence[FaceSwap], blend: float | None = None) -> list[FaceSwap]:
        """Run the pipeline's enhancer on each I_r and keep the blend as `FaceSwap.enhanced`.

        Does nothing without an enhancer. `composite` then pastes `enhanced` instead of `image`.

        Args:
            swaps (sequence of FaceSwap): from `swap_faces`; changed in place and returned.
            blend (float in [0, 1], optional): override `enhancer_blend`; 0 gives I_r exactly.
        """
        if self.enhancer is None or not swaps:
            return list(swaps)
        blend = self.enhancer_blend if blend is None else blend
        with torch.inference_mode():
            enhanced = self.enhancer.enhance([swap.image for swap in swaps], blend)
        for swap, picture in zip(swaps, enhanced, strict=True):
            swap.enhanced = picture
        return list(swaps)

    def composite(
        self,
        image: Image,
        swaps: Sequence[FaceSwap],
        mask_erode: int | None = None,
        mask_blur: int | None = None,
        masks: MaskOptions | str | Sequence[str] | None = None,
        regions: str | Sequence[str] | None = None,
        mask_padding: float | Sequence[float] | None = None,
    ) -> Image:
        """Paste swapped faces back: build each face's mask, warp I_r and it into the image, alpha-blend.

        The mask is the product of the masks picked (`mask_options`; `hififace.faces.masks`): M_r
        softened, the feathered crop box, the parsed regions of the target crop, occlusion. Each
        FaceSwap records them (`masks`, `paste_mask`). The enhanced crop is pasted when there is one.

        Args:
            image (Image): the image the faces were aligned from; not modified.
            swaps (sequence of FaceSwap): from `swap_faces` (or your own, e.g. an edited `image`),
                pasted in order.
            mask_erode, mask_blur (int, optional): override the pipeline's mask softening (radii in
                crop pixels at 256, scaled with the model's image size); the blur also feathers
                the parser's masks, inwards.
            masks, regions, mask_padding (optional): override the pipeline's masks (`mask_options`).

        Returns:
            a new uint8 (H, W, 3) image, bit-identical to `image` wherever the final masks are 0.

        Raises:
            SwapError: bad mask options, or "region"/"occlusion" without a parser.
        """
        options = self.mask_options(masks, regions, mask_padding)
        scale = self.image_size / 256
        erode = round((self.mask_erode if mask_erode is None else mask_erode) * scale)
        blur = round((self.mask_blur if mask_blur is None else mask_blur) * scale)
        labels = parse_crops(self.parser, [s.target_crop for s in swaps]) if options.needs_parser else None
        for i, swap in enumerate(swaps):
            swap.masks = mask_set(swap.mask, None if labels is None else labels[i], options, erode, blur)
            swap.paste_mask = combine_masks(swap.masks)
            crop = swap.image if swap.enhanced is None else swap.enhanced
            image = paste_back(image, crop, swap.paste_mask, swap.matrix)
        return image

    def swap_many(
        self, requests: Sequence[SwapRequest | Mapping[str, Any]], max_batch: int | None = None
    ) -> list[SwapResult | SwapError]:
        """Several `swap` calls at once, their faces through the generator together (an app's users).

        Each request is read, detected and chosen on its own with the public steps (sources
        encoded once per batch when several requests name the same one); then every chosen face of
        every request goes through the generator in chunks of `max_batch` faces, each face with
        its own source's identity code (faces of different strengths in separate calls); then each request is
        enhanced and composited on its own. Each result is what `swap` gives for that request
        alone (the same pixels, up to float rounding between batch sizes: at most 1 level).

        Args:
            requests (sequence of SwapRequest, or of dicts of `swap`'s keyword arguments): the calls.
            max_batch (int, optional): faces per generator call; default `batch_size`.

        Returns:
            one entry per request, in order: its SwapResult, or the SwapError it raised (a bad or
            faceless photo, a wrong option); the other requests complete all the same.

        Raises:
            ValueError: `max_batch` < 1; TypeError: a dict with a name `swap` does not take.
        """
        max_batch = self.batch_size if max_batch is None else max_batch
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        requests = [r if isinstance(r, SwapRequest) else SwapRequest(**r) for r in requests]
        results: list[SwapResult | SwapError | _PreparedRequest] = []
        encoded: dict[Any, SourceIdentity | SwapError] = {}
        for request in requests:
            try:
                results.append(self._prepare_request(request, encoded))
            except SwapError as error:
                results.append(error)
        jobs = [
            (i, source, prepared.image, found, prepared.request)
            for i, prepared in enumerate(results)
            if isinstance(prepared, _PreparedRequest)
            for source, chosen in prepared.groups
            for found in chosen
        ]
        swapped = self._swap_jobs(
            [(s, image, f, r.identity_strength, r.shape_strength) for _, s, image, f, r in jobs], max_batch
        )
        per_request: dict[int, list[FaceSwap]] = {}
        for (i, *_), swap in zip(jobs, swapped, strict=True):
            per_request.setdefault(i, []).append(swap)
        for i, prepared in enumerate(results):
            if not isinstance(prepared, _PreparedRequest):
                continue
            request, swaps = prepared.request, sorted(per_request[i], key=lambda s: s.box[0])
            try:
                self.enhance_faces(swaps, request.enhancer_blend)
                image = self.composite(
                    prepared.image, swaps, request.mask_erode, request.mask_blur, masks=prepared.options
                )
                results[i] = SwapResult(_like_input(request.target, image), swaps, self.precision)
            except SwapError as error:
                results[i] = error
        return results

    # ---------------------------------------------------------------- internals

    def _prepare_request(
        self, request: SwapRequest, encoded: dict[Any, SourceIdentity | SwapError]
    ) -> _PreparedRequest:
        """`swap`'s steps up to the generator, in `swap`'s order (so the same input fails the same way).

        `encoded` holds the sources already encoded in this batch (or the error they raised).
        """
        self.check_inputs(request.identity_strength, request.shape_strength)
        options = self.mask_options(request.masks, request.regions, request.mask_padding)
        if request.enhancer_blend is not None:
            check_blend(request.enhancer_blend)
        if (request.source is None) == (request.mapping is None):
            raise SwapError("give either a source or a face mapping (reference -> source), not both")
        face_map = self.face_map(request.mapping) if request.mapping is not None else None
        source: SourceIdentity | SwapError | None = None
        if face_map is None:
            key = _source_key(request.source)
            if key is not None and key in encoded:
                source = encoded[key]
            else:
                try:
                    source = self.encode_source(request.source)
                except SwapError as error:
                    source = error
                if key is not None:
                    encoded[key] = source
            if isinstance(source, SwapError):
                raise source
        image, name = self.read_image(request.target, "target")
        faces = self.detect_faces(image)
        if not faces:
            raise NoFaceError("target", name)
        if face_map is None:
            choice = self.face_choice(request.face, request.reference)
            groups = [(source, self.choose_faces(image, faces, choice, name=name))]
        else:
            groups = self.map_faces(image, faces, face_map, name=name)
        return _PreparedRequest(request, image, groups, options)

    def _swap_jobs(
        self, jobs: Sequence[tuple[SourceIdentity, Image, Face, float, float]], max_batch: int
    ) -> list[FaceSwap]:
        """Align and swap faces of any sources, one generator call per `max_batch` faces of equal strengths.

        What `swap_faces` (one source, one pair of strengths) and `swap_many` (several requests) run.
        Each job is (source, image, face, identity_strength, shape_strength); faces of different
        sources go through one call with a code row each. Returns one FaceSwap per job, in order.
        """
        swaps: list[FaceSwap | None] = [None] * len(jobs)
        by_strength: dict[tuple[float, float], list[int]] = {}
        for row, (*_, identity, shape) in enumerate(jobs):
            by_strength.setdefault((float(identity), float(shape)), []).append(row)
        for (identity, shape), rows in by_strength.items():
            for start in range(0, len(rows), max_batch):
                chunk = rows[start : start + max_batch]
                aligned = [
                    align_face(jobs[r][1], jobs[r][2].landmarks, self.image_size, self.template)
                    for r in chunk
                ]
                codes = [_code_to(jobs[r][0].code, self.device) for r in chunk]
                code = type(codes[0])(
                    coeffs=torch.cat([c.coeffs for c in codes]),
                    embedding=torch.cat([c.embedding for c in codes]),
                )
                with self._inference():
                    out = self.model(
                        code,
                        self._to_tensor([crop for crop, _ in aligned]),
                        shape_strength=shape,
                        identity_strength=identity,
                    )
                images = {
                    k: tensor_to_images(getattr(out, k))
                    for k in ("image_out", "image", "image_low", "mask", "mask_low")
                }
                for i, (r, (crop, matrix)) in enumerate(zip(chunk, aligned, strict=True)):
                    source, _, face, _, _ = jobs[r]
                    swaps[r] = FaceSwap(
                        box=tuple(float(v) for v in face.box),
                        landmarks=np.asarray(face.landmarks, dtype=np.float32),
                        matrix=matrix,
                        source_crop=source.crop,
                        target_crop=crop,
                        **{k: v[i] for k, v in images.items()},
                    )
        return swaps

    def _to_tensor(self, crops: Sequence[Image]) -> torch.Tensor:
        return images_to_tensor(crops, self.device)

    def _inference(self) -> contextlib.AbstractContextManager:
        """No autograd; autocast to the pipeline's dtype unless it is float32."""
        return inference_context(self.device, self.dtype)

    def _check_dtype(self) -> None:
        if self.dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError("float16 needs a GPU; on the CPU use float32 (default) or bfloat16")
        if _runs_channels_last(self.dtype):
            optimize(self.model, channels_last=True)

    def __repr__(self) -> str:
        return (
            f"HifiFacePipeline(image_size={self.image_size}, detector={self.detector!r}, "
            f"device={self.device}, dtype={str(self.dtype).removeprefix('torch.')})"
        )


# -------------------------------------------------------------------- small helpers


def _runs_channels_last(dtype: torch.dtype) -> bool:
    """Whether the generator runs channels-last at `dtype`: with reduced precision. There it pays off
    (about 0.45x the fp32 time on a CPU with bf16, benchmarks/results); in fp32 it is slower."""
    return dtype != torch.float32


def load_parser(folder: str | os.PathLike) -> FaceParser:
    """The face parser from a folder written by `hififace convert bisenet` (or its `save_pretrained`).

    Raises:
        ModelLoadError: the folder does not exist, holds no parser, or cannot be read.
    """
    from hififace.priors.parsing import FaceParser

    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"face parser folder {folder} holds no parser (no config.json); {PARSER_HELP}")
    try:
        return FaceParser.from_pretrained(str(path)).eval()
    except Exception as e:  # a damaged or foreign folder ends as one line
        raise ModelLoadError(
            f"cannot load the face parser {folder} ({type(e).__name__}: {_first_line(e)})"
        ) from e


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


def _source_key(source: Any) -> Any:
    """What makes two requests' sources the same within one `swap_many` call (None: not comparable).

    A path by its name; a list of photos by its members; any other object (an array, a PIL image,
    a SourceIdentity) by identity, which is stable while the requests that hold it are alive.
    """
    if isinstance(source, (str, os.PathLike)):
        return ("path", os.fspath(source))
    if isinstance(source, (list, tuple)):
        keys = tuple(_source_key(s) for s in source)
        return None if None in keys else ("list", keys)
    return None if source is None else ("object", id(source))


def _code_to(code: IdentityCode, device: torch.device) -> IdentityCode:
    if code.coeffs.device == device:
        return code
    return type(code)(coeffs=code.coeffs.to(device), embedding=code.embedding.to(device))


def _read_settings(folder: Path | None, repo_id: str, hub: dict[str, Any]) -> dict[str, Any]:
    """The saved pipeline settings of a model folder or Hub repo; {} when it has none (older saves)."""
    if folder is not None:
        file = folder / PIPELINE_SETTINGS
        if not file.is_file():
            return {}
    else:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            file = Path(hf_hub_download(repo_id, PIPELINE_SETTINGS, **hub))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return {}
    settings = read_settings_file(file)
    known = set(inspect.signature(HifiFacePipeline.__init__).parameters) - {"self", "model", "detector"}
    unknown = sorted(set(settings) - known - {"detector"}) if isinstance(settings, dict) else ["(not a dict)"]
    if unknown:
        raise ModelLoadError(f"{PIPELINE_SETTINGS} of {repo_id} has unknown settings: {', '.join(unknown)}")
    return settings
