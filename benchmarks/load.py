"""The app under concurrent users: 20 image swaps from 10 clients at once, batched against one at a time.

    python benchmarks/load.py           # the release-scale model at 256: a few minutes on 2 cores
    python benchmarks/load.py --quick   # tiny config, a minute

The app (`app.build_demo`, queue of one worker as `python app.py` runs it) is started on
127.0.0.1 twice: with Gradio batching of `/swap_image` (`batch=True`, `max_batch_size` = the
app's `MAX_BATCH`, its default on a GPU), and with `max_batch_size=1` (its default on a CPU:
every request through the generator alone). Each time
10 `gradio_client` clients send 2 requests each, all at once after one warm-up request; the
requests are the astronaut (512 x 512) put into the astronaut, so every request swaps one face.
Reported per mode: requests/s over the whole burst (first send to last answer) and the median and
maximum latency of a request. Modes alternate for `--rounds` rounds (a shared machine slows them
alike); the medians over rounds are compared. Writes benchmarks/results/load-<machine>.json.
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import REPO, machine_info, parse_args, release_model, save, tiny_model, weights_note

CLIENTS = 10
REQUESTS = 20


def load_app():
    spec = importlib.util.spec_from_file_location("hififace_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def burst(url: str, source: Path, target: Path) -> dict:
    """REQUESTS swaps from CLIENTS clients at once; throughput and latencies."""
    from gradio_client import Client, handle_file

    downloads = tempfile.mkdtemp(prefix="hififace-load-")
    clients = [Client(url, verbose=False, download_files=downloads) for _ in range(CLIENTS)]
    clients[0].predict(handle_file(source), handle_file(target), api_name="/swap_image")  # warm-up

    def one(index: int) -> float:
        start = time.perf_counter()
        clients[index % CLIENTS].predict(handle_file(source), handle_file(target), api_name="/swap_image")
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        latencies = list(pool.map(one, range(REQUESTS)))
    wall = time.perf_counter() - start
    return {
        "requests_per_s": REQUESTS / wall,
        "wall_s": wall,
        "median_latency_s": statistics.median(latencies),
        "max_latency_s": max(latencies),
    }


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0], lambda p: p.add_argument("--rounds", type=int, default=2))
    from PIL import Image
    from skimage import data

    from hififace import HifiFacePipeline

    app = load_app()
    work = Path(tempfile.mkdtemp(prefix="hififace-load-"))
    model = tiny_model() if args.quick else release_model(256)
    model.save_pretrained(work / "model")
    pipeline = HifiFacePipeline.from_pretrained(work / "model", detector="dlib").to(args.device)
    photo = work / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)

    batched_size = app.MAX_BATCH
    results: dict[str, list[dict]] = {"batched": [], "one_at_a_time": []}
    for _ in range(args.rounds):
        for mode, size in (("batched", batched_size), ("one_at_a_time", 1)):
            demo = app.build_demo(pipeline, examples_dir=work / "examples", max_batch=size)
            demo.queue(default_concurrency_limit=1, max_size=app.MAX_QUEUE)
            _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
            try:
                results[mode].append(burst(url, photo, photo))
            finally:
                demo.close()
            print(mode, {k: round(v, 3) for k, v in results[mode][-1].items()})

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    summary = {mode: {key: median(mode, key) for key in results[mode][0]} for mode in results}
    summary["throughput_ratio_batched_over_one_at_a_time"] = (
        summary["batched"]["requests_per_s"] / summary["one_at_a_time"]["requests_per_s"]
    )
    print(summary)
    save(
        "load",
        {
            "benchmark": f"{REQUESTS} /swap_image requests from {CLIENTS} clients at once, batched "
            f"(max_batch_size {batched_size}) against one at a time",
            "weights": weights_note(args.quick, 256),
            "machine": machine_info(args.device),
            "rounds": results,
            "summary": summary,
        },
        args,
    )


if __name__ == "__main__":
    main()
