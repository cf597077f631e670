"""The feature scaler, fitted in the Beam job on the train split only.

``ScalerCombineFn`` is a NaN-aware streaming mean/variance (Chan et al.'s parallel update), so
Beam can pre-combine on every worker and merge small accumulators: no step holds the features of
all frames. The result has scikit-learn ``StandardScaler`` semantics: population variance
(ddof=0), ``scale = sqrt(var)`` with 0 replaced by 1, ``n_samples`` counted per feature because
NaN (unknown) values are skipped.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np


class ScalerCombineFn(beam.CombineFn):
    """Combine float feature vectors of length ``n_features`` into scaler statistics."""

    def __init__(self, n_features: int):
        self.n_features = n_features

    def create_accumulator(self):
        zeros = np.zeros(self.n_features, dtype=np.float64)
        return zeros.copy(), zeros.copy(), zeros.copy()  # count, mean, M2

    def add_input(self, accumulator, features):
        count, mean, m2 = accumulator
        x = np.asarray(features, dtype=np.float64)
        ok = np.isfinite(x)
        count = count + ok
        delta = np.where(ok, x - mean, 0.0)
        safe = np.maximum(count, 1)
        mean = mean + delta / safe
        m2 = m2 + delta * np.where(ok, x - mean, 0.0)
        return count, mean, m2

    def merge_accumulators(self, accumulators):
        count, mean, m2 = self.create_accumulator()
        for c_b, mean_b, m2_b in accumulators:
            total = count + c_b
            safe = np.maximum(total, 1)
            delta = mean_b - mean
            mean = mean + delta * c_b / safe
            m2 = m2 + m2_b + delta ** 2 * count * c_b / safe
            count = total
        return count, mean, m2

    def extract_output(self, accumulator):
        return scaler_from_moments(*accumulator)


def scaler_from_moments(count, mean, m2) -> dict:
    """Scaler JSON fields from per-feature count, mean and sum of squared deviations."""
    count = np.asarray(count, dtype=np.float64)
    var = np.where(count > 0, np.asarray(m2) / np.maximum(count, 1), 0.0)
    scale = np.sqrt(var)
    scale = np.where(scale > 0, scale, 1.0)
    return {
        "mean": np.where(count > 0, mean, 0.0).tolist(),
        "scale": scale.tolist(),
        "var": var.tolist(),
        "n_samples": count.astype(int).tolist(),
        "fitted_on": "train",
    }
