"""One scored frame, and ``predictions.csv``: the table a scoring writes, one row per frame.

Shared by scoring in this process (:mod:`evaluation.score`) and as a Beam job
(:mod:`evaluation.beam_score`); both decide through :class:`evaluation.decision.Policy`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.decision import Policy
from skyshard.files import atomic_output

PREDICTIONS_FILE = "predictions.csv"


@dataclass
class Prediction:
    """One scored frame: ``probs`` float32 [C], calibrated; ``model_class`` the argmax,
    ``final_class`` after a trusted header and the rules; ``rule`` names what changed it
    (``""`` when nothing did); the flags and scores of :class:`evaluation.decision.Decisions`."""

    path: str
    key: str
    probs: np.ndarray
    model_class: int
    final_class: int
    rule: str = ""
    ood_score: float = math.nan
    low_confidence: bool = False
    unfamiliar: bool = False
    header_class: int = -1
    header_overruled: bool = False

    @property
    def confidence(self) -> float:
        """The calibrated probability of the answer."""
        return float(self.probs[self.final_class])

    @property
    def flagged(self) -> bool:
        """Needs a person's look: ``low_confidence`` or ``unfamiliar``."""
        return bool(self.low_confidence or self.unfamiliar)

    def to_row(self) -> dict:
        """The JSON-ready fields (how the Beam job hands a prediction to the driver)."""
        return {"path": self.path, "key": self.key, "probs": [float(v) for v in self.probs],
                "model_class": int(self.model_class), "final_class": int(self.final_class),
                "rule": self.rule,
                "ood_score": None if not math.isfinite(self.ood_score) else self.ood_score,
                "low_confidence": bool(self.low_confidence), "unfamiliar": bool(self.unfamiliar),
                "header_class": int(self.header_class),
                "header_overruled": bool(self.header_overruled)}

    @classmethod
    def from_row(cls, row: dict) -> "Prediction":
        """The prediction :meth:`to_row` wrote."""
        score = row.get("ood_score")
        return cls(row["path"], row["key"], np.asarray(row["probs"], np.float32),
                   int(row["model_class"]), int(row["final_class"]), row["rule"],
                   math.nan if score is None else float(score), bool(row["low_confidence"]),
                   bool(row["unfamiliar"]), int(row["header_class"]),
                   bool(row["header_overruled"]))


def predictions_of(paths, keys, probs, ood_score, features, confidences, policy: Policy):
    """:class:`Prediction` per row of one batch (shared by the local and the Beam path)."""
    d = policy.decide(probs, ood_score, features, confidences)
    for i in range(len(keys)):
        yield Prediction(paths[i] or keys[i], keys[i], probs[i], int(d.model_class[i]),
                         int(d.final_class[i]), d.rule[i], float(d.ood_score[i]),
                         bool(d.low_confidence[i]), bool(d.unfamiliar[i]),
                         int(d.header_class[i]), bool(d.header_overruled[i]))


def prediction_header(classes: list[str]) -> list[str]:
    return ["path", "key", "predicted_class", "confidence", *(f"p_{c}" for c in classes),
            "model_class", "rule_applied", "low_confidence", "unfamiliar", "ood_score",
            "header_class", "header_overruled"]


def write_predictions(path: Path, predictions: list[Prediction], classes: list[str]) -> None:
    """``predictions.csv``, sorted by path; ``confidence`` is the calibrated probability of the
    final class, ``rule_applied`` what replaced ``model_class`` (rules, or ``trusted_header``),
    ``low_confidence`` and ``unfamiliar`` the flags (0/1), ``ood_score`` the
    out-of-distribution score (empty without statistics), ``header_class`` the class a trusted
    header states (empty when none does) and ``header_overruled`` 1 where the model's clear
    answer overruled it."""
    with atomic_output(path) as partial, \
            open(partial, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(prediction_header(classes))
        for p in sorted(predictions, key=lambda p: (p.path, p.key)):
            writer.writerow([p.path, p.key, classes[p.final_class], f"{p.confidence:.6f}",
                             *(f"{float(v):.6f}" for v in p.probs), classes[p.model_class],
                             p.rule, int(p.low_confidence), int(p.unfamiliar),
                             f"{p.ood_score:.4f}" if math.isfinite(p.ood_score) else "",
                             classes[p.header_class] if p.header_class >= 0 else "",
                             int(p.header_overruled)])
