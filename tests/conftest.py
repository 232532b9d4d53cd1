"""Shared offline fixtures: tiny tokenizers, raw-format files of every source."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

from tests.support import tiny  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["tests.support.loopback_hub", "tests.support.fake_openai"]

# The longest chains first, so that under `pytest -n 2 --dist loadfile` (make test) they start at
# once and the other worker takes the rest, instead of one of them starting last and running alone
# (with --no-loadscope-reorder, xdist keeps this order).
LONGEST_FIRST = ("test_readme_commands.py", "test_quickstart.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small byte-level BPE tokenizer trained in memory (fast, deterministic, offline)."""
    return tiny.tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A folder with a tiny random Llama (3 layers, hidden 32) and its tokenizer."""
    return tiny.tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, tiny_model) -> Path:
    """A corpus folder (serialized + enriched configs, users/) of 1,000 synthetic bank clients,
    texts cut to 400 tokens of the tiny tokenizer."""
    from llm4es_hf.corpus import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("tiny-corpus") / "corpus"
    build_corpus(CorpusConfig(output_dir=str(out), source="synthetic", max_tokens=400, tokenizer=str(tiny_model)))
    return out


def write(path: Path, text: str, *, gz: bool = False, encoding: str = "utf-8") -> Path:
    """Write a raw fixture file (optionally gzipped, as on the Hub)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def rosbank_dir(tmp_path: Path) -> Path:
    """Rosbank churn raw files as on the Hub (train.csv.gz; test.csv.gz without targets)."""
    folder = tmp_path / "rosbank"
    write(
        folder / "train.csv",
        (
            "PERIOD,cl_id,MCC,channel_type,currency,TRDATETIME,amount,trx_category,target_flag,target_sum\n"
            "01/10/2017,0,5200,,810,21OCT17:00:00:00,5023.0,POS,0,0.0\n"
            "01/10/2017,0,6011,,810,12OCT17:12:24:07,20000.0,WD_ATM_ROS,0,0.0\n"
            "01/12/2017,0,9999,type1,810,05DEC17:00:00:00,-767.0,NEW_CAT,0,0.0\n"
            "01/10/2017,1,5411,type1,810,10OCT17:00:00:00,2000.5,POS,1,6000.0\n"
        ),
        gz=True,
    )
    write(
        folder / "test.csv",
        (
            "PERIOD,cl_id,MCC,channel_type,currency,TRDATETIME,amount,trx_category\n"
            "01/10/2017,7,5411,type1,810,11OCT17:00:00:00,100.0,POS\n"
        ),
        gz=True,
    )
    return folder


@pytest.fixture
def gender_dir(tmp_path: Path) -> Path:
    """transactions-gender raw files: day-index times, ';'-separated code files."""
    folder = tmp_path / "gender"
    write(
        folder / "transactions.csv",
        (
            "customer_id,tr_datetime,mcc_code,tr_type,amount,term_id\n"
            "39026145,1 10:23:26,4814,1030,-2245.92,\n"
            "39026145,0 15:00:60,6011,2010,-5614.79,T1\n"
            "11,3 00:00:00,1234,7070,100.0,\n"
        ),
        gz=True,
    )
    write(folder / "gender_train.csv", "customer_id,gender\n39026145,1\n11,0\n555,1\n")
    write(folder / "tr_mcc_codes.csv", "mcc_code;mcc_description\n4814;Звонки\n1234;Своя категория\n")
    write(folder / "tr_types.csv", "tr_type;tr_description\n1030;Оплата услуги\n2010;Выдача наличных\n")
    return folder


@pytest.fixture
def age_dir(tmp_path: Path) -> Path:
    """age-group-prediction raw files: integer day index, small_group codes with descriptions."""
    folder = tmp_path / "age"
    write(
        folder / "transactions_train.csv",
        (
            "client_id,trans_date,small_group,amount_rur\n"
            "33172,6,4,71.463\n33172,6,35,45.017\n33172,8,4,13.887\n99,1,2,10.0\n"
        ),
        gz=True,
    )
    write(folder / "train_target.csv", "client_id,bins\n33172,3\n99,0\n")
    write(folder / "small_group_description.csv", "small_group,small_group_code\nFast food,4\nGroceries,35\n")
    return folder


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    """GroupLens ml-1m '::' files (latin-1)."""
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    write(
        folder / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n",
        encoding="latin-1",
    )
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


@pytest.fixture(scope="session")
def movielens_index(tmp_path_factory, tiny_model) -> Path:
    """An index folder over the bundled MovieLens-100K viewers in the compact layout (the
    quickstart's and the demo's), embedded by the tiny model (corpus texts cut to 120
    tiny-tokenizer tokens), with labels, schema and texts."""
    from llm4es_hf.artifacts import load_texts, save_embeddings
    from llm4es_hf.corpus import CorpusConfig, build_corpus
    from llm4es_hf.embedding import Embedder
    from llm4es_hf.search import build_index_from_files

    root = tmp_path_factory.mktemp("ml-index")
    corpus = build_corpus(
        CorpusConfig(
            output_dir=str(root / "corpus"),
            source="movielens",
            schema="movielens_compact",
            max_tokens=120,
            tokenizer=str(tiny_model),
        )
    )
    texts = load_texts(str(corpus))
    vectors = Embedder(str(tiny_model), max_length=120, dtype="fp32").encode(texts["text"], progress=False)
    save_embeddings(root / "emb.parquet", texts["user_id"], vectors)
    build_index_from_files(root / "emb.parquet", root / "index", labels=corpus, model=str(tiny_model))
    return root / "index"
