"""EventSchema: built-in schemas load; invalid ones fail naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from llm4es_hf.errors import Llm4esError
from llm4es_hf.schema import builtin_schemas, load_schema, save_schema, schema_from_dict

VALID = {
    "name": "shop",
    "user_id": "customer",
    "time": {"column": "ts", "parse": "unix_seconds"},
    "fields": [
        {"name": "event_time", "kind": "date", "header": "Date"},
        {"name": "item", "kind": "category", "header": "Item", "codes": {"1": "apple"}},
        {"name": "price", "kind": "number", "format": "round", "header": "Price"},
    ],
    "labels": [{"name": "churn", "task": "binary"}],
}


@pytest.mark.parametrize("name", builtin_schemas())
def test_builtin_schemas_load_by_name(name):
    schema = load_schema(name)
    assert schema.fields[0].name == "event_time"
    assert schema.labels


def test_builtin_schema_names_and_unknown_ones():
    assert {"movielens", "movielens_compact", "rosbank", "gender", "age"} <= set(builtin_schemas())
    with pytest.raises(Llm4esError, match=r"no built-in schema 'movielenz'.*movielens_compact"):
        load_schema("movielenz")
    with pytest.raises(Llm4esError, match="schema file not found") as err:
        load_schema("missing/schema.yaml")
    assert "missing/schema.yaml" in str(err.value)


def test_valid_schema_and_defaults():
    schema = schema_from_dict(VALID)
    assert schema.headers == ["Date", "Item", "Price"]
    assert schema.code_map(schema.field("item")) == {"1": "apple"}
    assert schema.bad_rows == "error" and schema.duplicates == "keep"


def _mutated(path: list, value) -> dict:
    data = copy.deepcopy(VALID)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (["colour"], "red", "schema.colour"),
        (["user_id"], KeyError, "schema.user_id"),
        (["fields", 1, "kind"], "money", "fields[1].kind"),
        (["fields", 1, "typo"], 1, "fields[1].typo"),
        (["fields", 2, "format"], "scientific", "fields[2].format"),
        (["fields", 2, "codes"], {"a": "b"}, "fields[2].codes"),
        (["fields", 1, "header"], "a|b", "fields[1].header"),
        (["fields", 2, "name"], "item", "fields[2].name"),
        (["time", "parse"], "strptime", "time.format"),
        (["time", "parse"], "julian", "time.parse"),
        (["labels", 0, "task"], "regression", "labels[0].task"),
        (["group_by"], "nothing", "group_by"),
        (["bad_rows"], "ignore", "bad_rows"),
        (["fields"], [], "fields"),
        (["fields", 1, "codes_file"], "missing.csv", "fields[1].codes_file"),
        (["fields", 1, "in_text"], "no", "fields[1].in_text"),
    ],
)
def test_invalid_schema_names_the_key(path, value, key):
    with pytest.raises(Llm4esError) as err:
        schema_from_dict(_mutated(path, value))
    assert err.value.key == key
    assert key in str(err.value)


def test_load_schema_errors_name_the_file(tmp_path):
    bad = tmp_path / "schema.yaml"
    bad.write_text(yaml.safe_dump({**VALID, "extra": 1}))
    with pytest.raises(Llm4esError) as err:
        load_schema(bad)
    assert str(bad) in str(err.value) and "extra" in str(err.value)
    bad.write_text("name: [unclosed")
    with pytest.raises(Llm4esError, match="invalid YAML"):
        load_schema(bad)
    with pytest.raises(Llm4esError, match="not found"):
        load_schema(tmp_path / "nope.yaml")


def test_codes_file_and_package_codes(tmp_path):
    (tmp_path / "codes.csv").write_text("desc;code\nFood;5411\nOwn;77\n", encoding="utf-8")
    data = copy.deepcopy(VALID)
    data["fields"][1] = {
        "name": "item",
        "kind": "category",
        "header": "MCC",
        "codes_file": "codes.csv",
        "codes_columns": ["code", "desc"],
        "codes_from": "iso18245",
        "codes": {"1": "one"},
    }
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(data))
    schema = load_schema(path)
    codes = schema.code_map(schema.field("item"))
    assert codes["1"] == "one"
    assert codes["5411"] == "Groceries and supermarkets"  # iso18245 wins over the file
    assert codes["742"] == codes["0742"]
    assert codes["77"] == "Own"


def test_saved_schema_is_self_contained(tmp_path):
    schema = load_schema("rosbank")
    save_schema(schema, tmp_path / "schema.yaml")
    again = load_schema(tmp_path / "schema.yaml")
    assert again.code_map(again.field("MCC")) == schema.code_map(schema.field("MCC"))
    assert again.field("MCC").codes_from is None


def test_fields_left_out_of_the_text_are_kept_and_saved(tmp_path):
    data = _mutated(["fields", 1, "in_text"], False)
    schema = schema_from_dict(data)
    hidden = data["fields"][1]["name"]
    assert [f.name for f in schema.text_fields] == [f.name for f in schema.fields if f.name != hidden]
    assert schema.headers == [f.header for f in schema.text_fields]
    save_schema(schema, tmp_path / "schema.yaml")
    saved = yaml.safe_load((tmp_path / "schema.yaml").read_text())
    assert saved["fields"][1]["in_text"] is False and "in_text" not in saved["fields"][0]
    assert load_schema(tmp_path / "schema.yaml").text_fields == schema.text_fields
    for spec in data["fields"]:
        spec["in_text"] = False
    with pytest.raises(Llm4esError, match="text would be empty") as err:
        schema_from_dict(data)
    assert err.value.key == "fields"
