"""Classification metrics of one set of predictions, computed with scikit-learn.

In: integer true labels and predicted labels (``-1`` = abstained, as the header baseline does),
and the class names in label order. Out: a JSON-ready dict. Abstentions count as wrong: they
lower accuracy and recall, and never count as a prediction of any class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

ABSTAIN = -1


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           classes: Sequence[str]) -> dict:
    """``{"n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "coverage"}``.

    ``per_class[name]`` holds precision, recall, f1 and support; ``confusion_matrix[i][j]`` counts
    frames of class ``i`` predicted as ``j`` (abstentions are in no column); ``coverage`` is the
    fraction of frames that got a prediction at all.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(classes)))
    n = int(y_true.size)
    if n == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "coverage": None,
                "per_class": {c: {"precision": None, "recall": None, "f1": None, "support": 0}
                              for c in classes},
                "confusion_matrix": [[0] * len(classes) for _ in classes]}
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "n": n,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                   zero_division=0)),
        "coverage": float(np.mean(y_pred != ABSTAIN)),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def agreement(y_true: Sequence[int], first: Sequence[int], second: Sequence[int]) -> dict:
    """How two predictors differ on the same frames: counts of frames only ``first`` gets right,
    only ``second`` gets right, both, neither (e.g. model vs. header baseline)."""
    y_true, first, second = (np.asarray(a, dtype=np.int64) for a in (y_true, first, second))
    a, b = first == y_true, second == y_true
    return {"only_first": int(np.sum(a & ~b)), "only_second": int(np.sum(~a & b)),
            "both": int(np.sum(a & b)), "neither": int(np.sum(~a & ~b))}
