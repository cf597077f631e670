"""Calibration: does a confidence of 0.9 mean right nine times in ten?

In: softmax probabilities ``[N, C]`` and true labels. Out: equal-width reliability bins and the
expected calibration error (ECE, Guo et al. 2017): ``sum_b |B_b|/N * |accuracy(B_b) -
confidence(B_b)|`` over bins ``(lo, hi]`` of the top-class probability.

The computation lives with the temperature scaling that ``skyshard train`` fits
(:mod:`trainer.uncertainty`), so training and evaluation report the same ECE; evaluation
measures the calibrated probabilities (:class:`evaluation.model.RunModel`).
"""

from __future__ import annotations

from trainer.uncertainty import DEFAULT_BINS, bin_index, reliability

__all__ = ["DEFAULT_BINS", "bin_index", "reliability"]
