"""Model cards state the licence per source of weights; one Hub repo holds the whole pipeline.

The card tests need only the core dependencies (pyproject's `dependencies` and pyyaml): .ci/run
runs them at the lowest allowed versions; the pipeline tests import `hififace.pipeline` inside.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from helpers import TINY, place_in_hub_cache, shipped_photos, tiny_model_dir

from hififace import HifiFace
from hififace.convert import save_converted
from hififace.hub import WEIGHTS_LICENSES, card_metadata, looks_like_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def front_matter(readme) -> dict:
    text = readme.read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---")[1])


@pytest.mark.parametrize("source", ["hififace-pytorch", "maum-ai"])
def test_converted_release_card_is_not_mit_and_names_the_arcface_part(tmp_path, source):
    torch.manual_seed(0)
    model = HifiFace(**TINY, sff=source)
    (tmp_path / "release.pth").write_bytes(b"not read: only hashed for the card")
    save_converted(model, tmp_path / "out", tmp_path / "release.pth", command=source, description="d")
    meta = front_matter(tmp_path / "out" / "README.md")
    assert meta["license"] == "other" and meta["license"] != "mit"
    assert meta["license_name"] == WEIGHTS_LICENSES[source].name
    assert meta["license_link"].startswith("https://")
    body = (tmp_path / "out" / "README.md").read_text()
    assert "ArcFace" in body and "insightface" in body and "non-commercial" in body


def test_card_metadata_per_source_base_model_and_datasets(tmp_path):
    torch.manual_seed(0)
    model = HifiFace(**TINY)
    meta = card_metadata("trained", base_model="someone/hififace-256", datasets=["someone/faces"])
    model.save_pretrained(tmp_path / "trained", model_card_kwargs=meta)
    card = front_matter(tmp_path / "trained" / "README.md")
    assert card["license"] == "other" and "insightface" in card["license_link"]
    assert card["base_model"] == "someone/hififace-256" and card["datasets"] == ["someone/faces"]
    # A permissive source stays a plain SPDX id, without the "other" fields.
    assert card_metadata("deep3d") == {"license": "mit", "weights_license": WEIGHTS_LICENSES["deep3d"].text}
    with pytest.raises(ValueError, match="unknown source of weights 'nope'"):
        card_metadata("nope")


def test_a_python_package_folder_does_not_make_a_repo_id_local(tmp_path, monkeypatch):
    # Inside a Space, the root holds the hififace/ package next to app.py.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hififace").mkdir()
    (tmp_path / "hififace" / "__init__.py").write_text("")
    (tmp_path / "models").mkdir()
    assert not looks_like_path("hififace/hififace-256")
    assert looks_like_path("models/hififace-256")


def test_pipeline_settings_round_trip_through_a_folder_and_the_hub_cache(tmp_path, tmp_path_factory):
    from hififace.pipeline import PIPELINE_SETTINGS, HifiFacePipeline, ModelLoadError

    pipeline = HifiFacePipeline.from_pretrained(
        tiny_model_dir(tmp_path_factory), detector="dlib", template="arcface", mask_erode=3, mask_blur=4
    )
    pipeline.save_pretrained(tmp_path / "pipe", model_card_kwargs=card_metadata("trained"))
    saved = json.loads((tmp_path / "pipe" / PIPELINE_SETTINGS).read_text())
    assert saved["detector"] == "dlib" and saved["template"] == "arcface" and saved["mask_blur"] == 4
    assert front_matter(tmp_path / "pipe" / "README.md")["license"] == "other"

    cache = tmp_path / "hub-cache"
    place_in_hub_cache(cache, "someone/tiny-hififace", tmp_path / "pipe", COMMIT, refs=("main", "v1"))
    for revision in ("v1", COMMIT):
        loaded = HifiFacePipeline.from_pretrained(
            "someone/tiny-hififace", revision=revision, cache_dir=cache, local_files_only=True
        )
        assert loaded.settings() == pipeline.settings()
        assert (loaded.template, loaded.mask_erode, loaded.detector_preference) == ("arcface", 3, "dlib")
        for name, value in pipeline.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], value), name
    # Arguments given to from_pretrained win over the saved settings.
    assert HifiFacePipeline.from_pretrained(tmp_path / "pipe", pipeline.detector, mask_blur=7).mask_blur == 7
    with pytest.raises(ModelLoadError, match="cannot load the model someone/tiny-hififace"):
        HifiFacePipeline.from_pretrained(
            "someone/tiny-hififace", revision="nope", cache_dir=cache, local_files_only=True
        )

    # The restored pipeline swaps like the one that was saved.
    photos = shipped_photos(tmp_path)
    before = pipeline.swap(photos["astronaut"], photos["astronaut"]).image
    after = loaded.swap(photos["astronaut"], photos["astronaut"]).image
    assert np.array_equal(np.asarray(before), np.asarray(after))


def test_unknown_saved_settings_are_refused(tmp_path, tmp_path_factory):
    from hififace.pipeline import PIPELINE_SETTINGS, HifiFacePipeline, ModelLoadError

    pipeline = HifiFacePipeline.from_pretrained(tiny_model_dir(tmp_path_factory), detector="dlib")
    pipeline.save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / PIPELINE_SETTINGS).write_text(json.dumps({"mask_blurr": 3}))
    with pytest.raises(ModelLoadError, match="unknown settings: mask_blurr"):
        HifiFacePipeline.from_pretrained(tmp_path / "pipe")


def test_evaluation_results_go_into_the_model_index(tmp_path):
    from huggingface_hub import ModelCard

    from hififace.cli import build_parser
    from hififace.evaluation.card import write_card_results

    torch.manual_seed(0)
    HifiFace(**TINY).save_pretrained(tmp_path / "model", model_card_kwargs=card_metadata("trained"))
    summary = {
        "metrics": {
            "identity_cosine": {"mean": 0.51234567, "ci95": [0.5, 0.52], "n": 40},
            "pose_error": {"mean": 3.2, "ci95": None, "n": 1},
            "fid": {"value": 12.5, "n": 40},
            "shape_error": {"mean": None, "ci95": None, "n": 0},  # not measured: left out
        }
    }
    write_card_results(tmp_path / "model", summary, "ff-pairs")
    write_card_results(tmp_path / "model", summary, "ff-pairs")  # again: replaced, not doubled
    card = ModelCard.load(tmp_path / "model" / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"identity_cosine", "pose_error", "fid"}
    assert results["identity_cosine"].metric_value == pytest.approx(0.512346)
    assert "95% CI" in results["identity_cosine"].metric_name and results["fid"].metric_value == 12.5
    meta = front_matter(tmp_path / "model" / "README.md")
    assert meta["model-index"][0]["results"][0]["dataset"]["name"] == "ff-pairs"
    assert meta["license"] == "other"  # the licence survives the rewrite
    args = build_parser().parse_args(["evaluate", "--out", "o", "--card", "m", "--card-dataset", "x"])
    assert (args.card, args.card_dataset) == ("m", "x")
    with pytest.raises(ValueError, match="no metric with a value"):
        write_card_results(tmp_path / "model", {"metrics": {}}, "empty")
