"""Corpus builder, dataset card, publishing through the loopback Hub, privacy guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard

from llm4es_hf.cli import main
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.errors import Llm4esError
from llm4es_hf.hub import publish_corpus


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def built_corpus(tmp_path_factory, tokenizer_dir) -> Path:
    """The MovieLens corpus, built once for the module."""
    config = CorpusConfig(
        output_dir=str(tmp_path_factory.mktemp("built") / "corpus"),
        source="movielens",
        max_tokens=300,
        tokenizer=tokenizer_dir,
        split_label="gender",
    )
    return build_corpus(config)


@pytest.fixture
def corpus_dir(tmp_path, built_corpus) -> Path:
    """A copy of the built corpus that a test may change."""
    return Path(shutil.copytree(built_corpus, tmp_path / "corpus"))


def test_serialized_corpus_layout_and_card(corpus_dir):
    for config in ("serialized", "enriched"):
        corpus = datasets.load_dataset(str(corpus_dir), config)
        assert set(corpus) == {"train", "test"}
        assert len(corpus["train"]) + len(corpus["test"]) == 943
    serialized = datasets.load_dataset(str(corpus_dir), "serialized")
    assert max(serialized["train"]["n_tokens"]) <= 300
    assert {"user_id", "text", "gender", "age", "occupation"} <= set(serialized["train"].column_names)
    enriched = datasets.load_dataset(str(corpus_dir), "enriched")
    assert set(enriched["train"]["variant"]) == {"base"}
    card = DatasetCard.load(corpus_dir / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["serialized", "enriched"]
    text = card.text
    assert "| `serialized` | train | 849 |" in text and "MovieLens terms of use" in text
    assert "| `movie_title` | text | Movie |" in text and "`gender` (binary)" in text
    assert (corpus_dir / "users").is_dir() and (corpus_dir / "schema.yaml").exists()


def test_recipe_keys_and_values_are_validated(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"source": "movielens", "colour": "red"}))
    assert main(["corpus", "--recipe", str(recipe), "--output-dir", str(tmp_path / "o")]) == 2
    for bad in (["free:1.5"], ["free"], ["nope:0.2"], ["free:x"]):
        with pytest.raises(Llm4esError, match="enrich_variants"):
            CorpusConfig(output_dir=str(tmp_path), enrich_variants=bad).variants()
    assert main(["corpus", "--recipe", str(tmp_path / "missing.yaml")]) == 2


def test_corpus_help_lists_recipe_keys(capsys):
    with pytest.raises(SystemExit):
        main(["corpus", "--help"])
    out = capsys.readouterr().out
    assert "--enrich_variants" in out and "--output_dir" in out


def test_publish_roundtrip_private_hashed_and_card_kept(corpus_dir, loopback_hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    assert main(["publish-corpus", str(corpus_dir), "--repo-id", "org/ml-corpus"]) == 0
    assert "hf_secret_token_value" not in capsys.readouterr().out
    assert loopback_hub.repo("org/ml-corpus", "dataset").private
    remote = datasets.load_dataset("org/ml-corpus", "enriched")
    local = datasets.load_dataset(str(corpus_dir), "enriched")
    assert remote["train"]["text"] == local["train"]["text"]
    assert not set(remote["train"]["user_id"]) & set(local["train"]["user_id"])  # salted hashes
    assert len(set(remote["train"]["user_id"])) == len(set(local["train"]["user_id"]))
    files = loopback_hub.files("org/ml-corpus", "dataset")
    assert not any(path.startswith("users/") or "salt" in path or "sqlite" in path for path in files)
    card = DatasetCard.load("org/ml-corpus", repo_type="dataset")
    assert {c["config_name"] for c in card.data.configs} == {"serialized", "enriched"}
    assert card.data.dataset_info is not None and "LLM4ES corpus" in card.text
    assert all(b"hf_secret_token_value" not in content for content in files.values())


def test_publish_keep_ids_and_refuse_sensitive(corpus_dir, loopback_hub):
    publish_corpus(corpus_dir, "org/raw-ids", hash_user_ids=False, private=False)
    assert not loopback_hub.repo("org/raw-ids", "dataset").private
    remote = datasets.load_dataset("org/raw-ids", "serialized")
    assert remote["train"]["user_id"] == datasets.load_dataset(str(corpus_dir), "serialized")["train"]["user_id"]
    schema = yaml.safe_load((corpus_dir / "schema.yaml").read_text())
    schema["sensitive"] = ["occupation"]
    (corpus_dir / "schema.yaml").write_text(yaml.safe_dump(schema))
    with pytest.raises(Llm4esError, match="sensitive") as err:
        publish_corpus(corpus_dir, "org/leak")
    assert err.value.column == "occupation"


def test_publish_needs_a_corpus_folder(tmp_path):
    assert main(["publish-corpus", str(tmp_path), "--repo-id", "org/x"]) == 2


def test_enrichment_where_every_rewrite_fails_keeps_the_plain_texts(tmp_path, tokenizer_dir, fake_openai):
    """Every rewrite refused: the variant adds no rows (the build used to crash inside datasets)."""
    from llm4es_hf.corpus import load_corpus_config
    from tests.test_sources import shop

    rows = "".join(f"u{i % 6},2024-01-{1 + i:02d} 10:00,[[REFUSE]],{i}.5,{i % 2}\n" for i in range(24))
    schema_path, events = shop(tmp_path, rows)
    config = CorpusConfig(
        output_dir=str(tmp_path / "corpus"),
        source="csv",
        input=str(events),
        schema=str(schema_path),
        tokenizer=tokenizer_dir,
        test_size=0.34,
        enrich_variants=["free:1.0"],
        backend="openai",
        base_url=fake_openai.url,
        max_retries=0,
    )
    enriched = load_corpus_config(build_corpus(config), "enriched")
    train = len(load_corpus_config(tmp_path / "corpus", "serialized")["train"])
    assert set(enriched["train"]["variant"]) == {"base"} and len(enriched["train"]) == train >= 3
    summary = json.loads((tmp_path / "corpus" / "corpus_summary.json").read_text())
    assert summary["enrichment"]["variants"]["free"]["failed"] == train
