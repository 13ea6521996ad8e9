"""Evaluation results in a model card: `hififace evaluate --card MODEL_DIR` fills its `model-index`.

The Hub reads `model-index` (https://huggingface.co/docs/hub/model-cards#evaluation-results) from
the card's YAML header and shows the results on the model page. Each metric's mean goes in, with
its 95% interval and pair count in the metric's name, so a reader sees how much it can vary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TASK = ("image-to-image", "Face swapping")


def write_card_results(
    model_dir: str | os.PathLike, summary: dict[str, Any], dataset_name: str, dataset_type: str = "custom"
) -> Path:
    """Put the metrics of an evaluation `summary` into the `model-index` of MODEL_DIR/README.md.

    Earlier results on the same data set are replaced; those on other data sets are kept.

    Args:
        model_dir (str or path): the model folder; its README.md must exist (`save_pretrained`
            and `hififace convert` write one).
        summary (dict): `EvaluationResult.summary` (its "metrics": name -> {"mean", "ci95", "n"} or
            {"value", "n"} for FID).
        dataset_name (str): the evaluation set's name, as the card shows it.
        dataset_type (str, default "custom"): a Hub data set id when the set is one.

    Raises:
        FileNotFoundError: MODEL_DIR has no README.md.
        ValueError: the summary has no metric with a value.
    """
    from huggingface_hub import EvalResult, ModelCard

    card_path = Path(model_dir) / "README.md"
    if not card_path.is_file():
        raise FileNotFoundError(
            f"{model_dir} has no README.md: not a model folder (save_pretrained writes one)"
        )
    results = []
    for metric, stats in summary.get("metrics", {}).items():
        value = stats.get("value", stats.get("mean"))
        if value is None:
            continue
        ci = stats.get("ci95")
        name = f"{metric} (n={stats.get('n')}" + (f", 95% CI {ci[0]:.4f}..{ci[1]:.4f})" if ci else ")")
        results.append(
            EvalResult(
                task_type=TASK[0],
                task_name=TASK[1],
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                metric_type=metric,
                metric_name=name,
                metric_value=round(float(value), 6),
            )
        )
    if not results:
        raise ValueError("the evaluation has no metric with a value to put into the card")
    card = ModelCard.load(card_path)
    kept = [r for r in (card.data.eval_results or []) if r.dataset_name != dataset_name]
    card.data.eval_results = kept + results
    card.data.model_name = card.data.model_name or Path(model_dir).resolve().name
    card.save(card_path)
    return card_path
