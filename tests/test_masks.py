"""Composable paste-back masks: box, parsed regions, occlusion, and their product in the pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import tiny_model_dir
from skimage import data

from hififace import HifiFacePipeline
from hififace.faces import invert_affine, transform_points
from hififace.faces.masks import (
    GUARD,
    REGION_GROUPS,
    MaskOptions,
    box_mask,
    combine_masks,
    occlusion_mask,
    parse_crops,
    region_mask,
)
from hififace.pipeline import SwapError
from hififace.priors.parsing import FaceParser

S = 256
ALL_BUT_EYES = [name for name in REGION_GROUPS if name != "eyes"]


@pytest.fixture(scope="module")
def parser_dir(tmp_path_factory):
    """A random-weight BiSeNet saved like `hififace convert bisenet` saves the real one."""
    folder = tmp_path_factory.mktemp("parser")
    torch.manual_seed(0)
    FaceParser().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, parser_dir) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(
        tiny_model_dir(tmp_path_factory), detector="dlib", parser=parser_dir
    )


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def swaps(pipeline, astronaut):
    source = pipeline.encode_source(astronaut)
    faces = pipeline.detect_faces(astronaut)
    return pipeline.swap_faces(source, [(astronaut, faces[0])])


# ---------------------------------------------------------------- the masks alone


def test_box_mask_is_zero_on_the_border_and_one_inside():
    mask = box_mask(S, (0.05, 0.1, 0.0, 0.2))
    assert mask.shape == (S, S) and mask.dtype == np.float32
    assert mask[0].max() == 0 and mask[:, -1].max() == 0 and mask[:, 0].max() == 0
    assert mask[-1, 60:-60].min() == 1.0  # bottom padding 0: that side stays hard
    assert mask[S // 2, S // 2] == 1.0
    ramp = mask[S // 2, : round(0.2 * S) + 2]  # left side: linear over 0.2 * S pixels
    assert np.all(np.diff(ramp) >= 0) and np.abs(np.diff(ramp)).max() <= 1 / (0.2 * S) + 1e-6
    assert box_mask(S, (0, 0, 0, 0)).min() == 1.0


def test_region_and_occlusion_masks_keep_left_out_pixels_at_zero():
    labels = np.ones((64, 64), np.int64)  # skin
    labels[20:26, 20:30] = 4  # an eye
    labels[40:64, 0:64] = 14  # neck below the face
    labels[5:15, 40:50] = 0  # something in front of the face (background label, inside its area)
    region = region_mask(labels, ["skin", "neck"], feather=3)
    assert region[labels == 4].max() == 0.0
    guard = np.zeros_like(labels, bool)
    guard[20 - GUARD : 26 + GUARD, 20 - GUARD : 30 + GUARD] = True  # feathering reaches no closer
    assert region[guard].max() == 0.0 and region[32, 50] == 1.0
    occlusion = occlusion_mask(labels, feather=2)
    assert occlusion[5:15, 40:50].max() == 0.0  # the occluder is kept
    assert occlusion[30, 30] == 1.0 and occlusion[60, 60] == 1.0  # face, and outside the face's area
    assert occlusion_mask(np.zeros((8, 8), np.int64)).min() == 1.0  # no face parsed: nothing occludes
    both = combine_masks({"a": region, "b": occlusion})
    np.testing.assert_array_equal(both, region * occlusion)


def test_mask_options_parse_and_refuse_bad_names():
    options = MaskOptions.parse("model, box,region", "skin,nose", 0.1)
    assert options.types == ("model", "box", "region") and options.regions == ("skin", "nose")
    assert options.padding == (0.1,) * 4 and options.needs_parser
    assert not MaskOptions.parse().needs_parser
    for bad, match in (
        (dict(types="model,boxx"), "unknown mask 'boxx'"),
        (dict(types=""), "at least one mask"),
        (dict(regions="skin,teeth"), "unknown region 'teeth'"),
        (dict(padding=0.7), "padding"),
        (dict(padding=(0.1, 0.1)), "padding"),
    ):
        with pytest.raises(SwapError, match=match):
            MaskOptions.parse(**bad)


# ---------------------------------------------------------------- in the pipeline, on a real photo


def _crop_border_band(matrix, shape, inner: float = 4.0, outer: float = 2.0) -> np.ndarray:
    """Image pixels whose position in the crop is within the band around the crop's border."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = transform_points(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64), matrix)
    edge = np.minimum(
        np.minimum(points[:, 0], S - 1 - points[:, 0]), np.minimum(points[:, 1], S - 1 - points[:, 1])
    )
    return ((edge > -outer) & (edge < inner)).reshape(shape[:2])


def _largest_jump(output: np.ndarray, target: np.ndarray, band: np.ndarray) -> float:
    change = output.astype(np.float32) - target
    jumps = np.maximum(
        np.pad(np.abs(np.diff(change, axis=1)).max(-1), ((0, 0), (0, 1))),
        np.pad(np.abs(np.diff(change, axis=0)).max(-1), ((0, 1), (0, 0))),
    )
    return float(jumps[band].max())


def test_box_mask_hides_the_crop_border_when_m_r_is_one_everywhere(pipeline, astronaut, swaps):
    """A generator whose M_r leaks to the border: without the box the square shows, with it no step."""
    leaky = [dataclasses.replace(s, mask=np.ones((S, S), np.float32), image=np.full((S, S, 3), 0.5, np.float32))
             for s in swaps]  # fmt: skip
    band = _crop_border_band(leaky[0].matrix, astronaut.shape)
    hard = pipeline.composite(astronaut, leaky, mask_erode=0, mask_blur=0, masks="model")
    boxed = pipeline.composite(
        astronaut, leaky, mask_erode=0, mask_blur=0, masks="model,box", mask_padding=0.05
    )
    assert _largest_jump(hard, astronaut, band) > 100
    # The 0.05 ramp spans ~13 crop pixels, ~10 image pixels here: alpha rises by ~0.1 per pixel
    # (~13 levels of the 128-level change) and the photo's own edges (up to ~145 levels across
    # this band) enter weighted by an alpha of ~0.1 to 0.2; measured 33.
    assert _largest_jump(boxed, astronaut, band) < 40
    assert set(leaky[0].masks) == {"model", "box"}
    np.testing.assert_array_equal(leaky[0].paste_mask, leaky[0].masks["model"] * leaky[0].masks["box"])


def test_regions_without_eyes_leave_every_parsed_eye_pixel_unchanged(pipeline, astronaut):
    result = pipeline.swap(astronaut, astronaut, masks="model,box,region", regions=ALL_BUT_EYES)
    face = result.faces[0]
    labels = parse_crops(pipeline.parser, [face.target_crop])[0]
    eye = np.isin(labels, REGION_GROUPS["eyes"])
    assert eye.sum() > 500, "the random parser must label some eye pixels for this test to mean something"
    ys, xs = np.nonzero(eye)
    points = np.rint(transform_points(np.stack([xs, ys], 1).astype(np.float64), invert_affine(face.matrix)))
    points = points.astype(int)
    np.testing.assert_array_equal(
        result.image[points[:, 1], points[:, 0]], astronaut[points[:, 1], points[:, 0]]
    )
    assert face.masks["region"][eye].max() == 0.0 and face.paste_mask[eye].max() == 0.0
    assert (result.image != astronaut).any(axis=-1).sum() > 1000  # the rest of the face did change
    assert {"mask_model", "mask_box", "mask_region", "paste_mask"} <= set(face.intermediates())


def test_occlusion_keeps_what_the_parser_does_not_call_face(pipeline, astronaut, swaps):
    out = pipeline.composite(astronaut, swaps, masks="model,occlusion")
    labels = parse_crops(pipeline.parser, [swaps[0].target_crop])[0]
    occluded = swaps[0].masks["occlusion"] == 0
    assert occluded.any()
    assert swaps[0].paste_mask[occluded].max() == 0.0
    inner = occlusion_mask(labels, feather=0) == 0
    assert (occluded >= inner).all()  # feathering only shrinks what is taken
    assert out.shape == astronaut.shape


def test_region_and_occlusion_need_a_parser(pipeline, astronaut):
    plain = HifiFacePipeline(pipeline.model, pipeline.detector)
    for masks in ("model,region", "occlusion"):
        with pytest.raises(SwapError, match="hififace convert bisenet") as error:
            plain.swap(astronaut, astronaut, masks=masks)
        assert "\n" not in str(error.value)
    with pytest.raises(SwapError, match="hififace convert bisenet"):
        HifiFacePipeline(pipeline.model, pipeline.detector, masks="region")


def test_the_command_lines_mask_names_are_the_libraries():
    from hififace import cli
    from hififace.faces.masks import MASK_TYPES, REGION_GROUPS

    assert cli.MASK_NAMES == ",".join(MASK_TYPES) and cli.REGION_NAMES == ",".join(REGION_GROUPS)
