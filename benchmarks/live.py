"""Live swapping speed: frames per second, end-to-end latency and where the time goes (`run_live`).

    python benchmarks/live.py             # the full-size 256 architecture, about 5 min on 2 cores
    python benchmarks/live.py --quick     # tiny config, seconds

A clip of the astronaut (one face) drifting and zooming slowly, 640 x 480 at 25 fps, stands in
for a webcam: `open_camera(clip)` hands its frames out at their own pace, as a camera would, and
`run_live` drops those the swap cannot keep up with. Measured per frame shown: end-to-end latency
(capture time to the swapped frame being ready), the swap's own time, and its stages
(`LiveSummary.stage_table`: capture, detection, landmarks, alignment, the target's priors, the
generator, paste-back, output). The source code is computed once.

Variants, each played `--rounds` times in interleaved rounds (a shared machine slows them alike):
fp32 eager; the fast path (channels-last + bf16 autocast, `HifiFacePipeline(dtype="bfloat16")`,
which pays off only on CPUs with native bf16: AVX-512 BF16 / AMX, flags in the JSON); the fast
path with `torch.compile` of the generator (compiled at start-up with an empty cache: its time is
in the JSON); each with full-frame detection on every frame ("detect every frame") and with faces
followed between detections every 10 frames (the default, `FaceFollower`); and "bf16, detect 640
every frame", the live loop before detection was cut (640 px, no following, no full-resolution
landmarks). The generator's FLOPs (`torch.utils.flop_counter`, fp32 graph) over its measured stage
time give its achieved GFLOP/s, against the same run's bf16 matrix-product peak (2048^2); the
"ceiling" section says how many frames per second the generator alone allows at that peak.
Weights: the release layout with synthetic values (`common.release_model`): the speed of the
released network, not its pictures. The load average before and after is in the JSON. Writes
benchmarks/results/live-<machine>.json.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from common import (
    cold_compile_cache,
    count_flops,
    machine_info,
    matmul_peak_gflops,
    parse_args,
    release_model,
    save,
    tiny_model,
    weights_note,
)
from skimage import data

from hififace import HifiFacePipeline
from hififace.faces import load_detector
from hififace.fast import inference_context, optimize
from hififace.video.live import STAGES, LiveSummary, open_camera, run_live

# Targets of issue 11 on a CPU, one face at 256.
TARGET_FPS = 4.0
TARGET_LATENCY_MS = 400.0
EVERY_FRAME = {"redetect_every": 1}
# name: (pipeline, LiveSwapper options)
VARIANTS = {
    "fp32, detect every frame": ("fp32", EVERY_FRAME),
    "fp32": ("fp32", {}),
    "bf16, detect 640 every frame": ("bf16", {"detect_max_side": 640, "redetect_every": 1}),
    "bf16, detect every frame": ("bf16", EVERY_FRAME),
    "bf16": ("bf16", {}),
    "bf16+compile, detect every frame": ("bf16+compile", EVERY_FRAME),
    "bf16+compile": ("bf16+compile", {}),
}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--fps", type=int, default=25, help="the camera's frame rate (default 25)")
    parser.add_argument("--rounds", type=int, default=2, help="times each variant plays the clip (default 2)")
    parser.add_argument(
        "--no-compile", action="store_true", help="leave out the torch.compile variants (--quick does)"
    )


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


def generator_flops(model: torch.nn.Module, device: torch.device) -> int:
    """FLOPs of one 256 face through the generator (encoder, decoder, SFF), fp32 graph."""
    size = model.image_size
    target = torch.rand(1, 3, size, size, device=device)
    with inference_context(device):
        v_sid = torch.randn(1, model.identity.dim, device=device)
        return count_flops(lambda: model.generate(target, v_sid))


def merge(summaries: list[LiveSummary]) -> dict:
    """The rounds of one variant as one result: rates over all rounds, stages over all frames."""
    frames = sum(s.frames for s in summaries)
    seconds = sum(s.frames / s.fps for s in summaries if s.fps > 0)
    latency = np.concatenate([s.latency_ms for s in summaries])
    work = np.concatenate([s.work_ms for s in summaries])
    stages = {name: [ms for s in summaries for ms in s.stages_ms[name]] for name in STAGES}
    mean_work = float(work.mean())
    table = {
        name: {
            "median_ms": float(np.median(ms)),
            "mean_ms": float(np.mean(ms)),
            "share": float(np.mean(ms)) / mean_work,
        }
        for name, ms in stages.items()
    }
    fps = frames / seconds if seconds > 0 else 0.0
    return {
        "frames_shown": frames,
        "frames_dropped": sum(s.dropped for s in summaries),
        "swapped": sum(s.swapped for s in summaries),
        "passed_through": sum(s.passed_through for s in summaries),
        "fps": fps,
        "fps_per_round": [s.fps for s in summaries],
        "latency_ms": {
            "median": float(np.median(latency)),
            "p95": float(np.percentile(latency, 95)),
            "max": float(latency.max()),
        },
        "swap_ms": {"median": float(np.median(work)), "mean": float(work.mean()), "min": float(work.min())},
        "stages": table,
        "camera_thread_ms_per_s": sum(s.camera_ms for s in summaries) / seconds if seconds > 0 else 0.0,
        "meets_target": bool(fps >= TARGET_FPS and np.median(latency) < TARGET_LATENCY_MS),
    }


def build_pipelines(model, detector, device, machine, compile_too: bool) -> tuple[dict, dict]:
    """The variants' pipelines (fp32; bf16 and bf16+compile where bf16 is native), and start-up notes."""
    pipelines = {"fp32": HifiFacePipeline(model, detector)}
    notes = {}
    if device.type != "cpu" or {"avx512_bf16", "amx_bf16"} & set(machine.get("cpu_flags", [])):
        fast = optimize(copy.deepcopy(model), channels_last=True)
        pipelines["bf16"] = HifiFacePipeline(fast, detector, dtype="bfloat16")
        if compile_too:
            notes["compile_cache"] = cold_compile_cache()
            compiled = optimize(copy.deepcopy(model), channels_last=True, compile=True)
            pipelines["bf16+compile"] = HifiFacePipeline(compiled, detector, dtype="bfloat16")
    return pipelines, notes


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    model = (tiny_model() if args.quick else release_model(256)).to(device)
    detector = load_detector("dlib")
    # compiling takes minutes on 2 cores: not in a smoke run
    pipelines, notes = build_pipelines(model, detector, device, machine, not (args.quick or args.no_compile))
    variants = {name: v for name, v in VARIANTS.items() if v[0] in pipelines}
    seconds = min(args.seconds, 2.0) if args.quick else args.seconds
    rounds = 1 if args.quick else args.rounds
    source_photo = data.astronaut()[:, ::-1].copy()  # the mirrored astronaut as the source
    peaks = [matmul_peak_gflops(device)]
    flops = generator_flops(model, device)
    startup, summaries = {}, {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(Path(folder) / "camera.mp4", seconds, args.fps)
        sources = {}
        for key, pipeline in pipelines.items():
            sources[key] = pipeline.encode_source(source_photo)
            start = time.perf_counter()  # the first frames: torch.compile compiles here
            run_live(pipeline, sources[key], open_camera(clip, realtime=False), max_frames=2)
            startup[key] = {"first_two_frames_s": time.perf_counter() - start}
        for _ in range(rounds):
            for name, (key, options) in variants.items():
                summaries[name].append(run_live(pipelines[key], sources[key], open_camera(clip), **options))
    if "bf16+compile" in startup:  # compiling is start-up: what the first frames took beyond bf16's
        startup["bf16+compile"]["compile_s"] = (
            startup["bf16+compile"]["first_two_frames_s"] - startup["bf16"]["first_two_frames_s"]
        )
    peaks.append(matmul_peak_gflops(device))
    peak = max(peaks)
    results = {}
    for name, rounds_of in summaries.items():
        r = results[name] = merge(rounds_of)
        generator_s = r["stages"]["generator"]["median_ms"] / 1000
        r["generator_gflop_per_s"] = flops / generator_s / 1e9 if generator_s > 0 else None
        r["generator_fraction_of_peak"] = r["generator_gflop_per_s"] / peak if generator_s > 0 else None
        print(
            f"{name:34} {r['fps']:5.2f} fps, latency median {r['latency_ms']['median']:6.0f} ms "
            f"(p95 {r['latency_ms']['p95']:.0f}), swap {r['swap_ms']['median']:.0f} ms, generator "
            f"{r['stages']['generator']['median_ms']:.0f} ms, {r['frames_shown']} shown / {r['frames_dropped']} dropped"
        )
    best = max(results.values(), key=lambda r: r["fps"])
    rest_s = (best["swap_ms"]["mean"] - best["stages"]["generator"]["mean_ms"]) / 1000
    at_peak_s = flops / (peak * 1e9)
    ceiling = {
        "generator_gflop_per_face": flops / 1e9,
        "bf16_matmul_peak_gflop_per_s": peak,
        "bf16_matmul_peak_runs": peaks,
        "generator_s_at_peak": at_peak_s,
        "fps_generator_alone_at_peak": 1 / at_peak_s,
        "rest_of_frame_s_best_variant": rest_s,
        "fps_at_peak_with_the_rest_measured": 1 / (at_peak_s + rest_s),
        "what": "the generator's FLOPs at this run's bf16 matmul peak, plus the other stages as measured "
        "in the fastest variant: no schedule of this generator on this machine does better",
    }
    print(
        f"generator {flops / 1e9:.0f} GFLOP/face; bf16 peak {peak:.0f} GFLOP/s: at most "
        f"{ceiling['fps_generator_alone_at_peak']:.2f} fps from the generator alone, "
        f"{ceiling['fps_at_peak_with_the_rest_measured']:.2f} with the rest as measured"
    )
    save(
        "live",
        {
            "benchmark": "run_live from a recorded clip paced like a camera: fps, latency, stages",
            "machine": machine,
            "weights": weights_note(args.quick, 256),
            "clip": {"seconds": seconds, "fps": args.fps, "size": [640, 480], "faces": 1, "rounds": rounds},
            "detector": repr(detector),
            "timing_method": "each variant plays the clip once per round, variants interleaved per round; "
            "stages per frame shown from LiveSummary.stages_ms (0 where skipped), merged over rounds",
            "startup": startup | notes,
            "targets": {
                "fps": TARGET_FPS,
                "latency_ms": TARGET_LATENCY_MS,
                "what": "one face at 256 on a CPU",
            },
            "ceiling": ceiling,
            "results": results,
        },
        args,
    )


if __name__ == "__main__":
    main()
