"""Peak memory of a 1080p video swap at 256, for clips of different lengths: does it grow with them?

    python benchmarks/video_memory.py           # release-scale model, 12, 36 and 96 frames: long on 2 cores
    python benchmarks/video_memory.py --quick   # tiny config, 6, 18 and 48 frames
    python benchmarks/video_memory.py --per-pass 8   # every face of a batch in one generator pass (as before)
    python benchmarks/video_memory.py --passes  # time and memory of 8 faces in passes of 1, 2, 4 and 8

Each length runs `swap_video` in a fresh process at the default settings (model load, source
encoding, decode, batches of 8 frames through detection, generator passes of
`faces_per_pass(pipeline)` faces, H.264 encode) and reports that process's peak resident set
(Linux VmHWM), which includes torch, the weights, the detector and the encoder's lookahead, and its
resident set after every batch. A frame loop whose memory is bounded by the batch gives the same
peak for every length once the encoder's lookahead is full; the target is a peak under 2.5 GB at
1080p. The clip is the astronaut (one face) scaled into a 1920 x 1080 frame, drifting.
Writes benchmarks/results/video_memory-<machine>.json. `--passes` instead swaps 8 faces of a
1080p frame through `swap_faces` in passes of 1, 2, 4 and 8 faces, in interleaved rounds (the order
reversed every other round) after a warm-up, and reports seconds per face (median) and each pass
size's peak increase of the resident set: the throughput the video's bounded passes give up.
Writes benchmarks/results/video_memory-passes-<machine>.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    REPO,
    PeakMemory,
    machine_info,
    parse_args,
    release_model,
    save,
    tiny_model,
    weights_note,
)

TARGET_GB = 2.5

CHILD = """
import json, sys, time
from hififace import HifiFacePipeline
import hififace.video.swap
from hififace.video import swap_video
def kb(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))
model, source, clip, out, batch, per_pass = sys.argv[1:7]
pipeline = HifiFacePipeline.from_pretrained(model, detector="dlib", batch_size=int(batch))
if int(per_pass):  # force the faces per generator pass (default: faces_per_pass(pipeline))
    hififace.video.swap.faces_per_pass = lambda pipeline: int(per_pass)
after_load = kb("VmRSS")
trace = []
start = time.perf_counter()
summary = swap_video(pipeline, source, clip, out, batch_size=int(batch),
                     progress=lambda done, total: trace.append(round(kb("VmRSS") / 2**20, 3)))
print(json.dumps({"frames": summary.frames, "swapped": summary.swapped,
                  "seconds": round(time.perf_counter() - start, 1),
                  "rss_after_load_gb": round(after_load / 2**20, 3),
                  "rss_after_each_batch_gb": trace, "peak_rss_kb": kb("VmHWM")}))
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
            x = 400 + (10 * i) % 700
            canvas[140:940, x : x + 800] = face
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def passes(args, model: Path, source: Path, machine: dict) -> None:
    """Seconds per face and peak increase of 8 faces swapped in passes of 1, 2, 4 and 8 (see the docstring)."""
    import statistics
    import time

    import cv2
    import numpy as np
    from skimage import data

    from hififace import HifiFacePipeline

    pipeline = HifiFacePipeline.from_pretrained(model, detector="dlib")
    code = pipeline.encode_source(source)
    frame = np.full((1080, 1920, 3), 60, np.uint8)
    frame[140:940, 400:1200] = cv2.resize(data.astronaut(), (800, 800))
    faces = [(frame, pipeline.detect_faces(frame)[0])] * 8

    def swap(per_pass: int) -> None:
        for start in range(0, len(faces), per_pass):
            pipeline.swap_faces(code, faces[start : start + per_pass])

    swap(2)  # warm-up
    sizes, times, peaks = (1, 2, 4, 8), {}, {}
    for round_ in range(args.repeats or (1 if args.quick else 2)):
        for size in sizes if round_ % 2 == 0 else sizes[::-1]:
            with PeakMemory("cpu") as memory:
                start = time.perf_counter()
                swap(size)
                times.setdefault(size, []).append(time.perf_counter() - start)
            peaks.setdefault(size, []).append(memory.increase / 2**30)
            print(size, round(times[size][-1], 2), round(peaks[size][-1], 3), flush=True)
    base = statistics.median(times[8])
    save(
        "video_memory-passes",
        {
            "benchmark": "8 faces of a 1080p frame through swap_faces in passes of 1, 2, 4 and 8 (fp32, 256)",
            "weights": weights_note(args.quick, 256),
            "machine": machine,
            "runs": [
                {
                    "faces_per_pass": size,
                    "seconds_per_face_median": round(statistics.median(times[size]) / 8, 3),
                    "seconds_all_rounds": [round(t, 2) for t in times[size]],
                    "time_vs_passes_of_8": round(statistics.median(times[size]) / base, 3),
                    "peak_increase_gb": round(max(peaks[size]), 3),
                }
                for size in sizes
            ],
        },
        args,
    )


def main() -> None:
    def options(parser) -> None:
        parser.add_argument("--frames", type=int, nargs="+", help="clip lengths (default 12 36 96)")
        parser.add_argument(
            "--batch-size", type=int, default=8, help="frames per batch, as swap_video's (default 8)"
        )
        parser.add_argument(
            "--per-pass", type=int, default=0, help="faces per generator pass (default: faces_per_pass)"
        )
        parser.add_argument(
            "--parallel",
            action="store_true",
            help="run the lengths' processes at once (each measures its own peak; for a busy machine)",
        )
        parser.add_argument(
            "--passes", action="store_true", help="time and memory of 8 faces in passes of 1, 2, 4, 8"
        )

    args = parse_args(__doc__.split("\n\n")[0], options)
    from PIL import Image
    from skimage import data

    machine = machine_info("cpu")
    lengths = args.frames or ([6, 18, 48] if args.quick else [12, 36, 96])
    work = Path(tempfile.mkdtemp(prefix="hififace-video-memory-"))
    (tiny_model() if args.quick else release_model(256)).save_pretrained(work / "model")
    source = work / "source.png"
    Image.fromarray(data.astronaut()).save(source)
    if args.passes:
        passes(args, work / "model", source, machine)
        return
    env = dict(os.environ, PYTHONPATH=str(REPO))
    children = []
    for frames in lengths:
        clip = work / f"clip-{frames}.mp4"
        write_clip(clip, frames)
        command = [sys.executable, "-c", CHILD, str(work / "model"), str(source), str(clip)]
        command += [str(work / f"out-{frames}.mp4"), str(args.batch_size), str(args.per_pass)]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env))
        if not args.parallel:
            children[-1].wait()
    runs = []
    for child in children:
        stdout, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"a swap_video child failed (exit status {child.returncode})")
        run = json.loads(stdout.strip().splitlines()[-1])
        run["peak_rss_gb"] = round(run.pop("peak_rss_kb") / 2**20, 3)
        runs.append(run)
        print(run, flush=True)
    peaks = [r["peak_rss_gb"] for r in runs]
    extra = lengths[-1] - lengths[-2] if len(lengths) > 1 else 0
    name = "video_memory" + (f"-batch{args.batch_size}" if args.batch_size != 8 else "")
    save(
        name + (f"-pass{args.per_pass}" if args.per_pass else ""),
        {
            "benchmark": f"peak resident set of a fresh process swapping a 1920x1080 clip at 256 (batch {args.batch_size})",
            "weights": weights_note(args.quick, 256),
            "faces_per_pass": args.per_pass or "faces_per_pass(pipeline)",
            "parallel": args.parallel,
            "machine": machine,
            "runs": runs,
            "growth_gb_longest_over_shortest": round(peaks[-1] - peaks[0], 3),
            "growth_mb_per_extra_frame_last_two": round(1024 * (peaks[-1] - peaks[-2]) / extra, 3)
            if extra
            else None,
            "target_gb": TARGET_GB,
            "under_target": max(peaks) < TARGET_GB,
        },
        args,
    )


if __name__ == "__main__":
    main()
