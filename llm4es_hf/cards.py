"""Model cards rendered from templates/model_card.md with huggingface_hub's ModelCardData."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .assets import BUNDLED_MODELS, is_hub_repo_id, template_path

MAX_LOSS_POINTS = 20


def _hub_ids(corpora: list[str]) -> list[str]:
    """Corpora that look like Hub data set ids (org/name and not a local folder)."""
    names = [c.split(":")[0] for c in corpora if c]
    return [name for name in names if is_hub_repo_id(name)]


def write_model_card(
    folder: Path, info: dict[str, Any], eval_results: list[EvalResult] | None = None, repo_id: str | None = None
) -> ModelCard:
    """Write README.md (metadata + text) into a saved model folder and return the card."""
    base = info.get("base_model")
    bundled = BUNDLED_MODELS.get(base) if base else None
    base_id = bundled.hub_id if bundled else base
    card_data = ModelCardData(
        base_model=base_id if base_id and is_hub_repo_id(base_id) else None,
        datasets=_hub_ids(info.get("corpora", [])) or None,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=["llm4es", "user-embeddings", "event-sequences"]
        + (["sentence-transformers", "contrastive"] if info.get("contrastive") else ["trl", "sft"]),
        license=bundled.license if bundled else "other",
        model_name=repo_id or folder.name,
        eval_results=eval_results or None,
    )
    curve = info.get("loss_curve", [])
    stride = max(1, len(curve) // MAX_LOSS_POINTS)
    points = curve[::stride]
    if curve and points[-1] != curve[-1]:
        points.append(curve[-1])
    rows = [
        {"task": r.task_type, "metric": r.metric_name or r.metric_type, "value": r.metric_value, "std": None}
        for r in eval_results or []
    ]
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_card.md")),
        model_name=repo_id or folder.name,
        info=info,
        loss_points=points,
        eval_rows=rows,
        repo_or_path=repo_id or str(folder),
        base_id=base_id,
        notice=bundled.notice if bundled else "",
        datasets=_hub_ids(info.get("corpora", [])),
    )
    card.save(folder / "README.md")
    return card
