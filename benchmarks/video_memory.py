"""Peak memory of a 1080p video swap at 256, for clips of different lengths: does it grow with them?

    python benchmarks/video_memory.py           # release-scale model, 12 and 36 frames: minutes on 2 cores
    python benchmarks/video_memory.py --quick   # tiny config, 6 and 18 frames

Each length runs `swap_video` in a fresh process (model load, source encoding, decode, batches of
8 frames through detection and the generator, H.264 encode) and reports that process's peak
resident set (Linux VmHWM), which includes torch, the weights and the detector. A frame loop whose
memory is bounded by the batch gives the same peak for every length; the target is a peak under
2.5 GB at 1080p. The clip is the astronaut (one face) scaled into a 1920 x 1080 frame, drifting.
Writes benchmarks/results/video_memory-<machine>.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine_info, parse_args, release_model, save, tiny_model, weights_note

TARGET_GB = 2.5

CHILD = """
import json, sys
from hififace import HifiFacePipeline
from hififace.video import swap_video
batch = int(sys.argv[5])
pipeline = HifiFacePipeline.from_pretrained(sys.argv[1], detector="dlib", batch_size=batch)
summary = swap_video(pipeline, sys.argv[2], sys.argv[3], sys.argv[4], batch_size=batch)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({"frames": summary.frames, "swapped": summary.swapped,
                  "peak_rss_kb": int(status["VmHWM"].split()[0])}))
"""


def write_clip(path: Path, frames: int) -> None:
    import av
    import cv2
    import numpy as np
    from skimage import data

    face = cv2.resize(data.astronaut(), (800, 800))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        for i in range(frames):
            canvas = np.full((1080, 1920, 3), 60, np.uint8)
            x = 400 + 10 * i
            canvas[140:940, x : x + 800] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--frames", type=int, nargs="+", help="clip lengths (default 12 36)")
        parser.add_argument(
            "--batch-size", type=int, default=8, help="frames and crops per batch (default 8)"
        )

    args = parse_args(__doc__.split("\n\n")[0], options)
    from PIL import Image
    from skimage import data

    lengths = args.frames or ([6, 18] if args.quick else [12, 36])
    work = Path(tempfile.mkdtemp(prefix="hififace-video-memory-"))
    (tiny_model() if args.quick else release_model(256)).save_pretrained(work / "model")
    source = work / "source.png"
    Image.fromarray(data.astronaut()).save(source)
    runs = []
    for frames in lengths:
        clip = work / f"clip-{frames}.mp4"
        write_clip(clip, frames)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(work / "model"), str(source), str(clip), str(work / "out.mp4"), str(args.batch_size)],
            capture_output=True, text=True, check=True, cwd=REPO,
        )  # fmt: skip
        run = json.loads(out.stdout.strip().splitlines()[-1])
        run["peak_rss_gb"] = run.pop("peak_rss_kb") / 2**20
        runs.append(run)
        print(run)
    peaks = [r["peak_rss_gb"] for r in runs]
    save(
        "video_memory" + (f"-batch{args.batch_size}" if args.batch_size != 8 else ""),
        {
            "benchmark": f"peak resident set of a fresh process swapping a 1920x1080 clip at 256 (batch {args.batch_size})",
            "weights": weights_note(args.quick, 256),
            "machine": machine_info("cpu"),
            "runs": runs,
            "growth_gb_longest_over_shortest": peaks[-1] - peaks[0],
            "target_gb": TARGET_GB,
            "under_target": max(peaks) < TARGET_GB,
        },
        args,
    )


if __name__ == "__main__":
    main()
