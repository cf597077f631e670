"""Calibration: does a confidence of 0.9 mean right nine times in ten?

In: softmax probabilities ``[N, C]`` and true labels. Out: equal-width reliability bins and the
expected calibration error (ECE, Guo et al. 2017): ``sum_b |B_b|/N * |accuracy(B_b) -
confidence(B_b)|`` over bins ``(lo, hi]`` of the top-class probability.
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 15


def bin_index(confidence: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin of each confidence; bins are ``(k/n, (k+1)/n]``, with 0 going into the first."""
    index = np.ceil(np.asarray(confidence, dtype=np.float64) * n_bins).astype(np.int64) - 1
    return np.clip(index, 0, n_bins - 1)


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict:
    """``{"n_bins", "ece", "max_calibration_error", "bins": [{"lower", "upper", "count",
    "accuracy", "confidence"}]}``; empty bins have ``accuracy``/``confidence`` ``None``."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(y_true)
    confidence = probs.max(axis=1) if n else np.zeros(0)
    correct = (probs.argmax(axis=1) == y_true) if n else np.zeros(0, dtype=bool)
    index = bin_index(confidence, n_bins)
    bins, ece, mce = [], 0.0, 0.0
    for k in range(n_bins):
        members = index == k
        count = int(members.sum())
        entry = {"lower": k / n_bins, "upper": (k + 1) / n_bins, "count": count,
                 "accuracy": None, "confidence": None}
        if count:
            acc, conf = float(correct[members].mean()), float(confidence[members].mean())
            entry.update(accuracy=acc, confidence=conf)
            ece += count / n * abs(acc - conf)
            mce = max(mce, abs(acc - conf))
        bins.append(entry)
    return {"n_bins": n_bins, "ece": float(ece) if n else None,
            "max_calibration_error": float(mce) if n else None, "bins": bins}
