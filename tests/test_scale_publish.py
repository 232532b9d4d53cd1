"""Publishing under faults, against the loopback Hub: each injected fault (HTTP 500/503, 429 with
Retry-After, the connection dropped mid-upload, an answer slower than the timeout) is retried
where safe; a persistent one fails naming the repo and what it holds; the rerun completes the
publication with the clean run's files, one commit, nothing sent twice; no commit ever shows a
half publication."""

from __future__ import annotations

import shutil
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub.utils import _http

from llm4es_hf.errors import Llm4esError
from llm4es_hf.hub import RetryPolicy, publish_corpus, push_index, push_model
from llm4es_hf.search import UserIndex
from tests.support.loopback_hub import Fault, LoopbackHub

COMMIT = "/api/*/commit/*"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short waits: ours through the environment, huggingface_hub's own backoff capped at 50 ms."""
    monkeypatch.setenv("LLM4ES_HUB_RETRIES", "3")
    monkeypatch.setenv("LLM4ES_HUB_BACKOFF", "0.05")
    monkeypatch.setenv("LLM4ES_HUB_TIMEOUT", "1.5")
    monkeypatch.setenv("LLM4ES_USER_ID_SALT", "fixed-salt-for-identical-runs")
    real_sleep = _http.time.sleep
    fast = types.SimpleNamespace(**{name: getattr(_http.time, name) for name in ("time", "monotonic", "perf_counter")})
    fast.sleep = lambda seconds: real_sleep(min(seconds, 0.05))
    monkeypatch.setattr(_http, "time", fast)


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"u{i}" for i in range(300)]
    return UserIndex.build(ids, rng.standard_normal((300, 8))).save(tmp_path_factory.mktemp("pub") / "index")


@pytest.fixture
def corpus_folder(tiny_corpus: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_corpus, tmp_path / "corpus", ignore=shutil.ignore_patterns("users")))


def folder_of(kind: str, request: pytest.FixtureRequest) -> Path:
    """The folder to publish (fixtures built only when a test needs them)."""
    return request.getfixturevalue({"index": "index_folder", "corpus": "corpus_folder", "model": "tiny_model"}[kind])


def publisher(kind: str, folder: Path) -> Callable[[str], object]:
    if kind == "index":
        return lambda repo: push_index(folder, repo)
    if kind == "corpus":
        return lambda repo: publish_corpus(folder, repo)
    return lambda repo: push_model(folder, repo, revision="run-1")


def repo_type(kind: str) -> str:
    return "model" if kind == "model" else "dataset"


def published(hub: LoopbackHub, repo: str, kind: str) -> dict[str, bytes]:
    return {p: b for p, b in hub.files(repo, repo_type(kind)).items() if p != ".gitattributes"}


def assert_never_partial(hub: LoopbackHub, repo: str, kind: str, final: dict[str, bytes]) -> None:
    """Every state main ever showed is empty (the initial commit) or the whole publication, once."""
    history = hub.repo(repo, repo_type(kind)).history("main")
    states = [{p: b for p, b in c.files().items() if p != ".gitattributes"} for c in reversed(history)]
    assert states[0] == {} and states[-1] == final
    assert len(history) == 2, [c.title for c in history]  # no duplicate commit


TRANSIENT = {
    "http-500-on-commit": Fault(status=500, method="POST", path=COMMIT),
    "http-503-on-preupload": Fault(status=503, path="/api/*/preupload/*", times=2),
    "http-429-retry-after": Fault(status=429, retry_after=0.2, method="POST", path=COMMIT),
    "dropped-mid-upload": Fault(kind="drop", method="PUT", path="/_lfs/*"),
    "dropped-commit-answer": Fault(kind="drop", apply=True, method="POST", path=COMMIT),
    "slow-commit-past-timeout": Fault(kind="slow", delay=2.5, method="POST", path=COMMIT),
}


@pytest.mark.parametrize("kind", ["index", "corpus", "model"])
@pytest.mark.parametrize("fault", list(TRANSIENT))
def test_transient_faults_are_absorbed(fault, kind, loopback_hub, request) -> None:
    folder = folder_of(kind, request)
    publish = publisher(kind, folder)
    injected = Fault(**{k: v for k, v in vars(TRANSIENT[fault]).items() if k not in ("seen", "hits")})
    loopback_hub.inject(injected)
    publish("org/faulty")  # first: the Hub has none of the files yet (LFS objects are shared by content)
    assert injected.hits >= 1, "the fault never fired"
    loopback_hub.clear_faults()
    publish("org/clean")
    clean = published(loopback_hub, "org/clean", kind)
    assert published(loopback_hub, "org/faulty", kind) == clean
    assert_never_partial(loopback_hub, "org/faulty", kind, clean)
    if kind == "model":
        refs = loopback_hub.repo("org/faulty").branches
        assert refs["run-1"] == refs["main"]


@pytest.mark.parametrize("kind", ["index", "corpus", "model"])
def test_persistent_fault_fails_naming_the_repo_then_the_rerun_completes(kind, loopback_hub, request) -> None:
    folder = folder_of(kind, request)
    publish = publisher(kind, folder)
    loopback_hub.inject(Fault(status=503, method="POST", path=COMMIT, times=-1))
    with pytest.raises(Llm4esError) as err:
        publish("org/pub")
    message = str(err.value)
    assert "repo org/pub failed after 3 attempts" in message and "503 Service Unavailable" in message
    assert "nothing of this publication was committed: org/pub is as it was" in message
    assert "Rerun the same command" in message and err.value.key == "repo_id"
    assert published(loopback_hub, "org/pub", kind) == {}  # nothing half-written in between

    loopback_hub.clear_faults()
    lfs_before = [r for r in loopback_hub.requests if r[0] == "PUT" and r[1].startswith("/_lfs/")]
    publish("org/pub")
    lfs_after = [r for r in loopback_hub.requests if r[0] == "PUT" and r[1].startswith("/_lfs/")]
    assert lfs_after == lfs_before  # the large files uploaded before the failure are not sent again
    publish("org/clean")
    clean = published(loopback_hub, "org/clean", kind)
    assert published(loopback_hub, "org/pub", kind) == clean
    assert_never_partial(loopback_hub, "org/pub", kind, clean)
    commits = len(loopback_hub.repo("org/pub", repo_type(kind)).commits)
    if kind != "model":  # the same command once more: nothing to do, no new commit
        publish("org/pub")
        assert len(loopback_hub.repo("org/pub", repo_type(kind)).commits) == commits


def test_hub_down_says_it_could_not_check(loopback_hub, index_folder) -> None:
    loopback_hub.inject(Fault(status=500, path="/api/datasets/*", times=-1))  # all but repo creation
    with pytest.raises(Llm4esError, match="repo org/idx2 failed after 3 attempts.*Could not read what org/idx2 holds"):
        push_index(index_folder, "org/idx2")
    loopback_hub.inject(Fault(kind="drop", times=-1))  # nothing answers
    with pytest.raises(Llm4esError, match="repo org/idx3: creating the repo failed after 3 attempts.*Nothing was"):
        push_index(index_folder, "org/idx3")


def test_not_retried_when_the_error_is_not_transient(loopback_hub, index_folder) -> None:
    loopback_hub.inject(Fault(status=403, method="POST", path=COMMIT, times=-1))
    with pytest.raises(Llm4esError, match=r"failed \(not retried: not a transient error\).*HTTP 403") as err:
        push_index(index_folder, "org/forbidden")
    assert "nothing of this publication was committed" in str(err.value)
    assert sum(1 for method, path in loopback_hub.requests if method == "POST" and "/commit/" in path) == 1


def test_a_later_publication_replaces_stale_shards_in_one_commit(loopback_hub, corpus_folder) -> None:
    publish_corpus(corpus_folder, "org/corpus")
    repo = loopback_hub.repo("org/corpus", "dataset")
    head = repo.branches["main"]
    repo.commits[head].blobs["serialized/train-00001-of-00002.parquet"] = repo.commits[head].blobs[
        "serialized/train-00000-of-00001.parquet"
    ]  # a shard left by an older publication
    (corpus_folder / "README.md").write_text((corpus_folder / "README.md").read_text() + "\nEdited.\n")
    publish_corpus(corpus_folder, "org/corpus")
    files = loopback_hub.files("org/corpus", "dataset")
    assert "serialized/train-00001-of-00002.parquet" not in files and b"Edited." in files["README.md"]
    assert len(repo.history("main")) == 3

    import datasets

    for config in ("serialized", "enriched"):
        remote = datasets.load_dataset("org/corpus", config)
        assert set(remote) == {"train", "test"} and len(remote["train"]) > 0


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [("LLM4ES_HUB_RETRIES", "many", "must be a number"), ("LLM4ES_HUB_TIMEOUT", "0", "must be positive")],
)
def test_bad_retry_settings(monkeypatch, env, value, message) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(Llm4esError, match=message) as err:
        RetryPolicy.from_env()
    assert err.value.key == env


def test_fault_knobs_count_and_skip(loopback_hub) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    fault = Fault(status=503, method="GET", path="/api/whoami-v2", skip=1, times=1)
    loopback_hub.inject(fault)
    api = HfApi()
    assert api.whoami()["name"] == loopback_hub.user  # skipped
    with pytest.raises(HfHubHTTPError, match="503"):
        api.whoami()
    assert api.whoami()["name"] == loopback_hub.user  # spent
    assert (fault.seen, fault.hits) == (3, 1)
