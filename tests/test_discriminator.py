import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from hififace.hub import CheckpointError
from hififace.models.discriminator import Discriminator, DownResBlock


def _tiny(image_size: int = 32) -> Discriminator:
    torch.manual_seed(0)
    return Discriminator(image_size=image_size, base_channels=4, max_channels=8).eval()


@pytest.mark.parametrize("image_size, num_blocks", [(256, 6), (512, 7), (8, 1)])
def test_one_logit_per_image(image_size, num_blocks):
    d = Discriminator(image_size=image_size, base_channels=2, max_channels=4)
    assert len(d.blocks) == num_blocks
    logits = d(torch.rand(2, 3, image_size, image_size))
    assert logits.shape == (2,)
    assert torch.isfinite(logits).all()


def test_channels_double_up_to_max():
    d = Discriminator(image_size=64, base_channels=4, max_channels=16)
    widths = [(b.conv1.in_channels, b.conv2.out_channels) for b in d.blocks]
    assert widths == [(4, 8), (8, 16), (16, 16), (16, 16)]
    # The 1x1 skip exists only where the channels change, and has no bias.
    assert [b.skip is not None for b in d.blocks] == [True, True, False, False]
    assert d.blocks[0].skip.bias is None


def test_down_res_block_follows_stargan_v2():
    torch.manual_seed(0)
    block = DownResBlock(4, 6)
    x = torch.randn(2, 4, 8, 8)

    def lrelu(t):
        return F.leaky_relu(t, 0.2)

    main = block.conv2(lrelu(F.avg_pool2d(block.conv1(lrelu(x)), 2)))
    skip = F.avg_pool2d(F.conv2d(x, block.skip.weight), 2)
    torch.testing.assert_close(block(x), (main + skip) / math.sqrt(2.0))
    # Same width: the skip is the identity, pooled.
    same = DownResBlock(4, 4)
    torch.nn.init.zeros_(same.conv2.weight)
    torch.nn.init.zeros_(same.conv2.bias)
    torch.testing.assert_close(same(x), F.avg_pool2d(x, 2) / math.sqrt(2.0))


def test_images_in_unit_range_are_centred():
    d = _tiny()
    seen = []
    d.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    x = torch.rand(1, 3, 32, 32)
    d(x)
    torch.testing.assert_close(seen[0], 2 * x - 1)


def test_default_256_parameter_count():
    # conv_in 1,792; blocks 64->128 118,976, 128->256 475,520, 256->512 1,901,312 and
    # 3 x 512->512 4,719,616; conv4x4 4,194,816; conv1x1 513 (a ResBlk(i, o) has 9i^2 + i + 9io + o,
    # plus io for the skip when i != o). StarGAN v2's 256 discriminator has the same trunk.
    d = Discriminator()
    assert sum(p.numel() for p in d.parameters()) == 20_851_777


def test_logits_depend_on_each_image_alone():
    d = _tiny()
    x = torch.rand(3, 3, 32, 32)
    full = d(x)
    torch.testing.assert_close(d(x[1:2]), full[1:2])
    assert not torch.allclose(full[0], full[1])


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 1, 32, 32), (3, 32, 32), (2, 3, 32, 16)])
def test_rejects_wrong_input(shape):
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, 32, 32\)"):
        _tiny()(torch.rand(*shape))


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="power of two"):
        Discriminator(image_size=100)
    with pytest.raises(ValueError, match="base_channels <= max_channels"):
        Discriminator(base_channels=64, max_channels=32)


def test_save_load_round_trip(tmp_path):
    d = _tiny()
    d.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"image_size": 32, "base_channels": 4, "max_channels": 8}

    loaded = Discriminator.from_pretrained(tmp_path).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), d(x))


def test_load_refuses_missing_tensor(tmp_path):
    _tiny().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["blocks.1.conv2.weight"]
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.conv2\.weight"):
        Discriminator.from_pretrained(tmp_path)
