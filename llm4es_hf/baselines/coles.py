"""CoLES (Babaev et al., SIGMOD 2022) as a baseline, trained with pytorch-lifestream itself.

The paper's main rival: a GRU over per-event features, trained contrastively so that random
sub-sequences (slices) of one user land close together and those of different users far
apart. Here it is trained on the same users' raw events as the corpus (all users, no labels)
and scored in our protocol next to the LLM4ES rows (``llm4es evaluate --baselines coles``).

Two halves, two environments:
- this module (our stack): the recipe, the EventSchema -> ptls feature mapping and the data
  preparation (vectorized polars, one pass over all events), and the driver;
- ``ptls_worker.py`` (ptls' stack): the training and embedding with ptls' own modules
  (``TrxEncoder``, ``RnnSeqEncoder``, ``CoLESModule``, ``SampleSlices``, ``ColesDataset``,
  ``PtlsDataModule``, a Lightning ``Trainer``), run as a subprocess on a saved events file.

Why a subprocess: pytorch-lifestream 0.7.0 pins ``spacy==3.7.4``, which needs
``typer<0.10`` (gradio 6 needs ``typer>=0.12``: pip reports ResolutionImpossible) and, through
thinc 8.2, ``numpy<2`` (pandas 3.1 here needs numpy 2). So ptls lives in its own environment
(``.venv-coles``, made by ``make setup``) and never downgrades ours.

Field kinds map to ptls inputs as follows (``coles_features``): category -> an embedding sized
from its cardinality (frequency codes; rare values beyond ``max_categories`` share one code,
as ptls' ``out_of_index='clip'`` does); text -> the same when its values repeat (titles, genre
lists), an error naming the field when it is free text; number -> a numeric feature (ptls
scaler, then ptls' batch norm); date -> log1p of the gap in days to the previous event.

Long (about 550 lines) because the recipe (``ColesConfig``), the feature mapping, the environment
and the driver share the recipe and are read in that order; the ptls half is ``ptls_worker.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import yaml

from ..cards import write_coles_card
from ..errors import Llm4esError
from ..schema import EventSchema

EVENT_TIME = "event_time"
SECONDS_PER_DAY = 86400.0
PAD, OTHER = 0, 1  # category code 0 is ptls' padding; 1 = missing or rarer than the top values
NUMBER_SCALERS = ("identity", "sigmoid", "log", "year")  # ptls' scaler_by_name
RNN_TYPES = ("gru", "lstm")
ACCELERATORS = ("cpu", "gpu", "auto")
COLES_ENV = ".venv-coles"
PYTHON_ENV_VAR = "LLM4ES_COLES_PYTHON"
WORKER = Path(__file__).with_name("ptls_worker.py")
# thinc 8.2 (spacy 3.7.4) needs numpy<2, and pyarrow 26 refuses numpy 1.x at import (ptls imports pyarrow)
COLES_REQUIREMENTS = ("pytorch-lifestream==0.7.0", "pyarrow<26")
INSTALL_HINT = (
    "CoLES runs pytorch-lifestream 0.7.0 in its own environment, because its pins (spacy==3.7.4 -> typer<0.10, "
    f"numpy<2) conflict with gradio and pandas here: run `python -m llm4es_hf.baselines.coles setup` (it builds "
    f"{COLES_ENV}/; `make setup` runs it), or set {PYTHON_ENV_VAR} to a Python that has ptls"
)


@dataclass
class ColesConfig:
    """CoLES hyperparameters, one flat YAML per data set (``recipes/<dataset>/coles.yaml``).

    The defaults are pytorch-lifestream's CoLES configuration for the Gender bank data set
    (ptls-experiments ``scenario_gender/conf/mles_params.yaml``): GRU 1024, 5 slices of 15-75
    events, Adam lr 0.002 with StepLR(10, 0.9025), 150 epochs: a GPU job. The recipes of the other
    data sets hold their own ptls configurations; MovieLens' is sized for a 2-core CPU.
    """

    hidden_size: int = 1024
    rnn_type: str = "gru"
    split_count: int = 5  # slices per user per step (SampleSlices)
    cnt_min: int = 15  # slice length range
    cnt_max: int = 75
    min_seq_len: int = 25  # users with fewer events are embedded but not trained on (ptls' SeqLenFilter)
    epochs: int = 150
    lr: float = 0.002
    weight_decay: float = 0.0
    lr_step_size: int = 10  # StepLR, in epochs
    lr_gamma: float = 0.9025
    batch_size: int = 128  # users per step (each gives split_count slices)
    margin: float = 0.5  # ContrastiveLoss
    neg_count: int = 5  # HardNegativePairSelector
    embeddings_noise: float = 0.003
    batch_norm_with_lens: bool = False  # ptls' use_batch_norm_with_lens (padding left out of the statistics)
    number_scaler: str = "identity"  # ptls scaler of number fields, before ptls' batch norm
    max_categories: int = 10000  # per category/text field: values kept (by frequency); a text field with more
    # distinct values is free text, which ptls cannot embed
    max_embedding_size: int = 64  # category embedding width: min(this, round(1.6 * cardinality ** 0.56))
    skip_fields: list[str] = field(default_factory=list)  # schema fields left out of CoLES
    max_seq_len: int = 10000  # embedding: the latest events per user (ptls' inference_data_loader)
    seed: int = 42
    threads: int | None = None  # torch threads in the worker (default: torch's)
    accelerator: str = "cpu"  # Lightning's: cpu, gpu or auto (the bank recipes are GPU jobs; only cpu is tested here)
    progress: bool = True  # Lightning's progress bar (the loss is printed per epoch either way)
    python: str | None = None  # the ptls environment's Python (default: LLM4ES_COLES_PYTHON, this one, .venv-coles)

    def check(self, where: str = "coles") -> None:
        """Validate ranges and choices; the error names the recipe key."""
        for name in ("hidden_size", "split_count", "cnt_min", "epochs", "batch_size", "neg_count", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Llm4esError(f"{name} must be a positive integer, got {value!r}", file=where, key=name)
        for name in ("min_seq_len", "max_categories", "max_embedding_size", "lr_step_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Llm4esError(f"{name} must be a positive integer, got {value!r}", file=where, key=name)
        if self.cnt_max < self.cnt_min:
            raise Llm4esError(f"cnt_max ({self.cnt_max}) is below cnt_min ({self.cnt_min})", file=where, key="cnt_max")
        if self.accelerator not in ACCELERATORS:
            raise Llm4esError(f"{self.accelerator!r} is not one of {list(ACCELERATORS)}", file=where, key="accelerator")
        if self.rnn_type not in RNN_TYPES:
            raise Llm4esError(f"{self.rnn_type!r} is not one of {list(RNN_TYPES)}", file=where, key="rnn_type")
        if self.number_scaler not in NUMBER_SCALERS:
            raise Llm4esError(
                f"{self.number_scaler!r} is not one of {list(NUMBER_SCALERS)}", file=where, key="number_scaler"
            )
        if not self.lr > 0:
            raise Llm4esError(f"lr must be positive, got {self.lr!r}", file=where, key="lr")
        if self.batch_size < 2:
            raise Llm4esError(
                "batch_size must be at least 2: negatives come from other users", file=where, key="batch_size"
            )
        # HardNegativePairSelector takes the top neg_count of the n slices of a batch (torch.topk): the smallest
        # batch (2 users, a lone last user is dropped) has 2 * split_count slices
        if 2 * self.split_count < self.neg_count:
            raise Llm4esError(
                f"neg_count ({self.neg_count}) exceeds the {2 * self.split_count} slices of a 2-user batch "
                "(2 x split_count)",
                file=where,
                key="neg_count",
            )


def load_coles_recipe(path: str | Path | None = None, schema: EventSchema | None = None) -> ColesConfig:
    """The recipe at ``path``; without one ``recipes/<schema name>/coles.yaml`` when it exists,
    else the ptls defaults. Unknown keys are errors naming the key."""
    if path is None and schema is not None:
        from ..assets import recipes_dir

        candidate = recipes_dir() / schema.name / "coles.yaml"
        path = candidate if candidate.exists() else None
    if path is None:
        config = ColesConfig()
        config.check()
        return config
    path = Path(path)
    if not path.exists():
        raise Llm4esError("CoLES recipe not found", file=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise Llm4esError(f"invalid YAML: {err}", file=path) from err
    if not isinstance(data, dict):
        raise Llm4esError(f"expected a mapping, got {type(data).__name__}", file=path)
    known = {f.name for f in dataclasses.fields(ColesConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise Llm4esError(f"unknown key(s) {unknown}; allowed: {sorted(known)}", file=path, key=unknown[0])
    config = ColesConfig(**data)
    config.check(str(path))
    return config


# ----- EventSchema -> ptls features -----


@dataclass
class ColesFeatures:
    """Prepared input of ptls: ``frame`` has ``user_id``, ``n_events`` and one list column per
    ptls feature (``event_time`` in seconds, chronological; int64 category codes; float32
    numbers and date gaps); ``spec`` is the TrxEncoder mapping (``embeddings``, ``numeric_values``)
    with, per schema field, how it was encoded; ``vocabularies`` the category values by code - 2."""

    frame: pl.DataFrame
    spec: dict[str, Any]
    vocabularies: dict[str, list[str]]
    skipped_empty: int  # users without events: nothing to embed, left out


def embedding_size(cardinality: int, cap: int) -> int:
    """Width of a category embedding from its number of codes (fastai's rule 1.6 * n^0.56, capped)."""
    return int(max(2, min(cap, round(1.6 * cardinality**0.56))))


def _key(prefix: str, name: str) -> str:
    """A ptls feature name: prefixed (ptls treats names starting with 'target' as labels) and
    without dots (torch ModuleDict keys)."""
    return f"{prefix}_{name.replace('.', '_')}"


def coles_features(
    users: datasets.Dataset,
    schema: EventSchema,
    config: ColesConfig | None = None,
    *,
    vocabularies: dict[str, list[str]] | None = None,
) -> ColesFeatures:
    """Map the schema's fields to ptls features and prepare every user's arrays.

    ``vocabularies`` (from a trained encoder's config) fixes the category codes so that new
    users are encoded as the training users were; by default they are built from ``users``.
    Errors name the field: free text, numbers that are not numbers, missing columns, lists of
    unequal length in one user.
    """
    config = config or ColesConfig()
    fields = [f for f in schema.fields if f.name not in config.skip_fields]
    unknown = sorted(set(config.skip_fields) - {f.name for f in schema.fields})
    if unknown:
        raise Llm4esError(f"skip_fields names no schema field: {unknown}", key="skip_fields")
    if not any(f.name == EVENT_TIME and f.kind == "date" for f in fields):
        raise Llm4esError(
            f"CoLES orders events by time: schema {schema.name!r} needs a date field {EVENT_TIME!r} (not skipped)",
            key="fields",
        )
    names = [f.name for f in fields]
    missing = [n for n in ["user_id", *names] if n not in users.column_names]
    if missing:
        raise Llm4esError(
            f"the users Dataset has no column {missing[0]!r}; it has {users.column_names}", column=missing[0]
        )
    if len(users) == 0:
        raise Llm4esError("the users Dataset is empty")
    frame = pl.from_arrow(users.select_columns(["user_id", *names]).with_format("arrow")[:])
    frame = frame.with_columns(
        pl.col("user_id").cast(pl.Utf8), pl.col(EVENT_TIME).list.len().fill_null(0).alias("n_events")
    )
    lengths = frame.select(pl.col(n).list.len().fill_null(0) for n in names if n != EVENT_TIME)
    for name in lengths.columns:
        bad = lengths[name] != frame["n_events"]
        if bad.any():
            row = int(bad.arg_max())
            raise Llm4esError(
                f"user {frame['user_id'][row]!r} has {lengths[name][row]} values of {name!r} but "
                f"{frame['n_events'][row]} event times",
                row=row,
                column=name,
            )
    empty = int((frame["n_events"] == 0).sum())
    frame = frame.filter(pl.col("n_events") > 0)
    if frame.height == 0:
        raise Llm4esError("no user has any event: nothing for CoLES to learn or embed")

    # one row per event, in time order within each user (stable: ties keep the corpus order)
    events = (
        frame.with_row_index("row")
        .explode([EVENT_TIME, *[n for n in names if n != EVENT_TIME]])
        .with_columns(pl.col(EVENT_TIME).cast(pl.Float64))
        .sort(["row", EVENT_TIME], maintain_order=True, nulls_last=True)
    )
    columns: list[pl.Expr] = [pl.col(EVENT_TIME).fill_null(strategy="forward").over("row").alias(EVENT_TIME)]
    spec: dict[str, Any] = {"embeddings": {}, "numeric_values": {}, "fields": {}}
    vocabularies = dict(vocabularies or {})
    for spec_field in fields:
        name, kind = spec_field.name, spec_field.kind
        if kind in ("category", "text"):
            values = events[name].cast(pl.Utf8)
            if name not in vocabularies:
                counts = values.drop_nulls().value_counts(name="n").sort(["n", name], descending=[True, False])
                if kind == "text" and counts.height > config.max_categories:
                    raise Llm4esError(
                        f"text field {name!r} has {counts.height:,} distinct values, more than max_categories "
                        f"({config.max_categories:,}): free text, which ptls cannot embed; list it in the recipe's "
                        "skip_fields, or raise max_categories if its values are labels",
                        key=f"fields.{name}",
                    )
                vocabularies[name] = counts[name].head(config.max_categories).to_list()
            vocabulary = vocabularies[name]
            codes = values.replace_strict(
                vocabulary, list(range(OTHER + 1, OTHER + 1 + len(vocabulary))), default=OTHER, return_dtype=pl.Int64
            )
            key = _key("c", name)
            columns.append(pl.lit(codes).alias(key))
            size = len(vocabulary) + OTHER + 1
            width = embedding_size(size, config.max_embedding_size)
            spec["embeddings"][key] = {"in": max(size, 3), "out": width}
            spec["fields"][name] = {"kind": kind, "ptls": key, "as": f"embedding ({size:,} codes x {width})"}
        elif kind == "number":
            try:
                values = events[name].cast(pl.Float64)
            except pl.exceptions.InvalidOperationError as err:
                raise Llm4esError(
                    f"number field {name!r} has values that are not numbers ({err})", key=f"fields.{name}"
                ) from err
            if values.is_infinite().any():
                raise Llm4esError(f"number field {name!r} has an infinite value", key=f"fields.{name}")
            key = _key("n", name)
            columns.append(pl.lit(values.fill_nan(None).fill_null(0.0).cast(pl.Float32)).alias(key))
            spec["numeric_values"][key] = config.number_scaler
            spec["fields"][name] = {"kind": kind, "ptls": key, "as": f"number ({config.number_scaler}, batch norm)"}
        elif kind == "date":
            key = _key("d", f"{name}_gap")
            gap = pl.col(name).cast(pl.Float64).diff().over("row") / SECONDS_PER_DAY
            columns.append(gap.clip(lower_bound=0.0).fill_null(0.0).log1p().cast(pl.Float32).alias(key))
            spec["numeric_values"][key] = "identity"
            spec["fields"][name] = {"kind": kind, "ptls": key, "as": "log1p(days since the previous event)"}
        else:  # pragma: no cover - the schema validates kinds
            raise Llm4esError(f"field {name!r} has kind {kind!r}, which CoLES cannot encode", key=f"fields.{name}")
    events = events.select("row", *columns)
    keys = [c for c in events.columns if c != "row"]
    grouped = events.group_by("row", maintain_order=True).agg(keys)
    prepared = pl.concat([frame.select("user_id", "n_events"), grouped.drop("row")], how="horizontal")
    return ColesFeatures(frame=prepared, spec=spec, vocabularies=vocabularies, skipped_empty=empty)


# ----- the ptls environment -----


def _default_envs() -> list[Path]:
    """Where ``make setup`` puts the ptls environment: the current folder, else the checkout
    this package is installed from (editable installs)."""
    return [Path.cwd() / COLES_ENV, Path(__file__).resolve().parents[2] / COLES_ENV]


def _has_ptls(python: str) -> bool:
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('ptls') else 1)"
    try:
        return subprocess.run([python, "-I", "-c", probe], capture_output=True, timeout=120).returncode == 0
    except OSError:
        return False


def coles_python(config: ColesConfig | None = None) -> str:
    """The Python that runs ptls: the recipe's ``python``, else ``$LLM4ES_COLES_PYTHON``, else this
    interpreter when it has ptls, else ``.venv-coles/bin/python``. A missing one is an error that
    says how to install it."""
    explicit = (config.python if config else None) or os.environ.get(PYTHON_ENV_VAR)
    if explicit:
        where = "the recipe's python" if config and config.python else f"${PYTHON_ENV_VAR}"
        if not (shutil.which(explicit) or Path(explicit).exists()):
            raise Llm4esError(f"{where} {explicit!r} does not exist. {INSTALL_HINT}", key="python")
        if not _has_ptls(explicit):
            raise Llm4esError(f"{where} {explicit!r} has no pytorch-lifestream (ptls). {INSTALL_HINT}", key="python")
        return explicit
    if importlib.util.find_spec("ptls") is not None:
        return sys.executable
    for env in _default_envs():
        python = env / "bin" / "python"
        if python.exists() and _has_ptls(str(python)):
            return str(python)
    raise Llm4esError(f"pytorch-lifestream (ptls) is not installed. {INSTALL_HINT}", key="coles")


def setup_coles_env(path: str | Path = COLES_ENV) -> Path:
    """Build the ptls environment: a venv with this environment's torch version first (so pip keeps the
    CPU build instead of pulling a CUDA one), then pytorch-lifestream with that torch pinned. Idempotent."""
    from importlib.metadata import version

    path = Path(path)
    python = path / "bin" / "python"
    torch_pin = f"torch=={version('torch').split('+')[0]}"
    steps = [
        [sys.executable, "-m", "venv", str(path)] if not python.exists() else None,
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", torch_pin],
        [str(python), "-m", "pip", "install", "-q", torch_pin, *COLES_REQUIREMENTS],
        [str(python), "-m", "pip", "check"],
        [str(python), "-I", "-c", "import ptls.frames.coles, ptls.nn, pytorch_lightning, safetensors"],
    ]
    for step in filter(None, steps):
        print("+", " ".join(step), flush=True)
        if subprocess.run(step, check=False).returncode != 0:
            raise Llm4esError(f"building the CoLES environment failed at: {' '.join(step)}", file=path)
    return python


def _run_worker(python: str, mode: str, job: dict[str, Any], work: Path) -> None:
    """``python -I ptls_worker.py MODE job.json``; its progress and loss go to our stdout/stderr.
    ``-I``: the worker's folder (this package) must not shadow the ptls environment's modules."""
    path = work / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    sys.stdout.flush()
    result = subprocess.run([python, "-I", str(WORKER), mode, str(path)], check=False)
    if result.returncode != 0:
        raise Llm4esError(
            f"CoLES {mode} failed in the ptls environment ({python}, exit {result.returncode}); its output is above",
            file=job["model_dir"],
        )


def _write_events(features: ColesFeatures, path: Path) -> None:
    features.frame.drop("n_events").write_parquet(path)


def _read_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pl.read_parquet(path)
    matrix = np.asarray(frame["embedding"].to_list(), dtype=np.float32)
    return frame["user_id"].to_numpy().astype(str), matrix


# ----- training, embedding, the evaluation's baseline -----


@dataclass
class ColesResult:
    """What a CoLES run gives the evaluation: ids, vectors, notes for the report, where it saved."""

    user_ids: np.ndarray
    matrix: np.ndarray
    notes: list[str]
    model_dir: Path
    embeddings: Path
    training: dict[str, Any]


def train_coles(
    users: datasets.Dataset,
    schema: EventSchema,
    config: ColesConfig,
    model_dir: str | Path,
    embeddings: str | Path | None = None,
) -> ColesResult:
    """Train CoLES with ptls on every user's events (no labels) and embed every user.

    ``model_dir`` gets the encoder (``model.safetensors``, ``config.json`` with the ptls feature
    mapping, vocabularies and recipe, ``schema.yaml``, ``coles_training.json``, ``README.md``);
    ``embeddings`` (default ``<model_dir>.parquet``) the vectors, readable by ``llm4es evaluate
    --embeddings``. Users with fewer than ``min_seq_len`` events are embedded, not trained on
    (ptls' SeqLenFilter); users without events are left out; both are counted in the notes.
    """
    from ..schema import save_schema

    config.check()
    features = coles_features(users, schema, config)
    lengths = features.frame["n_events"].to_numpy()
    n_train = int((lengths >= config.min_seq_len).sum())
    if n_train < 2:
        raise Llm4esError(
            f"CoLES contrasts users with each other: it needs at least 2 users with min_seq_len={config.min_seq_len} "
            f"or more events, and {n_train} of {len(lengths)} have that many; lower min_seq_len in the recipe",
            key="min_seq_len",
        )
    python = coles_python(config)  # after the checks of the data: bad input is reported without the environment
    model_dir = Path(model_dir)
    embeddings = Path(embeddings) if embeddings is not None else model_dir.with_suffix(".parquet")
    model_dir.mkdir(parents=True, exist_ok=True)
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k != "python"}
    description = {
        "model_type": "llm4es-coles",
        "library": "pytorch-lifestream",
        "method": "CoLES (Babaev et al., SIGMOD 2022): RnnSeqEncoder over TrxEncoder, CoLESModule",
        "schema": schema.name,
        "embedding_size": config.hidden_size,
        "features": {"embeddings": features.spec["embeddings"], "numeric_values": features.spec["numeric_values"]},
        "fields": features.spec["fields"],
        "vocabularies": features.vocabularies,
        "recipe": recipe,
    }
    (model_dir / "config.json").write_text(json.dumps(description, indent=2, ensure_ascii=False), encoding="utf-8")
    save_schema(schema, model_dir / "schema.yaml")
    with tempfile.TemporaryDirectory(prefix="llm4es-coles-") as tmp:
        work = Path(tmp)
        # the events file lives only for the run: the saved folder is publishable, users' events are not
        _write_events(features, work / "events.parquet")
        job = {"events": str(work / "events.parquet"), "model_dir": str(model_dir), "embeddings": str(embeddings)}
        _run_worker(python, "train", job, work)
    training = json.loads((model_dir / "coles_training.json").read_text())
    ids, matrix = _read_embeddings(embeddings)
    notes = [
        f"coles: ptls {training['ptls_version']} CoLES ({config.rnn_type} {config.hidden_size}, "
        f"{config.epochs} epochs, "
        f"{config.split_count} slices of {config.cnt_min}-{config.cnt_max} events, seed {config.seed}) trained on "
        f"{training['trained_users']:,} of {len(ids):,} users' events without labels in {training['train_seconds']} s; "
        f"loss {training['loss_per_epoch'][0]:.4f} -> {training['loss_per_epoch'][-1]:.4f}; encoder in {model_dir}"
    ]
    short = int((lengths < config.min_seq_len).sum())
    if short:
        notes.append(
            f"coles: {short:,} users with fewer than min_seq_len={config.min_seq_len} events were embedded but "
            "not trained on (ptls' SeqLenFilter)"
        )
    whole = int(((lengths >= config.min_seq_len) & (lengths <= config.cnt_min)).sum())
    if whole:
        notes.append(
            f"coles: {whole:,} trained users have at most cnt_min={config.cnt_min} events: each of their slices is "
            "the whole sequence (ptls' SampleSlices)"
        )
    if features.skipped_empty:
        notes.append(f"coles: {features.skipped_empty:,} users without events have no CoLES embedding")
    write_coles_card(model_dir, description, training)
    return ColesResult(ids, matrix, notes, model_dir, embeddings, training)


def embed_coles(
    model_dir: str | Path, users: datasets.Dataset, embeddings: str | Path, *, python: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Embed users with a saved CoLES encoder folder (its vocabularies, recipe and schema), e.g.
    new users, or the same ones on another machine. Returns ``(user_ids, matrix)``."""
    from ..schema import load_schema

    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").exists() or not (model_dir / "config.json").exists():
        raise Llm4esError("not a CoLES encoder folder (model.safetensors + config.json)", file=model_dir)
    description = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config = ColesConfig(**{**description["recipe"], "python": python})
    features = coles_features(
        users, load_schema(model_dir / "schema.yaml"), config, vocabularies=description["vocabularies"]
    )
    with tempfile.TemporaryDirectory(prefix="llm4es-coles-") as tmp:
        work = Path(tmp)
        _write_events(features, work / "events.parquet")
        job = {"events": str(work / "events.parquet"), "model_dir": str(model_dir), "embeddings": str(embeddings)}
        _run_worker(coles_python(config), "embed", job, work)
    return _read_embeddings(Path(embeddings))


def coles_baseline(
    users: datasets.Dataset, schema: EventSchema, *, recipe: str | Path | None = None, output_dir: str | Path
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``llm4es evaluate --baselines coles``: train on ``users`` (all of them, no labels) with the
    recipe (default ``recipes/<schema>/coles.yaml``, else ptls' defaults); the encoder goes to
    ``<output_dir>/coles/`` and the vectors to ``<output_dir>/coles.parquet``."""
    config = load_coles_recipe(recipe, schema)
    output_dir = Path(output_dir)
    result = train_coles(users, schema, config, output_dir / "coles", output_dir / "coles.parquet")
    return result.user_ids, result.matrix, result.notes


def main(argv: list[str] | None = None) -> int:
    """``python -m llm4es_hf.baselines.coles setup [PATH]``: build the ptls environment (default ``.venv-coles``)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "setup" or len(argv) > 2:
        print("usage: python -m llm4es_hf.baselines.coles setup [PATH]   (default PATH: .venv-coles)", file=sys.stderr)
        return 2
    print(f"CoLES environment ready: {setup_coles_env(*argv[1:])}")
    return 0


__all__ = [
    "ColesConfig",
    "ColesFeatures",
    "ColesResult",
    "coles_baseline",
    "coles_features",
    "coles_python",
    "embed_coles",
    "load_coles_recipe",
    "setup_coles_env",
    "train_coles",
]


if __name__ == "__main__":
    sys.exit(main())
