"""The header-only baseline: what sorting by ``IMAGETYP``/``OBSTYPE`` alone would get right.

This is how ccdproc-style tools sort frames (``ImageFileCollection`` filtered on ``imagetyp``).
The export already parsed those keywords into one-hot features ``frame_type_<type>`` (bias, dark,
flat, arc, light, unknown) and ``object_hint_<hint>`` (what ``OBJECT`` names, e.g. the Sun, the
Moon, a planet); the baseline maps them to the run's classes and abstains when the header names
no type. Comparing it with the model shows what the model adds over reading headers.

In: the raw feature matrix of a batch and the run's feature names and classes. Out: one class
index per frame, or ``-1`` (abstained).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from evaluation.metrics import ABSTAIN
from skyshard.frame_types import (HINT_PREFIX, PLANETARY_HINTS, TYPE_PREFIX, default_mapping,
                                  header_types, type_columns)

# The type -> class mapping lives with the features' contract (skyshard.frame_types): the
# trainer reads the same statements when it measures how far a header may be trusted.
__all__ = ["HeaderBaseline", "default_mapping", "parse_mapping", "TYPE_PREFIX", "HINT_PREFIX"]


def parse_mapping(text: str) -> dict[str, str]:
    """``"light=galaxies,arc=spectra"`` -> ``{"light": "galaxies", "arc": "spectra"}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"baseline mapping: expected TYPE=CLASS, got {part!r}")
        out[key.strip()] = value.strip()
    return out


class HeaderBaseline:
    """Predicts from the header features alone (see the module docstring).

    ``mapping`` overrides :func:`default_mapping` per key (frame types, and ``planetary``).
    ``available`` is False when the run has no frame-type features (the baseline then abstains
    on every frame).
    """

    def __init__(self, classes: Sequence[str], feature_names: Sequence[str],
                 mapping: Mapping[str, str] | None = None):
        self.classes = list(classes)
        self.mapping = {**default_mapping(classes), **dict(mapping or {})}
        unknown = sorted(c for c in self.mapping.values() if c not in self.classes)
        if unknown:
            raise ValueError(f"baseline mapping names unknown class(es) {unknown}; the run's "
                             f"classes are {self.classes}")
        names = list(feature_names)
        self.type_columns = type_columns(names)
        self.planetary_columns = [i for i, n in enumerate(names) if n.startswith(HINT_PREFIX)
                                  and any(h in n[len(HINT_PREFIX):].lower()
                                          for h in PLANETARY_HINTS)]
        self.available = bool(self.type_columns)

    @property
    def feature_columns(self) -> list[int]:
        return sorted({*self.type_columns.values(), *self.planetary_columns})

    def describe(self) -> dict:
        return {"mapping": dict(self.mapping), "available": self.available,
                "frame_types": sorted(self.type_columns),
                "planetary_hints": len(self.planetary_columns)}

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class index per row of the raw feature matrix ``[n, F]``, ``-1`` when abstaining."""
        n = len(features)
        out = np.full(n, ABSTAIN, dtype=np.int64)
        if not self.available:
            return out
        stated = np.array(header_types(features, self.type_columns), dtype=object)
        for frame_type, target in self.mapping.items():
            if frame_type in self.type_columns:
                out[stated == frame_type] = self.classes.index(target)
        planetary = self.mapping.get("planetary")
        if planetary is not None and self.planetary_columns and "light" in self.type_columns:
            hinted = np.nan_to_num(features[:, self.planetary_columns], nan=0.0).max(axis=1) > 0.5
            out[(stated == "light") & hinted] = self.classes.index(planetary)
        return out
