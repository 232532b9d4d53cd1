"""The bank sources' raw formats (Rosbank, Gender, Age), generated here at a small size: each goes
through the corpus stage of its recipe, and the schema inferred from its raw events matches the
built-in schema's user id, time and field kinds."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import load_corpus_config
from llm4es_hf.config import load_recipe
from llm4es_hf.corpus import CorpusConfig, build_corpus
from llm4es_hf.infer_schema import infer_schema
from llm4es_hf.schema import load_schema
from llm4es_hf.sources.synthetic import generate_rosbank, write_rosbank

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
USERS = 40
MCCS = np.array([5411, 5812, 5912, 4829, 6011, 5541, 5999, 4814, 5691, 5331])
TR_TYPES = np.array([1010, 1030, 1100, 2010, 2370, 7070])


def _gz_csv(frame: pl.DataFrame, path: Path) -> None:
    with gzip.open(path, "wb") as handle:
        frame.write_csv(handle, null_value="")


def rosbank_folder(root: Path) -> Path:
    """train.csv.gz as on the Hub: the synthetic generator writes Rosbank's raw format."""
    write_rosbank(generate_rosbank(USERS, 15, seed=3), root / "rosbank")
    return root / "rosbank"


def gender_folder(root: Path) -> Path:
    """transactions.csv.gz ("<day> HH:MM:SS" times, sparse terminal ids), gender_train.csv and the
    ';'-separated code files, as on the Hub."""
    rng = np.random.default_rng(4)
    counts = rng.integers(8, 25, USERS)
    n = int(counts.sum())
    customers = np.repeat(39_000_000 + np.arange(USERS) * 7919, counts)
    day, hour, minute, second = (rng.integers(0, k, n) for k in (450, 24, 60, 61))
    times = [f"{d} {h:02d}:{m:02d}:{s:02d}" for d, h, m, s in zip(day, hour, minute, second, strict=True)]
    terminals = np.where(rng.random(n) < 0.4, [f"T{v:08X}" for v in rng.integers(0, 2**31, n)], None)
    folder = root / "gender"
    folder.mkdir()
    events = pl.DataFrame(
        {
            "customer_id": customers.astype(str),
            "tr_datetime": times,
            "mcc_code": rng.choice(MCCS, n).astype(str),
            "tr_type": rng.choice(TR_TYPES, n).astype(str),
            "amount": np.round(-np.exp(rng.normal(7, 1.5, n)), 2).astype(str),
            "term_id": terminals,
        }
    )
    _gz_csv(events, folder / "transactions.csv.gz")
    genders = rng.integers(0, 2, USERS).astype(str)
    ids = (39_000_000 + np.arange(USERS) * 7919).astype(str)
    pl.DataFrame({"customer_id": ids, "gender": genders}).write_csv(folder / "gender_train.csv")
    (folder / "tr_mcc_codes.csv").write_text("mcc_code;mcc_description\n" + "".join(f"{c};shop {c}\n" for c in MCCS))
    (folder / "tr_types.csv").write_text("tr_type;tr_description\n" + "".join(f"{t};type {t}\n" for t in TR_TYPES))
    return folder


def age_folder(root: Path) -> Path:
    """transactions_train.csv.gz (integer day index), train_target.csv and the small-group descriptions."""
    rng = np.random.default_rng(5)
    counts = rng.integers(8, 25, USERS)
    n = int(counts.sum())
    folder = root / "age"
    folder.mkdir()
    events = pl.DataFrame(
        {
            "client_id": np.repeat(30_000 + np.arange(USERS), counts).astype(str),
            "trans_date": rng.integers(0, 730, n).astype(str),
            "small_group": rng.integers(0, 60, n).astype(str),
            "amount_rur": np.round(np.exp(rng.normal(3, 1, n)), 3).astype(str),
        }
    )
    _gz_csv(events, folder / "transactions_train.csv.gz")
    targets = pl.DataFrame({"client_id": (30_000 + np.arange(USERS)).astype(str), "bins": (np.arange(USERS) % 4)})
    targets.write_csv(folder / "train_target.csv")
    groups = pl.DataFrame({"small_group": [f"group {g}" for g in range(60)], "small_group_code": range(60)})
    groups.write_csv(folder / "small_group_description.csv")
    return folder


FOLDERS = {"rosbank": rosbank_folder, "gender": gender_folder, "age": age_folder}
EVENTS = {"rosbank": ("train.csv.gz", None), "gender": ("transactions.csv.gz", "gender_train.csv")}
EVENTS["age"] = ("transactions_train.csv.gz", "train_target.csv")


@pytest.mark.parametrize("bank", sorted(FOLDERS))
def test_raw_format_through_the_corpus_stage_of_its_recipe(bank, tmp_path, tiny_tokenizer):
    folder = FOLDERS[bank](tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    (config,) = load_recipe(
        [CorpusConfig],
        RECIPES / bank / "corpus.yaml",
        input=str(folder),
        output_dir=str(tmp_path / "corpus"),
        tokenizer=str(tmp_path / "tok"),  # the recipe's Llama tokenizer is not offline
        max_tokens=300,
        enrich_variants=[],  # the recipe's enrichment needs a served LLM
        test_size=0.25,
    )
    assert config.source == bank and config.format == ("grouped" if bank == "age" else "llm4es")
    corpus = build_corpus(config)
    serialized = load_corpus_config(corpus, "serialized")
    assert len(serialized["train"]) + len(serialized["test"]) == USERS
    assert max(max(split["n_tokens"]) for split in serialized.values()) <= 300
    schema = load_schema(corpus / "schema.yaml")
    header = "|".join(f.header for f in schema.text_fields if f.name != schema.group_by or config.format != "grouped")
    assert serialized["train"][0]["text"].startswith(header + "\n")
    label = schema.labels[0].name
    assert all(value is not None for value in serialized["test"][label])  # test users drawn among labeled ones
    if bank == "age":
        assert "### Category: group " in serialized["train"][0]["text"]  # codes described from the input folder


@pytest.mark.parametrize("bank", sorted(FOLDERS))
def test_inferred_schema_of_the_raw_format_matches_the_builtin_one(bank, tmp_path):
    folder = FOLDERS[bank](tmp_path)
    events, labels = EVENTS[bank]
    inferred = infer_schema(folder / events, labels=folder / labels if labels else None).schema
    builtin = load_schema(bank)
    assert inferred.user_id == builtin.user_id
    assert (inferred.time.column, inferred.time.parse, inferred.time.format) == (
        builtin.time.column,
        builtin.time.parse,
        builtin.time.format,
    )
    kinds = {f.name: f.kind for f in inferred.fields}
    assert {f.name: kinds.get(f.name) for f in builtin.fields} == {f.name: f.kind for f in builtin.fields}
    assert {(lb.name, lb.task) for lb in inferred.labels} == {(lb.name, lb.task) for lb in builtin.labels}
