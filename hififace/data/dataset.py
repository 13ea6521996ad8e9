"""Training pairs from a preprocessed folder (`hififace preprocess`).

Item i is a pair (source, target) with target = the i-th kept crop. With probability
`same_identity_ratio` the source is another crop of the same person (the same crop when the person
has only one), otherwise a crop of someone else, drawn uniformly over all crops of other people.
The target's parsing mask comes with it (ones, and ``has_mask`` false, when preprocessing had no
parser); dilation is left to training.

Augmentation:

- horizontal flip: one coin for the target and its mask (they stay aligned), an independent coin
  for the source. Flipping a face does not change who it is, and the aligned crops are
  symmetric around the template's vertical axis, so a flipped crop is still aligned.
- colour jitter: one draw of brightness, contrast, saturation and hue (in a random order) for the
  target, another for the source. The target tensor returned is the one the generator sees *and*
  the reference of the reconstruction, cycle and LPIPS losses, so those stay consistent by
  construction; an independent jitter of the source teaches the generator to take identity, not
  colour, from it. The mask is never jittered.

Every random choice of item i comes from a generator seeded with (seed, epoch, i), so an item does
not depend on the DataLoader's workers or on which items came before: a resumed run sees the same
pairs. Call `set_epoch` before each epoch's iterator is created (Accelerate's prepared DataLoader
does this in its own `set_epoch`); with ``persistent_workers=True`` the workers keep the epoch they
started with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image as PILImage
from torch.utils.data import Dataset

from hififace.data.index import INDEX_NAME, read_index
from hififace.tensors import images_to_tensor, masks_to_tensor

JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def _jitter_ranges(color_jitter: float | dict[str, float] | None) -> dict[str, float]:
    if color_jitter is None:
        return {}
    if isinstance(color_jitter, (int, float)):
        # a single number jitters brightness, contrast and saturation; hue shifts are rarely wanted on faces
        color_jitter = {"brightness": color_jitter, "contrast": color_jitter, "saturation": color_jitter}
    unknown = set(color_jitter) - set(JITTER_KEYS)
    if unknown:
        raise ValueError(f"unknown colour jitter keys {sorted(unknown)}; use {', '.join(JITTER_KEYS)}")
    ranges = {k: float(v) for k, v in color_jitter.items() if float(v) != 0}
    for key, value in ranges.items():
        if key == "hue" and not 0 <= value <= 0.5:
            raise ValueError(f"colour jitter hue must be in [0, 0.5], got {value}")
        if key != "hue" and not 0 <= value < 1:
            raise ValueError(f"colour jitter {key} must be in [0, 1), got {value}")
    return ranges


class FacePairDataset(Dataset):
    """(source, target, target mask, same-identity flag) pairs from a `hififace preprocess` folder.

    Args:
        root (path): the preprocessing output folder (holds ``index.jsonl``, ``images/``, ``masks/``).
        image_size (int, default 256): side of the returned images; crops of another size are
            resized (bilinear, antialiased).
        same_identity_ratio (float, default 0.5): probability that the source shows the target's
            person (HifiFace trains with 50%).
        flip (bool, default True): random horizontal flips (see the module docstring).
        color_jitter (float or dict, optional): None or 0: off. A number x jitters brightness,
            contrast and saturation by factors in [1 - x, 1 + x]; a dict may set each of
            "brightness", "contrast", "saturation" (in [0, 1)) and "hue" (shift in [-h, h], h < 0.5).
        seed (int, default 0): with the epoch and the index, fixes every random choice.

    Each item is a dict: ``source`` and ``target`` float (3, S, S) in [0, 1], ``mask`` float
    (1, S, S) (the target's face mask, undilated), ``has_mask`` and ``same_identity`` bool
    tensors, ``source_index`` and ``target_index`` (positions in `records`).

    Raises:
        FileNotFoundError: root holds no index.
        ValueError: the index lists no kept crop, or different-identity pairs are asked for but
            there is only one identity.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 256,
        same_identity_ratio: float = 0.5,
        flip: bool = True,
        color_jitter: float | dict[str, float] | None = None,
        seed: int = 0,
    ):
        self.root = Path(root)
        index = self.root / INDEX_NAME
        if not index.is_file():
            raise FileNotFoundError(
                f"{root}: no {INDEX_NAME}; make the dataset with `hififace preprocess RAW {root}` first"
            )
        if not 0 <= same_identity_ratio <= 1:
            raise ValueError(f"same_identity_ratio must be in [0, 1], got {same_identity_ratio}")
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        # Sorted: the index is in completion order, which differs between runs.
        self.records = sorted(
            (r for r in read_index(index) if r.get("status") == "kept"),
            key=lambda r: (r["identity"], r["source"]),
        )
        if not self.records:
            raise ValueError(f"{index} lists no face crops (nothing was kept by preprocessing)")
        self.image_size = image_size
        self.same_identity_ratio = float(same_identity_ratio)
        self.flip = flip
        self.color_jitter = _jitter_ranges(color_jitter)
        self.seed = seed
        self.epoch = 0

        identities = [r["identity"] for r in self.records]
        self.identities = sorted(set(identities))
        label = {name: k for k, name in enumerate(self.identities)}
        self.labels = np.array([label[name] for name in identities], dtype=np.int64)
        # Records are sorted by identity: each person's crops are one contiguous block [start, end).
        starts = np.searchsorted(self.labels, np.arange(len(self.identities)), side="left")
        ends = np.searchsorted(self.labels, np.arange(len(self.identities)), side="right")
        self._blocks = np.stack([starts, ends], axis=1)
        if len(self.identities) < 2 and self.same_identity_ratio < 1:
            raise ValueError(
                f"{root} holds one identity only, so no different-identity pair exists; "
                "add people or set same_identity_ratio=1"
            )

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random choices `__getitem__` makes."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def pair(self, index: int) -> tuple[int, bool]:
        """(source index, same identity) of item `index` in the current epoch."""
        return self._pair(index, self._rng(index))

    def _pair(self, index: int, rng: np.random.Generator) -> tuple[int, bool]:
        start, end = self._blocks[self.labels[index]]
        same = rng.random() < self.same_identity_ratio
        if same:
            if end - start == 1:
                return index, True
            k = int(rng.integers(end - start - 1))  # any other crop of the block
            return int(start + k + (start + k >= index)), True
        k = int(rng.integers(len(self.records) - (end - start)))  # any crop outside the block
        return int(k + (end - start) * (k >= start)), False

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        # One generator per item, drawn in a fixed order: pair, flips, jitters.
        rng = self._rng(index)
        source_index, same = self._pair(index, rng)
        flip_target, flip_source = (rng.random(2) < 0.5) & self.flip
        target_jitter, source_jitter = self._draw_jitter(rng), self._draw_jitter(rng)

        record = self.records[index]
        target = self._load_rgb(record["file"])
        source = self._load_rgb(self.records[source_index]["file"])
        has_mask = bool(record.get("mask"))
        mask = self._load_mask(record["mask"]) if has_mask else torch.ones(1, *target.shape[1:])
        if flip_target:
            target, mask = target.flip(-1), mask.flip(-1)
        if flip_source:
            source = source.flip(-1)
        return {
            "source": _jitter(source, source_jitter),
            "target": _jitter(target, target_jitter),
            "mask": mask,
            "has_mask": torch.tensor(has_mask),
            "same_identity": torch.tensor(same),
            "source_index": source_index,
            "target_index": index,
        }

    def _draw_jitter(self, rng: np.random.Generator) -> list[tuple[str, float]]:
        # always the same number of draws, so that later draws do not depend on the settings
        order = rng.permutation(len(JITTER_KEYS))
        uniform = rng.uniform(-1, 1, size=len(JITTER_KEYS))
        steps = []
        for k in order:
            key = JITTER_KEYS[k]
            if key in self.color_jitter:
                amount = uniform[k] * self.color_jitter[key]
                steps.append((key, amount if key == "hue" else 1 + amount))
        return steps

    def _load_rgb(self, file: str) -> torch.Tensor:
        with PILImage.open(self.root / file) as pil:
            array = np.asarray(pil.convert("RGB"))
        return self._resize(images_to_tensor([array])[0])

    def _load_mask(self, file: str) -> torch.Tensor:
        with PILImage.open(self.root / file) as pil:
            array = np.asarray(pil.convert("L"))
        return self._resize(masks_to_tensor([array])[0])

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] == self.image_size and image.shape[-2] == self.image_size:
            return image
        size = (self.image_size, self.image_size)
        resized = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)
        return resized[0].clamp_(0, 1)

    def __repr__(self) -> str:
        return (
            f"FacePairDataset(root={str(self.root)!r}, items={len(self)}, identities={len(self.identities)}, "
            f"image_size={self.image_size}, same_identity_ratio={self.same_identity_ratio}, "
            f"flip={self.flip}, color_jitter={json.dumps(self.color_jitter)}, seed={self.seed})"
        )


def _jitter(image: torch.Tensor, steps: list[tuple[str, float]]) -> torch.Tensor:
    adjust = {
        "brightness": TF.adjust_brightness,
        "contrast": TF.adjust_contrast,
        "saturation": TF.adjust_saturation,
        "hue": TF.adjust_hue,
    }
    for key, factor in steps:
        image = adjust[key](image, factor)
    return image
