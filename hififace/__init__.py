"""hififace: HifiFace face swapping (Wang et al., IJCAI 2021), https://arxiv.org/abs/2106.09965.

Importing the package builds nothing and loads nothing; the names below import on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "HifiFace": "hififace.models.generator",
    "HifiFaceOutput": "hififace.models.generator",
    "Discriminator": "hififace.models.discriminator",
    "IdentityCode": "hififace.priors.identity",
    "ArcFace": "hififace.priors.arcface",
    "Face3DRegressor": "hififace.priors.face3d",
    "BFMLandmarks": "hififace.priors.face3d",
    "FaceParser": "hififace.priors.parsing",
    "HifiFacePipeline": "hififace.pipeline",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hififace' has no attribute {name!r}")
