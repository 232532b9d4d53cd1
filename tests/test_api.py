"""The public Python API: the front-door names, raw events -> vectors exactly as `llm4es embed` on the
corpus (local folder and Hub repo), optional extras named when missing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import load_embeddings
from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from llm4es_hf.extras import require
from llm4es_hf.sources.synthetic import generate_rosbank


def test_front_door_names_import_without_the_optional_extras():
    code = (
        "import sys; from llm4es_hf import EventSchema, Serializer, UserEncoder, UserIndex, evaluate_embeddings; "
        "assert not {'faiss', 'lightgbm', 'gradio', 'matplotlib'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # what an uninstalled module looks like to import
    with pytest.raises(
        Llm4esError, match=r"faiss is not installed; install the extra: pip install 'llm4es-hf\[search\]'"
    ):
        require("faiss")
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(Llm4esError, match=r"llm4es-hf\[eval\]"):
        require("lightgbm")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def exported(tmp_path, tiny_model, tiny_corpus):
    """The tiny model exported with the tiny corpus' schema and serialization, and its corpus embeddings."""
    from llm4es_hf import UserEncoder

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    assert main(["export-st", str(model), "--corpus", str(tiny_corpus), "--max-length", "512"]) == 0
    assert (model / "schema.yaml").exists() and (model / "llm4es_serialization.json").exists()
    assert (
        main(["embed", "--model", str(model), "--corpus", str(tiny_corpus), "--output", str(tmp_path / "e.parquet")])
        == 0
    )
    ids, matrix = load_embeddings(tmp_path / "e.parquet")
    with pytest.raises(Llm4esError, match="carries no schema.yaml"):
        UserEncoder.from_pretrained(str(tiny_model)).encode_events(pl.DataFrame({"cl_id": ["1"]}))
    return model, dict(zip(ids, matrix, strict=True))


def _raw_events(user_ids: list[str]) -> pl.DataFrame:
    """The raw rows of the tiny corpus' users, as a user would have them (Rosbank's columns)."""
    raw = generate_rosbank(1000, 50.0, seed=42)  # the synthetic source the tiny corpus was built from
    return raw.filter(pl.col("cl_id").is_in(user_ids)).sample(fraction=1.0, shuffle=True, seed=0)


def test_raw_events_give_the_corpus_vectors(exported):
    from llm4es_hf import UserEncoder

    model, corpus_vectors = exported
    wanted = sorted(corpus_vectors)[:5]
    encoder = UserEncoder.from_pretrained(str(model))
    user_ids, vectors = encoder.encode_events(_raw_events(wanted).to_pandas())  # pandas works as polars does
    assert sorted(user_ids) == wanted
    expected = np.stack([corpus_vectors[u] for u in user_ids])
    assert _cosines(vectors, expected).min() >= 0.9999
    _, texts = encoder.texts_of_events(_raw_events(wanted[:1]))
    assert np.allclose(encoder.encode_texts(texts), corpus_vectors[wanted[0]], atol=1e-5)


def test_raw_events_through_the_hub(exported, loopback_hub):
    from llm4es_hf import UserEncoder
    from llm4es_hf.hub import push_model

    model, corpus_vectors = exported
    push_model(model, "org/tiny-encoder", revision="run-1")
    wanted = sorted(corpus_vectors)[5:8]
    user_ids, vectors = UserEncoder.from_pretrained("org/tiny-encoder").encode_events(_raw_events(wanted))
    expected = np.stack([corpus_vectors[u] for u in user_ids])
    assert sorted(user_ids) == wanted and _cosines(vectors, expected).min() >= 0.9999
