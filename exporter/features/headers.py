"""Header features: what a frame's FITS cards say, and how far to trust each group of them.

:func:`header_features` takes a header mapping (keyword -> value, as
:func:`exporter.readers.read_frame` returns it; an :class:`astropy.io.fits.Header` works too) and
returns raw numeric features by name (NaN where the header does not say) plus four confidences,
one per group in :data:`skyshard.schema.CONFIDENCE_NAMES` order: frame type, exposure,
sensor/thermal, optics/target. A confidence is 1 when the group's cards are present and
well-formed, 0 when they are absent, and in between when they are malformed or contradict each
other.

Header values are data only: they are matched against fixed vocabularies and parsed as numbers,
never used as paths nor evaluated. Every feature is a finite float or NaN, whatever the cards
hold (strings, bools, bytes, astropy's ``Undefined``, infinities).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


# ------------------------------------------------------------------------------- vocabulary

#: One-hot frame types, in feature order.
FRAME_TYPES = ("light", "dark", "flat", "bias", "arc", "unknown")

#: Keywords naming the frame type, in priority order (the first recognised one decides).
FRAME_TYPE_KEYWORDS = ("IMAGETYP", "IMAGETYPE", "IMGTYPE", "IMTYPE", "OBSTYPE", "FRAMETYP",
                       "FRAMETYPE", "EXPTYPE", "VIMTYPE", "DATA-TYP", "ESO DPR TYPE", "FLAVOR",
                       "FRAME")

#: Frame-type values, as upper-case words with spaces, underscores and dashes removed.
_FRAME_TYPE_WORDS = {
    # TARGET: the Isaac Newton Group's OBSTYPE; EXT (external): HST's IMAGETYP for the sky.
    **dict.fromkeys(("LIGHT", "LIGHTS", "LIGHTFRAME", "OBJECT", "SCIENCE", "SCI", "EXPOSE",
                     "STANDARD", "STD", "SPECTRUM", "SKY", "TARGET", "EXT", "EXTERNAL"), "light"),
    **dict.fromkeys(("DARK", "DARKS", "DARKFRAME", "DARKFLAT", "FLATDARK"), "dark"),
    **dict.fromkeys(("FLAT", "FLATS", "FLATFIELD", "FLATFRAME", "SKYFLAT", "DOMEFLAT",
                     "LAMPFLAT", "TWILIGHT", "TWIFLAT", "SCREENFLAT"), "flat"),
    **dict.fromkeys(("BIAS", "BIASES", "BIASFRAME", "ZERO", "ZEROS", "OFFSET"), "bias"),
    **dict.fromkeys(("ARC", "ARCS", "ARCLAMP", "COMP", "COMPARISON", "LAMP", "WAVE",
                     "WAVELAMP", "WAVECAL", "THAR"), "arc"),
}

#: When one type value holds words of several types ("FLAT,LAMP", "DARK FLAT"), the first of
#: these wins.
_FRAME_TYPE_PRIORITY = ("bias", "dark", "flat", "arc", "light")

#: Keywords naming the target, searched for calibration and solar-system words.
OBJECT_KEYWORDS = ("OBJECT", "OBJNAME", "TARGNAME")

OBJECT_HINTS = ("bias", "dark", "flat", "arc", "sun", "moon", "planet", "catalogue")
_OBJECT_HINT_WORDS = {
    "bias": {"BIAS", "BIASES", "ZERO", "ZEROS"},
    "dark": {"DARK", "DARKS"},
    "flat": {"FLAT", "FLATS", "SKYFLAT", "DOMEFLAT", "LAMPFLAT", "TWILIGHT", "TWIFLAT"},
    "arc": {"ARC", "ARCS", "ARCLAMP", "LAMP", "LAMPS", "WAVE", "WAVECAL", "COMP", "COMPARISON",
            "NEON", "ARGON", "XENON", "KRYPTON", "HELIUM", "THAR", "THNE", "HEAR", "HENEAR",
            "CUAR", "CUNE", "HGAR", "HGNE"},
    "sun": {"SUN", "SOL", "SOLAR", "SONNE"},
    "moon": {"MOON", "LUNA", "LUNAR", "MOND"},
    "planet": {"MERCURY", "MERKUR", "VENUS", "MARS", "JUPITER", "SATURN", "URANUS", "NEPTUNE",
               "NEPTUN"},
}
#: Word stems that mark a calibration target even inside longer words ("Bias_001", "Flat3").
_OBJECT_HINT_STEMS = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT"}
#: A deep-sky catalogue designation ("M 42", "M57", "NGC4631", "IC_434", "Sh2-129", "Abell 21"),
#: the way capture programs write a sequence's target into OBJECT and the file name. Messier
#: numbers stop at 110 ("M_300" is not one); single-letter catalogues other than Messier
#: (Barnard "B", Caldwell "C") are left out: they collide with filter and telescope names.
_CATALOGUE_DESIGNATION = re.compile(
    r"(?<![A-Z0-9])(?:M[\s_-]?0*(?P<messier>\d{1,3})"
    r"|(?:NGC|IC|UGC|PGC|HCG|ARP|ABELL|LDN|LBN|VDB|SH[\s_-]?2|BARNARD|COLLINDER|MELOTTE"
    r"|TRUMPLER|CED|RCW|GUM)[\s_-]*\d{1,6})(?![0-9A-Z])")

EXPOSURE_KEYWORDS = ("EXPTIME", "EXPOSURE", "EXP_TIME", "EXPOSURE_TIME", "ITIME")
#: Elapsed time is at least the exposure: used only when no exposure keyword is present.
ELAPSED_KEYWORDS = ("TELAPSE",)
DARK_TIME_KEYWORDS = ("DARKTIME",)

SENSOR_TEMP_KEYWORDS = ("CCD-TEMP", "CCD_TEMP", "CCDTEMP", "CCDATEMP", "TEMPERAT", "SENSOR-TEMP",
                        "SENSTEMP", "DET-TEMP", "DETTEMP", "TEMPDET", "CAM-TEMP")
SET_TEMP_KEYWORDS = ("SET-TEMP", "SET_TEMP", "SETTEMP", "CCDSTEMP")
GAIN_KEYWORDS = ("GAIN",)
EGAIN_KEYWORDS = ("EGAIN",)
OFFSET_KEYWORDS = ("OFFSET", "BLKLEVEL", "BLACKLEV")
#: MaxIm DL writes PEDESTAL as the negative of the level it added; its magnitude is the offset.
PEDESTAL_KEYWORDS = ("PEDESTAL",)
#: Binning as separate x / y cards, or as one text card ("2x2", "2 2").
BINNING_PAIRS = (("XBINNING", "YBINNING"), ("CCDXBIN", "CCDYBIN"),
                 ("ESO DET WIN1 BINX", "ESO DET WIN1 BINY"), ("XBIN", "YBIN"))
BINNING_TEXT_KEYWORDS = ("BINNING", "CCDSUM")
BAYER_KEYWORDS = ("BAYERPAT",)

FOCAL_LENGTH_KEYWORDS = ("FOCALLEN", "FOCLEN")
APERTURE_KEYWORDS = ("APTDIA",)
FOCAL_RATIO_KEYWORDS = ("FOCRATIO",)
FILTER_KEYWORDS = ("FILTER", "FILTER1", "FILTNAME", "ESO INS FILT1 NAME")
TELESCOPE_KEYWORDS = ("TELESCOP",)
INSTRUMENT_KEYWORDS = ("INSTRUME",)
AIRMASS_KEYWORDS = ("AIRMASS",)
POINTING_PAIRS = (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC"), ("RA_OBJ", "DEC_OBJ"),
                  ("TELRA", "TELDEC"))
#: Keyword name stems of spectrograph set-ups (also matched inside HIERARCH names such as
#: ``ESO INS GRIS1 NAME``), and cards whose value says "slit".
SPECTRO_KEYWORD_STEMS = ("GRAT", "GRISM", "GRIS", "DISPERS", "DISPAXIS", "SLIT", "CENWAVE")
SLIT_VALUE_KEYWORDS = ("APERTYPE", "FOVTYPE")
SPECTRO_TECHNIQUE_KEYWORDS = ("ESO DPR TECH",)
CELESTIAL_CTYPE_PREFIXES = ("RA", "DEC", "GLON", "GLAT", "ELON", "ELAT", "SLON", "SLAT",
                            "HPLN", "HPLT", "HGLN", "HGLT", "SOLAR")
SOLAR_CTYPE_PREFIXES = ("HPLN", "HPLT", "HGLN", "HGLT", "SOLAR")
#: Words of solar telescopes and instruments in TELESCOP / INSTRUME / DETECTOR: space and
#: observatory solar instruments, and amateur H-alpha telescope makers.
SOLAR_INSTRUMENT_WORDS = {"TRACE", "AIA", "HMI", "SDO", "EIT", "MDI", "SOHO", "LASCO", "EUVI",
                          "SECCHI", "SUVI", "XRT", "HINODE", "SWAP", "PROBA2", "EUI", "GONG",
                          "BBSO", "DKIST", "GREGOR", "SOLAR", "LUNT", "CORONADO", "DAYSTAR",
                          "QUARK", "SOLARMAX"}
_SOLAR_INSTRUMENT_KEYWORDS = ("TELESCOP", "INSTRUME", "DETECTOR")

#: Text that stands for "no value" in name-like cards.
_PLACEHOLDERS = {"", "?", "??", "???", "-", "--", "N/A", "NA", "NONE", "NULL", "UNKNOWN",
                 "UNDEFINED"}

# ------------------------------------------------------------------------- sanity and units

#: Plausible ranges; values outside count as malformed.
EXPOSURE_RANGE_S = (0.0, 1e6)
TEMPERATURE_RANGE_C = (-150.0, 60.0)
#: A temperature above the Celsius range is read as Kelvin when it lands in the Celsius range
#: after conversion (123.15..333.15 K): observatory headers (Liverpool, Lick, INT) write Kelvin.
KELVIN_OFFSET = 273.15
GAIN_RANGE = (0.0, 1e5)
EGAIN_RANGE = (1e-4, 1e3)
OFFSET_RANGE = (0.0, 1e6)
BINNING_RANGE = (1.0, 64.0)
FOCAL_LENGTH_RANGE_MM = (1.0, 1e6)
APERTURE_RANGE_MM = (1.0, 1e5)
FOCAL_RATIO_RANGE = (0.3, 1000.0)
AIRMASS_RANGE = (0.99, 100.0)
BITPIX_VALUES = {8, 16, 32, 64, -32, -64}

#: A bias with a longer exposure than this contradicts its type; lights, darks, flats and arcs
#: with exactly zero exposure do too.
BIAS_MAX_EXPOSURE_S = 1.0
#: Exposure keywords agree when within this relative tolerance (or 1 ms).
EXPOSURE_TOLERANCE = 0.01

_SECONDS = {"": 1.0, "S": 1.0, "SEC": 1.0, "SECS": 1.0, "SECOND": 1.0, "SECONDS": 1.0,
            "MS": 1e-3, "MSEC": 1e-3, "MILLISECOND": 1e-3, "MILLISECONDS": 1e-3,
            "US": 1e-6, "µS": 1e-6, "USEC": 1e-6, "MICROSECOND": 1e-6, "MICROSECONDS": 1e-6,
            "MIN": 60.0, "MINS": 60.0, "MINUTE": 60.0, "MINUTES": 60.0,
            "H": 3600.0, "HR": 3600.0, "HRS": 3600.0, "HOUR": 3600.0, "HOURS": 3600.0}
_MILLIMETRES = {"": 1.0, "MM": 1.0, "CM": 10.0, "M": 1000.0}
_PLAIN = {"": 1.0}
_CELSIUS_UNITS = {"", "C", "°C", "DEGC", "DEG C", "CELSIUS"}
_KELVIN_UNITS = {"K", "KELVIN"}

_NUMBER_WITH_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?)\s*([^\d\s].*?)?\s*$")
_SEXAGESIMAL = re.compile(r"^\s*[-+]?\d{1,3}(?:[:\s]+\d{1,2}(?:\.\d*)?){1,2}\s*$")
_WORD_SPLIT = re.compile(r"[^A-Z0-9]+")
_TEXT_LIMIT = 200  # characters of a card value looked at

# -------------------------------------------------------------------------- feature names

HEADER_FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "frame_type": (*(f"frame_type_{kind}" for kind in FRAME_TYPES),
                   *(f"object_hint_{hint}" for hint in OBJECT_HINTS)),
    "exposure": ("exposure_s", "log10_exposure", "dark_time_s"),
    "sensor": ("sensor_temp_c", "set_temp_c", "temp_delta_c", "gain", "egain", "offset",
               "binning", "bitpix", "has_bayer_pattern"),
    "optics": ("focal_length_mm", "aperture_mm", "focal_ratio", "airmass", "has_filter",
               "has_object", "has_telescope", "has_instrument", "has_pointing", "has_wcs",
               "has_spectro_keywords", "solar_hint"),
}
#: Every header feature, in record order.
HEADER_FEATURE_NAMES: tuple[str, ...] = tuple(
    name for names in HEADER_FEATURE_GROUPS.values() for name in names)

_GROUP_OF_FEATURE = {name: group for group, names in HEADER_FEATURE_GROUPS.items()
                     for name in names}


def header_feature_group(name: str) -> str:
    """The confidence group a header feature belongs to.

    Parameters
    ----------
    name : str
        One of :data:`HEADER_FEATURE_NAMES`.

    Returns
    -------
    str
        One of :data:`skyshard.schema.CONFIDENCE_NAMES`: ``frame_type``, ``exposure``,
        ``sensor`` or ``optics``.

    Raises
    ------
    KeyError
        For a name that is not a header feature.
    """
    return _GROUP_OF_FEATURE[name]


def header_features(header: Mapping, file_name: str | None = None
                    ) -> tuple[dict[str, float], np.ndarray]:
    """Raw header features by name, and how far to trust each group of them.

    The four groups and the keywords they read (the first recognised keyword of a list wins):

    * frame type: :data:`FRAME_TYPE_KEYWORDS` (``IMAGETYP``, ``IMAGETYPE``, ``IMGTYPE``,
      ``IMTYPE``, ``OBSTYPE``, ``FRAMETYP``, ... ``FRAME``), one-hot over :data:`FRAME_TYPES`,
      and hints from the target name, :data:`OBJECT_KEYWORDS` (``OBJECT``, ``OBJNAME``,
      ``TARGNAME``);
    * exposure: :data:`EXPOSURE_KEYWORDS` (``EXPTIME``, ``EXPOSURE``, ``EXP_TIME``,
      ``EXPOSURE_TIME``, ``ITIME``), else ``TELAPSE``; ``DARKTIME``; seconds;
    * sensor: temperature (``CCD-TEMP``, ``CCD_TEMP``, ``CCDTEMP``, ``CCDATEMP``, ``TEMPERAT``, ...)
      and set point (``SET-TEMP``, ...) in degrees Celsius, ``GAIN``, ``EGAIN`` (e-/ADU), offset
      (``OFFSET``, ``BLKLEVEL``, ``BLACKLEV``, ``PEDESTAL``), binning (``XBINNING``/``YBINNING``,
      ``CCDSUM``, ...), ``BITPIX`` and ``BAYERPAT``;
    * optics: ``FOCALLEN``/``FOCLEN`` and ``APTDIA`` (mm), ``FOCRATIO``, ``AIRMASS``, and whether
      a filter (``FILTER``, ...), target, telescope (``TELESCOP``), instrument (``INSTRUME``),
      pointing (``RA``/``DEC``, ``OBJCTRA``/``OBJCTDEC``, ...), a celestial WCS
      (``CTYPE1``/``CTYPE2``, ``CRVAL1``/``CRVAL2``), spectrograph cards or a solar instrument are
      named.

    Parameters
    ----------
    header : Mapping
        Keyword to value, any case, any value type; read as data only (never used as a path nor
        evaluated).
    file_name : str, optional
        The frame's file name. What it spells out (:func:`file_name_cards`) stands in for the
        frame-type, exposure and sensor groups when the header has none of their cards, at
        :data:`FILE_NAME_CONFIDENCE` times the confidence the same cards would earn, and for the
        target hints when the header names no target.

    Returns
    -------
    features : dict of str to float
        Keyed by every name in :data:`HEADER_FEATURE_NAMES`; NaN where the header does not say.
    confidences : ndarray
        float32 ``[frame_type, exposure, sensor, optics]`` in [0, 1]: 1 when the group's cards
        are present and well formed, 0 when they are absent, in between when they are malformed
        or contradict each other.
    """
    cards = _normalised(header)
    named = {**file_name_cards(file_name), **cards} if file_name else cards
    exposure, exposure_confidence = _with_fallback(_exposure_group, cards, named)
    frame_type, frame_type_confidence = _with_fallback(_frame_type_group, cards, named,
                                                       exposure["exposure_s"])
    if named is not cards and not any(keyword in cards for keyword in OBJECT_KEYWORDS):
        frame_type.update(_hint_features(_object_hints(named)))  # the target from the name
    sensor, sensor_confidence = _with_fallback(_sensor_group, cards, named)
    optics, optics_confidence = _optics_group(cards)
    features = {**frame_type, **exposure, **sensor, **optics}
    features = {name: _finite_or_nan(features[name]) for name in HEADER_FEATURE_NAMES}
    confidences = np.clip(np.array([frame_type_confidence, exposure_confidence,
                                    sensor_confidence, optics_confidence], dtype=np.float32), 0, 1)
    return features, confidences


# ------------------------------------------------------------------------ reading card values

ABSENT, VALID, MALFORMED = "absent", "valid", "malformed"

#: Confidence contribution of one card slot by status: malformed counts half.
_SLOT_SCORE = {VALID: 1.0, MALFORMED: 0.5, ABSENT: 0.0}


@dataclass(frozen=True)
class Reading:
    """A parsed card slot: its value (NaN unless valid; 0/1 for presence flags) and status."""

    value: float = math.nan
    status: str = ABSENT


def _normalised(header: Mapping) -> dict[str, Any]:
    """Upper-case, stripped keyword -> value; the first of duplicate keywords is kept."""
    cards: dict[str, Any] = {}
    for key in list(header.keys()):
        keyword = _text(key)
        if keyword is None:
            continue
        keyword = keyword.upper()
        if keyword in cards:
            continue
        try:
            cards[keyword] = header[key]
        except Exception:  # a card astropy cannot parse: present but unreadable
            cards[keyword] = None
    return cards


def _text(value: Any) -> str | None:
    """A card value as stripped text; numbers become their decimal text; None when the value
    holds no text at all (bools, Undefined, None, containers)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return value[:_TEXT_LIMIT].strip()
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)):
        return str(value)
    return None


def _quantity(value: Any) -> tuple[float, str] | None:
    """``(number, unit)`` from a numeric card or a string such as '10.5 s' (unit upper-case,
    '' when none); None when the value is no finite number."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        if isinstance(value, (int, float, np.integer, np.floating)):
            number, unit = float(value), ""
        else:
            text = _text(value)
            match = _NUMBER_WITH_UNIT.match(text) if text else None
            if match is None:
                return None
            number = float(match.group(1).upper().replace("D", "E"))
            unit = (match.group(2) or "").strip().upper()
    except (OverflowError, ValueError):
        return None
    return (number, unit) if math.isfinite(number) else None


def _number(value: Any, units: Mapping[str, float]) -> float | None:
    """A finite number from a card value whose unit is one of ``units`` (unit -> factor to
    the wanted unit); None when the value is no such number."""
    quantity = _quantity(value)
    if quantity is None or quantity[1] not in units:
        return None
    number = quantity[0] * units[quantity[1]]
    return number if math.isfinite(number) else None


def _in_range(number: float | None, bounds: tuple[float, float]) -> bool:
    return number is not None and bounds[0] <= number <= bounds[1]


def _read_number(cards: Mapping[str, Any], keywords: Iterable[str], bounds: tuple[float, float],
                 units: Mapping[str, float] = _PLAIN) -> Reading:
    """The first present keyword whose value is a number within ``bounds``; when none is,
    ``MALFORMED`` if any keyword is present, else ``ABSENT``."""
    present = [keyword for keyword in keywords if keyword in cards]
    for keyword in present:
        number = _number(cards[keyword], units)
        if _in_range(number, bounds):
            return Reading(number, VALID)
    return Reading(status=MALFORMED if present else ABSENT)


def _read_name(cards: Mapping[str, Any], keywords: Iterable[str]) -> Reading:
    """Whether a name-like card (filter, telescope, target) holds a real name: value 1 when it
    does, 0 otherwise; a present card holding only a placeholder ('', 'N/A', '??') is malformed."""
    present = [keyword for keyword in keywords if keyword in cards]
    for keyword in present:
        text = _text(cards[keyword])
        if text is not None and text.upper() not in _PLACEHOLDERS:
            return Reading(1.0, VALID)
    return Reading(0.0, MALFORMED if present else ABSENT)


def _slot_share(readings: Iterable[Reading]) -> float:
    """Share of a group's card slots present and well-formed (a malformed slot counts half)."""
    scores = [_SLOT_SCORE[reading.status] for reading in readings]
    return sum(scores) / len(scores)


def _words(text: str) -> list[str]:
    return [word for word in _WORD_SPLIT.split(text.upper()) if word]


def _finite_or_nan(value: float) -> float:
    """``value`` as a float that float32 records can hold; NaN when it is not finite there."""
    value = float(value)
    return value if math.isfinite(value) and abs(value) < 3e38 else math.nan


# --------------------------------------------------------------------------- 1. frame type


def classify_frame_type(value: Any) -> str:
    """The frame type a frame-type card value names.

    Parameters
    ----------
    value : object
        The card's value, e.g. of ``IMAGETYP``.

    Returns
    -------
    str
        One of :data:`FRAME_TYPES`; ``unknown`` for anything outside the vocabulary (including
        empty and non-text values). A value naming several types ("FLAT,LAMP", "DARK FLAT") gives
        the first of bias, dark, flat, arc, light.
    """
    words = _words(_text(value) or "")
    joined = "".join(words)
    if joined in _FRAME_TYPE_WORDS:
        return _FRAME_TYPE_WORDS[joined]
    kinds = {_FRAME_TYPE_WORDS[word] for word in words if word in _FRAME_TYPE_WORDS}
    kinds |= {"flat" for word in words if "FLAT" in word}
    return next((kind for kind in _FRAME_TYPE_PRIORITY if kind in kinds), "unknown")


def object_hints(value: Any) -> set[str] | None:
    """Which of :data:`OBJECT_HINTS` a target name mentions.

    Parameters
    ----------
    value : object
        The card's value, e.g. of ``OBJECT``.

    Returns
    -------
    set of str or None
        The hints (calibration words, Sun, Moon, a planet, a deep-sky catalogue designation);
        None when the value holds no text.
    """
    text = _text(value)
    if text is None:
        return None
    words = set(_words(text))
    hints = {hint for hint, vocabulary in _OBJECT_HINT_WORDS.items() if words & vocabulary}
    hints |= {hint for hint, stem in _OBJECT_HINT_STEMS.items()
              if any(stem in word for word in words)}
    if _names_catalogue_object(text):
        hints.add("catalogue")
    if "arc" in hints and words & {"MERCURY", "MERKUR"} == words & _OBJECT_HINT_WORDS["planet"]:
        hints.discard("planet")  # a mercury lamp, not the planet
    return hints


def _names_catalogue_object(text: str) -> bool:
    """Whether ``text`` holds a deep-sky catalogue designation (:data:`_CATALOGUE_DESIGNATION`)."""
    return any(match["messier"] is None or 1 <= int(match["messier"]) <= 110
               for match in _CATALOGUE_DESIGNATION.finditer(text.upper()))


def _hint_features(hints: set[str] | None) -> dict[str, float]:
    """``object_hint_<hint>`` for every :data:`OBJECT_HINTS` entry: 0/1, NaN without a target."""
    return {f"object_hint_{hint}": math.nan if hints is None else float(hint in hints)
            for hint in OBJECT_HINTS}


def _frame_type_group(cards: Mapping[str, Any],
                      exposure_s: float) -> tuple[dict[str, float], float]:
    """One-hot frame type, object hints, and the frame-type confidence.

    Confidence: 1 for a recognised type (0.5 for text outside the vocabulary), divided by
    ``1 + n`` for ``n`` contradictions: type keywords disagreeing, a target name naming another
    calibration type, or an exposure the type cannot have. A dark of zero length is a bias by
    definition (Lick Kast biases are written ``OBSTYPE = 'DARK'``, ``EXPTIME = 0``): it is read
    as a bias, the rewording counting as one contradiction.
    """
    types = [classify_frame_type(cards[keyword])
             for keyword in FRAME_TYPE_KEYWORDS if keyword in cards]
    recognised = [kind for kind in types if kind != "unknown"]
    frame_type = recognised[0] if recognised else ("unknown" if types else None)
    zero_length_dark = frame_type == "dark" and exposure_s == 0
    if zero_length_dark:
        frame_type = "bias"
    hints = _object_hints(cards)
    features = {f"frame_type_{kind}": math.nan if frame_type is None else float(kind == frame_type)
                for kind in FRAME_TYPES}
    features.update(_hint_features(hints))
    if frame_type is None:
        return features, 0.0
    base = 1.0 if recognised else 0.5
    contradictions = _frame_type_contradictions(frame_type, recognised, hints or set(), exposure_s)
    return features, base / (1 + contradictions + int(zero_length_dark))


def _object_hints(cards: Mapping[str, Any]) -> set[str] | None:
    """Hints from all target-name cards together; None when none is present."""
    found = [object_hints(cards[keyword]) for keyword in OBJECT_KEYWORDS if keyword in cards]
    found = [hints for hints in found if hints is not None]
    return set().union(*found) if found else None


def _frame_type_contradictions(frame_type: str, recognised: list[str], hints: set[str],
                               exposure_s: float) -> int:
    contradictions = int(len(set(recognised)) > 1)
    calibration_hints = hints & {"bias", "dark", "flat", "arc"}
    contradictions += int(bool(calibration_hints) and frame_type not in calibration_hints)
    if frame_type in ("light", "dark", "flat", "arc"):
        contradictions += int(exposure_s == 0)
    if frame_type == "bias":
        contradictions += int(exposure_s > BIAS_MAX_EXPOSURE_S)
    return contradictions


# ----------------------------------------------------------------------------- 2. exposure


def _exposure_group(cards: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    """Exposure and dark time in seconds, and the exposure confidence.

    Confidence: 0 when no exposure card is present, 0.25 when all are malformed; otherwise 1,
    times 0.75 when the value is only an elapsed time (TELAPSE), times 0.75 when another exposure
    card is malformed, times 0.5 when well-formed exposure cards disagree.
    """
    readings = [_read_number(cards, (keyword,), EXPOSURE_RANGE_S, _SECONDS)
                for keyword in EXPOSURE_KEYWORDS]
    elapsed = _read_number(cards, ELAPSED_KEYWORDS, EXPOSURE_RANGE_S, _SECONDS)
    valid = [reading.value for reading in readings if reading.status == VALID]
    exposure = valid[0] if valid else elapsed.value
    dark_time = _read_number(cards, DARK_TIME_KEYWORDS, EXPOSURE_RANGE_S, _SECONDS).value
    features = {"exposure_s": exposure, "log10_exposure": math.log10(1e-4 + exposure)
                if math.isfinite(exposure) else math.nan, "dark_time_s": dark_time}
    statuses = {reading.status for reading in readings} | {elapsed.status}
    if statuses == {ABSENT}:
        return features, 0.0
    if not math.isfinite(exposure):
        return features, 0.25
    confidence = 1.0
    confidence *= 0.75 if not valid else 1.0
    confidence *= 0.75 if MALFORMED in {reading.status for reading in readings} else 1.0
    confidence *= 0.5 if not _agree(valid) else 1.0
    return features, confidence


def _agree(values: list[float]) -> bool:
    if not values:
        return True
    low, high = min(values), max(values)
    return high - low <= max(1e-3, EXPOSURE_TOLERANCE * high)


# ------------------------------------------------------------------------ 3. sensor/thermal


def _sensor_group(cards: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    """Sensor temperature and set point (°C), gain, e-/ADU, offset, binning, BITPIX, Bayer flag.

    Confidence: share of the slots sensor temperature, set point, gain (GAIN or EGAIN), offset
    and binning that are present and well-formed (a malformed slot counts half).
    """
    sensor = _read_temperature(cards, SENSOR_TEMP_KEYWORDS)
    set_point = _read_temperature(cards, SET_TEMP_KEYWORDS)
    gain = _read_number(cards, GAIN_KEYWORDS, GAIN_RANGE)
    egain = _read_number(cards, EGAIN_KEYWORDS, EGAIN_RANGE)
    offset = _read_offset(cards)
    binning = _read_binning(cards)
    bitpix = cards.get("BITPIX")
    features = {
        "sensor_temp_c": sensor.value,
        "set_temp_c": set_point.value,
        "temp_delta_c": sensor.value - set_point.value,
        "gain": gain.value,
        "egain": egain.value,
        "offset": offset.value,
        "binning": binning.value,
        "bitpix": float(bitpix) if _is_bitpix(bitpix) else math.nan,
        "has_bayer_pattern": _read_name(cards, BAYER_KEYWORDS).value,
    }
    either_gain = gain if gain.status == VALID or egain.status == ABSENT else egain
    return features, _slot_share((sensor, set_point, either_gain, offset, binning))


def celsius(value: Any) -> float | None:
    """A sensor temperature in degrees Celsius from a card value.

    Parameters
    ----------
    value : object
        The card's value: a number or a number with a unit (``C``, ``degC``, ``K``, ...).

    Returns
    -------
    float or None
        Degrees Celsius: the value itself, or less 273.15 when the unit is Kelvin or a bare number
        lies above the Celsius range (observatory headers write Kelvin); None when it is not a
        plausible temperature (:data:`TEMPERATURE_RANGE_C`).
    """
    quantity = _quantity(value)
    if quantity is None:
        return None
    number, unit = quantity
    if unit in _KELVIN_UNITS or (unit == "" and number > TEMPERATURE_RANGE_C[1]):
        number -= KELVIN_OFFSET
    elif unit not in _CELSIUS_UNITS:
        return None
    return number if _in_range(number, TEMPERATURE_RANGE_C) else None


def _read_temperature(cards: Mapping[str, Any], keywords: Iterable[str]) -> Reading:
    present = [keyword for keyword in keywords if keyword in cards]
    for keyword in present:
        value = celsius(cards[keyword])
        if value is not None:
            return Reading(value, VALID)
    return Reading(status=MALFORMED if present else ABSENT)


def _read_offset(cards: Mapping[str, Any]) -> Reading:
    offset = _read_number(cards, OFFSET_KEYWORDS, OFFSET_RANGE)
    if offset.status != ABSENT:
        return offset
    pedestal = _read_number(cards, PEDESTAL_KEYWORDS, (-OFFSET_RANGE[1], OFFSET_RANGE[1]))
    return Reading(abs(pedestal.value), pedestal.status)


def _read_binning(cards: Mapping[str, Any]) -> Reading:
    """Linear binning factor ``sqrt(x * y)`` (2 for 2x2) from pair or text cards."""
    present = False
    for x_keyword, y_keyword in BINNING_PAIRS:
        if x_keyword in cards:
            present = True
            x_bin = _number(cards[x_keyword], _PLAIN)
            y_bin = _number(cards[y_keyword], _PLAIN) if y_keyword in cards else x_bin
            if _valid_bin(x_bin) and _valid_bin(y_bin):
                return Reading(math.sqrt(x_bin * y_bin), VALID)
    for keyword in BINNING_TEXT_KEYWORDS:
        if keyword in cards:
            present = True
            factors = _binning_text(cards[keyword])
            if factors is not None:
                return Reading(math.sqrt(factors[0] * factors[1]), VALID)
    return Reading(status=MALFORMED if present else ABSENT)


def _binning_text(value: Any) -> tuple[float, float] | None:
    """``(x, y)`` from '2x2', '2 2', '2,2' or a single number; None when malformed."""
    if not isinstance(value, (str, bytes)):
        number = _number(value, _PLAIN)
        return (number, number) if _valid_bin(number) else None
    text = _text(value)
    parts = re.split(r"\s*[xX*,\s]\s*", text) if text else []
    numbers = [_number(part, _PLAIN) for part in parts if part]
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) == 2 and all(_valid_bin(number) for number in numbers):
        return numbers[0], numbers[1]
    return None


def _valid_bin(number: float | None) -> bool:
    return _in_range(number, BINNING_RANGE) and abs(number - round(number)) < 1e-6


def _is_bitpix(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (
        int(value) in BITPIX_VALUES)


# --------------------------------------------------------------------------- 4. optics/target


def _optics_group(cards: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    """Focal length, aperture, focal ratio, airmass and presence flags for filter, target,
    telescope, instrument, pointing, celestial WCS, spectrograph cards and solar instruments.

    Confidence: share of the slots focal length, aperture, filter, target, telescope,
    instrument, pointing and airmass that are present and well-formed (malformed counts half).
    """
    focal_length = _read_number(cards, FOCAL_LENGTH_KEYWORDS, FOCAL_LENGTH_RANGE_MM, _MILLIMETRES)
    aperture = _read_number(cards, APERTURE_KEYWORDS, APERTURE_RANGE_MM, _MILLIMETRES)
    airmass = _read_number(cards, AIRMASS_KEYWORDS, AIRMASS_RANGE)
    names = {name: _read_name(cards, keywords) for name, keywords in (
        ("filter", FILTER_KEYWORDS), ("object", OBJECT_KEYWORDS),
        ("telescope", TELESCOPE_KEYWORDS), ("instrument", INSTRUMENT_KEYWORDS))}
    pointing = _read_pointing(cards)
    features = {
        "focal_length_mm": focal_length.value,
        "aperture_mm": aperture.value,
        "focal_ratio": _focal_ratio(cards, focal_length, aperture),
        "airmass": airmass.value,
        **{f"has_{name}": reading.value for name, reading in names.items()},
        "has_pointing": pointing.value,
        "has_wcs": float(_has_celestial_wcs(cards)),
        "has_spectro_keywords": float(_has_spectro_keywords(cards)),
        "solar_hint": float(_has_solar_hint(cards)),
    }
    slots = (focal_length, aperture, *names.values(), pointing, airmass)
    return features, _slot_share(slots)


def _focal_ratio(cards: Mapping[str, Any], focal_length: Reading, aperture: Reading) -> float:
    if focal_length.status == VALID and aperture.status == VALID:
        ratio = focal_length.value / aperture.value
        return ratio if _in_range(ratio, FOCAL_RATIO_RANGE) else math.nan
    return _read_number(cards, FOCAL_RATIO_KEYWORDS, FOCAL_RATIO_RANGE).value


def _read_pointing(cards: Mapping[str, Any]) -> Reading:
    """1 when a right ascension / declination pair is readable (degrees or sexagesimal)."""
    present = False
    for ra_keyword, dec_keyword in POINTING_PAIRS:
        if ra_keyword in cards or dec_keyword in cards:
            present = True
            if _is_coordinate(cards.get(ra_keyword)) and _is_coordinate(cards.get(dec_keyword)):
                return Reading(1.0, VALID)
    return Reading(0.0, MALFORMED if present else ABSENT)


def _is_coordinate(value: Any) -> bool:
    if _number(value, _PLAIN) is not None:
        return abs(_number(value, _PLAIN)) <= 360
    text = _text(value)
    return bool(text) and _SEXAGESIMAL.match(text) is not None


def _has_celestial_wcs(cards: Mapping[str, Any]) -> bool:
    """CTYPE1/2 name sky (or solar) coordinates and CRVAL1/2 are numbers."""
    ctypes = [(_text(cards.get(f"CTYPE{axis}")) or "").upper() for axis in (1, 2)]
    crvals = [_number(cards.get(f"CRVAL{axis}"), _PLAIN) for axis in (1, 2)]
    return (all(ctype.startswith(CELESTIAL_CTYPE_PREFIXES) for ctype in ctypes)
            and all(crval is not None for crval in crvals))


def _has_spectro_keywords(cards: Mapping[str, Any]) -> bool:
    """Grating, grism, slit or dispersion cards, a slit aperture, or an ESO spectrum technique."""
    for keyword, value in cards.items():
        if _text(value) in (None, "") and not isinstance(value, bool):
            continue
        if any(word.startswith(SPECTRO_KEYWORD_STEMS) for word in keyword.split()):
            return True
    slit = any("SLIT" in (_text(cards.get(keyword)) or "").upper()
               for keyword in SLIT_VALUE_KEYWORDS)
    spectrum = any("SPEC" in (_text(cards.get(keyword)) or "").upper()
                   for keyword in SPECTRO_TECHNIQUE_KEYWORDS)
    return slit or spectrum


def _has_solar_hint(cards: Mapping[str, Any]) -> bool:
    """A solar telescope/instrument name, or helioprojective / solar WCS axes."""
    words = set()
    for keyword in _SOLAR_INSTRUMENT_KEYWORDS:
        words.update(_words(_text(cards.get(keyword)) or ""))
    ctype = (_text(cards.get("CTYPE1")) or "").upper()
    return bool(words & SOLAR_INSTRUMENT_WORDS) or ctype.startswith(SOLAR_CTYPE_PREFIXES)


# ------------------------------------------------------------------ 5. the file name as a header

#: Confidence factor of a group read from the file name rather than from header cards.
FILE_NAME_CONFIDENCE = 0.5

#: Frame-type words trusted in a file name: a narrower vocabulary than in cards, because in file
#: names OFFSET, SKY, LAMP, STD or OBJECT often name something else ("gain100_offset_30").
_NAME_TYPE_WORDS = {
    **dict.fromkeys(("LIGHT", "LIGHTS", "LIGHTFRAME", "SCIENCE"), "light"),
    **dict.fromkeys(("DARK", "DARKS", "DARKFRAME", "DARKFLAT", "FLATDARK"), "dark"),
    **dict.fromkeys(("FLAT", "FLATS", "FLATFIELD", "SKYFLAT", "DOMEFLAT", "LAMPFLAT", "TWILIGHT",
                     "TWIFLAT"), "flat"),
    **dict.fromkeys(("BIAS", "BIASES", "ZERO", "ZEROS"), "bias"),
    **dict.fromkeys(("ARC", "ARCS", "ARCLAMP", "THAR", "COMP"), "arc"),
}
#: Astro Photography Tool starts names with one letter and a frame number ("D_0012_...").
_APT_TYPE_LETTERS = {"L": "light", "D": "dark", "F": "flat", "B": "bias"}
#: Frame-type stems a file-name word may start with ("Bias0001", "darks-30s", "Light001").
_NAME_TYPE_STEMS = (("BIAS", "bias"), ("DARK", "dark"), ("FLAT", "flat"), ("LIGHT", "light"),
                    ("ZERO", "bias"))

_NAME_EXTENSIONS = re.compile(r"(\.(fits?|fts|fz|gz|bz2|tiff?|xisf|cr2|nef))+$", re.IGNORECASE)
_SEPARATOR = r"(?:^|(?<=[_\s.]))"
_END = r"(?=$|[_\-\s.])"
#: An exposure with its unit: "180.00s", "15sec", "30_secs", "0.005779s", "2min"; SharpCap's
#: underscore decimals ("0_00025_secs") for sub-second exposures.
_NAME_EXPOSURE = re.compile(
    r"(?<![0-9a-z.])(0_\d+|\d+(?:\.\d+)?)_?(s|sec|secs|second|seconds|ms|msec|us|min|mins)"
    r"(?![a-z])")
#: A sensor temperature in Celsius: "_-10.1C_", "__24C", "-20c.fits".
_NAME_TEMPERATURE = re.compile(_SEPARATOR + r"-?([-+]?\d{1,3}(?:\.\d+)?)c" + _END)
_NAME_GAIN = re.compile(_SEPARATOR + r"gain[_=-]?(\d{1,4})" + _END)
_NAME_BINNING = re.compile(_SEPARATOR + r"(?:bin[_=-]?(\d)(?:x(\d))?|(\d)x(\d))" + _END)


def file_name_cards(file_name: str | None) -> dict[str, str]:
    """Header cards that a file name spells out, the way capture programs name frames.

    N.I.N.A. (``2022-01-15_22-57-06_BIAS_0.00s_0086.fits``), ASIAIR/ASIStudio
    (``Dark_180.0s_Bin1_1600MM_gain180_20170919-192056_-10.1C_0047.fit``), SharpCap
    (``Bias_0_00025_secs_2016-05-11T23-45-22_010.fits``), APT (``B_0012_ISO200_0s__13C.tiff``),
    IRAF-style archives (``zero001.fits``, ``b11_domeflat.fits``) and hand-made names alike. The
    name is data only: never opened, resolved or evaluated.

    Parameters
    ----------
    file_name : str or None
        The file's name (its first 200 characters are read).

    Returns
    -------
    dict of str to str
        Upper-case keyword to text, only those found: ``IMAGETYP`` (a frame-type word),
        ``OBJECT`` (the name without its extension, for target hints such as Moon or Jupiter),
        ``EXPTIME`` (with its unit), ``CCD-TEMP`` (degrees Celsius), ``GAIN``, ``XBINNING`` and
        ``YBINNING``.
    """
    if not file_name:
        return {}
    stem = _NAME_EXTENSIONS.sub("", str(file_name)[:_TEXT_LIMIT])
    cards = {"OBJECT": stem}
    frame_type = _name_frame_type(stem)
    if frame_type is not None:
        cards["IMAGETYP"] = frame_type.upper()
    lower = stem.lower()
    exposure = _NAME_EXPOSURE.search(lower)
    if exposure:
        number = exposure.group(1).replace("0_", "0.", 1) if exposure.group(1).startswith(
            "0_") else exposure.group(1)
        cards["EXPTIME"] = f"{number} {exposure.group(2)}"
    temperature = _NAME_TEMPERATURE.search(lower)
    if temperature:
        sign = "-" if lower[temperature.start():temperature.start(1)].endswith("-") else ""
        cards["CCD-TEMP"] = sign + temperature.group(1).lstrip("+")
    gain = _NAME_GAIN.search(lower)
    if gain:
        cards["GAIN"] = gain.group(1)
    binning = _NAME_BINNING.search(lower)
    if binning:
        x = binning.group(1) or binning.group(3)
        y = binning.group(2) or binning.group(4) or x
        cards["XBINNING"], cards["YBINNING"] = x, y
    return cards


def _name_frame_type(stem: str) -> str | None:
    """The frame type a file name states (priority as in cards when it states several)."""
    words = _words(stem)
    if len(words) >= 2 and words[0] in _APT_TYPE_LETTERS and words[1].isdigit():
        return _APT_TYPE_LETTERS[words[0]]
    kinds = set()
    for word in words:
        if word in _NAME_TYPE_WORDS:
            kinds.add(_NAME_TYPE_WORDS[word])
            continue
        kinds.update(kind for prefix, kind in _NAME_TYPE_STEMS if word.startswith(prefix))
    return next((kind for kind in _FRAME_TYPE_PRIORITY if kind in kinds), None)


def _with_fallback(group, cards: Mapping[str, Any], named: Mapping[str, Any], *args
                   ) -> tuple[dict[str, float], float]:
    """``group(cards, *args)``; when the cards give it nothing (confidence 0) and the file name
    does, the group read from the cards merged with the file name's, at reduced confidence."""
    features, confidence = group(cards, *args)
    if confidence > 0 or named is cards:
        return features, confidence
    named_features, named_confidence = group(named, *args)
    if named_confidence <= 0:
        return features, confidence
    return named_features, FILE_NAME_CONFIDENCE * named_confidence
