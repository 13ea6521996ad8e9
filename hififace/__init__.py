"""hififace: HifiFace face swapping (Wang et al., IJCAI 2021), https://arxiv.org/abs/2106.09965.

Importing the package builds nothing and loads nothing; the names below import on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "HifiFace": "hififace.models.generator",
    "HifiFaceOutput": "hififace.models.generator",
    "Discriminator": "hififace.models.discriminator",
    "IdentityCode": "hififace.priors.identity",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from hififace.models.discriminator import Discriminator
    from hififace.models.generator import HifiFace, HifiFaceOutput
    from hififace.priors.identity import IdentityCode


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hififace' has no attribute {name!r}")
