"""Seeded synthetic weights for a tensor list (TSV of key, shape, dtype), as the reference goldens use.

Our own implementation of the rule documented in `reference/synthetic_release.py` (shared folder):
values are drawn in file order from one `torch.Generator` seeded with `seed`, so the result is
identical bit for bit. The first matching rule gives a tensor's values:

  num_batches_tracked        0 (int64, no draw)
  running_mean               0.01 * randn
  running_var                1 + 0.1 * rand
  final_layers.*.weight      randn * 20 / sqrt(fan_in)
  *style_fc.weight           randn / sqrt(shape[1])
  std_style_fc.bias          1 + 0.1 * randn
  mean_style_fc.bias         0.1 * randn
  rank >= 2                  randn * 0.5 / sqrt(fan_in)       (fan_in = product of dims after the first)
  prelu                      0.25 (no draw)
  batch-norm weight          1 + 0.05 * randn                 (key has "bn", "features" or "downsample.1")
  anything else              0.01 * randn
"""

from __future__ import annotations

import math
from pathlib import Path

import torch


def read_tsv(path: str | Path) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every row of a `key<TAB>shape<TAB>dtype` file; shape "scalar" is ()."""
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        key, shape, _ = line.split("\t")
        rows.append((key, () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))))
    return rows


def _value(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=g)

    def fan_in() -> float:
        return math.sqrt(math.prod(shape[1:]))

    is_bn_weight = key.endswith("weight") and any(s in key for s in ("bn", "features", "downsample.1"))
    if key.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.int64)
    if key.endswith("running_mean"):
        return 0.01 * randn()
    if key.endswith("running_var"):
        return 1.0 + 0.1 * torch.rand(shape, generator=g)
    if "final_layers" in key and key.endswith("weight"):
        return randn() * (20.0 / fan_in())
    if key.endswith("style_fc.weight"):
        return randn() / math.sqrt(shape[1])
    if key.endswith("std_style_fc.bias"):
        return 1.0 + 0.1 * randn()
    if key.endswith("mean_style_fc.bias"):
        return 0.1 * randn()
    if len(shape) >= 2:
        return randn() * (0.5 / fan_in())
    if "prelu" in key:
        return torch.full(shape, 0.25)
    if is_bn_weight:
        return 1.0 + 0.05 * randn()
    return 0.01 * randn()


def build(tsv_path: str | Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic state dict for every row of `tsv_path`, seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    return {key: _value(key, shape, g) for key, shape in read_tsv(tsv_path)}
