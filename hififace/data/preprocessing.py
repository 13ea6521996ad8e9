"""Preprocessing: photos in identity folders → aligned face crops, parsing masks and one index.

    RAW/<identity>/<name>.jpg   →   OUT/images/<identity>/<name>.png   aligned crop, size x size
                                    OUT/masks/<identity>/<name>.png    face-parsing mask (with a parser)
                                    OUT/index.jsonl                    one record per source image
                                    OUT/preprocess_config.json         the settings, checked on resume
                                    OUT/preprocess_summary.json        what the last run found

For each image: detect faces, keep the largest, align it with a similarity transform of its five
landmarks onto the template (DESIGN §4), then drop it when

- it is too small: the square of the original image that the crop covers (``face_size``) is under
  ``min_face_size`` pixels (default: the crop size, so no crop is an upsampled face), or
- it is blurry: the variance of the Laplacian over the crop's inner face (the box of the template's
  five points grown by a quarter each side, so a blurred background does not count) is under
  ``blur_threshold``.

With a BiSeNet parser folder, each kept crop is parsed at 512 x 512 (the size the parser was
trained at) and the mask of the face classes (`hififace.priors.parsing.FACE_CLASSES`) is saved as
an 8-bit PNG (0 or 255), undilated; dilation is a training option.

The run is resumable: images already in the index are skipped, the index is appended one line per
image and made consistent again when a run starts (`hififace.data.index.rebuild_index`). Nothing
under RAW is ever written; OUT may not lie inside RAW. Unreadable images are logged, counted and
retried by the next run.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hififace.atomic import atomic_write
from hififace.data.index import INDEX_NAME, IndexWriter, Record, rebuild_index
from hififace.faces import (
    FaceDetector,
    InsightFaceDetector,
    align_face,
    load_detector,
    select_faces,
    template_points,
)
from hififace.faces.types import Image
from hififace.formats import IMAGE_SUFFIXES
from hififace.imageio import load_image, save_image
from hififace.sharding import gather_lists, share

logger = logging.getLogger("hififace")

CONFIG_NAME = "preprocess_config.json"
SUMMARY_NAME = "preprocess_summary.json"
PARSER_SIZE = 512
# Variance of the Laplacian on the inner face of a 256 crop: 24-79 on the sharp faces of
# skimage's astronaut and insightface's t1.jpg (upsampled about 1.7x), about 3 after a Gaussian
# blur of sigma 3 px. A low bar: it drops clearly blurred faces only.
DEFAULT_BLUR_THRESHOLD = 10.0


@dataclass(frozen=True)
class PreprocessSettings:
    """What every worker needs; picklable, sent once to each worker process."""

    size: int = 256
    template: str = "frontal"
    min_face_size: float = 256
    blur_threshold: float = DEFAULT_BLUR_THRESHOLD
    detector: str = "auto"
    parser: str | None = None
    threads: int | None = None  # torch/OpenCV threads per process; None leaves the defaults


@dataclass
class PreprocessSummary:
    """What a preprocessing run found.

    The first five counts cover every image of the index after the run (earlier runs included);
    `errors` are this run's unreadable images (they are retried next time).

    Args:
        kept (int): aligned crops written.
        no_face (int): images where no face was detected.
        too_small (int): faces whose crop would be upsampled past `min_face_size`.
        blurry (int): faces under the blur threshold.
        errors (int): unreadable or corrupt images, or other per-image failures.
        processed (int): images looked at by this run.
        skipped (int): images already in the index, not redone.
        elapsed_s (float): wall time of the run.
        blur_quantiles (dict): 5th, 50th and 95th percentile of the blur score of the faces that
            reached the blur test; a guide for choosing `blur_threshold`.
    """

    kept: int = 0
    no_face: int = 0
    too_small: int = 0
    blurry: int = 0
    errors: int = 0
    processed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    blur_quantiles: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rate = self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"{self.processed} images in {self.elapsed_s:.1f} s ({rate:.1f}/s), {self.skipped} already done",
            f"  kept       {self.kept}",
            f"  no face    {self.no_face}",
            f"  too small  {self.too_small}",
            f"  blurry     {self.blurry}",
            f"  errors     {self.errors}",
        ]
        if self.blur_quantiles:
            q = self.blur_quantiles
            lines.append(
                f"  blur score of detected faces: 5% {q['p5']:.1f}, median {q['p50']:.1f}, 95% {q['p95']:.1f}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Task:
    source: str  # relative to RAW, "/"-separated
    identity: str
    path: str  # absolute path of the source image
    file: str  # crop, relative to OUT
    mask: str | None  # mask, relative to OUT


# --- measurements ------------------------------------------------------------------------------


def face_size(matrix: np.ndarray, size: int) -> float:
    """Side, in original pixels, of the square that an aligned `size` crop covers (size / scale)."""
    scale = math.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2])))
    return size / scale


def blur_score(crop: Image, template: str = "frontal") -> float:
    """Variance of the Laplacian of an aligned crop's grayscale inner face; lower is blurrier.

    The inner face is the box of the template's five points grown by a quarter of its width and
    height on each side: eyes, nose and mouth, not the background, which is often out of focus
    in portraits.
    """
    size = crop.shape[0]
    points = template_points(template, size)
    low, high = points.min(axis=0), points.max(axis=0)
    margin = (high - low) / 4
    x0, y0 = np.floor(low - margin).astype(int).clip(0, size)
    x1, y1 = np.ceil(high + margin).astype(int).clip(0, size)
    gray = cv2.cvtColor(np.ascontiguousarray(crop[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


# --- the public entry point ----------------------------------------------------------------------


def preprocess(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    size: int = 256,
    template: str = "frontal",
    parser: str | os.PathLike | None = None,
    min_face_size: float | None = None,
    blur_threshold: float = DEFAULT_BLUR_THRESHOLD,
    workers: int = 0,
    detector: str | FaceDetector = "auto",
    progress: bool = True,
    processes: Any | None = None,
) -> PreprocessSummary:
    """Align the largest face of every image under ``raw_dir/<identity>/`` into ``out_dir``.

    Args:
        raw_dir (path): one folder per identity (VGGFace2 layout); sub-folders are searched too.
            Only read, never written.
        out_dir (path): where crops, masks and the index go; created if missing; not inside raw_dir.
        size (int, default 256): side of the aligned crops.
        template (str, default "frontal"): alignment template (`hififace.faces.TEMPLATES`).
        parser (path, optional): a `FaceParser` folder (`hififace convert bisenet`); masks are
            written only when it is given.
        min_face_size (float, optional): drop faces whose crop covers fewer original pixels than
            this (see `face_size`); default `size`, i.e. no face is upsampled.
        blur_threshold (float, default 10): drop faces whose `blur_score` is lower; 0 keeps all.
        workers (int, default 0): worker processes, each with its own detector (and parser); 0
            works in this process.
        detector (str or FaceDetector, default "auto"): "auto", "insightface" or "dlib"; a detector
            object is accepted with workers=0 only.
        progress (bool, default True): show a tqdm progress bar.
        processes (accelerate PartialState, optional): processes launched together
            (`hififace.sharding.launched_state()`): the identity folders are shared out, each
            process appends to the one index, and the main process writes the summary of the whole
            run (the others return the counts of their share).

    Returns:
        The `PreprocessSummary`, also saved as ``out_dir/preprocess_summary.json``.

    Raises:
        ValueError: bad settings, out_dir inside raw_dir, no images, or out_dir made with other settings.
    """
    start = time.perf_counter()
    raw, out = _check_folders(raw_dir, out_dir)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if not isinstance(detector, str) and workers > 0:
        raise ValueError("a detector object can only be used with workers=0; pass its name instead")
    settings = _settings(size, template, parser, min_face_size, blur_threshold, detector)
    parser_dir = None if settings.parser is None else Path(settings.parser)
    sources = list(_scan(raw))
    if not sources:
        raise ValueError(f"{raw}: no images found; expected {raw}/<identity>/<image>.jpg")
    (out / "images").mkdir(parents=True, exist_ok=True)
    if parser_dir is not None:
        (out / "masks").mkdir(parents=True, exist_ok=True)
    main = processes is None or processes.is_main_process
    lock = ".preprocess.lock" if main else f".preprocess.{processes.process_index}.lock"
    with _exclusive(out, lock):
        if main:  # one process makes the index consistent before any process reads or appends
            _check_config(out, settings, detector)
            rebuild_index(out)
        if processes is not None:
            processes.wait_for_everyone()
        done = {r["source"]: r for r in rebuild_index(out)}  # consistent now: only read
        if processes is not None:
            processes.wait_for_everyone()  # everyone has read it before anyone appends
        tasks = _plan(sources, raw, done, with_masks=parser_dir is not None)
        identities = set(share(sorted({Path(s).relative_to(raw).parts[0] for s in sources}), processes))
        tasks = [t for t in tasks if t.identity in identities]  # whole identity folders per process
        records = _run(
            tasks,
            out,
            settings,
            workers,
            None if isinstance(detector, str) else detector,
            progress,
            len(done),
        )
        if processes is not None:  # the whole run's records, on every process
            records = gather_lists(records, processes)
        summary = _summary(list(done.values()), records, time.perf_counter() - start)
        if main:
            _write_json_atomic(out / SUMMARY_NAME, summary.to_dict())
    return summary


def _settings(
    size: int,
    template: str,
    parser: str | os.PathLike | None,
    min_face_size: float | None,
    blur_threshold: float,
    detector: str | FaceDetector,
) -> PreprocessSettings:
    """The run's settings, checked (template, sizes, parser folder) before any image is read."""
    template_points(template, size)  # validates both
    min_face_size = float(size if min_face_size is None else min_face_size)
    if min_face_size < 0 or blur_threshold < 0:
        raise ValueError("min_face_size and blur_threshold must be >= 0")
    parser_dir = None
    if parser is not None:
        parser_dir = Path(parser).expanduser().resolve()
        if not (parser_dir / "config.json").is_file():
            raise ValueError(
                f"{parser}: not a FaceParser folder (no config.json); see `hififace convert bisenet`"
            )
    return PreprocessSettings(
        size=size,
        template=template,
        min_face_size=min_face_size,
        blur_threshold=float(blur_threshold),
        detector=detector if isinstance(detector, str) else "custom",
        parser=None if parser_dir is None else str(parser_dir),
    )


def _summary(done: list[dict], records: list[dict], elapsed_s: float) -> PreprocessSummary:
    """Counts of a run: the records kept from earlier runs (`done`) and those made now."""
    statuses = Counter(r["status"] for r in [*done, *records])
    blur = [r["blur"] for r in [*done, *records] if r["status"] in ("kept", "blurry")]
    return PreprocessSummary(
        kept=statuses["kept"],
        no_face=statuses["no_face"],
        too_small=statuses["too_small"],
        blurry=statuses["blurry"],
        errors=statuses["error"],
        processed=len(records),
        skipped=len(done),
        elapsed_s=round(elapsed_s, 3),
        blur_quantiles=_quantiles(blur),
    )


def _run(
    tasks: list[_Task],
    out: Path,
    settings: PreprocessSettings,
    workers: int,
    detector: FaceDetector | None,
    progress: bool,
    done: int,
) -> list[Record]:
    """Process `tasks`, appending each record to the index as it comes; returns the records."""
    records: list[Record] = []
    kept = 0
    with (
        IndexWriter(out / INDEX_NAME) as index,
        logging_redirect_tqdm(),
        tqdm(
            total=len(tasks) + done,
            initial=done,
            disable=not progress,
            unit="img",
            desc="preprocess",
            dynamic_ncols=True,
        ) as bar,
    ):

        def finish(record: Record) -> None:
            nonlocal kept
            index.append(record)
            records.append(record)
            kept += record["status"] == "kept"
            if record["status"] == "error":
                logger.warning("skipped %s: %s", record["source"], record["error"])
            bar.update(1)
            bar.set_postfix(kept=kept, dropped=len(records) - kept, refresh=False)

        if tasks and workers == 0:
            worker = _Worker(settings, detector=detector)
            for task in tasks:
                finish(worker.process(task, out))
        elif tasks:
            _run_pool(tasks, out, _resolve(settings), workers, finish)
    return records


@contextmanager
def _exclusive(out: Path, name: str = ".preprocess.lock") -> Iterator[None]:
    """Refuse a second run on the same folder at the same time: both would do the same work (the
    processes of one `accelerate launch` hold one lock each; the main one holds the usual one)."""
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl; running one job per folder is then up to the user
        yield
        return
    with open(out / name, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another `hififace preprocess` is writing {out}; wait for it to finish"
            ) from None
        yield


# --- planning --------------------------------------------------------------------------------------


def _check_folders(raw_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    raw = Path(raw_dir).expanduser().resolve()
    out = Path(out_dir).expanduser().resolve()
    if not raw.is_dir():
        raise ValueError(f"{raw_dir}: not a folder")
    if out == raw or raw in out.parents:
        raise ValueError(
            f"the output folder {out_dir} is inside the raw folder {raw_dir}; choose one outside it"
        )
    for sub in ("images", "masks"):
        if raw == out / sub or (out / sub) in raw.parents:
            raise ValueError(f"the raw folder {raw_dir} is inside {out / sub}, which preprocessing writes")
    return raw, out


def _scan(raw: Path) -> Iterator[Path]:
    """Image files under raw/<identity>/, sorted, hidden names skipped."""
    loose = 0
    for entry in sorted(raw.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose += entry.suffix.lower() in IMAGE_SUFFIXES
            continue
        for folder, subfolders, files in os.walk(entry):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                    yield Path(folder) / name
    if loose:
        logger.warning(
            "%s: %d images directly in the raw folder are ignored (not in an identity folder)", raw, loose
        )


def _plan(sources: Iterable[Path], raw: Path, done: dict[str, Record], with_masks: bool) -> list[_Task]:
    """Tasks for the sources not in the index, each with an output name no other image uses."""
    taken = {r["file"] for r in done.values() if r.get("file")}
    tasks = []
    for path in sources:
        rel = path.relative_to(raw)
        source = rel.as_posix()
        if source in done:
            continue
        file = f"images/{rel.with_suffix('.png').as_posix()}"
        if file in taken:  # "a.jpg" and "a.png" side by side
            file = f"images/{rel.with_name(f'{rel.stem}_{rel.suffix[1:]}.png').as_posix()}"
        count = 1
        base = file
        while file in taken:
            file = f"{base[: -len('.png')]}_{count}.png"
            count += 1
        taken.add(file)
        mask = "masks/" + file.removeprefix("images/") if with_masks else None
        tasks.append(_Task(source=source, identity=rel.parts[0], path=str(path), file=file, mask=mask))
    return tasks


def _check_config(out: Path, settings: PreprocessSettings, detector: str | FaceDetector) -> None:
    """Write the settings on the first run; on later runs, refuse settings that change the crops."""
    checked = {
        "size": settings.size,
        "template": settings.template,
        "min_face_size": settings.min_face_size,
        "blur_threshold": settings.blur_threshold,
        "masks": settings.parser is not None,
    }
    path = out / CONFIG_NAME
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in checked if previous.get(k) != checked[k]]
        if changed:
            was = ", ".join(f"{k}={previous.get(k)!r}" for k in changed)
            now = ", ".join(f"{k}={checked[k]!r}" for k in changed)
            raise ValueError(
                f"{out} was preprocessed with {was}, not {now}; use the same settings to resume, or a new output folder"
            )
        return
    provenance = {
        "detector": detector if isinstance(detector, str) else type(detector).__name__,
        "parser": settings.parser,
    }
    _write_json_atomic(path, {**checked, **provenance})


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p5, p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [5, 50, 95])
    return {"p5": round(float(p5), 2), "p50": round(float(p50), 2), "p95": round(float(p95), 2)}


# --- the work on one image -----------------------------------------------------------------------


class _Worker:
    """Holds one process's detector and parser and turns a task into an index record."""

    def __init__(self, settings: PreprocessSettings, detector: FaceDetector | None = None):
        if settings.threads is not None:
            cv2.setNumThreads(settings.threads)
        self.settings = settings
        self.detector = detector if detector is not None else _build_detector(settings.detector)
        self.parser = None
        if settings.parser is not None:
            import torch

            from hififace.priors.parsing import FaceParser

            if settings.threads is not None:
                torch.set_num_threads(settings.threads)
            self.parser = FaceParser.from_pretrained(settings.parser).eval()

    def process(self, task: _Task, out: Path) -> Record:
        """Measure one image and, when it is kept, write its crop and mask.

        A failure to read or analyse the image gives an "error" record; a failure to write the
        outputs (disk full, permissions) raises, since every later image would fail the same way.
        """
        try:
            record, crop = self._measure(task)
        except Exception as error:  # one bad image must not stop a run over millions
            return {
                "source": task.source,
                "identity": task.identity,
                "status": "error",
                "error": f"{type(error).__name__}: {error}",
            }
        if record["status"] == "kept":
            (out / task.file).parent.mkdir(parents=True, exist_ok=True)
            save_image(out / task.file, crop)
            if self.parser is not None and task.mask is not None:
                (out / task.mask).parent.mkdir(parents=True, exist_ok=True)
                _save_mask(out / task.mask, parse_face_mask(self.parser, crop))
            record.update(file=task.file, mask=task.mask if self.parser is not None else None)
        return record

    def _measure(self, task: _Task) -> tuple[Record, Image | None]:
        s = self.settings
        record: Record = {"source": task.source, "identity": task.identity, "status": "no_face"}
        image = load_image(task.path)
        faces = self.detector.detect(image)
        if not faces:
            return record, None
        (face,) = select_faces(faces, "largest")
        crop, matrix = align_face(image, face.landmarks, size=s.size, template=s.template)
        record.update(
            box=[round(v, 2) for v in face.box],
            landmarks=np.round(face.landmarks.astype(np.float64), 3).tolist(),
            score=round(face.score, 4),
            faces=len(faces),
            face_size=round(face_size(matrix, s.size), 2),
            blur=round(blur_score(crop, s.template), 3),
            size=s.size,
            matrix=matrix.tolist(),
        )
        if record["face_size"] < s.min_face_size:
            record["status"] = "too_small"
        elif record["blur"] < s.blur_threshold:
            record["status"] = "blurry"
        else:
            record["status"] = "kept"
        return record, crop


def parse_face_mask(parser, crop: Image) -> np.ndarray:
    """The face-class mask of an aligned crop as uint8 (H, W), 0 or 255.

    The crop is resized (bilinear, in floating point) to 512, the size BiSeNet was trained at,
    parsed, and the labels are brought back to the crop's size by nearest-neighbour sampling.
    """
    import torch
    import torch.nn.functional as F

    from hififace.priors.parsing import face_mask
    from hififace.tensors import images_to_tensor  # imports torch: only where a parser runs

    size = crop.shape[0]
    device = next(parser.parameters()).device
    image = images_to_tensor([crop], device)
    with torch.inference_mode():
        if size != PARSER_SIZE:
            image = F.interpolate(
                image, size=(PARSER_SIZE, PARSER_SIZE), mode="bilinear", align_corners=False
            )
        labels = parser.parse(image)
        if size != PARSER_SIZE:
            # labels are class indices: sampled, never blended
            labels = F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        mask = face_mask(labels)[0, 0]
    return (mask > 0.5).to(torch.uint8).mul(255).cpu().numpy()


def _build_detector(name: str) -> FaceDetector:
    return load_detector(name)


def _resolve(settings: PreprocessSettings) -> PreprocessSettings:
    """Build the detector (and parser) once here, so that a missing model fails with its own message
    rather than as a broken pool, and so that every worker uses the backend "auto" chose."""
    detector = _build_detector(settings.detector)
    backend = "insightface" if isinstance(detector, InsightFaceDetector) else "dlib"
    if settings.parser is not None:
        from hififace.priors.parsing import FaceParser

        FaceParser.from_pretrained(settings.parser)
    return replace(settings, detector=backend)


# --- worker processes ------------------------------------------------------------------------------

_PROCESS_WORKER: _Worker | None = None


def _init_worker(settings: PreprocessSettings, parent: int, use_pdeathsig: bool) -> None:
    exit_with_parent(parent, use_pdeathsig)  # first: a parent killed during the detector build counts too
    # A pool initialiser can only hand its result to later tasks through a module global.
    global _PROCESS_WORKER
    _PROCESS_WORKER = _Worker(settings)


def exit_with_parent(parent: int, use_pdeathsig: bool = True, poll: float = 0.5) -> None:
    """Make this (worker) process end when process `parent` dies, even by SIGKILL.

    A pool's workers otherwise outlive a killed parent forever, waiting on a queue nobody writes.
    Two guards: on Linux the kernel's parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGKILL)`),
    which works even while the worker is busy in C code; and everywhere a daemon thread that
    checks every `poll` seconds whether the parent is still this process's parent.

    Args:
        parent (int): the pid of the process that started this one.
        use_pdeathsig (bool, default True): also ask the kernel. Linux sends the signal when the
            *thread* that started the child ends, so only use it when that was the main thread.
        poll (float, default 0.5): seconds between checks of the watcher thread.
    """
    import signal
    import sys
    import threading

    if use_pdeathsig and sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the guard was in place
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)  # no clean-up to do: everything a worker writes is atomic

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _process_in_worker(task: _Task, out: str) -> Record:
    assert _PROCESS_WORKER is not None, "worker not initialised"
    return _PROCESS_WORKER.process(task, Path(out))


def _run_pool(
    tasks: list[_Task],
    out: Path,
    settings: PreprocessSettings,
    workers: int,
    finish: Callable[[Record], None],
) -> None:
    # "spawn": a forked child would inherit the parent's torch / OpenMP thread pools, which can hang.
    settings = replace(settings, threads=1)
    context = multiprocessing.get_context("spawn")
    pending: set[Future] = set()
    queue = iter(tasks)
    import threading

    # workers end when this process dies (SIGKILL included), rather than live on as orphans
    guard = (os.getpid(), threading.current_thread() is threading.main_thread())
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(settings, *guard)
    )
    try:
        while True:
            # a bounded window of submitted tasks: millions of futures at once would cost gigabytes
            for task in queue:
                pending.add(pool.submit(_process_in_worker, task, str(out)))
                if len(pending) >= 4 * workers:
                    break
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                finish(future.result())
    except BrokenProcessPool as error:
        raise RuntimeError(
            f"a preprocessing worker died ({error}); everything finished so far is in the index, "
            "run the same command again to resume"
        ) from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- files ---------------------------------------------------------------------------------------


def _save_mask(path: Path, mask: np.ndarray) -> None:
    """Write a uint8 (H, W) mask as an 8-bit grayscale PNG, atomically."""
    with atomic_write(path) as f:
        PILImage.fromarray(mask).save(f, format="PNG")


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
