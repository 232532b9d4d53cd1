"""Tiny models and corpora built in a few seconds, offline, for unit tests."""

from __future__ import annotations

from pathlib import Path

import torch

# What a training run records (llm4es_training.json) for its model card, in short.
TRAINING_INFO = {
    "base_model": "smollm2-135m",
    "corpora": ["org/corpus"],
    "corpus_config": "serialized",
    "tokenization": {"users": 2, "tokens": 9, "truncated_users": 0, "max_length": 8, "truncation_side": "left"},
    "hyperparameters": {"learning_rate": 1e-4},
    "precision": "fp32",
    "world_size": 1,
    "training": {"steps": 1, "epochs": 1, "first_loss": 2.0, "final_loss": 1.5, "tokens_per_second": 10.0},
}
TINY_CORPUS_TEXT = [
    "Date|Movie|Genres|Rating (1-5)\n1997-09-22, Toy Story, Animation/Comedy, 5",
    "UNIX days|Amount(rubles, scaled)|Merchant category codes\n17089, 6, Grocery stores, type1, purchase",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory, with EOS and PAD and a simple chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TINY_CORPUS_TEXT * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return fast


def tiny_model_dir(folder: Path, *, layers: int = 3, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama and its tokenizer into `folder`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_gemma3_dir(folder: Path, *, seed: int = 0) -> Path:
    """A random 2-layer Gemma-3 (one sliding, one full attention layer) whose tokenizer, like
    Gemma's, prepends ``<bos>`` through its post-processor while ``add_bos_token`` stays False:
    the architecture of the bundled gemma3-270m in seconds."""
    from tokenizers import processors
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<bos>"})
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=4096,
        bos_token_id=bos,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_taste_corpus(folder: Path, *, n_users: int = 40, n_events: int = 24, seed: int = 0) -> Path:
    """A corpus folder (users/ DatasetDict + the MovieLens compact schema) of viewers who each rate
    their own few films: slices of one viewer share titles, other viewers' do not, which is what a
    contrastive stage can learn from. Built in well under a second."""
    import datasets
    import numpy as np

    from llm4es_hf.schema import load_schema, save_schema

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        titles = [f"Film {u * 7 + k}" for k in range(3)]
        picks = rng.integers(0, 3, n_events)
        rows.append(
            {
                "user_id": str(u + 1),
                "event_time": (8.8e8 + 86400.0 * np.arange(n_events)).tolist(),
                "movie_title": [titles[p] for p in picks],
                "genres": ["Drama"] * n_events,
                "rating": [int(1 + (u + p) % 5) for p in picks],
                "gender": "F" if u % 2 else "M",
            }
        )
    from llm4es_hf.serialize import Serializer

    schema = load_schema("movielens_compact")
    users = Serializer(schema)(datasets.Dataset.from_list(rows))
    split = n_users - max(2, n_users // 10)
    splits = datasets.DatasetDict({"train": users.select(range(split)), "test": users.select(range(split, n_users))})
    folder.mkdir(parents=True, exist_ok=True)
    splits.save_to_disk(str(folder / "users"))
    save_schema(schema, folder / "schema.yaml")
    (folder / "serialized").mkdir(exist_ok=True)
    for name, ds in splits.items():
        ds.select_columns(["user_id", "text", "gender"]).to_parquet(
            str(folder / "serialized" / f"{name}-00000-of-00001.parquet")
        )
    return folder


SHARD_FILES = {
    "train-00000-of-00002.parquet": 30,
    "train-00001-of-00002.parquet": 26,
    "test-00000-of-00001.parquet": 24,
}


def write_sharded_corpus(folder: Path) -> Path:
    """A corpus' serialized config, sharded: train in two files, test in one; texts of 1 to 12 events."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    (folder / "serialized").mkdir(parents=True)
    for name, n in SHARD_FILES.items():
        ids = [f"{name[:5]}{name[6:11]}-{i}" for i in range(n)]
        texts = [
            "Date|Movie|Rating\n"
            + "\n".join(f"1997-09-{d + 1:02d}, Film {rng.integers(40)}, {rng.integers(1, 6)}" for d in range(k))
            for k in rng.integers(1, 13, n)
        ]
        pl.DataFrame({"user_id": ids, "text": texts}).write_parquet(folder / "serialized" / name)
    return folder
