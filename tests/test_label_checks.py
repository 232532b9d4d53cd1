"""check_labels: a labels file checked against the events' users before any long stage."""

from __future__ import annotations

import polars as pl
import pytest

from llm4es_hf.errors import Llm4esError
from llm4es_hf.sources import check_labels
from tests.conftest import write

USERS = [f"u{i:03d}" for i in range(60)]


def labels_file(tmp_path, rows: list[tuple[str, str]], header: str = "user_id,churn"):
    return write(tmp_path / "labels.csv", header + "\n" + "".join(f"{u},{y}\n" for u, y in rows))


def test_a_good_labels_file_passes_with_its_counts(tmp_path):
    path = labels_file(tmp_path, [(u, i % 2) for i, u in enumerate(USERS[:50])] + [("stranger", "1")])
    check = check_labels(USERS, path, "churn")
    assert (check.event_users, check.labeled, check.matched) == (60, 51, 50)
    assert check.classes == {"0": 25, "1": 25}
    assert "50 of the 60 users have a 'churn' label (2 classes: 0: 25, 1: 25)" in check.line()
    frame = pl.DataFrame({"customer": USERS, "churn": [str(i % 2) for i in range(60)]})
    assert check_labels(pl.Series(USERS), frame, "churn", user_id="customer").matched == 60


def test_ids_that_match_none_or_few_say_how_many(tmp_path):
    path = labels_file(tmp_path, [(f"0{u}", i % 2) for i, u in enumerate(USERS)])
    with pytest.raises(Llm4esError, match=r"only 0 of the 60 labeled users are among the 60 users") as err:
        check_labels(USERS, path, "churn")
    assert err.value.file == str(path) and err.value.column == "user_id"
    assert "'0u000'" in str(err.value) and "'u000'" in str(err.value) and "leading zeros" in str(err.value)
    few = [(u, i % 2) for i, u in enumerate(USERS[:2])] + [(f"x{i}", i % 2) for i in range(40)]
    with pytest.raises(Llm4esError, match=r"only 2 of the 42 labeled users are among the 60 users .*3.3%"):
        check_labels(USERS, labels_file(tmp_path, few), "churn")


def test_one_class_and_small_classes_and_too_few_users(tmp_path):
    with pytest.raises(Llm4esError, match=r"all have one 'churn' class \('1'\)") as err:
        check_labels(USERS, labels_file(tmp_path, [(u, "1") for u in USERS]), "churn")
    assert err.value.column == "churn"
    rare = [(u, "rare" if i < 4 else i % 2) for i, u in enumerate(USERS)]
    with pytest.raises(Llm4esError, match=r"class 'rare' of 'churn' has 4 labeled users, fewer than 5 folds .*\(6 per"):
        check_labels(USERS, labels_file(tmp_path, rare), "churn")
    assert check_labels(USERS, labels_file(tmp_path, rare), "churn", folds=3).classes["rare"] == 4
    with pytest.raises(Llm4esError, match=r"8 labeled users are too few for 5 folds over 2 classes .*at least 12"):
        check_labels(USERS[:8], labels_file(tmp_path, [(u, i % 2) for i, u in enumerate(USERS[:8])]), "churn")


def test_missing_columns_are_named(tmp_path):
    path = labels_file(tmp_path, [(u, 0) for u in USERS], header="client,churn")
    with pytest.raises(Llm4esError, match=r"no column for the user id; the file has \['client', 'churn'\]") as err:
        check_labels(USERS, path, "churn")
    assert err.value.column == "user_id"
    with pytest.raises(Llm4esError, match="no column for the target") as err:
        check_labels(USERS, path, "gender", user_id="client")
    assert err.value.column == "gender"
