"""Pixel statistics (exporter.features.pixel_stats), sensor signatures (exporter.features.sensor)
and domain features (exporter.features.domain and the modules it assembles).

Frames are simulated with numpy: a bias, a short dark with hot pixels, a vignetted flat, a star
field, a planet on black, slit spectra (trace and arc lines). The real archive frames in
../shared/real-frames are used when present.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from exporter.features.domain import DOMAIN_FEATURE_NAMES, domain_features
from exporter.features.pixel_stats import (PIXEL_FEATURE_NAMES, SCALE_INVARIANT_FEATURES,
                                           pixel_features)
from exporter.features.sensor import SENSOR_FEATURE_NAMES, recover_adu, sensor_features
from exporter.frame import FrameError, RawFrame
from exporter.preprocessing import preprocess_image

FULL_SCALE_16 = 65535.0


# --------------------------------------------------------------------------- simulated frames

def make_frame(data, full_scale=FULL_SCALE_16, bits=16, header=None) -> RawFrame:
    return RawFrame(np.asarray(data), dict(header or {}),
                    {"full_scale": full_scale, "bits": bits, "planes": 1, "reduction": "none",
                     "original_shape": np.shape(data)})


def as_uint16(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 65535).astype(np.uint16)


def bias(rng, shape=(300, 400)) -> np.ndarray:
    """Offset 300 ADU, read noise 5 ADU."""
    return as_uint16(rng.normal(300.0, 5.0, shape))


def dark(rng, shape=(300, 400), hot_fraction=1e-3) -> np.ndarray:
    """Bias + 20 ADU dark current (with its shot noise) + hot pixels of 200..5000 ADU."""
    image = rng.normal(320.0, math.hypot(5.0, math.sqrt(20.0)), shape)
    hot = rng.choice(image.size, int(hot_fraction * image.size), replace=False)
    image.flat[hot] += rng.uniform(200.0, 5000.0, hot.size)
    return as_uint16(image)


def flat(rng, shape=(300, 400)) -> np.ndarray:
    """30000 ADU in the centre, 35 % vignetting in the corners, shot noise."""
    y, x = np.indices(shape)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    level = 30000.0 * (1 - 0.35 * ((y - cy) ** 2 + (x - cx) ** 2) / (cy ** 2 + cx ** 2))
    return as_uint16(rng.normal(level, np.sqrt(level)))


def gaussian_spot(shape, cy, cx, sigma):
    y, x = np.indices(shape)
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))


def star_field(rng, shape=(384, 384), n_stars=120, fwhm=3.5) -> np.ndarray:
    """Sky 800 ADU, noise 8 ADU, ``n_stars`` Gaussian stars of 150..5000 ADU."""
    image = rng.normal(800.0, 8.0, shape)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    ys, xs = np.indices((25, 25))
    for cy, cx, amp in zip(rng.uniform(0, shape[0], n_stars), rng.uniform(0, shape[1], n_stars),
                           rng.uniform(150.0, 5000.0, n_stars)):
        y0, x0 = int(cy) - 12, int(cx) - 12
        spot = amp * np.exp(-((ys + y0 - cy) ** 2 + (xs + x0 - cx) ** 2) / (2 * sigma ** 2))
        ty, tx = slice(max(y0, 0), min(y0 + 25, shape[0])), slice(max(x0, 0), min(x0 + 25,
                                                                                   shape[1]))
        image[ty, tx] += spot[ty.start - y0:ty.stop - y0, tx.start - x0:tx.stop - x0]
    return image


def planet(rng, shape=(360, 480), radius=60) -> np.ndarray:
    """A limb-darkened disk of ~40000 ADU centred on black (200 ADU, noise 6 ADU)."""
    y, x = np.indices(shape)
    r = np.hypot(y - shape[0] / 2, x - shape[1] / 2) / radius
    disk = np.where(r < 1, 40000.0 * np.clip(1 - r ** 2, 0, 1) ** 0.25, 0.0)
    disk *= 1 + 0.05 * np.sin(y / 4.0)  # cloud belts
    return as_uint16(rng.normal(200.0 + disk, 6.0 + 0.01 * disk))


def trace_spectrum(rng, shape=(240, 960)) -> np.ndarray:
    """A standard star's horizontal trace (FWHM ~6 px at row 110) on 500 ADU, noise 6 ADU."""
    y, x = np.indices(shape)
    continuum = 3000.0 * np.exp(-((x - shape[1] * 0.45) / (shape[1] * 0.45)) ** 2)
    image = rng.normal(500.0, 6.0, shape)
    image += continuum * np.exp(-((y - 110.0) / 2.5) ** 2 / 2)
    return image


def arc_spectrum(rng, shape=(240, 960), n_lines=20) -> np.ndarray:
    """``n_lines`` narrow emission lines (sigma 1.5 px) along x, spanning most of the slit."""
    y, x = np.indices(shape)
    image = rng.normal(500.0, 6.0, shape)
    centres = np.linspace(30, shape[1] - 30, n_lines) + rng.uniform(-5, 5, n_lines)
    for c, amp in zip(centres, rng.uniform(500.0, 20000.0, n_lines)):
        image += amp * np.exp(-((x - c) / 1.5) ** 2 / 2) * (np.abs(y - shape[0] / 2) < 100)
    return image


def all_features(frame: RawFrame) -> dict[str, float]:
    return {**pixel_features(frame), **sensor_features(frame), **domain_features(frame)}


def assert_finite_or_nan(features: dict[str, float]) -> None:
    for name, value in features.items():
        assert isinstance(value, float), name
        assert not math.isinf(value), name


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


# --------------------------------------------------------------------------- contract

def test_keys_are_the_names_in_order(rng):
    frame = make_frame(dark(rng))
    assert tuple(pixel_features(frame)) == PIXEL_FEATURE_NAMES
    assert tuple(domain_features(frame)) == DOMAIN_FEATURE_NAMES
    assert not set(PIXEL_FEATURE_NAMES) & set(DOMAIN_FEATURE_NAMES)
    assert len(set(PIXEL_FEATURE_NAMES)) == len(PIXEL_FEATURE_NAMES)
    assert set(SCALE_INVARIANT_FEATURES) <= set(PIXEL_FEATURE_NAMES)


def test_geometry_of_the_frame(rng):
    f = pixel_features(make_frame(bias(rng, (300, 400))))
    assert (f["width"], f["height"]) == (400.0, 300.0)
    assert f["log10_pixels"] == pytest.approx(math.log10(120000))
    assert f["log10_aspect"] == pytest.approx(math.log10(4 / 3))
    assert (f["bits"], f["is_float"], f["planes"], f["range_known"]) == (16.0, 0.0, 1.0, 1.0)
    assert f["full_scale_log10"] == pytest.approx(math.log10(FULL_SCALE_16))


def test_input_is_not_modified_and_memmaps_work(rng, tmp_path):
    data = dark(rng).astype(">u2")  # big-endian, as FITS stores it
    path = tmp_path / "frame.raw"
    data.tofile(path)
    mapped = np.memmap(path, dtype=">u2", mode="r", shape=data.shape)
    features = all_features(make_frame(mapped))
    assert np.array_equal(mapped, data)
    assert features == all_features(make_frame(data.astype(np.uint16)))


def test_not_an_image_is_a_frame_error():
    for data in (np.zeros(10), np.zeros((2, 3, 4)), np.zeros((0, 5))):
        with pytest.raises(FrameError) as err:
            pixel_features(make_frame(data))
        assert err.value.stage == "features"
        with pytest.raises(FrameError):
            domain_features(make_frame(data))


# --------------------------------------------------------------------------- class pairs

def test_bias_and_dark_are_separated_by_level_and_hot_pixels(rng):
    b = all_features(make_frame(bias(rng)))
    d = all_features(make_frame(dark(rng)))
    assert b["median_rel"] == pytest.approx(300 / FULL_SCALE_16, rel=0.01)
    assert d["median_log10"] - b["median_log10"] > 0.02  # 320 vs 300 ADU
    assert b["pixel_noise_log10"] == pytest.approx(math.log10(1 + 5.0), abs=0.03)
    assert b["hot_pixel_fraction_log10"] < -5  # none, up to noise
    assert d["hot_pixel_fraction_log10"] == pytest.approx(-3.0, abs=0.3)  # 0.1 %
    assert d["max_log10"] > b["max_log10"] + 0.5
    # Hot pixels are peaks but not stars.
    assert d["point_source_fraction"] < 0.1
    assert d["peak_sharpness"] > 0.5
    assert b["star_count_log10"] < 0.5 and d["star_count_log10"] < 0.5


def test_flat_has_high_level_and_radial_falloff(rng):
    f = all_features(make_frame(flat(rng)))
    b = all_features(make_frame(bias(rng)))
    assert f["median_rel"] > 0.35
    assert f["radial_falloff"] > 0.05 and abs(b["radial_falloff"]) < 0.01
    assert f["radial_falloff_sigma_log"] > 1.5  # > 30 noise sigmas centre to corner
    assert f["pixel_noise_to_mad_std"] < 0.3 < b["pixel_noise_to_mad_std"]
    assert f["background_structure_sigma_log"] > b["background_structure_sigma_log"] + 0.5
    assert f["star_count_log10"] < 0.5
    assert math.isnan(f["dispersion_axis"])


def test_planet_on_black_has_dark_area_and_a_round_sharp_disk(rng):
    shape, radius = (360, 480), 60
    p = all_features(make_frame(planet(rng, shape, radius)))
    disk_fraction = math.pi * radius ** 2 / (shape[0] * shape[1])
    assert p["dark_area_fraction"] > 0.8
    assert p["bright_fraction"] == pytest.approx(disk_fraction, rel=0.3)
    assert p["radial_falloff"] > 0.9
    assert p["disk_area_fraction"] == pytest.approx(disk_fraction, rel=0.3)
    assert p["disk_circularity"] > 0.8
    assert p["disk_edge_sharpness"] > 0.7
    assert p["upper_tail_sigma_log"] > 3
    f = all_features(make_frame(flat(rng)))
    assert f["dark_area_fraction"] < 0.1
    assert f["disk_edge_sharpness"] < p["disk_edge_sharpness"]


def test_horizontal_trace_disperses_along_columns_and_rotated_along_rows(rng):
    image = trace_spectrum(rng)
    h = domain_features(make_frame(image))
    assert h["row_concentration"] > 0.8 and h["col_concentration"] < 0.6
    assert h["dispersion_axis"] == 1.0
    assert h["elongation"] > 0.5
    v = domain_features(make_frame(np.ascontiguousarray(image.T)))
    assert v["col_concentration"] > 0.8 and v["row_concentration"] < 0.6
    assert v["dispersion_axis"] == 0.0
    p = pixel_features(make_frame(image))
    assert p["row_col_structure_log_ratio"] > 0.5


def test_arc_lines_are_counted_along_the_dispersion_axis(rng):
    n_lines = 20
    image = arc_spectrum(rng, n_lines=n_lines)
    h = domain_features(make_frame(image))
    assert h["dispersion_axis"] == 1.0
    assert h["emission_lines"] == pytest.approx(n_lines, rel=0.3)
    assert h["col_concentration"] > 0.8
    v = domain_features(make_frame(np.rot90(image)))
    assert v["dispersion_axis"] == 0.0
    assert v["emission_lines"] == pytest.approx(n_lines, rel=0.3)


def test_star_field_gives_star_count_and_fwhm(rng):
    n_stars, fwhm = 120, 3.5
    s = all_features(make_frame(star_field(rng, n_stars=n_stars, fwhm=fwhm)))
    assert s["star_fwhm"] == pytest.approx(fwhm, rel=0.3)
    assert 10 ** s["star_count_log10"] - 1 == pytest.approx(n_stars, rel=0.4)
    assert s["point_source_fraction"] > 0.7
    assert s["star_roundness"] > 0.6
    assert s["peak_sharpness"] < 0.3
    assert s["bright_fraction"] > 0.005
    assert math.isnan(s["dispersion_axis"])
    wide = domain_features(make_frame(star_field(rng, n_stars=n_stars, fwhm=6.0)))
    assert wide["star_fwhm"] == pytest.approx(6.0, rel=0.3)


# --------------------------------------------------------------------------- structure

def test_column_pattern_and_row_banding(rng):
    image = rng.normal(300.0, 5.0, (300, 400))
    columns = image + rng.normal(0.0, 5.0, (1, 400))  # fixed offset per column
    c = pixel_features(make_frame(columns.astype(np.float32)))
    assert c["col_structure_sigma_log"] > c["row_structure_sigma_log"] + 0.5
    assert c["row_col_structure_log_ratio"] < -0.5
    assert c["col_banding_sigma_log"] > 0.8
    rows = image + rng.normal(0.0, 5.0, (300, 1))
    r = pixel_features(make_frame(rows.astype(np.float32)))
    assert r["row_banding_sigma_log"] > 0.8 > r["col_banding_sigma_log"]


def test_gradient_is_measured_relative_to_level_and_noise(rng):
    y, x = np.indices((300, 400))
    image = rng.normal(1000.0 + 0.5 * x, 5.0)  # 200 ADU across the frame
    g = pixel_features(make_frame(image.astype(np.float32)))
    assert g["gradient_level_log10"] == pytest.approx(math.log10(200 / 1100), abs=0.1)
    assert g["gradient_sigma_log"] == pytest.approx(math.log10(1 + 200 / 5), abs=0.1)


def test_saturation_and_clipping_fractions(rng):
    image = rng.integers(20, 200, (200, 300)).astype(np.uint8)
    image[:20] = 255  # 10 % saturated
    image[20:60] = 0  # 20 % clipped at zero
    f = pixel_features(make_frame(image, full_scale=255.0, bits=8))
    assert f["saturated_fraction"] == pytest.approx(0.1, abs=0.01)
    assert f["zero_fraction"] == pytest.approx(0.2, abs=0.01)
    assert f["min_clipped_fraction"] == pytest.approx(0.2, abs=0.01)
    assert f["max_clipped_fraction"] == pytest.approx(0.1, abs=0.01)


def test_range_of_float_data():
    rng = np.random.default_rng(1)
    unit = rng.uniform(0.0, 0.5, (100, 100)).astype(np.float32)
    f = pixel_features(make_frame(unit, full_scale=math.nan, bits=32))
    assert f["range_known"] == 0.5 and f["full_scale_log10"] == 0.0  # [0, 1] convention
    adu = unit * 3000.0
    f = pixel_features(make_frame(adu, full_scale=math.nan, bits=32))
    assert f["range_known"] == 0.0 and math.isnan(f["saturated_fraction"])
    assert f["p99_9_rel"] == pytest.approx(1.0)
    f = pixel_features(make_frame(adu, full_scale=math.nan, bits=32,
                                  header={"SATURATE": 1200.0}))
    assert f["range_known"] == 0.5
    assert f["saturated_fraction"] == pytest.approx(0.2, abs=0.02)


def test_relative_features_are_scale_invariant(rng):
    """Doubling the ADU and the full scale (another gain) leaves relative features unchanged."""
    image = (star_field(rng, (256, 256), n_stars=40) + dark(rng, (256, 256)) - 300.0)
    image = image.astype(np.float32)
    once = all_features(make_frame(image, full_scale=FULL_SCALE_16))
    twice = all_features(make_frame(image * np.float32(2), full_scale=2 * FULL_SCALE_16))
    for name in SCALE_INVARIANT_FEATURES + DOMAIN_FEATURE_NAMES:
        assert twice[name] == pytest.approx(once[name], rel=1e-6, abs=1e-9, nan_ok=True), name
    assert twice["median_log10"] > once["median_log10"]


# --------------------------------------------------------------------------- degenerate input

DEGENERATE = {
    "all_nan": np.full((40, 50), np.nan, np.float32),
    "constant": np.full((64, 64), 1000, np.uint16),
    "zeros_3x3": np.zeros((3, 3), np.float32),
    "ramp_3x3": np.arange(9, dtype=np.uint16).reshape(3, 3),
    "row_1xN": np.linspace(0, 100, 700).reshape(1, 700),
    "column_Nx1": np.random.default_rng(0).normal(5, 1, (900, 1)),
    "single_pixel": np.array([[7.0]]),
    "inf_values": np.array([[1, np.inf, 3], [np.nan, -np.inf, 2], [4, 5, 6]]),
    "int16_negative": np.random.default_rng(0).integers(-500, 500, (120, 100)).astype(np.int16),
    "huge_range": np.random.default_rng(0).normal(0, 1e30, (100, 100)),
    "tiny_range": np.random.default_rng(0).normal(0, 1e-30, (100, 100)),
    "float32_extremes": np.where(np.indices((80, 80)).sum(0) % 2, 3e38, -3e38).astype(np.float32),
    "mostly_nan": np.where(np.random.default_rng(0).random((200, 200)) < 0.99, np.nan, 1.0),
    "bool": np.random.default_rng(0).random((50, 50)) > 0.5,
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_frames_give_finite_or_nan_features(name):
    data = DEGENERATE[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        features = all_features(make_frame(data, full_scale=math.nan))
    assert list(features) == list(PIXEL_FEATURE_NAMES + SENSOR_FEATURE_NAMES
                                  + DOMAIN_FEATURE_NAMES)
    assert_finite_or_nan(features)
    assert features["width"] == data.shape[1] and features["height"] == data.shape[0]


def test_all_nan_frame_has_nan_levels():
    features = all_features(make_frame(DEGENERATE["all_nan"]))
    assert features["nonfinite_fraction"] == 1.0
    assert math.isnan(features["median_rel"]) and math.isnan(features["star_fwhm"])


def test_constant_frame_has_no_noise_no_stars_no_disk():
    features = all_features(make_frame(DEGENERATE["constant"]))
    assert features["median_rel"] == pytest.approx(1000 / FULL_SCALE_16)
    assert features["pixel_noise_rel"] == 0.0
    assert features["hot_pixel_fraction_log10"] == -6.0
    assert features["disk_area_fraction"] == 0.0
    assert features["emission_lines"] == 0.0


# --------------------------------------------------------------------------- real frames

def read_real_frame(path) -> RawFrame:
    """First 2-D image of a FITS file (first plane of a cube) or a TIFF (RGB -> mean)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        data = tifffile.imread(path)
        full_scale = float(np.iinfo(data.dtype).max) if data.dtype.kind in "ui" else math.nan
        planes = data.shape[-1] if data.ndim == 3 else 1
        if data.ndim == 3:
            data = data.mean(axis=-1, dtype=np.float32)
        return RawFrame(data, {}, {"full_scale": full_scale, "planes": planes})
    from astropy.io import fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdus:
            hdu = next(h for h in hdus if h.data is not None and h.data.ndim >= 2)
            data, header = np.array(hdu.data), dict(hdu.header)
    while data.ndim > 2:
        data = data[0]
    full_scale = float(np.iinfo(data.dtype).max) if data.dtype.kind in "ui" else math.nan
    return RawFrame(data, header, {"full_scale": full_scale, "planes": 1})


@pytest.mark.realframes
def test_real_frames(real_frames_dir):
    from conftest import real_frame_files

    paths = real_frame_files(real_frames_dir)
    assert paths
    axis_found, line_found = {}, {}
    for path in paths:
        frame = read_real_frame(path)
        features = all_features(frame)
        assert_finite_or_nan(features)
        assert not math.isnan(features["median_rel"]), path.name
        image = preprocess_image(frame.data)
        assert image.shape == (224, 224, 1) and image.dtype == np.float16
        assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
        assert image.max() > image.min(), path.name
        axis_found.setdefault(path.parent.name, []).append(
            not math.isnan(features["dispersion_axis"]))
        line_found.setdefault(path.parent.name, []).append(
            not math.isnan(features["line_axis_offset_deg"]))
        if path.parent.name == "spectrum" and line_found["spectrum"][-1]:
            # a spectrograph's trace and lines run within a few degrees of a detector axis
            assert features["line_axis_offset_deg"] <= 5.0, path.name
            assert features["line_flank_stars_log"] < 1.0, path.name
    # Slit spectra show a dispersion axis; deep-sky frames almost never do.
    if "spectrum" in axis_found:
        assert np.mean(axis_found["spectrum"]) >= 0.8
    if "deep_sky" in axis_found:
        assert np.mean(axis_found["deep_sky"]) <= 0.2
    # and a straight line; the real deep-sky frames have no trail
    if "spectrum" in line_found:
        assert np.mean(line_found["spectrum"]) >= 0.8
    if "deep_sky" in line_found:
        assert np.mean(line_found["deep_sky"]) <= 0.2


# --------------------------------------------------------------------------- sensor signatures

def test_value_lattice_of_shifted_and_8_bit_data(rng):
    from exporter.features.sampling import quantum

    native = np.clip(rng.normal(256, 6, (200, 300)), 0, 4095).astype(np.uint16)
    assert quantum(native) == 1
    assert quantum(native * 16) == 16                         # 12-bit ADC in 16-bit words
    shifted = (native * 16).astype(np.uint16)
    shifted[0, :5] = 65535                                     # driver-clipped saturation
    assert quantum(shifted) == 16
    assert quantum((native // 16).astype(np.uint16) * 256) == 256  # 8-bit mode in 16-bit words
    assert quantum(native.astype(np.float32)) == 1             # ADU written as floats
    assert quantum(rng.normal(0, 1, (50, 50))) == 0            # continuous floats
    features = sensor_features(make_frame(native * 16))
    assert features["quantum_log2"] == 4
    assert features["native_noise_log10"] == pytest.approx(
        sensor_features(make_frame(native))["native_noise_log10"], abs=0.05)


def test_normalised_floats_are_scaled_back_to_adu(rng):
    for scale, level in ((65535.0, 300.0), (255.0, 40.0)):
        adu = np.round(rng.normal(level, 5.0, (300, 400)))
        stored = (adu / scale).astype(np.float32)
        frame = recover_adu(make_frame(stored, full_scale=math.nan, bits=32))
        assert frame.source["full_scale"] == scale
        assert frame.source["adu_recovered"] == "normalised"
        np.testing.assert_allclose(frame.data, adu, atol=0.02)
    as_floats = recover_adu(make_frame(bias(rng).astype(np.float32), full_scale=math.nan))
    assert as_floats.source["full_scale"] == 65535.0
    assert as_floats.source["adu_recovered"] == "integer_valued"
    continuous = make_frame(rng.uniform(0, 1, (80, 80)).astype(np.float32), full_scale=math.nan)
    assert recover_adu(continuous) is continuous
    known = make_frame(adu)
    assert recover_adu(known) is known


def test_hot_pixels_and_cosmic_rays_make_the_tails_one_sided(rng):
    quiet = sensor_features(make_frame(bias(rng)))
    hot = sensor_features(make_frame(dark(rng, hot_fraction=3e-4)))
    assert abs(quiet["tail_asym5"]) < 0.5 and quiet["pos10_per_mpx_log"] < 1.5
    assert hot["tail_asym10"] > 1.0 and hot["pos10_per_mpx_log"] > 2.0


def test_a_glowing_corner_stands_out_of_the_border(rng):
    y, x = np.indices((400, 600))
    glow = 60.0 * np.exp(-np.hypot(y, x - 599) / 40.0)     # amplifier in the top-right corner
    glowing = sensor_features(make_frame(as_uint16(rng.normal(320.0 + glow, 5.0))))
    plain = sensor_features(make_frame(dark(rng, shape=(400, 600), hot_fraction=0)))
    vignetted = sensor_features(make_frame(flat(rng, shape=(400, 600))))
    assert glowing["border_max_sigma_log"] > plain["border_max_sigma_log"] + 0.5
    assert glowing["border_asym_sigma_log"] > 1.0 > plain["border_asym_sigma_log"]
    assert vignetted["border_min_sigma_log"] < -1.0


def test_stars_spread_their_light_and_hot_pixels_do_not(rng):
    stars = domain_features(make_frame(star_field(rng), full_scale=math.nan))
    hot = domain_features(make_frame(dark(rng, shape=(384, 384), hot_fraction=5e-4)))
    assert stars["spread_peaks_per_mpx_log"] > 2.5 > hot["spread_peaks_per_mpx_log"]
    assert hot["single_pixel_peaks_per_mpx_log"] > 2.0
    assert hot["single_pixel_peaks_per_mpx_log"] > stars["single_pixel_peaks_per_mpx_log"]


def test_slit_line_measures_do_not_depend_on_orientation(rng):
    arc = arc_spectrum(rng)
    along_x = domain_features(make_frame(arc, full_scale=math.nan))
    along_y = domain_features(make_frame(arc.T.copy(), full_scale=math.nan))
    noise = domain_features(make_frame(rng.normal(500.0, 6.0, arc.shape), full_scale=math.nan))
    assert along_x["line_repeat"] > 0.9 and along_y["line_repeat"] > 0.9
    for name in ("line_repeat", "line_skew", "lit_band_fraction", "concentration_max"):
        assert along_x[name] == pytest.approx(along_y[name], rel=0.1, abs=0.05), name
    assert along_x["line_skew"] > 1.0                          # emission lines
    assert along_x["line_contrast_log10"] > noise["line_contrast_log10"] + 1.0


# --------------------------------------------------------------------------- straight lines

def trail(shape, angle_deg, through, peak=600.0, fwhm=3.0) -> np.ndarray:
    """A satellite trail: a straight line of constant brightness ``peak`` ADU and Gaussian
    profile across, at ``angle_deg`` to the x axis, through the point ``through`` (y, x)."""
    y, x = np.indices(shape)
    angle = math.radians(angle_deg)
    distance = (y - through[0]) * math.cos(angle) - (x - through[1]) * math.sin(angle)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    return peak * np.exp(-distance ** 2 / (2 * sigma ** 2))


def test_a_trail_across_stars_is_tilted_and_flanked_by_stars(rng):
    """A trail at 30 degrees across a star field: far from the detector axes, stars on both
    sides; a slit spectrum's trace and arc lines: along an axis, no star beside."""
    field = star_field(rng, (384, 512), n_stars=150)
    trailed = domain_features(make_frame(field + trail(field.shape, 30.0, (192, 256)),
                                         full_scale=math.nan))
    assert trailed["line_axis_offset_deg"] == pytest.approx(30.0, abs=1.5)
    assert trailed["line_flank_stars_log"] > 1.0          # > 9 stars on the sparser side
    # a trail almost along x (1 degree) is still flanked by stars
    flat_trail = domain_features(make_frame(field + trail(field.shape, 1.0, (150, 256)),
                                            full_scale=math.nan))
    assert flat_trail["line_axis_offset_deg"] < 2.0
    assert flat_trail["line_flank_stars_log"] > 1.0
    for spectrum in (trace_spectrum(rng), trace_spectrum(rng).T.copy(), arc_spectrum(rng)):
        features = domain_features(make_frame(spectrum, full_scale=math.nan))
        assert features["line_axis_offset_deg"] <= 1.0
        assert features["line_flank_stars_log"] == 0.0


def test_no_straight_line_in_stars_noise_or_a_flat(rng):
    for image in (star_field(rng), rng.normal(500.0, 6.0, (300, 400)), flat(rng),
                  DEGENERATE["constant"], DEGENERATE["zeros_3x3"], DEGENERATE["row_1xN"]):
        features = domain_features(make_frame(image, full_scale=math.nan))
        assert math.isnan(features["line_axis_offset_deg"])
        assert math.isnan(features["line_flank_stars_log"])


def test_chord_length_of_lines_through_a_frame():
    from exporter.features.straight_lines import chord_length

    assert chord_length((100, 200), 0.0, 50.0) == pytest.approx(100.0)        # x = 50
    assert chord_length((100, 200), math.pi / 2, 30.0) == pytest.approx(200.0)  # y = 30
    assert chord_length((100, 100), math.pi / 4, 0.0) == pytest.approx(0.0, abs=1.5)
    assert chord_length((100, 100), -math.pi / 4, 0.0) == pytest.approx(100 * math.sqrt(2),
                                                                        rel=0.02)
    assert chord_length((100, 200), 0.0, 500.0) == 0.0                         # outside
