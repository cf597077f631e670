"""``skyshard sample``: the sample tree, its physics, formats, headers and broken files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import math
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.time import Time

from sample import (BAD_FILES, CLASSES, LABELS_FILE, UNREADABLE, SampleExistsError,
                    frame_rng, make_frame, plan_frame, write_bad_files, write_sample_tree)
from sample.cameras import CAMERAS, ZERO_LEVELS, draw_settings, read_out
from sample.frames import (FLEET, PROGRAM_WEIGHTS, draw_geometry, orient, programs_for,
                           stored_pattern)
from sample.headers import FRAME_TYPE_KEYS, PROGRAMS
from sample.planets import euv_corona
from sample.writers import CONTAINERS, LAYOUTS, FileFormat, encode, fits_bytes, write_frame
from skyshard.schema import DEFAULT_CLASSES, is_frame_file

TREE_PER_CLASS = 6

#: Plans (no pixels) per class for the statistics of the sample.
PLANS_PER_CLASS = 150


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_image(path: Path) -> np.ndarray:
    """First image of a FITS or TIFF file as float, as a reader would get it; raises when there
    is none."""
    if path.name.lower().endswith((".tif", ".tiff")):
        return tifffile.imread(path).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdus:
            for hdu in hdus:
                if hdu.is_image and hdu.data is not None and hdu.data.size:
                    return np.array(hdu.data, dtype=float)
    raise ValueError(f"{path.name}: no image")


def fits_header(path: Path) -> fits.Header:
    """The frame's cards as a reader sees them: the primary header updated by the header of
    the first image extension, when the image is not in the primary HDU."""
    with fits.open(path) as hdus:
        merged = hdus[0].header.copy()
        if hdus[0].data is None:
            image = next((h for h in hdus[1:] if h.is_image and h.header.get("NAXIS", 0) >= 2),
                         None)
            if image is not None:
                merged.update(image.header)
        return merged


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("sample") / "frames"
    return out, write_sample_tree(out, per_class=TREE_PER_CLASS, seed=0, bad_files=True)


@pytest.fixture(scope="module")
def plans() -> list:
    """Many frame plans (no pixels): :data:`PLANS_PER_CLASS` per class."""
    return [plan_frame(c, i, frame_rng(11, c, i)) for c in CLASSES
            for i in range(PLANS_PER_CLASS)]


def test_classes_match_the_project_default_label_set():
    assert CLASSES == DEFAULT_CLASSES


def test_tree_has_one_folder_per_class_with_the_frames(tree):
    out, paths = tree
    assert sorted(p.name for p in out.iterdir()) == sorted(CLASSES)
    per_class = Counter(p.parent.name for p in paths)
    assert per_class == {c: TREE_PER_CLASS for c in CLASSES}
    assert all(p.is_file() and is_frame_file(p.name) for p in paths)
    assert not list(out.rglob(".*.tmp"))


def test_same_seed_gives_identical_bytes_and_more_frames_keep_earlier_ones(tmp_path):
    first = write_sample_tree(tmp_path / "a", per_class=2, seed=5)
    again = write_sample_tree(tmp_path / "b", per_class=2, seed=5, jobs=2)
    bigger = write_sample_tree(tmp_path / "c", per_class=3, seed=5)
    other = write_sample_tree(tmp_path / "d", per_class=2, seed=6)
    relative = [p.relative_to(tmp_path / "a") for p in first]
    assert relative == [p.relative_to(tmp_path / "b") for p in again]
    assert [sha256(p) for p in first] == [sha256(p) for p in again]
    hashes_bigger = {p.relative_to(tmp_path / "c"): sha256(p) for p in bigger}
    assert all(hashes_bigger[r] == sha256(p) for r, p in zip(relative, first))
    assert not {sha256(p) for p in first} & {sha256(p) for p in other}


@pytest.mark.parametrize("compression", ["GZIP_1", "GZIP_2", "RICE_1"])
def test_tile_compressed_files_do_not_depend_on_the_clock(compression, monkeypatch):
    """gzip stamps the time into every compressed tile; a sample written a second later must
    still be the same bytes (its sha256 decides the export's split)."""
    data = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64)
    fmt = FileFormat("fits_u16", "fz", "uint16", ".fz", compression=compression,
                     layout="extension", header_in_image=True)
    written = []
    for clock in (1_000_000_000.0, 1_700_000_000.0):
        monkeypatch.setattr("time.time", lambda clock=clock: clock)
        written.append(fits_bytes(data, fits.Header({"EXPTIME": 1.0}), fmt))
    assert written[0] == written[1]
    with fits.open(io.BytesIO(written[0])) as hdus:
        assert np.array_equal(hdus[1].data, data)


# ----------------------------------------------------------------- nothing but physics decides


def _balanced_accuracy_alone(values: list, labels: np.ndarray) -> float:
    """Cross-validated balanced accuracy of a depth-3 decision tree that sees one property."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    if isinstance(values[0], str):
        codes = {v: i for i, v in enumerate(sorted(set(values)))}
        column = np.array([codes[v] for v in values], dtype=float)
    else:
        column = np.array(values, dtype=float)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(DecisionTreeClassifier(max_depth=3, random_state=0),
                             column[:, None], labels, cv=folds, scoring="balanced_accuracy")
    return float(scores.mean())


def test_no_nuisance_property_alone_predicts_the_class(plans):
    """Size, aspect, stored dtype, bit depth and zero level are drawn without the class: a
    shallow classifier on any one of them stays at chance (1/6).

    With n = 900 plans, an accuracy that owes nothing to the property has a standard error of
    sqrt(p (1 - p) / n) = 1.2 points around p = 1/6; the bound is four of them. The generator
    before this property was enforced (planetary frames small and 8-bit, classes with their own
    formats and cameras) scored 23..28 % here."""
    labels = np.array([CLASSES.index(p.class_name) for p in plans])
    chance = 1 / len(CLASSES)
    bound = chance + 4 * math.sqrt(chance * (1 - chance) / len(plans))
    nuisances = [p.nuisance() for p in plans]
    transforms = {"pixels": math.log, "aspect": math.log, "dtype": str, "bits": float,
                  "zero_level": float}
    scores = {name: _balanced_accuracy_alone([transform(n[name]) for n in nuisances], labels)
              for name, transform in transforms.items()}
    assert set(transforms) == set(nuisances[0])
    assert all(score < bound for score in scores.values()), (scores, bound)


def test_every_class_gets_the_whole_range_of_every_nuisance(plans):
    for class_name in CLASSES:
        mine = [p for p in plans if p.class_name == class_name]
        shapes = [p.geometry.stored_shape for p in mine]
        assert min(min(s) for s in shapes) <= 100, class_name
        assert max(r * c for r, c in shapes) >= 4_000_000, class_name
        assert max(r / c for r, c in shapes) >= 3 and max(c / r for r, c in shapes) >= 3
        assert {"uint8", "uint16", "int16", "int32", "float32"} <= {p.fmt.dtype for p in mine}
        assert any(p.fmt.normalized for p in mine) and any(p.fmt.scaled for p in mine)
        assert {8, 12, 14, 16} <= {p.settings.bits(p.camera) for p in mine}
        zeros = [p.zero_level for p in mine]
        assert min(zeros) < 50 and max(zeros) > 30_000, class_name
        assert {p.settings.zero for p in mine} == set(ZERO_LEVELS)
        assert {p.fmt.container for p in mine} == set(CONTAINERS) | {"tiff"}, class_name
        assert {p.fmt.layout for p in mine} == set(LAYOUTS), class_name
        turns = {p.geometry.orientation for p in mine}
        assert {0, 4} <= turns and turns & {1, 3, 6, 7} and turns & {2, 5}, class_name
        assert {p.geometry.mode for p in mine} == {"full", "trim", "roi", "cutout"}
        assert {p.camera.group for p in mine} == {"amateur", "observatory", "space"}
    assert {p.geometry.orientation for p in plans} == set(range(8))


def test_frames_range_from_cut_outs_to_the_largest_sensors():
    camera = CAMERAS["ZWO ASI6200MM Pro"]
    rng = np.random.default_rng(0)
    geometries = [draw_geometry(rng, camera) for _ in range(400)]
    pixels = [g.pixels for g in geometries]
    assert min(pixels) <= 64 * 200 and max(pixels) == camera.sensor[0] * camera.sensor[1]
    assert all(g.shape[0] <= camera.sensor[0] and g.shape[1] <= camera.sensor[1]
               or g.transposed for g in geometries)
    assert all(g.overscan == 0 for g in geometries)
    ccd = CAMERAS["e2v CCD42-40"]
    with_overscan = [draw_geometry(rng, ccd) for _ in range(200)]
    assert {g.overscan for g in with_overscan} == {0, ccd.overscan_px}
    assert not any(g.transposed for g in with_overscan if g.overscan)


def test_every_camera_is_driven_by_a_program_for_every_class():
    for name in FLEET:
        for class_name in CLASSES:
            weights = [PROGRAM_WEIGHTS[class_name][p] for p in programs_for(CAMERAS[name])]
            assert weights and max(weights) > 0, (name, class_name)


@pytest.mark.parametrize("orientation", range(8))
@pytest.mark.parametrize("shape", [(4, 6), (5, 6), (4, 7), (5, 7)])
def test_the_stored_bayer_pattern_follows_the_saved_transform(orientation, shape):
    pattern = "GBRG"
    mosaic = np.array([[pattern[(y % 2) * 2 + x % 2] for x in range(shape[1])]
                       for y in range(shape[0])])
    turned = orient(mosaic, orientation)
    assert stored_pattern(pattern, shape, orientation) == "".join(turned[:2, :2].ravel())


# ------------------------------------------------------------------------------ files on disk


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_container_and_layout_reads_back_through_the_exporter(container, layout,
                                                                    tmp_path):
    from exporter.readers import read_frame

    rows, columns = np.mgrid[0:37, 0:53]
    noise = np.random.default_rng(3).normal(0, 5, (37, 53))
    adu = np.rint(900 + 400 * rows + 300 * columns + noise).astype(np.int32)
    header = fits.Header([("IMAGETYP", "LIGHT"), ("EXPTIME", 30.0)])
    extension = {"fits": ".fits", "fits.gz": ".fits.gz", "fits.bz2": ".fits.bz2",
                 "fz": ".fz"}[container]
    for dtype, scaled in (("uint16", False), ("int32", False), ("float32", False),
                          ("int16", True)):
        if container == "fz" and scaled:
            continue
        fmt = FileFormat("x", container, dtype, extension, scaled=scaled, layout=layout,
                         extname="SCI" if layout != "primary" else None,
                         compression="RICE_1" if container == "fz" else None,
                         header_in_image=layout == "extension")
        path = tmp_path / f"{dtype}{extension}"
        write_frame(path, encode(adu, 65535, fmt), header, fmt)
        frame = read_frame(path)
        # Scaled 16 bits keep 1/65000 of the range; tile-compressed floats are quantised to a
        # fraction of their noise.
        tolerance = (adu.max() - adu.min()) / 65000 if scaled else (
            5.0 if (container == "fz" and dtype == "float32") else 0)
        assert frame.data.shape == adu.shape, (dtype, container, layout)
        assert np.abs(frame.data.astype(float) - adu).max() <= tolerance, (dtype, layout)
        assert frame.header["IMAGETYP"] == "LIGHT" and frame.header["EXPTIME"] == 30.0


def test_names_taken_twice_stay_frame_names():
    from sample.tree import unique_name

    taken: set[str] = set()
    for name in ("Bias_0001.fits.bz2", "Bias_0001.FITS.BZ2", "flat.fit.gz", "flat.fit.gz"):
        unique_name(name, taken)
    assert taken == {"bias_0001.fits.bz2", "bias_0001-2.fits.bz2", "flat.fit.gz",
                     "flat-2.fit.gz"}
    assert all(is_frame_file(name) for name in taken)


def test_files_read_back_as_planned_and_tiffs_have_no_fits_header(tree):
    _, paths = tree
    for path in paths:
        image = read_image(path)
        assert image.ndim in (2, 3)
        spatial = image.shape[1:] if image.shape[0] == 3 else image.shape[:2]  # FITS cube
        assert min(spatial) >= 64
        assert np.isfinite(image).all()
        if path.name.lower().endswith((".tif", ".tiff")):
            with tifffile.TiffFile(path) as tif:
                description = tif.pages[0].description or ""
            assert "SIMPLE" not in description and "IMAGETYP" not in description


def test_headers_follow_several_capture_program_conventions(plans):
    headers = [p.header for p in plans if p.header is not None]
    software = {str(h.get("SWCREATE", h.get("CREATOR", ""))).split()[0] for h in headers
                if "SWCREATE" in h or "CREATOR" in h}
    assert len(software) >= 4
    assert any("FRAME" in h for h in headers)
    assert any("OBSTYPE" in h for h in headers)
    assert any("CCDSUM" in h for h in headers) and any("XBINNING" in h for h in headers)
    assert any("EXPOSURE" in h for h in headers) and any("TEMPERAT" in h or "CCDTEMP" in h
                                                         for h in headers)
    values = {str(h["IMAGETYP"]) for h in headers if "IMAGETYP" in h}
    assert values & {"Dark Frame", "Bias Frame", "Flat Field", "Flat Frame", "Light Frame"}
    assert values & {"DARK", "BIAS", "FLAT", "LIGHT"}
    assert values & {"Dark", "Bias", "Flat", "Light"}
    for header in headers:
        assert Time(header["DATE-OBS"], format="fits", scale="utc")


def _plans_of(program: str, per_class: int = 25) -> list:
    return [plan_frame(c, i, frame_rng(12, c, i), program=program) for c in CLASSES
            for i in range(per_class)]


def test_headers_follow_professional_conventions(plans):
    iraf = {str(p.header.get("IMAGETYP")) for p in _plans_of("iraf") if p.header}
    assert {"zero", "dark", "flat", "object", "comp"} <= iraf
    eso = [p.header for p in _plans_of("eso") if p.header]
    types = {str(h.get("ESO DPR TYPE")) for h in eso}
    assert {"BIAS", "DARK", "OBJECT", "FLAT,LAMP"} <= types and types & {"WAVE,LAMP", "WAVE"}
    assert {"CALIB", "SCIENCE"} <= {str(h.get("ESO DPR CATG")) for h in eso}
    assert {"IMAGE", "SPECTRUM", "ECHELLE"} <= {str(h.get("ESO DPR TECH")) for h in eso}
    space = [p for p in _plans_of("space") if p.header]
    hst = [p for p in space if p.header.get("TELESCOP") == "HST"]
    assert {"EXT", "BIAS", "DARK", "FLAT", "WAVECAL"} <= {str(p.header.get("IMAGETYP"))
                                                          for p in hst}
    assert all({"FILETYPE", "OBSMODE", "TARGNAME"} <= set(p.header) for p in hst)
    assert {"IMAGING", "SPECTROSCOPIC"} <= {p.header.get("OBSTYPE") for p in hst}
    assert any(p.fmt.layout == "sci_err_dq" for p in hst)
    solar = [p for p in space if "WAVELNTH" in p.header]
    assert {"LIGHT", "DARK"} <= {p.header.get("IMG_TYPE") for p in solar}
    assert "sun_euv" in {p.subtype for p in solar if p.class_name == "planetary"}
    lamp_flats = [p for p in plans if p.class_name == "flats" and p.kind == "lampflat"]
    assert {"Tungsten", "LAMPFLAT"} <= {p.target for p in lamp_flats}
    assert "LAMPFLAT" in {str(p.header.get("OBSTYPE")) for p in lamp_flats if p.header}


def test_headers_are_missing_or_wrong_as_in_real_archives(plans):
    with_header = [p for p in plans if p.header is not None]
    assert all(p.header is None for p in plans if p.fmt.container == "tiff")
    typed = [p for p in with_header if p.program.name != "firecapture"]
    missing = [p for p in typed if "missing_type" in p.defects]
    assert 0.08 < len(missing) / len(typed) < 0.25
    assert all(not any(k in p.header for k in FRAME_TYPE_KEYS) for p in missing)
    calibration = [p for p in typed if p.kind in ("bias", "dark", "flat", "lampflat")]
    default_light = [p for p in calibration if "default_light" in p.defects]
    assert 0.04 < len(default_light) / len(calibration) < 0.2
    for plan in default_light:
        keys = plan.program.type_keys or FRAME_TYPE_KEYS
        values = [str(plan.header[k]).lower() for k in keys if k in plan.header]
        assert values and all(v.startswith(plan.program.light_value.lower()) for v in values)
    untyped = [p for p in with_header if not any(k in p.header for k in FRAME_TYPE_KEYS)]
    assert len(untyped) / len(with_header) > 0.15
    defects = Counter(d for p in with_header for d in p.defects)
    for name in ("wrong_type", "lowercase_type", "exptime_text", "exptime_ms",
                 "missing_exptime", "temperature_text", "missing_optics"):
        assert defects[name] > 0, name
    texts = [p.header["EXPTIME"] for p in with_header if "exptime_text" in p.defects
             and "EXPTIME" in p.header]
    assert texts and all(isinstance(t, str) for t in texts)
    assert {p.program.name for p in plans} == set(PROGRAMS)


def test_every_kind_of_frame_occurs(plans):
    subtypes = {(p.class_name, p.subtype) for p in plans}
    for wanted in [("flats", s) for s in ("panel", "sky", "dome", "internal", "lampflat",
                                          "echelle_flat")] + \
                  [("planetary", s) for s in ("sun", "sun_halpha", "granulation", "sun_euv",
                                              "moon", "jupiter")] + \
                  [("spectrum", s) for s in ("star", "arc", "echelle", "echelle_arc",
                                             "raster", "solar", "nebula")]:
        assert wanted in subtypes, wanted
    slits = [p.slit for p in plans if p.slit is not None]
    assert 0.35 < np.mean([s.vertical for s in slits]) < 0.65
    assert any(s.space for s in slits) and any(s.orders > 20 for s in slits)
    assert any(0 < s.orders <= 8 for s in slits)


# ------------------------------------------------------------------------------------ physics


def test_darks_carry_dark_current_hot_pixels_and_glow_above_bias():
    for name in ("ZWO ASI294MC Pro", "QHY268M", "SBIG ST-8300M", "Canon EOS 600D (modified)"):
        camera = CAMERAS[name]
        rng = np.random.default_rng(1)
        settings = dataclasses.replace(
            draw_settings(camera, rng, 0.0, shape=(300, 400), eight_bit=False, zero="native"),
            sensor_temp_c=5.0, binning=1)
        bias = read_out(camera, settings, None, (300, 400), np.random.default_rng(2))
        dark = read_out(camera, dataclasses.replace(settings, exptime_s=600.0), None,
                        (300, 400), np.random.default_rng(3))
        assert np.median(dark) > np.median(bias), name
        noise = np.std(bias)
        hot_bias = np.count_nonzero(bias > np.median(bias) + 8 * noise)
        hot_dark = np.count_nonzero(dark > np.median(dark) + 8 * noise)
        assert hot_dark > hot_bias + 3, name


def test_flats_are_bright_above_their_zero_level_and_bias_sits_on_it():
    for index in range(4):
        forced = dict(camera="QHY268M", program="nina", family="fits_u16", shape=(600, 800))
        flat = make_frame("flats", 0, index, subtype="panel", **forced)
        bias = make_frame("bias", 0, index, **forced)
        span = flat.plan.full_scale - flat.plan.zero_level
        assert 0.15 * span < np.median(flat.adu) - flat.plan.zero_level < 0.7 * span
        zero = bias.plan.zero_level
        noise = bias.plan.settings.read_noise_e / bias.plan.settings.e_per_adu
        assert abs(np.median(bias.adu) - zero) < 3 * noise + 2, (index, bias.plan.settings.zero)
        # Vignetting: corners darker than the centre.
        h, w = flat.adu.shape
        centre = np.median(flat.adu[h // 3:2 * h // 3, w // 3:2 * w // 3])
        corners = np.median(np.concatenate([flat.adu[:h // 8, :w // 8].ravel(),
                                            flat.adu[-h // 8:, -w // 8:].ravel()]))
        assert corners < centre


def test_a_high_zero_level_is_a_bias_not_a_flat():
    """A bias read around mid-scale (a bipolar converter) has the median of a flat but the
    noise of a bias: the level alone tells nothing."""
    forced = dict(camera="e2v CCD42-40", program="observatory", family="fits_f32",
                  shape=(100, 100))
    bias = next(f for f in (make_frame("bias", 7, i, **forced) for i in range(60))
                if f.plan.settings.zero == "mid")
    assert bias.plan.zero_level > 26_000 and bias.data.dtype == np.float32
    assert abs(np.median(bias.exposed) - bias.plan.zero_level) < 20
    assert np.std(bias.exposed) < 30


def test_planets_sit_on_a_large_dark_sky():
    from scipy.ndimage import median_filter

    for body in ("jupiter", "saturn", "mars"):
        for index in range(2):
            frame = make_frame("planetary", 0, index, subtype=body, family="fits_u16",
                               shape=(480, 640))
            image = frame.adu.astype(float)
            level = float(median_filter(image, 3).max())  # the body's peak, not a cosmic ray
            dark = np.mean(image < np.median(image) + 0.1 * (level - np.median(image)))
            assert dark > 0.5, (body, index, dark)
            assert level - frame.plan.zero_level > 0.3 * (frame.plan.full_scale
                                                          - frame.plan.zero_level)


def test_the_euv_corona_brightens_to_the_limb_and_fades_above_it():
    rho = np.linspace(0.0, 1.5, 3001)
    for scale_height in (0.015, 0.05, 0.09):
        profile = euv_corona(rho, scale_height)
        disc = profile[rho < 0.99]
        assert np.all(np.diff(disc) >= 0)  # limb brightening: rises all the way out
        assert profile[rho < 1.0].max() > 1.5 * profile[0]
        peak = rho[np.argmax(profile)]
        assert 0.99 < peak < 1.01  # brightest just at the limb, where the path is longest
        above = profile[rho > 1.01]
        assert np.all(np.diff(above) <= 0) and above[-1] < 0.1 * profile.max()


def test_solar_views_fill_the_frame_or_show_the_disc():
    granulation = make_frame("planetary", 1, 0, subtype="granulation", family="fits_u16",
                             shape=(300, 400))
    image = granulation.exposed.astype(float) - granulation.plan.zero_level
    assert np.mean(image < 0.1 * np.percentile(image, 99)) < 0.05  # no limb, no dark sky
    contrast = np.std(image) / np.mean(image)
    assert 0.03 < contrast < 0.6
    euv = make_frame("planetary", 1, 0, subtype="sun_euv", camera="e2v CCD203-82 (space)",
                     family="fits_u16", shape=(512, 512))
    assert euv.plan.band in (94, 131, 171, 193, 195, 211, 284, 304, 335)
    assert euv.plan.header["WAVELNTH"] == euv.plan.band


def _profile_contrast(image: np.ndarray, axis: int) -> float:
    """Peak over median of the background-subtracted mean profile along ``axis``."""
    profile = image.mean(axis=axis)
    profile = profile - np.percentile(profile, 5)
    return float(profile.max() / max(np.median(profile), 1e-9))


def test_spectra_have_structure_along_one_axis():
    for index in range(4):
        arc = make_frame("spectrum", 0, index, subtype="arc", family="fits_u16",
                         shape=(400, 600))
        star = make_frame("spectrum", 0, index, subtype="star", family="fits_u16",
                          shape=(400, 600))
        vertical = arc.plan.slit.vertical
        # Arc lines: sharp peaks along the dispersion axis (averaging across the slit).
        assert _profile_contrast(arc.exposed, 1 if vertical else 0) > 3
        vertical = star.plan.slit.vertical
        # A stellar trace: a narrow band across the spatial axis.
        assert _profile_contrast(star.exposed, 0 if vertical else 1) > 3


def test_echelle_frames_stack_many_orders():
    for index in range(3):
        frame = make_frame("spectrum", 2, index, subtype="echelle", family="fits_u16",
                           shape=(800, 800))
        orders = frame.plan.slit.orders
        image = frame.exposed.astype(float)
        across = image.mean(axis=0 if frame.plan.slit.vertical else 1)
        middle = across[len(across) // 10: -len(across) // 10]
        level = np.percentile(middle, 50)
        peaks = np.count_nonzero((middle[1:-1] > middle[:-2]) & (middle[1:-1] >= middle[2:])
                                 & (middle[1:-1] > level))
        assert orders >= 2 and peaks >= min(orders, 30) // 2, (orders, peaks)


def test_deep_sky_has_stars_and_sky():
    for index in range(3):
        frame = make_frame("deep_sky", 0, index, family="fits_u16", camera="ZWO ASI2600MM Pro",
                           shape=(600, 800))
        image = frame.adu.astype(float)
        sky = np.median(image)
        noise = 1.4826 * np.median(np.abs(image - sky))
        assert np.count_nonzero(image > sky + 20 * noise) > 20
        assert sky > frame.plan.zero_level


def test_bad_files_fail_to_read_where_intended(tmp_path):
    written = write_bad_files(tmp_path)
    assert set(written) == set(BAD_FILES)
    assert all(is_frame_file(p.name) for p in written.values())
    for kind, path in written.items():
        if kind in UNREADABLE or kind in ("table_only", "header_only"):
            with pytest.raises(Exception):
                read_image(path)
    assert written["empty"].stat().st_size == 0
    with pytest.raises(Exception):
        gzip.decompress(written["broken_gzip"].read_bytes())
    assert np.isnan(read_image(written["all_nan"])).all()
    with fits.open(written["table_only"]) as hdus:
        assert isinstance(hdus[1], fits.BinTableHDU)


def test_bad_files_join_the_tree_when_asked(tree):
    out, paths = tree
    names = {p.name for p in out.rglob("*") if p.is_file()}
    assert set(BAD_FILES.values()) <= names
    assert len(names) == len(paths) + len(BAD_FILES)


def test_unlabeled_tree_is_flat_with_truth_and_differs_from_the_labelled_one(tmp_path, tree):
    paths = write_sample_tree(tmp_path / "night", per_class=2, seed=0, unlabeled=True)
    assert all(p.parent == tmp_path / "night" for p in paths)
    lines = (tmp_path / "night" / LABELS_FILE).read_text().splitlines()
    assert lines[0] == "file,class"
    truth = dict(line.split(",") for line in lines[1:])
    assert set(truth) == {p.name for p in paths}
    assert Counter(truth.values()) == {c: 2 for c in CLASSES}
    labelled = {sha256(p) for p in tree[1]}
    assert not {sha256(p) for p in paths} & labelled


def test_refuses_a_non_empty_folder_unless_overwriting(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SampleExistsError):
        write_sample_tree(tmp_path, per_class=1, classes=["bias"])
    paths = write_sample_tree(tmp_path, per_class=1, classes=["bias"], overwrite=True)
    assert len(paths) == 1 and (tmp_path / "notes.txt").read_text() == "mine"


def test_command_line(tmp_path, capsys):
    from cli.main import main

    out = tmp_path / "s"
    argv = ["sample", str(out), "--per-class", "1", "--seed", "4", "--classes", "bias,darks"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bias", "darks"]
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"skyshard sample: error: {out} is not empty")
    assert main(argv + ["--overwrite", "--bad-files"]) == 0
    with pytest.raises(SystemExit):
        main(["sample", str(out), "--classes", "galaxies"])


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    import cli.sample
    from cli.main import main

    def interrupted(args, extra):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.sample, "run", interrupted)
    assert main(["sample", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("skyshard sample: interrupted; ") and "--overwrite" in err
    assert "Traceback" not in err

    def beam_interrupted(args, extra):  # how Apache Beam re-raises Ctrl-C from a transform
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("KeyboardInterrupt [while running 'Extract/ParDo']") from exc

    monkeypatch.setattr(cli.sample, "run", beam_interrupted)
    assert main(["sample", str(tmp_path / "s")]) == 130

    def failed(args, extra):
        raise RuntimeError("a real failure")

    monkeypatch.setattr(cli.sample, "run", failed)
    with pytest.raises(RuntimeError, match="a real failure"):
        main(["sample", str(tmp_path / "s")])


def test_beams_own_report_of_a_ctrl_c_is_not_logged_twice():
    import logging

    from skyshard.runtime import _drop_interrupt_report

    def record(message, exc=None):
        return logging.LogRecord("apache_beam.runners.common", logging.ERROR, __file__, 1,
                                 message, None, (type(exc), exc, None) if exc else None)

    assert not _drop_interrupt_report(record("KeyboardInterrupt [while running 'Extract']"))
    assert not _drop_interrupt_report(record("error", KeyboardInterrupt()))
    assert _drop_interrupt_report(record("ValueError [while running 'Extract']",
                                         ValueError("x")))


def test_command_module_is_import_light():
    code = ("import sys, cli.sample; "
            "print(any(m in sys.modules for m in ('numpy', 'astropy', 'tensorflow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
