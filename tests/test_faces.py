"""Faces in whole images: detection, alignment, paste-back, selection, image files.

Offline, on real photos that ship in installed packages: skimage's astronaut and insightface's
t1.jpg (six people) and Tom_Hanks_54745.png (an ArcFace-aligned 112 crop). The insightface path is
tested with a stub SCRFD model built here, since no model pack can be downloaded.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import insightface_photo
from PIL import Image as PILImage
from skimage import data

from hififace.errors import SwapError
from hififace.faces import (
    TEMPLATES,
    DetectorUnavailable,
    DlibDetector,
    Face,
    FaceChoice,
    FaceChoiceError,
    FaceDetector,
    FaceSelectionError,
    InsightFaceDetector,
    align_face,
    estimate_similarity,
    five_from_68,
    invert_affine,
    load_detector,
    paste_back,
    select_faces,
    soften_mask,
    template_points,
    transform_points,
    warp_mask_to_image,
)
from hififace.imageio import ImageError, load_image, save_image

ASTRONAUT_FIVE = np.array([(203, 102), (247, 104), (225, 127), (201, 139), (246, 141)], dtype=np.float32)


@pytest.fixture(scope="module")
def dlib_detector() -> DlibDetector:
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    return DlibDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astronaut_face(dlib_detector, astronaut) -> Face:
    faces = dlib_detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return load_image(insightface_photo("t1.jpg"))


def _face(x1: float, score: float = 1.0, size: float = 50.0) -> Face:
    five = np.array([(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]) * size + (x1, 10)
    return Face(box=(x1, 10, x1 + size, 10 + size), score=score, landmarks=five)


# --- detection -------------------------------------------------------------------------------


def test_dlib_finds_astronaut_with_five_points(dlib_detector, astronaut_face):
    assert isinstance(dlib_detector, FaceDetector)
    face = astronaut_face
    np.testing.assert_allclose(face.landmarks, ASTRONAUT_FIVE, atol=2.0)
    assert face.landmarks.dtype == np.float32 and face.landmarks68.shape == (68, 2)
    np.testing.assert_allclose(face.landmarks, five_from_68(face.landmarks68))
    x1, y1, x2, y2 = face.box
    assert x1 < face.landmarks[:, 0].min() and face.landmarks[:, 0].max() < x2
    assert y1 < face.landmarks[:, 1].min() and face.landmarks[:, 1].max() < y2
    assert face.score > 0.3 and face.width == x2 - x1 and face.area == face.width * face.height


def test_dlib_converts_grayscale_and_rgba(dlib_detector, astronaut, astronaut_face):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    (face,) = dlib_detector.detect(gray)
    np.testing.assert_allclose(face.landmarks, ASTRONAUT_FIVE, atol=3.0)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    (face,) = dlib_detector.detect(rgba)
    np.testing.assert_array_equal(face.landmarks, astronaut_face.landmarks)


def test_dlib_finds_six_faces_left_to_right(dlib_detector, t1):
    faces = dlib_detector.detect(t1)
    assert len(faces) == 6
    centres = [face.center[0] for face in faces]
    assert centres == sorted(centres)
    for face in faces:
        left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < max(left_mouth[1], right_mouth[1])


def test_five_points_follow_insightface_order_on_arcface_crop():
    # Tom_Hanks_54745.png was aligned by insightface onto the ArcFace template: our eye points must
    # fall on its eye points (so "left eye" means the same thing), the mouth corners near its own.
    pytest.importorskip("dlib")
    crop = load_image(insightface_photo("Tom_Hanks_54745.png"))
    (face,) = DlibDetector(upsample=1).detect(crop)
    error = np.linalg.norm(face.landmarks - template_points("arcface", 112), axis=1)
    assert error[:2].max() < 3.0 and error[3:].max() < 6.0


def _stub_scrfd_pack(root: Path, box, kps, score=0.9, size=640) -> None:
    """An insightface pack whose SCRFD "detector" reports one fixed face, scored by the red channel.

    Same inputs and outputs as SCRFD-10G with keypoints (3 strides, 2 anchors, 9 outputs); the score
    is `score` times the mean of the network's first input channel, which is red only if the image
    reached the network in insightface's BGR order (its preprocessing swaps to RGB).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    strides, centre, stride = (8, 16, 32), (320, 240), 16
    tables = {}
    for s in strides:
        n = (size // s) ** 2 * 2
        tables["score", s] = np.zeros((n, 1), np.float32)
        tables["bbox", s] = np.ones((n, 4), np.float32)
        tables["kps", s] = np.zeros((n, 10), np.float32)
    anchor = ((centre[1] // stride) * (size // stride) + centre[0] // stride) * 2
    x1, y1, x2, y2 = box
    tables["score", stride][anchor] = score
    tables["bbox", stride][anchor] = (
        np.array([centre[0] - x1, centre[1] - y1, x2 - centre[0], y2 - centre[1]]) / stride
    )
    tables["kps", stride][anchor] = (np.asarray(kps, np.float32) - centre).ravel() / stride

    nodes = [
        helper.make_node("Gather", ["input.1", "first"], ["channel0"], axis=1),
        helper.make_node("ReduceMean", ["channel0"], ["level"], keepdims=0),
    ]
    initializers = [numpy_helper.from_array(np.array(0, np.int64), "first")]
    outputs = []
    for kind in ("score", "bbox", "kps"):
        for s in strides:
            name = f"{kind}_{s}"
            initializers.append(numpy_helper.from_array(tables[kind, s], f"{name}_table"))
            if kind == "score":
                nodes.append(helper.make_node("Mul", [f"{name}_table", "level"], [name]))
            else:
                nodes.append(helper.make_node("Identity", [f"{name}_table"], [name]))
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, list(tables[kind, s].shape))
            )
    image_input = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])
    graph = helper.make_graph(nodes, "scrfd_stub", [image_input], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    (root / "models" / "stub").mkdir(parents=True)
    onnx.save(model, str(root / "models" / "stub" / "det_stub.onnx"))


def test_insightface_detector_loads_a_pack_and_returns_faces(tmp_path):
    pytest.importorskip("insightface")
    box, kps = (260, 170, 380, 330), [(290, 220), (350, 222), (321, 255), (295, 290), (345, 292)]
    _stub_scrfd_pack(tmp_path, box, kps)
    detector = InsightFaceDetector("stub", root=tmp_path, providers=["CPUExecutionProvider"], download=False)
    assert isinstance(detector, FaceDetector)

    red = np.zeros((640, 640, 3), np.uint8)
    red[..., 0] = 255
    (face,) = detector.detect(red)
    np.testing.assert_allclose(face.box, box, atol=1e-3)
    np.testing.assert_allclose(face.landmarks, kps, atol=1e-3)
    assert face.score == pytest.approx(0.9 * 127.5 / 128, abs=1e-4)
    # A blue image scores negative: the detector really passes BGR to insightface.
    blue = red[..., ::-1].copy()
    assert detector.detect(blue) == []
    # Twice the size: insightface resizes to 640 and scales the face back.
    (face,) = detector.detect(cv2.resize(red, (1280, 1280)))
    np.testing.assert_allclose(face.landmarks, np.asarray(kps) * 2, atol=1e-3)


def test_insightface_missing_pack_offline_raises_quickly(tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DetectorUnavailable, match="not found at .*downloads are off"):
        InsightFaceDetector(root=tmp_path)
    assert not (tmp_path / "models").exists()


def test_insightface_failed_download_and_empty_pack(tmp_path, monkeypatch):
    storage = pytest.importorskip("insightface.utils.storage")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("INSIGHTFACE_OFFLINE", raising=False)
    monkeypatch.delenv("HIFIFACE_OFFLINE", raising=False)

    def no_network(url, path=None, **kwargs):
        raise ConnectionError(f"no network for {url}")

    monkeypatch.setattr(storage, "download_file", no_network)
    with pytest.raises(DetectorUnavailable, match="ConnectionError: no network"):
        InsightFaceDetector(root=tmp_path)
    (tmp_path / "models" / "empty").mkdir(parents=True)
    with pytest.raises(DetectorUnavailable, match="not found"):
        InsightFaceDetector("empty", root=tmp_path, download=False)


def test_load_detector_auto_falls_back_to_dlib(tmp_path, monkeypatch, caplog):
    pytest.importorskip("dlib")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger="hififace"):
        detector = load_detector("auto", root=tmp_path)
    assert isinstance(detector, DlibDetector)
    (record,) = [r for r in caplog.records if r.name == "hififace"]
    assert "dlib" in record.getMessage() and "insightface unavailable" in record.getMessage()
    with pytest.raises(ValueError, match="unknown face detector"):
        load_detector("mtcnn")


# --- alignment -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [112, 256, 512])
def test_template_points_scale_from_112(size):
    for name, points in TEMPLATES.items():
        scaled = template_points(name, size)
        assert scaled.shape == (5, 2)
        np.testing.assert_allclose(scaled, np.asarray(points) * size / 112, rtol=1e-6)
    np.testing.assert_allclose(template_points("frontal", 256)[0], (90.8114, 116.8869), atol=1e-3)
    np.testing.assert_allclose(template_points("arcface", 512)[4], (323.3367, 421.5045), atol=1e-3)
    with pytest.raises(ValueError, match="unknown alignment template"):
        template_points("ffhq", size)


def test_estimate_similarity_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(17.0), 2.3, np.array([41.0, -7.5])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    known = np.concatenate([scale * rotation, shift[:, None]], axis=1)
    src = template_points("arcface", 112)
    dst = transform_points(src, known)
    np.testing.assert_allclose(estimate_similarity(src, dst), known, atol=1e-9)
    np.testing.assert_allclose(transform_points(dst, invert_affine(known)), src, atol=1e-9)
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), dst)
    # A mirrored target is fitted by a rotation, never by a reflection.
    mirrored = src * (-1, 1)
    assert np.linalg.det(estimate_similarity(src, mirrored)[:, :2]) > 0


def test_estimate_similarity_is_least_squares_on_real_landmarks(astronaut_face):
    skimage_transform = pytest.importorskip("skimage.transform")
    dst = template_points("frontal", 256)
    matrix = estimate_similarity(astronaut_face.landmarks, dst)
    src, dst64 = astronaut_face.landmarks.astype(np.float64), dst.astype(np.float64)
    similarity = skimage_transform.SimilarityTransform
    if hasattr(similarity, "from_estimate"):  # scikit-image >= 0.26
        reference = similarity.from_estimate(src, dst64)
    else:
        reference = similarity()
        assert reference.estimate(src, dst64)
    np.testing.assert_allclose(matrix, reference.params[:2], atol=1e-6)
    # Least squares: residuals sum to zero, and no nearby similarity does better.
    residual = transform_points(astronaut_face.landmarks, matrix) - dst
    np.testing.assert_allclose(residual.mean(axis=0), 0, atol=1e-4)
    best = (residual**2).sum()
    for delta in np.eye(6)[[0, 2, 5]] * 1e-3:
        moved = matrix + delta.reshape(2, 3)
        assert ((transform_points(astronaut_face.landmarks, moved) - dst) ** 2).sum() > best


def test_align_face_pixels_follow_transform_points():
    image = np.zeros((200, 300, 3), np.uint8)
    spot = np.array([[171.25, 88.5]])
    yy, xx = np.mgrid[:200, :300]
    image[..., 1] = np.rint(255 * np.exp(-((xx - spot[0, 0]) ** 2 + (yy - spot[0, 1]) ** 2) / 8.0))
    landmarks = template_points("frontal", 112) * 1.3 + (100, 20)
    crop, matrix = align_face(image, landmarks, size=256)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    weights = crop[..., 1].astype(np.float64)
    ys, xs = np.mgrid[:256, :256]
    centroid = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
    np.testing.assert_allclose(centroid, transform_points(spot, matrix)[0], atol=0.1)


@pytest.mark.parametrize("size", [256, 512])
def test_align_face_puts_the_face_where_the_matrix_says(dlib_detector, astronaut, astronaut_face, size):
    crop, matrix = align_face(astronaut, astronaut_face.landmarks, size=size)
    assert crop.shape == (size, size, 3)
    expected = transform_points(astronaut_face.landmarks, matrix)
    # The five points land on the template up to the fit's residual (a real face is not the template).
    assert np.linalg.norm(expected - template_points("frontal", size), axis=1).max() < 7.0 * size / 112
    # Detecting again in the crop finds the 68 landmarks where the transform sends them.
    (again,) = [f for f in dlib_detector.detect(crop) if f.area > (size / 3) ** 2]
    error = np.linalg.norm(again.landmarks68 - transform_points(astronaut_face.landmarks68, matrix), axis=1)
    assert error.mean() < 1.5 * size / 256


# --- blending --------------------------------------------------------------------------------


def test_soften_mask_erodes_and_feathers():
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    eroded = soften_mask(mask, erode=3)
    assert eroded.dtype == np.float32 and eroded.sum() == 26 * 26
    soft = soften_mask(mask, erode=3, blur=4)
    assert 0 < soft[32, 19] < 1 and soft[32, 32] == pytest.approx(1) and soft[0, 0] == 0
    assert soft.min() >= 0 and soft.max() <= 1
    # A full mask shrinks away from the crop border too, so the pasted crop has no seam.
    full = soften_mask(np.ones((64, 64), np.float32), erode=2, blur=3)
    assert full[0].max() < 0.5 and full[32, 32] == pytest.approx(1)
    np.testing.assert_array_equal(soften_mask(mask), mask)
    with pytest.raises(ValueError, match="must be >= 0"):
        soften_mask(mask, erode=-1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soften_mask(mask * 255)


def _inner_square_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    return soften_mask(mask, erode=size // 64, blur=size // 32)


def test_paste_back_leaves_everything_outside_the_mask_bit_identical(dlib_detector, t1):
    for face in dlib_detector.detect(t1)[:3]:
        crop, matrix = align_face(t1, face.landmarks, size=256)
        mask = _inner_square_mask(256)
        swapped = np.full_like(crop, 255) - crop  # a very different crop
        out = paste_back(t1, swapped, mask, matrix)
        assert out.dtype == np.uint8 and out.shape == t1.shape
        alpha = warp_mask_to_image(mask, matrix, t1.shape)
        outside = alpha == 0
        np.testing.assert_array_equal(out[outside], t1[outside])
        assert (out != t1).any(axis=2).sum() > 0.5 * (alpha > 0.5).sum()
        # Independently of warp_mask_to_image: nothing changes beyond the mask's footprint.
        changed = np.argwhere((out != t1).any(axis=2))[:, ::-1]
        in_crop = transform_points(changed, matrix)
        assert in_crop.min() >= 256 // 4 - 4 * 2 and in_crop.max() <= 3 * 256 // 4 + 4 * 2


def test_paste_back_of_the_unchanged_crop_is_close(astronaut, astronaut_face):
    crop, matrix = align_face(astronaut, astronaut_face.landmarks, size=256)
    mask = _inner_square_mask(256)
    out = paste_back(astronaut, crop, mask, matrix)
    inside = warp_mask_to_image(mask, matrix, astronaut.shape) > 0
    difference = np.abs(out.astype(np.int16) - astronaut)[inside]
    assert difference.mean() < 2.5 and np.percentile(difference, 99) <= 12
    # A float crop in [0, 1] gives the same result up to rounding.
    out_float = paste_back(astronaut, crop / 255.0, mask, matrix)
    assert np.abs(out_float.astype(np.int16) - out).max() <= 1
    # An empty mask changes nothing; a mismatched crop is refused.
    np.testing.assert_array_equal(paste_back(astronaut, crop, np.zeros_like(mask), matrix), astronaut)
    with pytest.raises(ValueError, match="same pixels"):
        paste_back(astronaut, crop[:128], mask, matrix)


def test_warped_mask_matches_a_whole_image_warp(astronaut, astronaut_face):
    # paste_back only warps inside the mask's footprint; it must lose nothing against a warp of the
    # whole image.
    crop, matrix = align_face(astronaut, astronaut_face.landmarks, size=256)
    for mask in (_inner_square_mask(256), np.ones((256, 256), np.float32)):
        alpha = warp_mask_to_image(mask, matrix, astronaut.shape)
        whole = cv2.warpAffine(mask, invert_affine(matrix), (512, 512), flags=cv2.INTER_LINEAR, borderValue=0)
        np.testing.assert_allclose(alpha, whole, atol=1e-4)
        np.testing.assert_array_equal(alpha > 0, whole > 0)
    # With a mask that reaches the crop's edge, the pasted edge stays close to the original: the
    # crop is not darkened by samples from beyond its border.
    out = paste_back(astronaut, crop, np.ones((256, 256), np.float32), matrix)
    edge = (alpha > 0) & (alpha < 1)
    assert edge.sum() > 100 and np.abs(out.astype(np.int16) - astronaut)[edge].mean() < 3


def test_paste_back_face_at_the_image_edge(astronaut, astronaut_face):
    # Shift the face so part of the crop falls outside the image: no error, same guarantee.
    shifted = np.ascontiguousarray(astronaut[60:, 150:])
    crop, matrix = align_face(shifted, astronaut_face.landmarks - (150, 60), size=256)
    mask = soften_mask(np.ones((256, 256), np.float32), erode=4, blur=8)
    out = paste_back(shifted, 255 - crop, mask, matrix)
    outside = warp_mask_to_image(mask, matrix, shifted.shape) == 0
    np.testing.assert_array_equal(out[outside], shifted[outside])


# --- selection -------------------------------------------------------------------------------


def test_select_faces_modes():
    small, big, middle = _face(200, score=2.0, size=30), _face(10, size=80), _face(100, size=50)
    faces = [small, big, middle]
    assert select_faces(faces) == [big]
    assert select_faces(faces, FaceChoice("all")) == [big, middle, small]
    assert select_faces(faces, FaceChoice("index", index=1)) == [middle]
    assert select_faces(faces, "1") == select_faces(faces, 1) == [middle]
    assert select_faces([], "largest") == [] and select_faces([], "all") == []
    # A choice that matches nothing is not an error here: the caller's policy decides.
    assert select_faces(faces, FaceChoice("index", index=5)) == []
    assert select_faces([small], -1) == []
    assert FaceChoice("index", index=5).out_of_range(3) and not FaceChoice("index", index=2).out_of_range(3)
    with pytest.raises(FaceChoiceError, match="face must be 'largest', 'all', 'reference' or a face index"):
        select_faces(faces, "best")
    with pytest.raises(FaceChoiceError, match="unknown face choice 'best'"):
        FaceChoice("best")
    assert FaceSelectionError is FaceChoiceError and issubclass(FaceChoiceError, SwapError)


def test_face_choice_parse():
    assert FaceChoice.parse(" Largest ").mode == "largest" and FaceChoice.parse("all").mode == "all"
    assert (FaceChoice.parse(3).mode, FaceChoice.parse(3).index) == ("index", 3)
    assert FaceChoice.parse(np.int64(2)).index == 2 and FaceChoice.parse("4").index == 4
    choice = FaceChoice.parse("reference", reference=[3.0, 4.0, 0.0], threshold=0.5)
    np.testing.assert_allclose(choice.reference, [0.6, 0.8, 0.0])  # stored as a unit vector
    assert choice.threshold == 0.5 and FaceChoice.parse(choice) is choice
    with pytest.raises(FaceChoiceError, match="needs a reference image"):
        FaceChoice.parse("reference")
    with pytest.raises(FaceChoiceError, match="zero or not finite"):
        FaceChoice("reference", reference=np.zeros(3))
    with pytest.raises(FaceChoiceError, match="got True"):
        FaceChoice.parse(True)


def test_select_faces_by_reference_embedding():
    small, big, middle = _face(200, size=30), _face(10, size=80), _face(100, size=50)
    embeddings = {id(small): [1.0, 0.0, 0.0], id(big): [0.0, 1.0, 0.0], id(middle): [0.9, 0.3, 0.0]}
    calls = []

    def embed(faces):
        calls.append(list(faces))
        return np.array([embeddings[id(face)] for face in faces]) * 7.0  # unnormalised on purpose

    kept = select_faces([small, big, middle], FaceChoice("reference", reference=[2.0, 0.0, 0.0]), embed)
    assert kept == [middle, small] and calls == [[big, middle, small]]  # one call for every face
    assert select_faces([big], FaceChoice("reference", reference=[1.0, 0, 0]), embed) == []
    strict = FaceChoice("reference", reference=[1.0, 0, 0], threshold=0.99)
    assert select_faces([small, middle], strict, embed) == [small]
    with pytest.raises(FaceChoiceError, match="needs an embed function"):
        select_faces([small], strict)
    with pytest.raises(FaceChoiceError, match="embed returned 2 values per face, the reference has 3"):
        select_faces([small], strict, lambda faces: np.ones((len(faces), 2)))


def test_face_validates_its_fields():
    with pytest.raises(ValueError, match="x2 > x1"):
        Face(box=(10, 10, 5, 20), score=1, landmarks=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="5 landmarks"):
        Face(box=(0, 0, 5, 5), score=1, landmarks=np.zeros((4, 2)))
    face = _face(0)
    with pytest.raises(ValueError):
        face.landmarks[0, 0] = 3  # read-only: a Face cannot change under a caller


# --- image files -----------------------------------------------------------------------------


def _save_pil(tmp_path: Path, name: str, pil: PILImage.Image, **options) -> Path:
    path = tmp_path / name
    pil.save(path, **options)
    return path


def test_load_image_rgb_rgba_gray_16bit_palette(tmp_path, astronaut):
    rgb = load_image(_save_pil(tmp_path, "a.png", PILImage.fromarray(astronaut)))
    np.testing.assert_array_equal(rgb, astronaut)
    np.testing.assert_array_equal(load_image(str(tmp_path / "a.png")), astronaut)
    np.testing.assert_array_equal(load_image(PILImage.fromarray(astronaut)), astronaut)

    rgba = np.dstack([astronaut, np.zeros(astronaut.shape[:2], np.uint8)])
    rgba[:, :256, 3] = 255
    loaded = load_image(_save_pil(tmp_path, "b.png", PILImage.fromarray(rgba)))
    np.testing.assert_array_equal(loaded[:, :256], astronaut[:, :256])
    assert (loaded[:, 256:] == 255).all()  # transparent pixels composited onto white

    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    loaded = load_image(_save_pil(tmp_path, "c.png", PILImage.fromarray(gray)))
    assert loaded.shape == (512, 512, 3) and (loaded == gray[..., None]).all()

    deep = gray.astype(np.uint16) * 257
    loaded = load_image(_save_pil(tmp_path, "d.png", PILImage.fromarray(deep)))
    assert (loaded == gray[..., None]).all()

    palette = PILImage.fromarray(astronaut).quantize(64)
    loaded = load_image(_save_pil(tmp_path, "e.png", palette))
    np.testing.assert_array_equal(loaded, np.asarray(palette.convert("RGB")))

    np.testing.assert_array_equal(load_image(astronaut / 255.0), astronaut)
    np.testing.assert_array_equal(load_image(gray), np.repeat(gray[..., None], 3, axis=2))


def test_load_image_applies_exif_orientation(tmp_path, astronaut):
    wide = np.ascontiguousarray(astronaut[:256])
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored sideways; displayed after a 90 degree clockwise turn
    path = _save_pil(tmp_path, "phone.jpg", PILImage.fromarray(wide), exif=exif.tobytes(), quality=98)
    loaded = load_image(path)
    assert loaded.shape == (512, 256, 3)
    np.testing.assert_allclose(loaded.astype(float), np.rot90(wide, k=-1), atol=40)


def test_load_image_errors_name_the_file(tmp_path, astronaut):
    with pytest.raises(ImageError, match="missing.png: no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "notes.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_image(tmp_path / "notes.jpg")
    buffer = io.BytesIO()
    PILImage.fromarray(astronaut).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.png: cannot read"):
        load_image(tmp_path / "cut.png")
    tiny = _save_pil(tmp_path, "tiny.png", PILImage.fromarray(astronaut[:20, :100]))
    with pytest.raises(ImageError, match=r"tiny.png: 100x20 is too small"):
        load_image(tiny)
    big = _save_pil(tmp_path, "big.png", PILImage.fromarray(astronaut))
    with pytest.raises(ImageError, match=r"big.png: 512x512 \(0.3 MP\) is larger than the limit of 0.2 MP"):
        load_image(big, max_pixels=200_000)
    with pytest.raises(ImageError, match="floating-point"):
        load_image(astronaut.astype(np.float32))
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_load_image_default_limit_is_checked_before_decoding(tmp_path):
    # 8000 x 6000 = 48 MP of a single colour compresses to a small PNG; it must be refused from
    # its header, without allocating the pixels.
    path = tmp_path / "huge.png"
    PILImage.new("L", (8000, 6000)).save(path, optimize=False, compress_level=1)
    with pytest.raises(ImageError, match="huge.png: 8000x6000 .* larger than the limit of 40.0 MP"):
        load_image(path)


def test_save_image_png_text_jpeg_exif_atomic(tmp_path, astronaut):
    metadata = {"ai_generated": "true", "software": "hififace"}
    path = save_image(tmp_path / "out.png", astronaut, metadata)
    with PILImage.open(path) as pil:
        assert pil.text == metadata
    np.testing.assert_array_equal(load_image(path), astronaut)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_current_umask())

    jpeg = save_image(tmp_path / "out.jpg", astronaut, metadata)
    with PILImage.open(jpeg) as pil:
        exif = pil.getexif()
        assert exif[0x0131] == "hififace" and '"ai_generated": "true"' in exif[0x010E]
    assert np.abs(load_image(jpeg).astype(int) - astronaut).mean() < 3
    webp = save_image(tmp_path / "out.webp", astronaut)
    assert load_image(webp).shape == astronaut.shape

    save_image(tmp_path / "out.png", 255 - astronaut)  # replaces in place
    np.testing.assert_array_equal(load_image(tmp_path / "out.png"), 255 - astronaut)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.png", "out.webp"]
    with pytest.raises(ImageError, match="cannot save .bmp"):
        save_image(tmp_path / "out.bmp", astronaut)
    with pytest.raises(ImageError, match="uint8"):
        save_image(tmp_path / "x.png", astronaut.astype(np.float32))


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_face_choice_of_several_indices():
    faces = [_face(x) for x in (300, 0, 200, 100)]  # left to right: 1, 3, 2, 0
    left_to_right = [faces[1], faces[3], faces[2], faces[0]]
    choice = FaceChoice.parse(" 2, 0 ,2")
    assert (choice.mode, choice.indices, choice.index) == ("index", (0, 2), 0)  # sorted, no repeats
    assert str(choice) == "0,2" and FaceChoice.parse(str(choice)).indices == (0, 2)
    assert repr(choice) == "FaceChoice('index', indices=(0, 2))"
    assert select_faces(faces, choice) == [left_to_right[0], left_to_right[2]]
    assert FaceChoice.parse([3, np.int64(1)]).indices == (1, 3)
    assert FaceChoice.parse("1").indices == (1,) and str(FaceChoice.parse(1)) == "1"
    assert str(FaceChoice.parse("all")) == "all" and FaceChoice.parse("all").indices == ()
    # Beyond the faces present: a still image refuses it (out_of_range), a video frame swaps the rest.
    beyond = FaceChoice.parse("1,5,7")
    assert beyond.out_of_range(4) and beyond.out_of_range_indices(4) == [5, 7]
    assert not FaceChoice.parse("0,3").out_of_range(4)
    assert select_faces(faces, beyond) == [left_to_right[1]]
    for bad in ("0,,2", "0,two", ",", [], [1, True]):
        with pytest.raises(FaceChoiceError, match="several as '0,2'"):
            FaceChoice.parse(bad)
