"""Deterministic, stable train/val/test splits and k-fold ids.

A frame's split is a pure function of the seed and its *content* hash (sha256 of the file's
bytes): no pass over all frames, no barrier in the Beam job, and three promises by construction:

- the same input and seed give the same split on any runner and any number of workers;
- adding frames never moves an existing frame to another split (its hash does not change);
- identical files (same sha256) always share a split, so duplicates never leak across splits.

Within each class the fractions hold in expectation (each frame draws independently), which is
what "stratified" means for a split that must stay stable as the archive grows; the manifest
records the realised counts per split and class.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def unit_hash(seed: int, purpose: str, content_sha256: str) -> float:
    """A uniform number in [0, 1) from a salted hash; ``purpose`` separates independent draws."""
    digest = hashlib.sha256(f"skyshard:{seed}:{purpose}:{content_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_split(content_sha256: str, seed: int, val_fraction: float,
                 test_fraction: float) -> str:
    """``train``, ``val`` or ``test`` for a frame with this content hash."""
    u = unit_hash(seed, "split", content_sha256)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def assign_fold(content_sha256: str, seed: int, folds: int) -> int:
    """Fold id in ``0..folds-1`` for k-fold over train+val (independent of the split draw)."""
    if folds <= 1:
        return 0
    return min(int(unit_hash(seed, "fold", content_sha256) * folds), folds - 1)


def validate_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ``ValueError`` naming the option unless the fractions leave a train split, or
    ``test_fraction`` is 1 (with ``val_fraction`` 0): every frame in test, an evaluation set
    such as a new camera's labelled frames."""
    if test_fraction == 1.0 and val_fraction == 0.0:
        return
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1) (or --test-fraction 1 alone, for an "
                             f"evaluation set), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("--val-fraction + --test-fraction must leave a train split (< 1), or "
                         "--test-fraction 1 alone exports every frame as the test split")
