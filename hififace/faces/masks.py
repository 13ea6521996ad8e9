"""Composable paste-back masks: what is taken from the swap and what is kept from the target.

The mask a swapped crop is pasted with is the product of the masks the user picks, all in crop
pixels (S x S, 1 = take the swap):

- "model": the generator's M_r, eroded and feathered (`soften_mask`);
- "box": the aligned square, feathered towards its border over a padding per side, so the crop's
  edge never shows whatever M_r does;
- "region": the face parser's classes the user picks (`REGION_GROUPS`: readable groups over the
  19 CelebAMask-HQ classes of `hififace.priors.parsing.CELEBAMASK_LABELS`);
- "occlusion": inside the face's area (the filled hull of the parsed inner-face classes), every
  pixel the parser does not call face (a hand, a microphone, hair over the forehead) is kept.

The parser's masks are feathered only inwards: a pixel of a class left out (or of an occluder)
gets exactly 0, with a guard band of `GUARD` pixels so that bilinear resampling in `paste_back`
cannot reach it either. Such pixels stay bit-identical to the target.

    labels = parse_crops(parser, [swap.target_crop])[0]
    mask = combine_masks(mask_set(M_r, labels, MaskOptions.parse("model,box,region", "skin,nose")))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hififace.errors import SwapError
from hififace.faces.blend import soften_mask
from hififace.faces.types import Image, Mask

__all__ = [
    "DEFAULT_MASKS",
    "DEFAULT_REGIONS",
    "GUARD",
    "MASK_TYPES",
    "PARSER_HELP",
    "REGION_GROUPS",
    "MaskOptions",
    "box_mask",
    "combine_masks",
    "mask_set",
    "occlusion_mask",
    "parse_crops",
    "region_mask",
]

MASK_TYPES = ("model", "box", "region", "occlusion")
DEFAULT_MASKS = ("model", "box")

# Readable groups over the CelebAMask-HQ class indices (hififace.priors.parsing.CELEBAMASK_LABELS).
REGION_GROUPS: dict[str, tuple[int, ...]] = {
    "skin": (1,),
    "brows": (2, 3),
    "eyes": (4, 5),
    "glasses": (6,),
    "ears": (7, 8, 9),
    "nose": (10,),
    "mouth": (11, 12, 13),
    "neck": (14, 15),
    "hair": (17,),
    "hat": (18,),
}
DEFAULT_REGIONS = ("skin", "brows", "eyes", "glasses", "nose", "mouth")

# Classes that make up the face for "occlusion": anything else inside the face's area occludes it.
_FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)

# Crop pixels kept at exactly 0 around a left-out class: bilinear warping reads a 2 x 2
# neighbourhood and the crop is usually scaled when pasted, so one pixel is not enough.
GUARD = 2

PARSER_HELP = (
    "the 'region' and 'occlusion' masks need the face parser: convert face-parsing.PyTorch's "
    "79999_iter.pth with `hififace convert bisenet 79999_iter.pth models/face-parser` and pass "
    "its folder as parser"
)


@dataclass(frozen=True)
class MaskOptions:
    """Which masks make the paste-back mask, and their settings.

    Args:
        types (tuple of str, default ("model", "box")): any of `MASK_TYPES`; multiplied together.
        regions (tuple of str, default `DEFAULT_REGIONS`): `REGION_GROUPS` names swapped by "region".
        padding (4 floats, default 0.05 each): the box's feather width per side (top, right, bottom,
            left) as a fraction of the crop side.

    Raises:
        SwapError: an unknown mask or region name, no mask at all, a padding outside [0, 0.5].
    """

    types: tuple[str, ...] = DEFAULT_MASKS
    regions: tuple[str, ...] = DEFAULT_REGIONS
    padding: tuple[float, float, float, float] = (0.05, 0.05, 0.05, 0.05)

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in MASK_TYPES]
        if unknown or not self.types:
            raise SwapError(f"unknown mask {unknown[0]!r}; use some of {', '.join(MASK_TYPES)}" if unknown
                            else f"give at least one mask of {', '.join(MASK_TYPES)}")  # fmt: skip
        unknown = [r for r in self.regions if r not in REGION_GROUPS]
        if unknown:
            raise SwapError(f"unknown region {unknown[0]!r}; use some of {', '.join(REGION_GROUPS)}")
        if len(self.padding) != 4 or not all(0.0 <= p <= 0.5 for p in self.padding):
            raise SwapError(f"mask padding must be 1 or 4 fractions from 0 to 0.5, got {self.padding}")

    @classmethod
    def parse(
        cls,
        types: str | Sequence[str] | None = None,
        regions: str | Sequence[str] | None = None,
        padding: float | Sequence[float] | None = None,
    ) -> MaskOptions:
        """Options from what a user gives: comma-separated strings or sequences; None = the default.

        Raises:
            SwapError: as the constructor.
        """
        options = {}
        if types is not None:
            options["types"] = _names(types)
        if regions is not None:
            options["regions"] = _names(regions)
        if padding is not None:
            values = [padding] if isinstance(padding, (int, float)) else list(padding)
            options["padding"] = tuple(float(v) for v in (values * 4 if len(values) == 1 else values))
        return cls(**options)

    @property
    def needs_parser(self) -> bool:
        """Whether the face parser must label the target crop ("region" or "occlusion")."""
        return "region" in self.types or "occlusion" in self.types


def box_mask(size: int, padding: Sequence[float] = (0.05, 0.05, 0.05, 0.05)) -> Mask:
    """float32 (size, size): 1 inside, falling linearly to exactly 0 on the crop's outermost pixels.

    Args:
        size (int): the crop side in pixels.
        padding (4 floats, default 0.05 each): feather width per side (top, right, bottom, left)
            as a fraction of `size`; 0 leaves that side hard.
    """
    top, right, bottom, left = (max(p * size, 0.0) for p in padding)
    idx = np.arange(size, dtype=np.float32)

    def ramp(distance: np.ndarray, width: float) -> np.ndarray:
        return np.ones_like(distance) if width == 0 else np.clip(distance / width, 0.0, 1.0)

    rows = np.minimum(ramp(idx, top), ramp(size - 1 - idx, bottom))
    cols = np.minimum(ramp(idx, left), ramp(size - 1 - idx, right))
    return np.minimum(rows[:, None], cols[None, :]).astype(np.float32)


def region_mask(labels: np.ndarray, regions: Sequence[str], feather: int = 0) -> Mask:
    """float32 mask of the pixels whose parsed class is in `regions`, feathered inwards only.

    Args:
        labels (int (S, S)): CelebAMask-HQ class per pixel (`parse_crops`).
        regions (sequence of str): names of `REGION_GROUPS`.
        feather (int, default 0): feather radius in pixels; pixels within `feather + GUARD`
            (Chebyshev distance) of a pixel left out stay exactly 0.
    """
    classes = [c for name in regions for c in REGION_GROUPS[name]]
    return _feather_inwards(np.isin(labels, classes), feather)


def occlusion_mask(labels: np.ndarray, feather: int = 0) -> Mask:
    """float32 mask, 0 on whatever is in front of the face inside its area, 1 elsewhere.

    The face's area is the filled convex hull of the inner-face classes (skin, brows, eyes,
    glasses, nose, mouth, lips); inside it, every other class (hair, hat, background: a hand or a
    microphone) is an occluder. Feathered inwards like `region_mask`.

    Args:
        labels (int (S, S)): CelebAMask-HQ class per pixel (`parse_crops`).
        feather (int, default 0): feather radius in pixels.
    """
    face = np.isin(labels, _FACE_CLASSES)
    points = cv2.findNonZero(face.astype(np.uint8))
    if points is None:
        return np.ones(labels.shape, np.float32)
    area = np.zeros(labels.shape, np.uint8)
    cv2.fillConvexPoly(area, cv2.convexHull(points), 1)
    return _feather_inwards(face | (area == 0), feather)


def parse_crops(parser: torch.nn.Module, crops: Sequence[Image], size: int = 512) -> list[np.ndarray]:
    """CelebAMask-HQ class per pixel of aligned uint8 (S, S, 3) crops: int64 (S, S) arrays.

    Args:
        parser (FaceParser): the BiSeNet face parser, on any device.
        crops (sequence of uint8 (S, S, 3)): the aligned target faces.
        size (int, default 512): the side the parser sees (it was trained on 512 x 512 faces);
            its logits are resized back to the crop before the arg-max.
    """
    if not crops:
        return []
    device = next(parser.parameters()).device
    batch = torch.from_numpy(np.stack(crops)).to(device).permute(0, 3, 1, 2).float() / 255.0
    side = batch.shape[-1]
    with torch.inference_mode():
        if side != size:
            batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
        logits = parser(batch)
        if side != size:
            logits = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
    return list(logits.argmax(dim=1).cpu().numpy())


def mask_set(
    model_mask: Mask,
    labels: np.ndarray | None,
    options: MaskOptions,
    erode: int = 0,
    blur: int = 0,
) -> dict[str, Mask]:
    """Every mask `options` picks for one face, keyed by type, each float32 (S, S) in [0, 1].

    Args:
        model_mask (float (S, S)): M_r.
        labels (int (S, S) or None): the parsed target crop; needed by "region" and "occlusion".
        options (MaskOptions): which masks.
        erode, blur (int, default 0): M_r's softening in crop pixels; `blur` also feathers the
            parser's masks (inwards).

    Raises:
        SwapError: "region" or "occlusion" without labels.
    """
    if options.needs_parser and labels is None:
        raise SwapError(PARSER_HELP)
    size = model_mask.shape[0]
    makers = {
        "model": lambda: soften_mask(model_mask, erode, blur),
        "box": lambda: box_mask(size, options.padding),
        "region": lambda: region_mask(labels, options.regions, blur),
        "occlusion": lambda: occlusion_mask(labels, blur),
    }
    return {name: makers[name]() for name in options.types}


def combine_masks(masks: dict[str, Mask]) -> Mask:
    """The product of the masks: float32 (S, S), 0 wherever any of them is 0."""
    out = None
    for mask in masks.values():
        out = mask.copy() if out is None else out * mask
    return out.astype(np.float32, copy=False)


def _feather_inwards(inside: np.ndarray, feather: int) -> Mask:
    """Erode by feather + GUARD (square kernel), then blur by feather: outside pixels stay 0.

    A Gaussian of kernel 2f + 1 spreads a value at most f pixels (Chebyshev); after a square
    erosion by f + GUARD, every pixel it reaches was inside and at least GUARD pixels from outside.
    """
    mask = inside.astype(np.float32)
    reach = feather + GUARD
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    # Outside the crop counts as inside: the box mask, not this one, handles the crop border.
    mask = cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (2 * feather + 1, 2 * feather + 1), 0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def _names(value: str | Sequence[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(v).strip().lower() for v in items if str(v).strip())
