"""ONNX export of the full-size generator and identity extractor, checked and timed with onnxruntime.

    python benchmarks/onnx_export.py           # about 2 minutes on a quiet 2-core CPU
    python benchmarks/onnx_export.py --quick   # tiny config, seconds

Exports with `hififace.export` (what `hififace export-onnx --dynamic-batch --identity` writes), then
runs the files with onnxruntime's CPU provider against PyTorch fp32 eager on the same inputs (the
fixture faces): maximum differences of every output and the ratio of the times, interleaved.
Writes benchmarks/results/onnx_export-<machine>.json.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from common import (
    faces,
    image_difference,
    machine_info,
    parse_args,
    print_table,
    release_model,
    run_interleaved,
    save,
    timing_summary,
    tiny_model,
    weights_note,
)

from hififace.export import GENERATOR_OUTPUTS, export_identity_onnx, export_onnx
from hififace.fast import inference_context

BATCHES = {"full": (1, 8), "quick": (1, 2)}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or (1 if args.quick else 3)
    model = tiny_model() if args.quick else release_model(256)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    result = {
        "benchmark": "ONNX export (generator with v_sid input, identity extractor) and onnxruntime vs PyTorch",
        "machine": machine_info("cpu"),
        "weights": weights_note(args.quick, 256),
        "onnxruntime": onnxruntime.__version__,
        "exporter": "torch.onnx.export(dynamo=False), opset 17, dynamic batch",
        "timing_method": f"{args.warmup} warm-up + {repeats} timed runs per variant, variants interleaved per round",
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, export in (("generator", export_onnx), ("identity", export_identity_onnx)):
            path = Path(tmp) / f"{name}.onnx"
            start = time.perf_counter()
            export(model, path, dynamic_batch=True)
            files[name] = {"export_s": time.perf_counter() - start, "bytes": path.stat().st_size}
            print(
                f"exported the {name} in {files[name]['export_s']:.1f} s, {path.stat().st_size / 1e6:.0f} MB"
            )
        result["files"] = files
        sessions = {
            name: onnxruntime.InferenceSession(
                str(Path(tmp) / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
            )
            for name in files
        }
        result["generator"] = [
            benchmark_generator(model, sessions["generator"], batch, args.warmup, repeats)
            for batch in BATCHES["quick" if args.quick else "full"]
        ]
        result["identity"] = check_identity(model, sessions["identity"])
    save("onnx_export", result, args)


def benchmark_generator(model, session, batch: int, warmup: int, repeats: int) -> dict:
    print(f"\n== generator 256x256, batch {batch}: PyTorch fp32 eager vs onnxruntime ==", flush=True)
    sources, targets = faces(batch, 256)
    with inference_context():
        v_sid = model.identity(sources, targets)
    feeds = {"target": targets.numpy(), "v_sid": v_sid.numpy()}

    def pytorch():
        with inference_context():
            return model.generate(targets, v_sid)

    def ort():
        return dict(
            zip(GENERATOR_OUTPUTS, (torch.from_numpy(o) for o in session.run(None, feeds)), strict=True)
        )

    record = run_interleaved({"fp32": pytorch, "onnxruntime": ort}, warmup, repeats, "cpu")
    rows = {}
    for name, r in record.items():
        row = timing_summary(r["times"], batch)
        row["ratio_vs_fp32"] = row["median_s"] / timing_summary(record["fp32"]["times"], batch)["median_s"]
        row["difference_vs_fp32"] = image_difference(r["output"]["image"], record["fp32"]["output"]["image"])
        row["max_abs_difference_per_output"] = {
            k: float((v - record["fp32"]["output"][k]).abs().max()) for k, v in r["output"].items()
        }
        rows[name] = row
    print_table(
        [
            {"variant": k, **v, "max": max(v["max_abs_difference_per_output"].values())}
            for k, v in rows.items()
        ],
        [
            ("variant", "variant", "s"),
            ("s/img", "seconds_per_image", ".3f"),
            ("img/s", "images_per_s", ".2f"),
            ("vs fp32", "ratio_vs_fp32", ".2f"),
            ("max|d| any output", "max", ".2e"),
        ],
    )
    return {"image_size": 256, "batch": batch, "variants": rows}


def check_identity(model, session) -> dict:
    sources, targets = faces(2, 256)
    with inference_context():
        expected = model.identity(sources, targets)
    (produced,) = session.run(None, {"source": sources.numpy(), "target": targets.numpy()})
    diff = float((torch.from_numpy(produced) - expected).abs().max())
    print(f"\nidentity extractor, batch 2: onnxruntime vs PyTorch max |d v_sid| = {diff:.2e}")
    return {"batch": 2, "max_abs_difference_v_sid": diff}


if __name__ == "__main__":
    main()
