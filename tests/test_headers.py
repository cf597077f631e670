"""Header vocabulary: keyword conventions -> features and group confidences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.fits.card import Undefined

from conftest import real_frame_files
from exporter.features.headers import (FILE_NAME_CONFIDENCE, FRAME_TYPE_KEYWORDS, FRAME_TYPES,
                                       HEADER_FEATURE_GROUPS, HEADER_FEATURE_NAMES, OBJECT_HINTS,
                                       classify_frame_type, file_name_cards,
                                       header_feature_group, header_features)
from exporter.readers import read_frame
from skyshard.schema import CONFIDENCE_NAMES

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")

FRAME_TYPE, EXPOSURE, SENSOR, OPTICS = range(4)


def frame_type_of(features) -> str | None:
    hot = [kind for kind in FRAME_TYPES if features[f"frame_type_{kind}"] == 1]
    return hot[0] if hot else None


def assert_finite_or_nan(features, confidences):
    assert set(features) == set(HEADER_FEATURE_NAMES)
    for name, value in features.items():
        assert isinstance(value, float), name
        assert math.isnan(value) or math.isfinite(value), name
    assert confidences.dtype == np.float32 and confidences.shape == (4,)
    assert np.all((confidences >= 0) & (confidences <= 1))


# ----------------------------------------------------------------------------- the contract


def test_feature_names_are_unique_and_grouped():
    assert len(set(HEADER_FEATURE_NAMES)) == len(HEADER_FEATURE_NAMES)
    assert tuple(HEADER_FEATURE_GROUPS) == CONFIDENCE_NAMES
    assert header_feature_group("exposure_s") == "exposure"
    assert header_feature_group("frame_type_bias") == "frame_type"
    assert header_feature_group("sensor_temp_c") == "sensor"
    assert header_feature_group("has_wcs") == "optics"


def test_empty_header_has_zero_confidence_and_unknown_values():
    features, confidences = header_features({})
    assert_finite_or_nan(features, confidences)
    np.testing.assert_array_equal(confidences, np.zeros(4, np.float32))
    assert math.isnan(features["frame_type_light"]) and math.isnan(features["exposure_s"])
    assert math.isnan(features["object_hint_bias"]) and math.isnan(features["sensor_temp_c"])
    assert features["has_filter"] == 0.0 and features["has_wcs"] == 0.0


def test_keywords_are_case_insensitive():
    features, confidences = header_features({"imagetyp": "dark frame", "exptime": 30})
    assert frame_type_of(features) == "dark" and features["exposure_s"] == 30.0
    assert confidences[FRAME_TYPE] == 1.0 and confidences[EXPOSURE] == 1.0


@pytest.mark.parametrize("value", [None, True, False, b"DARK", Undefined(), float("inf"),
                                   float("nan"), -math.inf, 10 ** 400, complex(1, 2), [1, 2],
                                   {"a": 1}, object(), np.float64("nan"), np.int16(5), "",
                                   "   ", "1e999", "x" * 10_000, "\x00\xff", np.bool_(True)],
                         ids=lambda value: type(value).__name__)
def test_odd_values_never_crash_and_stay_finite_or_nan(value):
    keywords = {keyword for names in (
        FRAME_TYPE_KEYWORDS, ("OBJECT", "EXPTIME", "EXPOSURE", "TELAPSE", "DARKTIME", "CCD-TEMP",
                              "SET-TEMP", "GAIN", "EGAIN", "OFFSET", "PEDESTAL", "XBINNING",
                              "YBINNING", "BINNING", "CCDSUM", "BITPIX", "BAYERPAT", "FOCALLEN",
                              "APTDIA", "FOCRATIO", "FILTER", "TELESCOP", "INSTRUME", "AIRMASS",
                              "RA", "DEC", "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "GRATING",
                              "APERTYPE"))
        for keyword in names}
    assert_finite_or_nan(*header_features(dict.fromkeys(keywords, value)))


def test_astropy_header_with_malformed_cards_is_accepted():
    header = fits.Header()
    header["IMAGETYP"] = "LIGHT"
    header["EXPTIME"] = 5.0
    header.append(fits.Card.fromstring("GAIN    =                1.2.3"))
    header.append(fits.Card.fromstring("CCD-TEMP= 'abc"))
    features, confidences = header_features(header)
    assert_finite_or_nan(features, confidences)
    assert frame_type_of(features) == "light" and features["exposure_s"] == 5.0
    assert math.isnan(features["gain"]) and 0 < confidences[SENSOR] < 1


# ----------------------------------------------------------------------------- frame type


@pytest.mark.parametrize("value, kind", [
    ("Light Frame", "light"), ("LIGHT", "light"), ("Light", "light"), ("OBJECT", "light"),
    ("SCIENCE", "light"), ("light_frame", "light"), ("OBJECT (0)", "light"), ("EXPOSE", "light"),
    ("STANDARD", "light"), ("SPECTRUM", "light"), ("TARGET", "light"), ("EXT", "light"),
    ("Dark Frame", "dark"), ("DARK", "dark"), ("dark-frame", "dark"), ("Master Dark", "dark"),
    ("DarkFlat", "dark"),
    ("Flat Field", "flat"), ("FLAT", "flat"), ("SKYFLAT", "flat"), ("DOMEFLAT", "flat"),
    ("LAMPFLAT", "flat"), ("LAMP-FLAT", "flat"), ("TWILIGHT", "flat"), ("FLAT,LAMP", "flat"),
    ("Sky Flat", "flat"), ("Flat Frame", "flat"),
    ("Bias Frame", "bias"), ("BIAS", "bias"), ("ZERO", "bias"), ("OFFSET", "bias"),
    ("ARC", "arc"), ("COMP", "arc"), ("COMPARISON", "arc"), ("LAMP", "arc"), ("WAVE", "arc"),
    ("WAVELAMP", "arc"), ("THAR", "arc"), ("WAVE,LAMP", "arc"), ("arc", "arc"),
    ("ARCLAMP", "arc"), ("FLATLAMP", "flat"), ("IntFlat", "flat"), ("science", "light"),
    ("FOCUS", "unknown"), ("Tricolor", "unknown"), ("", "unknown"), (42, "unknown"),
])
def test_frame_type_vocabulary(value, kind):
    assert classify_frame_type(value) == kind


@pytest.mark.parametrize("keyword", FRAME_TYPE_KEYWORDS)
def test_every_frame_type_keyword_is_read(keyword):
    features, confidences = header_features({keyword: "Flat Field", "EXPTIME": 2.0})
    assert frame_type_of(features) == "flat" and confidences[FRAME_TYPE] == 1.0


def test_unrecognised_type_is_unknown_with_half_confidence():
    features, confidences = header_features({"IMAGETYP": "Tricolor", "EXPTIME": 1.0})
    assert frame_type_of(features) == "unknown" and confidences[FRAME_TYPE] == 0.5


def test_first_recognised_keyword_wins_and_disagreement_lowers_confidence():
    features, confidences = header_features({"IMAGETYP": "LIGHT", "OBSTYPE": "FLAT",
                                             "EXPTIME": 3.0})
    assert frame_type_of(features) == "light" and confidences[FRAME_TYPE] == 0.5


def test_a_zero_length_dark_is_a_bias():
    """Lick Kast biases: OBSTYPE=DARK, OBJECT=Bias, EXPTIME=0."""
    features, confidences = header_features({"OBSTYPE": "DARK", "OBJECT": "Bias",
                                             "EXPTIME": 0})
    assert frame_type_of(features) == "bias" and features["object_hint_bias"] == 1.0
    assert confidences[FRAME_TYPE] == 0.5  # the keyword said DARK: one contradiction
    assert confidences[EXPOSURE] == 1.0
    dark, _ = header_features({"OBSTYPE": "DARK", "EXPTIME": 0.001})
    unknown_length, _ = header_features({"OBSTYPE": "DARK", "EXPTIME": "N/A"})
    assert frame_type_of(dark) == frame_type_of(unknown_length) == "dark"


@pytest.mark.parametrize("frame_type", ["DARK", "LIGHT", "FLAT"])
def test_zero_exposure_contradicts_an_exposed_frame(frame_type):
    _, consistent = header_features({"IMAGETYP": frame_type, "EXPTIME": 10})
    _, zero = header_features({"IMAGETYP": frame_type, "EXPTIME": 0})
    assert consistent[FRAME_TYPE] == 1.0 and 0 < zero[FRAME_TYPE] < 1


def test_long_bias_contradicts():
    _, short = header_features({"IMAGETYP": "BIAS", "EXPTIME": 0.001})
    _, long = header_features({"IMAGETYP": "BIAS", "EXPTIME": 30})
    assert short[FRAME_TYPE] == 1.0 and long[FRAME_TYPE] < 1.0


def test_object_agreeing_with_type_is_no_contradiction():
    features, confidences = header_features({"OBSTYPE": "LAMP-FLAT", "EXPTIME": 1,
                                             "OBJECT": "LAMPFLAT: W for 20h20"})
    assert features["object_hint_flat"] == 1 and confidences[FRAME_TYPE] == 1.0


@pytest.mark.parametrize("target, hints", [
    ("Bias", {"bias"}), ("zero", {"bias"}), ("Dark_300s", {"dark"}), ("Dome Flat", {"flat"}),
    ("Arcs", {"arc"}), ("Arc CuAr+CuNe", {"arc"}), ("WAVE", {"arc"}), ("Neon lamp", {"arc"}),
    ("ARC: Xe for LHS6328", {"arc"}), ("Sun", {"sun"}), ("Moon", {"moon"}),
    ("Jupiter", {"planet"}), ("saturn_2024", {"planet"}), ("Mercury lamp", {"arc"}),
    ("Mercury transit", {"planet"}), ("??", set()),
    # deep-sky catalogue designations, as capture programs write a sequence's target
    ("M 42", {"catalogue"}), ("m51  B  600s", {"catalogue"}), ("NGC4631", {"catalogue"}),
    ("IC_434", {"catalogue"}), ("Sh2-129", {"catalogue"}), ("Abell 21", {"catalogue"}),
    ("ARC: Ne for M 57", {"arc", "catalogue"}),
    # not one: Messier stops at 110; camera models, transients, stars, quasars
    ("M111", set()), ("ASI2600MM", set()), ("QHY268M", set()), ("AT 2019mtw", set()),
    ("LHS6328", set()), ("HE 0435-1223", set()), ("HD 12345", set()),
])
def test_object_hints(target, hints):
    features, _ = header_features({"OBJECT": target})
    found = {name[len("object_hint_"):] for name, value in features.items()
             if name.startswith("object_hint_") and value == 1}
    assert found == hints


def test_target_hints_come_from_the_file_name_when_the_header_names_no_target():
    name = "Light_M57_900.0s_Bin1_224MC_gain93_20230204-204115_14.4C_0032.fit"
    features, confidences = header_features({"IMAGETYP": "Light Frame"}, name)
    assert features["object_hint_catalogue"] == 1 and features["object_hint_planet"] == 0
    assert confidences[FRAME_TYPE] == 1.0  # the type still comes from the header
    named, _ = header_features({"IMAGETYP": "LIGHT", "OBJECT": "Jupiter"}, name)
    assert named["object_hint_planet"] == 1 and named["object_hint_catalogue"] == 0
    plain, _ = header_features({"IMAGETYP": "LIGHT"}, "frame_0001.fits")
    assert not any(plain[f"object_hint_{hint}"] for hint in OBJECT_HINTS)


def test_object_hints_are_nan_without_object():
    features, _ = header_features({"IMAGETYP": "LIGHT"})
    assert all(math.isnan(value) for name, value in features.items()
               if name.startswith("object_hint_"))
    assert features["frame_type_light"] == 1 and features["frame_type_dark"] == 0


# ------------------------------------------------------------------------------- exposure


@pytest.mark.parametrize("cards, seconds", [
    ({"EXPTIME": 10}, 10.0), ({"EXPTIME": "10"}, 10.0), ({"EXPTIME": "10.5 s"}, 10.5),
    ({"EXPTIME": "100ms"}, 0.1), ({"EXPTIME": "2 min"}, 120.0), ({"EXPOSURE": 5.0}, 5.0),
    ({"EXP_TIME": 3}, 3.0), ({"EXPOSURE_TIME": 7}, 7.0), ({"ITIME": 600}, 600.0),
    ({"EXPTIME": "1.5D2"}, 150.0), ({"EXPTIME": 0}, 0.0),
])
def test_exposure_conventions(cards, seconds):
    features, confidences = header_features(cards)
    assert features["exposure_s"] == pytest.approx(seconds)
    assert features["log10_exposure"] == pytest.approx(math.log10(1e-4 + seconds))
    assert confidences[EXPOSURE] == 1.0


@pytest.mark.parametrize("value", ["N/A", "", -5, "-1 s", float("nan"), "10 parsecs", True,
                                   None, 1e12])
def test_malformed_exposure_is_nan_with_reduced_confidence(value):
    features, confidences = header_features({"EXPTIME": value})
    assert math.isnan(features["exposure_s"]) and math.isnan(features["log10_exposure"])
    assert 0 < confidences[EXPOSURE] < 1


def test_missing_exposure_has_zero_confidence():
    features, confidences = header_features({"IMAGETYP": "LIGHT"})
    assert math.isnan(features["exposure_s"]) and confidences[EXPOSURE] == 0


def test_malformed_primary_falls_back_to_another_keyword():
    features, confidences = header_features({"EXPTIME": "N/A", "EXPOSURE": 12})
    assert features["exposure_s"] == 12.0 and 0.25 < confidences[EXPOSURE] < 1


def test_disagreeing_exposures_lower_confidence():
    features, confidences = header_features({"EXPTIME": 10, "EXPOSURE": 20})
    assert features["exposure_s"] == 10.0 and confidences[EXPOSURE] == 0.5
    _, agreeing = header_features({"EXPTIME": 10, "EXPOSURE": 10.0000001})
    assert agreeing[EXPOSURE] == 1.0


def test_elapsed_time_is_a_weaker_fallback_and_dark_time_is_separate():
    features, confidences = header_features({"TELAPSE": 65.0, "DARKTIME": 66.0})
    assert features["exposure_s"] == 65.0 and confidences[EXPOSURE] == 0.75
    assert features["dark_time_s"] == 66.0


# --------------------------------------------------------------------------------- sensor


@pytest.mark.parametrize("keyword", ["CCD-TEMP", "CCD_TEMP", "CCDTEMP", "TEMPERAT",
                                     "SENSOR-TEMP", "DET-TEMP", "DETTEMP"])
def test_sensor_temperature_keywords(keyword):
    features, _ = header_features({keyword: -15.2})
    assert features["sensor_temp_c"] == pytest.approx(-15.2)


@pytest.mark.parametrize("value, celsius", [
    (-10, -10.0), ("-10 C", -10.0), ("-10.5", -10.5), (213.15, -60.0), ("253.15 K", -20.0),
    (25.125, 25.125), (151.063, 151.063 - 273.15)])
def test_temperatures_in_celsius_or_kelvin(value, celsius):
    features, _ = header_features({"CCD-TEMP": value})
    assert features["sensor_temp_c"] == pytest.approx(celsius)


@pytest.mark.parametrize("value", [100, 999, -200, "hot", "70 C"])
def test_implausible_temperature_is_malformed(value):
    features, confidences = header_features({"CCD-TEMP": value})
    assert math.isnan(features["sensor_temp_c"]) and confidences[SENSOR] == pytest.approx(0.1)


@pytest.mark.parametrize("cards, binning", [
    ({"XBINNING": 2, "YBINNING": 2}, 2.0), ({"BINNING": "2x2"}, 2.0), ({"CCDSUM": "2 2"}, 2.0),
    ({"CCDXBIN": 3}, 3.0), ({"BINNING": 4}, 4.0), ({"XBINNING": 1, "YBINNING": 2},
                                                   math.sqrt(2)),
])
def test_binning_conventions(cards, binning):
    features, _ = header_features(cards)
    assert features["binning"] == pytest.approx(binning)


def test_full_sensor_group_and_share_confidence():
    cards = {"CCD-TEMP": -9.8, "SET-TEMP": -10.0, "GAIN": 120, "EGAIN": 0.8, "OFFSET": 30,
             "XBINNING": 1, "YBINNING": 1, "BITPIX": 16, "BAYERPAT": "RGGB"}
    features, confidences = header_features(cards)
    assert features["temp_delta_c"] == pytest.approx(0.2)
    assert features["gain"] == 120 and features["egain"] == 0.8 and features["offset"] == 30
    assert features["bitpix"] == 16 and features["has_bayer_pattern"] == 1
    assert confidences[SENSOR] == 1.0
    _, partial = header_features({**cards, "OFFSET": "n/a"})
    assert partial[SENSOR] == pytest.approx(0.9)  # a malformed slot counts half
    _, fewer = header_features({"CCD-TEMP": -9.8})
    assert fewer[SENSOR] == pytest.approx(0.2)


def test_pedestal_magnitude_is_the_offset():
    features, _ = header_features({"PEDESTAL": -500})
    assert features["offset"] == 500.0


# --------------------------------------------------------------------------------- optics


def test_optics_features():
    cards = {"FOCALLEN": 1000, "APTDIA": 200, "FILTER": "Ha", "OBJECT": "M 42",
             "TELESCOP": "C8", "INSTRUME": "ASI2600MM", "RA": "05:35:17", "DEC": "-05:23:28",
             "AIRMASS": 1.3}
    features, confidences = header_features(cards)
    assert features["focal_length_mm"] == 1000 and features["aperture_mm"] == 200
    assert features["focal_ratio"] == 5.0 and features["airmass"] == 1.3
    for flag in ("has_filter", "has_object", "has_telescope", "has_instrument", "has_pointing"):
        assert features[flag] == 1.0, flag
    assert features["has_wcs"] == 0 and features["has_spectro_keywords"] == 0
    assert confidences[OPTICS] == 1.0


def test_placeholders_and_malformed_optics_count_half():
    features, confidences = header_features({"OBJECT": "??", "FOCALLEN": "long"})
    assert features["has_object"] == 0 and math.isnan(features["focal_length_mm"])
    assert confidences[OPTICS] == pytest.approx(1 / 8)


def test_celestial_and_solar_wcs():
    sky = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 83.8, "CRVAL2": -5.4}
    assert header_features(sky)[0]["has_wcs"] == 1
    pixel = {"CTYPE1": "PIXEL", "CTYPE2": "PIXEL", "CRVAL1": 1.0, "CRVAL2": 1.0}
    assert header_features(pixel)[0]["has_wcs"] == 0
    sun = {"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CRVAL1": 0.0, "CRVAL2": 0.0}
    features, _ = header_features(sun)
    assert features["has_wcs"] == 1 and features["solar_hint"] == 1


@pytest.mark.parametrize("cards", [{"GRATING": "600/4310"}, {"GRISM": "Gr#11"},
                                   {"DISPAXIS": 1}, {"SLITWID": 1.0},
                                   {"ESO INS GRIS1 NAME": "Gr#11"}, {"APERTYPE": "SLIT"},
                                   {"CENWAVE": 6563.0}])
def test_spectro_keywords(cards):
    assert header_features(cards)[0]["has_spectro_keywords"] == 1


@pytest.mark.parametrize("cards", [{"INSTRUME": "TRACE"}, {"TELESCOP": "SDO/AIA"},
                                   {"TELESCOP": "Lunt LS60THa"}])
def test_solar_hint(cards):
    assert header_features(cards)[0]["solar_hint"] == 1


# ----------------------------------------------------------------------------- real frames

EXPECTED_REAL_TYPES = {
    "astropy-data__M13_blue_0001.fits": "light",
    "zeseestarstacker__Light_M 94_10.0s_IRCUT_20250326-212046.fit": "light",
    "photutils-datasets__M51.fits": "light",
    "ASPIRED__v_dark_1.fits.gz": "dark",
    "ASPIRED-example__coj2m002-en12-20200321-0023-w00.fits.fz": "flat",
    "ASPIRED-example__v_w_20180803_7_1_0_1.fits.gz": "flat",
    "ASPIRED-example__coj2m002-en12-20200321-0022-a00.fits.fz": "arc",
    "ASPIRED__v_a_20180810_13_1_0_1_arc.fits.gz": "arc",
    "rascal__EFOSC_spec_HeAr227_0005.fits": "arc",
    "rascal__int20180101_01355922.fits.fz": "arc",
    "ASPIRED__v_e_20180810_12_1_0_0_science.fits.gz": "light",
    "PypeIt__b27_science.fits.gz": "light",
}


@pytest.mark.realframes
def test_real_frame_headers(real_frames_dir):
    results = {}
    for path in real_frame_files(real_frames_dir):
        features, confidences = header_features(read_frame(path).header)
        assert_finite_or_nan(features, confidences)
        results[path.name] = features, confidences
    for name, kind in EXPECTED_REAL_TYPES.items():
        features, confidences = results[name]
        assert frame_type_of(features) == kind, name
        assert confidences[FRAME_TYPE] == 1.0 and confidences[EXPOSURE] == 1.0, name

    for bias in ("PypeIt__b21.fits.gz", "PypeIt__b22.fits.gz", "PypeIt__b23.fits.gz"):
        features, confidences = results[bias]
        assert features["object_hint_bias"] == 1 and features["exposure_s"] == 0
        assert frame_type_of(features) == "bias"  # OBSTYPE=DARK of zero length
        assert confidences[FRAME_TYPE] == 0.5
    dome, dome_confidence = results["PypeIt__b11_domeflat.fits.gz"]
    assert dome["object_hint_flat"] == 1 and dome_confidence[FRAME_TYPE] < 1
    arcs, _ = results["PypeIt__b1_arcs.fits.gz"]
    assert arcs["object_hint_arc"] == 1

    trace, trace_confidence = results[
        "sunpy-sample-data__trace_1998-05-19T22-21-43.000_171_1024.fits"]
    assert trace["solar_hint"] == 1 and trace_confidence[FRAME_TYPE] == 0
    _, jupiter_confidence = results["logitech-brio4k-telescope-adapter__jupiter.tif"]
    assert not jupiter_confidence.any()
    seestar, _ = results["zeseestarstacker__Light_M 94_10.0s_IRCUT_20250326-212046.fit"]
    assert seestar["sensor_temp_c"] == 25.125 and seestar["has_bayer_pattern"] == 1
    assert seestar["focal_length_mm"] == 250
    ids, _ = results["rascal__int20180101_01355922.fits.fz"]
    assert ids["sensor_temp_c"] == pytest.approx(151.063 - 273.15)  # CCDTEMP in Kelvin
    assert ids["has_spectro_keywords"] == 1 and ids["dark_time_s"] == pytest.approx(600.2, 1e-3)


# ------------------------------------------------------------------- file names as metadata

@pytest.mark.parametrize("name, cards", [
    # N.I.N.A.
    ("2022-01-15_22-57-06_BIAS_0.00s_0086.fits", {"IMAGETYP": "BIAS", "EXPTIME": "0.00 s"}),
    # ASIAIR / ASIStudio
    ("Dark_180.0s_Bin1_1600MM_gain180_20170919-192056_-10.1C_0047.fit",
     {"IMAGETYP": "DARK", "EXPTIME": "180.0 s", "CCD-TEMP": "-10.1", "GAIN": "180",
      "XBINNING": "1", "YBINNING": "1"}),
    # SharpCap, underscore decimals
    ("Bias_0_00025_secs_2016-05-11T23-45-22_010.fits.fz",
     {"IMAGETYP": "BIAS", "EXPTIME": "0.00025 secs"}),
    # Astro Photography Tool: one letter and a frame number first
    ("D_0012_ISO200_300s__13C.tiff", {"IMAGETYP": "DARK", "EXPTIME": "300 s", "CCD-TEMP": "13"}),
    ("M74_15sec_2x2_L_frame78.fits.gz", {"EXPTIME": "15 sec", "XBINNING": "2",
                                         "YBINNING": "2"}),
    ("zero001.fits", {"IMAGETYP": "BIAS"}),
    ("b11_domeflat.fits.gz", {"IMAGETYP": "FLAT"}),
    ("v_a_20180810_13_1_0_1_arc.fits.gz", {"IMAGETYP": "ARC"}),
    ("Twilight_03.fits", {"IMAGETYP": "FLAT"}),
    ("FlatDark_2s_003.fits", {"IMAGETYP": "DARK", "EXPTIME": "2 s"}),
])
def test_file_name_cards_read_capture_program_conventions(name, cards):
    found = file_name_cards(name)
    assert name.startswith(found.pop("OBJECT") + ".")
    assert found == cards


@pytest.mark.parametrize("name", ["r3015.fits", "M42_gain100_offset_30_001.fits", "img.tif",
                                  "Arcturus_0001.fits", "NGC7000_Ha.fits"])
def test_file_names_without_a_frame_type_do_not_invent_one(name):
    assert "IMAGETYP" not in file_name_cards(name)


def test_file_name_stands_in_at_half_confidence_only_where_the_header_is_silent():
    name = "Dark_180.0s_Bin1_gain180_-10.1C_0047.tiff"
    features, confidences = header_features({}, name)
    assert frame_type_of(features) == "dark" and features["exposure_s"] == 180.0
    assert features["sensor_temp_c"] == pytest.approx(-10.1)
    full = header_features({"IMAGETYP": "Dark", "EXPTIME": 180.0})[1]
    assert confidences[FRAME_TYPE] == pytest.approx(FILE_NAME_CONFIDENCE * full[FRAME_TYPE])
    assert confidences[EXPOSURE] == pytest.approx(FILE_NAME_CONFIDENCE * full[EXPOSURE])
    assert confidences[OPTICS] == 0
    # The header wins wherever it says something.
    features, confidences = header_features({"IMAGETYP": "LIGHT", "EXPTIME": 10.0}, name)
    assert frame_type_of(features) == "light" and features["exposure_s"] == 10.0
    assert confidences[FRAME_TYPE] == 1 and confidences[EXPOSURE] == 1
    # Without a name, or with an uninformative one, nothing changes.
    assert np.array_equal(header_features({})[1], header_features({}, "r3015.fits")[1])
