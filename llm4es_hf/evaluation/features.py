"""Feature sets for the evaluation: loaded embeddings, built-in baselines and ensembles (concatenations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import scipy.sparse as sp

from ..artifacts import Labels, load_corpus_users, load_embeddings
from ..baselines import BASELINES
from ..errors import Llm4esError

Matrix = np.ndarray | sp.spmatrix
FeatureTable = tuple[Sequence[Any] | np.ndarray, Matrix]


def concat_features(
    feature_sets: Mapping[str, FeatureTable], *, balance: bool = True
) -> tuple[np.ndarray, Matrix, dict[str, int]]:
    """Ensemble by concatenation: columns of every set side by side for the users all sets have
    (inner join on user_id). Returns ``(user_ids, matrix, users dropped per set)``.

    ``balance`` (default) puts the blocks on one footing: each dense block is standardized per
    column and divided by sqrt(its width), so each block adds about 1 to a row's squared norm,
    as a TF-IDF bag's L2-normalized rows do (sparse blocks are kept as they are). Without it a
    576-wide embedding block swamps the bag in a linear model fed the sparse concatenation
    unscaled (MovieLens gender, bag + fine-tuned SmolLM2, logistic regression: 0.663 plain,
    0.805 balanced, bag alone 0.809). The statistics are the users' own, label-free; trees
    (LightGBM) are unaffected by per-column scaling.
    """
    if not feature_sets:
        raise Llm4esError("no feature sets to concatenate")
    tables = {name: (np.asarray(ids).astype(str), matrix) for name, (ids, matrix) in feature_sets.items()}
    common = None
    for ids, _ in tables.values():
        common = np.unique(ids) if common is None else np.intersect1d(common, ids)
    if common is None or not len(common):
        raise Llm4esError(f"the feature sets {list(tables)} share no user id; nothing to concatenate")
    blocks = [_rows(matrix, _positions(ids, common)) for ids, matrix in tables.values()]
    if balance:
        blocks = [block if sp.issparse(block) else _balanced(block) for block in blocks]
    any_sparse = any(sp.issparse(block) for block in blocks)
    matrix = sp.hstack([sp.csr_matrix(b) for b in blocks]).tocsr() if any_sparse else np.hstack(blocks)
    dropped = {name: int(len(ids) - len(common)) for name, (ids, _) in tables.items()}
    return common, matrix, dropped


def _balanced(block: np.ndarray) -> np.ndarray:
    """Columns standardized (constant ones left at 0), the block scaled to unit mean squared row norm."""
    block = np.asarray(block, dtype=np.float64)
    std = block.std(axis=0)
    scaled = (block - block.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return scaled / np.sqrt(max(int((std > 0).sum()), 1))


def _positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted id in ``ids`` (every wanted id must be there)."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)]


def _rows(matrix: Matrix, rows: np.ndarray) -> Matrix:
    return matrix.tocsr()[rows] if sp.issparse(matrix) else np.asarray(matrix)[rows]


def set_names(paths: Sequence[str]) -> list[str]:
    """Short unique names for embedding files: the file stem, else more of the path."""
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(p).with_suffix("")) for p in paths]


def assemble_feature_sets(
    labels: Labels,
    *,
    embeddings: Mapping[str, FeatureTable] | None = None,
    baselines: Sequence[str] = (),
    ensembles: Sequence[str] = (),
    ensemble_embeddings: bool = True,
    baseline_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, FeatureTable], dict[str, str], list[str]]:
    """``(feature sets, their kinds, notes)``: the named embeddings, the built-in baselines computed
    from the corpus' users (``baselines.BASELINES``), and each ``A+B`` ensemble; with several
    embedding sets and ``ensemble_embeddings``, their concatenation too."""
    feature_sets: dict[str, FeatureTable] = {}
    kinds: dict[str, str] = {}
    notes: list[str] = []
    if baselines:
        if labels.corpus is None:
            raise Llm4esError("baselines need labels from a corpus folder (users/ + schema.yaml)", key="baselines")
        unknown = [name for name in baselines if name not in BASELINES]
        if unknown:
            raise Llm4esError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}", key="baselines")
        users, schema = load_corpus_users(labels.corpus)
        everyone = datasets.concatenate_datasets(list(users.values()))
        for name in baselines:
            ids, matrix, baseline_notes = BASELINES[name](everyone, schema, **(baseline_options or {}))
            feature_sets[name], kinds[name] = (ids, matrix), "baseline"
            notes += baseline_notes
    for name, table in (embeddings or {}).items():
        feature_sets[name], kinds[name] = table, "embeddings"
    combos = [tuple(spec.split("+")) for spec in ensembles]
    if embeddings and len(embeddings) > 1 and ensemble_embeddings:
        combos.insert(0, tuple(embeddings))
    for parts in combos:
        missing = [part for part in parts if part not in feature_sets]
        if missing or len(parts) < 2:
            raise Llm4esError(
                f"ensemble {'+'.join(parts)!r} needs two or more of the feature sets {list(feature_sets)}"
                + (f"; unknown: {missing}" if missing else ""),
                key="ensembles",
            )
        ids, matrix, dropped = concat_features({part: feature_sets[part] for part in parts})
        name = "+".join(parts)
        feature_sets[name], kinds[name] = (ids, matrix), "ensemble"
        notes.append(
            f"ensemble {name}: balanced concatenation on {len(ids):,} shared users; dropped "
            + ", ".join(f"{count:,} of {key}" for key, count in dropped.items())
        )
    return feature_sets, kinds, notes


def load_embedding_files(paths: Sequence[str]) -> dict[str, FeatureTable]:
    """Embedding Parquet files by their short names (``set_names``)."""
    return {name: load_embeddings(path) for name, path in zip(set_names(paths), paths, strict=True)}
