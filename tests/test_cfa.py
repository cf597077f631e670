"""Raw colour (CFA) frames: mosaic detection and equalisation (exporter.features.cfa).

Frames are simulated with numpy: mono frames, and an RGGB mosaic in front of the same scenes
(red and blue filters with other gains than the two greens).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from exporter.features.cfa import CFA_FEATURE_NAMES, equalise_cfa, is_bayer_like
from exporter.features.sensor import sensor_features
from exporter.frame import RawFrame
from exporter.measure import feature_layout

from test_pixel_stats import DEGENERATE, as_uint16, flat, planet, star_field

#: Filter gains of the 2x2 positions (0, 0) R, (0, 1) G, (1, 0) G, (1, 1) B.
RGGB = (0.55, 1.0, 1.0, 0.45)


def make_frame(data) -> RawFrame:
    return RawFrame(np.asarray(data), {}, {"full_scale": 65535.0, "bits": 16, "planes": 1,
                                           "original_shape": np.shape(data)})


def mosaic(signal: np.ndarray, offset: float, rng, read_noise=5.0, gains=RGGB) -> np.ndarray:
    """``offset`` + ``signal`` seen through a colour filter array, with shot and read noise."""
    g = np.empty(signal.shape)
    for (dy, dx), gain in zip(((0, 0), (0, 1), (1, 0), (1, 1)), gains):
        g[dy::2, dx::2] = gain
    electrons = rng.poisson(np.clip(signal * g, 0, None))
    return as_uint16(offset + electrons + rng.normal(0.0, read_noise, signal.shape))


def position_medians(data: np.ndarray) -> list[float]:
    return [float(np.median(data[dy::2, dx::2])) for dy in (0, 1) for dx in (0, 1)]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_mono_frames_are_left_alone(rng):
    for data in (as_uint16(rng.normal(300, 5, (300, 400))),
                 as_uint16(star_field(rng, (384, 384))), flat(rng), as_uint16(planet(rng))):
        frame = make_frame(data)
        out, features = equalise_cfa(frame)
        assert out is frame
        assert features["cfa_equalised"] == 0.0
        assert features["cfa_checker_sigma_log"] < 0.05
        assert list(features) == list(CFA_FEATURE_NAMES)


def test_sky_glow_mosaic_is_equalised(rng):
    """A raw colour light under sky glow: the four positions end at one level, on the frame's
    integer lattice and dtype, and the mosaic no longer poses as pixel noise."""
    sky = np.full((400, 600), 400.0)
    data = mosaic(sky, 300.0, rng)
    out, features = equalise_cfa(make_frame(data))
    assert features["cfa_equalised"] == 1.0
    assert features["cfa_checker_sigma_log"] > 0.3
    assert out.data.dtype == np.uint16 and out.source["cfa_equalised"]["offsets"]
    medians = position_medians(out.data)
    assert max(medians) - min(medians) <= 2.0
    mono = as_uint16(300.0 + rng.poisson(400.0 * 0.75, sky.shape)
                     + rng.normal(0.0, 5.0, sky.shape))
    raw = sensor_features(make_frame(data))["native_noise_log10"]
    equalised = sensor_features(out)["native_noise_log10"]
    same_light_mono = sensor_features(make_frame(mono))["native_noise_log10"]
    assert raw > equalised + 0.2  # the mosaic read as pixel noise
    assert equalised == pytest.approx(same_light_mono, abs=0.05)


def test_flat_and_disk_gains_are_recovered(rng):
    """Coloured light above the offset: the fitted gains are the filters' relative gains, so
    the equalised positions agree in the bright centre and in the vignetted corners."""
    y, x = np.indices((400, 600))
    vignetting = 1 - 0.35 * (((y - 200) / 200) ** 2 + ((x - 300) / 300) ** 2) / 2
    data = mosaic(20000.0 * vignetting, 500.0, rng)
    out, features = equalise_cfa(make_frame(data))
    assert features["cfa_equalised"] == 1.0
    gains = np.array(out.source["cfa_equalised"]["gains"])
    assert gains[0] / gains[1] == pytest.approx(RGGB[0], rel=0.03)
    assert gains[3] / gains[2] == pytest.approx(RGGB[3], rel=0.03)
    for region in (out.data[180:220, 280:320], out.data[:40, :40]):
        medians = position_medians(region)
        assert (max(medians) - min(medians)) / np.mean(medians) < 0.01
    disk = mosaic(planet(rng) * 5.0, 100.0, rng)
    _, features = equalise_cfa(make_frame(disk))
    assert features["cfa_equalised"] == 1.0


def test_dark_of_a_colour_camera_is_left_alone(rng):
    """No light, no mosaic: a colour camera's dark keeps its hot pixels and its values."""
    data = as_uint16(rng.normal(320, 6, (300, 400)))
    data.flat[rng.choice(data.size, 200, replace=False)] = 4000
    out, features = equalise_cfa(make_frame(data))
    assert out.data is data and features["cfa_equalised"] == 0.0


def test_row_patterns_and_traces_are_not_a_mosaic(rng):
    """Whole rows or columns that differ (two-amplifier read-out, a trace on even rows) do not
    have the Bayer shape and are left alone."""
    data = rng.normal(1000, 5, (300, 400))
    data[:, 0::2] += 40.0  # even columns offset
    out, features = equalise_cfa(make_frame(as_uint16(data)))
    assert features["cfa_equalised"] == 0.0
    trace = rng.normal(300, 5, (300, 400))
    trace[150:152, :] += 5000.0 * np.linspace(0.5, 1.0, 400)
    trace[100, :] += 800.0
    _, features = equalise_cfa(make_frame(as_uint16(trace)))
    assert features["cfa_equalised"] == 0.0
    assert not is_bayer_like(np.array([1.0, 1.0, -1.0, -1.0]))
    assert is_bayer_like(np.array([0.5, -0.2, -0.2, 0.3]))


def test_input_is_not_modified_and_may_be_read_only(rng):
    data = mosaic(np.full((200, 300), 500.0), 200.0, rng).astype(">u2")
    data.setflags(write=False)
    before = data.copy()
    out, features = equalise_cfa(make_frame(data))
    assert features["cfa_equalised"] == 1.0
    np.testing.assert_array_equal(data, before)
    floats = mosaic(np.full((200, 300), 500.0), 200.0, rng).astype(np.float32) / 65535
    out, _ = equalise_cfa(make_frame(floats))
    assert out.data.dtype == np.float32 and np.isfinite(out.data).all()


@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_frames(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, features = equalise_cfa(make_frame(DEGENERATE[name]))
    assert list(features) == list(CFA_FEATURE_NAMES)
    assert all(isinstance(v, float) and (math.isfinite(v) or math.isnan(v))
               for v in features.values())
    assert out.data.shape == np.shape(DEGENERATE[name])


def test_features_are_in_the_pixel_group():
    layout = feature_layout()
    assert set(CFA_FEATURE_NAMES) <= set(layout["feature_groups"]["pixel"])
    assert len(set(layout["feature_names"])) == len(layout["feature_names"])


#: Sources in ../shared/real-frames whose frames are raw Bayer mosaics (its README's provenance).
RAW_COLOUR_SOURCES = ("zeseestarstacker__", "POCS__")


@pytest.mark.realframes
def test_real_frames_only_raw_colour_is_equalised(real_frames_dir):
    """Of the real archive frames (mono CCDs and CMOS, spectrographs, webcams, processed RGB
    images) only the raw colour ones show a mosaic: per the folder's README, the ZWO Seestar
    light and the PANOPTES Canon DSLR raws (Bayer patterns stored as they were read out)."""
    from conftest import real_frame_files

    from exporter.readers import read_frame
    from exporter.features.sensor import recover_adu

    for path in real_frame_files(real_frames_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = recover_adu(read_frame(str(path)))
        out, features = equalise_cfa(frame)
        assert all(math.isfinite(v) or math.isnan(v) for v in features.values())
        raw_colour = path.name.startswith(RAW_COLOUR_SOURCES)
        assert features["cfa_equalised"] == float(raw_colour), path.name
        assert out.data.shape == frame.data.shape
