"""Post-processing rules: physical plausibility checks applied after the model.

A rule says: a frame predicted as ``class`` must have ``feature`` within ``[min, max]`` (raw
feature units, as in the export's records); when it does not, the prediction is rejected and the
next most probable class is taken (``action = "next_class"``), which is checked in turn. A rule
fires only when its ``require`` conditions hold: minimum values of other features (e.g.
``range_known = 1.0``: the full scale came from the stored bit depth, not from an estimate) or of
header confidence groups (``confidence.exposure = 1.0``: the exposure header was present and
well formed). An unknown (NaN) value never fires a rule: missing evidence is no evidence against
the model. A rule never rejects the class a trusted header states (:mod:`skyshard.frame_types`):
a well-formed, self-consistent ``IMAGETYP = 'BIAS'`` with zero exposure outweighs a plausibility
check on the pixels.

Rules are plain data: a TOML file with one ``[[rule]]`` table per rule (see
:data:`DEFAULT_RULES` and ``docs/evaluation.md``).
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger("skyshard.evaluation")

ACTIONS = ("next_class",)
_KEYS = ("name", "class", "feature", "min", "max", "require", "action", "description")

#: The shipped rules: conservative, only physically implausible combinations, in the raw units
#: of the export's features (``exporter/features/pixel_stats.py``, ``exporter/features/headers.py``).
DEFAULT_RULES: tuple[dict, ...] = (
    {"name": "dark_too_bright", "class": "darks", "feature": "median_rel", "max": 0.5,
     "require": {"range_known": 1.0},
     "description": "a dark's median level stays far below half of the sensor's full scale"},
    {"name": "dark_saturated", "class": "darks", "feature": "saturated_fraction", "max": 0.5,
     "require": {"range_known": 1.0},
     "description": "a dark is never mostly saturated"},
    {"name": "bias_too_bright", "class": "bias", "feature": "median_rel", "max": 0.5,
     "require": {"range_known": 1.0},
     "description": "a bias level stays far below half of the sensor's full scale"},
    {"name": "bias_long_exposure", "class": "bias", "feature": "exposure_s", "max": 1.0,
     "require": {"confidence": {"exposure": 1.0}},
     "description": "a bias is a zero-length exposure; a well-formed exposure header above 1 s "
                    "contradicts it"},
    {"name": "solar_system_long_exposure", "class": "planetary", "feature": "exposure_s",
     "max": 300.0, "require": {"confidence": {"exposure": 1.0}},
     "description": "the Sun, the Moon and the planets are captured in exposures of milliseconds "
                    "to seconds; a well-formed exposure header above 5 minutes contradicts it"},
    {"name": "flat_long_exposure", "class": "flats", "feature": "exposure_s", "max": 600.0,
     "require": {"confidence": {"exposure": 1.0}},
     "description": "sky, panel and dome flats take milliseconds to a minute, narrowband and "
                    "spectrograph lamp flats a few minutes; a well-formed exposure header above "
                    "10 minutes contradicts it"},
)


class RulesError(ValueError):
    """A rules file that cannot be used: unreadable, unknown key, class or feature."""


@dataclass(frozen=True)
class Rule:
    """One plausibility check (see the module docstring). ``require_features`` and
    ``require_confidences`` are ``(name, minimum)`` pairs."""

    name: str
    class_name: str
    feature: str
    min: float | None = None
    max: float | None = None
    require_features: tuple[tuple[str, float], ...] = ()
    require_confidences: tuple[tuple[str, float], ...] = ()
    action: str = "next_class"
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "rule") -> "Rule":
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise RulesError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(_KEYS)}")
        for required in ("name", "class", "feature"):
            if not isinstance(data.get(required), str) or not data[required]:
                raise RulesError(f"{where}: {required!r} must be a non-empty string")
        where = f"{where} ({data['name']})"
        lower, upper = _number(data, "min", where), _number(data, "max", where)
        if lower is None and upper is None:
            raise RulesError(f"{where}: give 'min', 'max' or both")
        if lower is not None and upper is not None and lower > upper:
            raise RulesError(f"{where}: min {lower} is above max {upper}")
        action = data.get("action", "next_class")
        if action not in ACTIONS:
            raise RulesError(f"{where}: action {action!r} is not one of {ACTIONS}")
        features, confidences = _requirements(data.get("require", {}), where)
        return cls(name=data["name"], class_name=data["class"], feature=data["feature"],
                   min=lower, max=upper, require_features=features,
                   require_confidences=confidences, action=action,
                   description=str(data.get("description", "")))

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "class": self.class_name, "feature": self.feature}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        require: dict = dict(self.require_features)
        if self.require_confidences:
            require["confidence"] = dict(self.require_confidences)
        if require:
            out["require"] = require
        out["action"] = self.action
        if self.description:
            out["description"] = self.description
        return out


def _number(data: Mapping, key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise RulesError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value)


def _requirements(require, where: str):
    """``{feature: min, "confidence": {group: min}}`` (TOML ``confidence.exposure = 1.0``
    nests) -> sorted ``(name, min)`` pairs for features and for confidences."""
    if not isinstance(require, Mapping):
        raise RulesError(f"{where}: 'require' must be a table of minimum values")
    features, confidences = [], []
    for name, value in require.items():
        if name == "confidence" and isinstance(value, Mapping):
            for group in value:
                confidences.append((group, _number(value, group, f"{where}: require")))
        elif isinstance(value, Mapping):
            raise RulesError(f"{where}: require.{name} must be a number")
        else:
            features.append((name, _number(require, name, f"{where}: require")))
    return tuple(sorted(features)), tuple(sorted(confidences))


def default_rules() -> list[Rule]:
    return [Rule.from_dict(d, f"default rule {i + 1}") for i, d in enumerate(DEFAULT_RULES)]


def load_rules(path: str | Path | None) -> tuple[list[Rule], bool]:
    """Rules from a TOML file, or the defaults when ``path`` is None.

    Returns ``(rules, is_default)``. A file without any ``[[rule]]`` means no rules.
    """
    if path is None:
        return default_rules(), True
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"cannot read rules file {path}: {exc}") from exc
    extra = sorted(set(data) - {"rule"})
    if extra:
        raise RulesError(f"{path}: unknown top-level key(s) {', '.join(extra)}; write each rule "
                         "as a [[rule]] table")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    rules = [Rule.from_dict(t, f"{path}: rule {i + 1}") for i, t in enumerate(tables)]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RulesError(f"{path}: duplicate rule name(s) {', '.join(duplicates)}")
    return rules, False


def rules_to_toml(rules: Iterable[Rule]) -> str:
    """The rules as a TOML file that :func:`load_rules` reads back."""
    lines = ["# skyshard post-processing rules: use with --rules FILE (evaluate, score)", ""]
    for rule in rules:
        lines.append("[[rule]]")
        for key, value in rule.to_dict().items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(float(value))


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else _toml_value(key)


class RuleSet:
    """Rules bound to one run's classes, feature names and confidence names.

    A rule naming a class, feature or confidence the run lacks is an error for a user's file
    (``strict=True``) and is left out, with a log line, for the defaults.
    """

    def __init__(self, rules: Sequence[Rule], classes: Sequence[str],
                 feature_names: Sequence[str], confidence_names: Sequence[str],
                 strict: bool = True):
        self.classes = list(classes)
        features, confidences = list(feature_names), list(confidence_names)
        kept: list[Rule] = []
        unused: list[str] = []
        for rule in rules:
            problem = _unbound(rule, self.classes, features, confidences)
            if problem and strict:
                raise RulesError(f"rule {rule.name!r}: {problem}")
            if problem:
                unused.append(f"{rule.name} ({problem})")
                continue
            kept.append(rule)
        if unused:
            log.info("%d default rule(s) not used: this run lacks the class or feature they "
                     "check (%s)", len(unused), ", ".join(u.split(" ")[0] for u in unused))
            log.debug("unused default rules: %s", "; ".join(unused))
        self.rules = kept
        self.unused = unused
        self._class = [self.classes.index(r.class_name) for r in kept]
        self._feature = [features.index(r.feature) for r in kept]
        self._require_features = [[(features.index(n), m) for n, m in r.require_features]
                                  for r in kept]
        self._require_confidences = [[(confidences.index(n), m)
                                      for n, m in r.require_confidences] for r in kept]

    def violations(self, features: np.ndarray, confidences: np.ndarray) -> np.ndarray:
        """``bool [n, n_rules]``: which rules each frame breaks (were it predicted their class)."""
        n = len(features)
        out = np.zeros((n, len(self.rules)), dtype=bool)
        with np.errstate(invalid="ignore"):
            for j, rule in enumerate(self.rules):
                values = features[:, self._feature[j]].astype(np.float64)
                bad = np.zeros(n, dtype=bool)
                if rule.min is not None:
                    bad |= values < rule.min
                if rule.max is not None:
                    bad |= values > rule.max
                for column, minimum in self._require_features[j]:
                    bad &= features[:, column] >= minimum  # NaN compares False
                for column, minimum in self._require_confidences[j]:
                    bad &= confidences[:, column] >= minimum
                out[:, j] = bad & np.isfinite(values)
        return out

    def apply(self, probs: np.ndarray, features: np.ndarray, confidences: np.ndarray,
              protected: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Final class per frame and the rule(s) that changed it (``""`` when none did).

        Classes are tried in decreasing probability; the first one no rule rejects wins. When
        every class is rejected the model's answer stands: a rule cannot invent a class.
        ``protected`` (class index per frame, ``-1`` for none) is a class no rule rejects for
        that frame: the class a trusted header states (:mod:`evaluation.decision`).
        """
        n = len(probs)
        model_pred = np.argmax(probs, axis=1) if n else np.zeros(0, dtype=np.int64)
        final = model_pred.copy()
        applied = [""] * n
        if not self.rules or n == 0:
            return final, applied
        if protected is None:
            protected = np.full(n, -1, dtype=np.int64)
        broken = self.violations(features, confidences)
        for i in np.flatnonzero(broken.any(axis=1)):
            fired: list[str] = []
            for cls in np.argsort(-probs[i], kind="stable"):
                hits = [self.rules[j].name for j in np.flatnonzero(broken[i])
                        if self._class[j] == cls and cls != protected[i]]
                if not hits:
                    final[i] = cls
                    break
                fired.append(hits[0])
            else:
                final[i], fired = model_pred[i], []
            applied[i] = "+".join(fired) if final[i] != model_pred[i] else ""
        return final, applied


def _unbound(rule: Rule, classes: list[str], features: list[str], confidences: list[str]) -> str:
    if rule.class_name not in classes:
        return f"class {rule.class_name!r} is not one of the run's classes {classes}"
    for name in (rule.feature, *(n for n, _ in rule.require_features)):
        if name not in features:
            return f"feature {name!r} is not among the run's features"
    for name, _ in rule.require_confidences:
        if name not in confidences:
            return f"confidence {name!r} is not one of the run's confidences {confidences}"
    return ""


def build_rule_set(path: str | Path | None, enabled: bool, classes: Sequence[str],
                   feature_names: Sequence[str], confidence_names: Sequence[str]) -> RuleSet:
    """The rules evaluate and score apply: none (``enabled=False``), a user's file (strict), or
    the defaults (those that fit the run)."""
    if not enabled:
        return RuleSet([], classes, feature_names, confidence_names)
    rules, is_default = load_rules(path)
    return RuleSet(rules, classes, feature_names, confidence_names, strict=not is_default)
