"""The image channel (exporter.preprocessing): shape, dtype, range, what survives the stretch
and the resize, the options and their manifest description."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict

import numpy as np
import pytest

from exporter.frame import FrameError
from exporter.preprocessing import (PreprocessOptions, block_mean, describe, finite_filled,
                                    preprocess_image)


def assert_valid(image: np.ndarray, size: int = 224) -> None:
    assert image.shape == (size, size, 1)
    assert image.dtype == np.float16
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def spots(shape, positions, sigma, amplitude=1.0):
    y, x = np.indices(shape)
    image = np.zeros(shape)
    for cy, cx in positions:
        image += amplitude * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))
    return image


# --------------------------------------------------------------------------- contract

@pytest.mark.parametrize("size", [224, 64, 350])
def test_shape_dtype_and_range(rng, size):
    frame = rng.normal(1000.0, 10.0, (480, 640)).astype(np.uint16)
    image = preprocess_image(frame, size)
    assert_valid(image, size)
    assert image.max() > 0.9 and image.min() < 0.1  # the interval spans the output range


def test_input_is_not_modified_and_memmaps_work(rng, tmp_path):
    data = rng.normal(1000.0, 10.0, (300, 500)).astype(">f4")
    data[10, 10] = np.nan
    path = tmp_path / "frame.raw"
    data.tofile(path)
    mapped = np.memmap(path, dtype=">f4", mode="r", shape=data.shape)
    image = preprocess_image(mapped)
    assert_valid(image)
    assert np.array_equal(mapped, data, equal_nan=True)
    assert np.array_equal(image, preprocess_image(data.astype(np.float32)))


def test_not_an_image_is_a_frame_error():
    for data in (np.zeros(10), np.zeros((2, 3, 4)), np.zeros((5, 0))):
        with pytest.raises(FrameError) as err:
            preprocess_image(data)
        assert err.value.stage == "preprocess"


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
    "float32_extremes": np.where(np.indices((80, 80)).sum(0) % 2, 3e38, -3e38).astype(np.float32),
    "bool": np.random.default_rng(0).random((50, 50)) > 0.5,
}
OPTIONS = {
    "default": PreprocessOptions(),
    "pad": PreprocessOptions(resize="pad", stretch="log"),
    "everything": PreprocessOptions(stretch="sqrt", denoise="median", background=True,
                                    clahe=True, percentile_norm=(5.0, 95.0)),
}


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("name", DEGENERATE)
def test_degenerate_frames_give_valid_images(name, options):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_valid(preprocess_image(DEGENERATE[name], 224, OPTIONS[options]))


@pytest.mark.parametrize("name", ["all_nan", "constant", "zeros_3x3", "single_pixel"])
def test_frames_without_spread_become_zeros(name):
    assert not preprocess_image(DEGENERATE[name]).any()


def test_small_frames_are_upscaled_smoothly():
    image = preprocess_image(DEGENERATE["ramp_3x3"], 64, PreprocessOptions(stretch="linear"))
    assert image[0, 0, 0] == 0.0 and image[-1, -1, 0] == 1.0
    assert (np.diff(image[..., 0].astype(np.float32), axis=0) >= 0).all()  # bilinear, monotonic
    row = preprocess_image(DEGENERATE["row_1xN"], 32)
    assert (np.diff(row[0, :, 0].astype(np.float32)) >= 0).all()


def test_non_finite_pixels_are_replaced_by_the_median():
    data = np.full((100, 100), 10.0)
    data[::2] = 20.0
    data[50:60, 50:60] = np.nan
    filled = finite_filled(data)
    assert np.isfinite(filled).all() and filled.dtype == data.dtype
    assert np.isnan(data[55, 55])  # input untouched
    assert filled[55, 55] == 15.0


def test_block_mean_is_binning():
    data = np.arange(36, dtype=np.uint16).reshape(6, 6)
    binned = block_mean(data, 3, 2)
    assert binned.shape == (2, 3)
    assert binned[0, 0] == pytest.approx(data[:3, :2].mean())
    assert binned[1, 2] == pytest.approx(data[3:, 4:].mean())


# --------------------------------------------------------------------------- what survives

def test_faint_stars_stay_visible_on_the_sky(rng):
    shape = (1024, 1024)
    positions = [(200, 300), (700, 650), (512, 100)]
    frame = rng.normal(800.0, 8.0, shape) + spots(shape, positions, 1.5, amplitude=60.0)
    image = preprocess_image(frame.astype(np.float32), 256)[..., 0].astype(np.float32)
    sky = np.median(image)
    for cy, cx in positions:
        assert image[cy // 4, cx // 4] > sky + 0.1  # a 7.5-sigma star, binned 4x4


def test_flat_vignetting_survives(rng):
    y, x = np.indices((600, 900))
    level = 30000.0 * (1 - 0.3 * ((y - 300) ** 2 / 300 ** 2 + (x - 450) ** 2 / 450 ** 2) / 2)
    image = preprocess_image(rng.normal(level, np.sqrt(level)))[..., 0].astype(np.float32)
    assert image[100:124, 100:124].mean() > image[:10, :10].mean() + 0.3


def test_planet_stays_bright_on_black(rng):
    shape = (480, 640)
    y, x = np.indices(shape)
    disk = np.hypot(y - 240, x - 320) < 60
    image = preprocess_image(rng.normal(200.0 + 30000.0 * disk, 5.0))[..., 0]
    assert image[112, 112] > 0.8 and image[:20, :20].max() < 0.3


def test_narrow_arc_lines_survive_the_resize(rng):
    """Binning averages narrow lines into the output; naive subsampling would skip them."""
    shape, n_lines = (400, 2400), 15
    centres = np.linspace(100, 2300, n_lines)
    x = np.arange(shape[1])
    lines = sum(np.exp(-((x - c) / 0.8) ** 2 / 2) for c in centres)
    frame = rng.normal(500.0, 5.0, shape) + 20000.0 * lines
    profile = preprocess_image(frame)[..., 0].astype(np.float32).mean(axis=0)
    peaks = np.flatnonzero((profile[1:-1] > profile[:-2]) & (profile[1:-1] >= profile[2:])
                           & (profile[1:-1] > np.median(profile) + 0.1))
    assert len(peaks) == n_lines


def test_resize_is_anti_aliased():
    """A 1-pixel checkerboard on a ramp shrinks to the ramp, not to a moire pattern."""
    y, x = np.indices((2000, 3000))
    ramp = 1000.0 + x / 3.0
    checker = 400.0 * ((x + y) % 2)
    options = PreprocessOptions(stretch="linear")
    with_checker = preprocess_image(ramp + checker, 128, options).astype(np.float32)
    plain = preprocess_image(ramp + 200.0, 128, options).astype(np.float32)
    assert np.abs(with_checker - plain).max() < 0.02


def test_squash_fills_and_pad_letterboxes(rng):
    frame = rng.normal(1000.0, 10.0, (100, 400)) + 100.0
    squashed = preprocess_image(frame, 64)[..., 0]
    assert (squashed.max(axis=1) > 0).all()  # every row has content
    padded = preprocess_image(frame, 64, PreprocessOptions(resize="pad"))[..., 0]
    content_rows = np.flatnonzero(padded.max(axis=1) > 0)
    assert len(content_rows) == 16 and content_rows[0] == 24  # 64 * 100 / 400, centred
    tall = preprocess_image(frame.T, 64, PreprocessOptions(resize="pad"))[..., 0]
    assert len(np.flatnonzero(tall.max(axis=0) > 0)) == 16


# --------------------------------------------------------------------------- options

def test_every_stretch_is_monotonic_and_they_differ(rng):
    frame = np.tile(np.linspace(0.0, 1000.0, 500), (50, 1)) + rng.normal(0, 0.01, (50, 500))
    images = {}
    for stretch in ("asinh", "linear", "log", "sqrt"):
        image = preprocess_image(frame, 64, PreprocessOptions(stretch=stretch))[..., 0]
        profile = image.astype(np.float32).mean(axis=0)
        assert (np.diff(profile) >= -1e-3).all(), stretch
        images[stretch] = profile
    assert images["asinh"][16] > images["linear"][16] + 0.1  # lifts the faint end
    assert images["log"][16] > images["sqrt"][16] > images["linear"][16]


def test_enhancements_do_what_they_say(rng):
    y, x = np.indices((512, 512))
    sky = 1000.0 + 2.0 * x  # light pollution: 1000 ADU across the frame
    frame = rng.normal(sky, 10.0) + spots((512, 512), [(100, 100), (400, 300)], 2.0, 3000)
    plain = preprocess_image(frame, 128)[..., 0].astype(np.float32)
    flattened = preprocess_image(frame, 128, PreprocessOptions(background=True))[..., 0]
    flattened = flattened.astype(np.float32)
    right_minus_left = lambda im: np.median(im[:, 96:]) - np.median(im[:, :32])  # noqa: E731
    assert right_minus_left(plain) > 0.3
    assert abs(right_minus_left(flattened)) < 0.05
    assert flattened[25, 25] > np.median(flattened) + 0.3  # the star is kept

    noisy = rng.normal(100.0, 10.0, (128, 128))
    noisy[64, 64] = 10000.0  # a hot pixel
    denoised = preprocess_image(noisy, 128, PreprocessOptions(denoise="median"))[..., 0]
    assert denoised[64, 64] < 0.9 < preprocess_image(noisy, 128)[64, 64, 0]
    smoothed = preprocess_image(noisy, 128, PreprocessOptions(denoise="gaussian",
                                                              denoise_size=1.0))
    assert smoothed.astype(np.float32).std() < preprocess_image(noisy, 128).astype(
        np.float32).std()

    normed = preprocess_image(noisy, 128, PreprocessOptions(percentile_norm=(5.0, 95.0)))
    assert np.mean(normed == 0) == pytest.approx(0.05, abs=0.02)
    assert np.mean(normed == 1) == pytest.approx(0.05, abs=0.02)

    equalised = preprocess_image(frame, 128, PreprocessOptions(clahe=True))
    assert not np.array_equal(equalised[..., 0], plain.astype(np.float16))
    assert_valid(equalised, 128)


def test_options_changed_after_construction_are_validated():
    options = PreprocessOptions()
    options.denoise = True  # as a command line flag sets it
    assert describe(options)["options"]["denoise"] == "median"
    assert_valid(preprocess_image(np.arange(100.0).reshape(10, 10), 32, options), 32)
    options.stretch = "zscale"
    with pytest.raises(ValueError):
        preprocess_image(np.zeros((4, 4)), 32, options)
    assert PreprocessOptions(denoise=False).denoise == "none"


def test_options_round_trip_through_json():
    options = PreprocessOptions(stretch="sqrt", interval=(1.0, 99.5), resize="pad",
                                denoise="gaussian", background=True, clahe=True,
                                percentile_norm=(2.0, 98.0))
    text = json.dumps(asdict(options))
    assert PreprocessOptions.from_dict(json.loads(text)) == options
    assert PreprocessOptions.from_dict(None) == PreprocessOptions()
    assert PreprocessOptions.from_dict({}) == PreprocessOptions()


@pytest.mark.parametrize("bad", [
    {"stretch": "zscale"}, {"resize": "crop"}, {"denoise": "bilateral"},
    {"interval": (99.0, 1.0)}, {"interval": (0.0, 101.0)}, {"percentile_norm": (5.0, 5.0)},
    {"denoise_size": 0.0}, {"background_cells": 2}, {"background_degree": 7}, {"colour": True},
])
def test_invalid_options_are_refused(bad):
    with pytest.raises(ValueError):
        PreprocessOptions.from_dict(bad)


def test_describe_is_the_manifest_entry():
    entry = describe()
    assert "AsinhStretch" in entry["stretch"] and "0.5" in entry["stretch"]
    assert entry["resize"].startswith("squash")
    assert entry["enhancements"] == []
    assert entry["options"] == json.loads(json.dumps(entry["options"]))  # plain JSON
    assert PreprocessOptions.from_dict(entry["options"]) == PreprocessOptions()
    rich = describe(PreprocessOptions(stretch="log", resize="pad", clahe=True,
                                      percentile_norm=(5.0, 95.0)))
    assert "LogStretch" in rich["stretch"] and rich["resize"].startswith("pad")
    assert len(rich["enhancements"]) == 2
    assert math.isclose(rich["options"]["percentile_norm"][1], 95.0)
