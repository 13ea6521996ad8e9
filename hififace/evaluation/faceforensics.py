"""The FaceForensics++ test set of the HifiFace paper: frames and pairs for `hififace evaluate`.

    python -m hififace.evaluation.faceforensics /data/FaceForensics++ ffpp-eval
    hififace evaluate --pairs ffpp-eval/pairs.csv --model models/hififace-256 --out ffpp-eval/result

FaceForensics++ (Rössler et al., ICCV 2019; data on request through the form linked from the
FaceForensics GitHub repository) has 1,000 original videos, renamed 000-999, and for every
manipulation method the same 1,000 (source, target) pairs, named by the two videos' numbers
``<a>_<b>.mp4`` (both orders of 500 pairs; the ``dataset/splits`` JSON files list the 500). This
module reads the pair names from ``manipulated_sequences/<method>/<compression>/videos`` (or from
``train.json``, ``val.json`` and ``test.json`` in the root), takes `frames` evenly spaced frames of
each original video (``original_sequences/youtube/<compression>/videos``; 10 per video gives the
protocol's 10,000 frames), decodes each video once to write them as PNGs, and writes a pairs CSV:
the k-th frame of the first video of the name is the target, the k-th frame of the second the
source (``000_003``: 003's face put into 000's frames, our reading of FF++'s naming).
``identity`` is the source video's number: videos that show the same person (FF++ has some)
count as different identities unless you edit the column.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from hififace.atomic import atomic_write
from hififace.imageio import save_image

SPLITS = ("train.json", "val.json", "test.json")


def pair_names(
    root: str | os.PathLike, method: str = "Deepfakes", compression: str = "c23"
) -> list[tuple[str, str]]:
    """(target, source) video numbers of the 1,000 FF++ pairs, sorted.

    From the file names under ``manipulated_sequences/<method>/<compression>/videos`` when that
    folder exists, else from the split JSON files (``[[a, b], ...]``) in `root`, both orders.
    """
    root = Path(root)
    folder = root / "manipulated_sequences" / method / compression / "videos"
    names = set()
    if folder.is_dir():
        for file in folder.iterdir():
            parts = file.stem.split("_")
            if file.suffix.lower() == ".mp4" and len(parts) == 2 and all(p.isdigit() for p in parts):
                names.add((parts[0], parts[1]))
    else:
        for split in SPLITS:
            if (root / split).is_file():
                for a, b in json.loads((root / split).read_text()):
                    names.update({(str(a), str(b)), (str(b), str(a))})
    if not names:
        raise ValueError(
            f"no FaceForensics++ pairs under {root}: expected {folder.relative_to(root)}/<target>_<source>.mp4 "
            f"or {', '.join(SPLITS)} from the FaceForensics repository's dataset/splits"
        )
    return sorted(names)


def frame_indices(count: int, frames: int) -> list[int]:
    """`frames` evenly spaced frame indices of a video of `count` frames (first and last included)."""
    if count < 1:
        raise ValueError("the video has no frames")
    return sorted({int(i) for i in np.linspace(0, count - 1, min(frames, count)).round()})


def prepare(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    frames: int = 10,
    method: str = "Deepfakes",
    compression: str = "c23",
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Extract the protocol's frames and write ``out_dir/pairs.csv``; returns the CSV's path.

    Args:
        root (path): the FaceForensics++ folder (with ``original_sequences``).
        out_dir (path): where ``frames/<video>/<index>.png`` and ``pairs.csv`` go.
        frames (int, default 10): frames per video.
        method (str, default "Deepfakes"): the manipulation folder the pair names are read from
            (every method has the same pairs).
        compression (str, default "c23"): "c23" (the papers' choice), "c40" or "raw".
        limit (int, optional): only the first `limit` pairs (a quick look).
        progress (bool, default True): a progress bar over the videos.
    """
    import av
    from tqdm import tqdm

    root, out = Path(root), Path(out_dir)
    names = pair_names(root, method, compression)[:limit]
    videos = root / "original_sequences" / "youtube" / compression / "videos"
    needed = sorted({v for pair in names for v in pair})
    missing = [v for v in needed if not (videos / f"{v}.mp4").is_file()]
    if missing:
        raise ValueError(f"{len(missing)} original videos missing under {videos} (e.g. {missing[0]}.mp4)")

    chosen: dict[str, list[int]] = {}
    for video in tqdm(needed, desc="frames", unit="video", disable=not progress):
        folder = out / "frames" / video
        with av.open(str(videos / f"{video}.mp4")) as container:
            count = container.streams.video[0].frames or sum(1 for _ in container.decode(video=0))
        chosen[video] = frame_indices(count, frames)
        if all((folder / f"{i:04d}.png").is_file() for i in chosen[video]):
            continue  # extracted by an earlier run
        folder.mkdir(parents=True, exist_ok=True)
        wanted = set(chosen[video])
        with av.open(str(videos / f"{video}.mp4")) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    save_image(folder / f"{index:04d}.png", frame.to_ndarray(format="rgb24"))
                if index >= max(wanted):
                    break
        chosen[video] = sorted(i for i in wanted if (folder / f"{i:04d}.png").is_file())

    csv_path = out / "pairs.csv"
    with atomic_write(csv_path, "w", newline="") as f:  # an interrupted run keeps the previous index
        writer = csv.writer(f)
        writer.writerow(["name", "source", "target", "identity"])
        for target, source in names:
            for k, t_index in enumerate(chosen[target]):
                s_frames = chosen[source]
                s_index = s_frames[min(k, len(s_frames) - 1)]
                writer.writerow(
                    [
                        f"{target}_{source}_{t_index:04d}",
                        f"frames/{source}/{s_index:04d}.png",
                        f"frames/{target}/{t_index:04d}.png",
                        source,
                    ]
                )
    return csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hififace.evaluation.faceforensics",
        description="Extract the FaceForensics++ test frames and write the pairs CSV for `hififace evaluate`.",
    )
    parser.add_argument("root", help="the FaceForensics++ folder (original_sequences, manipulated_sequences)")
    parser.add_argument("out", help="output folder: frames/ and pairs.csv")
    parser.add_argument("--frames", type=int, default=10, help="frames per video (default 10)")
    parser.add_argument(
        "--method", default="Deepfakes", help="folder the pair names come from (default Deepfakes)"
    )
    parser.add_argument("--compression", default="c23", help="c23 (default), c40 or raw")
    parser.add_argument("--limit", type=int, help="only the first N pairs")
    args = parser.parse_args(argv)
    try:
        path = prepare(args.root, args.out, args.frames, args.method, args.compression, args.limit)
    except (ValueError, OSError) as e:
        print(f"hififace: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
