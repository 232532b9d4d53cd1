"""Every card kind renders from the templates of model_cards/, or from a user's own template."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

from llm4es_hf.cards import (
    CARD_KINDS,
    model_cards_dir,
    write_coles_card,
    write_dataset_card,
    write_index_card,
    write_model_card,
)
from llm4es_hf.errors import Llm4esError
from llm4es_hf.schema import load_schema, schema_path
from tests.support import tiny

ROOT = Path(__file__).resolve().parents[1]

CORPUS_INFO = {
    "counts": {"serialized": {"train": 3, "test": 1}},
    "config": {"format": "table", "max_events": 100, "max_tokens": None, "tokenizer": "tok"},
    "source": {"source": "movielens", "rows_read": 40, "users": 4, "events": 40, "dropped_rows": {}},
    "serialization": {"token_percentiles": {"p50": 12.0}},
    "enriched_variants": {},
}
COLES = (
    {
        "schema": "movielens",
        "recipe": {"rnn_type": "gru", "hidden_size": 16, "split_count": 2, "cnt_min": 3, "cnt_max": 9, "epochs": 1}
        | {"lr": 0.001, "batch_size": 8, "seed": 0},
        "fields": {"rating": {"kind": "numeric", "as": "numeric_values"}},
    },
    {"ptls_version": "0.6.6", "trained_users": 4, "users": 4, "loss_per_epoch": [1.5, 1.25]},
)
INDEX_INFO = {"kind": "exact", "n_users": 1234, "dimension": 8, "metric": "cosine", "label_columns": ["gender"]}


def write_each(folder: Path, kind: str, template_path: Path | None = None) -> ModelCard | DatasetCard:
    if kind == "model":
        return write_model_card(folder, tiny.TRAINING_INFO, template_path=template_path)
    if kind == "dataset":
        schema = load_schema(schema_path("movielens"))
        return write_dataset_card(folder, schema, CORPUS_INFO, ("serialized",), template_path=template_path)
    if kind == "coles":
        return write_coles_card(folder, *COLES, template_path=template_path)
    return write_index_card(folder, INDEX_INFO, template_path=template_path)


def test_the_templates_are_the_ones_of_model_cards():
    for name, _ in CARD_KINDS.values():
        assert (model_cards_dir() / name).read_text() == (ROOT / "model_cards" / name).read_text()
        assert name in (ROOT / "model_cards" / "README.md").read_text()


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("model", "An **LLM4ES** user-embedding model"),
        ("dataset", "| `serialized` | train | 3 |"),
        ("coles", "GRU\n16 over a TrxEncoder"),
        ("index", "1,234 users'"),
    ],
)
def test_each_card_kind_renders_from_its_template(kind, says, tmp_path):
    card = write_each(tmp_path, kind)
    written = (tmp_path / "README.md").read_text()
    assert says in card.text and written == str(card)
    assert isinstance(card, CARD_KINDS[kind][1])
    assert "{{ " not in written and "{%" not in written


@pytest.mark.parametrize("kind", sorted(CARD_KINDS))
def test_a_user_template_is_used(kind, tmp_path):
    template = tmp_path / "mine.md"
    template.write_text("---\n{{ card_data }}\n---\n\n# My own card\n")
    card = write_each(tmp_path, kind, template)
    assert card.text.strip() == "# My own card" and "My own card" in (tmp_path / "README.md").read_text()
    with pytest.raises(Llm4esError, match="no .* card template"):
        write_each(tmp_path, kind, tmp_path / "missing.md")


def test_the_quickstart_card_names_the_model_and_smollm2s_license(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    card = write_model_card(folder, tiny.TRAINING_INFO, model_name="llm4es-smollm2-movielens-100k")
    assert card.data.license == "apache-2.0" and card.data.model_name == "llm4es-smollm2-movielens-100k"
    assert card.text.lstrip().startswith("# llm4es-smollm2-movielens-100k\n")
    gemma = write_model_card(folder, {**tiny.TRAINING_INFO, "base_model": "gemma3-270m"}, model_name="x")
    assert gemma.data.license == "gemma"
