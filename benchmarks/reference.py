"""The public HiFiFace-pytorch generator (github.com/xuehy/HiFiFace-pytorch, MIT), imported from an
extracted copy of its source for same-run speed comparisons; never vendored into this repository.

    git clone https://github.com/xuehy/HiFiFace-pytorch /tmp/hififace-pytorch-src   # outside the repo
    python benchmarks/generator.py --reference-src /tmp/hififace-pytorch-src

Its `ShapeAwareIdentityExtractor` reads two pretrained files with `torch.load` while it is built;
here that loading is stubbed (nothing is read from disk), then the whole generator gets the same
synthetic state dict our converted model is made from (`tests/synthetic.py`, strict), so both run
the same weights in the same process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import torch
from common import RELEASE_TSV, REPO


def _tensors():
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import build

    return build(RELEASE_TSV, 0)


def reference_generator(source_dir: str | Path) -> torch.nn.Module:
    """HiFiFace-pytorch's `models.generator.Generator` in eval mode, with the synthetic release weights.

    Args:
        source_dir (str or path): the root of an extracted HiFiFace-pytorch source tree (it holds
            `models/generator.py`).

    Raises:
        FileNotFoundError: `source_dir` is not such a tree.
    """
    root = Path(source_dir).expanduser().resolve()
    if not (root / "models" / "generator.py").is_file():
        raise FileNotFoundError(f"{root} is not a HiFiFace-pytorch source tree (no models/generator.py)")
    # Their top-level package is called `models`; make sure it is theirs that gets imported.
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        from models.generator import Generator

        # The extractor calls load_state_dict(torch.load(path)...) on its priors: stub both for the
        # build; the real weights come next, for the whole generator at once.
        with (
            mock.patch("torch.load", return_value={"net_recon": {}}),
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None),
        ):
            generator = Generator({"f_3d_checkpoint_path": "-", "f_id_checkpoint_path": "-"})
    finally:
        sys.path.remove(str(root))
    generator.load_state_dict(_tensors(), strict=True)
    return generator.eval()


def reference_generate(
    generator: torch.nn.Module, targets: torch.Tensor, v_sid: torch.Tensor
) -> torch.Tensor:
    """I_r of HiFiFace-pytorch's encoder, decoder and SFF from a given v_sid (what `HifiFace.generate` does)."""
    z_enc, x = generator.encoder(targets)
    z_dec = generator.decoder(x, v_sid)
    i_r, _i_low, _m_r, _m_low = generator.sff_module(targets, z_enc, z_dec, v_sid)
    return i_r
