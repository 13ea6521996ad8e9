"""The frozen priors: ArcFace, the Deep3DFaceRecon regressor, BFM landmarks and the BiSeNet face parser."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.io import loadmat
from synthetic import build

from hififace.priors.arcface import ArcFace
from hififace.priors.face3d import (
    COEFF_LAYOUT,
    BFMLandmarks,
    Face3DRegressor,
    coeff_part,
    rotation_matrix,
    split_coeffs,
)
from hififace.priors.parsing import CELEBAMASK_LABELS, FACE_CLASSES, FaceParser, face_mask

FIXTURES = Path(__file__).parent / "fixtures"


def tsv_rows(name: str, prefix: str = "") -> list[tuple[str, str]]:
    """(name without prefix, shape) of the rows of a reference TSV that start with `prefix`."""
    lines = (FIXTURES / name).read_text().splitlines()[1:]
    rows = [line.split("\t")[:2] for line in lines]
    return [(key[len(prefix) :], shape) for key, shape in rows if key.startswith(prefix)]


def layout(model: torch.nn.Module) -> list[tuple[str, str]]:
    return [(k, "x".join(map(str, v.shape)) or "scalar") for k, v in model.state_dict().items()]


def assert_input_gets_gradient(output: torch.Tensor, x: torch.Tensor) -> None:
    output.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ArcFace


def test_arcface_r100_names_and_shapes_are_arcface_torch_ones():
    with torch.device("meta"):
        model = ArcFace(depth=100)
    assert layout(model) == tsv_rows("hififace_pytorch_generator_state_dict.tsv", "id_extractor.f_id.")


def test_arcface_forward_and_embed_shapes_and_norms():
    model = ArcFace(depth=18).eval()
    faces = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        features = model(faces * 2 - 1)
        embedding = model.embed(faces)
        resized = model.embed(torch.rand(2, 3, 256, 256))
    assert features.shape == embedding.shape == resized.shape == (2, 512)
    torch.testing.assert_close(embedding.norm(dim=-1), torch.ones(2))
    # at 112 the resize is the identity: embed = normalised forward of the [-1, 1] image
    torch.testing.assert_close(embedding, F.normalize(features, dim=-1))
    assert not model.features.weight.requires_grad  # fixed at 1 in arcface_torch training


def test_arcface_passes_gradients_to_its_input():
    model = ArcFace(depth=18).eval()
    image = torch.rand(1, 3, 128, 128, requires_grad=True)
    assert_input_gets_gradient(model.embed(image), image)


@pytest.mark.parametrize("shape", [(3, 112, 112), (1, 1, 112, 112), (1, 4, 112, 112)])
def test_arcface_rejects_bad_images(shape):
    with pytest.raises(ValueError, match="3, H, W"):
        ArcFace(depth=18).embed(torch.rand(shape))


def test_arcface_rejects_wrong_size_and_depth():
    with pytest.raises(ValueError, match="112"):
        ArcFace(depth=18)(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="depth"):
        ArcFace(depth=42)


# Deep3DFaceRecon regressor and the coefficient layout


def test_face3d_names_and_shapes_are_net_recon_ones():
    with torch.device("meta"):
        model = Face3DRegressor()
    assert layout(model) == tsv_rows("hififace_pytorch_generator_state_dict.tsv", "id_extractor.f_3d.")


def test_face3d_coefficients_and_resize_rule():
    model = Face3DRegressor(input_size=224).eval()
    for head in model.final_layers:  # zero-initialised in the original; give them values
        torch.nn.init.normal_(head.weight, std=0.02)
    image = torch.rand(1, 3, 256, 256)
    at_256 = Face3DRegressor(input_size=256).eval()
    at_256.load_state_dict(model.state_dict())
    with torch.no_grad():
        coeffs = model(image)
        pre_resized = model(F.interpolate(image, size=224, mode="bilinear", align_corners=False))
        unresized = at_256(image)
    assert coeffs.shape == (1, 257)
    torch.testing.assert_close(coeffs, pre_resized, rtol=0, atol=0)
    assert (coeffs - unresized).abs().max() > 1e-3


def test_face3d_passes_gradients_to_its_input():
    model = Face3DRegressor().eval()
    for head in model.final_layers:
        torch.nn.init.normal_(head.weight, std=0.02)
    image = torch.rand(1, 3, 224, 224, requires_grad=True)
    assert_input_gets_gradient(model(image), image)


def test_coefficient_layout_covers_257_in_order():
    stops = [0] + [stop for _, stop in COEFF_LAYOUT.values()]
    assert [start for start, _ in COEFF_LAYOUT.values()] == stops[:-1] and stops[-1] == 257
    coeffs = torch.arange(257.0).unsqueeze(0)
    parts = split_coeffs(coeffs)
    assert torch.equal(torch.cat(list(parts.values()), dim=1), coeffs)
    assert coeff_part(coeffs, "angle").tolist() == [[224.0, 225.0, 226.0]]


# BFM landmarks


def test_rotation_order_is_z_y_x():
    angles = torch.tensor([[0.3, -0.2, 0.5]])
    rot = rotation_matrix(angles)[0]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3))
    x, y, z = angles[0].tolist()
    rz = torch.tensor([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]], dtype=torch.float32)
    ry = torch.tensor([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]], dtype=torch.float32)
    rx = torch.tensor([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]], dtype=torch.float32)
    torch.testing.assert_close(rot, rz @ ry @ rx)


def test_bfm_zero_coefficients_project_the_recentred_mean_shape():
    mat = loadmat(FIXTURES / "bfm_synthetic_front.mat")
    vertices = mat["meanshape"].reshape(-1, 3).astype(np.float64)
    vertices -= vertices.mean(axis=0)
    x, y, z = vertices[mat["keypoints"].reshape(-1).astype(int) - 1].T
    expected = np.stack([1015 * x / (10 - z) + 112, 1015 * y / (10 - z) + 112], axis=-1)

    landmarks = BFMLandmarks.from_mat(FIXTURES / "bfm_synthetic_front.mat")(torch.zeros(2, 257))
    assert landmarks.shape == (2, 68, 2)
    np.testing.assert_allclose(landmarks[1].numpy(), expected, atol=1e-4)


def test_bfm_landmarks_are_differentiable_in_the_coefficients():
    model = BFMLandmarks.from_mat(FIXTURES / "bfm_synthetic_front.mat")
    coeffs = torch.zeros(1, 257, requires_grad=True)
    assert_input_gets_gradient(model(coeffs), coeffs)
    for name in ("id", "exp", "angle", "trans"):
        assert coeff_part(coeffs.grad, name).abs().sum() > 0, name
    assert coeff_part(coeffs.grad, "tex").abs().sum() == 0


def test_bfm_rejects_wrong_coefficient_count():
    with pytest.raises(ValueError, match="257"):
        BFMLandmarks()(torch.zeros(1, 256))


# face parser


def test_face_parser_names_and_shapes_are_bisenet_ones():
    with torch.device("meta"):
        model = FaceParser()
    assert layout(model) == tsv_rows("bisenet_face_parsing_state_dict.tsv")


def test_face_parser_logits_labels_and_gradients():
    model = FaceParser().eval()
    image = torch.rand(1, 3, 96, 80, requires_grad=True)
    logits = model(image)
    labels = model.parse(image.detach())
    assert logits.shape == (1, 19, 96, 80)
    assert labels.shape == (1, 96, 80) and labels.dtype == torch.int64
    assert torch.equal(labels, logits.argmax(1))
    assert_input_gets_gradient(logits, image)


def test_face_mask_keeps_the_inner_face_only():
    assert len(CELEBAMASK_LABELS) == 19
    names = {CELEBAMASK_LABELS[i] for i in FACE_CLASSES}
    assert names == {"skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip"}
    labels = torch.arange(19).view(1, 1, 19).expand(2, 3, 19)
    mask = face_mask(labels)
    assert mask.shape == (2, 1, 3, 19) and mask.dtype == torch.float32
    assert mask[0, 0, 0].nonzero().flatten().tolist() == list(FACE_CLASSES)
    assert face_mask(labels, classes=(17,))[0, 0, 0].nonzero().flatten().tolist() == [17]


def test_priors_reproduce_the_release_identity_vector():
    """F_3d at 256 and F_id r100 with the synthetic release weights give the release's own v_sid."""
    weights = build(FIXTURES / "hififace_pytorch_generator_state_dict.tsv", seed=0)

    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}

    face3d = Face3DRegressor(input_size=256).eval()
    face3d.load_state_dict(part("id_extractor.f_3d."))
    arcface = ArcFace(depth=100).eval()
    arcface.load_state_dict(part("id_extractor.f_id."))
    golden = np.load(FIXTURES / "hififace_pytorch_golden.npz")
    source = torch.from_numpy(golden["source_u8"]).float() / 255
    target = torch.from_numpy(golden["target_u8"]).float() / 255
    with torch.no_grad():
        c_s, c_t = face3d(source), face3d(target)
        v_sid = torch.cat([c_s[:, :80], c_t[:, 80:], arcface.embed(source)], dim=1)
    np.testing.assert_allclose(v_sid.numpy(), golden["v_sid"], rtol=0, atol=1e-5)


# Precision of the shape path under autocast


def _shape_landmarks_under(dtype: torch.dtype | None, keep_full_precision: bool = True) -> list[torch.Tensor]:
    """q_fuse, q_r, q_low of L_shape on a tiny generator's swap, the whole path under `dtype` autocast."""
    from hififace import HifiFace
    from hififace.losses import HifiFaceLoss

    torch.manual_seed(0)
    g = HifiFace(base_channels=8, max_channels=16, arcface_depth=18, face3d_input_size=64).eval()
    with torch.no_grad():  # coefficients of a real face's size: landmarks between 18 and 209 px
        for head in g.identity.face3d.final_layers:
            head.weight.mul_(0.05)
            head.bias.zero_()
    bfm = BFMLandmarks.from_mat(FIXTURES / "bfm_synthetic_front.mat")
    g.identity.face3d.keep_full_precision = bfm.keep_full_precision = keep_full_precision
    criterion = HifiFaceLoss(g.identity.face3d, g.identity.arcface.embed, bfm)
    source, target = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        out = g(source, target)  # the same I_r and I_low for every precision
        low_up = F.interpolate(out.image_low, size=256, mode="bilinear", align_corners=False)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            c_fuse = g(source, target).identity[:, :257]
            return list(criterion.shape_landmarks(c_fuse, out.image, low_up))


def test_shape_landmarks_stay_fp32_under_bf16_autocast():
    reference = _shape_landmarks_under(None)
    assert 100 < max(q.max().item() for q in reference) < 224  # beyond 128 px, where bf16 steps are 1 px
    for name, q, q32 in zip(
        ("q_fuse", "q_r", "q_low"), _shape_landmarks_under(torch.bfloat16), reference, strict=True
    ):
        assert q.dtype == torch.float32, name
        assert (q - q32).abs().max().item() < 0.01, name
    # what the test guards against: the same path left to autocast is off by most of a pixel
    loose = _shape_landmarks_under(torch.bfloat16, keep_full_precision=False)
    assert max((q.float() - q32).abs().max().item() for q, q32 in zip(loose, reference, strict=True)) > 0.25


def test_face3d_under_autocast_keeps_its_gradient():
    model = Face3DRegressor(input_size=64).eval()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        coeffs = model(x)
    assert coeffs.dtype == torch.float32
    assert_input_gets_gradient(coeffs, x)
