"""Evaluation building blocks without a model: metrics, calibration, header baseline, rules,
the bounded worst-mistakes heap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support)

from evaluation.baseline import HeaderBaseline, default_mapping, parse_mapping
from evaluation.calibration import bin_index, reliability
from evaluation.metrics import agreement, classification_metrics
from evaluation.mistakes import WorstMistakes
from evaluation.rules import (DEFAULT_RULES, Rule, RulesError, RuleSet, load_rules,
                              rules_to_toml)
from skyshard.schema import CONFIDENCE_NAMES, DEFAULT_CLASSES

CLASSES = list(DEFAULT_CLASSES)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, len(CLASSES), 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(-1, len(CLASSES), 200))
    y_pred[:3] = -1  # abstentions are wrong answers
    labels = list(range(len(CLASSES)))
    got = classification_metrics(y_true, y_pred, CLASSES)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    assert got["n"] == 200
    assert got["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert got["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    assert got["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert got["coverage"] == pytest.approx(np.mean(y_pred != -1))
    for i, name in enumerate(CLASSES):
        assert got["per_class"][name] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i],
             "support": support[i]})


def test_metrics_of_a_class_never_predicted_are_zero_not_nan():
    got = classification_metrics([0, 0, 1], [0, 0, 0], ["a", "b", "c"])
    assert got["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert got["per_class"]["c"]["support"] == 0


def test_agreement_counts():
    assert agreement([0, 1, 2, 3], [0, 1, 0, 0], [0, 0, 2, 0]) == {
        "only_first": 1, "only_second": 1, "both": 1, "neither": 1}


def test_ece_by_hand():
    # Two frames at 0.9 (one right), two at 0.6 (both right): bins differ.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y_true = np.array([0, 1, 0, 1])
    got = reliability(probs, y_true, n_bins=10)
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert got["ece"] == pytest.approx(expected)
    assert got["max_calibration_error"] == pytest.approx(0.4)
    assert sum(b["count"] for b in got["bins"]) == 4
    assert got["bins"][8]["count"] == 2 and got["bins"][5]["count"] == 2


def test_bin_edges_are_right_closed():
    assert bin_index(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 1.0])).tolist() == [0, 0, 1, 14]


def test_perfectly_calibrated_ece_is_zero():
    probs = np.array([[1.0, 0.0]] * 5)
    assert reliability(probs, np.zeros(5, dtype=int))["ece"] == 0.0


# ------------------------------------------------------------------------- header baseline

def _header_features(names, rows):
    matrix = np.full((len(rows), len(names)), np.nan, dtype=np.float32)
    for r, row in enumerate(rows):
        for name, value in row.items():
            matrix[r, names.index(name)] = value
    return matrix


def test_header_baseline_maps_types_and_abstains():
    from exporter.features.headers import FRAME_TYPES, HEADER_FEATURE_NAMES, OBJECT_HINTS

    names = list(HEADER_FEATURE_NAMES) + ["median_rel"]
    onehot = {t: {f"frame_type_{k}": float(k == t) for k in FRAME_TYPES} for t in FRAME_TYPES}
    no_hints = {f"object_hint_{h}": 0.0 for h in OBJECT_HINTS}
    rows = [
        {**onehot["bias"], **no_hints},
        {**onehot["dark"], **no_hints},
        {**onehot["flat"], **no_hints},
        {**onehot["arc"], **no_hints},
        {**onehot["light"], **no_hints},
        {**onehot["light"], **no_hints, "object_hint_moon": 1.0},
        {**onehot["unknown"], **no_hints},
        {},  # no header at all (a TIFF)
    ]
    baseline = HeaderBaseline(CLASSES, names)
    got = [CLASSES[i] if i >= 0 else None for i in baseline.predict(_header_features(names, rows))]
    assert got == ["bias", "darks", "flats", "spectrum", "deep_sky", "planetary", None,
                   None]
    assert baseline.available


def test_header_baseline_mapping_is_configurable():
    classes = ["zero", "dark_frames", "flatfield", "galaxies", "sun_and_moon", "spectra"]
    assert default_mapping(classes) == {"bias": "zero", "dark": "dark_frames",
                                        "flat": "flatfield", "arc": "spectra",
                                        "planetary": "sun_and_moon"}
    names = ["frame_type_light", "frame_type_dark"]
    baseline = HeaderBaseline(classes, names, parse_mapping("light=galaxies"))
    assert baseline.predict(np.array([[1.0, 0.0], [0.0, 1.0]])).tolist() == [3, 1]
    with pytest.raises(ValueError, match="unknown class"):
        HeaderBaseline(classes, names, {"light": "nebulae"})


def test_header_baseline_without_type_features_abstains_everywhere():
    baseline = HeaderBaseline(CLASSES, ["header_f0", "pixel_f1"])
    assert not baseline.available
    assert baseline.predict(np.zeros((3, 2))).tolist() == [-1, -1, -1]


# ---------------------------------------------------------------------------------- rules

FEATURES = ["median_rel", "saturated_fraction", "range_known", "exposure_s"]


def _rule_set(*dicts, strict=True):
    return RuleSet([Rule.from_dict(d) for d in dicts], CLASSES, FEATURES, CONFIDENCE_NAMES,
                   strict=strict)


def test_rule_rejects_and_takes_the_next_class():
    rules = _rule_set({"name": "dark_bright", "class": "darks", "feature": "median_rel",
                       "max": 0.5})
    probs = np.array([[0.1, 0.6, 0.05, 0.2, 0.03, 0.02],    # darks, bright -> deep_sky
                      [0.1, 0.6, 0.05, 0.2, 0.03, 0.02],    # darks, dim -> stays
                      [0.1, 0.6, 0.05, 0.2, 0.03, 0.02],    # darks, unknown level -> stays
                      [0.6, 0.1, 0.05, 0.2, 0.03, 0.02]])   # bias: rule is about darks
    features = np.array([[0.8, 0, 1, 0], [0.01, 0, 1, 0], [np.nan, 0, 1, 0], [0.9, 0, 1, 0]],
                        dtype=np.float32)
    final, applied = rules.apply(probs, features, np.ones((4, 4), np.float32))
    assert [CLASSES[i] for i in final] == ["deep_sky", "darks", "darks", "bias"]
    assert applied == ["dark_bright", "", "", ""]


def test_rule_requirements_and_chains():
    rules = _rule_set(
        {"name": "dark_bright", "class": "darks", "feature": "median_rel", "max": 0.5,
         "require": {"range_known": 1.0}},
        {"name": "bias_long", "class": "bias", "feature": "exposure_s", "max": 1.0,
         "require": {"confidence": {"exposure": 1.0}}},
    )
    probs = np.array([[0.3, 0.5, 0.05, 0.1, 0.03, 0.02]] * 3)
    features = np.array([[0.8, 0, 1, 30], [0.8, 0, 0, 30], [0.8, 0, 1, 30]], dtype=np.float32)
    confidences = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0.5, 1, 1]], dtype=np.float32)
    final, applied = rules.apply(probs, features, confidences)
    # 1: darks rejected, bias rejected (30 s, trusted) -> deep_sky; 2: range unknown -> darks;
    # 3: darks rejected, exposure header not trusted -> bias.
    assert [CLASSES[i] for i in final] == ["deep_sky", "darks", "bias"]
    assert applied == ["dark_bright+bias_long", "", "dark_bright"]


def test_default_rules_send_a_long_exposed_planetary_guess_to_the_next_class():
    rules = RuleSet(load_rules(None)[0], CLASSES, FEATURES, CONFIDENCE_NAMES, strict=True)
    planetary = CLASSES.index("planetary")
    probs = np.full((3, len(CLASSES)), 0.05)
    probs[:, planetary], probs[:, CLASSES.index("deep_sky")] = 0.6, 0.2
    # median_rel, saturated_fraction, range_known, exposure_s
    features = np.array([[0.1, 0, 1, 900], [0.1, 0, 1, 0.02], [0.1, 0, 1, 900]], np.float32)
    confidences = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0.5, 1, 1]], np.float32)
    final, applied = rules.apply(probs, features, confidences)
    # 900 s from a well-formed header: not the Sun, Moon or a planet; 20 ms is; an exposure
    # read from the file name (confidence 0.5) is not trusted enough to overrule the model
    assert [CLASSES[i] for i in final] == ["deep_sky", "planetary", "planetary"]
    assert applied == ["solar_system_long_exposure", "", ""]


def test_default_rules_take_a_long_exposure_past_planetary_and_flats():
    rules = RuleSet(load_rules(None)[0], CLASSES, FEATURES, CONFIDENCE_NAMES, strict=True)
    probs = np.full((3, len(CLASSES)), 0.02)
    probs[:, CLASSES.index("planetary")] = 0.5
    probs[:, CLASSES.index("flats")] = 0.3
    probs[:, CLASSES.index("deep_sky")] = 0.1
    # median_rel, saturated_fraction, range_known, exposure_s
    features = np.array([[0.4, 0.01, 1, 900], [0.4, 0.01, 1, 400], [0.4, 0.01, 1, 30]],
                        np.float32)
    final, applied = rules.apply(probs, features, np.ones((3, 4), np.float32))
    # 900 s: neither the Solar System nor a flat; 400 s: a (narrowband) flat may take that long
    assert [CLASSES[i] for i in final] == ["deep_sky", "flats", "planetary"]
    assert applied == ["solar_system_long_exposure+flat_long_exposure",
                       "solar_system_long_exposure", ""]


def test_when_every_class_is_rejected_the_model_answer_stands():
    rules = RuleSet([Rule.from_dict({"name": f"r{c}", "class": c, "feature": "median_rel",
                                     "max": 0.1}) for c in CLASSES],
                    CLASSES, FEATURES, CONFIDENCE_NAMES)
    probs = np.array([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1]])
    final, applied = rules.apply(probs, np.array([[0.9, 0, 1, 0]], np.float32),
                                 np.ones((1, 4), np.float32))
    assert final.tolist() == [1] and applied == [""]


def test_rules_toml_round_trip(tmp_path):
    rules, is_default = load_rules(None)
    assert is_default and len(rules) == len(DEFAULT_RULES)
    path = tmp_path / "rules.toml"
    path.write_text(rules_to_toml(rules))
    again, is_default = load_rules(path)
    assert again == rules and not is_default


def test_rules_file_errors(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nname = "x"\nclass = "darks"\nfeature = "median_rel"\n'
                    'max = 0.5\nmaximum = 3\n')
    with pytest.raises(RulesError, match="unknown key.*maximum"):
        load_rules(path)
    path.write_text('[[rule]]\nname = "x"\nclass = "darks"\nfeature = "median_rel"\n'
                    'min = 2.0\nmax = 0.5\n')
    with pytest.raises(RulesError, match="min 2.0 is above max"):
        load_rules(path)
    rule = Rule.from_dict({"name": "x", "class": "darks", "feature": "no_such", "max": 1})
    with pytest.raises(RulesError, match="no_such"):
        RuleSet([rule], CLASSES, FEATURES, CONFIDENCE_NAMES, strict=True)
    assert RuleSet([rule], CLASSES, FEATURES, CONFIDENCE_NAMES, strict=False).rules == []


def test_default_rules_check_features_the_exporter_computes():
    from exporter.measure import feature_layout

    layout = feature_layout()
    rules = RuleSet(load_rules(None)[0], CLASSES, layout["feature_names"], CONFIDENCE_NAMES,
                    strict=True)
    assert len(rules.rules) == len(DEFAULT_RULES)


# ---------------------------------------------------------------------------------- heap

def test_worst_mistakes_keeps_the_n_most_confident_and_copies_images():
    worst = WorstMistakes(3)
    batch = np.arange(10 * 4, dtype=np.float16).reshape(10, 2, 2, 1)
    for i, confidence in enumerate([0.2, 0.9, 0.5, 0.95, 0.1, 0.7, 0.3, 0.6, 0.99, 0.4]):
        if worst.would_keep(confidence):
            worst.offer(confidence, {"key": str(i), "confidence": confidence}, batch[i])
        assert len(worst) <= 3
    kept = worst.worst_first()
    assert [m["confidence"] for m in kept] == [0.99, 0.95, 0.9]
    assert all(m["image"].base is None for m in kept)  # a copy, never a view of the batch
    assert math.isclose(float(kept[0]["image"][0, 0, 0]), float(batch[8, 0, 0, 0]))
