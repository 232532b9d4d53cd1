"""`llm4es schema infer`: a schema proposed from a sample of raw events, ambiguities and bad input."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from llm4es_hf.infer_schema import infer_schema
from llm4es_hf.schema import load_schema, schema_from_dict
from llm4es_hf.sources import load_source
from tests.conftest import write

MCCS = [5411, 5812, 5912, 4829, 6011, 5541]


def shop_rows(users: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """A small shop's events: customer, minute times, MCC, amount, and personal columns."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        for _ in range(int(rng.integers(3, 12))):
            day, hour, minute = (int(v) for v in (rng.integers(1, 29), rng.integers(0, 24), rng.integers(0, 60)))
            rows.append(
                {
                    "customer": f"c{u:03d}",
                    "ts": f"2024-02-{day:02d} {hour:02d}:{minute:02d}",
                    "mcc": str(rng.choice(MCCS)),
                    "amount": f"{rng.normal(50, 30):.2f}",
                    "store": f"store {int(rng.integers(0, 5))}",
                    "note": f"order {int(rng.integers(0, 10**9))} gift wrap {int(rng.integers(0, 10**6))}",
                    "email": f"user{u}@mail.example.com",
                    "phone": f"+1 555-{u:03d}-{int(rng.integers(1000, 9999))}",
                }
            )
    return rows


def write_shop(tmp_path, rows=None, **extra_columns):
    frame = pl.DataFrame(rows or shop_rows())
    for name, values in extra_columns.items():
        frame = frame.with_columns(pl.Series(name, values))
    path = tmp_path / "events.csv"
    frame.write_csv(path)
    return path, frame


def test_shop_csv_schema_loads_and_reads_the_events(tmp_path):
    events, frame = write_shop(tmp_path)
    customers = sorted(set(frame["customer"]))
    labels = write(
        tmp_path / "labels.csv",
        "customer,churn,segment\n" + "".join(f"{c},{i % 2},s{i % 3}\n" for i, c in enumerate(customers)),
    )
    proposal = infer_schema(events, labels=labels)
    schema = proposal.schema
    assert schema.user_id == "customer"
    assert (schema.time.column, schema.time.parse, schema.time.format) == ("ts", "strptime", "%Y-%m-%d %H:%M")
    kinds = {f.name: f.kind for f in schema.fields}
    assert kinds == {"event_time": "date", "mcc": "category", "amount": "number", "store": "category", "note": "text"}
    assert schema.field("mcc").codes_from == "iso18245"
    assert (schema.field("amount").format, schema.field("amount").decimals) == ("round", 2)
    assert schema.field("event_time").format == "iso_datetime"
    assert sorted(schema.sensitive) == ["email", "phone"]
    assert "# email: looks like e-mail addresses; left out of the text" in proposal.text
    churn, segment = schema.labels
    assert (churn.name, churn.task, churn.positive) == ("churn", "binary", "1")
    assert (segment.name, segment.task) == ("segment", "multiclass")
    assert "2 classes in labels.csv: 0: 20, 1: 20" in proposal.text
    assert "3 classes in labels.csv: s0: 14, s1: 13, s2: 13" in proposal.text
    assert "40 of them among the 40 sampled users" in proposal.notes[0]

    path = tmp_path / "schema.yaml"
    path.write_text(proposal.text)
    result = load_source("csv", input=events, schema=load_schema(path), labels=labels)
    assert len(result.users) == 40 and result.report.events == len(frame)
    assert "email" not in result.users.column_names and "phone" not in result.users.column_names


def test_cli_writes_the_yaml_and_prints_two_users_with_token_counts(tmp_path, capsys, tiny_tokenizer):
    events, _ = write_shop(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    out = tmp_path / "schema.yaml"
    argv = ["schema", "infer", str(events), "--output", str(out), "--tokenizer", str(tmp_path / "tok")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert load_schema(out).user_id == "customer"
    assert printed.count("--- user ") == 2 and "--- user c000: " in printed and " tokens (" in printed
    assert "Date|mcc|amount|store|note" in printed
    assert main(argv) == 2  # the file exists: not overwritten without --force
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force", "--preview-users", "0"]) == 0


def test_two_candidate_ids_stop_and_name_the_flag(tmp_path):
    rows = shop_rows()
    events, _ = write_shop(tmp_path, rows, client=[r["customer"].upper() for r in rows])
    with pytest.raises(Llm4esError, match=r"could be the user id: \['customer', 'client'\]; pass --user-id"):
        infer_schema(events)
    assert infer_schema(events, user_id="client").schema.user_id == "client"


def test_two_time_columns_stop_and_name_the_flag(tmp_path):
    rows = shop_rows()
    events, _ = write_shop(tmp_path, rows, shipped_at=[r["ts"].replace("2024-02", "2024-03") for r in rows])
    with pytest.raises(Llm4esError, match=r"could be the event time: \['shipped_at', 'ts'\]; pass --time COLUMN"):
        infer_schema(events)
    assert infer_schema(events, time="shipped_at").schema.time.column == "shipped_at"


def test_day_and_month_that_read_alike_stop_and_name_the_flag(tmp_path):
    rows = [{"user_id": f"u{i % 4}", "when": f"{1 + i % 12:02d}/{1 + i % 11:02d}/2024", "x": str(i)} for i in range(30)]
    events, _ = write_shop(tmp_path, rows)
    with pytest.raises(Llm4esError, match="several formats.*pass --time-format") as err:
        infer_schema(events)
    assert err.value.column == "when"
    schema = infer_schema(events, time_format="%d/%m/%Y").schema
    assert (schema.time.format, schema.field("event_time").format) == ("%d/%m/%Y", "iso_date")


def test_unix_seconds_and_unix_days(tmp_path):
    rows = [{"account": f"a{i % 5}", "created": str(1_700_000_000 + 3_601 * i), "v": f"{i}.5"} for i in range(40)]
    events, _ = write_shop(tmp_path, rows)
    assert infer_schema(events).schema.time.parse == "unix_seconds"
    rows = [{"account": f"a{i % 5}", "day": str(i // 3), "v": f"{i}.5"} for i in range(40)]
    events, _ = write_shop(tmp_path, rows)
    schema = infer_schema(events).schema
    assert schema.time.parse == "unix_days" and schema.field("event_time").format == "days"


def test_card_numbers_are_sensitive(tmp_path):
    cards = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009", "4012888888881881"]
    rows = shop_rows()
    events, _ = write_shop(tmp_path, rows, card=[cards[i % 4] for i in range(len(rows))])
    proposal = infer_schema(events)
    assert "card" in proposal.schema.sensitive and "looks like card numbers" in proposal.text


def test_parquet_folder_and_glob(tmp_path):
    frame = pl.DataFrame(shop_rows())
    folder = tmp_path / "parts"
    folder.mkdir()
    frame[:150].write_parquet(folder / "a.parquet")
    frame[150:].write_parquet(folder / "b.parquet")
    for source in (folder, str(folder / "*.parquet")):
        schema = infer_schema(source).schema
        assert schema.user_id == "customer" and schema.time.format == "%Y-%m-%d %H:%M"
    assert len(infer_schema(folder, rows=100).sample) == 100  # a bounded sample
    (tmp_path / "csv").mkdir()
    frame.write_csv(tmp_path / "csv" / "events.csv")
    write(tmp_path / "csv" / "labels.csv", "customer,churn\nc000,1\n")
    with pytest.raises(Llm4esError, match="header differs from events.csv's") as err:
        infer_schema(tmp_path / "csv")  # a labels file among the events: the files of one input share their columns
    assert err.value.file == str(tmp_path / "csv" / "labels.csv")


def test_bad_input_names_file_column_or_count(tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(Llm4esError, match="empty file") as err:
        infer_schema(empty)
    assert err.value.file == str(empty)
    header = write(tmp_path / "header.csv", "customer,ts,amount\n")
    with pytest.raises(Llm4esError, match="header line but no rows") as err:
        infer_schema(header)
    assert err.value.file == str(header)
    single = write(tmp_path / "single.csv", "customer\na\nb\n")
    with pytest.raises(Llm4esError, match=r"only one column \('customer'\)") as err:
        infer_schema(single)
    assert err.value.file == str(single)
    no_time = write(tmp_path / "no_time.csv", "customer,item\n" + "".join(f"c{i % 3},x{i}\n" for i in range(9)))
    with pytest.raises(Llm4esError, match=r"no usable time column.*9 sampled rows.*--time COLUMN and --time-format"):
        infer_schema(no_time)
    events, _ = write_shop(tmp_path)
    with pytest.raises(Llm4esError, match=r"column 'mcc' does not parse as times in most of the \d+ sampled rows"):
        infer_schema(events, time="mcc")
    with pytest.raises(Llm4esError, match=r"column 'ts' does not parse .*\(tried '%d.%m.%Y'\)"):
        infer_schema(events, time_format="%d.%m.%Y", time="ts")
    with pytest.raises(Llm4esError, match="--user-id: no such column") as err:
        infer_schema(events, user_id="nope")
    assert err.value.column == "nope"
    labels = write(tmp_path / "labels.csv", "client,churn\nc000,1\n")
    with pytest.raises(Llm4esError, match="rename its user id column to 'customer'") as err:
        infer_schema(events, labels=labels)
    assert err.value.file == str(labels)


def test_ragged_line_in_the_sample_is_ours(tmp_path):
    events = write(tmp_path / "events.csv", "customer,ts,v\nc1,2024-01-01,1\nc1,2024-01-02,2,3\n")
    with pytest.raises(Llm4esError, match="4 fields where the header has 3") as err:
        infer_schema(events)
    assert (err.value.file, err.value.row) == (str(events), 3)


def test_a_sensitive_column_may_not_be_in_the_text():
    data = {
        "name": "s",
        "user_id": "u",
        "time": {"column": "t"},
        "fields": [{"name": "email", "kind": "text", "header": "E"}, {"name": "x", "kind": "text", "header": "X"}],
        "sensitive": ["email"],
    }
    with pytest.raises(Llm4esError, match="'email' is marked sensitive") as err:
        schema_from_dict(data)
    assert err.value.key == "fields[0]"
    data["fields"][0]["in_text"] = False
    assert schema_from_dict(data).text_fields[0].name == "x"


def test_iso_times_with_offsets_and_native_parquet_types(tmp_path):
    rows = [
        {"user": f"u{i % 4}", "at": f"2024-05-{1 + i:02d}T10:{i:02d}:00+03:00", "v": f"w{i % 3}"} for i in range(20)
    ]
    events, _ = write_shop(tmp_path, rows)
    schema = infer_schema(events).schema
    assert (schema.time.column, schema.time.format) == ("at", "%Y-%m-%dT%H:%M:%S%.f%#z")
    assert load_source("csv", input=events, schema=schema).users["event_time"][0][0] == 1714546800.0  # 07:00 UTC
    frame = pl.DataFrame(
        {
            "account_id": [i % 5 for i in range(30)],
            "booked": [dt.datetime(2024, 1, 1, 8) + dt.timedelta(minutes=97 * i) for i in range(30)],
            "amount": [1.5 * i for i in range(30)],
        }
    )
    frame.write_parquet(tmp_path / "native.parquet")
    schema = infer_schema(tmp_path / "native.parquet").schema
    assert (schema.user_id, schema.time.column, schema.field("amount").kind) == ("account_id", "booked", "number")
    users = load_source("parquet", input=tmp_path / "native.parquet", schema=schema).users
    assert len(users) == 5 and users["event_time"][0][0] == 1704096000.0


def test_a_raw_column_named_event_time_that_is_not_the_time(tmp_path):
    rows = [{"user": f"u{i % 3}", "ts": f"2024-05-{1 + i:02d} 10:00", "event_time": f"w{i % 2}"} for i in range(12)]
    events, _ = write_shop(tmp_path, rows)
    schema = infer_schema(events).schema
    assert schema.time.column == "ts" and schema.field("event_time_column").column == "event_time"
    users = load_source("csv", input=events, schema=schema).users
    assert users[0]["event_time_column"] == ["w0", "w1", "w0", "w1"]


def test_other_encodings_and_the_subcommand(tmp_path, capsys):
    rows = "user_id,ts,shop\nu1,2024-01-01,Café\nu1,2024-01-02,Bar\nu2,2024-01-03,Café\nu2,2024-01-04,Bar\n"
    events = write(tmp_path / "events.csv", rows, encoding="latin-1")
    with pytest.raises(Llm4esError, match="bytes not valid utf-8.*pass --encoding") as err:
        infer_schema(events)
    assert (err.value.file, err.value.row) == (str(events), 2)
    schema = infer_schema(events, encoding="latin-1").schema
    assert schema.field("shop").kind == "category" and schema.encoding == "latin-1"
    assert load_source("csv", input=events, schema=schema).users[0]["shop"] == ["Café", "Bar"]
    assert main(["schema"]) == 2 and "usage: llm4es schema infer" in capsys.readouterr().err
    assert main(["schema", "guess", str(events)]) == 2 and "unknown subcommand 'guess'" in capsys.readouterr().err
