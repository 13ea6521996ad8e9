"""Whole-image and per-video-frame swap time (`HifiFacePipeline`), and the peak memory of one swap.

    python benchmarks/pipeline.py           # about 3 minutes on a quiet 2-core CPU
    python benchmarks/pipeline.py --quick   # tiny config, seconds

Everything a user waits for: detection (dlib HOG, offline), alignment, the priors on the target, the
generator, mask softening and paste-back; the video also decodes and encodes H.264. The source face
is encoded once (`encode_source`), as `hififace swap` does.

- image: the astronaut (512 x 512, one face) with the largest face of insightface's t1.jpg put in.
- group: t1.jpg, all six faces (one batch of 8 through the generator).
- video: 8 frames of the astronaut drifting right (512 x 512), swapped in one batch.
- memory: a fresh process that loads the model and swaps one image, as `hififace swap` would; its
  peak resident set (VmHWM), which includes torch itself, the weights and the detector.

fp32 eager against the fast path (channels-last weights and bf16 autocast: `hififace.fast`).

With `--reference-src DIR` (an extracted copy of github.com/xuehy/HiFiFace-pytorch, not part of this
repository; `benchmarks/reference.py`) the network step of a swap, priors included (source and
target crops in, I_r out: what the pipeline runs per face), is timed for our model and for the
public code in the same interleaved rounds on the same synthetic weights and the same aligned
crops, fp32 eager, batch 1; without it the JSON says that comparison was not run.
Writes benchmarks/results/pipeline-<machine>.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from common import (
    PeakMemory,
    gb,
    machine_info,
    parse_args,
    print_table,
    release_model,
    run_interleaved,
    save,
    status_kb,
    timing_summary,
    tiny_model,
    weights_note,
)
from skimage import data

from hififace import HifiFacePipeline
from hififace.faces import load_detector
from hififace.fast import optimize
from hififace.video import swap_video

VIDEO_FRAMES = 8


def add_options(parser: argparse.ArgumentParser) -> None:
    # internal: the fresh process of the memory measurement
    parser.add_argument("--memory-probe", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument(
        "--reference-src", metavar="DIR", help="extracted HiFiFace-pytorch source: time it in the same rounds"
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_options)
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.dtype)
    device = torch.device(args.device)
    machine = machine_info(device)  # the load average before the runs
    repeats = args.repeats or (1 if args.quick else 2)
    model = (tiny_model() if args.quick else release_model(256)).to(device)
    fast_model = optimize(copy.deepcopy(model), channels_last=True)
    detector = load_detector("dlib")
    pipelines = {
        "fp32": HifiFacePipeline(model, detector),
        "channels_last+bf16": HifiFacePipeline(fast_model, detector, dtype="bfloat16"),
    }
    astronaut = data.astronaut()
    group = _photo("t1.jpg")
    source_image = group if group is not None else astronaut[:, ::-1]
    sources = {name: p.encode_source(source_image) for name, p in pipelines.items()}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = _write_clip(tmp / "clip.mp4", astronaut)
        jobs = {
            "image": (1, lambda p, s: np.asarray(p.swap(s, astronaut).image)),
            "video": (
                VIDEO_FRAMES,
                lambda p, s: swap_video(p, s, clip, tmp / "out.mp4", batch_size=8).swapped,
            ),
        }
        if group is not None:
            jobs["group"] = (6, lambda p, s: np.asarray(p.swap(s, group, face="all").image))
        results = {}
        for job, (faces, fn) in jobs.items():
            print(f"\n== {job}: {faces} face(s) ==", flush=True)
            runners = {name: (lambda p=p, s=sources[name], fn=fn: fn(p, s)) for name, p in pipelines.items()}
            record = run_interleaved(runners, args.warmup, repeats, device)
            results[job] = _rows(record, faces, job)
        comparison = _reference_comparison(
            args, model, pipelines["fp32"], source_image, astronaut, device, repeats
        )
        memory = {}
        if device.type == "cpu":
            model.save_pretrained(tmp / "model")
            for dtype in ("float32", "bfloat16"):
                memory[dtype] = _run_probe(tmp / "model", dtype, args)
                m = memory[dtype]
                print(
                    f"one 256 swap of the astronaut in a fresh process, {dtype}: peak {gb(m['peak_rss_bytes'])} "
                    f"(loading {gb(m['peak_rss_while_loading_bytes'])}, swap {gb(m['peak_rss_during_the_swap_bytes'])})"
                )
    result = {
        "benchmark": "HifiFacePipeline: whole image, group photo, video frames; peak memory of one swap",
        "machine": machine,
        "weights": weights_note(args.quick, 256),
        "detector": repr(detector),
        "timing_method": f"{args.warmup} warm-up + {repeats} timed runs per variant, variants interleaved per round",
        "jobs": results,
        "reference_comparison": comparison,
        "one_swap_peak_memory": memory,
    }
    if memory and not args.quick:
        peak = memory["float32"]["peak_rss_bytes"]
        result["targets"] = {
            "peak memory of a 256 swap of one image on CPU under 2.5 GB": {"bytes": peak, "met": peak < 2.5e9}
        }
    save("pipeline", result, args)


def _reference_comparison(args, model, pipeline, source_image, target_image, device, repeats: int) -> dict:
    """Our model's swap step (priors + generator) against HiFiFace-pytorch's on the same crops, same run."""
    if not args.reference_src:
        return {"run": False, "why": "no --reference-src DIR given: the same-run comparison was not run"}
    if args.quick:
        return {"run": False, "why": "--quick uses the tiny config; the public code has only the 256 one"}
    from reference import reference_generator

    from hififace.faces import align_face
    from hififace.tensors import images_to_tensor

    theirs = reference_generator(args.reference_src).to(device)
    crops = []
    for image in (source_image, target_image):
        face = max(pipeline.detect_faces(image), key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        crops.append(align_face(image, face.landmarks, 256, pipeline.template)[0])
    source, target = (images_to_tensor([c], device) for c in crops)

    def ours():
        with torch.inference_mode():
            return model(source, target).image

    def public():
        with torch.inference_mode():
            return theirs(source, target)[0]

    print("\n== swap step with priors, batch 1: ours vs HiFiFace-pytorch ==", flush=True)
    record = run_interleaved({"ours": ours, "hififace-pytorch": public}, args.warmup, repeats, device)
    rows = {name: timing_summary(r["times"], 1) for name, r in record.items()}
    difference = float((record["ours"]["output"] - record["hififace-pytorch"]["output"]).abs().max())
    ratio = rows["ours"]["median_s"] / rows["hififace-pytorch"]["median_s"]
    print(
        f"ours {rows['ours']['median_s']:.2f} s, HiFiFace-pytorch {rows['hififace-pytorch']['median_s']:.2f} s: "
        f"ratio {ratio:.2f}, max |dI_r| {difference:.1e}"
    )
    return {
        "run": True,
        "what": "priors + generator on one aligned (source, target) pair, fp32 eager, batch 1, same weights",
        "source": str(args.reference_src),
        "variants": rows,
        "ratio_ours_over_hififace_pytorch": ratio,
        "max_abs_difference_of_I_r": difference,
    }


def _rows(record: dict, faces: int, job: str) -> dict:
    base = timing_summary(record["fp32"]["times"], faces)["median_s"]
    rows = {}
    for name, r in record.items():
        row = timing_summary(r["times"], faces)
        row["ratio_vs_fp32"] = row["median_s"] / base
        row["peak_memory_bytes"] = r["peak_bytes"]
        if job != "video":  # the whole output image, uint8, against fp32's
            diff = np.abs(r["output"].astype(np.int16) - record["fp32"]["output"].astype(np.int16))
            row["difference_vs_fp32"] = {"mean_levels": float(diff.mean()), "max_levels": int(diff.max())}
        rows[name] = row
    print_table(
        [
            {"variant": k, **v, "lvl": v.get("difference_vs_fp32", {}).get("mean_levels")}
            for k, v in rows.items()
        ],
        [
            ("variant", "variant", "s"),
            ("s/call", "median_s", ".2f"),
            ("s/face", "seconds_per_image", ".3f"),
            ("min s", "min_s", ".2f"),
            ("max s", "max_s", ".2f"),
            ("vs fp32", "ratio_vs_fp32", ".2f"),
            ("mean lvl", "lvl", ".3f"),
        ],
    )
    return rows


def _photo(name: str) -> np.ndarray | None:
    spec = importlib.util.find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "images" / name if spec and spec.origin else None
    if path is None or not path.is_file():
        return None
    from hififace.imageio import load_image

    return load_image(path)


def _write_clip(path: Path, photo: np.ndarray) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = photo.shape[1], photo.shape[0], "yuv420p"
        for i in range(VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(np.roll(photo, 3 * i, axis=1)), format="rgb24"
            )
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _run_probe(model_dir: Path, dtype: str, args) -> dict:
    command = [sys.executable, __file__, "--memory-probe", str(model_dir), "--dtype", dtype]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_probe(model_dir: str, dtype: str) -> None:
    """In a fresh process: load the pipeline, swap one image, print the peak resident sets as JSON."""
    pipeline = HifiFacePipeline.from_pretrained(model_dir, detector="dlib", dtype=dtype)
    if dtype != "float32":
        optimize(pipeline.model, channels_last=True)
    loading_peak, loaded = status_kb("VmHWM") * 1024, status_kb("VmRSS") * 1024
    with PeakMemory("cpu") as swap:
        astronaut = data.astronaut()
        pipeline.swap(astronaut[:, ::-1], astronaut)
    result = {
        "peak_rss_bytes": max(loading_peak, swap.peak),
        "peak_rss_while_loading_bytes": loading_peak,
        "rss_after_loading_bytes": loaded,
        "peak_rss_during_the_swap_bytes": swap.peak,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
