"""What the evaluation measures: the metric table, one pair's scores, and the set's summary.

`score_pair` turns what was measured on one pair's faces (embeddings, 68 landmarks, 3DMM
coefficients) into its scores and head poses; `summarize_records` turns the pairs' records into
the set-level summary: counts, failures by kind, ID retrieval (which needs every source of the
set), FID (from the pairs' Inception features) and every metric's statistics. Nothing here reads
images or runs a network (`hififace.evaluation.runner` does); the formulas are in
`hififace.evaluation.metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hififace.evaluation import metrics as M
from hififace.evaluation.pose import face3d_head_pose, landmark_head_pose
from hififace.faces import Face, cosine_similarity
from hififace.faces.types import Embedding, Landmarks68, Matrix

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
class FaceMeasures:
    """What was measured on one face of a pair.

    Attributes:
        image_size (tuple of 2 ints): (height, width) of the image the face is in.
        landmarks68 (float32 (68, 2)): dlib's 68 landmarks in that image.
        matrix (float64 (2, 3)): image-to-crop transform of the aligned crop.
        embedding (array, optional): the recognizer's unit embedding (source and swapped faces).
        coeffs (float (257,), optional): Deep3DFaceRecon coefficients of the aligned crop (with a model).
    """

    image_size: tuple[int, int]
    landmarks68: Landmarks68 | None
    matrix: Matrix
    embedding: Embedding | None = None
    coeffs: np.ndarray | None = None


def face_at(faces: Sequence[Face], target: Face) -> Face | None:
    """The face with the largest box overlap (IoU at least MIN_OVERLAP) with the target face."""
    best, best_iou = None, MIN_OVERLAP
    for face in faces:
        iou = box_iou(face.box, target.box)
        if iou >= best_iou:
            best, best_iou = face, iou
    return best


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score_pair(
    source: FaceMeasures, target: FaceMeasures, swapped: FaceMeasures
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, str]]:
    """One pair's scores (by metric name), head poses ((yaw, pitch, roll) by name) and notes.

    The 3DMM scores and poses are there when every face has `coeffs`; a landmark pose that cannot
    be fitted leaves a note instead of ``pose_error_landmarks``.
    """
    from hififace.priors.face3d import COEFF_LAYOUT

    scores: dict[str, float] = {}
    poses: dict[str, Sequence[float]] = {}
    notes: dict[str, str] = {}
    scores["identity_cosine"] = cosine_similarity(swapped.embedding, source.embedding)
    try:
        poses["target_landmarks"] = landmark_head_pose(target.landmarks68, target.image_size)
        poses["swapped_landmarks"] = landmark_head_pose(swapped.landmarks68, swapped.image_size)
        scores["pose_error_landmarks"] = M.pose_error(poses["swapped_landmarks"], poses["target_landmarks"])
    except ValueError as e:
        notes["pose_error_landmarks"] = str(e)
    scores["expression_error_landmarks"] = M.landmark_expression_error(
        swapped.landmarks68, target.landmarks68
    )
    if all(f.coeffs is not None for f in (source, target, swapped)):
        angle = slice(*COEFF_LAYOUT["angle"])
        exp, shape = slice(*COEFF_LAYOUT["exp"]), slice(*COEFF_LAYOUT["id"])
        poses["target_3dmm"] = face3d_head_pose(target.coeffs[angle], target.matrix)
        poses["swapped_3dmm"] = face3d_head_pose(swapped.coeffs[angle], swapped.matrix)
        scores["pose_error_3dmm"] = M.pose_error(poses["swapped_3dmm"], poses["target_3dmm"])
        scores["expression_error_3dmm"] = M.coefficient_distance(swapped.coeffs[exp], target.coeffs[exp])
        scores["shape_error_3dmm"] = M.coefficient_distance(swapped.coeffs[shape], source.coeffs[shape])
    return scores, {k: [float(v) for v in pose] for k, pose in poses.items()}, notes


def summarize_records(
    records: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    fid_reason: str | None,
    fid_features: Sequence[np.ndarray],
    has_model: bool,
) -> dict[str, Any]:
    """Set-level summary: counts, failures, ID retrieval, FID and every metric's statistics.

    Args:
        records (sequence of dict): every pair's record; ID retrieval hits are added to the scored ones.
        settings (dict): the scoring settings (recorded as ``settings.cache_key``).
        fid_reason (str or None): why FID is skipped, or None when it is on.
        fid_features (sequence of (2, D) arrays): target and swapped Inception features of the
            scored pairs that have them (used when FID is on).
        has_model (bool): whether a model gave the 3DMM metrics.
    """
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] != "ok"]
    gallery = add_retrieval(records)

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
    elif len(fid_features) < 2:
        skipped["fid"] = f"FID skipped: it needs at least 2 scored pairs, got {len(fid_features)}"
    else:
        fid_entry.update(fid_summary(fid_features))
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


def add_retrieval(records: Sequence[dict[str, Any]]) -> int:
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


def fid_summary(fid_features: Sequence[np.ndarray]) -> dict[str, Any]:
    """FID of the swapped against the target faces from per-pair (2, D) features (at least 2 pairs)."""
    from hififace.evaluation.fid import RECOMMENDED_IMAGES, fid_from_features

    stacked = np.stack(fid_features)
    entry: dict[str, Any] = {"value": fid_from_features(stacked[:, 0], stacked[:, 1]), "n": len(stacked)}
    if len(stacked) < RECOMMENDED_IMAGES:
        entry["warning"] = (
            f"computed on {len(stacked)} pairs; below {RECOMMENDED_IMAGES} images FID is biased high and "
            "not comparable with published numbers (FF++ protocol: 10,000)"
        )
    return entry
