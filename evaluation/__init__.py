"""Judging trained models and applying them to new nights of frames.

Commands: ``skyshard evaluate`` (:mod:`evaluation.evaluate`, CLI in
:mod:`cli.evaluate`) and ``skyshard score`` (:mod:`evaluation.score`, its Beam job in
:mod:`evaluation.beam_score`, CLI in :mod:`cli.score`); :mod:`~evaluation.predictions` is the
scored frame and ``predictions.csv`` both share.

Building blocks, one job each: :mod:`~evaluation.batches` (records from shards or raw files into
fixed-size batches), :mod:`~evaluation.model` (run.json, the ``.keras`` model, calibrated
predictions and out-of-distribution scores), :mod:`~evaluation.decision` (the answer per frame:
model, trusted header, rules, flags),
:mod:`~evaluation.metrics`, :mod:`~evaluation.calibration`, :mod:`~evaluation.baseline` (the
header-only baseline), :mod:`~evaluation.rules` (post-processing rules),
:mod:`~evaluation.mistakes` (the worst mistakes, bounded), :mod:`~evaluation.plots`,
:mod:`~evaluation.report` (``report.html``) and :mod:`~evaluation.sort_into`.

Importing this package loads nothing heavy; TensorFlow and Beam are imported when a command runs.
"""
