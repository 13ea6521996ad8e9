"""The whole-image pipeline with maum-ai's SFF variant, whose masks are tanh outputs in (-1, 1).

A tiny `HifiFace(sff="maum-ai")` with random weights, saved and loaded like a converted release:
the pipeline must swap with it, clamp its masks to [0, 1] for compositing and display, and leave
everything outside the aligned crop untouched.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers import TINY, insightface_photo

from hififace import HifiFace, HifiFacePipeline
from hififace.faces import invert_affine
from hififace.tensors import images_to_tensor


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> HifiFacePipeline:
    folder = tmp_path_factory.mktemp("maumai-tiny")
    torch.manual_seed(0)
    HifiFace(sff="maum-ai", **TINY).save_pretrained(folder)
    return HifiFacePipeline.from_pretrained(folder, detector="dlib")


def test_the_variant_is_restored_from_its_folder(pipeline):
    assert pipeline.model.sff_variant == "maum-ai"
    assert tuple(pipeline.model.mask_range) == (-1.0, 1.0)


def test_swap_clamps_tanh_masks_and_keeps_the_rest_of_the_picture(pipeline):
    from PIL import Image
    from skimage import data

    target = np.asarray(Image.open(insightface_photo("t1.jpg")).convert("RGB"))
    result = pipeline.swap(data.astronaut(), target, face="largest")

    assert result.image.shape == target.shape and result.image.dtype == np.uint8
    (face,) = result.faces
    for name in ("mask", "mask_low", "image", "image_low", "image_out"):
        value = getattr(face, name)
        assert np.isfinite(value).all() and 0.0 <= value.min() and value.max() <= 1.0, name

    # The raw masks of this variant do go below 0: the clamp above is doing real work.
    with torch.no_grad():
        out = pipeline.model(images_to_tensor([face.source_crop]), images_to_tensor([face.target_crop]))
    assert float(out.mask.min()) < 0.0

    # Nothing outside the aligned square (warped back into the photo) changes.
    size = pipeline.image_size
    square = np.full((size, size), 255, np.uint8)
    inside = cv2.warpAffine(square, invert_affine(face.matrix), (target.shape[1], target.shape[0])) > 0
    inside = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    np.testing.assert_array_equal(result.image[~inside], target[~inside])
    assert np.abs(result.image[inside].astype(int) - target[inside]).mean() > 0.1

    # The displayable intermediates (what the app shows) are uint8 RGB pictures.
    for name, picture in face.intermediates().items():
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3, name
