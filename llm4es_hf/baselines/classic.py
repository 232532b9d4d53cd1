"""Classic baselines for the downstream evaluation: hand-made aggregates and a bag of categories.

Both are computed from a users Dataset (one row per user, one list column per field)
and its EventSchema, on the flattened Arrow lists with polars and numpy: the cost is a
few vectorized passes over all events, never Python work per event (ptls' users
complained of hours of per-row pandas preprocessing).

- ``aggregate_features``: counts, time span and rate, per number field sum/mean/std/
  min/max/median, per category field the share of each of its top-K values. These are
  the "aggregate features" row of the paper's Table 4, scored with LightGBM.
- ``bag_of_categories``: TF-IDF over every category and text value a user has (for
  MovieLens: which movies and genres); scored with logistic regression it is the
  strong classic baseline on MovieLens.

Value vocabularies (top-K values, TF-IDF tokens and IDF) come from all the users given,
without labels: unsupervised, so no label leaks across the train/test split.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import polars as pl
import scipy.sparse as sp

from ..errors import Llm4esError
from ..schema import EventSchema
from .coles import coles_baseline

EVENT_TIME = "event_time"
SECONDS_PER_DAY = 86400.0
MISSING = "<missing>"
OTHER = "<other>"
NUMBER_STATS = ("sum", "mean", "std", "min", "max", "median")

FeatureTable = tuple[np.ndarray, np.ndarray | sp.csr_matrix, list[str]]
BaselineResult = tuple[np.ndarray, np.ndarray | sp.csr_matrix, list[str]]


def _frame(users: datasets.Dataset, columns: list[str]) -> pl.DataFrame:
    """The named columns as a polars frame (select/shuffle index mappings applied)."""
    missing = [c for c in columns if c not in users.column_names]
    if missing:
        raise Llm4esError(
            f"the users Dataset has no column {missing[0]!r}; it has {users.column_names}", column=missing[0]
        )
    if len(users) == 0:
        raise Llm4esError("the users Dataset is empty")
    table = users.select_columns(columns).with_format("arrow")[:]
    frame = pl.from_arrow(table)
    return frame.with_columns(pl.col("user_id").cast(pl.Utf8))


def _exploded(frame: pl.DataFrame, name: str, *, missing: str | None = MISSING) -> pl.DataFrame:
    """(row, value) pairs of a list column; missing values become ``missing`` (or are left out
    when it is None), empty lists vanish."""
    values = pl.col(name).cast(pl.List(pl.Utf8))
    if missing is not None:
        values = values.list.eval(pl.element().fill_null(missing))
    pairs = frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), values.alias("value"))
    return pairs.explode("value").drop_nulls("value")


def aggregate_features(
    users: datasets.Dataset, schema: EventSchema, *, top_k: int = 50, text_fields: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-user aggregates: ``(user_ids, matrix [users x features], feature names)``.

    - ``n_events``; ``span_days`` (last minus first event time, in days); ``events_per_day``
      (``n_events / max(span_days, 1)``);
    - per number field: sum, mean, std (population, 0 for one event), min, max, median of
      its non-missing values (0 when a user has none);
    - per category field (and, with ``text_fields``, per text field): the share of the user's
      events with each of the field's ``top_k`` most frequent values (over all users' events),
      plus ``<other>`` for the rest when there are more values; a missing value counts as the
      value ``<missing>``. Text fields count because schemas declare value fields without a
      code map as text (MovieLens genres and titles): without their shares the MovieLens
      aggregates are 9 numbers that barely beat chance on gender.
    """
    if top_k < 1:
        raise Llm4esError(f"top_k must be at least 1, got {top_k}", key="top_k")
    numbers = [f.name for f in schema.fields if f.kind == "number"]
    kinds = ("category", "text") if text_fields else ("category",)
    categories = [f.name for f in schema.fields if f.kind in kinds and f.name != EVENT_TIME]
    frame = _frame(users, ["user_id", EVENT_TIME, *numbers, *categories])

    time = pl.col(EVENT_TIME)
    span = ((time.list.max() - time.list.min()) / SECONDS_PER_DAY).fill_null(0.0)
    exprs = [
        time.list.len().cast(pl.Float64).alias("n_events"),
        span.alias("span_days"),
        (time.list.len() / pl.max_horizontal(span, pl.lit(1.0))).alias("events_per_day"),
    ]
    for name in numbers:
        values = pl.col(name).cast(pl.List(pl.Float64))
        stats = {
            "sum": values.list.sum(),
            "mean": values.list.mean(),
            "std": values.list.std(ddof=0),
            "min": values.list.min(),
            "max": values.list.max(),
            "median": values.list.median(),
        }
        exprs += [stats[stat].cast(pl.Float64).fill_null(0.0).alias(f"{name}_{stat}") for stat in NUMBER_STATS]
    table = frame.select(exprs)
    names = list(table.columns)
    blocks = [table.to_numpy().astype(np.float64)]
    lengths = frame.select(pl.col(c).list.len() for c in categories) if categories else None
    for name in categories:
        block, value_names = _shares(frame, name, lengths[name].to_numpy(), top_k)
        blocks.append(block)
        names += [f"{name}={value} share" for value in value_names]
    return frame["user_id"].to_numpy().astype(str), np.hstack(blocks), names


def _shares(frame: pl.DataFrame, name: str, lengths: np.ndarray, top_k: int) -> tuple[np.ndarray, list[str]]:
    """Share of each top-K value (and ``<other>``) in each user's list, by bincount over (row, value)."""
    pairs = _exploded(frame, name)
    counts = pairs["value"].value_counts(name="n").sort(["n", "value"], descending=[True, False])
    top = counts["value"].head(top_k).to_list()
    with_other = len(counts) > top_k
    width = len(top) + int(with_other)
    column = pairs["value"].replace_strict(top, list(range(len(top))), default=len(top), return_dtype=pl.Int64)
    cells = pairs["row"].to_numpy() * width + column.to_numpy()
    matrix = np.bincount(cells, minlength=len(frame) * width).reshape(len(frame), width).astype(np.float64)
    matrix /= np.maximum(lengths, 1)[:, None]
    return matrix, top + ([OTHER] if with_other else [])


def bag_of_categories(
    users: datasets.Dataset, schema: EventSchema, *, min_df: int = 1
) -> tuple[np.ndarray, sp.csr_matrix, list[str]]:
    """TF-IDF over each user's category and text values: ``(user_ids, sparse matrix, token names)``.

    Each value is one token, named ``field=value`` (so the same string in two fields stays
    two tokens); missing values are no token; tokens seen in fewer than ``min_df`` users are left out. The result equals
    ``TfidfVectorizer(analyzer=<the user's list of tokens>, min_df=min_df)`` (columns in
    sorted token order, smooth IDF, L2-normalized rows), built from a vectorized count matrix.
    """
    from sklearn.feature_extraction.text import TfidfTransformer

    fields = [f.name for f in schema.fields if f.kind in ("category", "text") and f.name != EVENT_TIME]
    if not fields:
        raise Llm4esError(f"schema {schema.name!r} has no category or text field to make a bag of", key="fields")
    frame = _frame(users, ["user_id", *fields])
    pairs = pl.concat(
        [
            _exploded(frame, name, missing=None).select("row", (pl.lit(f"{name}=") + pl.col("value")).alias("token"))
            for name in fields
        ]
    )
    vocabulary = pairs["token"].unique().sort()
    codes = pl.DataFrame({"token": vocabulary}).with_row_index("col", offset=0)
    pairs = pairs.join(codes, on="token", how="left")
    counts = sp.coo_matrix(
        (np.ones(len(pairs), dtype=np.float64), (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
        shape=(len(frame), len(vocabulary)),
    ).tocsr()
    counts.sum_duplicates()
    names = vocabulary.to_list()
    if min_df > 1:
        document_frequency = np.asarray((counts > 0).sum(axis=0)).ravel()
        keep = np.flatnonzero(document_frequency >= min_df)
        counts = counts[:, keep]
        names = [names[i] for i in keep]
    if counts.shape[1] == 0:
        raise Llm4esError(f"no token is used by at least {min_df} users", key="min_df")
    matrix = TfidfTransformer().fit_transform(counts).tocsr()
    return frame["user_id"].to_numpy().astype(str), matrix, names


BASELINES: dict[str, Callable[..., FeatureTable]] = {
    "aggregates": aggregate_features,
    "bag": bag_of_categories,
}

__all__ = ["BASELINES", "aggregate_features", "bag_of_categories"]


def _aggregates(users: datasets.Dataset, schema: EventSchema, *, top_k: int = 50, **_: object) -> BaselineResult:
    ids, matrix, _ = aggregate_features(users, schema, top_k=top_k)
    return ids, matrix, []


def _bag(users: datasets.Dataset, schema: EventSchema, **_: object) -> BaselineResult:
    ids, matrix, _ = bag_of_categories(users, schema)
    return ids, matrix, []


def _coles(
    users: datasets.Dataset, schema: EventSchema, *, coles_recipe: str | None = None, output_dir: str, **_: object
) -> BaselineResult:
    # trained on every user's events (no labels); the encoder is saved in <output_dir>/coles/
    return coles_baseline(users, schema, recipe=coles_recipe, output_dir=output_dir)


# Built-in baselines by the name `llm4es evaluate --baselines` takes:
# (all users, schema, **options) -> (user ids, features, notes for the report).
BASELINES: dict[str, Callable[..., BaselineResult]] = {"aggregates": _aggregates, "bag": _bag, "coles": _coles}
