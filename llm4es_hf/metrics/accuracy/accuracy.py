"""Accuracy as an `evaluate` metric module, loadable offline with ``evaluate.load(<this folder>)``.

`evaluate.load("accuracy")` needs the Hub; this local copy wraps scikit-learn so the
same call works on machines without network access.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = "Fraction of correct class predictions (scikit-learn's accuracy_score)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class index per example.
    references (`list` of `int`): true class index per example.
Returns:
    accuracy (`float`): share of predictions equal to the reference.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    """Multiclass accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions: list[int], references: list[int]) -> dict[str, float]:
        return {"accuracy": float(accuracy_score(references, predictions))}
