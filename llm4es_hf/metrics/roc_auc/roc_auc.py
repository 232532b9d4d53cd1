"""ROC-AUC as an `evaluate` metric module, loadable offline with ``evaluate.load(<this folder>)``.

`evaluate.load("roc_auc")` needs the Hub; this local copy wraps scikit-learn so the
same call works on machines without network access.
"""

import datasets
import evaluate
from sklearn.metrics import roc_auc_score

_DESCRIPTION = "Area under the ROC curve of binary scores (scikit-learn's roc_auc_score)."
_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list` of `float`): score of the positive class per example.
    references (`list` of `int`): true labels, 0 or 1.
Returns:
    roc_auc (`float`): area under the ROC curve, 0.5 for a random ranking.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RocAuc(evaluate.Metric):
    """Binary ROC-AUC."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"prediction_scores": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, prediction_scores: list[float], references: list[int]) -> dict[str, float]:
        return {"roc_auc": float(roc_auc_score(references, prediction_scores))}
