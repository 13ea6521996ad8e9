"""What a fresh `hififace swap` of one photo costs, split into phases, against a warm swap measured
in the same run.

    python benchmarks/cold_start.py            # the 256 synthetic release; about 3 minutes on 2 cores
    python benchmarks/cold_start.py --quick    # tiny config, one round

Each round runs, one after another (so that a shared machine slows them alike):

- `command`: `python -m hififace swap --source S --target T --output O.png` in a fresh process, as a
  user types it; its wall time from launch to exit (for each `--dtypes`, default float32 and auto);
- `phases`: the same command in a fresh process through `cli.main`, with the pipeline's steps timed
  (Python start-up, imports, model loading, detector loading, source encoding, the target's swap,
  writing; `--probe`, internal);
- `warm`: `HifiFacePipeline.swap(source, target)` in this process with everything loaded, fp32:
  detection, alignment, the priors of source and target, the generator and the paste-back, the
  work of one swap without any of the start-up.

The ratio command / warm is the goal of issue 16 (at most 2 for fp32). Writes
benchmarks/results/cold_start-<machine>.json.
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
        times["warm swap (fp32)"] = []
        phases: list[dict] = []
        for i in range(rounds):
            for dtype in args.dtypes:
                out = tmp / f"out-{dtype}-{i}.png"
                argv = ["--model", str(model_dir), *command, "--output", str(out), "--dtype", dtype]
                times[f"command --dtype {dtype}"].append(
                    _wall([sys.executable, "-m", "hififace", "swap", *argv])
                )
            phases.append(_probe_run(["--model", str(model_dir), *command, "--output", str(tmp / "p.png")]))
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
        "phases_s_median": {p: float(np.median([r[p] for r in phases])) for p in PHASES},
        "phases_s_runs": phases,
    }
    if not args.quick and "float32" in args.dtypes:
        ratio = result["ratio_vs_warm_swap"]["command --dtype float32"]
        result["targets"] = {
            "fp32 command within 2x of one warm fp32 swap": {"ratio": ratio, "met": ratio <= 2}
        }
    for k, v in result["ratio_vs_warm_swap"].items():
        print(f"{k:28} {medians[k]:6.2f} s  {v:5.2f}x the warm swap")
    print("phases (median s): " + ", ".join(f"{p} {s:.2f}" for p, s in result["phases_s_median"].items()))
    save("cold_start", result, args)


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=_env())
    return time.perf_counter() - start


def _env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": repo + (os.pathsep + path if path else "")}


def _probe_run(argv: list[str]) -> dict:
    env = {**_env(), "HIFIFACE_LAUNCHED_AT": repr(time.time())}
    done = subprocess.run(
        [sys.executable, __file__, "--probe", *argv], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(argv: list[str]) -> None:
    """In a fresh process: run `hififace swap` through `cli.main` with its steps timed; print JSON."""
    started = time.time()
    phases = {"startup": started - float(os.environ["HIFIFACE_LAUNCHED_AT"])}
    clock = time.perf_counter()
    import torch  # noqa: F401  (what `hififace swap` imports before it loads anything)
    import tqdm  # noqa: F401

    from hififace import cli, pipeline

    phases["imports"] = time.perf_counter() - clock
    spent: dict[str, float] = {}

    def timed(owner, name: str, phase: str) -> None:  # a plain function on the class: also for classmethods
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[phase] = spent.get(phase, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(pipeline, "load_detector", "detector")
    timed(pipeline.HifiFacePipeline, "from_pretrained", "model")
    timed(pipeline.HifiFacePipeline, "encode_source", "source")
    timed(pipeline.HifiFacePipeline, "swap", "swap")
    timed(pipeline.SwapResult, "save", "write")
    if cli.main(["swap", *argv]) != 0:
        raise SystemExit("the probed command failed")
    spent["model"] -= spent.get("detector", 0.0)  # from_pretrained loads both
    phases.update({p: spent.get(p, 0.0) for p in PHASES[2:]})
    phases["total_in_process"] = time.time() - started
    phases["other"] = phases["total_in_process"] - sum(phases[p] for p in PHASES[1:])
    print(json.dumps(phases))


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
