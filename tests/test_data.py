"""Preprocessing and the pair dataset, on real photos that ship in installed packages.

The RAW tree holds four people: skimage's astronaut and three faces cut from insightface's t1.jpg,
two photos each (the second one rotated), plus a cat (no face), a downscaled copy (too small), a
blurred copy (blurry), a truncated JPEG (error), a text file and an image outside any identity
folder (both ignored). Detection is dlib's HOG detector, which works offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import insightface_photo
from PIL import Image as PILImage
from skimage import data

from hififace import cli
from hififace.data import INDEX_NAME, FacePairDataset, blur_score, face_size, preprocess, read_index
from hififace.data.index import rebuild_index
from hififace.faces import align_face, estimate_similarity, template_points, transform_points
from hififace.imageio import load_image, save_image

SIZE = 256
MIN_FACE = 100  # the t1.jpg faces cover about 150 px, under the default minimum of 256
KEPT = {
    "astronaut/a.jpg",
    "astronaut/b.jpg",
    "person_a/01.jpg",
    "person_a/02.png",
    "person_b/01.jpg",
    "person_b/02.png",
    "person_c/01.jpg",
    "person_c/02.png",
}
DROPPED = {
    "astronaut/small.jpg": "too_small",
    "astronaut/blurred.jpg": "blurry",
    "person_a/cat.jpg": "no_face",
    "person_b/broken.jpg": "error",
}


class CountingDetector:
    """A detector that counts its calls (to show that a resumed run redoes no work)."""

    def __init__(self, detector):
        self.detector = detector
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return self.detector.detect(image)


def _rotated(image: np.ndarray, angle: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: content hash and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dlib_detector():
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from hififace.faces import DlibDetector

    return DlibDetector()


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory, dlib_detector) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    t1 = load_image(insightface_photo("t1.jpg"))
    faces = dlib_detector.detect(t1)
    assert len(faces) == 6
    for name, k in (("person_a", 0), ("person_b", 2), ("person_c", 3)):
        x1, y1, x2, y2 = (int(v) for v in faces[k].box)
        margin = x2 - x1
        crop = t1[max(0, y1 - margin) : y2 + margin, max(0, x1 - margin) : x2 + margin]
        (raw / name).mkdir()
        save_image(raw / name / "01.jpg", crop)
        save_image(raw / name / "02.png", _rotated(crop, 15))
    astronaut = data.astronaut()
    (raw / "astronaut").mkdir()
    save_image(raw / "astronaut" / "a.jpg", astronaut)
    save_image(raw / "astronaut" / "b.jpg", _rotated(astronaut, -20))
    save_image(
        raw / "astronaut" / "small.jpg", cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    )
    save_image(raw / "astronaut" / "blurred.jpg", cv2.GaussianBlur(astronaut, (0, 0), 2.5))
    save_image(raw / "person_a" / "cat.jpg", data.chelsea())
    (raw / "person_b" / "broken.jpg").write_bytes((raw / "person_b" / "01.jpg").read_bytes()[:300])
    (raw / "person_b" / "notes.txt").write_text("not an image")
    save_image(raw / "loose.jpg", astronaut)  # not in an identity folder
    return raw


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, raw_dir, dlib_detector):
    """One in-process run over the RAW tree: (out folder, summary, detector, RAW snapshot before)."""
    before = _snapshot(raw_dir)
    out = tmp_path_factory.mktemp("prepared") / "out"
    detector = CountingDetector(dlib_detector)
    summary = preprocess(raw_dir, out, size=SIZE, min_face_size=MIN_FACE, detector=detector, progress=False)
    return out, summary, detector, before


def _records(out: Path) -> dict[str, dict]:
    return {r["source"]: r for r in read_index(out / INDEX_NAME)}


# --- preprocessing -------------------------------------------------------------------------------


def test_preprocess_counts_every_outcome(prepared, raw_dir):
    out, summary, detector, _ = prepared
    records = _records(out)
    assert set(records) == KEPT | set(DROPPED)  # not notes.txt, not the loose image
    assert {s: records[s]["status"] for s in DROPPED} == DROPPED
    assert all(records[s]["status"] == "kept" for s in KEPT)
    assert records["person_b/broken.jpg"]["error"].startswith("ImageError: ")
    assert records["astronaut/small.jpg"]["face_size"] < MIN_FACE < records["astronaut/a.jpg"]["face_size"]
    assert records["astronaut/blurred.jpg"]["blur"] < 10 < records["astronaut/a.jpg"]["blur"]
    assert (summary.kept, summary.no_face, summary.too_small, summary.blurry, summary.errors) == (
        8,
        1,
        1,
        1,
        1,
    )
    assert (summary.processed, summary.skipped) == (12, 0)
    assert detector.calls == 11  # every image but the unreadable one
    saved = json.loads((out / "preprocess_summary.json").read_text())
    assert saved == summary.to_dict()
    config = json.loads((out / "preprocess_config.json").read_text())
    assert config["size"] == SIZE and config["min_face_size"] == MIN_FACE and config["masks"] is False
    # One index line per image, and exactly the kept crops on disk.
    assert len((out / INDEX_NAME).read_text().splitlines()) == 12
    written = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert written == {records[s]["file"] for s in KEPT}
    assert records["person_a/02.png"]["file"] == "images/person_a/02.png"
    assert not (out / "masks").exists() and all(records[s]["mask"] is None for s in KEPT)


def test_preprocess_crops_land_on_the_template(prepared, raw_dir, dlib_detector):
    out, *_ = prepared
    template = template_points("frontal", SIZE)
    redetect_errors = []
    for source in sorted(KEPT):
        record = _records(out)[source]
        crop = load_image(out / record["file"])
        assert crop.shape == (SIZE, SIZE, 3)
        landmarks, matrix = np.array(record["landmarks"]), np.array(record["matrix"])
        # The crop is exactly the original warped by the saved matrix (PNG is lossless) ...
        original = load_image(raw_dir / source)
        warped = cv2.warpAffine(
            original, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        np.testing.assert_array_equal(crop, warped)
        # ... the saved matrix is the least-squares similarity of the saved landmarks onto the template
        # (landmarks are stored to 1e-3 px) ...
        np.testing.assert_allclose(matrix, estimate_similarity(landmarks, template), atol=0.01)
        assert record["face_size"] == pytest.approx(face_size(matrix, SIZE), abs=0.01)
        # ... so the eyes land on the template up to the fit's residual: a real face is not the
        # template (up to 10 px at 256 on these turned heads; nose and mouth are further off).
        moved = transform_points(landmarks, matrix)
        assert np.linalg.norm(moved[:2] - template[:2], axis=1).max() < 12.0
        np.testing.assert_allclose((moved - template).mean(axis=0), 0, atol=0.01)
        # Detecting again in the crop finds the five points where the matrix sends them.
        (again,) = [f for f in dlib_detector.detect(crop) if f.area > (SIZE / 3) ** 2]
        redetect_errors.append(np.linalg.norm(again.landmarks - moved, axis=1))
        assert record["blur"] == pytest.approx(blur_score(crop), abs=1e-2)
    errors = np.stack(redetect_errors)
    # Measured: 0.5-1.7 px per crop, 3.9 px on the rotated, turned person_a; 1.3 px overall.
    assert errors.mean() < 2.0 and errors.mean(axis=1).max() < 5.0


def test_preprocess_never_touches_raw(prepared, raw_dir):
    out, _, _, before = prepared
    assert _snapshot(raw_dir) == before
    assert not any(p.name.startswith(".") for p in raw_dir.rglob("*"))  # no temporary files either
    with pytest.raises(ValueError, match="inside the raw folder"):
        preprocess(raw_dir, raw_dir / "out", detector="dlib")
    with pytest.raises(ValueError, match="inside the raw folder"):
        preprocess(raw_dir, raw_dir, detector="dlib")
    with pytest.raises(ValueError, match="which preprocessing writes"):
        preprocess(out / "images", out, detector="dlib")
    assert _snapshot(raw_dir) == before


def test_preprocess_resumes_without_redoing_work(prepared, raw_dir, dlib_detector, tmp_path, caplog):
    source_out, *_ = prepared
    out = tmp_path / "out"
    shutil.copytree(source_out, out)
    crops = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}

    detector = CountingDetector(dlib_detector)
    summary = preprocess(raw_dir, out, size=SIZE, min_face_size=MIN_FACE, detector=detector, progress=False)
    # Only the unreadable image is tried again (it fails before detection).
    assert detector.calls == 0 and (summary.processed, summary.skipped) == (1, 11)
    assert (summary.kept, summary.errors) == (8, 1)
    assert {p: p.stat().st_mtime_ns for p in crops} == crops

    # A crash: one crop lost, one crop written but its index line never appended, a half line.
    records = _records(out)
    (out / records["person_c/02.png"]["file"]).unlink()
    lines = [line for line in (out / INDEX_NAME).read_text().splitlines() if '"person_a/01.jpg"' not in line]
    (out / INDEX_NAME).write_text("\n".join(lines) + '\n{"source":"astronaut/a.jpg","identity":"astro')
    with caplog.at_level(logging.WARNING, logger="hififace"):
        summary = preprocess(
            raw_dir, out, size=SIZE, min_face_size=MIN_FACE, detector=detector, progress=False
        )
    assert "not complete JSON" in caplog.text
    assert detector.calls == 2 and (summary.processed, summary.skipped) == (3, 9)
    assert (summary.kept, summary.no_face, summary.too_small, summary.blurry, summary.errors) == (
        8,
        1,
        1,
        1,
        1,
    )
    lines = (out / INDEX_NAME).read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(line) for line in lines)
    assert _records(out).keys() == records.keys()
    assert all((out / r["file"]).is_file() for r in _records(out).values() if r["status"] == "kept")
    # Rebuilding a consistent index changes nothing but dropping the error record to retry it.
    assert len(rebuild_index(out)) == 11

    with pytest.raises(ValueError, match="min_face_size=100.0, not min_face_size=256.0"):
        preprocess(raw_dir, out, size=SIZE, detector=detector, progress=False)
    # Two runs on one folder at the same time would do the work twice: the second one stops.
    fcntl = pytest.importorskip("fcntl")
    with open(out / ".preprocess.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RuntimeError, match="another `hififace preprocess` is writing"):
            preprocess(raw_dir, out, size=SIZE, min_face_size=MIN_FACE, detector=detector, progress=False)


def test_preprocess_default_min_face_size_is_the_crop_size(tmp_path, dlib_detector):
    raw = tmp_path / "raw"
    (raw / "astronaut").mkdir(parents=True)
    astronaut = data.astronaut()
    save_image(raw / "astronaut" / "native.png", astronaut)  # the crop covers 142 px: upsampled
    save_image(
        raw / "astronaut" / "large.png", cv2.resize(astronaut, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    )
    summary = preprocess(raw, tmp_path / "out", size=SIZE, detector=dlib_detector, progress=False)
    assert (summary.kept, summary.too_small) == (1, 1)
    assert _records(tmp_path / "out")["astronaut/large.png"]["face_size"] == pytest.approx(284, abs=4)

    summary = preprocess(
        raw,
        tmp_path / "out512",
        size=512,
        min_face_size=0,
        blur_threshold=0,
        detector=dlib_detector,
        progress=False,
    )
    assert summary.kept == 2
    assert load_image(tmp_path / "out512" / "images" / "astronaut" / "large.png").shape == (512, 512, 3)


def test_preprocess_rejects_bad_input(tmp_path, dlib_detector):
    (tmp_path / "raw" / "person").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        preprocess(tmp_path / "raw", tmp_path / "out", detector=dlib_detector)
    with pytest.raises(ValueError, match="not a folder"):
        preprocess(tmp_path / "missing", tmp_path / "out", detector=dlib_detector)
    with pytest.raises(ValueError, match="only be used with workers=0"):
        preprocess(tmp_path / "raw", tmp_path / "out", detector=dlib_detector, workers=2)
    with pytest.raises(ValueError, match="not a FaceParser folder"):
        preprocess(tmp_path / "raw", tmp_path / "out", parser=tmp_path, detector=dlib_detector)
    with pytest.raises(ValueError, match="unknown alignment template"):
        preprocess(tmp_path / "raw", tmp_path / "out", template="nope", detector=dlib_detector)


def _calibrated_parser(crops: list[np.ndarray]):
    """A random BiSeNet whose labels follow the image, so that a wrong mask cannot pass unnoticed.

    With random weights BiSeNet gives one class almost everywhere. Here its BatchNorm statistics
    come from `crops` (features centred on them), and the last layer is reduced to skin (class 1)
    against background (class 0): skin where a fixed +-1 mix of the channels is positive, which on
    the calibration crops covers about a third to two thirds of the picture.
    """
    from hififace.priors.parsing import FaceParser

    parser = FaceParser()
    for module in parser.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average: one batch sets the statistics
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        parser.train()(F.interpolate(batch, size=512, mode="bilinear"))
        weight = parser.conv_out.conv_out.weight
        signs = torch.ones(weight.shape[1])
        signs[torch.randperm(weight.shape[1])[: weight.shape[1] // 2]] = -1
        weight.zero_()
        weight[1, :, 0, 0], weight[0, :, 0, 0] = signs, -signs
    return parser.eval()


def test_preprocess_writes_parsing_masks(tmp_path, raw_dir, dlib_detector):
    from hififace.priors.parsing import FACE_CLASSES

    astronaut = data.astronaut()
    crop, _ = align_face(astronaut, dlib_detector.detect(astronaut)[0].landmarks, SIZE)
    parser = _calibrated_parser([crop, crop[:, ::-1].copy()])
    parser.save_pretrained(tmp_path / "parser")
    raw = tmp_path / "raw"
    (raw / "astronaut").mkdir(parents=True)
    shutil.copy(raw_dir / "astronaut" / "a.jpg", raw / "astronaut" / "a.jpg")
    summary = preprocess(
        raw,
        tmp_path / "out",
        parser=tmp_path / "parser",
        min_face_size=MIN_FACE,
        detector=dlib_detector,
        progress=False,
    )
    assert summary.kept == 1
    (record,) = _records(tmp_path / "out").values()
    assert record["mask"] == "masks/astronaut/a.png"
    with PILImage.open(tmp_path / "out" / record["mask"]) as pil:
        assert pil.mode == "L" and pil.size == (SIZE, SIZE)
        mask = np.asarray(pil)
    assert set(np.unique(mask)) == {0, 255}
    # The same mask, computed here with torch's resizing: BiSeNet at 512, labels back by nearest.
    crop = (
        torch.from_numpy(load_image(tmp_path / "out" / record["file"]).copy()).permute(2, 0, 1)[None].float()
        / 255
    )
    with torch.no_grad():
        labels = parser(F.interpolate(crop, size=512, mode="bilinear", align_corners=False)).argmax(1)
    labels = F.interpolate(labels[None].float(), size=SIZE, mode="nearest")[0, 0]
    expected = np.isin(labels.numpy(), FACE_CLASSES)
    assert 0.15 < expected.mean() < 0.85  # a mask with structure, so that the comparison means something
    np.testing.assert_array_equal(mask > 0, expected)
    assert ((mask > 0) == expected[:, ::-1]).mean() < 0.9  # a flipped mask would be caught

    # The dataset reads it, flipped together with the target.
    dataset = FacePairDataset(tmp_path / "out", same_identity_ratio=1.0, flip=False)
    item = dataset[0]
    assert bool(item["has_mask"]) and torch.equal(item["mask"][0] > 0.5, torch.from_numpy(mask > 0))


def test_cli_preprocess_with_worker_processes(prepared, raw_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["preprocess", str(raw_dir), str(out), "--workers", "2", "--detector", "dlib", "--no-progress"]
    assert cli.main([*argv, "--min-face-size", str(MIN_FACE)]) == 0
    printed = capsys.readouterr().out
    assert "kept       8" in printed and "errors     1" in printed
    # Worker processes find exactly what the in-process run found.
    ours, theirs = _records(out), _records(prepared[0])
    assert ours.keys() == theirs.keys()
    for source, record in ours.items():
        assert record == theirs[source]
    # Other settings on the same folder: one clear line, exit status 1.
    assert cli.main([*argv, "--size", "512"]) == 1
    assert "was preprocessed with size=256" in capsys.readouterr().err


# --- the pair dataset ----------------------------------------------------------------------------


def test_dataset_same_identity_ratio_and_flags(prepared):
    out, *_ = prepared
    for ratio in (0.5, 0.25):
        dataset = FacePairDataset(out, same_identity_ratio=ratio)
        assert len(dataset) == 8 and dataset.identities == ["astronaut", "person_a", "person_b", "person_c"]
        same = []
        for epoch in range(100):
            dataset.set_epoch(epoch)
            for i in range(len(dataset)):
                j, flag = dataset.pair(i)
                people = dataset.records[i]["identity"], dataset.records[j]["identity"]
                assert flag == (people[0] == people[1])
                if flag:  # everyone has two photos: the source is always the other one
                    assert j != i
                same.append(flag)
        # 800 draws: the standard error of the fraction is 0.018 at 0.5
        assert abs(np.mean(same) - ratio) < 0.06
    item = FacePairDataset(out)[3]
    assert set(item) == {
        "source",
        "target",
        "mask",
        "has_mask",
        "same_identity",
        "source_index",
        "target_index",
    }
    assert item["source"].shape == item["target"].shape == (3, SIZE, SIZE)
    assert item["mask"].shape == (1, SIZE, SIZE) and torch.all(item["mask"] == 1) and not item["has_mask"]
    assert item["source"].dtype == torch.float32 and 0 <= item["target"].min() and item["target"].max() <= 1
    assert item["same_identity"].dtype == torch.bool


def _subset(out: Path, root: Path, sources: list[str], mask: str | None = None) -> Path:
    """A dataset folder holding some of `out`'s crops, optionally each with a half-white mask."""
    root.mkdir()
    records = []
    for source in sources:
        record = _records(out)[source]
        (root / record["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / record["file"], root / record["file"])
        if mask:
            record = {**record, "mask": record["file"].replace("images/", "masks/")}
            half = np.zeros((SIZE, SIZE), np.uint8)
            half[:, : SIZE // 3] = 255  # asymmetric, so that a flip shows
            (root / record["mask"]).parent.mkdir(parents=True, exist_ok=True)
            PILImage.fromarray(half).save(root / record["mask"])
        records.append(record)
    (root / INDEX_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_dataset_single_photo_identity_and_errors(prepared, tmp_path):
    out, *_ = prepared
    root = _subset(out, tmp_path / "one", ["astronaut/a.jpg", "person_b/01.jpg", "person_b/02.png"])
    dataset = FacePairDataset(root, same_identity_ratio=1.0)
    assert dataset.pair(0) == (0, True)  # the astronaut has one photo: the same one, still the same person
    assert {dataset.pair(1)[0], dataset.pair(2)[0]} == {2, 1}

    with pytest.raises(FileNotFoundError, match="hififace preprocess"):
        FacePairDataset(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / INDEX_NAME).write_text(
        json.dumps({"source": "a/b.jpg", "identity": "a", "status": "no_face"}) + "\n"
    )
    with pytest.raises(ValueError, match="lists no face crops"):
        FacePairDataset(tmp_path / "empty")
    alone = _subset(out, tmp_path / "alone", ["person_b/01.jpg", "person_b/02.png"])
    with pytest.raises(ValueError, match="one identity only"):
        FacePairDataset(alone)
    assert len(FacePairDataset(alone, same_identity_ratio=1.0)) == 2
    with pytest.raises(ValueError, match="unknown colour jitter"):
        FacePairDataset(root, color_jitter={"gamma": 0.1})


def test_dataset_flip_keeps_target_and_mask_together(prepared, tmp_path):
    out, *_ = prepared
    root = _subset(out, tmp_path / "masked", sorted(KEPT), mask="half")
    plain = FacePairDataset(root, flip=False)
    dataset = FacePairDataset(root, flip=True)
    seen = set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        plain.set_epoch(epoch)
        for i in range(len(dataset)):
            item, reference = dataset[i], plain[i]
            assert item["source_index"] == reference["source_index"]  # flips do not change the pairs
            flipped = torch.equal(item["target"], reference["target"].flip(-1))
            assert flipped or torch.equal(item["target"], reference["target"])
            assert torch.equal(item["mask"], reference["mask"].flip(-1) if flipped else reference["mask"])
            assert bool(item["has_mask"])
            source_flipped = torch.equal(item["source"], reference["source"].flip(-1))
            seen.add((flipped, source_flipped))
    assert seen == {(False, False), (False, True), (True, False), (True, True)}  # independent coins
    crop = load_image(root / plain.records[0]["file"])
    np.testing.assert_array_equal(plain[0]["target"].permute(1, 2, 0).mul(255).round().byte().numpy(), crop)


def test_dataset_is_deterministic_and_jitters_consistently(prepared):
    out, *_ = prepared
    options = {
        "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
        "seed": 7,
    }
    a, b = FacePairDataset(out, **options), FacePairDataset(out, **options)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in (5, 0, 5):  # order does not matter
        x, y = a[i], b[i]
        for key in x:
            assert torch.equal(torch.as_tensor(x[key]), torch.as_tensor(y[key])), key
    b.set_epoch(4)
    assert any(a.pair(i) != b.pair(i) for i in range(len(a)))
    assert any(FacePairDataset(out, seed=8).pair(i) != a.pair(i) for i in range(len(a)))

    # Jitter changes the colours, not the mask, and differs between source and target.
    plain = FacePairDataset(out, seed=7, flip=False)
    jittered = FacePairDataset(out, seed=7, flip=False, color_jitter=0.4)
    for i in range(len(plain)):
        p, j = plain[i], jittered[i]
        assert p["source_index"] == j["source_index"]
        assert torch.equal(p["mask"], j["mask"])
        assert (p["target"] - j["target"]).abs().mean() > 1e-3
        assert 0 <= j["target"].min() and j["target"].max() <= 1
    small = FacePairDataset(out, image_size=128)[0]
    assert small["target"].shape == (3, 128, 128) and small["mask"].shape == (1, 128, 128)


def test_dataset_in_a_dataloader_with_workers(prepared):
    out, *_ = prepared
    dataset = FacePairDataset(out, color_jitter=0.2, seed=3)
    dataset.set_epoch(2)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [b["target"].shape for b in batches] == [(4, 3, SIZE, SIZE)] * 2
    assert batches[0]["same_identity"].dtype == torch.bool and batches[0]["mask"].shape == (4, 1, SIZE, SIZE)
    # The workers make the same pairs, flips and jitters as this process (up to float rounding:
    # DataLoader workers run torch on one thread, which sums the contrast jitter's mean differently).
    for k in range(len(dataset)):
        batch, row = batches[k // 4], k % 4
        item = dataset[k]
        assert int(batch["source_index"][row]) == item["source_index"]
        assert bool(batch["same_identity"][row]) == bool(item["same_identity"])
        for key in ("source", "target", "mask"):
            torch.testing.assert_close(batch[key][row], item[key], atol=1e-5, rtol=0)


def test_no_torch_in_preprocessing_workers_without_a_parser():
    # Workers import this module; torch costs seconds and memory per worker when it is not needed.
    code = "import sys, hififace.data.preprocessing; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
