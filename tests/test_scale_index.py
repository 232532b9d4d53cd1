"""The compressed (IVF) index for large user sets: chosen by size, recall against exact search,
calibrated nprobe and memory in index.json, the folder round trip (and through the loopback
Hub), `llm4es index`/`llm4es search` and the demo unchanged, and the bad inputs."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from llm4es_hf.artifacts import save_embeddings
from llm4es_hf.cli import main
from llm4es_hf.errors import Llm4esError
from llm4es_hf.search import IvfSettings, UserIndex, choose_kind

N_USERS = 20_000


def embedding_like(n: int, dim: int = 64, latent: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Users on a low-dimensional clustered manifold, linearly lifted to ``dim`` dims, plus small
    isotropic noise and a large shared offset: what mean-pooled LLM states look like."""
    rng = np.random.default_rng(seed)
    lift = rng.standard_normal((latent, dim)).astype(np.float32)
    centres = rng.standard_normal((40, latent)).astype(np.float32) * 1.5
    group = rng.integers(0, len(centres), n)
    points = centres[group] + 0.7 * rng.standard_normal((n, latent), dtype=np.float32)
    return points @ lift + 0.2 * rng.standard_normal((n, dim), dtype=np.float32) + 10.0, group


@pytest.fixture(scope="module")
def large() -> tuple[list[str], np.ndarray, np.ndarray, UserIndex, UserIndex]:
    """20k users: the auto index with low thresholds (-> ivf) and the exact one."""
    matrix, group = embedding_like(N_USERS)
    ids = [f"u{i}" for i in range(N_USERS)]
    labels = pl.DataFrame({"user_id": ids, "group": [str(g) for g in group]})
    compressed = UserIndex.build(ids, matrix, labels=labels, exact_max_users=1_000, hnsw_max_users=5_000)
    exact = UserIndex.build(ids, matrix, labels=labels, kind="exact")
    return ids, matrix, group, compressed, exact


def recall_at_10(index: UserIndex, exact: UserIndex, ids: list[str]) -> float:
    return float(
        np.mean(
            [
                len(set(index.neighbors_of(u, 10)["user_id"]) & set(exact.neighbors_of(u, 10)["user_id"])) / 10
                for u in ids
            ]
        )
    )


def test_auto_picks_exact_then_hnsw_then_ivf():
    assert choose_kind("auto", 50_000) == "exact"
    assert choose_kind("auto", 50_001) == "hnsw"
    assert choose_kind("auto", 250_000) == "hnsw"
    assert choose_kind("auto", 250_001) == "ivf"
    assert choose_kind("auto", 900, exact_max_users=100, hnsw_max_users=500) == "ivf"
    assert choose_kind("ivf", 10) == "ivf"


def test_compressed_index_recall_memory_and_info(large):
    ids, _, _, compressed, exact = large
    info = compressed.info
    assert info["kind"] == "ivf"
    ivf = info["ivf"]
    assert (
        ivf["codec"] == "SQ8" and ivf["factory"] == "IVF256,SQ8" and ivf["nlist"] == 256 and ivf["train_size"] == 12_800
    )
    # the calibrated nprobe is the first power of two that reached the target on the sample
    assert ivf["recall_at_k"] >= ivf["target_recall"] == 0.97
    assert ivf["recall_by_nprobe"][str(ivf["nprobe"])] == ivf["recall_at_k"]
    assert all(r < 0.97 for p, r in ivf["recall_by_nprobe"].items() if int(p) < ivf["nprobe"])
    assert 1 <= ivf["nprobe"] < ivf["nlist"]
    # users the calibration did not see, against exact search
    assert recall_at_10(compressed, exact, ids[-300:]) >= 0.95
    # a raw embedding (not in the index) is prepared and searched like the exact index does
    matrix = large[1]
    assert compressed.search(matrix[7:8], k=1)[0]["user_id"][0] == "u7"
    # neighbours keep their labels; clusters are well apart, so they share the user's group
    group = large[2]
    neighbors = compressed.neighbors_of("u3", 10)
    assert "u3" not in neighbors["user_id"].to_list() and set(neighbors["group"]) == {str(group[3])}


def test_save_load_roundtrip_keeps_nprobe_and_reports_memory(large, tmp_path):
    ids, _, _, compressed, exact = large
    folder = compressed.save(tmp_path / "idx")
    exact_folder = exact.save(tmp_path / "exact")
    info = json.loads((folder / "index.json").read_text())
    size = (folder / "index.faiss").stat().st_size
    assert info["memory"] == {"index_bytes": size, "bytes_per_user": round(size / N_USERS, 1)}
    # 64 one-byte codes + id + direct-map entry per user, against 64 floats for exact
    assert size < 0.5 * json.loads((exact_folder / "index.json").read_text())["memory"]["index_bytes"]
    loaded = UserIndex.load(folder)
    import faiss

    assert faiss.extract_index_ivf(loaded.index).nprobe == info["ivf"]["nprobe"]
    for user in ("u0", "u123", "u19999"):
        assert loaded.neighbors_of(user, 10).equals(compressed.neighbors_of(user, 10))
    xy = loaded.project(loaded.vector("u5"))[0]
    assert np.allclose(xy, loaded.users.filter(pl.col("user_id") == "u5").select("x", "y").to_numpy()[0], atol=0.02)


def test_cli_index_and_search_and_demo_with_the_compressed_kind(large, tmp_path, capsys):
    from llm4es_hf.space import Demo

    ids, matrix, group, _, _ = large
    save_embeddings(tmp_path / "emb.parquet", np.array(ids), matrix)
    pl.DataFrame({"user_id": ids, "group": [str(g) for g in group]}).write_csv(tmp_path / "labels.csv")
    argv = ["index", "--embeddings", str(tmp_path / "emb.parquet"), "--output", str(tmp_path / "idx")]
    argv += ["--labels", str(tmp_path / "labels.csv"), "--kind", "ivf", "--ivf-target-recall", "0.9"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "indexed 20,000 users x 64 dims (ivf SQ8, 256 lists, nprobe" in out and "MiB" in out
    info = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert info["ivf"]["target_recall"] == 0.9 and info["ivf"]["recall_at_k"] >= 0.9

    assert main(["search", "--index", str(tmp_path / "idx"), "--user-id", "u42", "-k", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["query"] == "u42" and len(result["neighbors"]) == 5
    assert result["label_shares"]["group"] == {str(group[42]): 1.0}

    demo = Demo(UserIndex.load(tmp_path / "idx"))
    text, neighbors, shares, figure = demo.known_user("u42", 5, "group")
    assert list(neighbors["rank"]) == [1, 2, 3, 4, 5] and shares == {str(group[42]): 1.0}
    assert text == "(this index stores no texts)" and figure.axes


def test_compressed_index_through_the_loopback_hub(large, tmp_path, loopback_hub):
    from llm4es_hf.hub import push_index

    _, _, _, compressed, _ = large
    folder = compressed.save(tmp_path / "idx")
    push_index(folder, "org/big-index")
    remote = UserIndex.load("org/big-index")
    assert remote.info["kind"] == "ivf" and remote.info["ivf"] == compressed.info["ivf"]
    assert remote.neighbors_of("u9", 10).equals(compressed.neighbors_of("u9", 10))


def test_fixed_nprobe_and_pq_codec():
    matrix, _ = embedding_like(4_000, dim=32, seed=1)
    ids = [str(i) for i in range(len(matrix))]
    fixed = UserIndex.build(ids, matrix, kind="ivf", ivf=IvfSettings(nprobe=3, nlist=64))
    assert fixed.info["ivf"]["nprobe"] == 3 and "recall_by_nprobe" not in fixed.info["ivf"]
    pq = UserIndex.build(ids, matrix, kind="ivf", ivf=IvfSettings(codec="PQ8", nlist=16))
    assert pq.info["ivf"]["codec"] == "PQ8" and 0 < pq.info["ivf"]["recall_at_k"] <= 1


def test_fastscan_codec_reranks_with_sq8(large, tmp_path):
    ids, matrix, _, _, exact = large
    fast = UserIndex.build(ids, matrix, kind="ivf", ivf=IvfSettings(codec="fastscan"))
    assert fast.info["ivf"]["factory"] == "IVF256,PQ32x4fsr,Refine(SQ8)"
    assert recall_at_10(fast, exact, ids[-200:]) >= 0.93
    loaded = UserIndex.load(fast.save(tmp_path / "fast"))
    import faiss

    assert faiss.downcast_index(loaded.index).k_factor == 16
    assert loaded.neighbors_of("u11", 10).equals(fast.neighbors_of("u11", 10))


def test_auto_codec_is_fastscan_from_256_dims():
    settings = IvfSettings()
    assert settings.codec == "auto"
    assert [settings.codec_for(d) for d in (64, 255, 256, 576)] == ["SQ8", "SQ8", "fastscan", "fastscan"]
    assert IvfSettings(codec="SQ8").codec_for(576) == "SQ8"
    matrix, _ = embedding_like(3_000, dim=256, seed=2)
    built = UserIndex.build([str(i) for i in range(len(matrix))], matrix, kind="ivf", ivf=IvfSettings(nlist=16))
    assert built.info["ivf"]["codec"] == "fastscan" and built.info["ivf"]["factory"] == "IVF16,PQ128x4fsr,Refine(SQ8)"


@pytest.mark.parametrize(
    ("settings", "message", "key"),
    [
        (IvfSettings(codec="ZIP9"), "ivf codec must be", "ivf_codec"),
        (IvfSettings(nlist=5_000), "ivf nlist must be 0", "ivf_nlist"),
        (IvfSettings(target_recall=1.5), "target recall must be in", "ivf_target_recall"),
        (IvfSettings(nprobe=-1), "nprobe must be 0", "ivf_nprobe"),
        (IvfSettings(codec="PQ8x12", nlist=4), "cannot train the PQ8x12 IVF index on 1,000 users", "ivf_codec"),
    ],
)
def test_bad_ivf_settings_are_clear_errors(settings, message, key):
    matrix, _ = embedding_like(1_000, dim=32)
    with pytest.raises(Llm4esError, match=message) as err:
        UserIndex.build([str(i) for i in range(1_000)], matrix, kind="ivf", ivf=settings)
    assert err.value.key == key


def test_a_failed_build_leaves_the_existing_index_folder_alone(tmp_path, capsys):
    matrix, _ = embedding_like(2_000, dim=16)
    ids = np.array([f"u{i}" for i in range(2_000)])
    save_embeddings(tmp_path / "emb.parquet", ids, matrix)
    argv = ["index", "--embeddings", str(tmp_path / "emb.parquet"), "--output", str(tmp_path / "idx")]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}
    assert main([*argv, "--kind", "ivf", "--ivf-codec", "nope"]) == 2
    assert "ivf codec must be auto, fastscan, SQ8" in capsys.readouterr().err
    assert main([*argv, "--kind", "ivf", "--ivf-nlist", "999999"]) == 2
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
