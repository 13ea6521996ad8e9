"""What a fresh `hififace swap` of one photo costs, split into phases, against a warm swap measured
in the same run.

    python benchmarks/cold_start.py            # the 256 synthetic release; about 3 minutes on 2 cores
    python benchmarks/cold_start.py --quick    # tiny config, one round

Each round runs, one after another (so that a shared machine slows them alike):

- `command`: `python -m hififace swap --source S --target T --output O.png` in a fresh process, as a
  user types it; its wall time from launch to exit (for each `--dtypes`, default float32 and auto);
- `phases`: the same command in a fresh process through `cli.main`, with the pipeline's steps timed
  (`--probe`, internal): Python start-up; imports (torch, the package); model loading; the wait
  for the detector (its load in this process; for a tree that loads it in a child process,
  `hififace.faces.detector_process.DetectorProcess`, the start of that child and the wait for it,
  its own load time kept as `detector_in_child`); source encoding; the target's swap; writing;
- `warm`: `HifiFacePipeline.swap(source, target)` in this process with everything loaded, fp32:
  detection, alignment, the priors of source and target, the generator and the paste-back, the
  work of one swap without any of the start-up.

The ratio command / warm is the goal of issue 16 (at most 2 for fp32). With `--baseline-src DIR`
(an extracted copy of an earlier commit: `git archive 2f9aa14 | tar -x -C DIR`) each round also runs
the fp32 command and the phased command from DIR, for a before/after measured in the same run
against the same warm swap. With `--other-python PY` each round also runs this tree's fp32
command under another interpreter (a venv with another build of torch). Writes benchmarks/results/cold_start-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ["startup", "imports", "model", "detector", "source", "swap", "write"]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the synthetic release, saved)")
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "auto"], help="--dtype of the timed commands"
    )
    parser.add_argument(
        "--baseline-src", metavar="DIR", help="an earlier tree of this repository to time in the same rounds"
    )
    parser.add_argument(
        "--baseline-dtypes",
        nargs="+",
        default=["float32"],
        help="--dtype of the baseline's commands (default float32; trees before --dtype auto take float32 only)",
    )
    parser.add_argument(
        "--other-python",
        metavar="PY",
        help="another interpreter (a venv with PyTorch's CPU build, say) to time the fp32 command with, "
        "this tree's code, in the same rounds",
    )
    parser.add_argument("--probe", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # internal


def main() -> None:
    if "--probe" in sys.argv:  # the fresh process: before parse_args, so that nothing is imported yet
        return probe(sys.argv[sys.argv.index("--probe") + 1 :])
    # imported here, not at the top: the probe's fresh process must not pay for them
    import numpy as np
    from common import machine_info, parse_args, save, weights_note

    args = parse_args(__doc__.splitlines()[0], add_options)
    machine = machine_info("cpu")
    rounds = args.repeats or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model) if args.model else _save_model(tmp / "model", args.quick)
        source, target = _photos(tmp)
        command = ["--source", str(source), "--target", str(target), "--detector", "dlib", "--no-progress"]
        warm = _warm_pipeline(model_dir)
        warm.swap(source, target)  # warm-up: first-call allocations, oneDNN primitive caches
        times: dict[str, list[float]] = {f"command --dtype {d}": [] for d in args.dtypes}
        baseline = args.baseline_src and str(Path(args.baseline_src).resolve())
        baselines = [f"baseline --dtype {d}" for d in args.baseline_dtypes] if baseline else []
        other = f"fp32 command, {args.other_python}"
        times.update({name: [] for name in baselines + ([other] if args.other_python else [])})
        times["warm swap (fp32)"] = []
        phases: dict[str, list[dict]] = {"this tree": [], **({"baseline": []} if baseline else {})}
        cpu: dict[str, list[float]] = {}  # CPU seconds of each command, all its processes

        def argv(out: str, dtype: str) -> list[str]:
            return ["--model", str(model_dir), *command, "--output", str(tmp / out), "--dtype", dtype]

        def timed(name: str, python: str, out: str, dtype: str, src: str | None = None) -> None:
            swap = [python, "-m", "hififace", "swap", *argv(out, dtype)]
            times[name].append(_wall(swap, src, cpu.setdefault(name, [])))

        for i in range(rounds):
            for dtype in args.dtypes:
                timed(f"command --dtype {dtype}", sys.executable, f"out-{dtype}-{i}.png", dtype)
            if args.other_python:
                timed(other, args.other_python, f"x-{i}.png", "float32")
            for name, dtype in zip(baselines, args.baseline_dtypes, strict=True):
                timed(name, sys.executable, f"b-{dtype}-{i}.png", dtype, baseline)
            if baseline:
                phases["baseline"].append(_probe_run(argv("p.png", "float32"), baseline))
            phases["this tree"].append(_probe_run(argv("p.png", "float32")))
            start = time.perf_counter()
            warm.swap(source, target)
            times["warm swap (fp32)"].append(time.perf_counter() - start)
            print(f"round {i + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    medians = {k: float(np.median(v)) for k, v in times.items()}
    warm_s = medians["warm swap (fp32)"]
    result = {
        "benchmark": "fresh `hififace swap` of one photo against a warm in-process swap, same run",
        "machine": machine,
        "machine_after": {"load_average": [round(x, 2) for x in os.getloadavg()]},
        "weights": weights_note(args.quick, 256),
        "timing_method": f"{rounds} interleaved rounds (command per dtype, phased command, warm swap); medians",
        "times_s": {
            k: {"median": medians[k], "min": min(v), "max": max(v), "runs": v} for k, v in times.items()
        },
        "ratio_vs_warm_swap": {k: medians[k] / warm_s for k in medians},
        # each round's command over the warm swap of the same round: steadier on a shared machine
        "ratio_vs_warm_swap_per_round_median": {
            k: float(np.median([t / w for t, w in zip(v, times["warm swap (fp32)"], strict=True)]))
            for k, v in times.items()
        },
        "cpu_s_median": {k: float(np.median(v)) for k, v in cpu.items()},
        "cpu_s_runs": cpu,
        "baseline_src": baseline or None,
        "other_python": args.other_python and _torch_version(args.other_python),
        "phases_s_median": {
            tree: {p: float(np.median([r[p] for r in runs])) for p in [*PHASES, "other", "detector_in_child"]}
            for tree, runs in phases.items()
        },
        "phases_s_runs": phases,
    }
    if not args.quick:
        result["targets"] = {
            f"`hififace swap --dtype {d}` within 2x of one warm fp32 swap": {
                "ratio": result["ratio_vs_warm_swap"][f"command --dtype {d}"],
                "met": result["ratio_vs_warm_swap"][f"command --dtype {d}"] <= 2,
            }
            for d in args.dtypes
        }
    for k, v in result["ratio_vs_warm_swap"].items():
        print(f"{k:28} {medians[k]:6.2f} s  {v:5.2f}x the warm swap")
    for tree, medians_of in result["phases_s_median"].items():
        print(f"phases of {tree} (median s): " + ", ".join(f"{p} {s:.2f}" for p, s in medians_of.items()))
    save("cold_start", result, args)


def _wall(command: list[str], src: str | None = None, cpu: list[float] | None = None) -> float:
    """Wall seconds of `command`; appends its CPU seconds (its processes together) to `cpu`."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # run from the tree's own folder: `python -m` puts the working directory first on sys.path,
    # before PYTHONPATH, so from elsewhere in a checkout it would import that checkout's package
    cwd = src or str(Path(__file__).resolve().parents[1])
    subprocess.run(command, check=True, capture_output=True, env=_env(src), cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
    return wall


def _torch_version(python: str) -> dict[str, str]:
    done = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True, check=True
    )
    return {"python": python, "torch": done.stdout.strip()}


def _env(src: str | None = None) -> dict[str, str]:
    repo = src or str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": repo + (os.pathsep + path if path else "")}


def _probe_run(argv: list[str], src: str | None = None) -> dict:
    env = {**_env(src), "HIFIFACE_LAUNCHED_AT": repr(time.time())}
    done = subprocess.run(
        [sys.executable, __file__, "--probe", *argv], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(argv: list[str]) -> None:
    """In a fresh process: run `hififace swap` through `cli.main` with its steps timed; print JSON.

    Nothing is imported ahead of the command (a tree may start a detector process before torch's
    import): the pipeline's steps are wrapped as their modules are imported (`_after_import`).
    "imports" is the time from here to the model's loading, less the detector's start.
    """
    started = time.time()
    phases = {"startup": started - float(os.environ["HIFIFACE_LAUNCHED_AT"])}
    clock = time.perf_counter()
    spans: dict[str, list[tuple[float, float]]] = {}
    child: list[float] = []

    def timed(owner, name: str, phase: str) -> None:  # a plain function on the class: also for classmethods
        original = getattr(owner, name, None)
        if original is None:  # an older tree without it
            return

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spans.setdefault(phase, []).append((start, time.perf_counter()))

        setattr(owner, name, wrapper)

    def patch_pipeline(pipeline) -> None:
        timed(pipeline, "load_detector", "detector")
        timed(pipeline.HifiFacePipeline, "from_pretrained", "model")
        timed(pipeline.HifiFacePipeline, "encode_source", "source")
        timed(pipeline.HifiFacePipeline, "swap", "swap")
        timed(pipeline.SwapResult, "save", "write")

    def patch_detection(detection) -> None:
        process = getattr(detection, "DetectorProcess", None)
        if process is None:
            return
        timed(process, "__init__", "detector")
        timed(process, "wait", "detector")
        close = process.close

        def closing(self) -> None:
            child.append(self.load_seconds or 0.0)
            close(self)

        process.close = closing

    _after_import({"hififace.pipeline": patch_pipeline, "hififace.faces.detector_process": patch_detection})
    from hififace import cli

    if cli.main(["swap", *argv]) != 0:
        raise SystemExit("the probed command failed")
    # Nested calls (encode_source within encode_sources, the detector's load within from_pretrained
    # in older trees) are counted once, in the innermost phase.
    model_start, model_end = spans["model"][0]
    detector = _union(spans.get("detector", []))
    phases["imports"] = model_start - clock - _within(detector, clock, model_start)
    phases["model"] = model_end - model_start - _within(detector, model_start, model_end)
    phases["detector"] = _within(detector, clock, float("inf"))
    swap = _union(spans["swap"])
    source = _union(spans.get("source", []))
    phases["source"] = _within(source, clock, float("inf")) - sum(_within(source, a, b) for a, b in swap)
    phases["swap"] = _within(swap, clock, float("inf"))
    phases["write"] = _within(_union(spans["write"]), clock, float("inf"))
    phases["total_in_process"] = time.time() - started
    phases["other"] = phases["total_in_process"] - sum(phases[p] for p in PHASES[1:])
    phases["detector_in_child"] = sum(child)  # overlapped with the imports and the model: not in the total
    print(json.dumps(phases))


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _within(spans: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of the (disjoint) spans that lie between start and end."""
    return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)


def _after_import(patches: dict) -> None:
    """Call patches[name](module) right after each named module is first imported."""
    import importlib.abc
    import importlib.util

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in patches:
                return None
            sys.meta_path.remove(self)  # find the real spec, then wrap its loader
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            exec_module = spec.loader.exec_module

            def run(module) -> None:
                exec_module(module)
                patches.pop(name)(module)

            spec.loader.exec_module = run
            return spec

    sys.meta_path.insert(0, Finder())


def _save_model(folder: Path, quick: bool) -> Path:
    from common import release_model, tiny_model

    (tiny_model() if quick else release_model(256)).save_pretrained(folder)
    return folder


def _photos(folder: Path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(folder / "target.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(folder / "source.png")
    return folder / "source.png", folder / "target.png"


def _warm_pipeline(model_dir: Path):
    from hififace import HifiFacePipeline

    return HifiFacePipeline.from_pretrained(model_dir, detector="dlib", dtype="float32")


if __name__ == "__main__":
    main()
