"""Swaps of the shipped photos and a short video stay bit-identical to the recorded outputs.

The fixture (tests/fixtures/bit_identity.npz, written by tests/bit_identity.py) was recorded
from the pipeline before the public-API redesign of issue 9; see tests/bit_identity.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bit_identity import FIXTURE, all_outputs, digest
from helpers import tiny_model_dir

from hififace import HifiFacePipeline


@pytest.fixture(scope="module")
def recorded() -> dict[str, str]:
    with np.load(FIXTURE) as saved:
        return {key: saved[key] for key in saved.files}


def test_image_group_and_video_swaps_are_bit_identical(tmp_path_factory, tmp_path, monkeypatch, recorded):
    pipeline = HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as when recorded: more threads sum floats in another order
    try:
        outputs = all_outputs(pipeline, tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(threads)

    digests = {f"{s}/{n}": digest(a) for s, arrays in outputs.items() for n, a in arrays.items()}
    expected = {key: str(value) for key, value in recorded.items() if not key.endswith("/pixels")}
    assert sorted(digests) == sorted(expected)
    for scenario in ("image", "group"):
        region, saved = outputs[scenario]["region"], recorded[f"{scenario}/region/pixels"]
        assert region.shape == saved.shape, scenario
        diff = np.abs(region.astype(int) - saved).max()
        assert diff == 0, f"{scenario}: the swapped pixels differ by up to {diff}"
    changed = [key for key in expected if digests[key] != expected[key]]
    assert not changed, f"outputs that changed: {changed}"
    assert outputs["video"]["counts"].tolist() == [12, 10, 2]
