"""Score a set of face swaps: per-pair metrics with a resumable cache, then set-level summaries.

    result = evaluate(pairs, "eval-out", model="models/hififace-256")     # swap with the model
    result = evaluate(pairs_with_swapped_files, "eval-out")               # score existing swaps
    result.summary["metrics"]["identity_cosine"]["mean"]

For every pair: read the source, target and swapped images; find the largest face of the source
and of the target, and in the swapped image the face at the target face's place (largest overlap
with its box); then, in batches, embed the faces with the recognizer, regress 3DMM coefficients
of the aligned crops (when a model provides F_3d), fit head poses to the 68 landmarks, and score
the pair (`hififace.evaluation.metrics`). A pair whose face cannot be found, or whose image cannot
be read, is recorded as a failure with its reason and left out of the means.

Every pair's record is cached as ``OUT/cache/<key>.json`` (plus ``<key>.fid.npy`` with its
Inception features when FID is on); the key hashes the pair's files (path, size, mtime) and
every setting that changes the scores, so a re-run reuses what was done and an interrupted run
continues (a pair cached without Inception features is scored again once FID is available).
Heavy models load only when some pair must be computed. Set-level metrics (ID retrieval, FID)
are computed from the cached records at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hififace import __version__
from hififace.evaluation import metrics as M
from hififace.evaluation.pairs import Pair, load_reference, reference_stamp
from hififace.evaluation.pose import face3d_head_pose, landmark_head_pose
from hififace.faces import Face, align_face, select_faces
from hififace.faces.types import Image
from hififace.imageio import ImageError, save_image

logger = logging.getLogger("hififace")

CACHE_VERSION = 1
TEMPLATE = "frontal"
THUMBNAIL = 128
MIN_OVERLAP = 0.3  # IoU with the target face below which a face of the swapped image is another face

# name -> (definition, which way is better, unit)
METRICS: dict[str, tuple[str, str, str]] = {
    "identity_cosine": (
        "cosine similarity of the recognizer's embeddings of the swapped face and the source face",
        "higher",
        "",
    ),
    "id_retrieval": (
        "top-1 accuracy: the source nearest to the swapped face (cosine, among all sources of the set) is its own",
        "higher",
        "fraction",
    ),
    "pose_error_landmarks": (
        "L2 of the (yaw, pitch, roll) difference between swapped and target faces; PnP fit of a generic "
        "3D face to dlib's 68 landmarks",
        "lower",
        "degrees",
    ),
    "pose_error_3dmm": (
        "L2 of the (yaw, pitch, roll) difference between swapped and target faces; Deep3DFaceRecon angles",
        "lower",
        "degrees",
    ),
    "expression_error_3dmm": (
        "L2 distance of the 64 3DMM expression coefficients of swapped and target faces",
        "lower",
        "",
    ),
    "expression_error_landmarks": (
        "RMS distance of the 51 inner landmarks of swapped and target faces after normalising position "
        "and size and a similarity alignment, in units of the face's RMS radius",
        "lower",
        "",
    ),
    "shape_error_3dmm": (
        "L2 distance of the 80 3DMM identity (shape) coefficients of swapped and source faces",
        "lower",
        "",
    ),
    "fid": (
        "Frechet Inception distance between the aligned swapped faces and the aligned real target faces",
        "lower",
        "",
    ),
}
FACE3D_METRICS = ("pose_error_3dmm", "expression_error_3dmm", "shape_error_3dmm")

# failure kind -> what it means
FAILURES = {
    "unreadable_source": "the source image cannot be read",
    "unreadable_target": "the target image cannot be read",
    "unreadable_swapped": "the swapped image is missing or cannot be read",
    "no_face_source": "no face found in the source image",
    "no_face_target": "no face found in the target image",
    "no_face_swapped": "no face found in the swapped image at the target face's place",
    "swap_failed": "the model could not swap the pair",
}


@dataclass
class EvaluationResult:
    """What `evaluate` returns.

    Attributes:
        summary (dict): the JSON summary (settings, counts, failures, every metric's statistics).
        records (list of dict): one record per pair, in order (scores, poses, failure).
        computed (int): pairs computed in this run.
        reused (int): pairs read from the cache.
    """

    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    reused: int = 0


class _Resources:
    """The detector, model, recognizer and FID network, each built on first use."""

    def __init__(self, model, detector, recognizer, insightface_pack, device, fid):
        self._model_ref = model
        self._detector_name = detector
        self._recognizer_name = recognizer
        self._pack = insightface_pack
        self.device = device
        self.fid_on = fid

    @cached_property
    def detector(self):
        from hififace.faces import load_detector

        return load_detector(self._detector_name)

    @cached_property
    def pipeline(self):
        if self._model_ref is None:
            return None
        from hififace.pipeline import HifiFacePipeline

        return HifiFacePipeline.from_pretrained(self._model_ref, detector=self.detector).to(self.device)

    @property
    def model(self):
        return None if self.pipeline is None else self.pipeline.model

    @cached_property
    def recognizer(self):
        from hififace.evaluation.recognizers import load_recognizer

        return load_recognizer(self._recognizer_name, model=self.model, insightface_pack=self._pack)

    @cached_property
    def fid(self):
        from hififace.evaluation.fid import FIDFeatures

        return FIDFeatures.load(self.device) if self.fid_on else None


def evaluate(
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    recognizer: str = "dlib",
    detector: str = "dlib",
    device: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    sample_grid: int = 16,
    fid: bool = True,
    insightface_pack: str = "buffalo_l",
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Score face swaps and write the JSON summary, per-pair CSV and HTML report into `out_dir`.

    Args:
        pairs (sequence of Pair): what to score. Pairs without `swapped` are swapped with `model`.
        out_dir (path): output folder: ``metrics.json``, ``pairs.csv``, ``report.html``,
            ``grid/`` (thumbnails of the sampled pairs) and ``cache/``.
        model (path or Hub repo, optional): a HifiFace folder/repository. It swaps the pairs that
            have no swapped image, and its priors give the 3DMM metrics (skipped without it) and
            the "arcface" recognizer.
        recognizer (str, default "dlib"): "dlib", "arcface" or "insightface" (`load_recognizer`).
        detector (str, default "dlib"): face detector; "dlib" gives the 68 landmarks directly,
            "insightface" faces get them from dlib's predictor.
        device (str, optional): torch device; default cuda when available, else cpu.
        batch_size (int, default 8): pairs whose faces go through the networks together.
        limit (int, optional): score only the first `limit` pairs.
        sample_grid (int, default 16): pairs (evenly spread over the set) shown in the report's grid.
        fid (bool, default True): compute FID when pytorch-fid and its weights are available.
        insightface_pack (str, default "buffalo_l"): the pack of the "insightface" recognizer.
        progress (bool, default True): show a tqdm progress bar.
        extra (dict, optional): more settings to record in the summary (e.g. the command's inputs).
    """
    from tqdm import tqdm

    from hififace.evaluation.fid import fid_unavailable_reason
    from hififace.evaluation.report import write_outputs

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if recognizer == "arcface" and model is None:
        raise ValueError("--recognizer arcface uses the model's own ArcFace: pass --model")
    pairs = list(pairs)[:limit] if limit is not None else list(pairs)
    if not pairs:
        raise ValueError("no pairs to evaluate")
    if len({p.name for p in pairs}) != len(pairs):
        raise ValueError("pair names must be unique")
    missing_model = [p.name for p in pairs if p.swapped is None]
    if missing_model and model is None:
        raise ValueError(
            f"{len(missing_model)} pairs have no swapped image (e.g. {missing_model[0]}): pass --model to "
            "swap them, or --swapped DIR with the swapped images"
        )
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"

    out = Path(out_dir)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    (out / "grid").mkdir(exist_ok=True)
    fid_reason = fid_unavailable_reason() if fid else "FID skipped: switched off (--no-fid)"
    settings = {
        "version": CACHE_VERSION,
        "recognizer": recognizer if recognizer != "insightface" else f"insightface:{insightface_pack}",
        "detector": detector,
        "model": _model_stamp(model),
        "template": TEMPLATE,
    }
    resources = _Resources(model, detector, recognizer, insightface_pack, device, fid_reason is None)
    sampled = set(np.unique(np.linspace(0, len(pairs) - 1, min(sample_grid, len(pairs))).round().astype(int)))
    sampled = sampled if sample_grid > 0 else set()

    records: list[dict[str, Any] | None] = [None] * len(pairs)
    keys = [_pair_key(settings, p) for p in pairs]
    todo = []
    for i, key in enumerate(keys):
        record = _read_cache(out, key, need_grid=i in sampled, need_fid=fid_reason is None)
        if record is None:
            todo.append(i)
        else:
            records[i] = record
    reused = len(pairs) - len(todo)

    if todo:  # build the models now, so that a missing one fails before any work
        _ = resources.pipeline, resources.recognizer, resources.fid
    bar = tqdm(total=len(pairs), initial=reused, desc="evaluate", unit="pair", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            scored = _score_batch(
                resources,
                [pairs[i] for i in chunk],
                out,
                [keys[i] for i in chunk],
                [i in sampled for i in chunk],
            )
            for i, record in zip(chunk, scored, strict=True):
                records[i] = record
            bar.update(len(chunk))
    finally:
        bar.close()

    done = [r for r in records if r is not None]
    summary = summarize_records(done, out, settings, fid_reason, model is not None)
    summary["settings"].update(
        {
            "model": None if model is None else os.fspath(model),
            "recognizer": recognizer,
            "detector": detector,
            "device": device,
            "batch_size": batch_size,
            "hififace": __version__,
            **(extra or {}),
        }
    )
    summary["cache"] = {"reused": reused, "computed": len(todo)}
    write_outputs(out, summary, done)
    return EvaluationResult(summary=summary, records=done, computed=len(todo), reused=reused)


# ---------------------------------------------------------------------- one batch of pairs


@dataclass
class _Work:
    """What one pair needs between reading its images and scoring them."""

    pair: Pair
    key: str
    sampled: bool
    started: float
    failure: tuple[str, str] | None = None  # (kind, message)
    images: dict[str, Image] = field(default_factory=dict)  # source / target / swapped
    faces: dict[str, Face] = field(default_factory=dict)
    crops: dict[str, Image] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # mask / mask_low from the model

    def fail(self, kind: str, message: str) -> None:
        if self.failure is None:
            self.failure = (kind, message)


def _score_batch(
    res: _Resources, pairs: Sequence[Pair], out: Path, keys: Sequence[str], sampled: Sequence[bool]
) -> list[dict[str, Any]]:
    works = [_prepare(res, p, k, s) for p, k, s in zip(pairs, keys, sampled, strict=True)]
    ok = [w for w in works if w.failure is None]
    with_source = [w for w in works if "source" in w.faces]

    # Recognizer: every source face found (the retrieval gallery) and every swapped face.
    faces = [(w.images["source"], w.faces["source"]) for w in with_source]
    faces += [(w.images["swapped"], w.faces["swapped"]) for w in ok]
    embeddings = res.recognizer.embed(faces) if faces else np.zeros((0, 0))
    source_emb = {id(w): embeddings[i] for i, w in enumerate(with_source)}
    swapped_emb = {id(w): embeddings[len(with_source) + i] for i, w in enumerate(ok)}

    coeffs = {}
    if ok and res.model is not None:
        coeffs = _face3d(res, ok)
    fid_features = {}
    if ok and res.fid is not None:
        feats = res.fid([w.crops["target"] for w in ok] + [w.crops["swapped"] for w in ok])
        fid_features = {id(w): np.stack([feats[i], feats[len(ok) + i]]) for i, w in enumerate(ok)}

    records = []
    for w in works:
        record = _record(w, source_emb.get(id(w)), swapped_emb.get(id(w)), coeffs.get(id(w)))
        if w.sampled:
            record["grid"] = _write_thumbnails(out, w)
        if id(w) in fid_features:
            np.save(out / "cache" / f"{w.key}.fid.npy", fid_features[id(w)].astype(np.float32))
        _write_json(out / "cache" / f"{w.key}.json", record)
        records.append(record)
    return records


def _prepare(res: _Resources, pair: Pair, key: str, sampled: bool) -> _Work:
    """Read the images, find the faces, swap when the model must, align the crops."""
    w = _Work(pair=pair, key=key, sampled=sampled, started=time.perf_counter())
    for role in ("source", "target"):
        try:
            w.images[role] = load_reference(getattr(pair, role))
        except ImageError as e:
            w.fail(f"unreadable_{role}", str(e))
            continue
        faces = _detect(res, w.images[role])
        if not faces:
            w.fail(f"no_face_{role}", f"no face found in the {role} image {getattr(pair, role)}")
            continue
        w.faces[role] = select_faces(faces, "largest")[0]
    if w.failure is None:
        _swapped_image(res, w)
    if w.failure is None:
        face = _face_at(_detect(res, w.images["swapped"]), w.faces["target"])
        if face is None:
            w.fail(
                "no_face_swapped",
                f"no face found in the swapped image at the target face's place ({pair.name})",
            )
        else:
            w.faces["swapped"] = face
    size = res.model.image_size if res.model is not None else 256
    for role, face in w.faces.items():
        w.crops[role], w.matrices[role] = align_face(w.images[role], face.landmarks, size, TEMPLATE)
    return w


def _swapped_image(res: _Resources, w: _Work) -> None:
    if w.pair.swapped is not None:
        try:
            w.images["swapped"] = load_reference(w.pair.swapped)
        except ImageError as e:
            w.fail("unreadable_swapped", str(e))
        return
    from hififace.pipeline import SwapError

    try:
        result = res.pipeline.swap(w.images["source"], w.images["target"], face="largest")
    except SwapError as e:
        w.fail("swap_failed", f"{w.pair.name}: {e}")
        return
    w.images["swapped"] = np.asarray(result.image)
    if result.faces:
        w.masks = {"mask": result.faces[0].mask, "mask_low": result.faces[0].mask_low}


def _detect(res: _Resources, image: Image) -> list[Face]:
    return res.detector.detect(image)


def _face_at(faces: Sequence[Face], target: Face) -> Face | None:
    """The face with the largest box overlap (IoU at least MIN_OVERLAP) with the target face."""
    best, best_iou = None, MIN_OVERLAP
    for face in faces:
        iou = _iou(face.box, target.box)
        if iou >= best_iou:
            best, best_iou = face, iou
    return best


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _face3d(res: _Resources, works: Sequence[_Work]) -> dict[int, dict[str, np.ndarray]]:
    """Deep3DFaceRecon coefficients (257,) of the source, target and swapped crops of each pair."""
    import torch

    roles = ("source", "target", "swapped")
    crops = np.stack([w.crops[r] for w in works for r in roles])
    batch = torch.from_numpy(crops).to(res.device).permute(0, 3, 1, 2).float().div_(255.0)
    with torch.inference_mode():
        out = res.model.identity.face3d(batch).float().cpu().numpy()
    return {id(w): {r: out[3 * i + j] for j, r in enumerate(roles)} for i, w in enumerate(works)}


def _record(
    w: _Work,
    source_embedding: np.ndarray | None,
    swapped_embedding: np.ndarray | None,
    coeffs: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """The pair's cache record: scores, poses, embeddings (for retrieval) or the failure."""
    from hififace.priors.face3d import COEFF_LAYOUT

    p = w.pair
    record: dict[str, Any] = {
        "name": p.name,
        "key": w.key,
        "source": p.source,
        "target": p.target,
        "swapped": p.swapped,
        "identity": p.identity_label,
        "status": "failed" if w.failure else "ok",
        "failure": None if w.failure is None else {"kind": w.failure[0], "message": w.failure[1]},
        "scores": {},
        "poses": {},
        "notes": {},
        "source_embedding": None if source_embedding is None else [float(v) for v in source_embedding],
        "swapped_embedding": None if swapped_embedding is None else [float(v) for v in swapped_embedding],
    }
    if w.failure is None:
        scores, poses, notes = record["scores"], record["poses"], record["notes"]
        scores["identity_cosine"] = M.cosine_similarity(swapped_embedding, source_embedding)
        try:
            poses["target_landmarks"] = landmark_head_pose(
                _landmarks68(w, "target"), w.images["target"].shape[:2]
            )
            poses["swapped_landmarks"] = landmark_head_pose(
                _landmarks68(w, "swapped"), w.images["swapped"].shape[:2]
            )
            scores["pose_error_landmarks"] = M.pose_error(
                poses["swapped_landmarks"], poses["target_landmarks"]
            )
        except ValueError as e:
            notes["pose_error_landmarks"] = str(e)
        scores["expression_error_landmarks"] = M.landmark_expression_error(
            _landmarks68(w, "swapped"), _landmarks68(w, "target")
        )
        if coeffs is not None:
            angle = slice(*COEFF_LAYOUT["angle"])
            exp, shape = slice(*COEFF_LAYOUT["exp"]), slice(*COEFF_LAYOUT["id"])
            poses["target_3dmm"] = face3d_head_pose(coeffs["target"][angle], w.matrices["target"])
            poses["swapped_3dmm"] = face3d_head_pose(coeffs["swapped"][angle], w.matrices["swapped"])
            scores["pose_error_3dmm"] = M.pose_error(poses["swapped_3dmm"], poses["target_3dmm"])
            scores["expression_error_3dmm"] = M.coefficient_distance(
                coeffs["swapped"][exp], coeffs["target"][exp]
            )
            scores["shape_error_3dmm"] = M.coefficient_distance(
                coeffs["swapped"][shape], coeffs["source"][shape]
            )
        record["poses"] = {k: [float(v) for v in pose] for k, pose in poses.items()}
    record["seconds"] = round(time.perf_counter() - w.started, 3)
    return record


def _landmarks68(w: _Work, role: str) -> np.ndarray:
    face = w.faces[role]
    if face.landmarks68 is not None:
        return face.landmarks68
    # insightface detections have five points; dlib's predictor adds the 68 on the same box.
    import dlib
    import face_recognition_models

    global _PREDICTOR
    if _PREDICTOR is None:
        _PREDICTOR = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    x1, y1, x2, y2 = (int(round(v)) for v in face.box)
    shape = _PREDICTOR(np.ascontiguousarray(w.images[role]), dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


_PREDICTOR = None


def _write_thumbnails(out: Path, w: _Work) -> dict[str, str]:
    """128-px JPEGs of the pair for the report's grid: aligned faces (or the whole image) and masks."""
    from hififace.pipeline import AI_METADATA

    written = {}
    for role in ("source", "target", "swapped", "mask", "mask_low"):
        if role in w.crops:
            picture = w.crops[role]
        elif role in w.images:
            picture = w.images[role]  # no face: show what the detector was given
        elif role in w.masks:
            picture = np.repeat(
                (np.clip(w.masks[role], 0, 1) * 255).round().astype(np.uint8)[..., None], 3, -1
            )
        else:
            continue
        path = out / "grid" / f"{w.key}_{role}.jpg"
        meta = AI_METADATA if role == "swapped" else None
        save_image(path, _thumbnail(picture), meta, quality=90)
        written[role] = f"grid/{path.name}"
    return written


def _thumbnail(image: np.ndarray) -> Image:
    import cv2

    h, w = image.shape[:2]
    scale = THUMBNAIL / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))


# ---------------------------------------------------------------------- the whole set


def summarize_records(
    records: Sequence[dict[str, Any]],
    out: Path,
    settings: dict[str, Any],
    fid_reason: str | None,
    has_model: bool,
) -> dict[str, Any]:
    """Set-level summary: counts, failures, ID retrieval, FID and every metric's statistics."""
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] != "ok"]
    gallery = _add_retrieval(records)

    metric_stats: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, (definition, better, unit) in METRICS.items():
        if name == "fid":
            continue
        values = [r["scores"].get(name) for r in ok]
        stats = M.summarize([v for v in values if v is not None])
        metric_stats[name] = {**stats, "definition": definition, "better": better, "unit": unit}
        if name == "id_retrieval":
            # chance level is about 1 / gallery: a small set makes retrieval easy
            metric_stats[name]["gallery"] = gallery
        if name in FACE3D_METRICS and not has_model:
            skipped[name] = (
                f"{name} skipped: the 3DMM metrics use the Deep3DFaceRecon regressor F_3d of a HifiFace "
                "model; pass --model"
            )

    definition, better, unit = METRICS["fid"]
    fid_entry: dict[str, Any] = {"definition": definition, "better": better, "unit": unit, "value": None}
    if fid_reason is not None:
        skipped["fid"] = fid_reason
    else:
        fid_entry.update(_fid(ok, out, skipped))
    metric_stats["fid"] = fid_entry

    reasons = Counter(r["failure"]["kind"] for r in failed)
    return {
        "pairs": len(records),
        "scored": len(ok),
        "failures": {
            "count": len(failed),
            "by_kind": {k: {"count": n, "meaning": FAILURES.get(k, k)} for k, n in reasons.most_common()},
            "pairs": [{"name": r["name"], **r["failure"]} for r in failed],
        },
        "metrics": metric_stats,
        "skipped": skipped,
        "settings": {"cache_key": settings},
    }


def _add_retrieval(records: Sequence[dict[str, Any]]) -> int:
    """Put ID retrieval hits (0/1) into each scored record; returns the gallery's size.

    The gallery is every distinct source image of the set whose face was found, labelled with
    its pair's identity (the source image itself unless the pairs name identities).
    """
    gallery: dict[str, tuple[str, list[float]]] = {}
    for r in records:
        if r.get("source_embedding") is not None:
            gallery.setdefault(r["source"], (r["identity"], r["source_embedding"]))
    queries = [r for r in records if r["status"] == "ok" and r.get("swapped_embedding") is not None]
    if queries and gallery:
        hits = M.retrieval_hits(
            np.array([r["swapped_embedding"] for r in queries]),
            np.array([e for _, e in gallery.values()]),
            [r["identity"] for r in queries],
            [label for label, _ in gallery.values()],
        )
        for r, hit in zip(queries, hits, strict=True):
            r["scores"]["id_retrieval"] = float(hit)
    return len(gallery)


def _fid(ok: Sequence[dict[str, Any]], out: Path, skipped: dict[str, str]) -> dict[str, Any]:
    from hififace.evaluation.fid import RECOMMENDED_IMAGES, fid_from_features

    feats = []
    for r in ok:
        path = out / "cache" / f"{r['key']}.fid.npy"
        if path.is_file():
            feats.append(np.load(path))
    if len(feats) < 2:
        skipped["fid"] = f"FID skipped: it needs at least 2 scored pairs, got {len(feats)}"
        return {}
    stacked = np.stack(feats)
    entry: dict[str, Any] = {
        "value": fid_from_features(stacked[:, 0], stacked[:, 1]),
        "n": len(feats),
    }
    if len(feats) < RECOMMENDED_IMAGES:
        entry["warning"] = (
            f"computed on {len(feats)} pairs; below {RECOMMENDED_IMAGES} images FID is biased high and "
            "not comparable with published numbers (FF++ protocol: 10,000)"
        )
    return entry


# ---------------------------------------------------------------------- cache


def _pair_key(settings: dict[str, Any], pair: Pair) -> str:
    stamp = {
        "settings": settings,
        "name": pair.name,
        "identity": pair.identity_label,
        "source": reference_stamp(pair.source),
        "target": reference_stamp(pair.target),
        "swapped": None if pair.swapped is None else reference_stamp(pair.swapped),
    }
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:24]


def _model_stamp(model: str | os.PathLike | None) -> Any:
    """What identifies the model's weights: a folder's files (size, mtime), or a Hub repo id."""
    if model is None:
        return None
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"repo": os.fspath(model)}
    files = {}
    for file in sorted(path.iterdir()):
        if file.is_file() and file.suffix in (".json", ".safetensors", ".bin"):
            stat = file.stat()
            files[file.name] = [stat.st_size, stat.st_mtime_ns]
    return {"path": str(path.resolve()), "files": files}


def _read_cache(out: Path, key: str, need_grid: bool, need_fid: bool) -> dict[str, Any] | None:
    path = out / "cache" / f"{key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    grid = record.get("grid") or {}
    if need_grid and (not grid or not all((out / p).is_file() for p in grid.values())):
        return None  # sampled for the report now: its thumbnails are made again
    if need_fid and record["status"] == "ok" and not (out / "cache" / f"{key}.fid.npy").is_file():
        return None
    return record


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
