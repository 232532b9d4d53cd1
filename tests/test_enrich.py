"""Enrichment: prompts, the transformers and OpenAI backends, the cache, the runner, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest

from llm4es_hf.cli import main as llm4es
from llm4es_hf.enrich import (
    VARIANTS,
    EnrichmentCache,
    Generation,
    OpenAIBackend,
    SamplingConfig,
    TransformersBackend,
    build_messages,
    classify,
    enrich_records,
    enrich_texts,
    make_backend,
    pick_users,
    record_key,
    render_prompt,
)
from llm4es_hf.enrich.backends import finish_of
from llm4es_hf.errors import Llm4esError
from llm4es_hf.schema import load_schema, save_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ("movielens", "rosbank", "gender", "age")
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
MOVIELENS_TEXT = "Date|Movie|Genres|Rating (1-5)\n1997-09-22, Toy Story, Animation/Comedy, 5"


def llm4es_enrich(argv: list[str]) -> int:
    return llm4es(["enrich", *argv])


@pytest.fixture(scope="module")
def movielens_schema():
    return load_schema("movielens")


@pytest.fixture(scope="module")
def tiny_generator(tiny_tokenizer, tmp_path_factory) -> Path:
    """A tiny random Llama with a chat template, saved like a checkpoint."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_tokenizer.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_backend(tiny_generator) -> TransformersBackend:
    return TransformersBackend(str(tiny_generator), batch_size=4, device="cpu", dtype="float32")


# ----- prompts ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", SCHEMAS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_prompts_speak_the_data_sets_words(dataset, variant, tiny_backend):
    schema = load_schema(dataset)
    text = "HEADER|A|B\n1, x, y\n2, z, w"
    messages = build_messages(text, variant, schema)
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert schema.domain.events in system
    assert "preserving all original data fields" in system
    assert schema.domain.description in system
    assert text in user
    assert schema.domain.user in user
    assert "{" + "event" not in system + user
    if variant in ("free", "all_events", "analysis"):
        assert "JSON, HTML, Markdown, plain text, XML, YAML" in user
        assert "Randomize the format" in user
    if variant == "all_events":
        assert f"Write ALL {schema.domain.events}" in user
    if variant == "analysis":
        assert f"short analysis of this {schema.domain.user}'s {schema.domain.events}" in user
    rendered = render_prompt(messages, tiny_backend.tokenizer)
    assert rendered.startswith("<system>") and rendered.endswith("<assistant>")
    assert text in rendered


def test_movielens_prompt_talks_about_movie_ratings(movielens_schema):
    system, user = (m["content"] for m in build_messages(MOVIELENS_TEXT, "json", movielens_schema))
    assert "structured list of movie ratings" in system
    assert "the movie ratings of one viewer" in user.lower()
    assert "a JSON document" in user
    assert "transactions" not in system + user


def test_unknown_variant_names_the_known_ones(movielens_schema):
    with pytest.raises(Llm4esError, match="'poem'.*known:.*'all_events'.*'free'"):
        build_messages("x", "poem", movielens_schema)


def test_render_without_chat_template_is_an_error():
    base_model_tokenizer = SimpleNamespace(chat_template=None, name_or_path="some/base-model")
    with pytest.raises(Llm4esError, match="'some/base-model' has no chat template"):
        render_prompt([{"role": "user", "content": "x"}], base_model_tokenizer)


# ----- transformers backend --------------------------------------------------------------


def _conversations(*texts: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": text}] for text in texts]


def test_transformers_backend_left_pads_and_batches_like_single_prompts(tiny_backend):
    assert tiny_backend.tokenizer.padding_side == "left"
    conversations = _conversations("Toy Story, 5", "1997-09-22, Toy Story, Animation/Comedy, 5\n" * 3, "Grocery")
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=6)
    batched = tiny_backend.generate(conversations, greedy)
    single = [tiny_backend.generate([c], greedy)[0] for c in conversations]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.text for g in batched)


def test_transformers_backend_respects_max_new_tokens_and_reports_length(tiny_backend):
    seen = []
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=5, seed=3)
    out = tiny_backend.generate(_conversations("a", "bb b", "ccc"), sampling, callback=lambda i, g: seen.append(i))
    assert sorted(seen) == [0, 1, 2]
    for generation in out:
        assert generation.finish_reason == "length"
        assert generation.completion_tokens == 5
    again = tiny_backend.generate(_conversations("a", "bb b", "ccc"), sampling)
    assert [g.text for g in again] == [g.text for g in out]
    other = tiny_backend.generate(_conversations("a", "bb b", "ccc"), SamplingConfig(1.0, 1.0, 5, seed=4))
    assert [g.text for g in other] != [g.text for g in out]


def test_finish_reason_of_generated_ids():
    assert finish_of([5, 6, 2, 2, 2], {2}, 5) == (3, "stop")
    assert finish_of([5, 6, 7], {2, 9}, 3) == (3, "length")
    assert finish_of([9], {2, 9}, 3) == (1, "stop")


def test_runner_with_the_transformers_backend(tiny_backend, movielens_schema, tmp_path):
    sampling = SamplingConfig(max_new_tokens=4)
    with EnrichmentCache(tmp_path / "c.sqlite") as cache:
        texts, report = enrich_texts(
            ["a", "b"], "free", movielens_schema, tiny_backend, cache, sampling=sampling, keep_truncated=True
        )
        assert all(texts) and report.ok == 2 and report.truncated == 2 and report.completion_tokens == 8
        failed, report = enrich_texts(
            ["c"], "free", movielens_schema, tiny_backend, cache, sampling=sampling, max_retries=1, progress=False
        )
    assert failed == [None] and report.truncated == 2 and report.retried == 1 and report.failed == 1


@pytest.mark.slow
def test_bundled_smollm2_generates(movielens_schema):
    backend = TransformersBackend("smollm2-135m", batch_size=2, device="cpu")
    conversations = [build_messages(MOVIELENS_TEXT, v, movielens_schema) for v in ("json", "markdown")]
    sampling = SamplingConfig(max_new_tokens=12)
    out = backend.generate(conversations, sampling)
    assert all(g.text.strip() and g.finish_reason in ("stop", "length") for g in out)
    assert all(0 < g.completion_tokens <= 12 for g in out)
    assert [g.text for g in backend.generate(conversations, sampling)] == [g.text for g in out]


# ----- OpenAI backend --------------------------------------------------------------------


def test_openai_backend_keeps_order_under_concurrency(fake_openai):
    prompts = [f"user {i}" for i in range(12)]
    fake_openai.delay_fn = lambda prompt: 0.01 * (12 - int(prompt.split()[1]))
    seen = []
    with OpenAIBackend(fake_openai.url, "fake", concurrency=6) as backend:
        out = backend.generate(_conversations(*prompts), SamplingConfig(seed=7), callback=lambda i, g: seen.append(i))
    assert [g.text for g in out] == [f"Rewritten (seed 7):\nUSER {i}" for i in range(12)]
    assert seen != sorted(seen)  # results were handed over as they arrived
    assert all(g.finish_reason == "stop" and g.completion_tokens == 5 for g in out)
    body = fake_openai.requests[0]
    assert body["model"] == "fake" and body["temperature"] == 0.6 and body["top_p"] == 0.9
    assert body["max_tokens"] == 512 and body["seed"] == 7 and "top_k" not in body


def test_openai_backend_retries_after_server_errors(fake_openai):
    fake_openai.fail_first = 3
    with OpenAIBackend(fake_openai.url, "fake", concurrency=1, max_retries=3, backoff=0.01) as backend:
        out = backend.generate(_conversations("x"), SamplingConfig())
    assert out[0].text.endswith("X") and fake_openai.served == 4


def test_openai_backend_gives_up_naming_the_url(fake_openai):
    fake_openai.fail_first = 100
    backend = OpenAIBackend(fake_openai.url, "fake", max_retries=1, backoff=0.01)
    with backend, pytest.raises(Llm4esError, match=r"/v1/chat/completions failed after 2 attempt.*HTTP 500"):
        backend.generate(_conversations("x"), SamplingConfig())


def test_openai_backend_server_down_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with OpenAIBackend(url, "fake", max_retries=2, backoff=0.01, api_key="sk-secret-123") as backend:
        with pytest.raises(Llm4esError) as info:
            backend.generate(_conversations("x", "y"), SamplingConfig())
        assert "sk-secret" not in repr(backend)
    message = str(info.value)
    assert f"{url}/chat/completions" in message and "3 attempt" in message and "cannot connect" in message
    assert "sk-secret" not in message


@pytest.mark.parametrize(("garbage", "what"), [("not_json", "not JSON"), ("no_choices", r"no `choices\[0\]`")])
def test_openai_backend_garbage_is_a_clear_error(fake_openai, garbage, what):
    fake_openai.garbage = garbage
    backend = OpenAIBackend(fake_openai.url, "fake")
    with backend, pytest.raises(Llm4esError, match=f"{fake_openai.url}/chat/completions returned .*{what}"):
        backend.generate(_conversations("x"), SamplingConfig())


def test_make_backend_by_kind(fake_openai):
    backend = make_backend("openai", generator="served-model", base_url=fake_openai.url, concurrency=3)
    assert backend.name == "openai:served-model" and backend.batch_size == 3
    with pytest.raises(Llm4esError, match="unknown backend 'vllm'; known: \\['transformers', 'openai'\\]"):
        make_backend("vllm")
    with pytest.raises(Llm4esError, match="needs a base URL"):
        make_backend("openai", generator="m")


def test_openai_backend_rejected_prompt_and_api_key(fake_openai):
    with OpenAIBackend(fake_openai.url, "fake", api_key="sk-secret-123") as backend:
        out = backend.generate(_conversations("ok", "[[TOOLONG]]"), SamplingConfig())
    assert out[0].finish_reason == "stop"
    assert out[1].finish_reason == "error" and "maximum context length" in out[1].error
    assert classify(out[1]) == "error"
    assert fake_openai.headers[0]["Authorization"] == "Bearer sk-secret-123"


# ----- cache and runner ------------------------------------------------------------------


def test_cache_keys_and_persistence(tmp_path):
    sampling = SamplingConfig().key_fields()
    key = record_key("openai:m", "free", [{"role": "user", "content": "x"}], sampling)
    assert key != record_key("openai:m", "json", [{"role": "user", "content": "x"}], sampling)
    assert key != record_key("openai:other", "free", [{"role": "user", "content": "x"}], sampling)
    assert key != record_key("openai:m", "free", [{"role": "user", "content": "x"}], {**sampling, "seed": 43})
    with EnrichmentCache(tmp_path / "c.sqlite") as cache:
        cache.put(key, generator="g", variant="free", status="ok", text="t", finish_reason="stop",
                  completion_tokens=3, attempts=1)  # fmt: skip
    with EnrichmentCache(tmp_path / "c.sqlite") as cache:
        record = cache.get(key)
        assert (record.text, record.status, record.completion_tokens, record.attempts) == ("t", "ok", 3, 1)
        assert len(cache) == 1 and cache.counts() == {"ok": 1}
    (tmp_path / "bad.sqlite").write_text("not a database" * 100)
    with pytest.raises(Llm4esError, match="cannot open the enrichment cache"):
        EnrichmentCache(tmp_path / "bad.sqlite")


def test_classify_outputs():
    assert classify(Generation("  \n", "stop", 1)) == "empty"
    assert classify(Generation("{'a': 1", "length", 9)) == "truncated"
    assert classify(Generation("I'm sorry, but I cannot do that.", "stop", 5)) == "refused"
    assert classify(Generation("Sure. As an AI language model I won't.", "stop", 5)) == "refused"
    assert classify(Generation("Here it is:\n- Sorry, Wrong Number (drama), 4", "stop", 5)) is None
    assert classify(Generation("x" * 400 + ". I cannot", "stop", 5)) is None
    assert classify(Generation("", "error", 0, error="HTTP 400")) == "error"


def test_cache_hit_avoids_regeneration(fake_openai, movielens_schema, tmp_path):
    texts = [f"row {i}" for i in range(5)] + ["row 0"]
    with OpenAIBackend(fake_openai.url, "fake") as backend, EnrichmentCache(tmp_path / "c.sqlite") as cache:
        first, report = enrich_texts(texts, "free", movielens_schema, backend, cache, progress=False)
        assert report.generated == 5 and report.from_cache == 0 and report.ok == 6
        assert first[0] == first[5] and sum(fake_openai.counts.values()) == 5
        again, report = enrich_texts(texts, "free", movielens_schema, backend, cache, progress=False)
        assert again == first and report.from_cache == 6 and report.generated == 0
        assert sum(fake_openai.counts.values()) == 5
        _, report = enrich_texts(texts[:1], "json", movielens_schema, backend, cache, progress=False)
        assert report.generated == 1 and sum(fake_openai.counts.values()) == 6


def test_bad_outputs_are_retried_then_reported(fake_openai, movielens_schema, tmp_path):
    texts = ["good", "[[REFUSE]]", "[[EMPTY]]", "[[FLAKY]]", "[[LONG]]", "[[TOOLONG]]"]
    with OpenAIBackend(fake_openai.url, "fake") as backend, EnrichmentCache(tmp_path / "c.sqlite") as cache:
        records, report = enrich_records(texts, "free", movielens_schema, backend, cache, max_retries=2, progress=False)
        assert [r.text is not None for r in records] == [True, False, False, True, False, False]
        assert [r.problem for r in records][1:3] == ["refused", "empty"]
        assert records[3].text.startswith("Rewritten (seed 43)") and records[3].attempts == 2
        assert report.ok == 2 and report.failed == 4 and report.generated == 6 and report.retried == 9
        assert (report.refused, report.empty, report.truncated, report.errors) == (4, 3, 3, 3)
        seeds = [body["seed"] for body in fake_openai.requests if "[[REFUSE]]" in body["messages"][1]["content"]]
        assert sorted(seeds) == [42, 43, 44]
        assert cache.counts() == {"ok": 2, "failed": 4}
        assert "ok: 2; failed after retries (left out): 4" in report.lines()
        served = fake_openai.served
        _, report = enrich_texts(texts, "free", movielens_schema, backend, cache, max_retries=2, progress=False)
        assert fake_openai.served == served and report.from_cache == 6 and report.failed == 4
        _, report = enrich_texts(texts, "free", movielens_schema, backend, cache, max_retries=3, progress=False)
        assert fake_openai.served == served + 4 and report.retried == 4
        kept, report = enrich_texts(
            ["[[LONG]]"], "free", movielens_schema, backend, cache, keep_truncated=True, progress=False
        )
        assert kept[0] == "Rewritten (seed 45):\n[[LONG]]" and report.from_cache == 1  # the stored last try


# ----- CLI -------------------------------------------------------------------------------


def _serialized_folder(folder: Path, n_train: int, extra: list[str] | None = None) -> Path:
    """What `llm4es serialize` writes: a DatasetDict (train/test) with user_id and text, plus schema.yaml."""
    import datasets

    texts = [f"{MOVIELENS_TEXT}\nuser {i}" for i in range(n_train)] + (extra or [])
    train = datasets.Dataset.from_dict({"user_id": list(range(len(texts))), "text": texts})
    test = datasets.Dataset.from_dict({"user_id": [1000], "text": ["test user"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    save_schema(load_schema("movielens"), folder / "schema.yaml")
    return folder


def test_enrich_cli_end_to_end(fake_openai, tmp_path, capsys, monkeypatch):
    import datasets

    source = _serialized_folder(tmp_path / "serialized", 8, extra=["[[REFUSE]] user", "[[LONG]] user"])
    output = tmp_path / "enriched"
    monkeypatch.setenv("FAKE_KEY", "sk-secret-456")
    argv = ["--input", str(source), "--output", str(output), "--variant", "markdown", "--fraction", "1",
            "--backend", "openai", "--base-url", fake_openai.url, "--model", "fake", "--api-key-env", "FAKE_KEY",
            "--max-retries", "1", "--no-progress"]  # fmt: skip
    assert llm4es_enrich(argv) == 0
    printed = capsys.readouterr().out
    assert "users selected: 10 of 10" in printed and "failed after retries (left out): 2" in printed
    assert "sk-secret" not in printed
    enriched = datasets.load_from_disk(str(output))
    assert enriched.column_names == ["user_id", "variant", "text", "source_text", "finish_reason"]
    assert sorted(enriched["user_id"]) == list(range(8))
    assert set(enriched["variant"]) == {"markdown"} and set(enriched["finish_reason"]) == {"stop"}
    assert all(t.startswith("Rewritten") for t in enriched["text"])
    assert enriched[0]["source_text"].startswith("Date|Movie")
    assert (output / "enrich_cache.sqlite").exists() and (output / "schema.yaml").exists()
    saved = json.loads((output / "enrich_report.json").read_text())
    assert saved["report"]["failed"] == 2 and saved["settings"]["generator"] == "openai:fake"
    assert "sk-secret" not in (output / "enrich_report.json").read_text()

    served = fake_openai.served
    assert llm4es_enrich([*argv, "--fraction", "0.5", "--output", str(output)]) == 0
    assert fake_openai.served == served  # every chosen user is in the cache already
    assert "users selected: 5 of 10" in capsys.readouterr().out


def test_enrich_cli_fraction_and_input_errors(tmp_path, capsys):
    source = _serialized_folder(tmp_path / "serialized", 3)
    base = ["--input", str(source), "--output", str(tmp_path / "out"), "--backend", "openai",
            "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]  # fmt: skip
    assert llm4es_enrich([*base, "--fraction", "1.5"]) == 2
    assert "fraction must be in [0, 1], got 1.5" in capsys.readouterr().err
    with pytest.raises(Llm4esError, match="fraction"):
        pick_users(10, -0.1, 42)
    assert llm4es_enrich([*base, "--split", "validation"]) == 2
    assert "no split 'validation'; splits: ['test', 'train']" in capsys.readouterr().err
    assert list(pick_users(10, 0.3, 42)) == list(pick_users(10, 0.3, 42)) and len(pick_users(10, 0.3, 42)) == 3
    assert len(pick_users(10, 0.0, 42)) == 0


def test_kill_and_resume_loses_nothing_and_regenerates_nothing_stored(fake_openai, movielens_schema, tmp_path):
    import datasets

    n = 24
    source = _serialized_folder(tmp_path / "serialized", n)
    output = tmp_path / "enriched"
    cache_file = tmp_path / "cache.sqlite"
    command = [sys.executable, "-m", "llm4es_hf.cli", "enrich", "--input", str(source), "--output", str(output),
               "--fraction", "1", "--backend", "openai", "--base-url", fake_openai.url, "--model", "fake",
               "--concurrency", "2", "--cache", str(cache_file), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake_openai.delay = 0.1
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    stored = 0
    while time.time() < deadline and process.poll() is None:
        if cache_file.exists():
            try:
                with closing(sqlite3.connect(cache_file)) as db:
                    stored = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            except sqlite3.OperationalError:
                stored = 0
            if stored >= 6:
                break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    texts = list(datasets.load_from_disk(str(source))["train"]["text"])
    sampling = SamplingConfig().key_fields()
    prompt_of = {}
    for text in texts:
        messages = build_messages(text, "free", movielens_schema)
        prompt_of[record_key("openai:fake", "free", messages, sampling)] = messages[1]["content"]
    with EnrichmentCache(cache_file) as cache:
        before = {r.key for r in cache.records()}
    assert 6 <= len(before) < n
    assert sum(fake_openai.counts.values()) < n

    fake_openai.delay = 0.0
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"from cache {len(before)}" in done.stdout
    for key in before:
        assert fake_openai.counts[prompt_of[key]] == 1
    assert set(fake_openai.counts) == set(prompt_of.values())
    enriched = datasets.load_from_disk(str(output))
    assert sorted(enriched["user_id"]) == list(range(n))
    with EnrichmentCache(cache_file) as cache:
        assert len(cache) == n and cache.counts() == {"ok": n}
