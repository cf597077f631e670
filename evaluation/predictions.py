"""One scored frame, and ``predictions.csv``: the table a scoring writes, one row per frame.

Shared by scoring in this process (:mod:`evaluation.score`) and as a Beam job
(:mod:`evaluation.beam_score`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.rules import RuleSet
from skyshard.files import atomic_output
from skyshard.names import shown_name

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class Prediction:
    """One scored frame: ``probs`` float32 [C]; ``model_class`` the argmax, ``final_class``
    after the rules; ``rule`` names the rule(s) that changed it (``""`` when none)."""

    path: str
    key: str
    probs: np.ndarray
    model_class: int
    final_class: int
    rule: str = ""


def predictions_of(paths, keys, probs, features, confidences, rules: RuleSet):
    """:class:`Prediction` per row of one batch (shared by the local and the Beam path)."""
    final, applied = rules.apply(probs, features, confidences)
    model_class = probs.argmax(axis=1)
    for i in range(len(keys)):
        yield Prediction(paths[i] or keys[i], keys[i], probs[i], int(model_class[i]),
                         int(final[i]), applied[i])


def prediction_header(classes: list[str]) -> list[str]:
    return ["path", "key", "predicted_class", "confidence", *(f"p_{c}" for c in classes),
            "model_class", "rule_applied", "low_confidence"]


def write_predictions(path: Path, predictions: list[Prediction], classes: list[str],
                      low_confidence: float) -> None:
    """``predictions.csv``, sorted by path; ``confidence`` is the probability of the final
    class, ``low_confidence`` 1 when it is below the threshold, ``rule_applied`` the rule(s)
    that replaced ``model_class``. A path or key that is not UTF-8 is shown with ``\\xNN``
    escapes (:func:`skyshard.names.shown_name`)."""
    with atomic_output(path) as partial, \
            open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(prediction_header(classes))
        for p in sorted(predictions, key=lambda p: (p.path, p.key)):
            confidence = float(p.probs[p.final_class])
            writer.writerow([shown_name(p.path), shown_name(p.key), classes[p.final_class],
                             f"{confidence:.6f}",
                             *(f"{float(v):.6f}" for v in p.probs), classes[p.model_class],
                             p.rule, int(confidence < low_confidence)])

