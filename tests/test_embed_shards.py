"""`llm4es embed --output FOLDER`: one file per shard, written atomically, resumable, shared by ranks,
refusing to mix runs; `llm4es index` and `llm4es evaluate` read the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import llm4es_hf.cli.embed as embed_cli
import llm4es_hf.embedding.run as embed_run
import llm4es_hf.embedding.sharded as embed_module
from llm4es_hf.artifacts import load_embeddings
from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from tests.support.tiny import SHARD_FILES as FILES
from tests.support.tiny import write_sharded_corpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_sharded_corpus(tmp_path_factory.mktemp("shards") / "corpus")


@pytest.fixture(scope="module")
def one_file(tmp_path_factory, tiny_model, corpus) -> Path:
    """The same corpus embedded in one go, into one Parquet file: what every sharded run must equal."""
    out = tmp_path_factory.mktemp("one") / "emb.parquet"
    assert embed(tiny_model, corpus, out) == 0
    return out


def embed(model: Path, corpus: Path, output: Path, *extra: str) -> int:
    argv = ["embed", "--model", str(model), "--corpus", str(corpus), "--output", str(output)]
    return main([*argv, "--dtype", "fp32", "--batch-size", "4", *extra])


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.iterdir())}


def assert_same_embeddings(sharded: Path, one_file: Path, exact: bool = False) -> None:
    (ids, matrix), (want_ids, want) = load_embeddings(sharded), load_embeddings(one_file)
    assert ids.tolist() == want_ids.tolist()  # every user once, in the corpus' order
    if exact:
        np.testing.assert_array_equal(matrix, want)
    else:
        np.testing.assert_allclose(matrix, want, atol=1e-5)


def test_sharded_output_equals_the_one_file_output(tmp_path, tiny_model, corpus, one_file):
    out = tmp_path / "emb"
    assert embed(tiny_model, corpus, out) == 0  # default: one shard per corpus file
    assert sorted(path.name for path in out.glob("*.parquet")) == sorted(FILES)
    assert_same_embeddings(out, one_file)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(s["name"], s["stop"] - s["start"]) for s in manifest["shards"]] == [
        ("test-00000-of-00001.parquet", 24),
        ("train-00000-of-00002.parquet", 30),
        ("train-00001-of-00002.parquet", 26),
    ]
    assert manifest["embedding"]["layer_start"] == 1 and manifest["corpus"]["path"] == str(corpus.resolve())
    ranges = tmp_path / "ranges"  # row ranges across the train files' boundary
    assert embed(tiny_model, corpus, ranges, "--num-shards", "3", "--splits", "train") == 0
    assert sorted(path.name for path in ranges.glob("*.parquet")) == [
        f"train-0000{k}-of-00003.parquet" for k in range(3)
    ]
    ids, matrix = load_embeddings(ranges)
    want_ids, want = load_embeddings(one_file)
    assert ids.tolist() == want_ids[24:].tolist()
    np.testing.assert_allclose(matrix, want[24:], atol=1e-5)
    with pytest.raises(Llm4esError, match="give a folder"):
        embed_cli.main(
            ["--model", str(tiny_model), "--corpus", str(corpus), "--output", "x.parquet", "--num-shards", "2"]
        )


def test_an_interrupted_run_resumes_with_every_user_once(tmp_path, tiny_model, corpus, monkeypatch, capsys):
    """The process dies while writing its third shard: the two finished shards stay, the partial file
    is a temporary one; the rerun embeds only the missing shard and the result equals an
    uninterrupted run's, bit for bit."""
    whole = tmp_path / "whole"
    assert embed(tiny_model, corpus, whole) == 0
    written, real_write = [], embed_module.write_embedding_shard

    def dies_on_the_third(path, *args, **kwargs):
        if len(written) == 2:
            (path.parent / f".{path.name}.4242.tmp").write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt  # what a kill leaves: no cleanup, no exception handling
        written.append(path.name)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(embed_module, "write_embedding_shard", dies_on_the_third)
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        embed(tiny_model, corpus, out)
    assert sorted(path.name for path in out.glob("*.parquet")) == sorted(written)
    with pytest.raises(Llm4esError, match="1 of 3 shards are not written yet .*rerunning the same"):
        load_embeddings(out)
    rewritten = []
    monkeypatch.setattr(
        embed_module,
        "write_embedding_shard",
        lambda path, *a, **k: rewritten.append(path.name) or real_write(path, *a, **k),
    )
    capsys.readouterr()
    assert embed(tiny_model, corpus, out) == 0
    assert rewritten == ["train-00001-of-00002.parquet"]
    assert "2 were finished before" in capsys.readouterr().out
    assert not list(out.glob(".*"))  # the killed writer's temporary file is gone
    assert_same_embeddings(out, whole, exact=True)


def test_a_folder_of_another_run_is_refused_and_left_as_it_is(tmp_path, tiny_model, corpus):
    out = tmp_path / "emb"
    assert embed(tiny_model, corpus, out, "--num-shards", "2") == 0
    before = snapshot(out)
    for extra, says in [
        (["--num-shards", "3"], "shards: 4 planned there, 6 now"),
        (["--num-shards", "2", "--layer-start", "0"], "embedding.layer_start: 1 there, 0 now"),
        (["--num-shards", "2", "--splits", "test"], "corpus.splits"),
    ]:
        with pytest.raises(Llm4esError, match="another run") as err:
            embed_cli.main(["--model", str(tiny_model), "--corpus", str(corpus), "--output", str(out), *extra])
        assert says in err.value.message and "To resume it, rerun the command" in err.value.message
        assert err.value.file == str(out / "manifest.json")
    other_model = tmp_path / "model"  # the model folder retrained in place: same path, other weights
    other_model.mkdir()
    for path in tiny_model.iterdir():
        (other_model / path.name).write_bytes(path.read_bytes())
    moved = tmp_path / "moved"
    assert embed(other_model, corpus, moved, "--num-shards", "2") == 0
    (other_model / "model.safetensors").write_bytes((other_model / "model.safetensors").read_bytes())
    with pytest.raises(Llm4esError, match=r"model\.files"):
        embed_cli.main(
            ["--model", str(other_model), "--corpus", str(corpus), "--output", str(moved), "--num-shards", "2"]
        )
    assert snapshot(out) == before
    stranger = tmp_path / "stranger"  # files but no manifest: not ours to write into
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(Llm4esError, match="no manifest.json"):
        embed_cli.main(["--model", str(tiny_model), "--corpus", str(corpus), "--output", str(stranger)])
    assert [path.name for path in stranger.iterdir()] == ["notes.txt"]
    with pytest.raises(Llm4esError, match="is not a folder"):
        embed_cli.main(["--model", str(tiny_model), "--corpus", str(corpus), "--output", str(stranger / "notes.txt")])


class FakeState:
    """accelerate's PartialState as process ``index`` of ``count`` sees it, without a process group."""

    def __init__(self, index: int, count: int) -> None:
        self.process_index, self.num_processes, self.is_main_process = index, count, index == 0
        self.device = "cpu"

    def wait_for_everyone(self) -> None:
        pass


def test_processes_take_disjoint_shards(tmp_path, tiny_model, corpus, one_file, monkeypatch, capsys):
    out = tmp_path / "emb"
    real_write, taken = embed_module.write_embedding_shard, {}
    for rank in (0, 1):  # the main process first: it writes the manifest the other one checks
        monkeypatch.setattr(embed_run, "process_state", lambda rank=rank: FakeState(rank, 2))
        monkeypatch.setattr(
            embed_module,
            "write_embedding_shard",
            lambda path, *a, rank=rank, **k: taken.setdefault(rank, []).append(path.name) or real_write(path, *a, **k),
        )
        assert embed(tiny_model, corpus, out, "--num-shards", "3") == 0
    assert taken == {
        0: ["test-00000-of-00003.parquet", "test-00002-of-00003.parquet", "train-00001-of-00003.parquet"],
        1: ["test-00001-of-00003.parquet", "train-00000-of-00003.parquet", "train-00002-of-00003.parquet"],
    }
    printed = capsys.readouterr().out
    assert "process 1/2: " in printed and "3 of 6 shards written (the other processes" in printed
    assert "process 2/2: " in printed and "6 of 6 shards written" in printed
    assert_same_embeddings(out, one_file)


@pytest.mark.slow
def test_two_accelerate_processes_share_the_shards(tmp_path, tiny_model, corpus, one_file):
    out = tmp_path / "emb"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    cmd += [str(ROOT / "recipes" / "accelerate_configs" / "cpu.yaml"), "-m", "llm4es_hf.cli", "embed"]
    cmd += ["--model", str(tiny_model), "--corpus", str(corpus), "--output", str(out), "--num-shards", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*cmd, "--dtype", "fp32"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 1/2: 40 users in 2 shards" in result.stdout and "process 2/2: 40 users in 2 shards" in result.stdout
    assert_same_embeddings(out, one_file)


def test_reading_a_sharded_folder_refuses_bad_shards(tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    with pytest.raises(Llm4esError, match="no Parquet files"):
        load_embeddings(folder)
    pl.DataFrame({"user_id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0, 4.0]]}).write_parquet(folder / "x-1.parquet")
    pl.DataFrame({"user_id": ["c"], "embedding": [[1.0, 2.0]]}).write_parquet(folder / "x-2.parquet")
    ids, matrix = load_embeddings(folder)  # no manifest: every Parquet file, by name
    assert ids.tolist() == ["a", "b", "c"] and matrix.shape == (3, 2)
    pl.DataFrame({"user_id": ["b"], "embedding": [[5.0, 6.0]]}).write_parquet(folder / "x-3.parquet")
    with pytest.raises(Llm4esError, match="'b' appears more than once .*in x-1.parquet, x-3.parquet"):
        load_embeddings(folder)
    pl.DataFrame({"user_id": ["d"], "embedding": [[5, 6]]}).write_parquet(folder / "x-3.parquet")
    with pytest.raises(
        Llm4esError, match="schema differs from x-1.parquet's: column 'embedding' is large_list<element: int64>, not"
    ) as err:
        load_embeddings(folder)
    assert err.value.file == str(folder / "x-3.parquet")
    (folder / "x-3.parquet").unlink()
    shards = [{"name": "x-1.parquet", "split": "x", "start": 0, "stop": 2}]
    (folder / "manifest.json").write_text(json.dumps({"shards": shards}))
    with pytest.raises(Llm4esError, match="manifest.json does not list") as err:
        load_embeddings(folder)
    assert err.value.file == str(folder / "x-2.parquet")
    shards.append({"name": "x-2.parquet", "split": "x", "start": 2, "stop": 4})
    (folder / "manifest.json").write_text(json.dumps({"shards": shards}))
    with pytest.raises(Llm4esError, match="1 rows, but manifest.json plans 2"):
        load_embeddings(folder)


def test_a_corpus_file_of_another_schema_is_refused_before_any_work(tmp_path, tiny_model, corpus):
    bad = tmp_path / "corpus"
    (bad / "serialized").mkdir(parents=True)
    for name in FILES:
        (bad / "serialized" / name).write_bytes((corpus / "serialized" / name).read_bytes())
    pl.DataFrame({"user_id": [1, 2], "text": ["a", "b"]}).write_parquet(
        bad / "serialized" / "train-00001-of-00002.parquet"
    )
    with pytest.raises(Llm4esError, match="column types .*'user_id': 'int64'.* differ from .*in train-00000-of-00002"):
        embed_cli.main(["--model", str(tiny_model), "--corpus", str(bad), "--output", str(tmp_path / "emb")])
    pl.DataFrame({"user_id": ["1"], "body": ["a"]}).write_parquet(bad / "serialized" / "train-00001-of-00002.parquet")
    with pytest.raises(Llm4esError, match="no 'text' column") as err:
        embed_cli.main(["--model", str(tiny_model), "--corpus", str(bad), "--output", str(tmp_path / "emb")])
    assert err.value.file.endswith("train-00001-of-00002.parquet")
    assert not (tmp_path / "emb").exists()


def test_index_and_evaluate_read_the_sharded_folder(tmp_path, tiny_model, corpus, capsys):
    out = tmp_path / "emb"
    assert embed(tiny_model, corpus, out) == 0
    ids, _ = load_embeddings(out)
    labels = tmp_path / "labels.csv"
    pl.DataFrame({"user_id": ids, "flag": [str(i % 2) for i in range(len(ids))]}).write_csv(labels)
    assert main(["index", "--embeddings", str(out), "--output", str(tmp_path / "index"), "--labels", str(labels)]) == 0
    assert "indexed 80 users x 32 dims" in capsys.readouterr().out
    argv = ["evaluate", "--embeddings", str(out), "--labels", str(labels), "--target", "flag"]
    assert main([*argv, "--models", "logreg", "--folds", "3", "--n-jobs", "1"]) == 0
    assert "| emb | logreg |" in capsys.readouterr().out


@pytest.mark.slow
def test_the_benchmark_kill_and_rerun_is_exact(tmp_path):
    """benchmarks/scale.py's embed_resume_exact at a small size: real processes, a real SIGKILL."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _embed_resume import embed_resume_part

    result = embed_resume_part(tmp_path, users=300, shards=3, seed=1)
    assert result["embed_resume_exact"] is True, result
    assert result["embed_resume_shards"] == 6 and result["embed_resume_shards_before_kill"] >= 1
    assert result["embed_resume_shards_skipped_by_rerun"] == result["embed_resume_shards_before_kill"]
