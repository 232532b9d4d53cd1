"""`llm4es` CLI: help of every command, serialize end to end, clear errors with exit code 2."""

from __future__ import annotations

import re
import subprocess
import sys

import datasets
import pytest
import yaml

from llm4es_hf.cli import COMMANDS, main
from tests.test_sources import SHOP_SCHEMA


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_every_command(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: llm4es" in out
    # a help text that names its default gets no second "(default: None)" from argparse
    assert not re.search(r"\(default:[^)]*\) \(default:", out), out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "llm4es_hf.cli", "--help"], capture_output=True, text=True, check=True)
    assert "serialize" in out.stdout


def test_serialize_own_csv(tmp_path, capsys, tiny_tokenizer):
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SHOP_SCHEMA))
    rows = "".join(f"u{i % 7},2024-01-{1 + i % 28:02d} 10:00,{'AB'[i % 2]},{i}.5,{i % 2}\n" for i in range(70))
    (tmp_path / "events.csv").write_text("customer,ts,item,price,churn\n" + rows + ",2024-01-01 10:00,A,1,0\n")
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    code = main(
        [
            "serialize",
            "--source",
            "csv",
            "--input",
            str(tmp_path / "events.csv"),
            "--schema",
            str(tmp_path / "schema.yaml"),
            "--output",
            str(tmp_path / "out"),
            "--max-tokens",
            "60",
            "--tokenizer",
            str(tmp_path / "tok"),
            "--test-size",
            "0.3",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "users: 7" in out and "rows dropped, missing user id (customer): 1" in out
    assert "events dropped by the token budget" in out and "tokens per user: p5" in out
    corpus = datasets.load_from_disk(str(tmp_path / "out"))
    assert set(corpus) == {"train", "test"} and len(corpus["test"]) == 2
    assert all(n <= 60 for n in corpus["train"]["n_tokens"])
    assert corpus["train"][0]["text"].startswith("When|Item|Price\n")
    assert "llm4es corpus --num_shards" not in capsys.readouterr().err  # a small input: no note


def test_serialize_points_large_inputs_to_the_sharded_corpus(tmp_path, capsys, monkeypatch):
    from llm4es_hf.corpus import sharded as sharded_corpus

    monkeypatch.setattr(sharded_corpus, "STREAM_BYTES", 100)  # the input below counts as large
    monkeypatch.setattr(sharded_corpus, "SHARD_BYTES", 1000)
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SHOP_SCHEMA))
    rows = "".join(f"u{i % 7},2024-01-{1 + i % 28:02d} 10:00,{'AB'[i % 2]},{i}.5,{i % 2}\n" for i in range(70))
    (tmp_path / "events.csv").write_text("customer,ts,item,price,churn\n" + rows)
    argv = ["serialize", "--source", "csv", "--input", str(tmp_path / "events.csv")]
    argv += ["--schema", str(tmp_path / "schema.yaml"), "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    size = (tmp_path / "events.csv").stat().st_size
    assert f"`llm4es corpus --num_shards {-(-size // 1000)}`" in capsys.readouterr().err
    assert len(datasets.load_from_disk(str(tmp_path / "out"))["train"]) > 0  # and it still serializes
    assert (tmp_path / "out" / "schema.yaml").exists() and (tmp_path / "out" / "summary.json").exists()


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert (
        main(["serialize", "--source", "csv", "--input", str(tmp_path / "x.csv"), "--output", str(tmp_path / "o")]) == 2
    )
    assert "needs --schema" in capsys.readouterr().err
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump({**SHOP_SCHEMA, "colour": 1}))
    assert (
        main(
            [
                "serialize",
                "--source",
                "csv",
                "--input",
                str(tmp_path / "x.csv"),
                "--schema",
                str(tmp_path / "schema.yaml"),
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "colour" in capsys.readouterr().err
