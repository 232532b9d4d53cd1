"""The fault matrix of benchmarks/scale.py: publish a corpus, an index and a model to the loopback
Hub under each injected fault, and check the result against a clean publication.

Waits are shortened to keep it quick: ours through $LLM4ES_HUB_BACKOFF (50 ms, 3 attempts, 1.5 s
timeout), huggingface_hub's own backoff capped at 50 ms.
"""

from __future__ import annotations

import os
import time
import types
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from llm4es_hf.errors import Llm4esError

COMMIT = "/api/*/commit/*"


def _faults() -> dict[str, dict[str, object]]:
    return {
        "http-500-on-commit": {"status": 500, "method": "POST", "path": COMMIT},
        "http-503-on-preupload": {"status": 503, "path": "/api/*/preupload/*", "times": 2},
        "http-429-retry-after": {"status": 429, "retry_after": 0.2, "method": "POST", "path": COMMIT},
        "dropped-mid-upload": {"kind": "drop", "method": "PUT", "path": "/_lfs/*"},
        "dropped-commit-answer": {"kind": "drop", "apply": True, "method": "POST", "path": COMMIT},
        "slow-commit-past-timeout": {"kind": "slow", "delay": 2.5, "method": "POST", "path": COMMIT},
    }


def _artifacts(root: Path) -> dict[str, tuple[str, Callable[[str], object]]]:
    """name -> (repo type, publish(repo_id)) for a small index, the tiny model and a small corpus."""
    from llm4es_hf.corpus import CorpusConfig, build_corpus
    from llm4es_hf.hub import publish_corpus, push_index, push_model
    from llm4es_hf.search import UserIndex
    from tests.support import tiny

    rng = np.random.default_rng(0)
    index = UserIndex.build([f"u{i}" for i in range(300)], rng.standard_normal((300, 8))).save(root / "index")
    model = tiny.tiny_model_dir(root / "model")
    corpus = build_corpus(
        CorpusConfig(output_dir=str(root / "corpus"), source="synthetic", max_tokens=200, tokenizer=str(model))
    )
    return {
        "index": ("dataset", lambda repo: push_index(index, repo)),
        "corpus": ("dataset", lambda repo: publish_corpus(corpus, repo)),
        "model": ("model", lambda repo: push_model(model, repo, revision="run-1")),
    }


def _case(hub, fault_class, known, repo_type: str, publish, spec) -> bool:  # noqa: ANN001 - loopback types
    """One case: under the fault (transient: must succeed; ``spec`` None: a 503 on every commit,
    which must fail naming the repo, leave it untouched, and rerun cleanly), then a clean run."""

    def files(repo: str) -> dict[str, bytes]:
        return {p: b for p, b in hub.files(repo, repo_type).items() if p != ".gitattributes"}

    ok = True
    if spec is None:
        hub.inject(fault_class(status=503, method="POST", path=COMMIT, times=-1))
        try:
            publish("org/faulty")
            ok = False
        except Llm4esError as err:
            ok = "org/faulty" in str(err) and "Rerun the same command" in str(err) and files("org/faulty") == {}
        hub.clear_faults()
        publish("org/faulty")
    else:
        fault = fault_class(**{k: v for k, v in spec.items() if k in known})
        hub.inject(fault)
        try:
            publish("org/faulty")
            ok = fault.hits >= 1
        except Exception as err:  # noqa: BLE001 - a transient fault must not fail the publication
            print(f"  transient fault failed the publication: {type(err).__name__}: {err}")
            ok = False
        hub.clear_faults()
    publish("org/clean")
    clean = files("org/clean")
    history = hub.repo("org/faulty", repo_type).history("main")
    states = [{p: b for p, b in c.files().items() if p != ".gitattributes"} for c in history]
    return ok and files("org/faulty") == clean and len(history) == 2 and states == [clean, {}]


def fault_matrix(root: Path) -> dict[str, object]:
    """Run every (artifact, fault) case; ``faults_clean`` when every one ends as the clean run."""
    from huggingface_hub.utils import _http

    from tests.support.loopback_hub import Fault, LoopbackHub, patch_hf_environment

    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, bool] = {}
    start = time.perf_counter()
    known = {f.name for f in fields(Fault)}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "LLM4ES_HUB_RETRIES": "3",
            "LLM4ES_HUB_BACKOFF": "0.05",
            "LLM4ES_HUB_TIMEOUT": "1.5",
            "LLM4ES_USER_ID_SALT": "benchmark",
        }.items():
            mp.setenv(name, value)
        real_sleep = _http.time.sleep
        fast = types.SimpleNamespace(time=time.time, monotonic=time.monotonic, perf_counter=time.perf_counter)
        fast.sleep = lambda seconds: real_sleep(min(seconds, 0.05))
        mp.setattr(_http, "time", fast)
        artifacts = _artifacts(root)
        cases = [(a, f, spec) for a in artifacts for f, spec in _faults().items()]
        cases += [(a, "persistent-503-then-rerun", None) for a in artifacts]
        for number, (artifact, fault_name, spec) in enumerate(cases):
            repo_type, publish = artifacts[artifact]
            # a fresh Hub per case: LFS objects are shared by content, so a second upload would send nothing
            with LoopbackHub() as hub, pytest.MonkeyPatch.context() as hub_mp:
                patch_hf_environment(hub_mp, hub.endpoint, root / f"hf_home_{number}")
                results[f"{artifact}/{fault_name}"] = _case(hub, Fault, known, repo_type, publish, spec)
    for case, ok in results.items():
        print(f"  fault {case}: {'clean' if ok else 'NOT CLEAN'}")
    return {
        "faults_clean": all(results.values()),
        "fault_cases": len(results),
        "fault_cases_clean": sum(results.values()),
        "faults_seconds": round(time.perf_counter() - start, 1),
        "faults_not_clean": [case for case, ok in results.items() if not ok],
    }


if __name__ == "__main__":  # the matrix alone
    import json
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(fault_matrix(Path(tmp))))
