"""Serialization: golden texts per format, parse-back, truncation, equality with the row-wise reference."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml

from llm4es_hf.errors import Llm4esError
from llm4es_hf.schema import schema_from_dict, schema_to_dict
from llm4es_hf.serialize import FORMATS, Serializer, serialize_users_rowwise, summarize
from llm4es_hf.sources import load_source

SCHEMA = schema_from_dict(
    {
        "name": "shop",
        "domain": {"events": "purchases"},
        "user_id": "customer",
        "time": {"column": "ts"},
        "fields": [
            {"name": "event_time", "kind": "date", "header": "Date"},
            {"name": "item", "kind": "category", "header": "Item", "codes": {"A": "apple", "B": 'bread "rye"'}},
            {"name": "price", "kind": "number", "header": "Price", "decimals": 2},
            {"name": "qty", "kind": "number", "format": "log_amount", "header": "Qty (log)"},
            {"name": "note", "kind": "text", "header": "Note"},
        ],
        "group_by": "item",
    }
)
DAY = 86400.0
FIELDS = schema_to_dict(SCHEMA)["fields"]


def users() -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [
            {
                "user_id": "u1",
                "event_time": [0.0, DAY, 2 * DAY],
                "item": ["A", "B", "A"],
                "price": [1.005, -2.5, 3.0],
                "qty": [0.0, 10.0, -100.0],
                "note": ["a|b", "<x> & y", "line"],
                "n_events": 3,
            },
            {
                "user_id": "u2",
                "event_time": [5 * DAY],
                "item": [None],
                "price": [None],
                "qty": [1.0],
                "note": ["z"],
                "n_events": 1,
            },
        ]
    )


GOLDEN = {
    "llm4es": "Date|Item|Price|Qty (log)|Note\n"
    "1970-01-01, apple, 1.00, 0, a|b\n"
    '1970-01-02, bread "rye", -2.50, 2, <x> & y\n'
    "1970-01-03, apple, 3.00, -4, line",
    "grouped": "Date|Price|Qty (log)|Note\n"
    "### Category: apple\n1970-01-01, 1.00, 0, a|b\n1970-01-03, 3.00, -4, line\n"
    '### Category: bread "rye"\n1970-01-02, -2.50, 2, <x> & y',
    "markdown": "| Date | Item | Price | Qty (log) | Note |\n| --- | --- | --- | --- | --- |\n"
    "| 1970-01-01 | apple | 1.00 | 0 | a\\|b |\n"
    '| 1970-01-02 | bread "rye" | -2.50 | 2 | <x> & y |\n'
    "| 1970-01-03 | apple | 3.00 | -4 | line |",
    "html": "<table>\n<tr><th>Date</th><th>Item</th><th>Price</th><th>Qty (log)</th><th>Note</th></tr>\n"
    "<tr><td>1970-01-01</td><td>apple</td><td>1.00</td><td>0</td><td>a|b</td></tr>\n"
    "<tr><td>1970-01-02</td><td>bread &quot;rye&quot;</td><td>-2.50</td><td>2</td>"
    "<td>&lt;x&gt; &amp; y</td></tr>\n"
    "<tr><td>1970-01-03</td><td>apple</td><td>3.00</td><td>-4</td><td>line</td></tr>\n</table>",
}


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_golden_texts(fmt):
    assert Serializer(SCHEMA, fmt)(users())[0]["text"] == GOLDEN[fmt]


def test_missing_values_render_with_fallbacks():
    assert (
        Serializer(SCHEMA)(users())[1]["text"] == "Date|Item|Price|Qty (log)|Note\n1970-01-06, unknown, unknown, 0, z"
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_parse_back(fmt):
    text = Serializer(SCHEMA, fmt)(users())[0]["text"]
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert list(data) == ["purchases"]
    rows = data["purchases"]
    assert rows[1] == {
        "Date": "1970-01-02",
        "Item": 'bread "rye"',
        "Price": "-2.50",
        "Qty (log)": "2",
        "Note": "<x> & y",
    }
    assert [r["Date"] for r in rows] == ["1970-01-01", "1970-01-02", "1970-01-03"]


def test_every_format_is_deterministic():
    for fmt in FORMATS:
        assert Serializer(SCHEMA, fmt)(users())["text"] == Serializer(SCHEMA, fmt)(users())["text"]


def test_max_events_keeps_the_latest():
    out = Serializer(SCHEMA, max_events=2)(users())
    assert out[0]["text"].split("\n")[1].startswith("1970-01-02")
    assert out["n_events_kept"] == [2, 1]


def test_token_budget_keeps_latest_whole_events(tiny_tokenizer):
    source = load_source("synthetic", synthetic_users=30, synthetic_events_per_user=40)
    for fmt in ("llm4es", "json", "grouped", "markdown"):
        budget = 700
        out = Serializer(source.schema, fmt, max_tokens=budget, tokenizer=tiny_tokenizer)(source.users)
        full = Serializer(source.schema, fmt)(source.users)
        for row, whole in zip(out, full, strict=False):
            assert row["n_tokens"] <= budget
            assert len(tiny_tokenizer(row["text"], add_special_tokens=False)["input_ids"]) == row["n_tokens"]
            assert 0 < row["n_events_kept"] < row["n_events"]
            if fmt == "llm4es":
                lines = row["text"].split("\n")
                assert whole["text"].endswith("\n".join(lines[1:]))  # a suffix of whole lines: the latest events
                # one more event would not have fit
                more = whole["text"].split("\n")
                longer = "\n".join([more[0]] + more[-(len(lines)) :])
                assert len(tiny_tokenizer(longer, add_special_tokens=False)["input_ids"]) > budget - 60


def test_max_events_applies_before_the_token_budget(tiny_tokenizer):
    source = load_source("synthetic", synthetic_users=5, synthetic_events_per_user=40)
    out = Serializer(source.schema, max_events=3, max_tokens=10_000, tokenizer=tiny_tokenizer)(source.users)
    assert out["n_events_kept"] == [3] * 5
    summary = summarize(out, source.schema, max_events=3)
    assert summary.dropped_by_max_events == summary.events - 15 and summary.dropped_by_token_budget == 0


def test_vectorized_equals_rowwise_reference():
    for name, kwargs in (("movielens", {}), ("synthetic", {"synthetic_users": 200})):
        source = load_source(name, **kwargs)
        ours = Serializer(source.schema, max_events=100)(source.users)["text"]
        assert ours == serialize_users_rowwise(list(source.users), source.schema, max_events=100)
    assert Serializer(SCHEMA)(users())["text"] == serialize_users_rowwise(list(users()), SCHEMA)


def test_fields_out_of_the_text_are_not_rendered():
    hidden = schema_from_dict(
        {**schema_to_dict(SCHEMA), "fields": [{**f, "in_text": f["name"] not in ("item", "qty")} for f in FIELDS]}
    )
    texts = Serializer(hidden)(users())["text"]
    assert texts[0] == "Date|Price|Note\n1970-01-01, 1.00, a|b\n1970-01-02, -2.50, <x> & y\n1970-01-03, 3.00, line"
    assert texts == serialize_users_rowwise(list(users()), hidden)
    # `grouped` still opens its sections by the group_by field, shown or not
    assert Serializer(hidden, "grouped")(users())["text"][0].startswith("Date|Price|Note\n### Category: apple\n")


def test_bad_serializer_options():
    with pytest.raises(Llm4esError, match="format"):
        Serializer(SCHEMA, "xml")
    with pytest.raises(Llm4esError, match="tokenizer"):
        Serializer(SCHEMA, max_tokens=100)
    with pytest.raises(Llm4esError, match="max_events"):
        Serializer(SCHEMA, max_events=0)
    no_group = schema_from_dict(
        {
            "name": "x",
            "user_id": "u",
            "time": {"column": "t"},
            "fields": [{"name": "event_time", "kind": "date", "header": "D"}],
        }
    )
    with pytest.raises(Llm4esError, match="group_by"):
        Serializer(no_group, "grouped")
    with pytest.raises(Llm4esError, match="no column 'note'"):
        Serializer(SCHEMA)(users().remove_columns("note"))


def test_budget_smaller_than_one_event_keeps_the_header(tiny_tokenizer):
    header_tokens = len(tiny_tokenizer("Date|Item|Price|Qty (log)|Note\n", add_special_tokens=False)["input_ids"])
    out = Serializer(SCHEMA, max_tokens=header_tokens + 1, tokenizer=tiny_tokenizer)(users())
    assert out["n_events_kept"] == [0, 0]
    assert out["text"] == ["Date|Item|Price|Qty (log)|Note\n"] * 2
