"""End-to-end checks of the loopback Hub against the real huggingface_hub / datasets / transformers clients."""

from __future__ import annotations

from pathlib import Path

import datasets
import huggingface_hub
import pytest
import torch
from datasets import Dataset, load_dataset
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    RepoFile,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

from tests.support.loopback_hub import LoopbackHub, patch_hf_environment  # the fixture comes via conftest


def _write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def test_fixture_patches_already_imported_libraries(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    assert loopback_hub.endpoint == huggingface_hub.constants.ENDPOINT
    assert loopback_hub.endpoint == datasets.config.HF_ENDPOINT
    assert huggingface_hub.hf_api.api.endpoint == loopback_hub.endpoint
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE
    assert HfApi().whoami()["name"] == loopback_hub.user
    # patching is undone with the monkeypatch
    with LoopbackHub() as other, pytest.MonkeyPatch.context() as mp:
        patch_hf_environment(mp, other.endpoint, tmp_path / "other_home")
        assert other.endpoint == huggingface_hub.constants.ENDPOINT
    assert loopback_hub.endpoint == huggingface_hub.constants.ENDPOINT


def test_private_repo_upload_folder_and_download(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    api = HfApi()
    url = api.create_repo("org/private-model", repo_type="model", private=True, exist_ok=True)
    assert url.repo_id == "org/private-model"
    assert api.create_repo("org/private-model", private=True, exist_ok=True).repo_id == "org/private-model"
    files = {"config.json": b'{"a": 1}', "weights/model.safetensors": b"\x00\x01" * 64, "notes/readme.txt": b"hi"}
    api.upload_folder(folder_path=_write_folder(tmp_path / "src", files), repo_id="org/private-model")

    assert loopback_hub.repo("org/private-model").private
    assert api.model_info("org/private-model").private is True
    assert sorted(api.list_repo_files("org/private-model")) == sorted([".gitattributes", *files])
    assert {entry.path for entry in api.list_repo_tree("org/private-model")} == {
        ".gitattributes",
        "config.json",
        "notes",
        "weights",
    }
    (info,) = api.get_paths_info("org/private-model", ["weights/model.safetensors"])
    assert isinstance(info, RepoFile) and info.lfs is not None and info.size == 128
    assert (
        Path(hf_hub_download("org/private-model", "weights/model.safetensors")).read_bytes()
        == files["weights/model.safetensors"]
    )
    snapshot = Path(snapshot_download("org/private-model"))
    assert (snapshot / "notes" / "readme.txt").read_bytes() == b"hi"
    assert loopback_hub.files("org/private-model")["config.json"] == files["config.json"]

    assert api.file_exists("org/private-model", "config.json")
    assert not api.file_exists("org/private-model", "missing.json")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/private-model", "missing.json")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/private-model", token=False)  # private => invisible without a token
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/does-not-exist")


def test_branch_revision_upload(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    api = HfApi()
    api.create_repo("org/runs", private=True)
    api.upload_file(path_or_fileobj=b"v0", path_in_repo="state.txt", repo_id="org/runs")
    api.create_branch("org/runs", branch="run-1")
    api.upload_folder(
        folder_path=_write_folder(tmp_path / "run", {"ckpt/step-1.txt": b"1", "state.txt": b"v1"}),
        repo_id="org/runs",
        revision="run-1",
    )
    api.create_commit(
        "org/runs",
        operations=[CommitOperationDelete("ckpt/"), CommitOperationAdd("final.txt", b"done")],
        commit_message="finish",
        revision="run-1",
    )

    assert {ref.name for ref in api.list_repo_refs("org/runs").branches} == {"main", "run-1"}
    assert loopback_hub.files("org/runs", revision="run-1") == {
        ".gitattributes": loopback_hub.files("org/runs")[".gitattributes"],
        "state.txt": b"v1",
        "final.txt": b"done",
    }
    assert loopback_hub.files("org/runs")["state.txt"] == b"v0"
    assert Path(hf_hub_download("org/runs", "state.txt", revision="run-1")).read_text() == "v1"
    assert Path(hf_hub_download("org/runs", "state.txt")).read_text() == "v0"
    assert api.file_exists("org/runs", "final.txt", revision="run-1")
    assert not api.file_exists("org/runs", "final.txt")
    assert [c.title for c in api.list_repo_commits("org/runs", revision="run-1")][0] == "finish"
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/runs", "state.txt", revision="run-2")


def _frames() -> dict[str, Dataset]:
    return {
        "enriched": Dataset.from_dict({"user": ["u1", "u2", "u3"], "text": ["a b", "c", "d e f"], "n": [1, 2, 3]}),
        "raw": Dataset.from_dict({"user": ["u9"], "event": [[1, 2, 3]]}),
    }


def test_dataset_push_two_configs_and_load(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    frames = _frames()
    for name, frame in frames.items():
        frame.push_to_hub("org/events", config_name=name, private=True)

    repo = loopback_hub.repo("org/events", "dataset")
    assert repo.private
    stored = loopback_hub.files("org/events", "dataset")
    assert {p for p in stored if p.endswith(".parquet")} == {
        "enriched/train-00000-of-00001.parquet",
        "raw/train-00000-of-00001.parquet",
    }
    for name, frame in frames.items():
        loaded = load_dataset("org/events", name, split="train", cache_dir=str(tmp_path / f"cache-{name}"))
        assert loaded.to_dict() == frame.to_dict()
        assert loaded.features == frame.features


def test_dataset_card_edit_keeps_configs(loopback_hub: LoopbackHub) -> None:
    for name, frame in _frames().items():
        frame.push_to_hub("org/carded", config_name=name, private=True)

    card = DatasetCard.load("org/carded", repo_type="dataset")
    assert {c["config_name"] for c in card.data.configs} == {"enriched", "raw"}
    card.text = "\n# Events\n\nEdited by the test.\n"
    card.data.license = "apache-2.0"
    card.push_to_hub("org/carded", repo_type="dataset", commit_message="edit card")

    reloaded = DatasetCard.load("org/carded", repo_type="dataset")
    assert "Edited by the test." in reloaded.text
    assert reloaded.data.license == "apache-2.0"
    assert {c["config_name"] for c in reloaded.data.configs} == {"enriched", "raw"}
    card_data = HfApi().dataset_info("org/carded").card_data
    assert card_data is not None and card_data.license == "apache-2.0"
    assert load_dataset("org/carded", "raw", split="train").to_dict() == _frames()["raw"].to_dict()


def _tiny_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[UNK]", "[PAD]", "<s>", "</s>", "hello", "world", "user", "event"])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )


def test_tiny_model_push_and_from_pretrained(loopback_hub: LoopbackHub, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer, LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=8,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    model = LlamaModel(config).eval()
    tokenizer = _tiny_tokenizer()
    folder = tmp_path / "tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    HfApi().create_repo("org/tiny-llama", private=True)
    HfApi().upload_folder(folder_path=folder, repo_id="org/tiny-llama")
    assert "model.safetensors" in loopback_hub.files("org/tiny-llama")

    loaded = AutoModel.from_pretrained("org/tiny-llama").eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained("org/tiny-llama")
    assert loaded_tokenizer("hello world event")["input_ids"] == tokenizer("hello world event")["input_ids"]
    ids = torch.tensor([[4, 5, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)

    # transformers' own push path (create_repo + create_commit through its shared HfApi)
    model.push_to_hub("org/tiny-pushed", private=True)
    tokenizer.push_to_hub("org/tiny-pushed")
    assert loopback_hub.repo("org/tiny-pushed").private
    again = AutoModel.from_pretrained("org/tiny-pushed")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor)
