"""The cheaper computations of the feature modules give what the library calls they replace
gave (issue 6): running medians, local-maximum search, medians of finite samples, sampled pixel
differences, the star search's background, and samples shared across the feature modules.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from exporter import domain_features as D
from exporter import pixel_stats as P
from exporter import sensor_features as S
from exporter.frame import RawFrame


@pytest.fixture
def rng():
    return np.random.default_rng(6)


def test_running_medians_equal_scipy(rng):
    for shape in [(64, 64), (5, 7), (7, 5), (3, 9), (40, 17)]:
        image = rng.normal(size=shape)
        image[rng.random(shape) < 0.3] = 0.5  # ties
        for axis in (0, 1):
            for window, ours in ((3, D.median3), (5, D.median5)):
                if shape[axis] < window:
                    continue
                size = (1, window) if axis == 1 else (window, 1)
                expected = ndimage.median_filter(image, size=size, mode="mirror")
                assert np.array_equal(ours(image, axis), expected)


def test_find_peaks_equals_photutils(rng):
    from photutils.detection import find_peaks as photutils_find_peaks

    for trial in range(40):
        shape = (int(rng.integers(17, 90)), int(rng.integers(17, 90)))
        image = ndimage.gaussian_filter(np.round(rng.normal(size=shape) * 3), trial % 3 * 0.5)
        if trial % 5 == 0:
            image = np.round(image)  # plateaus: tied maxima
        threshold = float(rng.choice([-1.0, 0.0, 0.5]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = photutils_find_peaks(image, threshold, box_size=5,
                                         border_width=D.CUTOUT_RADIUS)
        ys, xs = D.find_peaks(image, threshold)
        if table is None:
            assert ys.size == 0
        else:
            assert np.array_equal(np.asarray(table["y_peak"]), ys)
            assert np.array_equal(np.asarray(table["x_peak"]), xs)
    assert D.find_peaks(np.full((40, 40), 3.0), 0.0)[0].size == 0  # constant: no peak


def test_box_max_equals_maximum_filter(rng):
    image = np.round(rng.normal(size=(30, 41)))
    assert np.array_equal(D.box_max(image, 1),
                          ndimage.maximum_filter(image, 3, mode="nearest")[1:-1, 1:-1])
    assert np.array_equal(D.box_max(image, 2),
                          ndimage.maximum_filter(image, 5, mode="nearest")[2:-2, 2:-2])


def test_median_last_axis_equals_numpy(rng):
    for shape in [(512, 64), (4, 4, 1024), (3, 3, 441), (5, 7), (6, 1)]:
        for values in (np.round(rng.normal(1000, 10, shape)), rng.normal(0, 1, shape)):
            assert np.array_equal(P.median_last_axis(values), np.median(values, axis=-1))


def test_block_medians_keep_nan_semantics(rng):
    image = rng.normal(size=(64, 64))
    image[3, 5] = np.nan
    assert np.array_equal(P.block_medians(image, 4), np.median(
        image.reshape(4, 16, 4, 16).transpose(0, 2, 1, 3).reshape(4, 4, 256), axis=2),
        equal_nan=True)


def _pixel_noise_reference(tiles, step, max_samples):
    diffs = []
    for tile in tiles:
        if tile.shape[1] > 1:
            diffs.append(np.diff(tile, axis=1).ravel())
        if tile.shape[0] > 1:
            diffs.append(np.diff(tile, axis=0).ravel())
    if not diffs:
        return math.nan
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)][::max(1, math.ceil(d.size / max_samples))]
    if d.size == 0:
        return math.nan
    from astropy.stats import mad_std

    centre = float(np.median(d))
    kept = d[np.abs(d - centre) <= 5.0 * max(float(mad_std(d)), step)]
    value = float(np.std(kept) / math.sqrt(2.0)) if kept.size else math.nan
    return value if math.isfinite(value) else math.nan


def test_pixel_noise_samples_the_same_differences(rng):
    for trial in range(60):
        tiles = []
        for _ in range(int(rng.integers(1, 5))):
            shape = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
            dtype = (np.float64, np.float32)[trial % 2]
            tile = np.round(rng.normal(100, 5, shape)).astype(dtype)
            if trial % 4 == 0:
                tile[rng.random(shape) < 0.02] = np.nan
            if trial % 3 == 0:  # differences that overflow to inf
                tile.flat[0], tile.flat[-1] = (np.finfo(dtype).max * 0.9,
                                               -np.finfo(dtype).max * 0.9)
            tiles.append(tile)
        max_samples = int(rng.choice([50, 1000, 32768]))
        with np.errstate(all="ignore"):
            expected = _pixel_noise_reference(tiles, 1.0, max_samples)
            got = P.pixel_noise(tiles, 1.0, max_samples)
        assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_bilinear_resize_matches_skimage(rng):
    from skimage.transform import resize

    for shape_in, shape_out in [((8, 8), (256, 256)), ((3, 5), (100, 170)), ((1, 8), (21, 256)),
                                ((4, 4), (128, 128))]:
        cells = rng.normal(1000, 30, shape_in)
        expected = resize(cells, shape_out, order=1, mode="edge", anti_aliasing=False)
        assert np.allclose(D.bilinear_resize(cells, shape_out), expected, rtol=1e-14, atol=0)


def test_shared_samples_give_the_same_features(rng):
    image = np.clip(np.round(rng.normal(300, 5, (300, 420))), 0, 65535).astype(np.uint16)
    image[rng.integers(0, 300, 40), rng.integers(0, 420, 40)] = 4000
    frame = RawFrame(image, {}, {"full_scale": 65535.0, "bits": 16, "planes": 1})
    samples = P.FrameSamples(frame.data)
    shared = {**P.pixel_features(frame, samples), **S.sensor_features(frame, samples),
              **D.domain_features(frame, samples)}
    alone = {**P.pixel_features(frame), **S.sensor_features(frame), **D.domain_features(frame)}
    assert shared.keys() == alone.keys()
    for name in shared:
        assert shared[name] == alone[name] or (math.isnan(shared[name])
                                               and math.isnan(alone[name])), name
    assert not samples.grid.flags.writeable and not samples.tiles[0].flags.writeable
