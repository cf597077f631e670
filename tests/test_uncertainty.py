"""Saying when the model is lost, without a model: temperature scaling, ECE, the Mahalanobis
out-of-distribution score and its saved statistics, the thresholds chosen on validation, and the
trust a truthful header gets (the decision evaluate and score share)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.decision import TRUSTED_HEADER, build_policy
from evaluation.rules import build_rule_set
from skyshard.frame_types import TrustedHeaders
from skyshard.run_record import Calibration, OutOfDistribution, RunRecord, RunRecordError
from trainer.uncertainty import (ClassMoments, Mahalanobis, StatisticsError, calibrate,
                                 combined_score, expected_calibration_error, fit_temperature,
                                 header_veto_threshold, load_statistics, low_confidence_threshold,
                                 negative_log_likelihood, oas_shrinkage, reliability,
                                 save_statistics)

CLASSES = ["bias", "darks", "flats", "deep_sky", "planetary", "spectrum"]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- temperature scaling and ECE ---------------------------------------------------------------

@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_fit_recovers_a_known_temperature(true_t):
    """Labels drawn from softmax(z / T): the model's softmax(z) is miscalibrated by exactly T,
    and the fit finds it back; calibrating lowers the NLL and the ECE."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, size=(20000, 6))
    truth = _softmax(logits / true_t)
    labels = np.array([rng.choice(6, p=p) for p in truth])
    probs = _softmax(logits).astype(np.float32)
    fitted = fit_temperature(probs, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    calibrated = calibrate(probs, fitted)
    assert np.allclose(calibrated, truth, atol=0.02)
    assert calibrated.argmax(axis=1).tolist() == probs.argmax(axis=1).tolist()
    assert negative_log_likelihood(probs, labels, fitted) < negative_log_likelihood(probs, labels)
    assert expected_calibration_error(calibrated, labels) < 0.02
    assert expected_calibration_error(probs, labels) > 0.05


def test_temperature_search_is_bounded_and_t1_changes_nothing():
    probs = np.array([[0.7, 0.3], [0.4, 0.6]], dtype=np.float32)
    assert np.allclose(calibrate(probs, 1.0), probs, atol=1e-6)
    # Always right and never sure: the NLL falls without end as T shrinks; the bound holds it.
    sure = np.tile([[0.6, 0.4]], (50, 1)).astype(np.float32)
    assert fit_temperature(sure, np.zeros(50, dtype=int), bounds=(0.05, 20.0)) == \
        pytest.approx(0.05, rel=1e-3)
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 1.0
    # A probability rounded to 0 by float32 softmax stays finite.
    assert np.isfinite(calibrate(np.array([[1.0, 0.0]], dtype=np.float32), 2.0)).all()


def test_ece_is_the_reliability_bins_weighted_gap():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    assert reliability(probs, labels, 10)["ece"] == pytest.approx(expected)


# -- thresholds chosen on validation -----------------------------------------------------------

def test_low_confidence_threshold_flags_the_chosen_share_of_right_answers():
    confidence = np.linspace(0.5, 1.0, 101)
    correct = np.ones(101, dtype=bool)
    correct[:10] = False  # the least sure are wrong: they do not move the threshold
    threshold = low_confidence_threshold(confidence, correct, 0.05)
    right = confidence[correct]
    assert np.mean(right < threshold) <= 0.05 < np.mean(right <= threshold) + 0.05
    assert low_confidence_threshold(confidence, np.zeros(101, bool), 0.05) is None


def test_header_veto_never_overrules_a_truthful_validation_header():
    p = np.array([0.9, 0.8, 0.03, 0.5, 0.004])
    truthful = np.array([True, True, True, True, False])
    veto, measured = header_veto_threshold(p, truthful, maximum=0.05)
    assert veto == 0.02  # the largest grid value below the least sure truthful header (0.03)
    assert measured["overruled"] == 0 and measured["caught"] == 1
    assert measured["lowest_truthful_p"] == pytest.approx(0.03)
    # Nothing measured, or a truthful header the model all but rules out: the smallest veto.
    assert header_veto_threshold(np.zeros(0), np.zeros(0, bool), 0.05)[0] == 0.001
    assert header_veto_threshold(np.array([1e-4]), np.array([True]), 0.05)[0] == 0.001
    assert header_veto_threshold(np.array([0.9]), np.array([True]), 0.01)[0] == 0.01


# -- Mahalanobis distance ----------------------------------------------------------------------

def _clusters(rng, n_per_class=400, dims=8, spread=1.0):
    centres = rng.normal(0.0, 6.0, size=(3, dims))
    labels = np.repeat(np.arange(3), n_per_class)
    x = centres[labels] + rng.normal(0.0, spread, size=(len(labels), dims))
    return x, labels, centres


def test_streamed_moments_equal_the_whole_data_and_oas_equals_sklearn():
    from sklearn.covariance import OAS

    rng = np.random.default_rng(1)
    x, labels, _ = _clusters(rng)
    order = rng.permutation(len(x))
    moments = ClassMoments(3, x.shape[1])
    for chunk in np.array_split(order, 17):  # any batch order, any batch sizes
        moments.update(x[chunk], labels[chunk])
    for c in range(3):
        assert moments.count[c] == 400
        assert np.allclose(moments.mean[c], x[labels == c].mean(axis=0))
        centred = x[labels == c] - x[labels == c].mean(axis=0)
        assert np.allclose(moments.scatter[c], centred.T @ centred)
    one = x[labels == 0]
    empirical = np.cov(one, rowvar=False, bias=True)
    assert oas_shrinkage(empirical, len(one)) == pytest.approx(OAS().fit(one).shrinkage_,
                                                               rel=1e-9)


def test_mahalanobis_flags_far_points_and_keeps_near_ones():
    rng = np.random.default_rng(2)
    x, labels, centres = _clusters(rng)
    moments = ClassMoments(3, x.shape[1])
    moments.update(x, labels)
    stats = moments.fit()
    held_out = centres[np.repeat(np.arange(3), 200)] + rng.normal(0, 1.0, (600, x.shape[1]))
    threshold = float(np.quantile(stats.distances(held_out), 0.99))
    stats = Mahalanobis(means=stats.means, precision=stats.precision, classes=stats.classes,
                        threshold=threshold)
    near = centres[0] + rng.normal(0, 1.0, (200, x.shape[1]))
    far = centres[0] + rng.normal(0, 1.0, (200, x.shape[1])) + 12.0  # off every cluster
    assert np.mean(stats.score(near) > 1) < 0.05
    assert np.all(stats.score(far) > 1)
    # An ensemble's score is the mean of its members'.
    twice = combined_score([stats, stats], [far, near])
    assert np.allclose(twice, (stats.score(far) + stats.score(near)) / 2)


def test_a_dead_embedding_unit_does_not_break_the_covariance():
    rng = np.random.default_rng(3)
    x, labels, _ = _clusters(rng, dims=4)
    x[:, 2] = 0.0  # a ReLU unit that never fires: zero variance
    moments = ClassMoments(3, 4)
    moments.update(x, labels)
    stats = moments.fit()
    assert np.isfinite(stats.precision).all() and 0 < stats.shrinkage <= 1
    assert np.isfinite(stats.distances(x[:5])).all()


def test_statistics_round_trip_without_pickle_and_refuse_a_changed_file(tmp_path):
    rng = np.random.default_rng(4)
    x, labels, _ = _clusters(rng, dims=5)
    moments = ClassMoments(3, 5)
    moments.update(x, labels)
    fitted = moments.fit()
    stats = [Mahalanobis(means=fitted.means, precision=fitted.precision,
                         classes=fitted.classes, threshold=2.5)] * 2
    path = tmp_path / "ood.npz"
    sha = save_statistics(path, stats)
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert sorted(data.files) == ["classes_0", "classes_1", "means_0", "means_1",
                                      "precision_0", "precision_1", "thresholds"]
    loaded = load_statistics(path, sha)
    assert [m.threshold for m in loaded] == [2.5, 2.5]
    assert np.allclose(loaded[1].distances(x[:3]), fitted.distances(x[:3]))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(StatisticsError, match="not the file run.json names"):
        load_statistics(path, sha)
    with pytest.raises(StatisticsError, match="not found"):
        load_statistics(tmp_path / "missing.npz")


def test_run_record_keeps_calibration_and_ood_blocks():
    payload = {"status": "completed",
               "export": {"classes": ["a", "b"], "image_size": 32, "feature_names": ["f"],
                          "confidence_names": ["c"]},
               "calibration": {"temperature": 1.7, "fitted_on": "val", "ece_before": 0.1,
                               "ece_after": 0.02, "low_confidence": 0.8, "header_veto": 0.05,
                               "future_field": 3},
               "ood": {"method": "mahalanobis", "layer": "fuse", "file": "ood.npz",
                       "sha256": "ab", "quantile": 0.99, "models": [{"threshold": 4.2}]}}
    record = RunRecord.from_json(payload)
    assert isinstance(record.calibration, Calibration) and record.calibration.temperature == 1.7
    assert isinstance(record.ood, OutOfDistribution) and record.ood.models[0]["threshold"] == 4.2
    again = RunRecord.from_json(record.to_json())
    assert again.calibration == record.calibration and again.ood == record.ood
    assert record.to_json()["calibration"]["future_field"] == 3
    for bad, match in ((dict(payload, calibration={"temperature": 0}), "must be positive"),
                       (dict(payload, ood={**payload["ood"], "file": "../x.npz"}),
                        "a file name in the run folder")):
        with pytest.raises(RunRecordError, match=match):
            RunRecord.from_json(bad)
    assert RunRecord.from_json({k: v for k, v in payload.items()
                                if k not in ("calibration", "ood")}).calibration is None


# -- trusting a truthful header ----------------------------------------------------------------

def _frames(rows, feature_names, confidence_names):
    """Raw feature and confidence matrices from each row's (header cards, pixel features)."""
    from exporter.features.headers import header_features

    features = np.full((len(rows), len(feature_names)), np.nan, dtype=np.float32)
    confidences = np.zeros((len(rows), len(confidence_names)), dtype=np.float32)
    for r, (cards, pixels) in enumerate(rows):
        values, conf = header_features(cards)
        for name, value in {**values, **pixels}.items():
            if name in feature_names:
                features[r, feature_names.index(name)] = value
        confidences[r] = conf
    return features, confidences


@pytest.fixture(scope="module")
def names():
    from exporter.features.headers import HEADER_FEATURE_NAMES
    from skyshard.schema import CONFIDENCE_NAMES

    return list(HEADER_FEATURE_NAMES) + ["median_rel", "range_known"], list(CONFIDENCE_NAMES)


BRIGHT = {"median_rel": 0.55, "range_known": 1.0}  # float32 pixels around 35,800 of 65,535


def test_only_a_well_formed_self_consistent_calibration_type_is_trusted(names):
    features, confidences = _frames([
        ({"IMAGETYP": "BIAS", "EXPTIME": 0.0}, {}),                 # trusted
        ({"IMAGETYP": "Dark Frame", "EXPTIME": 300.0}, {}),         # trusted
        ({"IMAGETYP": "Flat Field", "EXPTIME": 2.5}, {}),           # trusted
        ({"IMAGETYP": "COMP", "EXPTIME": 30.0}, {}),                # an arc: trusted
        ({"IMAGETYP": "LIGHT", "EXPTIME": 0.001}, {}),              # light: never trusted
        ({"IMAGETYP": "BIAS"}, {}),                                 # no exposure to check it by
        ({"IMAGETYP": "BIAS", "EXPTIME": 120.0}, {}),               # contradicts its exposure
        ({"IMAGETYP": "DARK", "EXPTIME": 0.0}, {}),                 # a zero-length dark
        ({"IMAGETYP": "BIAS", "OBSTYPE": "FLAT", "EXPTIME": 0.0}, {}),  # two cards disagree
        ({}, {}),                                                   # no header (a TIFF)
    ], *names)
    trusted = TrustedHeaders(CLASSES, *names)
    stated = trusted.stated(features, confidences)
    assert [CLASSES[i] if i >= 0 else None for i in stated] == \
        ["bias", "darks", "flats", "spectrum", None, None, None, None, None, None]
    assert trusted.describe()["types"] == {"bias": "bias", "dark": "darks", "flat": "flats",
                                           "arc": "spectrum"}
    assert not TrustedHeaders(CLASSES, ["pixel_f0"], names[1]).available


def _policy(names, **kwargs):
    rules = build_rule_set(None, True, CLASSES, *names)
    settings = {"low_confidence": 0.6, "header_veto": 0.05, **kwargs}
    return build_policy(CLASSES, *names, rules, **settings)


def test_a_trusted_bias_header_survives_the_rule_that_would_reject_it(names):
    """The real biases of the issue: IMAGETYP='BIAS', EXPTIME=0, pixels around 35,800 ADU.
    The model says bias; ``bias_too_bright`` would throw that away. The header keeps it."""
    bias_header = {"IMAGETYP": "BIAS", "EXPTIME": 0.0}
    features, confidences = _frames([(bias_header, BRIGHT), ({}, BRIGHT)], *names)
    probs = np.array([[0.60, 0.02, 0.25, 0.08, 0.03, 0.02]] * 2, dtype=np.float32)  # bias
    no_ood = np.full(2, np.nan)
    decided = _policy(names).decide(probs, no_ood, features, confidences)
    assert CLASSES[decided.final_class[0]] == "bias" and decided.rule[0] == ""
    assert decided.header_kept[0] and not decided.low_confidence[0]
    # The same frame without a header: the rule fires and the answer moves on.
    assert decided.rule[1] == "bias_too_bright" and CLASSES[decided.final_class[1]] == "flats"
    # Without header trust the header is ignored and the rule fires on both.
    off = _policy(names, header_trust=False).decide(probs, no_ood, features, confidences)
    assert off.rule == ["bias_too_bright", "bias_too_bright"]


def test_the_header_yields_only_to_a_clear_answer_on_a_familiar_frame(names):
    features, confidences = _frames([({"IMAGETYP": "BIAS", "EXPTIME": 0.0}, BRIGHT)] * 3,
                                    *names)
    probs = np.array([[0.30, 0.05, 0.50, 0.05, 0.05, 0.05],   # unsure: the header stays
                      [0.01, 0.01, 0.95, 0.01, 0.01, 0.01],   # clear and familiar: it yields
                      [0.01, 0.01, 0.95, 0.01, 0.01, 0.01]],  # clear but unfamiliar: it stays
                     dtype=np.float32)
    decided = _policy(names).decide(probs, np.array([0.5, 0.5, 3.0]), features, confidences)
    assert [CLASSES[c] for c in decided.final_class] == ["bias", "flats", "bias"]
    assert decided.rule == [TRUSTED_HEADER, "", TRUSTED_HEADER]
    assert decided.header_overruled.tolist() == [False, True, False]
    # Flags only where the answer rests on the model.
    assert decided.unfamiliar.tolist() == [False, False, False]
    assert decided.low_confidence.tolist() == [False, False, False]


def test_flags_mark_unsure_and_unfamiliar_model_answers(names):
    features, confidences = _frames([({}, {})] * 4, *names)
    probs = np.array([[0.9, 0.02, 0.02, 0.02, 0.02, 0.02]] * 2
                     + [[0.4, 0.3, 0.1, 0.1, 0.05, 0.05]] * 2, dtype=np.float32)
    decided = _policy(names).decide(probs, np.array([0.5, 1.5, 0.5, math.nan]), features,
                                    confidences)
    assert decided.low_confidence.tolist() == [False, False, True, True]
    assert decided.unfamiliar.tolist() == [False, True, False, False]  # NaN: no statistics
    assert decided.flagged.tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="unknown class"):
        _policy(names, mapping={"bias": "zeros"})


def test_the_flag_check_reads_a_scoring_of_a_labelled_tree(tmp_path, capsys):
    """research.flag_check: wrong and right answers with and without flags, and trusted headers
    against the header alone, from predictions.csv and the folder names."""
    import csv
    import json

    from research.flag_check import main

    header = ["path", "key", "predicted_class", "confidence", "model_class", "rule_applied",
              "low_confidence", "unfamiliar", "ood_score", "header_class", "header_overruled"]
    rows = [  # key, predicted, confidence, low, unfamiliar, ood, header
        ("bias/a.fits", "bias", 0.99, 0, 0, 0.5, "bias"),       # right, trusted header
        ("bias/b.fits", "flats", 0.40, 1, 0, 0.7, ""),          # wrong, flagged
        ("darks/c.fits", "darks", 0.95, 0, 1, 1.4, ""),         # right, flagged
        ("flats/d.fits", "bias", 0.97, 0, 0, 0.6, ""),          # wrong, not flagged
        ("flats/e.fits", "flats", 0.98, 0, 0, 0.4, ""),         # right
    ]
    with open(tmp_path / "predictions.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        for key, predicted, conf, low, far, ood, stated in rows:
            writer.writerow([f"/x/{key}", key, predicted, conf, predicted, "", low, far, ood,
                             stated, 0])
    (tmp_path / "score.json").write_text(json.dumps({"run": "run", "low_confidence_threshold":
                                                     0.9}))
    assert main([str(tmp_path / "predictions.csv"), "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["right"], report["wrong"]) == (3, 2)
    assert report["errors_flagged"] == 0.5 and report["right_flagged"] == pytest.approx(1 / 3)
    assert report["trusted_header"] == {"frames": 1, "final_errors": 0, "header_errors": 0,
                                        "model_errors": 0, "kept": 1}
    assert "50% of the 2 wrong answers flagged" in capsys.readouterr().out


def test_a_train_split_too_small_for_a_covariance_gives_no_statistics_and_one_line():
    from trainer.calibrate import fit_statistics

    rng = np.random.default_rng(3)
    lines: list[str] = []
    tiny = ClassMoments(6, 8)
    tiny.update(rng.normal(size=(4, 8)), np.array([0, 1, 2, 3]))  # 4 frames of 4 classes
    assert fit_statistics(tiny, lines.append) == []
    assert len(lines) == 1 and "4 rows, 4 classes" in lines[0] and "unfamiliar" in lines[0]
    x, labels, _ = _clusters(rng)
    enough = ClassMoments(3, x.shape[1])
    enough.update(x, labels)
    stats = fit_statistics(enough, lines.append)
    assert len(stats) == 1 and isinstance(stats[0], Mahalanobis) and len(lines) == 1
