"""The `hififace` command line.

    hififace convert {hififace-pytorch,arcface,deep3d,bfm,bisenet} SRC OUT_DIR [--push-to-hub REPO]
    hififace preprocess RAW OUT [--size 256] [--parser DIR] [--workers N] ...

Every failure ends with one clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

CONVERTERS = {
    "hififace-pytorch": "the public HiFiFace-pytorch generator_<iter>.pth (generator + ArcFace + 3DMM regressor)",
    "arcface": "an insightface arcface_torch backbone.pth (IResNet r50/r100)",
    "deep3d": "a Deep3DFaceRecon epoch_20.pth (the 3DMM regressor under 'net_recon')",
    "bfm": "Deep3DFaceRecon's BFM_model_front.mat (the 68-landmark part, for the shape loss)",
    "bisenet": "face-parsing.PyTorch's BiSeNet 79999_iter.pth (19-class face parser)",
}


def _convert(args: argparse.Namespace) -> None:
    from hififace import convert

    functions: dict[str, Callable] = {
        "hififace-pytorch": convert.convert_hififace_pytorch,
        "arcface": convert.convert_arcface,
        "deep3d": convert.convert_deep3d,
        "bfm": convert.convert_bfm,
        "bisenet": convert.convert_bisenet,
    }
    functions[args.source](args.src, args.out_dir, push_to_hub=args.push_to_hub)
    print(f"wrote {args.out_dir}")


def _preprocess(args: argparse.Namespace) -> None:
    from hififace.data import preprocess

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
        **{k: v for k, v in options.items() if v is not None},
    )
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
    convert.set_defaults(func=_convert)
    _add_preprocess(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("hififace: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for the user; -v shows the traceback
        if args.verbose:
            raise
        print(f"hififace: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
