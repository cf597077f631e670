"""Pre- and overscan: trimmed from what is measured, and used as the frame's own bias level."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from exporter.features.overscan import (across_axis, data_section, overscan_features,
                                        overscan_section, parse_section, trim_to_data_section)
from exporter.features.sampling import FrameSamples
from exporter.frame import RawFrame
from exporter.measure import feature_layout, measure_frame
from exporter.spec import ExportSpec

RNG = np.random.default_rng(20261129)
BIAS_LEVEL, READ_NOISE = 1900.0, 3.0


def ccd_frame(signal: float, height: int = 200, width: int = 300, overscan: int = 32
              ) -> np.ndarray:
    """uint16 ADU of a CCD readout: ``signal`` ADU of light (with its shot noise, gain 1) on
    the data columns, read noise everywhere, ``overscan`` unexposed columns on the right."""
    frame = BIAS_LEVEL + RNG.normal(0, READ_NOISE, (height, width + overscan))
    light = RNG.poisson(signal, (height, width)) if signal > 0 else 0.0
    frame[:, :width] += light
    return np.clip(np.round(frame), 0, 65535).astype(np.uint16)


def cards(width: int = 300, height: int = 200, overscan: int = 32, biassec: bool = True) -> dict:
    out = {"DATASEC": f"[1:{width},1:{height}]"}
    if biassec:
        out["BIASSEC"] = f"[{width + 1}:{width + overscan},1:{height}]"
    return out


@pytest.mark.parametrize("text, expected", [
    ("[1:2048,1:350]", (slice(0, 350), slice(0, 2048))),
    (" [ 10 : 20 , 5:6 ] ", (slice(4, 6), slice(9, 20))),
    ("[2048:1,350:1]", (slice(0, 350), slice(0, 2048))),  # a flipped readout names the same pixels
])
def test_iraf_sections_are_one_based_inclusive_x_first(text, expected):
    assert parse_section(text, (350, 2112)) == expected


@pytest.mark.parametrize("text", ["UNKNOWN", "", "[1:2048]", "[0:10,1:5]", "[1:4096,1:350]",
                                  None, 42, "[1:10,1:5"])
def test_sections_that_are_not_sections_or_do_not_fit_are_ignored(text):
    assert parse_section(text, (350, 2112)) is None


def test_data_section_prefers_trimsec_and_ignores_the_whole_array_or_a_sliver():
    shape = (350, 2112)
    assert data_section({"TRIMSEC": "[5:2040,1:350]", "DATASEC": "[1:2048,1:350]"}, shape) == \
        (slice(0, 350), slice(4, 2040))
    assert data_section({"TRIMSEC": "UNKNOWN", "DATASEC": "[1:2048,1:350]"}, shape) == \
        (slice(0, 350), slice(0, 2048))
    assert data_section({"DATASEC": "[1:2112,1:350]"}, shape) is None   # all of it is data
    assert data_section({"DATASEC": "[1:100,1:100]"}, shape) is None     # another binning
    assert data_section({}, shape) is None


def test_overscan_from_biassec_or_the_widest_strip_beside_the_data():
    shape = (4200, 366)
    data = (slice(0, 4099), slice(0, 366))
    assert overscan_section({"BIASSEC": "[1:366,4105:4190]"}, shape, data) == \
        (slice(4104, 4190), slice(0, 366))
    # Without BIASSEC: the rows beyond the data section (INT's WFC layout) ...
    assert overscan_section({}, shape, data) == (slice(4099, 4200), slice(0, 366))
    # ... or the columns beyond it (Lick's Kast); a BIASSEC inside the data or too narrow to
    # measure is passed over for that strip.
    kast, kast_data = (350, 2112), (slice(0, 350), slice(0, 2048))
    beside = (slice(0, 350), slice(2048, 2112))
    assert overscan_section({}, kast, kast_data) == beside
    assert overscan_section({"BIASSEC": "[100:200,1:350]"}, kast, kast_data) == beside
    assert overscan_section({"BIASSEC": "[2112:2112,1:350]"}, kast, kast_data) == beside
    assert overscan_section({}, (350, 2050), (slice(0, 350), slice(0, 2048))) is None  # 2 px


def test_the_overscan_is_sampled_across_its_columns_whatever_its_shape():
    """A short, wide readout window: the 50 overscan columns are wider than the 10 rows are
    tall, yet the columns are what lies across the strip (and what is trimmed at its edges)."""
    data = np.zeros((10, 2050), np.uint16)
    data[:, 2000:] = BIAS_LEVEL
    frame = RawFrame(data=data, header={"DATASEC": "[1:2000,1:10]"})
    assert across_axis((slice(0, 10), slice(2000, 2050)), (slice(0, 10), slice(0, 2000))) == 1
    assert across_axis((slice(4099, 4200), slice(0, 366)), (slice(0, 4099), slice(0, 366))) == 0
    _, overscan = trim_to_data_section(frame)
    assert overscan.shape == (10, 26)  # 50 columns less a quarter (12) at each edge


def test_trimming_is_a_view_of_the_data_and_recorded_in_the_source():
    data = ccd_frame(0.0)
    frame = RawFrame(data=data, header=cards(), source={"format": "fits"})
    trimmed, overscan = trim_to_data_section(frame)
    assert trimmed.data.shape == (200, 300)
    assert np.shares_memory(trimmed.data, data)
    assert trimmed.source["data_section"] == [0, 200, 0, 300]
    assert trimmed.source["untrimmed_shape"] == (200, 332)
    assert overscan is not None and overscan.shape[0] == 200 and overscan.shape[1] == 16
    assert frame.data.shape == (200, 332)  # the frame handed in is not changed
    untouched, none = trim_to_data_section(RawFrame(data=data, header={}))
    assert untouched.data is data and none is None


def measured(signal: float, **kwargs) -> dict[str, float]:
    trimmed, overscan = trim_to_data_section(RawFrame(data=ccd_frame(signal), header=cards(**kwargs)))
    return overscan_features(overscan, FrameSamples(trimmed.data))


def test_a_bias_has_no_signal_above_its_overscan_and_only_read_noise():
    bias = measured(0.0)
    assert abs(bias["overscan_excess_sigma_log"]) < 0.2
    assert abs(bias["overscan_noise_ratio_log"]) < 0.05


@pytest.mark.parametrize("biassec", [True, False])
def test_light_on_the_sensor_shows_as_signal_and_shot_noise_above_the_overscan(biassec):
    dim, bright = measured(30.0, biassec=biassec), measured(10_000.0, biassec=biassec)
    assert 0.5 < dim["overscan_excess_sigma_log"] < bright["overscan_excess_sigma_log"]
    # Shot noise: sqrt(30) ~ 5.5 ADU on 3 ADU of read noise; sqrt(10000) = 100.
    assert 0.15 < dim["overscan_noise_ratio_log"] < 0.4
    assert 1.3 < bright["overscan_noise_ratio_log"] < 1.7


def test_without_an_overscan_the_features_are_unknown():
    frame = RawFrame(data=ccd_frame(100.0, overscan=0), header={})
    trimmed, overscan = trim_to_data_section(frame)
    values = overscan_features(overscan, FrameSamples(trimmed.data))
    assert all(math.isnan(v) for v in values.values())


def test_the_export_measures_and_pictures_only_the_data_section(tmp_path: Path):
    """A flat with its overscan: no dark band in the image or the statistics."""
    height, width, over = 120, 180, 24
    y, x = np.mgrid[0:height, 0:width]
    vignetting = 1.0 - 0.3 * (((y - height / 2) / height) ** 2 + ((x - width / 2) / width) ** 2)
    frame = ccd_frame(0.0, height, width, over).astype(np.float64)
    frame[:, :width] += RNG.poisson(20_000 * vignetting)
    path = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.clip(frame, 0, 65535).astype(np.uint16)).writeto(path)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header.update(cards(width, height, over))
    arrays = measure_frame(str(path), ExportSpec(classes=["flats"], image_size=64,
                                                  file_timeout=0))
    values = dict(zip(feature_layout()["feature_names"], arrays["features"].tolist()))
    assert values["width"] == width and values["height"] == height
    assert values["overscan_excess_sigma_log"] > 3
    assert values["p0_1_rel"] > 0.2  # the bias-level band would sit at ~0.03 of full scale
    image = arrays["image"].astype(np.float32)[..., 0]
    assert image[:, -4:].mean() > 0.5 * image.mean()  # no dark band at the right edge


def test_real_ccd_frames_with_overscan(real_frames_dir: Path):
    """Lick's Kast (DATASEC only, 64 overscan columns): the biases show no signal above the
    overscan, the dome flat much."""
    spec = ExportSpec(classes=["x"], image_size=64, file_timeout=0)
    names = feature_layout()["feature_names"]
    found = {}
    for path in sorted(real_frames_dir.rglob("PypeIt__b*.fits.gz")):
        arrays = measure_frame(str(path), spec)
        assert arrays["source"]["data_section"] == [0, 350, 0, 2048]
        found[path.name] = dict(zip(names, arrays["features"].tolist()))
    if not found:
        pytest.skip("no PypeIt Kast frames among the real frames")
    for name in ("PypeIt__b21.fits.gz", "PypeIt__b22.fits.gz", "PypeIt__b23.fits.gz"):
        assert abs(found[name]["overscan_excess_sigma_log"]) < 0.5
        assert abs(found[name]["overscan_noise_ratio_log"]) < 0.1
    assert found["PypeIt__b11_domeflat.fits.gz"]["overscan_excess_sigma_log"] > 2
