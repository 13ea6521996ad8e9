"""Face restoration after the swap: checkpoints built from spandrel's own architectures, random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_model_dir
from skimage import data
from spandrel.architectures.Compact import Compact
from spandrel.architectures.GFPGAN import GFPGAN
from spandrel.architectures.RestoreFormer import RestoreFormer

from hififace import HifiFacePipeline
from hififace.enhance import FaceEnhancer, load_enhancer
from hififace.errors import ModelLoadError, SwapError
from hififace.faces import warp_mask_to_image


@pytest.fixture(scope="module")
def restoreformer_path(tmp_path_factory):
    """A narrow RestoreFormer (the 512-px layout with 32 channels), saved as a user's .pth is."""
    torch.manual_seed(0)
    model = RestoreFormer(
        n_embed=32, embed_dim=32, ch=32, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, z_channels=32
    )
    path = tmp_path_factory.mktemp("enhancers") / "RestoreFormer.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, restoreformer_path) -> HifiFacePipeline:
    return HifiFacePipeline.from_pretrained(
        tiny_model_dir(tmp_path_factory), detector="dlib", enhancer=restoreformer_path, enhancer_blend=0.8
    )


def test_restoreformer_checkpoint_loads_and_restores_at_512(restoreformer_path):
    enhancer = load_enhancer(restoreformer_path)
    assert isinstance(enhancer, FaceEnhancer) and enhancer.architecture == "RestoreFormer"
    assert enhancer.size == 512 and "RestoreFormer" in repr(enhancer)
    crop = data.astronaut()[:256, 128:384]
    np.testing.assert_array_equal(enhancer.enhance([crop], blend=0)[0], crop.astype(np.float32) / 255)
    half = enhancer.enhance([crop], blend=0.5)[0]  # crop + 0.5 (restored - crop)
    restored = 2 * half - crop / 255
    assert half.shape == (256, 256, 3) and half.dtype == np.float32
    assert (
        -1e-5 <= restored.min() and restored.max() <= 1 + 1e-5 and np.abs(restored - crop / 255).mean() > 0.01
    )


def test_gfpgan_checkpoint_is_recognised(tmp_path):
    torch.manual_seed(0)
    model = GFPGAN(
        out_size=512,
        num_style_feat=512,
        channel_multiplier=2,
        decoder_load_path=None,
        fix_decoder=False,
        num_mlp=8,
        input_is_latent=True,
        different_w=True,
        narrow=1,
        sft_half=True,
    )  # fmt: skip  (GFPGANv1.4's layout: spandrel reads no other)
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": model.state_dict()}, path)  # the release wraps its weights like this
    enhancer = load_enhancer(path)
    assert enhancer.architecture == "GFPGAN" and enhancer.size == 512


def test_the_swap_pastes_the_enhanced_crop_and_blend_zero_is_the_plain_swap(pipeline):
    astronaut = data.astronaut()
    source = pipeline.encode_source(astronaut)
    plain = HifiFacePipeline(pipeline.model, pipeline.detector)
    expected = plain.swap(source, astronaut)
    at_zero = pipeline.swap(source, astronaut, enhancer_blend=0)
    np.testing.assert_array_equal(at_zero.image, expected.image)

    swaps = pipeline.swap_faces(source, [(astronaut, pipeline.detect_faces(astronaut)[0])])
    pipeline.enhance_faces(swaps)
    enhanced = pipeline.composite(astronaut, swaps)
    face = swaps[0]
    assert face.enhanced.shape == face.image.shape and np.abs(face.enhanced - face.image).mean() > 0.01
    assert "enhanced" in face.intermediates()
    changed = (enhanced != expected.image).any(axis=-1)
    assert changed.sum() > 1000
    outside = warp_mask_to_image(face.paste_mask, face.matrix, astronaut.shape) == 0  # the same final mask
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(enhanced[outside], astronaut[outside])


def test_unsupported_files_are_one_line_errors(tmp_path):
    upscaler = tmp_path / "4x-compact.pth"
    torch.save(Compact(num_feat=8, num_conv=2, upscale=4).state_dict(), upscaler)
    garbage = tmp_path / "notes.pth"
    torch.save({"weight": torch.zeros(3)}, garbage)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(upscaler.read_bytes()[:100])
    script = tmp_path / "model.pt"
    script.write_bytes(b"x")
    for path, match in (
        (upscaler, "not a face-restoration network"),
        (garbage, "not a network spandrel supports"),
        (truncated, "cannot load the enhancer"),
        (script, "TorchScript"),
        (tmp_path / "missing.pth", "does not exist"),
    ):
        with pytest.raises(ModelLoadError, match=match) as error:
            load_enhancer(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bad_blend_is_refused(pipeline):
    for blend in (-0.1, 1.5, float("nan")):
        with pytest.raises(SwapError, match="enhancer_blend"):
            pipeline.swap(data.astronaut(), data.astronaut(), enhancer_blend=blend)
