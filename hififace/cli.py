"""The `hififace` command line.

    hififace convert {hififace-pytorch,maum-ai,arcface,deep3d,bfm,bisenet} SRC OUT_DIR [--push-to-hub REPO]
    hififace preprocess RAW OUT [--size 256] [--parser DIR] [--workers N] ...
    hififace swap --source FACE --target IMAGE|VIDEO|FOLDER --output PATH [--model DIR_OR_REPO] ...
    hififace evaluate (--pairs CSV | --sources DIR --targets DIR) [--model M] [--swapped DIR] --out DIR ...
    hififace export-onnx MODEL_DIR OUT.onnx [--opset 17] [--dynamic-batch] [--identity ID.onnx] [--check]
    hififace live --source FACE [--camera 0|CLIP.mp4] [--virtual-camera] [--output REC.mp4] [--model M]
    hififace space OUT [--model REPO[@REVISION]] [--hardware zero-a10g|t4-small|cpu-basic] [--push SPACE_ID]

Every failure ends with one clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

CONVERTERS = {
    "hififace-pytorch": "the public HiFiFace-pytorch generator_<iter>.pth (generator + ArcFace + 3DMM regressor)",
    "maum-ai": "maum-ai/hififace's Lightning hififace_opensouce_299999.ckpt (read safely; generator + priors)",
    "arcface": "an insightface arcface_torch backbone.pth (IResNet r50/r100)",
    "deep3d": "a Deep3DFaceRecon epoch_20.pth (the 3DMM regressor under 'net_recon')",
    "bfm": "Deep3DFaceRecon's BFM_model_front.mat (the 68-landmark part, for the shape loss)",
    "bisenet": "face-parsing.PyTorch's BiSeNet 79999_iter.pth (19-class face parser)",
}


def _convert(args: argparse.Namespace) -> None:
    from hififace import convert

    functions: dict[str, Callable] = {
        "hififace-pytorch": convert.convert_hififace_pytorch,
        "maum-ai": convert.convert_maum_ai,
        "arcface": convert.convert_arcface,
        "deep3d": convert.convert_deep3d,
        "bfm": convert.convert_bfm,
        "bisenet": convert.convert_bisenet,
    }
    options = {"push_to_hub": args.push_to_hub}
    if args.input_size is not None:
        if args.source != "deep3d":
            raise ValueError("--input-size applies to `convert deep3d` only")
        options["input_size"] = args.input_size
    functions[args.source](args.src, args.out_dir, **options)
    print(f"wrote {args.out_dir}")


def _preprocess(args: argparse.Namespace) -> None:
    from hififace.data import preprocess
    from hififace.sharding import launched_state

    state = launched_state()  # under `accelerate launch`: identity folders shared out, one index

    options = {"min_face_size": args.min_face_size, "blur_threshold": args.blur_threshold}
    summary = preprocess(
        args.raw,
        args.out,
        size=args.size,
        template=args.template,
        parser=args.parser,
        workers=args.workers,
        detector=args.detector,
        progress=not args.no_progress,
        processes=state,
        **{k: v for k, v in options.items() if v is not None},
    )
    if state is None or state.is_main_process:
        print(f"{args.raw} -> {args.out}: {summary}")


def _add_preprocess(commands: argparse._SubParsersAction) -> None:
    preprocess = commands.add_parser(
        "preprocess",
        help="align the faces of a folder of identities into a training set",
        description=(
            "Detect the largest face of every image under RAW/<identity>/, align it, drop small and "
            "blurry faces, and write OUT/images/<identity>/<name>.png, OUT/masks/... (with --parser) "
            "and OUT/index.jsonl. Resumable: run the same command again to continue. RAW is only read."
        ),
    )
    preprocess.add_argument("raw", help="folder with one sub-folder per identity (VGGFace2 layout)")
    preprocess.add_argument("out", help="output folder (not inside RAW)")
    preprocess.add_argument(
        "--size", type=int, default=256, choices=[256, 512], help="crop side (default 256)"
    )
    preprocess.add_argument("--template", default="frontal", help="alignment template (default frontal)")
    preprocess.add_argument(
        "--parser",
        metavar="DIR",
        help="FaceParser folder (`hififace convert bisenet`); masks are made only with it",
    )
    preprocess.add_argument(
        "--min-face-size",
        type=float,
        metavar="PX",
        help="drop faces whose crop covers fewer original pixels than this (default: the crop size, no upsampling)",
    )
    preprocess.add_argument(
        "--blur-threshold",
        type=float,
        metavar="VAR",
        help="drop faces whose variance of the Laplacian on the inner face is lower (default 10; 0 keeps all)",
    )
    preprocess.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="worker processes, each with its own detector; 0 works in this process (default: CPUs, at most 8)",
    )
    preprocess.add_argument(
        "--detector",
        default="auto",
        choices=["auto", "insightface", "dlib"],
        help="face detector (default auto)",
    )
    preprocess.add_argument("--no-progress", action="store_true", help="no progress bar")
    preprocess.set_defaults(func=_preprocess)


_WEIGHTS_HELP = (
    "convert the public release with `hififace convert hififace-pytorch generator_<iter>.pth "
    "models/hififace-256`, or train one"
)


def _swap_jobs(target: Path, output: Path) -> list[tuple[Path, Path]]:
    """(target file, output file) pairs for a target image, video or folder of them."""
    from hififace.formats import IMAGE_OUTPUT_SUFFIXES, IMAGE_SUFFIXES, VIDEO_OUTPUT_SUFFIXES, VIDEO_SUFFIXES

    def output_for(file: Path, folder: Path) -> Path:
        suffix = file.suffix.lower()
        keep = VIDEO_OUTPUT_SUFFIXES if suffix in VIDEO_SUFFIXES else IMAGE_OUTPUT_SUFFIXES
        return folder / (
            file.stem + (suffix if suffix in keep else ".mp4" if suffix in VIDEO_SUFFIXES else ".png")
        )

    if target.is_dir():
        if output.exists() and not output.is_dir():
            raise ValueError(f"--output {output} must be a folder when --target is a folder")
        files = sorted(
            f for f in target.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES
        )
        if not files:
            raise ValueError(f"{target}: no images or videos in this folder")
        jobs = [(f, output_for(f, output)) for f in files]
    elif target.is_file():
        is_video = target.suffix.lower() in VIDEO_SUFFIXES
        if output.is_dir():
            jobs = [(target, output_for(target, output))]
        elif is_video and output.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
            raise ValueError(f"--output {output}: a video is written as .mp4, .mov, .m4v or .mkv")
        elif not is_video and output.suffix.lower() not in IMAGE_OUTPUT_SUFFIXES:
            raise ValueError(f"--output {output}: an image is written as .png, .jpg or .webp")
        else:
            jobs = [(target, output)]
    else:
        raise ValueError(f"{target}: no such file or folder")
    for file, out in jobs:
        if out.resolve() == file.resolve():
            raise ValueError(f"--output would overwrite the target {file}")
    check_output_clashes(jobs)
    return jobs


def check_output_clashes(jobs: list[tuple[Path, Path]]) -> None:
    """Refuse, before any work, targets that would be written to the same output file.

    `a.png`, `a.bmp` and `a.tif` all become `a.png`; rather than keep only the last one, list every
    clash so the user can rename or move those targets.
    """
    by_output: dict[Path, list[Path]] = {}
    for file, out in jobs:
        by_output.setdefault(out.resolve(), []).append(file)
    clashes = [(out, files) for out, files in by_output.items() if len(files) > 1]
    if clashes:
        listed = "; ".join(f"{', '.join(f.name for f in files)} -> {out.name}" for out, files in clashes)
        raise ValueError(
            f"{sum(len(f) for _, f in clashes)} targets would overwrite each other's output ({listed}); "
            "rename them or swap them into different folders"
        )


def prepare_output_folders(jobs: list[tuple[Path, Path]]) -> None:
    """Create the folders the outputs go into and check they take files, before the model loads.

    Images and videos alike: a missing folder is made (as for a video before), one that cannot be
    made or written fails now with one line, not after the whole swap.
    """
    for folder in sorted({out.parent for _, out in jobs}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(f"cannot write into {folder}: a file of that name is in the way") from None
        except OSError as error:
            raise ValueError(f"cannot create the output folder {folder}: {error.strerror}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write into {folder}: permission denied")


def _checked_model(args: argparse.Namespace) -> str:
    """--model or $HIFIFACE_MODEL, checked with --face reference's --reference before any work (swap, live)."""
    model = args.model or os.environ.get("HIFIFACE_MODEL")
    if not model:
        raise ValueError(f"no model: pass --model DIR_OR_REPO or set HIFIFACE_MODEL; {_WEIGHTS_HELP}")
    if args.face == "reference" and not args.reference:
        raise ValueError("--face reference needs --reference IMAGE (a photo of the person to replace)")
    return model


def _swap(args: argparse.Namespace) -> None:
    from hififace.errors import SwapError
    from hififace.formats import is_video
    from hififace.sharding import gather_lists, launched_state, share

    _checked_model(args)  # no model, or --face reference without --reference: before any work
    _mapping_pairs(args)  # a bad --map fails before any work
    jobs = _swap_jobs(Path(args.target), Path(args.output))
    if args.save_intermediates and all(is_video(file) for file, _ in jobs):
        raise ValueError("--save-intermediates works on image targets only")
    folder = Path(args.target).is_dir()
    prepare_output_folders(jobs)  # before the model loads: a bad --output fails in a second
    # Under `accelerate launch`, each process swaps its share of the files on its own device.
    state = launched_state()
    all_jobs, jobs = len(jobs), share(jobs, state)
    failed = _swap_files(args, jobs, folder, state) if jobs else []
    if not folder:  # one target: the main process had it (its errors raise), nothing to gather
        return
    failed = gather_lists(failed, state)
    if failed and (state is None or state.is_main_process):
        raise SwapError(f"{len(failed)} of {all_jobs} targets failed (see above); the others were written")


def _detector_process(args: argparse.Namespace, jobs: list[tuple[Path, Path]], state):
    """The face detector in a child process, started before torch's import (a context manager), or
    a null context where it would not help.

    It is used for a fresh command with image targets only, in a single process. A process that
    has torch already (a test, a notebook) loads the detector as usual. Under `accelerate launch`,
    the other processes use the cores. A video detects frame by frame in this process's tracker
    loop. HIFIFACE_DETECTOR_PROCESS=0 turns it off.
    """
    from hififace.formats import is_video

    if (
        state is not None
        or "torch" in sys.modules
        or os.environ.get("HIFIFACE_DETECTOR_PROCESS", "1").strip() == "0"
        or any(is_video(file) for file, _ in jobs)
    ):
        return contextlib.nullcontext()
    from hififace.faces import DETECT_MAX_SIDE
    from hififace.faces.detector_process import DetectorProcess
    from hififace.settings import saved_settings

    saved = saved_settings(_checked_model(args), args.revision)  # what from_pretrained will apply
    # the photos the command reads first: sources, the reference, --map's pairs, the first target
    photos = [*(args.source or []), *([args.reference] if args.reference else [])]
    photos += [photo for pair in _mapping_pairs(args) for photo in pair]
    return DetectorProcess(
        args.detector or saved.get("detector") or "auto",
        prefetch=[*(p for p in photos if Path(p).is_file()), jobs[0][0]],
        max_pixels=args.max_pixels,
        max_side=saved.get("detect_max_side", DETECT_MAX_SIDE),
    )


def _swap_files(args: argparse.Namespace, jobs: list[tuple[Path, Path]], folder: bool, state) -> list[str]:
    """Swap `jobs` (target, output) with one pipeline; returns the targets that failed (folders only)."""
    with _detector_process(args, jobs, state) as detector:  # first: its child loads while torch imports
        return _swap_with(args, jobs, folder, state, detector)


def _swap_with(
    args: argparse.Namespace, jobs: list[tuple[Path, Path]], folder: bool, state, detector
) -> list[str]:
    """`_swap_files` with its detector process (None: the pipeline loads its own detector)."""
    import torch
    from tqdm import tqdm

    from hififace.formats import is_video
    from hififace.pipeline import HifiFacePipeline, SwapError

    model = _checked_model(args)
    if state is not None:
        device = args.device or str(state.device)
    else:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = HifiFacePipeline.from_pretrained(
        model,
        revision=args.revision,
        detector=args.detector if detector is None else detector,
        **({"dtype": args.dtype} if args.dtype else {}),
        batch_size=args.batch_size,
        max_pixels=args.max_pixels,
        masks=_mask_options(args),
        parser=args.parser,
        enhancer=args.enhancer,
        enhancer_blend=args.enhancer_blend,
    ).to(device)
    if detector is not None:
        detector.wait()  # an unavailable detector fails here, as it did inside from_pretrained
    logging.getLogger("hififace").info(
        f"hififace: {pipeline.precision} on {device} (--dtype {args.dtype}), detector {pipeline.detector!r}"
    )
    # sources, references and the face choice are encoded once for every target
    mapping = _mapping_pairs(args)
    face_map = pipeline.face_map(mapping) if mapping else None
    source = pipeline.encode_source(args.source) if face_map is None else None
    choice = pipeline.face_choice(args.face, args.reference)  # a reference photo embedded once
    options = {
        "face": choice,
        "identity_strength": args.identity_strength,
        "shape_strength": args.shape_strength,
        "mask_erode": args.mask_erode,
        "mask_blur": args.mask_blur,
        "mapping": face_map,
    }
    failed = []
    files = tqdm(jobs, desc="swap", unit="file", disable=len(jobs) == 1 or args.no_progress)
    for index, (file, out) in enumerate(files):
        if detector is not None and index + 1 < len(jobs):
            detector.prefetch([jobs[index + 1][0]])  # the child detects the next target during this swap
        try:
            if is_video(file):
                from hififace.video import swap_video  # an image-only command never imports it

                with tqdm(desc=file.name, unit="frame", leave=False, disable=args.no_progress) as bar:

                    def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
                        bar.total = total
                        bar.update(done - bar.n)

                    summary = swap_video(
                        pipeline, source, file, out, batch_size=args.batch_size, progress=progress, **options
                    )
                tqdm.write(
                    f"{file} -> {out}: {summary.frames} frames, {summary.swapped} swapped, "
                    f"{summary.passed_through} without a face passed through"
                )
                if summary.damage:  # the output is shorter than the input: say why, loudly
                    tqdm.write(f"hififace: warning: {file}: {summary.damage}", file=sys.stderr)
                continue
            result = pipeline.swap(source, file, **options)
            result.save(out)
            if args.save_intermediates:
                folder_out = Path(args.save_intermediates) / (file.stem if folder else "")
                result.save_intermediates(folder_out)
            tqdm.write(f"{file} -> {out}: {len(result.faces)} face(s) swapped")
        except SwapError as error:
            if not folder:
                raise
            failed.append(str(file))
            tqdm.write(f"hififace: skipped {file}: {error}", file=sys.stderr)
    return failed


def _mapping_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(reference, source) pairs of every --map SOURCE=REFERENCE; checks --source against --map."""
    if args.map and args.source:
        raise ValueError("give either --source or --map SOURCE=REFERENCE, not both")
    if not args.map and not args.source:
        raise ValueError("give --source IMAGE (repeatable, or a folder) or --map SOURCE=REFERENCE")
    pairs = []
    for entry in args.map or []:
        source, sep, reference = entry.partition("=")
        if not sep or not source or not reference:
            raise ValueError(f"--map {entry}: write it as SOURCE=REFERENCE (two image paths)")
        pairs.append((reference, source))
    return pairs


def _mask_options(args: argparse.Namespace):
    """The paste-back masks of --mask, --regions and --mask-padding (a SwapError names a bad one)."""
    from hififace.faces.masks import MaskOptions

    padding = None
    if args.mask_padding is not None:
        try:
            padding = [float(v) for v in args.mask_padding.split(",")]
        except ValueError:
            raise ValueError(
                f"--mask-padding {args.mask_padding}: give 1 or 4 comma-separated fractions (top,right,bottom,left)"
            ) from None
    return MaskOptions.parse(args.mask, args.regions, padding)


def _add_swap(commands: argparse._SubParsersAction) -> None:
    swap = commands.add_parser(
        "swap",
        help="swap a source face into images, videos or folders of them",
        description=(
            "Put the largest face of --source into --target (an image, a video, or a folder of "
            "them). Outputs are tagged as AI-generated in their metadata. Use it only with the "
            "consent of the people shown."
        ),
    )
    swap.add_argument(
        "--source",
        action="append",
        help="image with the face to put in (its largest face); repeat it, or give a folder, for several "
        "photos of one person (their identities are averaged)",
    )
    swap.add_argument("--target", required=True, help="image, video or folder of images and videos")
    swap.add_argument(
        "--output",
        required=True,
        help="out.png|.jpg|.webp for an image, out.mp4|.mov|.mkv for a video, a folder for a folder",
    )
    swap.add_argument("--model", help="model folder or Hub repository (default: $HIFIFACE_MODEL)")
    swap.add_argument("--revision", help="branch, tag or commit of a Hub model repository (default: main)")
    swap.add_argument(
        "--face",
        default="largest",
        help=FACE_HELP,
    )
    swap.add_argument(
        "--reference", metavar="IMAGE", help="with --face reference: a photo of the person to replace"
    )
    swap.add_argument(
        "--identity-strength",
        type=float,
        default=1.0,
        help="0..1, how much of the source's identity (default 1)",
    )
    swap.add_argument(
        "--shape-strength",
        type=float,
        default=1.0,
        help="0..1, how much of the source's face shape (default 1)",
    )
    swap.add_argument("--mask-erode", type=int, help="mask erosion radius in crop pixels at 256 (default 5)")
    swap.add_argument("--mask-blur", type=int, help="mask feather radius in crop pixels at 256 (default 10)")
    swap.add_argument(
        "--save-intermediates", metavar="DIR", help="also write crops, I_out, I_r, I_low, M_r, M_low (images)"
    )
    swap.add_argument(
        "--detector",
        choices=["auto", "insightface", "dlib"],
        help="face detector (default: the model's saved setting, else auto)",
    )
    swap.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    swap.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="auto (default): bfloat16 + channels-last where the CPU (AVX-512 BF16, AMX) or GPU has native "
        "bf16, else float32; float32 for exact results",
    )
    swap.add_argument(
        "--batch-size", type=int, default=8, help="faces (video: frames) per generator call (default 8)"
    )
    swap.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="refuse larger images and frames (default 40 MP)"
    )
    swap.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_swap_quality(swap)
    swap.set_defaults(func=_swap)


FACE_HELP = (
    "which target faces: largest (default), all, N (index from the left, from 0), several indices "
    "(0,2) or reference"
)

# Written out so that building the parser (and `hififace --help`) imports no OpenCV or torch;
# tests/test_masks.py checks them against hififace.faces.masks.
MASK_NAMES = "model,box,region,occlusion"
REGION_NAMES = "skin,brows,eyes,glasses,ears,nose,mouth,neck,hair,hat"


def _add_swap_quality(swap: argparse.ArgumentParser) -> None:
    """Masks, face mapping and face restoration options of `hififace swap`."""
    swap.add_argument(
        "--map",
        action="append",
        metavar="SOURCE=REFERENCE",
        help="repeatable, instead of --source: faces that look like REFERENCE (a photo) receive SOURCE",
    )
    _add_mask_arguments(swap)
    swap.add_argument(
        "--enhancer",
        metavar="FILE",
        help="face-restoration checkpoint (GFPGAN, RestoreFormer, CodeFormer ...)",
    )
    swap.add_argument(
        "--enhancer-blend", type=float, default=0.8, help="0..1, how much of the restored face (default 0.8)"
    )


def _add_mask_arguments(command: argparse.ArgumentParser) -> None:
    """--mask, --regions, --mask-padding and --parser: the paste-back masks of `swap` and `live`."""
    command.add_argument(
        "--mask",
        metavar="LIST",
        help=f"paste-back masks multiplied together, from {MASK_NAMES} (default model,box)",
    )
    command.add_argument(
        "--regions",
        metavar="LIST",
        help=f"with --mask region: face parts swapped, from {REGION_NAMES} "
        "(default skin,brows,eyes,glasses,nose,mouth)",
    )
    command.add_argument(
        "--mask-padding",
        metavar="P[,P,P,P]",
        help="the box mask's feather per side (top,right,bottom,left) as a fraction of the crop (default 0.05)",
    )
    command.add_argument(
        "--parser", metavar="DIR", help="face parser folder (`hififace convert bisenet`) for region/occlusion"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from hififace.evaluation import evaluate, pair_folders, read_pairs_csv
    from hififace.sharding import launched_state

    if args.pairs and (args.sources or args.targets):
        raise ValueError("give either --pairs CSV or --sources DIR --targets DIR, not both")
    unpaired: dict = {}
    if args.pairs:
        pairs = read_pairs_csv(args.pairs, swapped_dir=args.swapped)
    elif args.sources and args.targets:
        pairs, unpaired = pair_folders(args.sources, args.targets, args.swapped)
    else:
        raise ValueError("give --pairs CSV, or --sources DIR and --targets DIR (paired by file name)")
    for role, names in unpaired.items():
        if names:
            print(
                f"hififace: {len(names)} {role} without a partner left out (e.g. {names[0]})", file=sys.stderr
            )
    inputs = {
        "pairs_file": args.pairs,
        "sources": args.sources,
        "targets": args.targets,
        "swapped": args.swapped,
    }
    result = evaluate(
        pairs,
        args.out,
        model=args.model or os.environ.get("HIFIFACE_MODEL"),
        recognizer=args.recognizer,
        detector=args.detector,
        device=args.device,
        batch_size=args.batch_size,
        limit=args.limit,
        sample_grid=args.sample_grid,
        fid=not args.no_fid,
        insightface_pack=args.insightface_pack,
        progress=not args.no_progress,
        extra={"inputs": {k: v for k, v in inputs.items() if v}, "unpaired": unpaired},
        processes=launched_state(),  # under `accelerate launch`: pairs shared, main process reports
    )
    if not result.summary:  # another process of `accelerate launch` wrote the outputs
        return
    summary = result.summary
    print(
        f"{summary['pairs']} pairs: {summary['scored']} scored, {summary['failures']['count']} failed "
        f"({result.reused} from the cache)"
    )
    for name, m in summary["metrics"].items():
        if name == "fid":
            if m.get("value") is not None:
                print(f"  {'fid':28} {m['value']:.3f} (n={m['n']})")
        elif m["mean"] is not None:
            ci = "" if m["ci95"] is None else f" [{m['ci95'][0]:.4f}, {m['ci95'][1]:.4f}]"
            print(f"  {name:28} {m['mean']:.4f}{ci} (n={m['n']})")
    for reason in summary["skipped"].values():
        print(f"  {reason}")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'report.html'}")
    if args.card:
        from hififace.evaluation.card import write_card_results

        dataset = args.card_dataset or Path(args.pairs or args.targets).stem
        print(f"wrote the results into {write_card_results(args.card, summary, dataset)}")


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score face swaps: identity, ID retrieval, pose, expression, shape, FID",
        description=(
            "Score swaps of (source, target) pairs made by --model, or already swapped images "
            "(--swapped, or a swapped column in --pairs) of any swapper. Writes OUT/metrics.json "
            "(mean, 95% CI, n and failures per metric), OUT/pairs.csv and OUT/report.html. "
            "Resumable: per-pair results are cached under OUT/cache and reused by a re-run."
        ),
    )
    evaluate.add_argument(
        "--pairs", metavar="CSV", help="CSV with columns source,target[,swapped,name,identity]"
    )
    evaluate.add_argument(
        "--sources", metavar="DIR", help="source images, paired with --targets by file name"
    )
    evaluate.add_argument(
        "--targets", metavar="DIR", help="target images, paired with --sources by file name"
    )
    evaluate.add_argument(
        "--swapped",
        metavar="DIR",
        help="already swapped images named like the pairs (<name>.png|.jpg...); scores them instead of swapping",
    )
    evaluate.add_argument(
        "--model",
        help="model folder or Hub repo: swaps the pairs and gives the 3DMM metrics (default: $HIFIFACE_MODEL)",
    )
    evaluate.add_argument("--out", required=True, metavar="DIR", help="output folder")
    evaluate.add_argument(
        "--recognizer",
        default="dlib",
        choices=["dlib", "arcface", "insightface"],
        help="identity judge: dlib (default, offline, not used in training), arcface (the model's own "
        "F_id: biased), insightface (its pack's recognition model)",
    )
    evaluate.add_argument(
        "--insightface-pack", default="buffalo_l", help="insightface pack name or folder (default buffalo_l)"
    )
    evaluate.add_argument(
        "--detector", default="dlib", choices=["dlib", "insightface"], help="face detector (default dlib)"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="pairs per network batch (default 8)")
    evaluate.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    evaluate.add_argument("--limit", type=int, metavar="N", help="score only the first N pairs")
    evaluate.add_argument(
        "--sample-grid",
        type=int,
        default=16,
        metavar="N",
        help="pairs shown in the report's grid (default 16)",
    )
    evaluate.add_argument("--no-fid", action="store_true", help="do not compute FID")
    evaluate.add_argument(
        "--card", metavar="MODEL_DIR", help="also write the metrics into MODEL_DIR/README.md's model-index"
    )
    evaluate.add_argument(
        "--card-dataset", metavar="NAME", help="the data set's name in the card (default: the pairs' name)"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_evaluate)


def _export_onnx(args: argparse.Namespace) -> None:
    from hififace import HifiFace
    from hififace.export import check_onnx, export_identity_onnx, export_onnx

    if not (Path(args.model_dir) / "config.json").is_file():
        raise ValueError(f"{args.model_dir} holds no hififace model (no config.json); {_WEIGHTS_HELP}")
    model = HifiFace.from_pretrained(args.model_dir)
    for export, path in ((export_onnx, args.out), (export_identity_onnx, args.identity)):
        if path is None:
            continue
        export(model, path, opset=args.opset, dynamic_batch=args.dynamic_batch)
        line = f"wrote {path}"
        if args.check:
            diffs = check_onnx(model, path, batch=2 if args.dynamic_batch else 1)
            line += " (onnxruntime vs PyTorch, max |diff|: "
            line += ", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items()) + ")"
        print(line)


def _add_export_onnx(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export-onnx",
        help="export the generator (inputs target and v_sid) as ONNX",
        description=(
            "Write the generator of MODEL_DIR as ONNX with inputs target (B, 3, S, S) and v_sid "
            "(B, 769) and outputs image, image_low, mask, mask_low, image_out; with --identity also "
            "the identity extractor, (source, target) -> v_sid. Images are RGB float32 in [0, 1]."
        ),
    )
    export.add_argument("model_dir", help="model folder (`hififace convert` or `save_pretrained`)")
    export.add_argument("out", help="the generator's .onnx file")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.add_argument("--dynamic-batch", action="store_true", help="symbolic batch size (default: 1)")
    export.add_argument("--identity", metavar="ID.onnx", help="also write the identity extractor here")
    export.add_argument(
        "--check", action="store_true", help="run the files with onnxruntime and compare them with PyTorch"
    )
    export.set_defaults(func=_export_onnx)


def _live(args: argparse.Namespace) -> None:
    import torch

    from hififace.pipeline import HifiFacePipeline
    from hififace.video.live import VirtualCamera, open_camera, run_live

    model = _checked_model(args)
    masks = _mask_options(args)  # a bad --mask, --regions or --mask-padding fails before the camera opens
    virtual = VirtualCamera() if args.virtual_camera else False  # a missing package fails first
    camera = open_camera(args.camera, realtime=not args.every_frame)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = HifiFacePipeline.from_pretrained(
        model, detector=args.detector, dtype=args.dtype, masks=masks, parser=args.parser
    ).to(device)
    dtype = str(pipeline.dtype).removeprefix("torch.")
    if virtual:
        virtual.fps = camera.fps

    def readout(shown: int, fps: float) -> None:
        if not args.quiet:
            print(f"\r{shown} frames, {fps:.1f} fps", end="", file=sys.stderr, flush=True)

    print(f"live: {camera.name} -> swap ({dtype}, {device}); Ctrl-C stops", file=sys.stderr)
    summary = run_live(
        pipeline,
        args.source,
        camera,
        record=args.output,
        virtual_camera=virtual,
        max_frames=args.max_frames,
        on_frame=readout,
        face=args.face,
        reference=args.reference,
        identity_strength=args.identity_strength,
        shape_strength=args.shape_strength,
        mask_erode=args.mask_erode,
        mask_blur=args.mask_blur,
    )
    if not args.quiet:
        print(file=sys.stderr)
    print(
        f"{summary.frames} frames: {summary.swapped} swapped, {summary.passed_through} passed through, "
        f"{summary.dropped} dropped; {summary.fps:.2f} fps ({summary.stopped})"
        + (f"; recorded {summary.recording}" if summary.recording else "")
    )


def _add_live(commands: argparse._SubParsersAction) -> None:
    live = commands.add_parser(
        "live",
        help="swap a source face into a camera's frames, live",
        description=(
            "Read a camera (or a video file standing in for one), put the largest face of --source into "
            "its frames and show them on a virtual camera (--virtual-camera, for video calls) and/or "
            "record them (--output, tagged as AI-generated). Frames are dropped, not queued, when the "
            "swap falls behind. Ctrl-C stops; the recording is kept. Use it only with the consent of "
            "the people shown, and tell the people you talk to that the picture is synthetic."
        ),
    )
    live.add_argument("--source", required=True, help="image with the face to put in (its largest face)")
    live.add_argument(
        "--camera", default="0", help="camera index (default 0) or a video file standing in for one"
    )
    live.add_argument("--output", metavar="REC.mp4", help="record the swapped frames (.mp4, .mov or .mkv)")
    live.add_argument(
        "--virtual-camera",
        action="store_true",
        help='show the frames on a virtual camera (needs pyvirtualcam: pip install "hififace[live]")',
    )
    live.add_argument(
        "--every-frame",
        action="store_true",
        help="with a video file: swap every frame as fast as possible instead of pacing it like a camera",
    )
    live.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    live.add_argument("--model", help="model folder or Hub repository (default: $HIFIFACE_MODEL)")
    live.add_argument("--face", default="largest", help=FACE_HELP)
    live.add_argument("--reference", metavar="IMAGE", help="with --face reference: a photo of the person")
    live.add_argument("--identity-strength", type=float, default=1.0, help="0..1 (default 1)")
    live.add_argument("--shape-strength", type=float, default=1.0, help="0..1 (default 1)")
    live.add_argument("--mask-erode", type=int, help="mask erosion radius in crop pixels at 256 (default 5)")
    live.add_argument("--mask-blur", type=int, help="mask feather radius in crop pixels at 256 (default 10)")
    _add_mask_arguments(live)
    live.add_argument(
        "--detector",
        default="auto",
        choices=["auto", "insightface", "dlib"],
        help="face detector (default auto)",
    )
    live.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    live.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="auto (default): bfloat16 + channels-last where the CPU or GPU has native bf16, else float32",
    )
    live.add_argument("--quiet", action="store_true", help="no frames-per-second readout")
    live.set_defaults(func=_live)


def _space(args: argparse.Namespace) -> None:
    from hififace.space import push_space, write_space

    folder = write_space(args.out, model=args.model, hardware=args.hardware, requirement=args.requirement)
    print(f"wrote the Space to {folder}; try it with: cd {folder} && python app.py")
    if args.push:
        print(f"uploaded: {push_space(folder, args.push, private=args.private)}")


def _add_space(commands: argparse._SubParsersAction) -> None:
    space = commands.add_parser(
        "space",
        help="write (and upload) a Hugging Face Space of the app",
        description=(
            "Write a complete, self-contained Gradio Space to OUT: the app, this package (or "
            "--requirement), pinned requirements and a README whose configuration fits --hardware "
            "(sdk_version, python_version, models, preload_from_hub, licence). --push uploads it."
        ),
    )
    space.add_argument("out", help="folder to write (must not exist, or be empty)")
    space.add_argument("--model", metavar="REPO[@REVISION]", help="the Hub model repo the Space serves")
    space.add_argument(
        "--hardware",
        default="zero-a10g",
        choices=["zero-a10g", "t4-small", "cpu-basic"],
        help="hardware the Space is configured for (default zero-a10g)",
    )
    space.add_argument(
        "--requirement", metavar="SPEC", help="pip requirement on hififace instead of copying the package"
    )
    space.add_argument("--push", metavar="SPACE_ID", help="also upload the folder to this Space (OWNER/NAME)")
    space.add_argument("--private", action="store_true", help="with --push: create the Space private")
    space.set_defaults(func=_space)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hififace", description="HifiFace face swapping.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    convert = commands.add_parser(
        "convert",
        help="convert a public checkpoint into a hififace safetensors folder",
        description="Convert a public checkpoint into a folder that `from_pretrained` loads.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="sources:\n" + "\n".join(f"  {k:17} {v}" for k, v in CONVERTERS.items()),
    )
    convert.add_argument("source", choices=list(CONVERTERS), help="which kind of checkpoint SRC is")
    convert.add_argument("src", help="the checkpoint file")
    convert.add_argument("out_dir", help="folder to write (config.json, model.safetensors, README.md)")
    convert.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub repo")
    convert.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="deep3d only: size the regressor sees (224 as trained; the HifiFace release used 256)",
    )
    convert.set_defaults(func=_convert)
    _add_preprocess(commands)
    _add_swap(commands)
    _add_evaluate(commands)
    _add_export_onnx(commands)
    _add_live(commands)
    _add_space(commands)
    return parser


class Terminated(SystemExit):
    """SIGTERM arrived: raised in the main thread so every `with` block cleans up on the way out."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # Python's default SIGTERM ends the process at once, leaving temporary files (a half-written
    # `.clip.XXXX.mp4`) behind; as an exception, the atomic writers remove them first.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("hififace: interrupted", file=sys.stderr)
        return 130
    except Terminated as stop:
        print("hififace: terminated", file=sys.stderr)
        return int(stop.code)
    except Exception as error:  # one clear line for the user; -v shows the traceback
        if args.verbose:
            raise
        print(f"hififace: error: {error}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def run() -> None:
    """The `hififace` command (and `python -m hififace`): `main`, then a quick exit with its code.

    After a one-photo swap the interpreter's own teardown (freeing every module and tensor one by
    one) took half a second, 12% of the whole command (`benchmarks/cold_start.py`, 2-core CPU).
    Everything a command writes is closed and renamed into place before `main` returns, so the
    process shuts the launched process group down, flushes its streams and leaves without that
    teardown (atexit handlers do not run; an exception from `main` -v still ends the usual way).
    """
    from hififace.sharding import shut_down

    code = main()
    shut_down()  # under `accelerate launch -m hififace ...`: every process leaves together
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing to flush into
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
