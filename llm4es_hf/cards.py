"""Every card the toolkit writes: model, dataset, CoLES encoder and index, one renderer for all.

Each card is a Jinja2 template of the top-level ``model_cards/`` folder (installed with the package as
``llm4es_hf.model_cards``; its README says which is which) rendered by huggingface_hub's
``ModelCard`` / ``DatasetCard.from_template`` with ``ModelCardData`` / ``DatasetCardData`` as its metadata.
Every ``write_*_card`` takes ``template_path=``, a user's own template (as sentence-transformers does), which
receives the same variables as the template it replaces.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from .assets import BUNDLED_MODELS, is_hub_repo_id
from .errors import Llm4esError
from .schema import EventSchema

MAX_LOSS_POINTS = 20
# kind -> (template in model_cards/, card class)
CARD_KINDS: dict[str, tuple[str, type[ModelCard] | type[DatasetCard]]] = {
    "model": ("model_card.md", ModelCard),
    "dataset": ("dataset_card.md", DatasetCard),
    "coles": ("coles_card.md", ModelCard),
    "index": ("index_card.md", DatasetCard),
}


def model_cards_dir() -> Path:
    """The templates: the copy installed with the package, or the checkout's ``model_cards/`` (a checkout
    whose editable install predates the folder)."""
    try:
        return Path(str(importlib.resources.files("llm4es_hf.model_cards")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "model_cards"


def render_card(
    kind: str, card_data: ModelCardData | DatasetCardData, template_path: str | Path | None = None, **variables: Any
) -> ModelCard | DatasetCard:
    """Render the card of ``kind`` (a key of ``CARD_KINDS``) from its template, or from ``template_path``."""
    name, card_class = CARD_KINDS[kind]
    path = Path(template_path) if template_path is not None else model_cards_dir() / name
    if not path.is_file():
        raise Llm4esError(f"no {kind} card template here", file=path, key="template_path")
    return card_class.from_template(card_data, template_path=str(path), **variables)


def _hub_ids(corpora: list[str]) -> list[str]:
    """Corpora that look like Hub data set ids (org/name and not a local folder)."""
    names = [c.split(":")[0] for c in corpora if c]
    return [name for name in names if is_hub_repo_id(name)]


def write_model_card(
    folder: Path,
    info: dict[str, Any],
    eval_results: list[EvalResult] | None = None,
    repo_id: str | None = None,
    *,
    model_name: str | None = None,
    template_path: str | Path | None = None,
) -> ModelCard:
    """Write README.md (metadata + text) into a saved model folder and return the card.

    Its title is ``repo_id``, else ``model_name``, else the folder's name."""
    base = info.get("base_model")
    bundled = BUNDLED_MODELS.get(base) if base else None
    base_id = bundled.hub_id if bundled else base
    title = repo_id or model_name or folder.name
    card_data = ModelCardData(
        base_model=base_id if base_id and is_hub_repo_id(base_id) else None,
        datasets=_hub_ids(info.get("corpora", [])) or None,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=["llm4es", "user-embeddings", "event-sequences"]
        + (["sentence-transformers", "contrastive"] if info.get("contrastive") else ["trl", "sft"]),
        license=bundled.license if bundled else "other",
        model_name=title,
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
    card = render_card(
        "model",
        card_data,
        template_path,
        model_name=title,
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


def write_dataset_card(
    folder: Path,
    schema: EventSchema,
    info: dict[str, Any],
    configs: tuple[str, ...],
    *,
    template_path: str | Path | None = None,
) -> DatasetCard:
    """Write a corpus folder's README.md, with the ``configs`` metadata that ``load_dataset`` reads."""
    config_list = [
        {
            "config_name": name,
            "data_files": [{"split": split, "path": f"{name}/{split}-*.parquet"} for split in ("train", "test")],
            **({"default": True} if name == "serialized" else {}),
        }
        for name in configs
    ]
    pretty_name = f"LLM4ES corpus: {schema.name}"
    card_data = DatasetCardData(
        license="other",
        pretty_name=pretty_name,
        tags=["llm4es", "event-sequences", "user-embeddings", schema.name],
        task_categories=["text-generation"],
        configs=config_list,
    )
    card = render_card(
        "dataset",
        card_data,
        template_path,
        pretty_name=pretty_name,
        schema=schema,
        info=info,
        fields=schema.fields,
        labels=schema.labels,
    )
    card.save(folder / "README.md")
    return card


def write_coles_card(
    model_dir: Path, description: dict[str, Any], training: dict[str, Any], *, template_path: str | Path | None = None
) -> ModelCard:
    """Write a CoLES encoder folder's README.md: what the encoder is, how it was trained, how to reuse it."""
    card_data = ModelCardData(
        library_name="pytorch-lifestream", tags=["coles", "event-sequences", "user-embeddings", "llm4es-baseline"]
    )
    card = render_card(
        "coles",
        card_data,
        template_path,
        model_name=f"CoLES encoder ({description['schema']})",
        recipe=description["recipe"],
        fields=description["fields"],
        training=training,
    )
    card.save(model_dir / "README.md")
    return card


def write_index_card(folder: Path, info: dict[str, Any], *, template_path: str | Path | None = None) -> DatasetCard:
    """Write an index folder's README.md (its ``index.json`` as ``info``), the card of its Hub data set repo."""
    card_data = DatasetCardData(
        pretty_name=f"LLM4ES user index ({info['n_users']:,} users)",
        tags=["llm4es", "user-embeddings", "faiss", "nearest-neighbors"],
    )
    card = render_card("index", card_data, template_path, pretty_name=card_data.pretty_name, info=info)
    card.save(folder / "README.md")
    return card
