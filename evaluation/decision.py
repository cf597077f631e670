"""The answer for each frame and how far to believe it: where the model's calibrated
probabilities, a trusted header, the post-processing rules and the flags meet.

``skyshard evaluate``, ``skyshard score`` and ``skyshard score --beam`` all decide through
:meth:`Policy.decide`, so they give the same answers. Per frame, in order:

1. **The model**: the class of highest calibrated probability (``model_class``).
2. **A trusted header** (:class:`skyshard.frame_types.TrustedHeaders`: a bias, dark, flat or
   arc type card that is present, well formed and consistent with the exposure card) keeps its
   class, unless the pixels clearly contradict it: the frame looks familiar (``ood_score`` at
   most 1) and the model gives the stated class less than the run's ``header_veto`` (chosen on
   validation; then ``header_overruled``). A frame the model does not know is no evidence
   against its header.
3. **The rules** (:mod:`evaluation.rules`) check the other frames' answers; they never reject
   the class a trusted header states.
4. **The flags**, for answers that rest on the model (not kept from a trusted header):
   ``low_confidence`` when the calibrated probability of the answer is below the run's
   threshold (chosen on validation, or ``--low-confidence``), ``unfamiliar`` when the
   out-of-distribution score is above 1. A flagged frame needs a person's look
   (``score --sort-into`` files it under ``_review/``).

In: one batch's calibrated probabilities ``[n, C]``, out-of-distribution scores ``[n]`` (NaN
when the run has no statistics), raw features and confidences. Out: :class:`Decisions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.rules import RuleSet
from skyshard.frame_types import TrustedHeaders

#: ``rule_applied`` of a frame whose class a trusted header gave instead of the model's.
TRUSTED_HEADER = "trusted_header"


@dataclass(frozen=True)
class Decisions:
    """The decisions of one batch (arrays of length ``n``).

    Attributes
    ----------
    model_class : ndarray of int
        The model's class (highest calibrated probability).
    final_class : ndarray of int
        The answer after the header and the rules.
    rule : list of str
        What changed the model's class: rule name(s) joined by ``+``, :data:`TRUSTED_HEADER`,
        or ``""``.
    header_class : ndarray of int
        The class a trusted header states; ``-1`` where none does.
    header_kept : ndarray of bool
        The answer is the trusted header's class.
    header_overruled : ndarray of bool
        A trusted header was overruled by a familiar frame's clear model answer.
    low_confidence, unfamiliar : ndarray of bool
        The flags (module docstring); never set where ``header_kept``.
    ood_score : ndarray of float
        The out-of-distribution score (NaN without statistics).
    confidence : ndarray of float
        The calibrated probability of ``final_class``.
    """

    model_class: np.ndarray
    final_class: np.ndarray
    rule: list[str]
    header_class: np.ndarray
    header_kept: np.ndarray
    header_overruled: np.ndarray
    low_confidence: np.ndarray
    unfamiliar: np.ndarray
    ood_score: np.ndarray
    confidence: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """Frames that need a look: ``low_confidence`` or ``unfamiliar``."""
        return self.low_confidence | self.unfamiliar


@dataclass(frozen=True)
class Policy:
    """How one run's answers are decided (module docstring).

    Attributes
    ----------
    rules : RuleSet
        The post-processing rules (may be empty).
    trust : TrustedHeaders or None
        Which headers are trusted; ``None``: header trust is off (``--no-header-trust``).
    low_confidence : float
        Threshold of the ``low_confidence`` flag.
    header_veto : float
        The probability of a trusted header's class below which a familiar frame's model
        answer overrules the header.
    """

    rules: RuleSet
    trust: TrustedHeaders | None
    low_confidence: float
    header_veto: float

    def describe(self) -> dict:
        """The policy as JSON (for metrics.json and score.json)."""
        return {"header_trust": None if self.trust is None else self.trust.describe(),
                "header_veto": self.header_veto, "low_confidence": self.low_confidence,
                "rules": [r.name for r in self.rules.rules]}

    def decide(self, probs: np.ndarray, ood_score: np.ndarray, features: np.ndarray,
               confidences: np.ndarray) -> Decisions:
        """The :class:`Decisions` of one batch (see the module docstring)."""
        probs = np.asarray(probs)
        n = len(probs)
        rows = np.arange(n)
        model_class = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        ood_score = np.asarray(ood_score, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            far = np.isfinite(ood_score) & (ood_score > 1.0)
        stated = (self.trust.stated(features, confidences) if self.trust is not None
                  else np.full(n, -1, dtype=np.int64))
        has_header = stated >= 0
        p_stated = np.where(has_header, probs[rows, np.maximum(stated, 0)], 1.0) if n \
            else np.zeros(0)
        overruled = has_header & ~far & (p_stated < self.header_veto)
        kept = has_header & ~overruled
        ruled, rule = self.rules.apply(probs, features, confidences, protected=stated)
        final = np.where(kept, stated, ruled)
        rule = [(TRUSTED_HEADER if final[i] != model_class[i] else "") if kept[i] else rule[i]
                for i in range(n)]
        confidence = probs[rows, final] if n else np.zeros(0)
        return Decisions(
            model_class=model_class, final_class=final, rule=rule, header_class=stated,
            header_kept=kept, header_overruled=overruled,
            low_confidence=~kept & (confidence < self.low_confidence),
            unfamiliar=~kept & far, ood_score=ood_score, confidence=confidence)


def build_policy(classes, feature_names, confidence_names, rules: RuleSet, low_confidence: float,
                 header_veto: float, mapping=None, header_trust: bool = True) -> Policy:
    """The :class:`Policy` of a run: its rules, thresholds and, unless ``header_trust`` is off,
    trusted headers mapped to its classes (``mapping``: frame type -> class, overriding the
    match by class name; an unknown class is a ``ValueError``)."""
    unknown = sorted(c for c in (mapping or {}).values() if c not in list(classes))
    if unknown:
        raise ValueError(f"header mapping names unknown class(es) {unknown}; the run's classes "
                         f"are {list(classes)}")
    trust = (TrustedHeaders(classes, feature_names, confidence_names, mapping)
             if header_trust else None)
    return Policy(rules, trust, float(low_confidence), float(header_veto))
