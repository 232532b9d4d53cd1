"""Sources on generated raw-format fixtures, and every bad input of the foundation issue."""

from __future__ import annotations

import copy

import numpy as np
import polars as pl
import pytest
import yaml

from llm4es_hf.errors import Llm4esError
from llm4es_hf.serialize import Serializer, count_unknown_codes
from llm4es_hf.sources import load_source, split_users
from tests.conftest import write

SHOP_SCHEMA = {
    "name": "shop",
    "user_id": "customer",
    "time": {"column": "ts", "parse": "strptime", "format": "%Y-%m-%d %H:%M"},
    "fields": [
        {"name": "event_time", "kind": "date", "format": "iso_datetime", "header": "When"},
        {
            "name": "item",
            "kind": "category",
            "header": "Item",
            "codes": {"A": "apple", "B": "bread"},
            "unknown": "other item ({code})",
            "missing": "no item",
        },
        {"name": "price", "kind": "number", "header": "Price"},
    ],
    "labels": [{"name": "churn", "task": "binary"}],
}


def shop(tmp_path, rows: str, **overrides):
    schema = copy.deepcopy(SHOP_SCHEMA)
    schema.update(overrides)
    schema_path = tmp_path / "schema.yaml"
    schema_path.write_text(yaml.safe_dump(schema))
    events = write(tmp_path / "events.csv", "customer,ts,item,price,churn\n" + rows)
    return schema_path, events


def test_movielens_bundled():
    result = load_source("movielens")
    users = result.users
    assert len(users) == 943
    assert result.report.events == 100_000 - result.report.dropped_rows.get("duplicate event", 0)
    first = users[0]
    assert first["event_time"] == sorted(first["event_time"])
    assert {"movie_title", "genres", "rating", "gender", "age", "occupation"} <= set(users.column_names)
    assert set(users["gender"]) == {"M", "F"}
    titles = {t for row in users["movie_title"][:50] for t in row}
    assert "The Empire Strikes Back" in titles and not any(t.endswith(", The") for t in titles)
    all_titles = {t for row in users["movie_title"] for t in row}
    assert "The Horseman on the Roof (Hussard sur le toit, Le)" in all_titles


def test_movielens_compact_layout_fits_more_history():
    from llm4es_hf.models import load_tokenizer
    from llm4es_hf.serialize import Serializer

    compact = load_source("movielens", schema="movielens_compact")
    full = load_source("movielens")
    # date and genres are read and kept (the baselines use them), only the text leaves them out
    assert {"event_time", "genres"} <= set(compact.users.column_names)
    assert compact.users["genres"] == full.users["genres"]
    first = compact.users.select(range(1))
    text = Serializer(compact.schema)(first)[0]["text"]
    lines = text.split("\n")
    assert lines[0] == "Movie|Rating (1-5)" and len(lines) == len(first[0]["movie_title"]) + 1
    title, stars = lines[1].rsplit(", ", 1)
    assert title == first[0]["movie_title"][0] and stars == str(int(first[0]["rating"][0]))
    tokenizer = load_tokenizer("smollm2-135m")
    budget = {
        name: Serializer(source.schema, max_tokens=512, tokenizer=tokenizer)(source.users.select(range(40)))
        for name, source in (("compact", compact), ("full", full))
    }
    kept = {name: sum(texts["n_events_kept"]) for name, texts in budget.items()}
    assert kept["compact"] > 2 * kept["full"]


def test_movielens_1m_folder(ml1m_dir):
    result = load_source("movielens", input=ml1m_dir)
    users = {row["user_id"]: row for row in result.users}
    assert users["1"]["movie_title"] == ["One Flew Over the Cuckoo's Nest", "James and the Giant Peach"]
    assert users["1"]["genres"][1] == "Animation/Children's/Musical"
    assert users["1"]["age"] == "under 18" and users["2"]["age"] == "56+"
    assert users["2"]["occupation"] == "self-employed"


def test_movielens_movie_id_and_release_year(ml1m_dir):
    from llm4es_hf.sources.movielens import read_movielens

    # ml-1m: the year comes from the title's trailing "(1975)", which the title loses
    events, _ = read_movielens(ml1m_dir)
    years = dict(zip(events["item_id"], events["release_year"], strict=True))
    assert years == {"1193": "1975", "661": "1996"}
    # the bundled ml-100k: its own release_year column, where 'V' and 'unkonwn' become missing
    events, _ = read_movielens()
    movies = events.unique("item_id").sort(pl.col("item_id").cast(pl.Int64))
    assert movies.height == 1682 and movies["release_year"][0] == "1995"  # Toy Story
    known = movies["release_year"].drop_nulls().cast(pl.Int64)
    assert known.min() >= 1920 and known.max() <= 1998 and known.len() >= 1670


def test_rosbank_folder(rosbank_dir):
    result = load_source("rosbank", input=rosbank_dir)
    users = {row["user_id"]: row for row in result.users}
    assert set(users) == {"0", "1", "7"}
    zero = users["0"]
    assert zero["event_time"] == sorted(zero["event_time"])
    assert zero["trx_category"] == ["WD_ATM_ROS", "POS", "NEW_CAT"]  # 12 Oct 12:24 before 21 Oct
    assert zero["target_flag"] == "0" and users["1"]["target_flag"] == "1" and users["7"]["target_flag"] is None
    assert result.report.missing_values == {"channel_type": 2}
    text = Serializer(result.schema)(result.users.select([0]))[0]["text"]
    lines = text.split("\n")
    assert lines[0].startswith("UNIX days|Amount(rubles, scaled)|Merchant category codes|")
    assert (
        lines[1] == "17451, 9, Financial institutions -- automated cash disbursements, unknown channel, "
        "ATM withdrawal at a Rosbank ATM"
    )
    assert lines[3].endswith("Unknown MCC, type1, other (NEW_CAT)")
    assert lines[3].split(", ")[1] == "-6"  # int(sign(x) * log(|x| + 1))
    assert count_unknown_codes(result.users, result.schema) == {"MCC": 1, "trx_category": 1}


def test_gender_folder(gender_dir):
    result = load_source("gender", input=gender_dir)
    users = {row["user_id"]: row for row in result.users}
    assert users["39026145"]["event_time"] == [15 * 3600 + 59.0, 86400 + 10 * 3600 + 23 * 60 + 26.0]
    assert result.report.users_without_events == 1  # customer 555 is labeled but has no transaction
    text = Serializer(result.schema)(result.users)["text"]
    joined = "\n".join(text)
    assert "Выдача наличных" in joined and "Cable and other pay television" not in joined
    assert "Telecommunication" in joined or "telecommunication" in joined  # iso18245 beats the file for 4814
    assert "Своя категория" in joined  # a code only the data set's file knows
    assert "unknown transaction type (7070)" in joined and "no terminal" in joined


def test_age_folder(age_dir):
    result = load_source("age", input=age_dir)
    users = {row["user_id"]: row for row in result.users}
    assert users["33172"]["bins"] == "3"
    texts = Serializer(result.schema, "grouped")(result.users)
    text = texts[[row["user_id"] for row in texts].index("33172")]["text"]
    assert (
        text == "trx date|amount(rubles)\n### Category: Fast food\n6, 71.46\n8, 13.89\n"
        "### Category: Groceries\n6, 45.02"
    )


def test_bank_source_without_input_or_hub_says_what_to_do(monkeypatch):
    with pytest.raises(Llm4esError, match="--input DIR"):
        load_source("rosbank")


def test_missing_bank_file(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(Llm4esError, match="train.csv"):
        load_source("rosbank", input=tmp_path / "x")


def test_csv_and_parquet_sources(tmp_path):
    schema, events = shop(
        tmp_path, "u1,2024-01-02 10:00,A,1.5,0\nu1,2024-01-01 09:00,B,2,0\nu2,2024-01-03 08:00,A,3,1\n"
    )
    result = load_source("csv", input=events, schema=schema)
    assert result.users["user_id"] == ["u1", "u2"]
    assert result.users[0]["item"] == ["B", "A"]
    parquet = tmp_path / "events.parquet"
    import polars as pl

    pl.read_csv(events, infer_schema=False).write_parquet(parquet)
    again = load_source("parquet", input=parquet, schema=schema)
    assert again.users.to_list() == result.users.to_list()
    labels = write(tmp_path / "labels.csv", "customer,churn\nu1,1\nu2,0\n")
    with_labels = load_source("csv", input=events, schema=schema, labels=labels)
    assert with_labels.users["churn"] == ["1", "0"]


def test_csv_needs_schema(tmp_path):
    with pytest.raises(Llm4esError, match="--schema"):
        load_source("csv", input=tmp_path / "x.csv")


def test_synthetic_is_seeded_and_has_a_learnable_signal():
    a = load_source("synthetic", synthetic_users=400, seed=3)
    b = load_source("synthetic", synthetic_users=400, seed=3)
    assert a.users.to_list() == b.users.to_list()
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    features = []
    for row in a.users:
        cats = np.array(row["trx_category"])
        times = np.array(row["event_time"])
        features.append([np.mean(cats == "C2C_OUT"), np.mean(cats == "POS"), np.median(times) / 1e9])
    y = np.array([int(v) for v in a.users["target_flag"]])
    auc = cross_val_score(LogisticRegression(max_iter=1000), np.array(features), y, scoring="roc_auc", cv=5)
    assert auc.mean() > 0.8


def test_split_is_seeded_disjoint_and_holds_out_labeled_users(rosbank_dir):
    users = load_source("synthetic", synthetic_users=200).users
    first = split_users(users, test_size=0.2, seed=42)
    second = split_users(users, test_size=0.2, seed=42)
    assert first["test"]["user_id"] == second["test"]["user_id"]
    assert not set(first["test"]["user_id"]) & set(first["train"]["user_id"])
    assert len(first["test"]) == 40
    assert split_users(users, test_size=0.2, seed=1)["test"]["user_id"] != first["test"]["user_id"]
    hashed = split_users(users, test_size=0.2, seed=42, method="hash")  # each user on its own
    assert 25 <= len(hashed["test"]) <= 55 and not set(hashed["test"]["user_id"]) & set(hashed["train"]["user_id"])
    alone = split_users(users.select(range(0, 200, 2)), test_size=0.2, seed=42, method="hash")
    assert set(alone["test"]["user_id"]) == set(hashed["test"]["user_id"]) & set(
        users.select(range(0, 200, 2))["user_id"]
    )
    with pytest.raises(Llm4esError, match="unknown split method"):
        split_users(users, method="random")
    partly = load_source("rosbank", input=rosbank_dir).users
    split = split_users(partly, test_size=0.5, label="target_flag")
    assert "7" not in split["test"]["user_id"]  # unlabeled users only train
    with pytest.raises(Llm4esError, match="test_size"):
        split_users(users, test_size=1.5)


# ----- bad input -------------------------------------------------------------------------


def test_missing_column_names_file_and_column(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\n")
    events.write_text("customer,ts,item,churn\nu1,2024-01-02 10:00,A,0\n")
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema)
    assert err.value.column == "price" and err.value.file == str(events)


def test_unparsable_timestamp_names_row_and_column(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\nu1,yesterday,A,1.5,0\n")
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema)
    assert (err.value.file, err.value.row, err.value.column) == (str(events), 3, "ts")
    assert "yesterday" in str(err.value)
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\nu1,yesterday,A,1.5,0\n", bad_rows="drop")
    result = load_source("csv", input=events, schema=schema)
    assert result.report.dropped_rows == {"unparsable timestamp (ts)": 1}
    assert result.report.events == 1


def test_non_numeric_value_is_a_schema_mismatch(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,cheap,0\n")
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema)
    assert (err.value.row, err.value.column) == (2, "price") and "not a number" in str(err.value)


def test_missing_values_and_unknown_codes_are_counted_and_rendered(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,,,0\nu1,2024-01-02 11:00,Z,NaN,0\n,2024-01-02 11:00,A,1,0\n")
    result = load_source("csv", input=events, schema=schema)
    assert result.report.missing_values == {"item": 1, "price": 2}
    assert result.report.dropped_rows == {"missing user id (customer)": 1}
    assert count_unknown_codes(result.users, result.schema) == {"item": 1}
    text = Serializer(result.schema)(result.users)[0]["text"]
    assert (
        text == "When|Item|Price\n2024-01-02 10:00:00, no item, unknown\n2024-01-02 11:00:00, other item (Z), unknown"
    )


def test_duplicates_counted_and_dropped_on_request(tmp_path):
    rows = "u1,2024-01-02 10:00,A,1.5,0\nu1,2024-01-02 10:00,A,1.5,0\n"
    schema, events = shop(tmp_path, rows)
    kept = load_source("csv", input=events, schema=schema)
    assert kept.report.duplicate_events == 1 and kept.report.events == 2
    schema, events = shop(tmp_path, rows, duplicates="drop")
    dropped = load_source("csv", input=events, schema=schema)
    assert dropped.report.dropped_rows == {"duplicate event": 1} and dropped.report.events == 1


def test_users_without_events_are_counted(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\n")
    labels = write(tmp_path / "labels.csv", "customer,churn\nu1,1\nghost,0\n")
    result = load_source("csv", input=events, schema=schema, labels=labels)
    assert result.report.users_without_events == 1 and result.users["user_id"] == ["u1"]


def test_empty_source_is_an_error(tmp_path):
    schema, events = shop(tmp_path, "")
    with pytest.raises(Llm4esError, match="header line but no rows"):
        load_source("csv", input=events, schema=schema)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\n")
    events.write_bytes(b"customer,ts,item,price,churn\nu1,2024-01-02 10:00,Caf\xe9,1.5,0\n")
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema)
    assert err.value.row == 2 and "utf-8" in str(err.value) and "encoding" in str(err.value)
    schema, _ = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\n", encoding="latin-1")
    events.write_bytes(b"customer,ts,item,price,churn\nu1,2024-01-02 10:00,Caf\xe9,1.5,0\n")
    assert load_source("csv", input=events, schema=schema).users[0]["item"] == ["Café"]


def test_label_columns_must_exist(tmp_path):
    schema, events = shop(tmp_path, "u1,2024-01-02 10:00,A,1.5,0\n")
    labels = write(tmp_path / "labels.csv", "customer,target\nu1,1\n")
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema, labels=labels)
    assert err.value.column == "churn" and str(labels) in str(err.value)
