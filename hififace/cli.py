"""The `hififace` command line.

    hififace convert {hififace-pytorch,arcface,deep3d,bfm,bisenet} SRC OUT_DIR [--push-to-hub REPO]

Every failure ends with one clear line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import logging
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
