"""The README's main job, end to end on a reduced budget with the bundled model."""

from __future__ import annotations

import json

import datasets
import pytest

from llm4es_hf.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, capsys):
    assert main(["quickstart", "--output-dir", str(tmp_path), "--max-tokens", "256"]) == 0
    out = capsys.readouterr().out
    assert "943" in out
    results = json.loads((tmp_path / "quickstart.json").read_text())
    assert results["users"] == 943
    corpus = datasets.load_from_disk(str(tmp_path / "serialized"))
    assert max(corpus["train"]["n_tokens"]) <= 256
    assert corpus["train"][0]["text"].startswith("Date|Movie|Genres|Rating (1-5)\n")
