"""The feature scaler, fitted in the Beam job on the train split only.

``ScalerCombineFn`` is a NaN-aware streaming mean/variance, so Beam can pre-combine on every
worker and merge small accumulators: no step holds the features of all frames. The accumulator
holds, per feature, the count of finite values and the *exact* sums of the values and of their
squares, as integers in units of the smallest float64 (every float is an exact multiple of it).
Integer sums are associative and commutative, so the scaler is bit-for-bit the same whatever the
runner, the worker count or the order in which frames arrive; mean and variance are computed
exactly from them and rounded once.

The result has scikit-learn ``StandardScaler`` semantics: population variance (ddof=0),
``scale = sqrt(var)`` with 0 replaced by 1, ``n_samples`` counted per feature because NaN
(unknown) values are skipped.
"""

from __future__ import annotations

import math
from fractions import Fraction

import apache_beam as beam
import numpy as np

#: float64 values are exact multiples of 2**-1074 (the smallest subnormal).
_SHIFT = 1074


def exact_units(value: float) -> int:
    """``value * 2**1074`` as an exact integer (``value`` finite)."""
    numerator, denominator = float(value).as_integer_ratio()
    return numerator << (_SHIFT - (denominator.bit_length() - 1))


class ScalerCombineFn(beam.CombineFn):
    """Combine float feature vectors of length ``n_features`` into scaler statistics."""

    def __init__(self, n_features: int):
        self.n_features = n_features

    def create_accumulator(self):
        """Per feature: count, sum of values, sum of squares (the latter two in exact units)."""
        return [0] * self.n_features, [0] * self.n_features, [0] * self.n_features

    def add_input(self, accumulator, features):
        count, total, squares = accumulator
        x = np.asarray(features, dtype=np.float64)
        for index in np.flatnonzero(np.isfinite(x)):
            units = exact_units(x[index])
            count[index] += 1
            total[index] += units
            squares[index] += units * units
        return count, total, squares

    def merge_accumulators(self, accumulators):
        count, total, squares = self.create_accumulator()
        for c_b, t_b, s_b in accumulators:
            for index in range(self.n_features):
                count[index] += c_b[index]
                total[index] += t_b[index]
                squares[index] += s_b[index]
        return count, total, squares

    def extract_output(self, accumulator):
        return scaler_from_sums(*accumulator)


def scaler_from_sums(count, total, squares) -> dict:
    """Scaler JSON fields from per-feature counts and exact sums (see :func:`exact_units`)."""
    means, variances = [], []
    for n, s1, s2 in zip(count, total, squares):
        if n == 0:
            means.append(0.0)
            variances.append(0.0)
            continue
        means.append(_float(Fraction(s1, n << _SHIFT)))
        # sum((x - mean)^2) / n = (n * S2 - S1^2) / n^2, exact before the one rounding
        variances.append(_float(Fraction(n * s2 - s1 * s1, (n * n) << (2 * _SHIFT))))
    scale = [math.sqrt(v) if v > 0 else 1.0 for v in variances]
    return {
        "mean": means,
        "scale": scale,
        "var": variances,
        "n_samples": [int(n) for n in count],
        "fitted_on": "train",
    }


def _float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
