"""Downstream evaluation of user embeddings: the paper's protocol (Shestov et al., CIKM '25), from ptls.

Held-out test users (the corpus split, else a seeded stratified 10% split), 5 stratified
folds on the labeled train users; each fold's model (MaxAbsScaler + LightGBM with the
paper's parameters, or a scaled logistic regression) is scored on its validation fold and
on the test users. A report row per feature set and model gives the fold scores, mean ±
std, a t-distribution 95% CI of the 5 test scores and a paired t-test against a baseline
row. Every feature set is evaluated on the same users and folds (the users all sets and
the labels share), so rows compare like with like and the t-test pairs are real pairs.

Modules: ``features`` (embeddings, built-in baselines, ensembles), ``protocol`` (splits, folds,
downstream models), ``report`` (rows, paired comparisons, Markdown/JSON/plot), ``run``
(``EvaluationConfig`` and ``evaluate_embeddings``, what ``llm4es evaluate`` calls).
"""

from .features import assemble_feature_sets, concat_features, load_embedding_files
from .protocol import LGBM_BINARY, LGBM_MULTICLASS, LOGREG, MODELS, TASKS, evaluate_features, make_model
from .report import Comparison, EvaluationReport, ScoreRow
from .run import EvaluationConfig, evaluate_embeddings, run_evaluation, write_report

__all__ = [
    "LGBM_BINARY",
    "LGBM_MULTICLASS",
    "LOGREG",
    "MODELS",
    "TASKS",
    "Comparison",
    "EvaluationConfig",
    "EvaluationReport",
    "ScoreRow",
    "assemble_feature_sets",
    "concat_features",
    "evaluate_embeddings",
    "evaluate_features",
    "load_embedding_files",
    "make_model",
    "run_evaluation",
    "write_report",
]
