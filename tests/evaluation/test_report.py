"""The report: Markdown, JSON, plot and eval results for the model card."""

from __future__ import annotations

import json

import pytest

from llm4es_hf.errors import Llm4esError
from tests.evaluation.helpers import FAST, evaluate_features, planted


def test_report_outputs(tmp_path):
    from huggingface_hub import EvalResult, ModelCardData

    ids, x, labels = planted(n=300)
    report = evaluate_features(
        {"aggregates": (ids, x[:, 1:]), "llm4es": (ids, x)},
        labels,
        "y",
        metric_backend="sklearn",
        model_params=FAST,
        kinds={"aggregates": "baseline", "llm4es": "embeddings"},
    )
    markdown = report.to_markdown()
    assert (
        "| features | model | dims | valid | test | test 95% CI | Δ test | p folds | p users "
        "| out-of-fold | Δ out-of-fold [95% CI] | p |" in markdown
    )
    assert "| llm4es | lightgbm | 8 |" in markdown and "metric backend: scikit-learn" in markdown
    data = json.loads(report.to_json())
    assert data["metric"] == "roc_auc" and len(data["rows"]) == 4
    assert data["rows"][2]["delta"] > 0.2 and data["rows"][0]["p_value"] is None
    assert data["rows"][0]["pooled_delta"] is None and data["rows"][2]["pooled_delta_ci95"][0] > 0.2
    assert data["rows"][2]["test_users_p"] < 0.01
    png = report.plot(tmp_path / "plots" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = report.to_eval_results("llm4es-movielens", "org/corpus")
    assert len(results) == 2 and all(isinstance(r, EvalResult) for r in results)
    assert {r.metric_args["downstream_model"] for r in results} == {"lightgbm", "logreg"}
    assert results[0].metric_type == "roc_auc" and results[0].metric_value == round(report.rows[2].test_mean, 4)
    card = ModelCardData(model_name="llm4es-movielens", eval_results=results).to_dict()
    assert card["model-index"][0]["results"][0]["dataset"]["name"] == "org/corpus"
    with pytest.raises(Llm4esError, match="no feature set 'x'"):
        report.to_eval_results("m", "d", features="x")
