"""Splits are stable, deterministic, stratified in expectation and keep duplicates together."""

import hashlib
from collections import Counter

import pytest

from exporter.split import assign_fold, assign_split, validate_fractions


def fake_sha(i: int) -> str:
    return hashlib.sha256(f"frame-{i}".encode()).hexdigest()


def test_same_seed_same_split_other_seed_differs():
    shas = [fake_sha(i) for i in range(500)]
    first = [assign_split(s, 42, 0.15, 0.15) for s in shas]
    assert first == [assign_split(s, 42, 0.15, 0.15) for s in shas]
    assert first != [assign_split(s, 7, 0.15, 0.15) for s in shas]


def test_fractions_hold_within_sampling_error():
    counts = Counter(assign_split(fake_sha(i), 42, 0.15, 0.15) for i in range(4000))
    for split, expected in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        # 4000 draws: the standard error of a 15 % share is ~0.6 %; allow 4 sigma.
        assert abs(counts[split] / 4000 - expected) < 0.025


def test_folds_cover_range_and_are_balanced():
    folds = Counter(assign_fold(fake_sha(i), 42, 5) for i in range(2000))
    assert sorted(folds) == [0, 1, 2, 3, 4]
    assert min(folds.values()) > 300
    assert assign_fold(fake_sha(1), 42, 1) == 0


def test_fraction_validation():
    validate_fractions(0.15, 0.15)
    with pytest.raises(ValueError):
        validate_fractions(0.6, 0.5)
    with pytest.raises(ValueError):
        validate_fractions(-0.1, 0.1)
