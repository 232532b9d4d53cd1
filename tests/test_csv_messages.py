"""Our own messages for two CSV mistakes: a ragged line and a header-only file (file, row, what to do)."""

from __future__ import annotations

import pytest
import yaml

from llm4es_hf.errors import Llm4esError
from llm4es_hf.schema import load_schema
from llm4es_hf.sources import load_source
from tests.conftest import write
from tests.test_sources import SHOP_SCHEMA

HEADER = "customer,ts,item,price,churn\n"
ROWS = "".join(f"u{i % 3},2024-01-{1 + i:02d} 10:00,A,{i}.5,{i % 2}\n" for i in range(6))


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(SHOP_SCHEMA))
    return path


def test_ragged_line_names_file_row_and_the_fix(tmp_path, schema_file):
    events = write(tmp_path / "events.csv", HEADER + ROWS + "u1,2024-01-09 10:00,A,1.5,0,surplus\n" + ROWS)
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema_file)
    assert err.value.file == str(events) and err.value.row == 8  # header + 6 rows, then the ragged line
    message = str(err.value)
    assert "6 fields where the header has 5" in message and "quoted" in message
    assert "truncate_ragged_lines" not in message


def test_ragged_line_in_a_gzipped_file_read_in_shards(tmp_path, schema_file):
    from llm4es_hf.sources.stream import partition_events

    events = write(tmp_path / "events.csv", HEADER + ROWS + 'u1,"2024-01-09 10:00",A,1.5,0,x\n', gz=True)
    schema = load_schema(schema_file)
    with pytest.raises(Llm4esError) as err:
        partition_events([events], schema, 2, [0, 1], tmp_path / "parts")
    assert err.value.file == str(events) and err.value.row == 8
    assert "6 fields where the header has 5 (more" in str(err.value)


def test_header_only_file_is_named(tmp_path, schema_file):
    events = write(tmp_path / "events.csv", HEADER)
    with pytest.raises(Llm4esError) as err:
        load_source("csv", input=events, schema=schema_file)
    assert err.value.file == str(events) and err.value.row == 1
    assert "header line but no rows" in str(err.value) and "file events" not in str(err.value)


def test_header_only_file_read_in_shards_is_named(tmp_path, schema_file):
    from llm4es_hf.sources.stream import partition_events

    events = write(tmp_path / "events.csv", HEADER)
    with pytest.raises(Llm4esError, match="header line but no rows") as err:
        partition_events([events], load_schema(schema_file), 2, [0, 1], tmp_path / "parts")
    assert err.value.file == str(events)


def test_header_only_bank_file_is_named(tmp_path):
    folder = tmp_path / "age"
    write(folder / "transactions_train.csv", "client_id,trans_date,small_group,amount_rur\n", gz=True)
    write(folder / "train_target.csv", "client_id,bins\n1,0\n")
    write(folder / "small_group_description.csv", "small_group,small_group_code\nFood,4\n")
    with pytest.raises(Llm4esError, match="header line but no rows") as err:
        load_source("age", input=folder)
    assert err.value.file.endswith("transactions_train.csv.gz")


def test_empty_file_is_named(tmp_path, schema_file):
    events = write(tmp_path / "events.csv", "")
    with pytest.raises(Llm4esError, match="empty file") as err:
        load_source("csv", input=events, schema=schema_file)
    assert err.value.file == str(events)
