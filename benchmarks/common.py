"""What the benchmark scripts share: models, inputs, timing, memory, FLOPs, differences and JSON.

Timing: the variants of one configuration run in interleaved rounds (fp32 eager, then each fast
path, then again), after warm-up rounds, so that a machine shared with other jobs slows them alike;
every speed-up is the ratio of medians against fp32 eager of the same run.

Peak memory on the CPU is the process's resident set: Linux's VmHWM, reset before each run by
writing 5 to /proc/self/clear_refs (tracemalloc does not see torch's allocations). It includes the
weights, the torch libraries and the Python heap; `increase` is the peak minus the resident set just
before the run. On CUDA it is `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
FIXTURES = REPO / "tests" / "fixtures"
RELEASE_TSV = FIXTURES / "hififace_pytorch_generator_state_dict.tsv"
TINY = {"base_channels": 8, "max_channels": 16, "arcface_depth": 18}


def parse_args(
    description: str, add: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every script has, and the script's own (`add`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny config, one size, few runs (CI smoke run)")
    parser.add_argument("--repeats", type=int, help="timed runs per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per variant first (default 1)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--machine", help="name in the JSON file name (default: from the CPU or GPU model)")
    parser.add_argument(
        "--out-dir", type=Path, default=RESULTS, help="where the JSON goes (benchmarks/results)"
    )
    if add is not None:
        add(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


# ------------------------------------------------------------------------------------------ models


def release_model(image_size: int = 256, seed: int = 0):
    """The public release layout with weights of the released network's scale.

    256: every tensor of HiFiFace-pytorch's generator file with the seeded values of
    `tests/synthetic.py`, through the real converter. 512: no public weights exist; random
    initialisation (seed), so its differences are those of an untrained network.
    """
    from hififace import HifiFace
    from hififace.convert import HIFIFACE_PYTORCH_KEYS, load_converted

    if image_size != 256:
        torch.manual_seed(seed)
        return HifiFace(image_size=image_size).eval()
    sys.path.insert(0, str(REPO / "tests"))
    from synthetic import build

    return load_converted(HifiFace(), build(RELEASE_TSV, seed), HIFIFACE_PYTORCH_KEYS)


def tiny_model(seed: int = 0):
    from hififace import HifiFace

    torch.manual_seed(seed)
    return HifiFace(**TINY).eval()


def weights_note(quick: bool, image_size: int) -> str:
    if quick:
        return "tiny config, random weights (seed 0)"
    if image_size == 256:
        return "synthetic public release (tests/synthetic.py seed 0, converted): activations of the released network's scale"
    return "random weights (seed 0): no public 512 weights exist"


def faces(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sources, targets) of `batch` aligned faces: the two fixture faces, flipped and shifted in
    brightness to make `batch` different pictures, resized to `size`."""
    golden = np.load(FIXTURES / "hififace_pytorch_golden.npz")
    a = torch.from_numpy(golden["source_u8"]).float() / 255
    b = torch.from_numpy(golden["target_u8"]).float() / 255
    pool = []
    for i in range(batch + 1):
        face = (a, b)[i % 2]
        face = face.flip(-1) if (i // 2) % 2 else face
        pool.append((face * (1 - 0.04 * (i // 4)) + 0.02 * (i // 4)).clamp(0, 1))
    images = torch.cat(pool)
    if size != images.shape[-1]:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
    return images[1:], images[:-1]  # every target has another face as its source


# -------------------------------------------------------------------------------------- measuring


def cold_compile_cache() -> str:
    """Give torch.compile an empty cache (unless TORCHINDUCTOR_CACHE_DIR is set), so that the compile
    time measured is a first compilation's, not a cache hit of an earlier run."""
    import atexit
    import shutil
    import tempfile

    if "TORCHINDUCTOR_CACHE_DIR" in os.environ:
        return f"TORCHINDUCTOR_CACHE_DIR={os.environ['TORCHINDUCTOR_CACHE_DIR']} (as given; may be warm)"
    folder = tempfile.mkdtemp(prefix="hififace-inductor-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return "empty (a new TORCHINDUCTOR_CACHE_DIR): cold compilation"


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory of what runs inside `with PeakMemory(device) as m:`; `m.peak`, `m.increase` in bytes."""

    method_cpu = "process VmHWM (peak resident set), reset through /proc/self/clear_refs before each run"
    method_cuda = "torch.cuda.max_memory_allocated, reset before each run"

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.peak = self.increase = 0

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = status_kb("VmHWM") * 1024
        self.increase = self.peak - self.before


def status_kb(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_interleaved(
    variants: dict[str, Callable[[], Any]], warmup: int, repeats: int, device: torch.device | str
) -> dict[str, dict]:
    """Run every variant `warmup` + `repeats` times in interleaved rounds.

    Returns per variant: `times` (seconds of the timed runs), `first_s` (the first call, which includes
    compilation for compiled variants), `peak_bytes` and `increase_bytes` (largest over the timed runs)
    and `output` (the last run's result).
    """
    record = {name: {"times": [], "peak_bytes": 0, "increase_bytes": 0} for name in variants}
    for round_ in range(warmup + repeats):
        for name, fn in variants.items():
            with PeakMemory(device) as memory:
                synchronize(device)
                start = time.perf_counter()
                output = fn()
                synchronize(device)
                elapsed = time.perf_counter() - start
            r = record[name]
            if round_ == 0:
                r["first_s"] = elapsed
            if round_ >= warmup:
                r["times"].append(elapsed)
                r["peak_bytes"] = max(r["peak_bytes"], memory.peak)
                r["increase_bytes"] = max(r["increase_bytes"], memory.increase)
            r["output"] = output
    return record


def timing_summary(times: list[float], items: int, flops_per_item: float | None = None) -> dict:
    """Median, spread and throughput of timed runs that each process `items` images."""
    median = float(np.median(times))
    summary = {
        "runs": len(times),
        "median_s": median,
        "min_s": float(min(times)),
        "max_s": float(max(times)),
        "spread": float((max(times) - min(times)) / median),
        "seconds_per_image": median / items,
        "images_per_s": items / median,
    }
    if flops_per_item:
        summary["achieved_gflop_per_s"] = flops_per_item * items / median / 1e9
    return summary


def matmul_peak_gflops(
    device: torch.device | str, dtype: torch.dtype = torch.bfloat16, repeats: int = 5
) -> float:
    """The best of `repeats` 2048^2 matrix products, in GFLOP/s (int8: GOP/s, through
    `torch._int_mm`, int32 sums): what this machine can do now."""
    n = 2048
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), device=device, dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), device=device, dtype=torch.int8)
        product = torch._int_mm
    else:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        product = torch.matmul
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        product(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of `fn` by `torch.utils.flop_counter` (convolutions and matrix products, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Totals only: the per-module breakdown's autograd hooks fail under `autograd.grad` (the R1
    # penalty of a training step), so every FLOP goes to "Global" without tracking modules.
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return counter.get_total_flops()


class _GlobalOnly:
    parents = ("Global",)

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def image_difference(image: torch.Tensor, reference: torch.Tensor) -> dict:
    """Absolute difference of two [0, 1] images, as floats and in 8-bit levels (each rounded to uint8)."""
    image, reference = image.detach().float().cpu(), reference.detach().float().cpu()
    diff = (image - reference).abs()

    def q(x: torch.Tensor) -> torch.Tensor:
        return (x.clamp(0, 1) * 255).round()

    levels = (q(image) - q(reference)).abs()
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "mean_levels": float(levels.mean()),
        "max_levels": int(levels.max()),
        "fraction_over_2_levels": float((levels > 2).float().mean()),
    }


# ------------------------------------------------------------------------------------- machine, JSON


def machine_info(device: torch.device | str) -> dict:
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": [
            f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16") if f in _cpu_flags()
        ],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp default, active spinning)"),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "git_commit": _git_commit(),
        "load_average_at_start": list(os.getloadavg()),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_name(device: torch.device | str) -> str:
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu{os.cpu_count()}-{_cpu_model()}"
    name = re.sub(r"\((r|tm)\)|processor|cpu @.*", "", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def memory_method(device: torch.device | str) -> str:
    """How `PeakMemory` measures on this device, for the JSON."""
    return PeakMemory.method_cuda if torch.device(device).type == "cuda" else PeakMemory.method_cpu


def save(name: str, result: dict, args: argparse.Namespace) -> Path:
    """Write `result` (with the command that made it) to `<out-dir>/<name>-<machine>.json`, say where."""
    result = {"benchmark": result.pop("benchmark"), "command": "python " + " ".join(sys.argv), **result}
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    machine = args.machine or machine_name(args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"{name}{'-quick' if args.quick else ''}-{machine}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print dicts as an aligned table; columns are (header, key, format)."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append([("" if row.get(k) is None else format(row[k], f)) for _, k, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))
