"""Evaluation metrics on constructed cases with known answers, and `hififace evaluate` end to end.

Real photos only (offline): skimage's astronaut, the six people of insightface's t1.jpg, and
skimage's cat (no human face). Identity uses dlib's ResNet descriptor, pose dlib's 68 landmarks.
The end-to-end runs use a tiny random HifiFace: they check files, counts, failures and the cache,
not the quality of the swap.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import insightface_photo, tiny_model_dir
from PIL import Image as PILImage
from skimage import data

from hififace.cli import main
from hififace.evaluation import (
    DlibRecognizer,
    InsightFaceRecognizer,
    Pair,
    RecognizerUnavailable,
    coefficient_distance,
    cosine_similarity,
    evaluate,
    face3d_head_pose,
    faceforensics,
    landmark_expression_error,
    landmark_head_pose,
    load_reference,
    pose_error,
    read_pairs_csv,
    retrieval_hits,
    summarize,
)
from hififace.evaluation import runner as runner_module
from hififace.evaluation.fid import fid_unavailable_reason
from hififace.faces import DlibDetector, select_faces
from hififace.priors.face3d import BFMLandmarks

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def detector() -> DlibDetector:
    return DlibDetector()


@pytest.fixture(scope="module")
def recognizer() -> DlibRecognizer:
    return DlibRecognizer()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def people(detector) -> list[np.ndarray]:
    """Seven different people, one per image: the astronaut and the six of t1.jpg (cropped apart)."""
    group = np.asarray(PILImage.open(insightface_photo("t1.jpg")).convert("RGB"))
    faces = detector.detect(group)
    assert len(faces) == 6
    crops = []
    for face in faces:
        x1, y1, x2, y2 = face.box
        half, cx, cy = (x2 - x1), (x1 + x2) / 2, (y1 + y2) / 2
        crops.append(
            np.ascontiguousarray(
                group[int(max(0, cy - half)) : int(cy + half), int(max(0, cx - half)) : int(cx + half)]
            )
        )
    return [data.astronaut(), *crops]


def largest(detector, image):
    faces = detector.detect(image)
    assert faces, "no face found"
    return select_faces(faces, "largest")[0]


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned `degrees` counter-clockwise (as displayed) about its centre."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


# ---------------------------------------------------------------------- metrics on known cases


def test_a_face_compared_with_itself_scores_identity_one_and_no_error(detector, recognizer, astronaut):
    face = largest(detector, astronaut)
    embeddings = recognizer.embed([(astronaut, face), (astronaut.copy(), face)])
    assert embeddings.shape == (2, 128)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert cosine_similarity(embeddings[0], embeddings[1]) == pytest.approx(1.0, abs=1e-6)
    pose = landmark_head_pose(face.landmarks68, astronaut.shape[:2])
    assert pose_error(pose, landmark_head_pose(face.landmarks68, astronaut.shape[:2])) == 0.0
    assert landmark_expression_error(face.landmarks68, face.landmarks68) == pytest.approx(0.0, abs=1e-9)
    coeffs = np.random.default_rng(0).normal(size=257)
    assert coefficient_distance(coeffs[80:144], coeffs[80:144]) == 0.0
    assert coefficient_distance(coeffs[:80], coeffs[:80] + 0.5) == pytest.approx(0.5 * math.sqrt(80))


def test_a_mirrored_face_has_its_yaw_and_roll_negated_and_keeps_its_identity(detector, recognizer, astronaut):
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    face, face_m = largest(detector, astronaut), largest(detector, mirrored)
    yaw, pitch, roll = landmark_head_pose(face.landmarks68, astronaut.shape[:2])
    yaw_m, pitch_m, roll_m = landmark_head_pose(face_m.landmarks68, mirrored.shape[:2])
    assert abs(yaw) > 3  # she is turned a little: the sign flip is measurable
    assert yaw_m == pytest.approx(-yaw, abs=3)
    assert pitch_m == pytest.approx(pitch, abs=3)
    assert roll_m == pytest.approx(-roll, abs=3)
    e = recognizer.embed([(astronaut, face), (mirrored, face_m)])
    assert cosine_similarity(e[0], e[1]) > 0.97


@pytest.mark.parametrize("degrees", [15.0, -12.0])
def test_an_inplane_rotation_shows_as_that_roll_and_pose_error(detector, recognizer, astronaut, degrees):
    turned = rotate(astronaut, degrees)
    face, face_t = largest(detector, astronaut), largest(detector, turned)
    pose = landmark_head_pose(face.landmarks68, astronaut.shape[:2])
    pose_t = landmark_head_pose(face_t.landmarks68, turned.shape[:2])
    # counter-clockwise by d degrees = a roll of -d in our clockwise-positive convention
    assert pose_t[2] - pose[2] == pytest.approx(-degrees, abs=3)
    assert pose_error(pose_t, pose) == pytest.approx(abs(degrees), abs=3)
    # position, size and roll do not count as expression
    assert landmark_expression_error(face_t.landmarks68, face.landmarks68) < 0.03
    e = recognizer.embed([(astronaut, face), (turned, face_t)])
    assert cosine_similarity(e[0], e[1]) > 0.95


def test_retrieval_finds_each_person_and_different_people_are_clearly_less_similar(
    detector, recognizer, people
):
    sources = [(img, largest(detector, img)) for img in people]
    # another picture of each person: the mirror image, enlarged
    others = []
    for img in people:
        mirrored = np.ascontiguousarray(img[:, ::-1])
        small = cv2.resize(mirrored, None, fx=1.25, fy=1.25, interpolation=cv2.INTER_CUBIC)
        others.append((small, largest(detector, small)))
    gallery, queries = recognizer.embed(sources), recognizer.embed(others)
    labels = [f"person{i}" for i in range(len(people))]
    hits = retrieval_hits(queries, gallery, labels, labels)
    assert hits.tolist() == [1.0] * len(people)
    similarity = queries @ gallery.T
    same = np.diag(similarity)
    different = similarity[~np.eye(len(people), dtype=bool)]
    assert same.min() > 0.95
    assert different.max() < same.min() - 0.03
    assert different.mean() < same.mean() - 0.08


def test_retrieval_counts_another_picture_of_the_same_identity_as_a_hit():
    gallery = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    queries = np.array([[0.95, 0.05], [0.1, 1.0], [0.85, 0.2]])
    hits = retrieval_hits(queries, gallery, ["a", "b", "b"], ["a", "a", "b"])
    # query 3 is nearest to gallery entry 2 (labelled "a"), but should be "b"
    assert hits.tolist() == [1.0, 1.0, 0.0]


def test_pose_error_is_the_l2_of_wrapped_angle_differences():
    assert pose_error((3.0, 4.0, 0.0), (0.0, 0.0, 0.0)) == pytest.approx(5.0)
    assert pose_error((179.0, 0.0, 0.0), (-179.0, 0.0, 0.0)) == pytest.approx(2.0)


def test_landmark_expression_error_ignores_position_size_roll_and_jaw_but_sees_an_open_mouth(
    detector, astronaut
):
    points = largest(detector, astronaut).landmarks68.astype(np.float64)
    angle = math.radians(25)
    similar = (
        1.7 * points @ np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]).T
    )
    similar += (40.0, -13.0)
    assert landmark_expression_error(similar, points) == pytest.approx(0.0, abs=1e-9)
    jaw = points.copy()
    jaw[0:17] *= 1.1  # a wider face outline is shape, not expression
    assert landmark_expression_error(jaw, points) == pytest.approx(0.0, abs=1e-9)
    open_mouth = points.copy()
    face_height = points[:, 1].max() - points[:, 1].min()
    open_mouth[[56, 57, 58, 65, 66, 67], 1] += 0.08 * face_height  # lower lip down
    assert landmark_expression_error(open_mouth, points) > 0.02


def test_3dmm_angles_become_image_frame_poses_in_the_landmark_convention():
    """Rotating the picture by φ is a roll of φ: checked on the BFM camera (synthetic BFM)."""
    bfm = BFMLandmarks.from_mat(FIXTURES / "bfm_synthetic_front.mat")
    x, y, z = 0.2, -0.3, 0.1  # pitch, yaw, roll in Deep3DFaceRecon's frame (radians)
    phi = math.radians(20.0)  # the alignment turns the face clockwise by 20° as displayed
    centre = bfm.center
    align = np.array(
        [
            [math.cos(phi), -math.sin(phi), centre - centre * math.cos(phi) + centre * math.sin(phi)],
            [math.sin(phi), math.cos(phi), centre - centre * math.sin(phi) - centre * math.cos(phi)],
        ]
    )

    def image_points(angles):  # the BFM's landmarks in image rows (y down), like a photo
        coeffs = torch.zeros(1, 257, dtype=torch.float64)
        coeffs[0, 224:227] = torch.tensor(angles, dtype=torch.float64)
        points = bfm.double()(coeffs)[0].numpy()
        return np.stack([points[:, 0], 2 * centre - points[:, 1]], axis=1)

    seen = image_points((x, y, z))
    in_crop = image_points((x, y, z - phi))  # what the regressor would read from the aligned crop
    assert np.allclose(seen @ align[:, :2].T + align[:, 2], in_crop, atol=1e-6)
    yaw, pitch, roll = face3d_head_pose(np.array([x, y, z]))
    assert (yaw, pitch, roll) == pytest.approx((-math.degrees(y), math.degrees(x), -math.degrees(z)))
    assert face3d_head_pose(np.array([x, y, z - phi]), align) == pytest.approx((yaw, pitch, roll))


def test_summarize_gives_mean_and_student_t_interval():
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(0.975, 3)
    assert stats["mean"] == 2.5 and stats["n"] == 4
    assert stats["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    assert summarize([7.0])["ci95"] is None
    assert summarize([])["mean"] is None


# ---------------------------------------------------------------------- recognizers and FID


def test_insightface_recognizer_without_its_pack_says_what_is_missing(tmp_path):
    with pytest.raises(RecognizerUnavailable, match="no insightface recognition model.*--recognizer dlib"):
        InsightFaceRecognizer("buffalo_l", root=tmp_path)


def test_insightface_recognizer_embeds_with_a_pack_recognition_model(tmp_path, detector, astronaut):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["data"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["embedding"]),
        ],
        "recognition_stub",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "models" / "stub").mkdir(parents=True)
    onnx.save(model, str(tmp_path / "models" / "stub" / "w_stub.onnx"))
    recognizer = InsightFaceRecognizer("stub", root=tmp_path)
    face = largest(detector, astronaut)
    e = recognizer.embed([(astronaut, face), (astronaut, face)])
    assert e.shape == (2, 8)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert cosine_similarity(e[0], e[1]) == pytest.approx(1.0, abs=1e-6)


def test_fid_is_skipped_with_a_reason_when_it_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no Inception weights cached, and tests are offline
    reason = fid_unavailable_reason()
    if importlib.util.find_spec("pytorch_fid") is None:
        assert reason.startswith("FID skipped: pytorch-fid is not installed")
    else:
        assert reason.startswith("FID skipped: its Inception weights are not at")
        assert str(tmp_path) in reason
    assert "pip install pytorch-fid" in reason


# ---------------------------------------------------------------------- hififace evaluate


def _save(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(image).save(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def test_evaluate_command_with_a_model_writes_json_html_counts_failures_and_resumes(
    tmp_path, tiny_model, people, monkeypatch
):
    # p1, p2: two real swaps; p3: a cat as the source (no face)
    _save(tmp_path / "src" / "p1.png", people[0])
    _save(tmp_path / "tgt" / "p1.png", people[4])
    _save(tmp_path / "src" / "p2.png", people[3])
    _save(tmp_path / "tgt" / "p2.png", people[0])
    _save(tmp_path / "src" / "p3.png", data.chelsea())
    _save(tmp_path / "tgt" / "p3.png", people[6])
    _save(tmp_path / "tgt" / "lonely.png", people[1])
    out = tmp_path / "out"
    argv = ["evaluate", "--sources", str(tmp_path / "src"), "--targets", str(tmp_path / "tgt")]
    argv += ["--model", str(tiny_model), "--out", str(out), "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0

    summary = json.loads((out / "metrics.json").read_text())
    assert (summary["pairs"], summary["scored"], summary["failures"]["count"]) == (3, 2, 1)
    assert summary["failures"]["pairs"][0]["name"] == "p3"
    assert summary["failures"]["by_kind"] == {
        "no_face_source": {"count": 1, "meaning": "no face found in the source image"}
    }
    assert summary["settings"]["unpaired"]["targets"] == ["lonely.png"]
    metrics = summary["metrics"]
    for name in (
        "identity_cosine",
        "id_retrieval",
        "pose_error_landmarks",
        "pose_error_3dmm",
        "expression_error_3dmm",
        "expression_error_landmarks",
        "shape_error_3dmm",
    ):
        assert metrics[name]["n"] == 2, name
        assert metrics[name]["mean"] is not None and len(metrics[name]["ci95"]) == 2
    assert metrics["fid"]["value"] is None and summary["skipped"]["fid"].startswith("FID skipped")
    # the random model barely changes the target: the swapped face is still the target's person
    assert metrics["id_retrieval"]["mean"] == 0.0
    assert summary["cache"] == {"reused": 0, "computed": 3}

    page = (out / "report.html").read_text()
    assert page.count("<svg") == 7 and "no face found in the source image" in page
    thumbnails = [p for p in page.split("src='")[1:]]
    assert len(thumbnails) == 2 * 5 + 2  # two swaps with 5 pictures, the failure with its 2 inputs
    assert all((out / t.split("'")[0]).is_file() for t in thumbnails)
    rows = list(csv.DictReader((out / "pairs.csv").read_text().splitlines()))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]

    # A re-run reads every pair from the cache: no model is loaded, nothing is scored again.
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached pair")

    monkeypatch.setattr(runner_module, "_score_batch", refuse)
    monkeypatch.setattr("hififace.pipeline.HifiFacePipeline.from_pretrained", refuse)
    assert main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["cache"] == {"reused": 3, "computed": 0}
    assert again["metrics"] == metrics


def test_evaluate_scores_existing_swaps_from_a_pairs_csv(tmp_path, people):
    """A 'swapper' that returns the target unchanged: no pose or expression error, target identity."""
    rows = [("a", people[0], people[1]), ("b", people[2], people[3])]
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "source", "target", "swapped"])
        for name, source, target in rows:
            _save(tmp_path / "in" / f"{name}_s.png", source)
            _save(tmp_path / "in" / f"{name}_t.png", target)
            _save(tmp_path / "swapped" / f"{name}.png", target)
            writer.writerow([name, f"in/{name}_s.png", f"in/{name}_t.png", f"swapped/{name}.png"])
        _save(tmp_path / "swapped" / "cat.png", data.chelsea())
        writer.writerow(["cat", "in/a_s.png", "in/a_t.png", "swapped/cat.png"])  # face gone
        writer.writerow(["gone", "in/b_s.png", "in/b_t.png", "swapped/missing.png"])  # file missing
    pairs = read_pairs_csv(tmp_path / "pairs.csv")
    assert [p.name for p in pairs] == ["a", "b", "cat", "gone"]
    result = evaluate(pairs, tmp_path / "out", progress=False, sample_grid=2)
    s = result.summary
    assert (s["scored"], s["failures"]["count"]) == (2, 2)
    assert set(s["failures"]["by_kind"]) == {"no_face_swapped", "unreadable_swapped"}
    assert s["metrics"]["pose_error_landmarks"]["mean"] == 0.0
    assert s["metrics"]["expression_error_landmarks"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert s["metrics"]["identity_cosine"]["max"] < 0.93
    for name in ("pose_error_3dmm", "expression_error_3dmm", "shape_error_3dmm"):
        assert s["metrics"][name]["n"] == 0 and "pass --model" in s["skipped"][name]
    # swapped = source image: perfect identity and retrieval
    for p in pairs[:2]:
        shutil.copy(p.source, p.swapped)
    result = evaluate(pairs[:2], tmp_path / "out2", progress=False)
    assert result.summary["metrics"]["id_retrieval"]["mean"] == 1.0
    assert result.summary["metrics"]["identity_cosine"]["min"] == pytest.approx(1.0, abs=1e-6)


def test_evaluate_computes_fid_through_pytorch_fid(tmp_path, people, monkeypatch):
    """The FID path with a stand-in for pytorch-fid (whose Inception weights cannot be had offline)."""
    calls = []

    class InceptionV3(torch.nn.Module):
        BLOCK_INDEX_BY_DIM = {2048: 3}

        def __init__(self, blocks):
            super().__init__()
            assert blocks == [3]

        def forward(self, x):
            calls.append(x.shape)
            return [x.mean(dim=(2, 3)).repeat(1, 683)[:, :2048, None, None]]

    def calculate_frechet_distance(mu1, sigma1, mu2, sigma2):
        return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2))

    package = types.ModuleType("pytorch_fid")
    package.inception = types.SimpleNamespace(InceptionV3=InceptionV3, FID_WEIGHTS_URL="")
    package.fid_score = types.SimpleNamespace(calculate_frechet_distance=calculate_frechet_distance)
    monkeypatch.setitem(sys.modules, "pytorch_fid", package)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", package.inception)
    monkeypatch.setitem(sys.modules, "pytorch_fid.fid_score", package.fid_score)
    pairs = []
    for i, (s, t) in enumerate([(0, 1), (2, 3), (4, 5)]):
        pairs.append(
            Pair(
                name=f"p{i}",
                source=_save(tmp_path / f"s{i}.png", people[s]),
                target=_save(tmp_path / f"t{i}.png", people[t]),
                swapped=_save(tmp_path / f"r{i}.png", people[t]),
            )
        )
    first = evaluate(pairs, tmp_path / "out", progress=False, sample_grid=0, fid=False)
    assert first.summary["skipped"]["fid"] == "FID skipped: switched off (--no-fid)" and not calls
    # with FID on, pairs cached without Inception features are scored again, and only once
    result = evaluate(pairs, tmp_path / "out", progress=False, sample_grid=0)
    assert (result.computed, result.reused) == (3, 0)
    assert evaluate(pairs, tmp_path / "out", progress=False, sample_grid=0).reused == 3
    s = result.summary
    assert "fid" not in s["skipped"] and calls
    features = np.stack([np.load(p) for p in (tmp_path / "out" / "cache").glob("*.fid.npy")])
    assert features.shape == (3, 2, 2048)
    # swapped = target: equal means, so the stand-in formula gives twice the covariance's trace
    expected = 2 * np.trace(np.cov(features[:, 0].astype(np.float64), rowvar=False))
    assert s["metrics"]["fid"]["n"] == 3
    assert s["metrics"]["fid"]["value"] == pytest.approx(expected, rel=1e-4)
    assert "below 2048 images" in s["metrics"]["fid"]["warning"]


def test_video_frames_are_image_references(tmp_path):
    pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    _write_clip(path, [0, 120, 240])
    assert abs(int(load_reference(f"{path}#2").mean()) - 240) < 8
    with pytest.raises(ValueError, match="no frame 7"):
        load_reference(f"{path}#7")


def test_evaluate_refuses_pairs_without_swaps_or_a_model(tmp_path):
    pair = Pair(name="x", source="s.png", target="t.png")
    with pytest.raises(ValueError, match="pass --model"):
        evaluate([pair], tmp_path / "out", progress=False)
    assert main(["evaluate", "--out", str(tmp_path / "o")]) == 1


def _write_clip(path: Path, shades: list[int]) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for shade in shades:
            frame = np.full((64, 64, 3), shade, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_faceforensics_frames_and_pairs_follow_the_protocol_layout(tmp_path):
    pytest.importorskip("av")
    assert faceforensics.frame_indices(300, 10) == [0, 33, 66, 100, 133, 166, 199, 233, 266, 299]
    root = tmp_path / "ffpp"
    videos = root / "original_sequences" / "youtube" / "c23" / "videos"
    _write_clip(videos / "000.mp4", [10 * i for i in range(12)])
    _write_clip(videos / "003.mp4", [200] * 5)
    manipulated = root / "manipulated_sequences" / "Deepfakes" / "c23" / "videos"
    manipulated.mkdir(parents=True)
    for name in ("000_003", "003_000"):
        (manipulated / f"{name}.mp4").touch()  # only the names are read
    assert faceforensics.main([str(root), str(tmp_path / "out"), "--frames", "3"]) == 0
    pairs = read_pairs_csv(tmp_path / "out" / "pairs.csv")
    assert [p.name for p in pairs] == ["000_003_0000", "000_003_0006", "000_003_0011"] + [
        "003_000_0000",
        "003_000_0002",
        "003_000_0004",
    ]
    first = pairs[1]  # target 000's frame 6, source 003's second chosen frame (2)
    assert first.target.endswith("frames/000/0006.png") and first.source.endswith("frames/003/0002.png")
    assert first.identity == "003"
    assert abs(int(load_reference(first.target).mean()) - 60) < 8


# ---------------------------------------------------------------------- one detection per image


class CountingDetector:
    """A detector that records every image it is given, around the real dlib detector."""

    def __init__(self, inner: DlibDetector):
        self.inner = inner
        self.images: list[np.ndarray] = []

    def detect(self, image):
        self.images.append(np.array(image, copy=True))
        return self.inner.detect(image)

    def count(self, image: np.ndarray) -> int:
        return sum(seen.shape == image.shape and np.array_equal(seen, image) for seen in self.images)

    def __repr__(self) -> str:
        return "CountingDetector(dlib)"


@pytest.mark.parametrize("with_model", [True, False])
def test_evaluate_detects_each_image_once_per_pair(tmp_path, tiny_model, people, detector, with_model):
    """Source, target and swapped image: one detector call each, also when the model swaps the pair."""
    pairs = []
    for i, (s, t) in enumerate([(0, 4), (3, 1)]):  # four different people: each image in one pair
        # without a model, the "swap" is the target with its lowest bit flipped: another image, same face
        swapped = None if with_model else _save(tmp_path / f"r{i}.png", people[t] ^ 1)
        source, target = _save(tmp_path / f"s{i}.png", people[s]), _save(tmp_path / f"t{i}.png", people[t])
        pairs.append(Pair(name=f"p{i}", source=source, target=target, swapped=swapped))
    counting = CountingDetector(detector)
    options = dict(model=tiny_model if with_model else None, detector=counting, progress=False, fid=False)
    result = evaluate(pairs, tmp_path / "out", sample_grid=0, **options)
    assert result.summary["scored"] == 2
    assert result.summary["settings"]["detector"] == "CountingDetector(dlib)"
    assert len(counting.images) == 3 * len(pairs)
    for p in pairs:
        assert counting.count(load_reference(p.source)) == 1, p.name
        assert counting.count(load_reference(p.target)) == 1, p.name
        if not with_model:
            assert counting.count(load_reference(p.swapped)) == 1, p.name
    assert evaluate(pairs, tmp_path / "out", sample_grid=0, **options).reused == 2
    assert len(counting.images) == 3 * len(pairs)  # cached pairs detect nothing


def test_the_68_point_predictor_is_loaded_once_and_shared(detector, recognizer, astronaut, tmp_path):
    from hififace.faces import DetectorUnavailable
    from hififace.faces.detection import load_shape_predictor, predict_landmarks68

    assert load_shape_predictor() is load_shape_predictor()
    face = largest(detector, astronaut)
    # what an insightface face (five points only) gets: the detector's 68 points, exactly
    assert np.array_equal(predict_landmarks68(astronaut, face.box), face.landmarks68)
    five_only = type(face)(box=face.box, score=face.score, landmarks=face.landmarks)
    e = recognizer.embed([(astronaut, face), (astronaut, five_only)])
    assert np.array_equal(e[0], e[1])
    with pytest.raises(DetectorUnavailable, match="shape predictor not found"):
        load_shape_predictor(tmp_path / "missing.dat")


def test_arcface_recognizer_embeds_through_the_pipeline_in_the_callers_order(tiny_model, detector, people):
    from hififace.evaluation import ArcFaceRecognizer
    from hififace.pipeline import HifiFacePipeline

    pipeline = HifiFacePipeline.from_pretrained(tiny_model, detector=detector)
    a, b = people[0], people[1]
    face_a, face_b = largest(detector, a), largest(detector, b)
    faces = [(a, face_a), (b, face_b), (a, face_a)]  # images interleaved: grouped per image inside
    e = ArcFaceRecognizer(pipeline).embed(faces)
    assert e.shape == (3, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    expected = np.concatenate([pipeline.embed_faces(a, [face_a]), pipeline.embed_faces(b, [face_b])])
    assert np.allclose(e[:2], expected, atol=1e-5)
    assert np.allclose(e[2], e[0], atol=1e-6)
    assert cosine_similarity(e[0], e[1]) < 0.999
