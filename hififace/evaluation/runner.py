"""Score a set of face swaps: the loop over the pairs, in batches, resumable.

    result = evaluate(pairs, "eval-out", model="models/hififace-256")     # swap with the model
    result = evaluate(pairs_with_swapped_files, "eval-out")               # score existing swaps
    result.summary["metrics"]["identity_cosine"]["mean"]

For every pair: read the source, target and swapped images; find the largest face of the source
and of the target, and in the swapped image the face at the target face's place (largest overlap
with its box). Each image is searched for faces once: when the model swaps the pair, the faces
just found go straight into the pipeline's public steps (`encode_source(image, face=...)`,
`swap_faces`, `composite`). Then, in batches, the recognizer embeds the faces, the model's priors
regress 3DMM coefficients of the aligned crops (`HifiFacePipeline.encode_crops`, with a model),
dlib's 68 landmarks give head poses, and `hififace.evaluation.scoring` scores the pair. A pair whose
face cannot be found, or whose image cannot be read, is recorded as a failure with its reason and
left out of the means.

Every pair's record goes to the cache (`hififace.evaluation.cache`) as soon as it is scored, so a
re-run reuses what was done and an interrupted run continues. Heavy models load only when some
pair must be computed. Set-level metrics (ID retrieval, FID) are computed from the cached records
at the end (`hififace.evaluation.scoring.summarize_records`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hififace import __version__
from hififace.evaluation.cache import CACHE_VERSION, PairCache, model_stamp, pair_key
from hififace.evaluation.pairs import Pair, load_reference
from hififace.evaluation.report import write_outputs, write_thumbnails
from hififace.evaluation.scoring import (
    FAILURES,
    METRICS,
    FaceMeasures,
    face_at,
    score_pair,
    summarize_records,
)
from hififace.faces import Face, FaceDetector, align_face, select_faces
from hififace.faces.detection import predict_landmarks68
from hififace.faces.types import Image
from hififace.imageio import ImageError
from hififace.sharding import share

__all__ = ["FAILURES", "METRICS", "TEMPLATE", "EvaluationResult", "evaluate"]

TEMPLATE = "frontal"


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


# Over 80 lines only by its signature and documented arguments (every option of the public call);
# the body is under 55 lines, and the work lives in the functions it calls.
def evaluate(
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    recognizer: str = "dlib",
    detector: str | FaceDetector = "dlib",
    device: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    sample_grid: int = 16,
    fid: bool = True,
    insightface_pack: str = "buffalo_l",
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    processes: Any | None = None,
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
        detector (str or FaceDetector, default "dlib"): face detector by name (`load_detector`) or
            an instance; "dlib" gives the 68 landmarks directly, other detectors' faces get them
            from dlib's predictor. An instance enters the cache key by its ``repr``.
        device (str, optional): torch device; default cuda when available, else cpu.
        batch_size (int, default 8): pairs whose faces go through the networks together.
        limit (int, optional): score only the first `limit` pairs.
        sample_grid (int, default 16): pairs (evenly spread over the set) shown in the report's grid.
        fid (bool, default True): compute FID when pytorch-fid and its weights are available.
        insightface_pack (str, default "buffalo_l"): the pack of the "insightface" recognizer.
        progress (bool, default True): show a tqdm progress bar.
        extra (dict, optional): more settings to record in the summary (e.g. the command's inputs).
        processes (accelerate PartialState, optional): processes launched together
            (`hififace.sharding.launched_state()`): each scores its share of the pairs on its own
            device into the shared cache, then the main process writes the outputs of the whole set
            (the others return an empty result).
    """
    from hififace.evaluation.fid import fid_unavailable_reason

    pairs = _checked_pairs(pairs, model, recognizer, batch_size, limit)
    device = device or (str(processes.device) if processes is not None else _default_device())
    detector_name = detector if isinstance(detector, str) else repr(detector)
    cache = PairCache(out_dir)
    fid_reason = fid_unavailable_reason() if fid else "FID skipped: switched off (--no-fid)"
    settings = {
        "version": CACHE_VERSION,
        "recognizer": recognizer if recognizer != "insightface" else f"insightface:{insightface_pack}",
        "detector": detector_name,
        "model": model_stamp(model),
        "template": TEMPLATE,
    }
    resources = _Resources(model, detector, recognizer, insightface_pack, device, fid_reason is None)
    sampled = _sampled(len(pairs), sample_grid)
    keys = [pair_key(settings, p) for p in pairs]
    records = [cache.read(k, need_grid=i in sampled, need_fid=fid_reason is None) for i, k in enumerate(keys)]
    todo = [i for i, r in enumerate(records) if r is None]
    reused = len(pairs) - len(todo)

    mine = share(todo, processes)  # every pair is computed by exactly one process
    if mine:  # build the models now, so that a missing one fails before any work
        _ = resources.pipeline, resources.recognizer, resources.fid
    _run(resources, cache, pairs, keys, sampled, mine, records, batch_size, progress)
    if processes is not None:  # the main process collects the others' records from the cache
        processes.wait_for_everyone()
        if not processes.is_main_process:
            return EvaluationResult(summary={}, records=[], computed=len(mine), reused=reused)
        need_fid = fid_reason is None
        records = [
            r or cache.read(k, i in sampled, need_fid)
            for i, (r, k) in enumerate(zip(records, keys, strict=True))
        ]

    done = [r for r in records if r is not None]
    summary = _summary(cache, done, settings, fid_reason, model is not None)
    summary["settings"].update(
        {
            "model": None if model is None else os.fspath(model),
            "recognizer": recognizer,
            "detector": detector_name,
            "device": device,
            "batch_size": batch_size,
            "hififace": __version__,
            **(extra or {}),
        }
    )
    summary["cache"] = {"reused": reused, "computed": len(todo)}
    write_outputs(cache.out, summary, done)
    return EvaluationResult(summary=summary, records=done, computed=len(todo), reused=reused)


def _checked_pairs(
    pairs: Sequence[Pair], model: Any, recognizer: str, batch_size: int, limit: int | None
) -> list[Pair]:
    """The pairs to score (the first `limit`), after refusing settings that cannot work."""
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
    return pairs


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _summary(
    cache: PairCache,
    records: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    fid_reason: str | None,
    has_model: bool,
) -> dict[str, Any]:
    """The set's summary from the pairs' records and, when FID is on, their cached Inception features."""
    fid_features = []
    if fid_reason is None:
        ok = [r for r in records if r["status"] == "ok"]
        fid_features = [f for f in (cache.fid_features(r["key"]) for r in ok) if f is not None]
    return summarize_records(records, settings, fid_reason, fid_features, has_model)


def _sampled(count: int, sample_grid: int) -> set[int]:
    """Indices of the pairs shown in the report's grid, evenly spread over the set."""
    if sample_grid <= 0:
        return set()
    return {int(i) for i in np.unique(np.linspace(0, count - 1, min(sample_grid, count)).round().astype(int))}


def _run(
    res: _Resources,
    cache: PairCache,
    pairs: Sequence[Pair],
    keys: Sequence[str],
    sampled: set[int],
    todo: Sequence[int],
    records: list[dict[str, Any] | None],
    batch_size: int,
    progress: bool,
) -> None:
    """Score the `todo` pairs batch by batch into `records` (each cached as soon as it is scored)."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(pairs), initial=len(pairs) - len(todo), desc="evaluate", unit="pair", disable=not progress
    )
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            scored = _score_batch(
                res, [pairs[i] for i in chunk], cache, [keys[i] for i in chunk], [i in sampled for i in chunk]
            )
            for i, record in zip(chunk, scored, strict=True):
                records[i] = record
            bar.update(len(chunk))
    finally:
        bar.close()


class _Resources:
    """The detector, pipeline, recognizer and FID network, each built on first use."""

    def __init__(self, model, detector, recognizer, insightface_pack, device, fid):
        self._model_ref = model
        self._detector = detector
        self._recognizer_name = recognizer
        self._pack = insightface_pack
        self.device = device
        self.fid_on = fid

    @cached_property
    def detector(self) -> FaceDetector:
        if not isinstance(self._detector, str):
            return self._detector
        from hififace.faces import load_detector

        return load_detector(self._detector)

    @cached_property
    def pipeline(self):
        if self._model_ref is None:
            return None
        from hififace.pipeline import HifiFacePipeline

        return HifiFacePipeline.from_pretrained(self._model_ref, detector=self.detector).to(self.device)

    @cached_property
    def recognizer(self):
        from hififace.evaluation.recognizers import load_recognizer

        return load_recognizer(self._recognizer_name, pipeline=self.pipeline, insightface_pack=self._pack)

    @cached_property
    def fid(self):
        from hififace.evaluation.fid import FIDFeatures

        return FIDFeatures.load(self.device) if self.fid_on else None

    @property
    def image_size(self) -> int:
        """Side of the aligned crops: the model's, or 256 without a model."""
        return 256 if self.pipeline is None else self.pipeline.image_size


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
    res: _Resources, pairs: Sequence[Pair], cache: PairCache, keys: Sequence[str], sampled: Sequence[bool]
) -> list[dict[str, Any]]:
    """Prepare, measure and score a batch of pairs; each record is cached as it is made."""
    works = [_prepare(res, p, k, s) for p, k, s in zip(pairs, keys, sampled, strict=True)]
    ok = [w for w in works if w.failure is None]
    with_source = [w for w in works if "source" in w.faces]

    # Recognizer: every source face found (the retrieval gallery) and every swapped face.
    faces = [(w.images["source"], w.faces["source"]) for w in with_source]
    faces += [(w.images["swapped"], w.faces["swapped"]) for w in ok]
    embeddings = res.recognizer.embed(faces) if faces else np.zeros((0, 0))
    source_emb = {id(w): embeddings[i] for i, w in enumerate(with_source)}
    swapped_emb = {id(w): embeddings[len(with_source) + i] for i, w in enumerate(ok)}

    coeffs = _face3d(res, ok) if ok and res.pipeline is not None else {}
    fid_features = {}
    if ok and res.fid is not None:
        feats = res.fid([w.crops["target"] for w in ok] + [w.crops["swapped"] for w in ok])
        fid_features = {id(w): np.stack([feats[i], feats[len(ok) + i]]) for i, w in enumerate(ok)}

    records = []
    for w in works:
        record = _record(w, source_emb.get(id(w)), swapped_emb.get(id(w)), coeffs.get(id(w)))
        if w.sampled:
            record["grid"] = write_thumbnails(cache.out, w.key, _pictures(w))
        cache.write(record, fid_features.get(id(w)))
        records.append(record)
    return records


def _prepare(res: _Resources, pair: Pair, key: str, sampled: bool) -> _Work:
    """Read the images, find the faces (once per image), swap when the model must, align the crops."""
    w = _Work(pair=pair, key=key, sampled=sampled, started=time.perf_counter())
    for role in ("source", "target"):
        try:
            w.images[role] = load_reference(getattr(pair, role))
        except ImageError as e:
            w.fail(f"unreadable_{role}", str(e))
            continue
        faces = res.detector.detect(w.images[role])
        if not faces:
            w.fail(f"no_face_{role}", f"no face found in the {role} image {getattr(pair, role)}")
            continue
        w.faces[role] = select_faces(faces, "largest")[0]
    if w.failure is None:
        _swapped_image(res, w)
    if w.failure is None:
        face = face_at(res.detector.detect(w.images["swapped"]), w.faces["target"])
        if face is None:
            w.fail(
                "no_face_swapped",
                f"no face found in the swapped image at the target face's place ({pair.name})",
            )
        else:
            w.faces["swapped"] = face
    for role, face in w.faces.items():
        w.crops[role], w.matrices[role] = align_face(w.images[role], face.landmarks, res.image_size, TEMPLATE)
    return w


def _swapped_image(res: _Resources, w: _Work) -> None:
    """Read the pair's swapped image, or make it with the model's steps on the faces already found."""
    if w.pair.swapped is not None:
        try:
            w.images["swapped"] = load_reference(w.pair.swapped)
        except ImageError as e:
            w.fail("unreadable_swapped", str(e))
        return
    from hififace.errors import SwapError

    pipeline, target = res.pipeline, w.images["target"]
    try:
        source = pipeline.encode_source(w.images["source"], face=w.faces["source"])
        swaps = pipeline.swap_faces(source, [(target, w.faces["target"])], 1.0, 1.0)
        w.images["swapped"] = pipeline.composite(target, swaps)
    except SwapError as e:
        w.fail("swap_failed", f"{w.pair.name}: {e}")
        return
    w.masks = {"mask": swaps[0].mask, "mask_low": swaps[0].mask_low}


def _face3d(res: _Resources, works: Sequence[_Work]) -> dict[int, dict[str, np.ndarray]]:
    """Deep3DFaceRecon coefficients (257,) of the source, target and swapped crops of each pair."""
    roles = ("source", "target", "swapped")
    code = res.pipeline.encode_crops([w.crops[r] for w in works for r in roles])
    out = code.coeffs.float().cpu().numpy()
    return {id(w): {r: out[3 * i + j] for j, r in enumerate(roles)} for i, w in enumerate(works)}


def _record(
    w: _Work,
    source_embedding: np.ndarray | None,
    swapped_embedding: np.ndarray | None,
    coeffs: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """The pair's cache record: scores, poses, embeddings (for retrieval) or the failure."""
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
        embeddings = {"source": source_embedding, "swapped": swapped_embedding}
        measures = {
            role: FaceMeasures(
                image_size=w.images[role].shape[:2],
                landmarks68=_landmarks68(w, role) if role != "source" else None,
                matrix=w.matrices[role],
                embedding=embeddings.get(role),
                coeffs=None if coeffs is None else coeffs[role],
            )
            for role in ("source", "target", "swapped")
        }
        record["scores"], record["poses"], record["notes"] = score_pair(**measures)
    record["seconds"] = round(time.perf_counter() - w.started, 3)
    return record


def _landmarks68(w: _Work, role: str) -> np.ndarray:
    face = w.faces[role]
    if face.landmarks68 is not None:
        return face.landmarks68
    # insightface detections have five points; dlib's predictor adds the 68 on the same box.
    return predict_landmarks68(w.images[role], face.box)


def _pictures(w: _Work) -> dict[str, np.ndarray]:
    """The report grid's pictures: aligned faces (or, without a face, the whole image) and masks."""
    pictures: dict[str, np.ndarray] = {**w.masks}
    for role in ("source", "target", "swapped"):
        if role in w.crops:
            pictures[role] = w.crops[role]
        elif role in w.images:
            pictures[role] = w.images[role]  # no face: show what the detector was given
    return pictures
