"""What a record's header features say about the frame's type, and when that statement is trusted.

The export parses the frame-type cards (``IMAGETYP``, ``OBSTYPE``, ...) into the one-hot
features ``frame_type_<type>`` (``light``, ``dark``, ``flat``, ``bias``, ``arc``, ``unknown``),
the target name (``OBJECT``) into ``object_hint_<hint>``, and gives the card group a confidence
(``confidences[frame_type]``): 1 when the type card is present in the header, recognised and
consistent with the rest of the header (no second type card disagreeing, no target name naming
another calibration type, an exposure the type can have: a bias of at most 1 s, a dark, flat or
arc of more than 0 s), lower for a type read from the file name (0.5) or one with contradictions
(``exporter/features/headers.py``).

A header *states* a class when its type maps to one of the run's classes
(:func:`default_mapping`: by class name, ``bias`` -> the class named bias/zero, ``dark`` ->
dark..., overridable). The statement is *trusted* when it is a calibration type
(:data:`TRUSTED_TYPES`; ``light`` is not: capture programs save every frame as a light by
default), its confidence is full and the exposure card is present and well formed too
(``confidences[exposure]`` = 1), so the consistency checks above really ran. Evaluation and
scoring keep a trusted header's class unless the pixels clearly contradict it, and the
post-processing rules never reject it; the trainer measures on the validation split what
"clearly" means for its model. Both read the statement here, so they agree on it.

In: the raw feature matrix ``[n, F]`` and confidences ``[n, K]`` of a batch, with the names of
their columns. Out: a class index per frame, ``-1`` where the header states none.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

TYPE_PREFIX = "frame_type_"
HINT_PREFIX = "object_hint_"

#: Header frame type -> words, one of which the class name must contain (first match wins).
TYPE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "bias": ("bias", "zero"),
    "dark": ("dark",),
    "flat": ("flat",),
    "arc": ("spec", "arc"),
    "light": ("deep", "light", "sky"),
}
#: Object hints that make a light frame planetary (Sun, Moon, planets).
PLANETARY_HINTS = ("sun", "solar", "moon", "lunar", "planet", "mercury", "venus", "mars",
                   "jupiter", "saturn", "uranus", "neptune")
PLANETARY_KEYWORDS = ("planet", "lunar", "solar", "moon", "sun")

#: Frame types a well-formed, self-consistent header may be trusted on. ``light`` is left out:
#: it is the default type of capture programs, so calibration frames are often saved as lights.
TRUSTED_TYPES = ("bias", "dark", "flat", "arc")
#: The confidence groups that must be full (present, well formed, no contradiction) for trust.
TRUSTED_CONFIDENCES = ("frame_type", "exposure")
_FULL = 1.0 - 1e-6  # confidences are float32


def _find_class(classes: Sequence[str], words: Sequence[str]) -> str | None:
    for word in words:
        for name in classes:
            if word in name.lower():
                return name
    return None


def default_mapping(classes: Sequence[str]) -> dict[str, str]:
    """Header frame type (and ``planetary`` for the object hints) -> class name, by matching
    class names against :data:`TYPE_KEYWORDS`; types with no matching class are left out."""
    mapping = {}
    for frame_type, words in TYPE_KEYWORDS.items():
        found = _find_class(classes, words)
        if found:
            mapping[frame_type] = found
    planetary = _find_class(classes, PLANETARY_KEYWORDS)
    if planetary:
        mapping["planetary"] = planetary
    return mapping


def type_columns(feature_names: Sequence[str]) -> dict[str, int]:
    """Frame type -> its ``frame_type_<type>`` column in the feature matrix."""
    return {name[len(TYPE_PREFIX):]: i for i, name in enumerate(feature_names)
            if name.startswith(TYPE_PREFIX)}


def header_types(features: np.ndarray, columns: Mapping[str, int]) -> list[str | None]:
    """The frame type each row's one-hot features name (``None`` where none is set)."""
    types = list(columns)
    if not types:
        return [None] * len(features)
    onehot = np.nan_to_num(np.asarray(features)[:, [columns[t] for t in types]], nan=0.0)
    strongest = np.argmax(onehot, axis=1)
    present = onehot.max(axis=1) > 0.5
    return [types[k] if ok else None for k, ok in zip(strongest, present)]


class TrustedHeaders:
    """Reads which frames' headers state a class that can be trusted (module docstring).

    Parameters
    ----------
    classes : sequence of str
        The run's classes, in label order.
    feature_names, confidence_names : sequence of str
        The names of the record's feature and confidence columns.
    mapping : mapping of str to str, optional
        Frame type -> class name, overriding :func:`default_mapping` per type.

    Attributes
    ----------
    available : bool
        False when the records carry no frame-type features or confidences (then no frame's
        header states anything).
    """

    def __init__(self, classes: Sequence[str], feature_names: Sequence[str],
                 confidence_names: Sequence[str], mapping: Mapping[str, str] | None = None):
        self.classes = list(classes)
        self.mapping = {**default_mapping(classes), **dict(mapping or {})}
        self.columns = type_columns(feature_names)
        names = list(confidence_names)
        self.confidence_columns = [names.index(n) for n in TRUSTED_CONFIDENCES if n in names]
        self.stated_classes = {t: self.classes.index(self.mapping[t]) for t in TRUSTED_TYPES
                               if t in self.columns and self.mapping.get(t) in self.classes}
        self.available = (bool(self.stated_classes)
                          and len(self.confidence_columns) == len(TRUSTED_CONFIDENCES))

    def describe(self) -> dict:
        """What is trusted: ``{"types": {type: class}, "confidences": [...], "available"}``."""
        return {"available": self.available,
                "types": {t: self.classes[c] for t, c in self.stated_classes.items()},
                "confidences": list(TRUSTED_CONFIDENCES)}

    def stated(self, features: np.ndarray, confidences: np.ndarray) -> np.ndarray:
        """Class index a trusted header states, per row; ``-1`` where it states none.

        Parameters
        ----------
        features : ndarray
            Raw features ``[n, F]`` (NaN where unknown).
        confidences : ndarray
            Header confidences ``[n, K]``.

        Returns
        -------
        ndarray of int64
            ``[n]``.
        """
        n = len(features)
        out = np.full(n, -1, dtype=np.int64)
        if not self.available or n == 0:
            return out
        full = np.all(np.asarray(confidences)[:, self.confidence_columns] >= _FULL, axis=1)
        for i, frame_type in enumerate(header_types(features, self.columns)):
            if full[i] and frame_type in self.stated_classes:
                out[i] = self.stated_classes[frame_type]
        return out
