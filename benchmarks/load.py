"""The app under concurrent users: 20 image swaps from 10 clients, batched against one at a time.

    python benchmarks/load.py           # the release-scale model at 256: about 15 minutes on 2 busy cores
    python benchmarks/load.py --quick   # tiny config, about 3 minutes

Two apps (`app.build_demo`, a queue of one worker as `python app.py` runs it) serve the same loaded
pipeline on 127.0.0.1: one with `/swap_image` as a Gradio batch (`--batch-size`, default 8, the
app's default on a GPU: up to 8 waiting requests through `HifiFacePipeline.swap_many`, their faces
in one generator call), one with batch size 1 (the app's default on a CPU: each request alone).
Each burst sends 20 requests from 10 `gradio_client` clients (each sends its next request when its
last one is answered), the astronaut (512 x 512, one face) into the astronaut. Reported per mode:
requests/s over the burst (first send to last answer), median and maximum latency of a request, and
the batch sizes the queue formed. The modes alternate for `--rounds` rounds (a shared machine slows
them alike); medians over rounds are compared.

The pure generator gain is measured in the same run, first (before any server or client thread
exists): `swap_faces` on 1, 4 and 8 faces (the pipeline's `batch_size` set to the count, so that
each is one generator call), interleaved, in a worker thread as the app runs it, as seconds per
face. On this project's CPU a face cost more in a batch than alone (8 at once: 0.52x the faces
per second), so batching cannot raise throughput there and each user waits for the whole batch; on
a GPU the per-face time falls with the batch. Writes benchmarks/results/load-<machine>.json.
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import (
    REPO,
    machine_info,
    parse_args,
    release_model,
    save,
    synchronize,
    timing_summary,
    tiny_model,
    weights_note,
)

CLIENTS = 10
REQUESTS = 20
GENERATOR_BATCHES = (1, 4, 8)


def load_app():
    spec = importlib.util.spec_from_file_location("hififace_app", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def burst(url: str, photo: Path, downloads: str) -> tuple[dict, list[str]]:
    """REQUESTS swaps from CLIENTS clients at once: throughput, latencies, and the result files."""
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False, download_files=downloads) for _ in range(CLIENTS)]

    def one(index: int) -> tuple[float, str]:
        start = time.perf_counter()
        result = clients[index % CLIENTS].predict(
            handle_file(photo), handle_file(photo), api_name="/swap_image"
        )
        return time.perf_counter() - start, result

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:  # a client's second request waits for its first answer
        answers = list(pool.map(one, range(REQUESTS)))
    wall = time.perf_counter() - start
    for client in clients:  # their heartbeat threads would otherwise run on through later rounds
        client.close()
    latencies = [latency for latency, _ in answers]
    stats = {
        "requests_per_s": REQUESTS / wall,
        "wall_s": wall,
        "median_latency_s": statistics.median(latencies),
        "max_latency_s": max(latencies),
    }
    return stats, [result for _, result in answers]


def generator_gain(pipeline, photo: np.ndarray, args) -> dict:
    """Seconds per face of `swap_faces` on 1, 4 and 8 faces, each one generator call, interleaved.

    Each timed call follows an untimed call of the same size. They run in a worker thread, as the
    app's handlers do: on this CPU the main thread ran one face 2.6x slower than a worker thread
    (6.6 s against 2.6 s, the same process and load) while eight faces ran at about the same speed
    in both, which made batching look like a gain that the app never sees.
    """
    source = pipeline.encode_source(photo)
    face = pipeline.detect_faces(photo)[0]

    def swap(count: int) -> None:
        pipeline.batch_size = count
        pipeline.swap_faces(source, [(photo, face)] * count)

    times: dict[int, list[float]] = {n: [] for n in GENERATOR_BATCHES}

    def rounds() -> None:
        for round_ in range(args.warmup + (args.repeats or (2 if args.quick else 3))):
            for n in GENERATOR_BATCHES:
                swap(n)
                synchronize(args.device)
                start = time.perf_counter()
                swap(n)
                synchronize(args.device)
                if round_ >= args.warmup:
                    times[n].append(time.perf_counter() - start)

    with ThreadPoolExecutor(1) as worker:
        worker.submit(rounds).result()
    out = {}
    for n in GENERATOR_BATCHES:
        summary = timing_summary(times[n], n)
        out[f"{n}_faces"] = {
            "median_s": summary["median_s"],
            "seconds_per_face": summary["seconds_per_image"],
        }
    one = out["1_faces"]["seconds_per_face"]
    for n in GENERATOR_BATCHES:
        out[f"{n}_faces"]["faces_per_s_over_batch_1"] = one / out[f"{n}_faces"]["seconds_per_face"]
    return out


def main() -> None:
    args = parse_args(
        __doc__.split("\n\n")[0],
        lambda p: (
            p.add_argument(
                "--rounds", type=int, help="bursts per mode, alternating (default 2; 1 with --quick)"
            ),
            p.add_argument(
                "--batch-size", type=int, default=8, help="the batched app's --batch-size (default 8)"
            ),
        ),
    )
    from gradio_client import Client, handle_file
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
    info = machine_info(args.device)
    gain = generator_gain(pipeline, data.astronaut(), args)  # first: nothing else runs in the process yet
    print("generator", gain)

    batches: list[int] = []
    swap_many = pipeline.swap_many

    def recorded_swap_many(requests, max_batch=None):
        batches.append(len(requests))
        return swap_many(requests, max_batch)

    pipeline.swap_many = recorded_swap_many
    modes = {"batched": args.batch_size, "one_at_a_time": 1}
    demos, urls = {}, {}
    for mode, size in modes.items():
        demos[mode] = app.build_demo(pipeline, examples_dir=work / "examples", batch_size=size)
        demos[mode].queue(default_concurrency_limit=1, max_size=app.MAX_QUEUE)
        _, urls[mode], _ = demos[mode].launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    first_results: dict[str, str] = {}
    try:
        for mode in modes:  # warm-up: one request each
            client = Client(urls[mode], verbose=False, download_files=str(work / f"downloads-{mode}"))
            client.predict(handle_file(photo), handle_file(photo), api_name="/swap_image")
            client.close()
        for _ in range(args.rounds or (1 if args.quick else 2)):
            for mode in modes:
                batches.clear()
                stats, files = burst(urls[mode], photo, str(work / f"downloads-{mode}"))
                stats["batch_sizes"] = list(batches)
                results[mode].append(stats)
                first_results.setdefault(mode, files[0])
                print(mode, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in stats.items()})
    finally:
        for demo in demos.values():
            demo.close()
    pictures = [np.asarray(Image.open(first_results[mode]).convert("RGB"), np.int16) for mode in modes]
    shutil.rmtree(work, ignore_errors=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    keys = ("requests_per_s", "wall_s", "median_latency_s", "max_latency_s")
    summary = {mode: {key: median(mode, key) for key in keys} for mode in modes}
    summary["throughput_batched_over_one_at_a_time"] = (
        summary["batched"]["requests_per_s"] / summary["one_at_a_time"]["requests_per_s"]
    )
    summary["median_latency_batched_over_one_at_a_time"] = (
        summary["batched"]["median_latency_s"] / summary["one_at_a_time"]["median_latency_s"]
    )
    summary["max_levels_batched_vs_one_at_a_time"] = int(np.abs(pictures[0] - pictures[1]).max())
    print(summary)
    save(
        "load",
        {
            "benchmark": f"{REQUESTS} /swap_image requests from {CLIENTS} clients, batched (--batch-size "
            f"{args.batch_size}) against one at a time, in alternating rounds; and swap_faces on "
            f"{', '.join(map(str, GENERATOR_BATCHES))} faces (one generator call each)",
            "weights": weights_note(args.quick, 256),
            "machine": info,
            "rounds": results,
            "generator_batch": gain,
            "summary": summary,
        },
        args,
    )


if __name__ == "__main__":
    main()
