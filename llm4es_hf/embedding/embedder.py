"""Stage 4: user embeddings from a (fine-tuned) causal LM, the LLM4ES way.

Run the decoder body (no LM head) on each user's plain serialization, average the hidden
states of layers ``k..L`` (``hidden_states[k:]``, the upper two thirds by default), then
take the mean over non-padding tokens (or the last token). With ``layer_end=e`` below the
model's L layers the forward stops at layer e: the model runs as if it had e layers (the
final norm then applies to layer e's output, as ``AutoModel.from_pretrained(path,
num_hidden_layers=e)`` does) and layers ``k..e`` are averaged, for ``(e - k)``/``L`` of the
compute of the full forward. Position ids come from the
attention mask, so left and right padding give the same vectors. Texts are sorted by
length before batching, run under ``inference_mode``, in bf16 where the hardware has it.
On CPU, texts of PADDING_FREE_MIN_TOKENS or more are batched only with texts of the same
length: a padded batch needs an attention mask, which sends attention down PyTorch's slow
masked path on CPU, while an unpadded one runs the fused causal kernel (MovieLens, SmolLM2,
this 2-core CPU: 1.65x faster at 2048 tokens, 1.13x at 512; short texts batch as before).

The same computation ships inside the model folder as SentenceTransformer modules
(Transformer -> WeightedLayerPooling -> Pooling), so ``SentenceTransformer(path).encode``
reproduces ``llm4es embed`` without ``trust_remote_code``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from ..artifacts import (
    embedding_settings,
    load_texts,
    save_embeddings,
    serialization_settings,
)
from ..errors import Llm4esError
from ..hardware import pick_dtype, process_state
from ..models import load_model

POOLINGS = ("mean", "last")
POOL_TOKENS = ("all", "events")
DTYPES = ("auto", "bf16", "fp32")
PADDING_FREE_MIN_TOKENS = 256  # at 128 tokens padded batches of 8 were faster than one text at a time
DEFAULT_MAX_LENGTH = 2048  # tokens per user when neither the caller nor the model's saved settings say


def default_layer_start(num_layers: int) -> int:
    """The paper's k: the upper two thirds of the layers (k = 9 of 28 for Llama-3.2-3B)."""
    return round(num_layers / 3)


def early_layer_end(num_layers: int) -> int:
    """Where the quickstart's forward stops: two thirds up (20 of SmolLM2's 30 layers), so layers
    L/3..2L/3 are pooled. At the quickstart's settings (768 tokens, fine-tuned SmolLM2, MovieLens gender) its
    vectors scored within noise of the full forward's (L/3..L), as at 512 tokens, in 1/1.58 of the time:
    out-of-fold ROC-AUC LightGBM -0.013 [-0.033, +0.008], p 0.24, logreg +0.001 [-0.027, +0.028], p 0.93
    (benchmarks/README.md, 'Early exit and centering')."""
    return round(2 * num_layers / 3)


def check_layer_range(layer_start: int, layer_end: int, num_layers: int) -> None:
    """``0 <= layer_start < layer_end <= num_layers``, else an error naming both numbers and the depth."""
    if not 0 <= layer_start < num_layers:
        raise Llm4esError(
            f"layer_start={layer_start} must be in [0, {num_layers - 1}]: the model has {num_layers} layers",
            key="layer_start",
        )
    if not layer_start < layer_end <= num_layers:
        raise Llm4esError(
            f"layer_end={layer_end} must be above layer_start={layer_start} and at most the model's "
            f"{num_layers} layers",
            key="layer_end",
        )


def stop_at_layer(model: torch.nn.Module, layer_end: int) -> None:
    """Keep the first ``layer_end`` decoder layers of a base model (the forward stops there)."""
    if layer_end < model.config.num_hidden_layers:
        model.layers = model.layers[:layer_end]
        model.config.num_hidden_layers = layer_end


def resolve_embedding_settings(
    model: str,
    *,
    layer_start: int | None = None,
    layer_end: int | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    token_budget: int | None = None,
) -> dict[str, Any]:
    """The pooling settings a model embeds with: the caller's, else what the model folder saved
    (``llm4es_embedding.json`` from the export), else for ``max_length`` the token budget the
    texts were serialized with (``token_budget``, else the model's ``llm4es_serialization.json``),
    else the defaults. Every path
    (``llm4es embed``, ``UserEncoder``, the Space, the quickstart) resolves them here."""
    saved = embedding_settings(model)
    if token_budget is None:
        serialized = serialization_settings(model)
        token_budget = serialized[1].get("max_tokens") if serialized is not None else None
    return {
        "layer_start": layer_start if layer_start is not None else saved.get("layer_start"),
        "layer_end": layer_end if layer_end is not None else saved.get("layer_end"),
        "pooling": pooling or saved.get("pooling") or "mean",
        "max_length": max_length or saved.get("max_length") or token_budget or DEFAULT_MAX_LENGTH,
    }


class Embedder:
    """Loads the backbone once and turns texts into vectors (see the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        layer_start: int | None = None,
        layer_end: int | None = None,
        pooling: str = "mean",
        max_length: int = DEFAULT_MAX_LENGTH,
        dtype: str = "auto",
        device: str | None = None,
        padding_side: str | None = None,
        padding_free: bool | None = None,
        pool_tokens: str = "all",
        weight_field: int | None = None,
        echo: bool = False,
        suffix: str | None = None,
    ) -> None:
        """Pooling levers (one pass each; see ``token_weights``): ``pool_tokens="events"`` averages
        only the event tokens (not the header line nor the separators), ``weight_field=-1`` weights
        each event line by its last comma-separated value (e.g. a rating), ``echo`` runs the text
        twice and pools the second copy (each of its tokens has seen the whole history), ``suffix``
        is appended after the (truncated) text and never pooled by ``mean``: with
        ``pooling="last"`` it is a summarizing prompt whose last token is the embedding."""
        if pooling not in POOLINGS:
            raise Llm4esError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}", key="pooling")
        if pool_tokens not in POOL_TOKENS:
            raise Llm4esError(f"pool_tokens must be one of {list(POOL_TOKENS)}, got {pool_tokens!r}", key="pool_tokens")
        if dtype not in DTYPES:
            raise Llm4esError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}", key="dtype")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = pick_dtype(dtype, self.device)
        # default: on CPU (see the module docstring); GPUs have fused kernels for masked attention
        self.padding_free = self.device == "cpu" if padding_free is None else padding_free
        self.tokenizer, model_body, path = load_model(model, head="base", dtype=self.dtype)
        self.model = model_body.to(self.device).eval()
        self.num_layers = self.model.config.num_hidden_layers
        self.layer_start = default_layer_start(self.num_layers) if layer_start is None else layer_start
        self.layer_end = self.num_layers if layer_end is None else layer_end
        check_layer_range(self.layer_start, self.layer_end, self.num_layers)
        stop_at_layer(self.model, self.layer_end)
        self.pooling = pooling
        self.max_length = max_length
        if padding_side is not None:
            self.tokenizer.padding_side = padding_side
        self.tokenizer.truncation_side = "left"  # keep the most recent events, as in training
        self.path = path
        self.pool_tokens = pool_tokens
        self.weight_field = weight_field
        self.echo = echo
        self.suffix = suffix
        self.suffix_ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        budget = max_length - len(self.suffix_ids)
        self.text_budget = budget // 2 if echo else budget
        if self.text_budget < 1:
            raise Llm4esError(
                f"max_length={max_length} leaves no room for the text (suffix {len(self.suffix_ids)} tokens"
                f"{', echo halves the rest' if echo else ''})",
                key="max_length",
            )

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def plain(self) -> bool:
        """True when no pooling lever is on: every token of the text weighs the same."""
        return self.pool_tokens == "all" and self.weight_field is None and not self.echo and not self.suffix_ids

    def token_weights(self, texts: Sequence[str]) -> tuple[list[list[int]], list[np.ndarray]]:
        """Token ids of each (left-truncated) text with the levers applied, and each token's pooling
        weight: 1 for a plain text; 0 for the header line and whitespace-only tokens with
        ``pool_tokens="events"``; times the event line's field ``weight_field`` (lines without a
        number there weigh 1); the first copy and the suffix weigh 0."""
        need_offsets = self.pool_tokens == "events" or self.weight_field is not None
        encoded = self.tokenizer(
            list(texts), truncation=True, max_length=self.text_budget, return_offsets_mapping=need_offsets
        )
        all_ids, all_weights = [], []
        for i, text in enumerate(texts):
            ids = list(encoded["input_ids"][i])
            weights = np.ones(len(ids), dtype=np.float32)
            if need_offsets:
                spans = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
                newlines = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10)
                line = np.searchsorted(newlines, spans[:, 0], side="left")  # a newline ends its line; 0 = the header
                if self.pool_tokens == "events":
                    blank = np.array([not text[a:b].strip() for a, b in spans], dtype=bool)
                    weights[(line == 0) | blank] = 0.0
                if self.weight_field is not None:
                    weights *= _line_values(text, self.weight_field)[line]
            if self.echo:
                ids, weights = ids + ids, np.concatenate([np.zeros_like(weights), weights])
            if self.suffix_ids:
                ids = ids + self.suffix_ids
                weights = np.concatenate([weights, np.zeros(len(self.suffix_ids), dtype=np.float32)])
            all_ids.append(ids)
            all_weights.append(weights)
        return all_ids, all_weights

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        output = self.model(
            input_ids=batch["input_ids"], attention_mask=mask, position_ids=position_ids, output_hidden_states=True
        )
        layers = output.hidden_states[self.layer_start :]
        # Pooling is linear, so pool each layer and average the pooled vectors: the same numbers as
        # averaging the layers first, without a (layers x batch x tokens x hidden) fp32 tensor.
        if self.pooling == "mean":
            weights = batch.get("pool_weights", mask).unsqueeze(-1).float()
            pooled = sum((h.float() * weights).sum(1) for h in layers)
            return pooled / len(layers) / weights.sum(1).clamp(min=1.0)
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask).argmax(1)
        rows = torch.arange(len(last), device=last.device)
        return sum(h[rows, last].float() for h in layers) / len(layers)

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 8,
        sort_by_length: bool = True,
        progress: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embeddings (float32, one row per text, in the input order); ``on_batch(texts, tokens)``
        after each forward pass (for a caller's own progress bar)."""
        from tqdm.auto import tqdm

        if not len(texts):
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.plain:
            encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
            token_weights = None
        else:
            encoded, token_weights = self.token_weights(texts)
        lengths = np.array([len(ids) for ids in encoded])
        order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(encoded))
        out = np.zeros((len(encoded), self.dimension), dtype=np.float32)
        bar = tqdm(total=int(lengths.sum()), unit="tok", desc="Embedding", disable=not progress)
        with torch.inference_mode():
            for index in self._batches(order, lengths, batch_size):
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in index]}, return_tensors="pt")
                if token_weights is not None:
                    batch["pool_weights"] = _pad_weights([token_weights[i] for i in index], self.tokenizer.padding_side)
                batch = {k: v.to(self.device) for k, v in batch.items()}
                out[index] = self._forward(batch).cpu().numpy()
                bar.update(int(lengths[index].sum()))
                if on_batch is not None:
                    on_batch(len(index), int(lengths[index].sum()))
        bar.close()
        return out

    def _batches(self, order: np.ndarray, lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
        """Consecutive runs of ``order``, at most ``batch_size`` long; with ``padding_free`` a
        batch whose first text has PADDING_FREE_MIN_TOKENS or more holds only texts of its length."""
        batches, current = [], []
        for i in order:
            if current and (
                len(current) == batch_size
                or (
                    self.padding_free
                    and lengths[i] != lengths[current[0]]
                    and max(lengths[i], lengths[current[0]]) >= PADDING_FREE_MIN_TOKENS
                )
            ):
                batches.append(np.array(current))
                current = []
            current.append(i)
        if current:
            batches.append(np.array(current))
        return batches


def _line_values(text: str, field: int) -> np.ndarray:
    """Per line of ``text``, its ``field``-th comma-separated value as a number (1.0 where there is none)."""
    values = []
    for line in text.split("\n"):
        parts = line.split(", ")
        try:
            values.append(float(parts[field]))
        except (IndexError, ValueError):
            values.append(1.0)
    return np.asarray(values, dtype=np.float32)


def _pad_weights(rows: list[np.ndarray], side: str) -> torch.Tensor:
    """Pooling weights padded with zeros on the tokenizer's padding side."""
    width = max(len(row) for row in rows)
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        if side == "left":
            out[i, width - len(row) :] = torch.from_numpy(row)
        else:
            out[i, : len(row)] = torch.from_numpy(row)
    return out


def embed_dataset(
    embedder: Embedder, texts: datasets.Dataset, *, batch_size: int = 8, text_column: str = "text"
) -> np.ndarray | None:
    """Embed a Dataset, split across accelerate processes; the main process gets all rows in order.

    Each process takes a contiguous slice of the rows; slices are gathered in rank order, so
    no row is lost or repeated. Other processes return None.
    """
    from accelerate.utils import gather_object

    state = process_state()
    with state.split_between_processes(list(range(len(texts)))) as indices:
        local = embedder.encode(
            texts.select(indices)[text_column] if indices else [], batch_size=batch_size, progress=state.is_main_process
        )
    if state.num_processes == 1:
        return local
    gathered = gather_object([(state.process_index, indices, local)])
    if not state.is_main_process:
        return None
    gathered.sort(key=lambda item: item[0])
    order = [i for _, idx, _ in gathered for i in idx]
    if order != list(range(len(texts))):
        raise Llm4esError("embedding processes lost or repeated rows")
    return np.concatenate([emb for _, _, emb in gathered if len(emb)], axis=0)


def embed_corpus(
    embedder: Embedder,
    corpus: str,
    output: str | Path,
    *,
    corpus_config: str = "serialized",
    splits: Sequence[str] | None = None,
    batch_size: int = 8,
) -> np.ndarray | None:
    """A corpus' plain texts -> one Parquet file (user_id, split, embedding) and a datasets folder
    beside it, users split across accelerate processes; the main process writes and gets the
    vectors (``llm4es embed --output X.parquet`` and the quickstart both run this)."""
    texts = load_texts(corpus, corpus_config, list(splits) if splits else None)
    embeddings = embed_dataset(embedder, texts, batch_size=batch_size)
    if embeddings is not None:
        save_embeddings(output, texts["user_id"], embeddings, extra={"split": texts["split"]})
    return embeddings
