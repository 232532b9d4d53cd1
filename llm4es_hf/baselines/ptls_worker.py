"""The pytorch-lifestream half of the CoLES baseline: train and embed with ptls' own modules.

Runs in the ptls environment as ``python -I ptls_worker.py {train,embed} INPUT.json`` (see
``coles.py`` for why it is a separate environment). Self-contained on purpose: it imports only
the standard library, numpy, pyarrow, torch, safetensors, pytorch-lightning and ptls, never
``llm4es_hf``, whose dependencies that environment does not have.

INPUT.json names the events file (Parquet: ``user_id``, ``event_time`` and one list column per
ptls feature, prepared by ``coles.coles_features``), the encoder folder (its ``config.json``
holds the TrxEncoder mapping and the recipe) and the embeddings file to write. ``train`` fits
``CoLESModule`` (RnnSeqEncoder over TrxEncoder; SampleSlices in a ColesDataset; PtlsDataModule;
a Lightning Trainer) on the users with at least ``min_seq_len`` events (ptls' SeqLenFilter),
saves ``model.safetensors`` and ``coles_training.json`` (loss per epoch), then embeds every
user; ``embed`` reloads the saved encoder and embeds the users of the events file.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch


def read_events(path: str | Path, keys: list[str]) -> tuple[list[str], list[dict[str, torch.Tensor]]]:
    """``(user ids, one ptls feature dict per user)``: each list column is flattened once and
    split at the users' offsets (no Python work per event). Tensors, not numpy arrays: ptls'
    collate pads only tensors."""
    table = pq.read_table(path)
    ids = [str(v) for v in table.column("user_id").to_pylist()]
    arrays: dict[str, list[np.ndarray]] = {}
    for key in ["event_time", *keys]:
        column = table.column(key).combine_chunks()
        if pa.types.is_large_list(column.type):
            column = column.cast(pa.list_(column.type.value_type))
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False).copy()  # writable, as torch wants
        offsets = column.offsets.to_numpy()
        arrays[key] = np.split(values, offsets[1:-1] - offsets[0]) if len(ids) > 1 else [values]
    records = [{key: torch.from_numpy(arrays[key][i]) for key in arrays} for i in range(len(ids))]
    return ids, records


def build_encoder(config: dict[str, Any]) -> Any:
    """RnnSeqEncoder over a TrxEncoder, as described by the encoder folder's config.json."""
    from ptls.nn import RnnSeqEncoder, TrxEncoder

    recipe, features = config["recipe"], config["features"]
    trx_encoder = TrxEncoder(
        embeddings=features["embeddings"],
        numeric_values=features["numeric_values"],
        embeddings_noise=recipe["embeddings_noise"],
        use_batch_norm_with_lens=recipe["batch_norm_with_lens"],
    )
    return RnnSeqEncoder(
        trx_encoder=trx_encoder,
        hidden_size=recipe["hidden_size"],
        type=recipe["rnn_type"],
        bidir=False,
        trainable_starter="static",
    )


def epoch_loss_callback(epochs: int) -> Any:
    """A Lightning callback that prints and keeps the mean training loss per epoch (ptls logs the
    step loss without putting it on the progress bar). Built here because lightning is imported lazily."""
    import pytorch_lightning as pl

    class EpochLoss(pl.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self._batch: list[float] = []
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self._batch.append(float(loss))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            mean = float(np.mean(self._batch)) if self._batch else float("nan")
            self.losses.append(mean)
            elapsed = time.perf_counter() - self._start
            print(
                f"coles epoch {trainer.current_epoch + 1}/{epochs}: loss {mean:.4f} "
                f"({len(self._batch)} steps, {elapsed:.0f} s so far)",
                flush=True,
            )
            self._batch = []

    return EpochLoss()


def embed(seq_encoder: Any, records: list[dict[str, torch.Tensor]], recipe: dict[str, Any]) -> np.ndarray:
    """One vector per user from ptls' inference loader (the latest ``max_seq_len`` events)."""
    from ptls.data_load.datasets import inference_data_loader

    loader = inference_data_loader(
        [dict(record) for record in records], max_seq_len=recipe["max_seq_len"], batch_size=256
    )
    seq_encoder.eval()
    device = next(seq_encoder.parameters()).device
    out = []
    with torch.no_grad():
        for batch in loader:
            out.append(seq_encoder(batch.to(device)).float().cpu().numpy())
    return np.concatenate(out, axis=0)


def write_embeddings(path: str | Path, ids: list[str], matrix: np.ndarray) -> None:
    """``user_id`` + ``embedding`` (list of float32), the layout ``llm4es evaluate --embeddings`` reads."""
    values = pa.array(matrix.astype(np.float32).ravel())
    vectors = pa.FixedSizeListArray.from_arrays(values, matrix.shape[1]).cast(pa.list_(pa.float32()))
    pq.write_table(pa.table({"user_id": pa.array(ids, pa.string()), "embedding": vectors}), path)


def train(job: dict[str, Any]) -> None:
    """Fit CoLES on the events file's users, save the encoder, embed every user."""
    import pytorch_lightning as pl
    from ptls.data_load.datasets import MemoryMapDataset
    from ptls.data_load.iterable_processing import SeqLenFilter
    from ptls.frames import PtlsDataModule
    from ptls.frames.coles import ColesDataset, CoLESModule
    from ptls.frames.coles.losses import ContrastiveLoss
    from ptls.frames.coles.sampling_strategies import HardNegativePairSelector
    from ptls.frames.coles.split_strategy import SampleSlices
    from safetensors.torch import save_file

    model_dir = Path(job["model_dir"])
    config = json.loads((model_dir / "config.json").read_text())
    recipe = config["recipe"]
    keys = [*config["features"]["embeddings"], *config["features"]["numeric_values"]]
    if recipe.get("threads"):
        torch.set_num_threads(int(recipe["threads"]))
    # Lightning's info lines (no GPU/TPU, a cloud-logger tip) say nothing here; the loss per epoch is ours
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    pl.seed_everything(recipe["seed"], workers=True)
    ids, records = read_events(job["events"], keys)
    # ptls' own filter: sequences shorter than min_seq_len are not trained on (they are still embedded)
    train_data = MemoryMapDataset(data=records, i_filters=[SeqLenFilter(min_seq_len=recipe["min_seq_len"])], n_jobs=1)
    n_train = len(train_data)
    dataset = ColesDataset(
        data=train_data,
        splitter=SampleSlices(split_count=recipe["split_count"], cnt_min=recipe["cnt_min"], cnt_max=recipe["cnt_max"]),
    )
    data_module = PtlsDataModule(
        train_data=dataset,
        train_batch_size=recipe["batch_size"],
        train_num_workers=0,
        # a lone user in the last batch has no negatives to contrast with
        train_drop_last=n_train % recipe["batch_size"] == 1,
    )
    seq_encoder = build_encoder(config)
    module = CoLESModule(
        seq_encoder=seq_encoder,
        loss=ContrastiveLoss(
            margin=recipe["margin"], sampling_strategy=HardNegativePairSelector(neg_count=recipe["neg_count"])
        ),
        optimizer_partial=partial(torch.optim.Adam, lr=recipe["lr"], weight_decay=recipe["weight_decay"]),
        lr_scheduler_partial=partial(
            torch.optim.lr_scheduler.StepLR, step_size=recipe["lr_step_size"], gamma=recipe["lr_gamma"]
        ),
    )
    losses = epoch_loss_callback(recipe["epochs"])
    trainer = pl.Trainer(
        max_epochs=recipe["epochs"],
        accelerator=recipe["accelerator"],
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bool(recipe["progress"]),
        # cuDNN's RNNs have no deterministic mode Lightning could force: there, warn instead of failing
        deterministic=True if recipe["accelerator"] == "cpu" else "warn",
        callbacks=[losses],
    )
    print(
        f"coles: training ptls CoLES ({recipe['rnn_type']} {recipe['hidden_size']}, {recipe['epochs']} epochs, "
        f"batch {recipe['batch_size']} users x {recipe['split_count']} slices) on {n_train:,} of {len(ids):,} users",
        flush=True,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # CoLES is trained without validation
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(module, datamodule=data_module)
    seconds = time.perf_counter() - started
    seq_encoder = module.seq_encoder
    save_file({k: v.contiguous() for k, v in seq_encoder.state_dict().items()}, str(model_dir / "model.safetensors"))
    matrix = embed(seq_encoder, records, recipe)
    write_embeddings(job["embeddings"], ids, matrix)
    from importlib.metadata import version

    (model_dir / "coles_training.json").write_text(
        json.dumps(
            {
                "users": len(ids),
                "trained_users": n_train,
                "epochs": recipe["epochs"],
                "loss_per_epoch": losses.losses,
                "train_seconds": round(seconds, 1),
                "embedding_size": int(matrix.shape[1]),
                "ptls_version": version("pytorch-lifestream"),
                "torch_version": torch.__version__,
                "lightning_version": pl.__version__,
            },
            indent=2,
        )
    )


def embed_saved(job: dict[str, Any]) -> None:
    """Embed the events file's users with a saved encoder folder."""
    from safetensors.torch import load_file

    model_dir = Path(job["model_dir"])
    config = json.loads((model_dir / "config.json").read_text())
    if config["recipe"].get("threads"):
        torch.set_num_threads(int(config["recipe"]["threads"]))
    keys = [*config["features"]["embeddings"], *config["features"]["numeric_values"]]
    ids, records = read_events(job["events"], keys)
    seq_encoder = build_encoder(config)
    seq_encoder.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    write_embeddings(job["embeddings"], ids, embed(seq_encoder, records, config["recipe"]))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("train", "embed"):
        print("usage: python -I ptls_worker.py {train,embed} INPUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    (train if argv[0] == "train" else embed_saved)(job)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
