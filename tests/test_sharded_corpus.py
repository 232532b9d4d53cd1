"""Sharded corpora (issue 17, point 1): raw files read lazily, users hash-partitioned into shards,
the same texts and splits as the one-shot path, disjoint shards per rank, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import load_corpus_config, load_corpus_users, load_labels
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.errors import Llm4esError
from llm4es_hf.sources import held_out, split_users
from llm4es_hf.sources.synthetic import generate_rosbank, write_rosbank
from tests.conftest import write
from tests.test_sources import shop


@pytest.fixture(scope="module")
def raw_rosbank(tmp_path_factory) -> Path:
    """A gzipped Rosbank-format train.csv.gz of 240 synthetic clients."""
    return write_rosbank(generate_rosbank(240, 12, seed=5), tmp_path_factory.mktemp("raw")).parent


@pytest.fixture(scope="module")
def one_shot(raw_rosbank, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "corpus"
    return build_corpus(
        CorpusConfig(output_dir=str(out), source="rosbank", input=str(raw_rosbank), tokenizer="", split_method="hash")
    )


def rows(folder: Path, split: str) -> pl.DataFrame:
    return pl.from_arrow(load_corpus_config(folder, "serialized")[split].data.table).sort("user_id")


def config(raw: Path, out: Path, **overrides) -> CorpusConfig:
    return CorpusConfig(output_dir=str(out), source="rosbank", input=str(raw), tokenizer="", **overrides)


def test_sharded_corpus_equals_the_one_shot_path(raw_rosbank, one_shot, tmp_path):
    out = build_corpus(config(raw_rosbank, tmp_path / "sharded", num_shards=3))
    names = sorted(p.name for p in (out / "serialized").iterdir())
    assert names == [f"{s}-0000{k}-of-00003.parquet" for s in ("test", "train") for k in range(3)]
    for split in ("train", "test"):  # same users, same split, same texts
        assert rows(out, split).equals(rows(one_shot, split))
    ours, theirs = (json.loads((f / "corpus_summary.json").read_text()) for f in (out, one_shot))
    assert ours["counts"]["serialized"] == theirs["counts"]["serialized"]
    assert ours["source"]["events"] == theirs["source"]["events"] and ours["num_shards"] == 3
    streamed = datasets.load_dataset(str(out), "serialized", streaming=True)  # the card's configs
    assert sum(1 for _ in streamed["train"]) == len(rows(one_shot, "train"))
    users, _ = load_corpus_users(out)  # users/ as Parquet shards: labels and baselines read it
    assert sorted(users["test"]["user_id"]) == sorted(load_corpus_users(one_shot)[0]["test"]["user_id"])
    assert load_labels(out).split == load_labels(one_shot).split


def test_ties_multi_file_input_and_bad_rows_match_in_memory(tmp_path):
    """Events at the same time keep file order; two files of one input; dropped rows are counted alike."""
    schema_path, _ = shop(tmp_path, "", bad_rows="drop")
    body = "".join(f"u{i % 7},2024-01-0{1 + i % 3} 10:00,{'AB'[i % 2]},{i}.5,{i % 2}\n" for i in range(60))
    write(tmp_path / "in" / "a.csv", "customer,ts,item,price,churn\n" + body + "u1,not a date,A,1,0\n")
    write(tmp_path / "in" / "b.csv", "customer,ts,item,price,churn\n" + body.replace("u", "v"), gz=True)
    common = {"source": "csv", "input": str(tmp_path / "in"), "schema": str(schema_path), "tokenizer": ""}
    one = build_corpus(CorpusConfig(output_dir=str(tmp_path / "one"), num_shards=1, split_method="hash", **common))
    many = build_corpus(CorpusConfig(output_dir=str(tmp_path / "many"), num_shards=4, **common))
    for split in ("train", "test"):
        assert rows(many, split).equals(rows(one, split))
    dropped = [json.loads((f / "corpus_summary.json").read_text())["source"]["dropped_rows"] for f in (one, many)]
    assert dropped[0] == dropped[1] == {"unparsable timestamp (ts)": 1}


def test_ranks_take_disjoint_shards_and_the_last_one_finishes(raw_rosbank, one_shot, tmp_path, monkeypatch):
    out = tmp_path / "ranks"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    build_corpus(config(raw_rosbank, out, num_shards=4))
    assert sorted(p.name for p in (out / "serialized").glob("train-*")) == [
        "train-00001-of-00004.parquet",
        "train-00003-of-00004.parquet",
    ]
    assert not (out / "corpus_summary.json").exists() and not (out / "README.md").exists()
    rank1 = set(rows(out, "train")["user_id"])
    monkeypatch.setenv("RANK", "0")
    build_corpus(config(raw_rosbank, out, num_shards=4))
    assert (out / "corpus_summary.json").exists() and (out / "README.md").exists()
    everyone = set(rows(out, "train")["user_id"])
    assert rank1 and rank1 < everyone and everyone == set(rows(one_shot, "train")["user_id"])
    assert not list((out / "shards").glob("staging-*"))


def test_rerun_resumes_only_the_unfinished_shards(raw_rosbank, tmp_path):
    out = build_corpus(config(raw_rosbank, tmp_path / "c", num_shards=3))
    kept = out / "serialized" / "train-00000-of-00003.parquet"
    before = kept.stat().st_mtime_ns
    (out / "shards" / "00002-of-00003.json").unlink()  # as if the run died during shard 2
    (out / "serialized" / "train-00002-of-00003.parquet").unlink()
    build_corpus(config(raw_rosbank, out, num_shards=3))
    assert kept.stat().st_mtime_ns == before
    assert (out / "serialized" / "train-00002-of-00003.parquet").exists()


def test_a_folder_of_another_run_is_refused_and_left_alone(raw_rosbank, one_shot, tmp_path):
    out = build_corpus(config(raw_rosbank, tmp_path / "c", num_shards=3))
    snapshot = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for overrides, key in (({"num_shards": 2}, "num_shards"), ({"num_shards": 3, "seed": 1}, "seed")):
        with pytest.raises(Llm4esError, match="different run.*resume.*start over") as err:
            build_corpus(config(raw_rosbank, out, **overrides))
        assert err.value.key == key
    with pytest.raises(Llm4esError, match="built in shards"):  # the one-shot path would mix file names
        build_corpus(config(raw_rosbank, out, num_shards=1))
    with pytest.raises(Llm4esError, match="not built in shards"):
        build_corpus(config(raw_rosbank, one_shot, num_shards=2))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == snapshot


def test_bad_shard_counts_and_sources(raw_rosbank, tmp_path):
    with pytest.raises(Llm4esError, match="at least 1") as err:
        build_corpus(config(raw_rosbank, tmp_path / "zero", num_shards=0))
    assert err.value.key == "num_shards" and not (tmp_path / "zero").exists()
    with pytest.raises(Llm4esError, match="more than the 240 users"):
        build_corpus(config(raw_rosbank, tmp_path / "many", num_shards=241))
    assert not (tmp_path / "many").exists()
    with pytest.raises(Llm4esError, match="cannot be sharded"):
        build_corpus(CorpusConfig(output_dir=str(tmp_path / "s"), source="synthetic", num_shards=2, tokenizer=""))
    with pytest.raises(Llm4esError, match="enrichment"):
        build_corpus(config(raw_rosbank, tmp_path / "e", num_shards=2, enrich_variants=["free:0.1"]))


def test_parquet_file_with_another_schema_is_named(tmp_path):
    schema_path, _ = shop(tmp_path, "")
    frame = pl.DataFrame({"customer": ["u1"], "ts": ["2024-01-01 10:00"], "item": ["A"], "price": [1.5], "churn": [0]})
    (tmp_path / "in").mkdir()
    frame.write_parquet(tmp_path / "in" / "a.parquet")
    frame.with_columns(pl.col("price").cast(pl.Utf8)).write_parquet(tmp_path / "in" / "b.parquet")
    common = {"source": "parquet", "input": str(tmp_path / "in"), "schema": str(schema_path), "tokenizer": ""}
    for shards in (1, 2):
        with pytest.raises(Llm4esError, match="schema differs") as err:
            build_corpus(CorpusConfig(output_dir=str(tmp_path / f"out{shards}"), num_shards=shards, **common))
        assert err.value.file.endswith("b.parquet") and err.value.column == "price"


def test_split_is_per_user():
    """A user's split depends on its id alone: a subset splits as the whole did."""
    ids = pl.Series([f"user-{i}" for i in range(2000)])
    everyone = held_out(ids, np.ones(2000, bool), test_size=0.1, seed=42)
    part = held_out(ids[500:900], np.ones(400, bool), test_size=0.1, seed=42)
    assert np.array_equal(part, everyone[500:900]) and 0.07 < everyone.mean() < 0.13
    assert not np.array_equal(everyone, held_out(ids, np.ones(2000, bool), test_size=0.1, seed=1))
    few = datasets.Dataset.from_dict({"user_id": ["a", "b"], "y": ["1", None]})
    assert split_users(few, test_size=0.01, label="y", method="hash")["test"]["user_id"] == ["a"]  # labeled one


def test_a_shuffled_split_cannot_be_sharded(raw_rosbank, tmp_path):
    with pytest.raises(Llm4esError, match="hash of their id") as err:
        build_corpus(config(raw_rosbank, tmp_path / "out", num_shards=2, split_method="shuffle"))
    assert err.value.key == "split_method" and not (tmp_path / "out").exists()


def test_missing_column_is_named_before_any_shard(tmp_path):
    schema_path, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\nu2,2024-01-02 11:00,B,2.5,1\n")
    events.write_text("customer,ts,item,churn\nu1,2024-01-02 10:00,A,0\nu2,2024-01-02 11:00,B,1\n")
    common = {"source": "csv", "input": str(events), "schema": str(schema_path), "tokenizer": ""}
    with pytest.raises(Llm4esError, match="missing column") as err:
        build_corpus(CorpusConfig(output_dir=str(tmp_path / "out"), num_shards=2, **common))
    assert err.value.column == "price" and not (tmp_path / "out").exists()


def test_label_file_and_code_files_of_a_bank_source(gender_dir, tmp_path):
    """Gender: labels come from their own file (read whole, split by shard), codes from the input folder."""
    common = {"source": "gender", "input": str(gender_dir), "tokenizer": "", "test_size": 0.5}
    one = build_corpus(CorpusConfig(output_dir=str(tmp_path / "one"), num_shards=1, split_method="hash", **common))
    many = build_corpus(CorpusConfig(output_dir=str(tmp_path / "many"), num_shards=2, **common))
    for split in ("train", "test"):  # each labeled user on its own: both may well be in one split
        assert rows(many, split).equals(rows(one, split))
    assert "Своя категория" in "".join(pl.concat([rows(many, "train"), rows(many, "test")])["text"])  # {input} codes
    reports = [json.loads((f / "corpus_summary.json").read_text())["source"] for f in (one, many)]
    assert reports[0]["users_without_events"] == reports[1]["users_without_events"] == 1


def test_a_sharded_corpus_publishes_its_one_config(raw_rosbank, loopback_hub, tmp_path):
    from llm4es_hf.hub import publish_corpus

    out = build_corpus(config(raw_rosbank, tmp_path / "c", num_shards=2))
    publish_corpus(out, "org/sharded")
    files = loopback_hub.files("org/sharded", "dataset")
    assert any(name.startswith("serialized/train-") for name in files)
    assert not any(name.startswith(("enriched/", "users/", "shards/")) for name in files)
    remote = datasets.load_dataset("org/sharded", "serialized")
    assert len(remote["train"]) + len(remote["test"]) == 240
