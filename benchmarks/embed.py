"""Embedding speed on the MovieLens length distribution, bundled SmolLM2, this CPU.

Compares, on the same texts (the latest --max-tokens tokens of --users MovieLens viewers):
- ours: llm4es Embedder (decoder body only, length-sorted batches, bf16 where the CPU has it);
- naive: fp32 AutoModelForCausalLM with output_hidden_states (LM head computed), unsorted batches;
- length-sorted alone: fp32 decoder body, sorted vs unsorted batches;
- SentenceTransformer.encode on the exported model (same dtype as ours), same vectors checked;
- ours stopping at layer --layer-end (early exit: layers L/3..layer_end pooled) against the full forward;
and the cosine between bf16 and fp32 embeddings per user. The texts are the paper's context,
up to the latest --max-tokens tokens, so lengths follow MovieLens (many viewers short, some at the cap).
Then, where the CPU computes bf16 natively (elsewhere "auto" is fp32 and the check is skipped),
downstream: all 943 viewers embedded in bf16 and in fp32 (latest --auc-max-tokens tokens of
the quickstart's compact layout, where the embeddings carry signal: at 128 tokens of the full
layout both dtypes score chance, which shows nothing),
gender ROC-AUC of each (5 folds, LightGBM and logistic regression), to show that bf16 changes
nothing that matters. Last line: one JSON object, ratio = ours over naive in tokens/s.

    python benchmarks/embed.py [--users 32 --max-tokens 1024 --batch-size 8 --layer-end 20 --auc-max-tokens 256]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import report, timed  # noqa: E402

from llm4es_hf.assets import resolve_model  # noqa: E402
from llm4es_hf.embedding import Embedder, export_sentence_transformer  # noqa: E402
from llm4es_hf.hardware import cpu_has_native_bf16, describe  # noqa: E402
from llm4es_hf.models import load_tokenizer
from llm4es_hf.serialize import Serializer  # noqa: E402
from llm4es_hf.sources import load_source  # noqa: E402


def naive(model_path: str, batch_size: int, max_length: int) -> Callable[[list[str]], np.ndarray]:
    """What one writes first: the causal LM in fp32, all hidden states, batches in data order.
    Returns the encode function (model loaded once, outside the timing, as ours is)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.truncation_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    k = round(model.config.num_hidden_layers / 3)

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                )
                hidden = model(**batch, output_hidden_states=True).hidden_states
                layers = torch.stack(hidden[k:]).mean(0)
                mask = batch["attention_mask"].unsqueeze(-1).float()
                out.append(((layers * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    return encode


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--layer-end", type=int, default=20, help="the early exit timed against the full forward")
    parser.add_argument(
        "--auc-max-tokens", type=int, default=256, help="0 skips the downstream check (skipped without native bf16)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)

    source = load_source("movielens")
    tokenizer = load_tokenizer("smollm2-135m")
    rng = np.random.default_rng(0)
    users = source.users.select(np.sort(rng.permutation(len(source.users))[: args.users]))
    texts = list(Serializer(source.schema, max_tokens=args.max_tokens, tokenizer=tokenizer)(users)["text"])
    lengths = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
    tokens = int(lengths.sum())
    print("token lengths p10/p50/p90/max: " + "/".join(str(int(np.percentile(lengths, q))) for q in (10, 50, 90, 100)))
    model_path = resolve_model("smollm2-135m")
    print(f"{len(texts)} MovieLens users, {tokens:,} tokens (<= {args.max_tokens} each); hardware: {describe()}")

    def run(embedder: Embedder, **kwargs):
        return timed(lambda: embedder.encode(texts, batch_size=args.batch_size, progress=False, **kwargs))

    # Every way is warmed up on two texts first, and ours is timed first: in one process a later
    # run finds the allocator already grown (it ran up to 1.5x faster in benchmarks/train.py),
    # so the order favours the baselines, never ours.
    ours_embedder = Embedder(model_path, max_length=args.max_tokens)
    ours_embedder.encode(texts[:2], progress=False)
    ours_s, ours_vec = run(ours_embedder)
    naive_encode = naive(model_path, args.batch_size, args.max_tokens)
    naive_encode(texts[:2])
    naive_s, naive_vec = timed(lambda: naive_encode(texts))
    fp32 = Embedder(model_path, max_length=args.max_tokens, dtype="fp32")
    fp32.encode(texts[:2], progress=False)
    sorted_s, fp32_vec = run(fp32)
    unsorted_s, _ = run(fp32, sort_by_length=False)
    early = Embedder(model_path, max_length=args.max_tokens, layer_end=args.layer_end)
    early.encode(texts[:2], progress=False)
    early_s, _ = run(early)

    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        exported = Path(tmp) / "model"
        shutil.copytree(model_path, exported)
        export_sentence_transformer(exported, max_length=args.max_tokens)
        st = SentenceTransformer(str(exported), device="cpu", model_kwargs={"dtype": ours_embedder.dtype})
        st.encode(texts[:2])
        st_s, st_vec = timed(lambda: st.encode(texts, batch_size=args.batch_size))

    dtype = str(ours_embedder.dtype).replace("torch.", "")
    rows = [
        (f"ours ({dtype}, body only, sorted)", ours_s),
        ("naive (fp32 causal LM + all hidden states, unsorted)", naive_s),
        ("fp32 body, length-sorted", sorted_s),
        ("fp32 body, unsorted", unsorted_s),
        (f"SentenceTransformer.encode ({dtype})", st_s),
        (f"ours, forward stopping at layer {args.layer_end} of {early.num_layers}", early_s),
    ]
    for name, seconds in rows:
        print(f"  {name:55s} {seconds:7.1f} s  {tokens / seconds:8,.0f} tokens/s")
    cos_dtype = cosine(ours_vec, fp32_vec)
    cos_naive = cosine(fp32_vec, naive_vec)
    cos_st = cosine(ours_vec, st_vec)
    print(f"cosine {dtype} vs fp32 per user: min {cos_dtype.min():.5f}, mean {cos_dtype.mean():.5f}")
    print(f"cosine fp32 ours vs naive: min {cos_naive.min():.5f}; ours vs SentenceTransformer: min {cos_st.min():.5f}")
    auc = downstream_auc(tokenizer, model_path, args) if args.auc_max_tokens and cpu_has_native_bf16() else {}
    if not auc:
        print("downstream bf16 vs fp32 check skipped: no native bf16 on this CPU (auto is fp32) or --auc-max-tokens 0")
    report(
        benchmark="embed",
        unit="tokens/s",
        tokens=tokens,
        dtype=dtype,
        ours=round(tokens / ours_s),
        baseline=round(tokens / naive_s),
        ratio=round(naive_s / ours_s, 2),
        sorted_over_unsorted=round(unsorted_s / sorted_s, 2),
        ours_over_sentence_transformers=round(st_s / ours_s, 2),
        early_exit_speedup=round(ours_s / early_s, 2),
        layer_end=args.layer_end,
        hardware=describe(),
        cosine_dtype_vs_fp32_min=round(float(cos_dtype.min()), 5),
        cosine_vs_naive_min=round(float(cos_naive.min()), 5),
        cosine_vs_sentence_transformers_min=round(float(cos_st.min()), 5),
        **auc,
    )


def downstream_auc(tokenizer, model_path: str, args: argparse.Namespace) -> dict:  # noqa: ANN001
    """Gender ROC-AUC of bf16 and fp32 embeddings of every viewer (same folds, same test users),
    on the compact layout."""
    from llm4es_hf.evaluation import evaluate_features

    source = load_source("movielens", schema="movielens_compact")
    texts = Serializer(source.schema, max_tokens=args.auc_max_tokens, tokenizer=tokenizer)(source.users)
    ids = list(texts["user_id"])
    labels = dict(zip(ids, texts["gender"], strict=True))
    sets = {}
    for dtype in ("bf16", "fp32"):
        embedder = Embedder(model_path, max_length=args.auc_max_tokens, dtype=dtype)
        sets[dtype] = (ids, embedder.encode(list(texts["text"]), batch_size=16, progress=False))
    result = evaluate_features(sets, labels, "gender", baseline="fp32/lightgbm")
    print(result.to_markdown())
    scores = {row.name: round(row.test_mean, 4) for row in result.rows}
    return {f"auc_{name.replace('/', '_')}": value for name, value in scores.items()}


if __name__ == "__main__":
    main()
