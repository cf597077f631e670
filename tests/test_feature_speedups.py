"""The cheaper computations of the feature modules give what the library calls they replace
gave: running medians, local-maximum search, medians of finite samples, sampled pixel
differences, the star search's background, samples shared across the feature modules, and the
colour-mosaic search's superpixel sample, fit and same-colour noise.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from exporter.features import (cfa, disk, domain, kernels, pixel_stats, sampling, sensor,
                               spectra, stars)
from exporter.frame import RawFrame


@pytest.fixture
def rng():
    return np.random.default_rng(6)


def test_running_medians_equal_scipy(rng):
    for shape in [(64, 64), (5, 7), (7, 5), (3, 9), (40, 17), (2, 6), (6, 2), (4, 4)]:
        image = rng.normal(size=shape)
        image[rng.random(shape) < 0.3] = 0.5  # ties
        for axis in (0, 1):
            for window, ours in ((3, kernels.median3), (5, kernels.median5)):
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
                                         border_width=stars.CUTOUT_RADIUS)
        ys, xs = kernels.find_peaks(image, threshold, border_width=stars.CUTOUT_RADIUS)
        if table is None:
            assert ys.size == 0
        else:
            assert np.array_equal(np.asarray(table["y_peak"]), ys)
            assert np.array_equal(np.asarray(table["x_peak"]), xs)
    assert kernels.find_peaks(np.full((40, 40), 3.0), 0.0,
                             border_width=stars.CUTOUT_RADIUS)[0].size == 0  # constant: no peak


def test_box_max_equals_maximum_filter(rng):
    image = np.round(rng.normal(size=(30, 41)))
    assert np.array_equal(kernels.box_max(image, 1),
                          ndimage.maximum_filter(image, 3, mode="nearest")[1:-1, 1:-1])
    assert np.array_equal(kernels.box_max(image, 2),
                          ndimage.maximum_filter(image, 5, mode="nearest")[2:-2, 2:-2])


def test_median_last_axis_equals_numpy(rng):
    for shape in [(512, 64), (4, 4, 1024), (3, 3, 441), (5, 7), (6, 1), (300, 9)]:
        for values in (np.round(rng.normal(1000, 10, shape)), rng.normal(0, 1, shape)):
            assert np.array_equal(kernels.median_last_axis(values), np.median(values, axis=-1))


def test_integer_selections_only_where_exact(rng):
    """float64 samples of integer ADU are selected as int32, the same numbers; anything else
    (fractions past the first values, NaN, beyond int32) stays float64."""
    whole = np.round(rng.normal(1000, 300, (64, 200)))
    assert kernels.narrowed(whole).dtype == np.int32
    assert np.array_equal(kernels.narrowed(whole), whole)
    for spoiled in (0.5, np.nan, 2.0 ** 31, -2.0 ** 31 - 1):
        bad = whole.copy()
        bad[40, 150] = spoiled
        assert kernels.narrowed(bad) is bad
    assert kernels.narrowed(whole.astype(np.float32)).dtype == np.float32  # only float64 narrowed
    for image in (whole, whole[:, 3:], np.round(rng.normal(0, 5, (33, 65)))):
        by, bx = image.shape[0] // 4, image.shape[1] // 4
        cells = image[:4 * by, :4 * bx].reshape(4, by, 4, bx).transpose(0, 2, 1, 3)
        assert np.array_equal(kernels.block_medians(image, 4),
                              np.median(cells.reshape(4, 4, -1), 2))
        assert kernels.block_medians(image, 4).dtype == np.float64


def test_block_medians_keep_nan_semantics(rng):
    image = rng.normal(size=(64, 64))
    image[3, 5] = np.nan
    assert np.array_equal(kernels.block_medians(image, 4), np.median(
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
            got = sampling.pixel_noise(tiles, 1.0, max_samples)
        assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_bilinear_resize_matches_skimage(rng):
    from skimage.transform import resize

    for shape_in, shape_out in [((8, 8), (256, 256)), ((3, 5), (100, 170)), ((1, 8), (21, 256)),
                                ((4, 4), (128, 128))]:
        cells = rng.normal(1000, 30, shape_in)
        expected = resize(cells, shape_out, order=1, mode="edge", anti_aliasing=False)
        assert np.allclose(kernels.bilinear_resize(cells, shape_out), expected, rtol=1e-14, atol=0)


def test_shared_samples_give_the_same_features(rng):
    image = np.clip(np.round(rng.normal(300, 5, (300, 420))), 0, 65535).astype(np.uint16)
    image[rng.integers(0, 300, 40), rng.integers(0, 420, 40)] = 4000
    frame = RawFrame(image, {}, {"full_scale": 65535.0, "bits": 16, "planes": 1})
    samples = sampling.FrameSamples(frame.data)
    shared = {**pixel_stats.pixel_features(frame, samples),
              **sensor.sensor_features(frame, samples), **domain.domain_features(frame, samples)}
    alone = {**pixel_stats.pixel_features(frame), **sensor.sensor_features(frame),
             **domain.domain_features(frame)}
    assert shared.keys() == alone.keys()
    for name in shared:
        assert shared[name] == alone[name] or (math.isnan(shared[name])
                                               and math.isnan(alone[name])), name
    assert not samples.grid.flags.writeable and not samples.tiles[0].flags.writeable


def _frames_for_the_shared_median(rng):
    """Frames whose binned frame is the frame itself and one native tile (the 3x3 median is
    taken from the tile), and frames where it is not (NaN, 64-bit integers, larger frames)."""
    sky = rng.normal(1000, 30, (180, 240))
    sky[rng.integers(0, 180, 30), rng.integers(0, 240, 30)] += 5000  # hot pixels
    whole = np.round(sky)
    holed = sky.copy()
    holed[5, 7] = np.nan
    return {
        "uint16": whole.astype(np.uint16), "uint8": np.clip(whole / 30, 0, 255).astype(np.uint8),
        "int16": (whole - 1000).astype(np.int16),
        "int32 beyond float32": (whole * 40_000).astype(np.int32),  # float32 rounds these
        "uint32": (whole * 400_000).astype(np.uint32),
        "float32": sky.astype(np.float32), "float64": sky, "bool": sky > 1000,
        "one tile, 500 px": np.round(rng.normal(300, 5, (300, 500))).astype(np.uint16),
        "NaN": holed, "int64": whole.astype(np.int64) + (1 << 54) + 1,
        "binned": np.round(rng.normal(300, 5, (600, 700))).astype(np.uint16),
        "several tiles": np.round(rng.normal(300, 5, (500, 500))).astype(np.uint16),
        "thin": np.round(rng.normal(300, 5, (2, 400))).astype(np.uint16),
    }


def test_the_binned_frames_median_taken_from_the_tile_is_the_same(rng):
    """The 3x3 median of the binned frame is taken from the sensor features' tile when both are
    the frame itself: the same numbers and dtype as the binned frame's own median, and the disk
    and slit measures given it are what they are alone."""
    for name, data in _frames_for_the_shared_median(rng).items():
        samples = sampling.FrameSamples(data)
        as_float = data.astype(np.float32) if data.dtype == np.bool_ else data
        binned = sampling.binned_frame(as_float)
        assert np.array_equal(samples.binned, binned) and samples.binned.dtype == binned.dtype
        expected = kernels.despike(binned)
        got = samples.despiked_binned
        assert got.dtype == expected.dtype and np.array_equal(got, expected), name
        assert not got.flags.writeable and not samples.binned.flags.writeable
        shared = name not in ("NaN", "int64", "binned", "several tiles", "thin")
        assert ("despiked_tiles" in samples.__dict__) == shared, name
        assert disk.disk_features(binned, got) == disk.disk_features(binned), name
        with np.errstate(all="ignore"):
            given = spectra.slit_features(binned, 0.5, 0.4, got)
            alone = spectra.slit_features(binned, 0.5, 0.4)
        assert all(given[k] == alone[k] or (math.isnan(given[k]) and math.isnan(alone[k]))
                   for k in alone), name


# --------------------------------------------------------- colour mosaic (exporter.features.cfa)

def _superpixel_sample_reference(data, max_superpixels=cfa.SUPERPIXELS):
    """The sample as first written: index arrays, one float64 copy per plane, stacked."""
    height, width = data.shape
    cells = (height // 2 - 2) * (width // 2 - 2)
    stride = 2 * max(1, math.ceil(math.sqrt(cells / max_superpixels)))
    ys, xs = np.arange(2, height - 3, stride), np.arange(2, width - 3, stride)
    planes = np.stack([np.asarray(data[np.ix_(ys + oy + dy, xs + ox + dx)], np.float64).ravel()
                       for oy, ox in ((0, 0), (0, -2), (0, 2), (-2, 0), (2, 0))
                       for dy in (0, 1) for dx in (0, 1)])
    return planes[:, np.isfinite(planes).all(axis=0)]


def _fit_positions_reference(planes):
    """The fit as first written (astropy's ``mad_std``, copies in every round)."""
    from astropy.stats import mad_std

    level, neighbour = planes[:4].mean(axis=0), planes[4:].mean(axis=0)
    keep, fit = np.ones(level.size, bool), None
    for _ in range(2):
        lv, z, own = level[keep], neighbour[keep], planes[:4, keep]
        lc, zc = lv - lv.mean(), z - z.mean()
        var_l, var_z, cov = float(np.sum(lc * lc)), float(np.sum(zc * zc)), float(np.sum(lc * zc))
        if lv.size < 16 or not var_l > 0:
            return fit
        if var_z > 0 and cov / math.sqrt(var_l * var_z) >= cfa.MIN_SIGNAL_CORRELATION:
            gains = np.sum((own - own.mean(axis=1, keepdims=True)) * zc, axis=1) / cov
        else:
            gains = np.ones(4)
        offsets = own.mean(axis=1) - gains * lv.mean()
        fit = offsets, gains
        residual = np.abs(planes[:4] - offsets[:, None] - gains[:, None] * level[None, :]
                          ).max(axis=0)
        spread = float(mad_std(residual))
        if not spread > 0:
            break
        keep = residual <= np.median(residual) + 5.0 * spread
    return fit


def _mosaic_frames(rng):
    """Integer and float frames with and without a colour mosaic, NaN, odd shapes."""
    y, x = np.indices((203, 311))
    light = 3000.0 * np.exp(-((y - 90) ** 2 + (x - 170) ** 2) / 2000.0) + 400.0
    gains = np.ones((203, 311))
    gains[0::2, 0::2], gains[1::2, 1::2] = 0.55, 0.45
    raw = rng.poisson(light * gains) + rng.normal(300, 5, light.shape)
    frames = [np.clip(np.round(raw), 0, 65535).astype(np.uint16),
              np.clip(np.round(rng.normal(300, 5, (120, 97))), 0, None).astype(np.int16),
              (raw / 65535).astype(np.float32), np.round(raw).astype(np.float64)]
    holed = raw.copy()
    holed[rng.random(raw.shape) < 0.01] = np.nan
    frames.append(holed)
    frames.append(np.round(rng.normal(300, 5, (4000, 1300))).astype(np.uint16))  # strided
    return frames


def test_superpixel_sample_equals_index_arrays(rng):
    for data in _mosaic_frames(rng) + [np.zeros((6, 9), np.uint8), np.ones((7, 6))]:
        for max_superpixels in (cfa.SUPERPIXELS, 500, 7):
            got = cfa.superpixel_sample(data, max_superpixels)
            assert np.array_equal(got, _superpixel_sample_reference(data, max_superpixels))
            assert got.dtype == np.float64
    assert cfa.superpixel_sample(np.ones((5, 40))).shape == (20, 0)


def test_fit_positions_equals_the_first_fit(rng):
    """The same fit up to the last bits (the first round now sums the superpixels in place
    instead of in a copy with another memory layout)."""
    for data in _mosaic_frames(rng):
        planes = cfa.superpixel_sample(data)
        got, expected = cfa.fit_positions(planes), _fit_positions_reference(planes)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-9)
    flat = np.full((20, 50), 7.0)
    assert cfa.fit_positions(flat) is None and _fit_positions_reference(flat) is None


def test_same_colour_noise_equals_mad_std_of_differences(rng):
    from astropy.stats import mad_std

    for data in _mosaic_frames(rng)[:4] + [rng.normal(0, 1, (64, 64)), np.full((8, 8), 3.0),
                                            np.array([[0.0, 2.0 ** 60, 1.0, 5.0]] * 4)]:
        crop = cfa.central_crop(data)
        diffs = np.concatenate([(crop[:, 2:] - crop[:, :-2]).ravel(),
                                (crop[2:, :] - crop[:-2, :]).ravel()])
        assert cfa.same_colour_noise(crop) == float(mad_std(diffs)) / math.sqrt(2.0)


def test_colour_mosaic_shares_the_frame_quantum(rng):
    """With the frame's samples passed in, ``equalise_cfa`` takes its quantum from them (left
    for the feature modules) and gives what it gives alone."""
    for data in _mosaic_frames(rng)[:3]:
        frame = RawFrame(data, {}, {"full_scale": 65535.0, "bits": 16, "planes": 1})
        samples = sampling.FrameSamples(frame.data)
        shared, shared_features = cfa.equalise_cfa(frame, samples)
        alone, alone_features = cfa.equalise_cfa(frame)
        assert "step" in samples.__dict__  # computed once, cached for the features
        assert shared_features == alone_features
        assert np.array_equal(shared.data, alone.data)
        assert (shared.data is frame.data) == (alone.data is frame.data)


# ------------------------------------------------------------ counted order statistics

def _integer_samples(rng):
    """Integer samples of every size parity, with ties, negative values and a single value."""
    for trial in range(150):
        size = int(rng.integers(1, 5000))
        centre, sigma = float(rng.integers(-500, 500)), float(rng.choice([0.3, 3, 300, 20000]))
        values = np.round(rng.normal(centre, sigma, size))
        if trial % 3 == 0:
            values[rng.random(size) < 0.3] = values[0]  # ties around the middle
        yield values
    yield np.array([7.0])
    yield np.array([0.0, 65535.0])


def test_counted_statistics_equal_numpy_and_astropy(rng):
    from astropy.stats import mad_std

    from exporter.features.counted import value_counts

    for values in _integer_samples(rng):
        counts = value_counts(values)
        assert counts is not None
        assert np.array_equal(counts.percentiles(pixel_stats.PERCENTILES),
                              np.percentile(values, pixel_stats.PERCENTILES))
        assert np.array_equal(counts.percentiles((0.0, 100.0, 50.0)),
                              np.percentile(values, (0.0, 100.0, 50.0)))
        assert counts.median() == np.median(values)
        assert counts.mad_std() == float(mad_std(values))
        assert value_counts(values.astype(np.int64), integers=True).mad_std() == counts.mad_std()


def test_values_that_are_not_counted(rng):
    from exporter.features.counted import value_counts

    assert value_counts(np.array([0.0, 0.5, 2.0])) is None  # not integers
    assert value_counts(np.array([0.0, float(1 << 20)])) is None  # too wide
    assert value_counts(np.array([0.0, 2.0 ** 60])) is None  # beyond exact integers
    assert value_counts(np.array([-3.0, 4.0])).median() == 0.5


def _local_maxima_reference(image, radius, threshold, border):
    """The full-image search that :func:`kernels.local_maxima` replaces."""
    h, w = image.shape
    b, r = border, radius
    inner = image[b:h - b, b:w - b]
    local = kernels.box_max(image[b - r:h - b + r, b - r:w - b + r], r)
    ys, xs = np.nonzero((inner == local) & (inner > threshold))
    return ys + b, xs + b


def test_local_maxima_equal_the_full_search(rng):
    """Only the pixels above the threshold compared with their neighbours: the same maxima in
    the same order, with plateaus (ties), NaN, and few or many pixels above the threshold."""
    for trial in range(60):
        shape = (int(rng.integers(20, 80)), int(rng.integers(20, 80)))
        image = ndimage.gaussian_filter(rng.normal(size=shape), trial % 3 * 0.5)
        if trial % 4 == 0:
            image = np.round(image * 2)  # plateaus
        if trial % 7 == 0:
            image[rng.random(shape) < 0.01] = np.nan
        if trial % 9 == 0:
            image = np.asfortranarray(image)  # not C-contiguous: the full search
        radius = (1, 2)[trial % 2]
        border = radius + int(rng.integers(0, 9))
        for threshold in (-np.inf, -1.0, 0.0, 1.0, 2.5, np.inf):
            ys, xs = kernels.local_maxima(image, radius, threshold, border)
            ry, rx = _local_maxima_reference(image, radius, threshold, border)
            assert np.array_equal(ys, ry) and np.array_equal(xs, rx)
    image = np.full((30, 30), 2.0)
    border = stars.CUTOUT_RADIUS
    # constant: no peak, above the threshold too
    assert kernels.find_peaks(image, 1.0, border_width=border)[0].size == 0
    image[15, 15] = 3.0
    assert kernels.find_peaks(image, 2.5, border_width=border)[0].tolist() == [15]
    # the plateau away from the bump
    assert kernels.find_peaks(image, 1.0, border_width=border)[0].size == 14 * 14 - 24


def _neighbour_shares_reference(sub, step):
    """:func:`stars.peak_neighbour_shares` before it used :func:`kernels.local_maxima`."""
    from astropy.stats import mad_std

    noise = max(float(mad_std(sub[::3, ::3])), step / math.sqrt(12.0))
    if not (math.isfinite(noise) and noise > 0):
        return np.empty(0)
    inner = sub[1:-1, 1:-1]
    peak = ndimage.maximum_filter(sub, 3)[1:-1, 1:-1]
    ys, xs = np.nonzero((inner == peak) & (inner > stars.DETECT_SIGMA * noise))
    if ys.size == 0:
        return np.empty(0)
    ys, xs = ys + 1, xs + 1
    neighbours = sum(sub[ys + dy, xs + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if dy or dx) / 8.0
    return neighbours / sub[ys, xs]


def test_peak_neighbour_shares_unchanged(rng):
    for trial in range(20):
        sub = rng.normal(size=(64, 96))
        for _ in range(int(rng.integers(0, 30))):  # stars and hot pixels
            y, x = int(rng.integers(2, 62)), int(rng.integers(2, 94))
            sub[y, x] += rng.uniform(5, 50)
            if trial % 2:
                sub[y - 1:y + 2, x - 1:x + 2] += rng.uniform(1, 10)
        if trial % 5 == 0:
            sub = np.round(sub)
        step = float(trial % 3)
        assert np.array_equal(stars.peak_neighbour_shares(sub, step),
                              _neighbour_shares_reference(sub, step))


def _bilinear_reference(image, shape):
    """:func:`kernels.bilinear_resize` before it worked in place."""
    out = image
    for axis, size in enumerate(shape):
        n = image.shape[axis]
        x = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
        low = np.minimum(x.astype(np.intp), n - 1)
        high = np.minimum(low + 1, n - 1)
        frac = x - low
        if axis == 0:
            out = out[low] * (1 - frac)[:, None] + out[high] * frac[:, None]
        else:
            out = out[:, low] * (1 - frac) + out[:, high] * frac
    return np.clip(out, image.min(), image.max())


def test_bilinear_resize_in_place_unchanged(rng):
    for shape_in, shape_out in [((8, 8), (256, 256)), ((3, 5), (100, 170)), ((1, 8), (21, 256)),
                                ((8, 1), (256, 7)), ((4, 4), (128, 128)), ((16, 7), (512, 230))]:
        cells = rng.normal(1000, 30, shape_in)
        before = cells.copy()
        assert np.array_equal(kernels.bilinear_resize(cells, shape_out),
                              _bilinear_reference(cells, shape_out))
        assert np.array_equal(cells, before)  # the input is not touched
    for cells in (rng.normal(0, 1, (5, 6)).astype(np.float32), rng.integers(0, 99, (5, 6))):
        got = kernels.bilinear_resize(cells, (40, 33))
        assert got.dtype == np.float64 and np.array_equal(got, _bilinear_reference(cells, (40, 33)))
    tile = np.round(rng.normal(500, 10, (200, 260)))
    tile[50, 60] += 300
    sub, yx, found = stars.detect_peaks(tile, 10)
    assert np.array_equal(sub, tile - kernels.tile_background(tile))


def test_slit_floor_taken_once_is_the_same(rng):
    """The 1st percentile of a frame and of its transpose are the same number, so slit_features
    takes it once; with it given, line_profile_features gives what it gives alone."""
    for trial in range(12):
        shape = (int(rng.integers(8, 90)), int(rng.integers(8, 90)))
        image = rng.normal(100, 10, shape)
        if trial % 2:
            image = np.round(image)
        image[:, int(rng.integers(0, shape[1]))] += 50  # a line
        floor = np.percentile(image, 1)
        assert floor == np.percentile(image.T, 1)
        for view in (image, image.T):
            alone = spectra.line_profile_features(view, 3.0)
            given = spectra.line_profile_features(view, 3.0, floor)
            assert alone.keys() == given.keys()
            assert all(alone[k] == given[k] or (math.isnan(alone[k]) and math.isnan(given[k]))
                       for k in alone)


def test_reflect_padding_equals_numpy_pad(rng):
    """The running medians' mirrored edges written by slice copies: numpy.pad's array."""
    for n in range(1, 9):
        for axis in (0, 1):
            for radius in (1, 2, 3):
                for dtype in (np.float64, np.float32, np.int32, np.uint16):
                    shape = (n, 5) if axis == 0 else (5, n)
                    image = (rng.normal(size=shape) * 100).astype(dtype)
                    for view in (image, image[::-1, ::2], image.T.copy().T):
                        expected = np.pad(view, [(radius, radius) if ax == axis else (0, 0)
                                                 for ax in range(2)], mode="reflect")
                        got = kernels._reflect_padded(view, axis, radius)
                        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    image = rng.normal(size=(4, 5, 6))
    image[1, 2, 3] = np.nan
    for axis in range(3):
        assert np.array_equal(kernels._reflect_padded(image, axis, 2), np.pad(
            image, [(2, 2) if ax == axis else (0, 0) for ax in range(3)], mode="reflect"),
            equal_nan=True)


def test_integer_star_tiles_give_the_same_stars(rng):
    """Integer frames are searched in int32 tiles, float frames in float64 tiles: the same
    numbers, the same star features."""
    sky = rng.normal(800, 12, (700, 900))
    yy, xx = np.mgrid[:700, :900]
    for _ in range(60):
        y, x = rng.uniform(0, 700), rng.uniform(0, 900)
        sky += rng.uniform(100, 3000) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 4.5)
    sky[rng.integers(0, 700, 50), rng.integers(0, 900, 50)] = 9000  # hot pixels
    for dtype in (np.uint16, np.int16, np.int32, np.uint8):
        data = np.clip(np.round(sky / (40 if dtype == np.uint8 else 1)), 0,
                       np.iinfo(dtype).max).astype(dtype)
        tiles = [t for _, t in stars.star_tiles(data)]
        assert all(t.dtype == np.int32 for t in tiles)
        assert all(np.array_equal(t, f) for t, f in zip(tiles, sampling.native_tiles(
            data, stars.STAR_TILE_PIXELS, stars.STAR_TILE_SIDE)))
        ints = stars.star_features(data, 1.0)
        floats = stars.star_features(data.astype(np.float64), 1.0)
        assert ints == floats or all(
            ints[k] == floats[k] or (math.isnan(ints[k]) and math.isnan(floats[k])) for k in ints)
    assert stars.star_tiles(np.zeros((50, 50), np.uint32))[0][1].dtype == np.float64  # may not fit


def _measure_peak_reference(sub, y, x):
    """:func:`stars.measure_peak` as it was before the peaks were measured together."""
    r = stars.CUTOUT_RADIUS
    cut = sub[y - r:y + r + 1, x - r:x + r + 1]
    edge = np.sort(np.concatenate([cut[0], cut[-1], cut[1:-1, 0], cut[1:-1, -1]]))
    half = edge.size // 2
    cut = cut - (edge[half] if edge.size % 2 else (edge[half - 1] + edge[half]) / 2)
    cy, cx = divmod(int(np.argmax(cut[r - 1:r + 2, r - 1:r + 2])), 3)
    cy, cx = cy + r - 1, cx + r - 1
    peak = float(cut[cy, cx])
    if not peak > 0:
        return math.nan, math.nan, math.nan
    core = cut[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3].sum()
    sharpness = peak / core if core > 0 else math.nan
    labels, _ = ndimage.label(cut >= 0.5 * peak, structure=ndimage.generate_binary_structure(2, 1))
    region = labels == labels[cy, cx]
    if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
        return math.nan, math.nan, sharpness
    area = int(np.count_nonzero(region))
    fwhm = 2.0 * math.sqrt(area / math.pi)
    ys, xs = np.nonzero(region)
    weights = cut[ys, xs]
    total = float(weights.sum())
    if area < 2 or total <= 0:
        return fwhm, math.nan, sharpness
    dy, dx = ys - weights @ ys / total, xs - weights @ xs / total
    cyy, cxx, cxy = weights @ (dy * dy) / total, weights @ (dx * dx) / total, \
        weights @ (dy * dx) / total
    low, high = np.linalg.eigvalsh(np.array([[cyy, cxy], [cxy, cxx]]))
    roundness = math.sqrt(max(low, 0.0) / high) if high > 0 else math.nan
    return fwhm, roundness, sharpness


def test_peaks_measured_together_as_one_by_one(rng):
    """Stars, blends, hot pixels, tracks, extended blobs (regions touching the cutout border),
    dips (no positive peak) and plateaus: measure_peaks gives measure_peak's values."""
    yy, xx = np.mgrid[:160, :200]
    for trial in range(8):
        sub = rng.normal(0, 5, (160, 200))
        for _ in range(25):
            y, x, width = rng.uniform(0, 160), rng.uniform(0, 200), rng.uniform(0.5, 6)
            sub += rng.uniform(-30, 400) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2)
                                                  / (2 * width ** 2))
        sub[rng.integers(0, 160, 20), rng.integers(0, 200, 20)] += 500  # hot pixels
        sub[40, 30:60] += 200  # a track
        if trial % 2:
            sub = np.round(sub)  # ties
        r = stars.CUTOUT_RADIUS
        yx = np.column_stack([rng.integers(r, 160 - r, 60), rng.integers(r, 200 - r, 60)])
        _, found, _ = stars.detect_peaks(sub + 1000.0, 60)
        for points in (yx, found, yx[:1], yx[:0]):
            expected = [_measure_peak_reference(sub, y, x) for y, x in points]
            assert stars.measure_peaks(sub, points) == expected or all(
                all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(p, q))
                for p, q in zip(stars.measure_peaks(sub, points), expected))
            assert len(stars.measure_peaks(sub, points)) == len(expected)
            assert [stars.measure_peak(sub, y, x) for y, x in points[:5]] == expected[:5] or all(
                all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(p, q))
                for p, q in zip([stars.measure_peak(sub, y, x) for y, x in points[:5]], expected))
