"""Evaluation outputs: ``metrics.json`` (summary and per-pair scores), ``pairs.csv`` and ``report.html``.

The HTML report is one self-contained page apart from the thumbnails it links under ``grid/``: the
metric table (mean, 95% confidence interval, n), the failures and their reasons, a histogram of
each metric's per-pair scores (inline SVG, no plotting library needed) and a grid of source /
target / swapped faces and the model's masks for a sample of pairs (`write_thumbnails`).
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hififace.atomic import atomic_write
from hififace.imageio import save_image
from hififace.tensors import to_uint8_rgb

THUMBNAIL = 128  # side of the grid's pictures, in pixels
PER_PAIR_FIELDS = ("name", "status", "failure", "scores", "poses", "notes", "grid")
GRID_COLUMNS = (
    ("source", "source"),
    ("target", "target"),
    ("swapped", "swapped"),
    ("mask", "M_r"),
    ("mask_low", "M_low"),
)


def write_outputs(out: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    """Write metrics.json, pairs.csv and report.html into `out` (each atomically)."""
    per_pair = [{k: r.get(k) for k in PER_PAIR_FIELDS if r.get(k) is not None} for r in records]
    _write_text(out / "metrics.json", json.dumps({**summary, "per_pair": per_pair}, indent=2))
    _write_csv(out / "pairs.csv", summary, records)
    _write_text(out / "report.html", render_html(summary, records))


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _write_csv(path: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    names = [m for m in summary["metrics"] if m != "fid"]
    with atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "status", "failure", *names])
        for r in records:
            failure = (r.get("failure") or {}).get("message", "")
            writer.writerow(
                [r["name"], r["status"], failure, *[_csv_value(r["scores"].get(m)) for m in names]]
            )


def write_thumbnails(out: Path, key: str, pictures: dict[str, np.ndarray]) -> dict[str, str]:
    """128-px JPEGs of one pair for the report's grid, as ``out/grid/<key>_<role>.jpg``.

    Args:
        out (path): the evaluation's output folder.
        key (str): the pair's cache key.
        pictures (dict): by `GRID_COLUMNS` role: uint8 RGB images, or float masks in [0, 1]
            (``mask``, ``mask_low``). The swapped picture carries the AI-generated metadata.

    Returns:
        dict: role -> the thumbnail's path relative to `out`, for the roles given.
    """
    from hififace.pipeline import AI_METADATA

    (out / "grid").mkdir(exist_ok=True)
    written = {}
    for role, _ in GRID_COLUMNS:
        picture = pictures.get(role)
        if picture is None:
            continue
        picture = to_uint8_rgb(picture)
        path = out / "grid" / f"{key}_{role}.jpg"
        save_image(path, _thumbnail(picture), AI_METADATA if role == "swapped" else None, quality=90)
        written[role] = f"grid/{path.name}"
    return written


def _thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = THUMBNAIL / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))


def _csv_value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def render_html(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The report page as a string: header and settings, metric table, failures, histograms, sample grid."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>hififace evaluation</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}",
        "th{background:#f3f3f3}.num{text-align:right;font-variant-numeric:tabular-nums}",
        ".hists{display:flex;flex-wrap:wrap;gap:1em}.hist{border:1px solid #ddd;padding:.5em}",
        ".grid td{vertical-align:top;text-align:center;font-size:12px}.grid img{display:block;width:128px}",
        ".note{color:#8a5a00}.fail{color:#b00020}</style></head><body>",
        "<h1>hififace evaluation</h1>",
        f"<p>{summary['pairs']} pairs: {summary['scored']} scored, {summary['failures']['count']} failed "
        f"({summary['cache']['reused']} from the cache, {summary['cache']['computed']} computed now).</p>",
    ]
    e = html.escape
    settings = summary.get("settings", {})
    rows = "".join(
        f"<tr><th>{e(str(k))}</th><td>{e(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in settings.items()
        if k != "cache_key"
    )
    parts.append(f"<details><summary>settings</summary><table>{rows}</table></details>")
    parts += _metric_table(summary)
    parts += _failures(summary["failures"])
    parts += _histograms(summary, records)
    parts += _sample_grid(records)
    parts.append("</body></html>")
    return "\n".join(parts)


def _metric_table(summary: dict[str, Any]) -> list[str]:
    e = html.escape
    parts = ["<h2>Metrics</h2><table><tr><th>metric</th><th>mean</th><th>95% CI</th><th>n</th>"]
    parts.append("<th>better</th><th>definition</th></tr>")
    for name, m in summary["metrics"].items():
        if name == "fid":
            value = "—" if m.get("value") is None else f"{m['value']:.3f}"
            ci, n = "", m.get("n", "")
        else:
            value = "—" if m["mean"] is None else _fmt(name, m["mean"])
            ci = "" if m["ci95"] is None else f"[{_fmt(name, m['ci95'][0])}, {_fmt(name, m['ci95'][1])}]"
            n = m["n"]
        unit = f" ({m['unit']})" if m.get("unit") and m["unit"] != "fraction" else ""
        parts.append(
            f"<tr><td>{e(name)}{e(unit)}</td><td class='num'>{value}</td><td class='num'>{ci}</td>"
            f"<td class='num'>{n}</td><td>{m['better']}</td><td>{e(m['definition'])}</td></tr>"
        )
    parts.append(
        "</table><p>95% CI: Student's t interval of the mean over the scored pairs. ID retrieval ranks "
        f"each swapped face against {summary['metrics']['id_retrieval'].get('gallery', 0)} source faces.</p>"
    )
    for reason in summary.get("skipped", {}).values():
        parts.append(f"<p class='note'>{e(reason)}</p>")
    if summary["metrics"].get("fid", {}).get("warning"):
        parts.append(f"<p class='note'>FID: {e(summary['metrics']['fid']['warning'])}</p>")
    return parts


def _failures(failures: dict[str, Any]) -> list[str]:
    e = html.escape
    parts = ["<h2>Failures</h2>"]
    if failures["count"] == 0:
        return [*parts, "<p>none</p>"]
    parts.append("<table><tr><th>kind</th><th>count</th><th>meaning</th></tr>")
    for kind, info in failures["by_kind"].items():
        parts.append(
            f"<tr><td>{e(kind)}</td><td class='num'>{info['count']}</td><td>{e(info['meaning'])}</td></tr>"
        )
    parts.append("</table><details><summary>failed pairs</summary><ul>")
    for f in failures["pairs"][:500]:
        parts.append(f"<li class='fail'>{e(f['name'])}: {e(f['message'])}</li>")
    parts.append("</ul></details>")
    return parts


def _histograms(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    parts = ["<h2>Per-pair scores</h2><div class='hists'>"]
    for name in summary["metrics"]:
        values = [r["scores"][name] for r in records if r["scores"].get(name) is not None]
        if values:
            parts.append(f"<div class='hist'><b>{html.escape(name)}</b><br>{histogram_svg(values)}</div>")
    parts.append("</div>")
    return parts


def _sample_grid(records: Sequence[dict[str, Any]]) -> list[str]:
    e = html.escape
    sampled = [r for r in records if r.get("grid")]
    if not sampled:
        return []
    parts = ["<h2>Sample</h2><table class='grid'><tr><th>pair</th>"]
    parts += [f"<th>{label}</th>" for _, label in GRID_COLUMNS]
    parts.append("</tr>")
    for r in sampled:
        caption = e(r["name"])
        if r["status"] != "ok":
            caption += f"<br><span class='fail'>{e(r['failure']['message'])}</span>"
        else:
            caption += "".join(
                f"<br>{e(k)}: {_fmt(k, v)}" for k, v in r["scores"].items() if k != "id_retrieval"
            )
        parts.append(f"<tr><td style='text-align:left'>{caption}</td>")
        for key, label in GRID_COLUMNS:
            src = r["grid"].get(key)
            cell = f"<img src='{e(src)}' alt='{label} of {e(r['name'])}'>" if src else "—"
            parts.append(f"<td>{cell}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return parts


def histogram_svg(
    values: Sequence[float], width: int = 320, height: int = 150, bins: int | None = None
) -> str:
    """An inline SVG histogram of `values`: bars, the count scale, the range and the mean."""
    x = np.asarray(values, dtype=np.float64)
    bins = bins or int(min(20, max(5, math.ceil(math.sqrt(x.size)))))
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    left, bottom, top = 30, height - 20, 10
    plot_w, plot_h = width - left - 10, bottom - top
    peak = max(1, int(counts.max()))
    bar_w = plot_w / bins
    shapes = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='histogram of {x.size} values'>",
        f"<line x1='{left}' y1='{bottom}' x2='{left + plot_w}' y2='{bottom}' stroke='#444'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{bottom}' stroke='#444'/>",
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        shapes.append(
            f"<rect x='{left + i * bar_w + 1:.1f}' y='{bottom - h:.1f}' width='{max(bar_w - 2, 1):.1f}' "
            f"height='{h:.1f}' fill='#4a7ab7'><title>{edges[i]:.4g} to {edges[i + 1]:.4g}: {c}</title></rect>"
        )
    mean_x = left + plot_w * (x.mean() - lo) / (hi - lo)
    shapes += [
        f"<line x1='{mean_x:.1f}' y1='{top}' x2='{mean_x:.1f}' y2='{bottom}' stroke='#d9534f' stroke-dasharray='4 2'/>",
        f"<text x='{left}' y='{height - 5}' font-size='10'>{lo:.4g}</text>",
        f"<text x='{left + plot_w}' y='{height - 5}' font-size='10' text-anchor='end'>{hi:.4g}</text>",
        f"<text x='{mean_x:.1f}' y='{height - 5}' font-size='10' text-anchor='middle' fill='#d9534f'>"
        f"mean {x.mean():.4g}</text>",
        f"<text x='{left - 4}' y='{top + 8}' font-size='10' text-anchor='end'>{peak}</text>",
        f"<text x='{left - 4}' y='{bottom}' font-size='10' text-anchor='end'>0</text>",
        "</svg>",
    ]
    return "".join(shapes)


def _fmt(name: str, value: float) -> str:
    if name == "id_retrieval":
        return f"{100 * value:.2f}%"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
