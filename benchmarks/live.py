"""Live swapping speed: frames per second and end-to-end latency from a recorded clip (`run_live`).

    python benchmarks/live.py             # the full-size 256 architecture, several minutes on 2 cores
    python benchmarks/live.py --quick     # tiny config, seconds

A clip of the astronaut (one face) drifting and zooming slowly, 640 x 480 at 25 fps, stands in
for a webcam: `open_camera(clip)` hands its frames out at their own pace, as a camera would, and
`run_live` drops those the swap cannot keep up with. Measured per frame shown: end-to-end latency
(capture time to the swapped frame being ready) and the swap's own time (detection at <= 640 px,
alignment, the target's priors, the generator, paste-back). The source code is computed once.

Variants: fp32 eager, and the fast path (channels-last + bf16 autocast, `HifiFacePipeline(dtype=
"bfloat16")`), which pays off only on CPUs with native bf16 (AVX-512 BF16 / AMX; the flags are in
the JSON). Weights: the release layout with synthetic values (`common.release_model`): the speed
of the released network, not its pictures. The machine may be shared: the load average before and
after is in the JSON. Writes benchmarks/results/live-<machine>.json.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from common import machine_info, parse_args, release_model, save, tiny_model, weights_note
from skimage import data

from hififace import HifiFacePipeline
from hififace.faces import load_detector
from hififace.fast import optimize
from hififace.video.live import open_camera, run_live

# Targets of issue 11 on a CPU, one face at 256.
TARGET_FPS = 4.0
TARGET_LATENCY_MS = 400.0


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="clip length (default 20 s)")
    parser.add_argument("--fps", type=int, default=25, help="the camera's frame rate (default 25)")


def write_clip(path: Path, seconds: float, fps: int) -> Path:
    """The astronaut's face in a 640 x 480 frame, drifting and zooming slowly, H.264."""
    photo = cv2.resize(data.astronaut()[:384], (640, 480), interpolation=cv2.INTER_AREA)
    frames = max(2, round(seconds * fps))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            phase = 2 * np.pi * i / frames
            matrix = cv2.getRotationMatrix2D(
                (320 + 20 * np.sin(phase), 240), 3 * np.sin(phase), 1 + 0.05 * np.sin(phase)
            )
            frame = cv2.warpAffine(photo, matrix, (640, 480), borderMode=cv2.BORDER_REFLECT_101)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def measure(pipeline: HifiFacePipeline, clip: Path, source) -> dict:
    summary = run_live(pipeline, source, open_camera(clip))
    latency, work = np.array(summary.latency_ms), np.array(summary.work_ms)
    return {
        "frames_shown": summary.frames,
        "frames_dropped": summary.dropped,
        "swapped": summary.swapped,
        "passed_through": summary.passed_through,
        "fps": summary.fps,
        "latency_ms": {
            "median": float(np.median(latency)),
            "p95": float(np.percentile(latency, 95)),
            "max": float(latency.max()),
        },
        "swap_ms": {"median": float(np.median(work)), "min": float(work.min())},
        "meets_target": bool(summary.fps >= TARGET_FPS and np.median(latency) < TARGET_LATENCY_MS),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info(device)  # the load average before the runs
    model = (tiny_model() if args.quick else release_model(256)).to(device)
    detector = load_detector("dlib")
    pipelines = {"fp32": HifiFacePipeline(model, detector)}
    if device.type != "cpu" or {"avx512_bf16", "amx_bf16"} & set(machine.get("cpu_flags", [])):
        fast = optimize(copy.deepcopy(model), channels_last=True)
        pipelines["channels_last+bf16"] = HifiFacePipeline(fast, detector, dtype="bfloat16")
    seconds = min(args.seconds, 4.0) if args.quick else args.seconds
    source_photo = data.astronaut()[:, ::-1].copy()  # the mirrored astronaut as the source
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(Path(folder) / "camera.mp4", seconds, args.fps)
        for name, pipeline in pipelines.items():
            source = pipeline.encode_source(source_photo)
            run_live(pipeline, source, open_camera(clip, realtime=False), max_frames=2)  # warm-up
            results[name] = measure(pipeline, clip, source)
            r = results[name]
            print(
                f"{name:20} {r['fps']:5.2f} fps, latency median {r['latency_ms']['median']:7.0f} ms "
                f"(p95 {r['latency_ms']['p95']:.0f}), swap {r['swap_ms']['median']:.0f} ms, "
                f"{r['frames_shown']} shown / {r['frames_dropped']} dropped"
            )
    save(
        "live",
        {
            "benchmark": "run_live from a recorded clip paced like a camera: fps and end-to-end latency",
            "machine": machine,
            "weights": weights_note(args.quick, 256),
            "clip": {"seconds": seconds, "fps": args.fps, "size": [640, 480], "faces": 1},
            "detector": repr(detector),
            "targets": {
                "fps": TARGET_FPS,
                "latency_ms": TARGET_LATENCY_MS,
                "what": "one face at 256 on a CPU",
            },
            "results": results,
        },
        args,
    )


if __name__ == "__main__":
    main()
