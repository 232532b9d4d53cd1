"""The README's main job, end to end on a reduced budget with the bundled model."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from llm4es_hf.cli import main

# The smallest budget of a whole run with the bundled model (also tests/test_quickstart_sources.py).
TINY_BUDGET = [
    *("--max-tokens", "32", "--embed-tokens", "48", "--train-steps", "2", "--batch-size", "2"),
    *("--gradient-accumulation-steps", "1", "--enrich-users", "1", "--enrich-new-tokens", "8"),
    *("--embed-batch-size", "32"),
]


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, capsys):
    code = main(
        [
            "quickstart",
            "--output-dir",
            str(tmp_path),
            "--frozen-baseline",
            *TINY_BUDGET,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "done in" in out and "llm4es-finetuned" in out and "aggregates" in out
    results = json.loads((tmp_path / "quickstart.json").read_text())
    assert set(results["stages"]) == {"corpus", "fine-tuning", "embedding", "evaluation", "index"}
    rows = {"aggregates", "bag", "frozen-smollm2", "llm4es-finetuned", "aggregates+llm4es-finetuned"}
    assert {f"{name}/lightgbm" for name in rows} | {"bag+llm4es-finetuned/logreg"} <= set(results["scores"])
    assert results["embedding"] == {"layer_start": 10, "layer_end": 20, "pooling": "mean", "max_length": 48}
    assert all(0.0 <= v <= 1.0 for v in results["scores"].values())
    assert set(results["out_of_fold"]) == set(results["scores"])
    gain = results["finetuned_vs_frozen_out_of_fold"]
    assert gain["ci95"][0] <= gain["delta"] <= gain["ci95"][1] and 0 < gain["p"] <= 1
    assert "fine-tuned vs frozen (LightGBM, out-of-fold)" in out
    assert "LLM4ES added to the aggregates (lightgbm, out-of-fold)" in out and "LLM4ES added to the bag" in out
    for added in results["added_out_of_fold"].values():
        assert added["ci95"][0] <= added["delta"] <= added["ci95"][1] and 0 < added["p"] <= 1
    assert "Δ out-of-fold [95% CI]" in (tmp_path / "evaluation" / "report.md").read_text()
    model = tmp_path / "model"
    assert (model / "modules.json").exists() and (model / "model.safetensors").exists()
    card = ModelCard.load(model / "README.md")
    assert 'from_pretrained("' in card.text and "num_hidden_layers=20)" in card.text and "hidden[10:]" in card.text
    assert card.data.eval_results and card.data.eval_results[0].dataset_name.startswith("MovieLens-100K")
    assert card.data.license == "apache-2.0" and card.text.lstrip().startswith("# llm4es-smollm2-movielens-100k\n")
    assert (tmp_path / "evaluation" / "report.png").exists()
    corpus = json.loads((tmp_path / "corpus" / "corpus_summary.json").read_text())
    assert corpus["counts"]["serialized"]["train"] + corpus["counts"]["serialized"]["test"] == 943

    # the index it wrote serves the demo: a known viewer, and new events embedded by the fine-tuned model
    from pathlib import Path

    from llm4es_hf.search import UserIndex
    from llm4es_hf.space import Demo

    demo = Demo(UserIndex.load(tmp_path / "index"))
    assert Path(demo.model) == model.resolve()
    _, neighbors, shares, _ = demo.known_user("10", 5, "gender")
    assert len(neighbors) == 5 and set(shares) <= {"F", "M"}
    example = Path(__file__).resolve().parents[1] / "spaces" / "llm4es-demo" / "examples" / "viewer.csv"
    text, neighbors, _, _ = demo.new_events(str(example), None, 5, "age")
    assert text.startswith("Movie|Rating") and "Blade Runner" in text and len(neighbors) == 5


def test_frozen_row_is_named_after_the_base_model():
    from llm4es_hf.quickstart import QuickstartConfig, base_label

    assert [base_label(m) for m in ("smollm2-135m", "gemma3-270m", "google/gemma-3-270m", "/x/My-Model/")] == [
        "smollm2",
        "gemma3",
        "gemma",
        "my",
    ]
    assert QuickstartConfig(model="gemma3-270m").generator == "smollm2-135m"  # Gemma-3-270m has no chat template
