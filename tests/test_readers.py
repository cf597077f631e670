"""Reading FITS and TIFF files into RawFrames, and refusing what cannot become one."""

from __future__ import annotations

import bz2
import gzip
import math
import os
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from exporter.frame import FrameError, RawFrame
from exporter.readers import REC709_WEIGHTS, frame_kind, read_frame
from conftest import real_frame_files

pytestmark = pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyWarning")

RNG = np.random.default_rng(20240501)


def write_fits(path: Path, data: np.ndarray, **cards) -> Path:
    hdu = fits.PrimaryHDU(data)
    for keyword, value in cards.items():
        hdu.header[keyword] = value
    hdu.writeto(path)
    return path


def gzip_file(source: Path, target: Path) -> Path:
    target.write_bytes(gzip.compress(source.read_bytes()))
    return target


def fits_header_bytes(cards: list[str]) -> bytes:
    """A raw FITS header block from 80-character card images (END appended)."""
    text = "".join(card.ljust(80) for card in [*cards, "END"])
    return text.ljust(2880 * math.ceil(len(text) / 2880)).encode("ascii")


def assert_stage(path: Path, stage: str, **kwargs) -> FrameError:
    with pytest.raises(FrameError) as caught:
        read_frame(path, **kwargs)
    assert caught.value.stage == stage, str(caught.value)
    assert str(caught.value)
    return caught.value


# ------------------------------------------------------------------------------------ FITS


def test_uint16_with_bzero_equals_astropy_scaled_read(tmp_path):
    camera = RNG.integers(0, 65536, (37, 53), dtype=np.uint16)
    path = write_fits(tmp_path / "light.fits", camera)
    assert fits.getheader(path)["BZERO"] == 32768  # stored as int16 + BZERO on disk

    frame = read_frame(path)

    assert isinstance(frame, RawFrame)
    assert frame.data.dtype == np.uint16
    np.testing.assert_array_equal(frame.data, fits.getdata(path))
    np.testing.assert_array_equal(frame.data, camera)
    assert not frame.data.flags.writeable
    assert not isinstance(frame.data, np.memmap)
    assert frame.source == {
        "format": "fits", "dtype": "uint16", "bits": 16, "full_scale": 65535.0,
        "saturation_hint": frame.source["saturation_hint"], "original_shape": (37, 53),
        "hdu": 0, "planes": 1, "reduction": "none"}
    assert math.isnan(frame.source["saturation_hint"])


def test_float32_fits_keeps_values_and_reports_saturation_hint(tmp_path):
    image = RNG.normal(1000, 50, (20, 30)).astype(np.float32)
    path = write_fits(tmp_path / "float.fits", image, SATURATE=60000.0)
    frame = read_frame(path)
    assert frame.data.dtype == np.float32 and frame.data.dtype.isnative
    np.testing.assert_array_equal(frame.data, image)
    assert frame.source["dtype"] == "float32" and frame.source["bits"] == 32
    assert frame.source["full_scale"] == 60000.0 == frame.source["saturation_hint"]


def test_float_without_saturation_has_nan_full_scale(tmp_path):
    frame = read_frame(write_fits(tmp_path / "f64.fits", RNG.random((8, 9))))
    assert frame.data.dtype == np.float32
    assert frame.source["dtype"] == "float64" and frame.source["bits"] == 64
    assert math.isnan(frame.source["full_scale"])


def test_signed_int16_stays_signed(tmp_path):
    image = RNG.integers(-32768, 32767, (16, 16), dtype=np.int16)
    frame = read_frame(write_fits(tmp_path / "signed.fit", image))
    assert frame.data.dtype == np.int16
    np.testing.assert_array_equal(frame.data, image)
    assert frame.source["full_scale"] == 32767.0 and frame.source["dtype"] == "int16"


@pytest.mark.parametrize("dtype, full_scale", [(np.int8, 127.0), (np.uint32, 4294967295.0),
                                               (np.uint8, 255.0)])
def test_other_integer_types_after_bzero(tmp_path, dtype, full_scale):
    info = np.iinfo(dtype)
    image = RNG.integers(info.min, info.max, (10, 12), dtype=dtype, endpoint=True)
    path = write_fits(tmp_path / "ints.fits", image)
    frame = read_frame(path)
    assert frame.data.dtype == dtype
    np.testing.assert_array_equal(frame.data, fits.getdata(path))
    assert frame.source["full_scale"] == full_scale


def test_general_bscale_bzero_become_float32(tmp_path):
    stored = RNG.integers(-3000, 3000, (12, 14), dtype=np.int16)
    hdu = fits.PrimaryHDU(stored)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 100.0
    hdu.writeto(tmp_path / "scaled.fits")
    frame = read_frame(tmp_path / "scaled.fits")
    assert frame.data.dtype == np.float32
    np.testing.assert_allclose(frame.data, fits.getdata(tmp_path / "scaled.fits"), rtol=1e-6)
    np.testing.assert_allclose(frame.data, stored * 0.5 + 100)
    assert frame.source["full_scale"] == pytest.approx(32767 * 0.5 + 100)


def test_blank_pixels_become_nan(tmp_path):
    stored = np.arange(12, dtype=np.int16).reshape(3, 4)
    hdu = fits.PrimaryHDU(stored)
    hdu.header["BLANK"] = 5
    hdu.writeto(tmp_path / "blank.fits")
    data = read_frame(tmp_path / "blank.fits").data
    assert data.dtype == np.float32 and np.isnan(data[1, 1]) and np.isnan(data).sum() == 1


def test_fz_reads_compressed_image_in_hdu_1_with_merged_header(tmp_path):
    camera = RNG.integers(0, 65536, (64, 48), dtype=np.uint16)
    primary = fits.PrimaryHDU()
    primary.header["OBJECT"] = "M 42"
    primary.header["EXPTIME"] = 1.0
    image = fits.CompImageHDU(camera)
    image.header["EXPTIME"] = 30.0
    fits.HDUList([primary, image]).writeto(tmp_path / "light.fits.fz")

    frame = read_frame(tmp_path / "light.fits.fz")

    np.testing.assert_array_equal(frame.data, camera)
    assert frame.source["format"] == "fz" and frame.source["hdu"] == 1
    assert frame.source["dtype"] == "uint16"
    assert frame.header["OBJECT"] == "M 42" and frame.header["EXPTIME"] == 30.0
    assert "COMMENT" not in frame.header and "" not in frame.header


def test_gzip_fits(tmp_path):
    camera = RNG.integers(0, 65536, (30, 40), dtype=np.uint16)
    plain = write_fits(tmp_path / "plain.fits", camera, IMAGETYP="Dark Frame")
    frame = read_frame(gzip_file(plain, tmp_path / "dark.fits.gz"))
    np.testing.assert_array_equal(frame.data, camera)
    assert frame.source["format"] == "fits.gz"
    assert frame.header["IMAGETYP"] == "Dark Frame"


@pytest.mark.parametrize("name, compress, label", [
    ("dark.fit.gz", gzip.compress, "fits.gz"), ("dark.FTS.GZ", gzip.compress, "fits.gz"),
    ("dark.fits.bz2", bz2.compress, "fits.bz2"), ("dark.fit.bz2", bz2.compress, "fits.bz2")])
def test_gzip_and_bzip2_under_every_fits_extension(tmp_path, name, compress, label):
    camera = RNG.integers(0, 65536, (30, 40), dtype=np.uint16)
    plain = write_fits(tmp_path / "plain.fits", camera, IMAGETYP="Dark Frame")
    packed = tmp_path / name
    packed.write_bytes(compress(plain.read_bytes()))
    frame = read_frame(packed)
    np.testing.assert_array_equal(frame.data, camera)
    assert frame.source["format"] == label and frame.header["IMAGETYP"] == "Dark Frame"


def test_header_is_plain_upper_case_values(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((4, 4), np.int16))
    hdu.header["imagetyp"] = "LIGHT"
    hdu.header["EXPTIME"] = 2.5
    hdu.header["COOLER"] = True
    hdu.header["HISTORY"] = "reduced"
    hdu.header["COMMENT"] = "a note"
    hdu.writeto(tmp_path / "h.fits")
    header = read_frame(tmp_path / "h.fits").header
    assert header["IMAGETYP"] == "LIGHT" and header["EXPTIME"] == 2.5 and header["COOLER"] is True
    assert all(key == key.upper() for key in header)
    assert not {"HISTORY", "COMMENT"} & set(header)


def test_image_after_table_and_empty_primary_is_found(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.ones(3))])
    image = fits.ImageHDU(np.full((5, 6), 7, np.int16))
    fits.HDUList([fits.PrimaryHDU(), table, image]).writeto(tmp_path / "mef.fits")
    frame = read_frame(tmp_path / "mef.fits")
    assert frame.source["hdu"] == 2 and frame.data.shape == (5, 6)


def test_malformed_cards_are_tolerated(tmp_path):
    cards = ["SIMPLE  =                    T", "BITPIX  =                   16",
             "NAXIS   =                    2", "NAXIS1  =                    4",
             "NAXIS2  =                    3", "EXPTIME = 'abc", "GAIN    =                1.2.3",
             "OBJECT  = 'M 31'", "UNDEFKEY=", "BAZ      = 5", "COMMENT hello", "HISTORY x",
             "        free text"]
    data = np.arange(12, dtype=">i2").tobytes().ljust(2880, b"\0")
    (tmp_path / "odd.fits").write_bytes(fits_header_bytes(cards) + data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        frame = read_frame(tmp_path / "odd.fits")
    np.testing.assert_array_equal(frame.data, np.arange(12).reshape(3, 4))
    assert frame.header["OBJECT"] == "M 31"
    assert frame.header["UNDEFKEY"] is None
    assert {"EXPTIME", "GAIN"} <= set(frame.header)  # fixed silently, kept as text
    assert not {"COMMENT", "HISTORY", ""} & set(frame.header)


@pytest.mark.parametrize("name", ["A.FITS", "b.Fit", "c.FTS", "d.FITS.GZ", "e.FZ"])
def test_extensions_are_case_insensitive(tmp_path, name):
    image = np.arange(20, dtype=np.int16).reshape(4, 5)
    path = tmp_path / name
    if name.lower().endswith(".gz"):
        gzip_file(write_fits(tmp_path / "plain.fits", image), path)
    elif name.lower().endswith(".fz"):
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(image)]).writeto(path)
    else:
        write_fits(path, image)
    assert frame_kind(path) == "fits"
    np.testing.assert_array_equal(read_frame(path).data, image)


# ------------------------------------------------------------------------------ cubes, axes


def test_cube_is_reduced_to_the_mean_plane_by_plane(tmp_path):
    cube = RNG.integers(0, 4000, (5, 20, 30)).astype(np.uint16)
    frame = read_frame(write_fits(tmp_path / "cube.fits", cube))
    assert frame.data.shape == (20, 30) and frame.data.dtype == np.float32
    np.testing.assert_allclose(frame.data, cube.mean(axis=0), rtol=1e-6)
    assert frame.source["planes"] == 5 and frame.source["reduction"] == "mean"
    assert frame.source["original_shape"] == (5, 20, 30)


def test_compressed_cube_is_reduced(tmp_path):
    cube = RNG.integers(0, 4000, (6, 16, 24)).astype(np.int16)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(cube)]).writeto(tmp_path / "cube.fz")
    frame = read_frame(tmp_path / "cube.fz")
    np.testing.assert_allclose(frame.data, cube.mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("planes", [3, 4])
def test_rgb_cube_becomes_rec709_luminance(tmp_path, planes):
    cube = RNG.integers(0, 65536, (planes, 10, 12)).astype(np.uint16)
    frame = read_frame(write_fits(tmp_path / "rgb.fits", cube))
    expected = sum(w * cube[i].astype(np.float64) for i, w in enumerate(REC709_WEIGHTS))
    np.testing.assert_allclose(frame.data, expected, rtol=1e-5)
    assert frame.source["reduction"] == "luminance" and frame.source["planes"] == planes


def test_pixel_interleaved_rgb_is_recognised(tmp_path):
    image = RNG.random((10, 12, 3)).astype(np.float32)
    frame = read_frame(write_fits(tmp_path / "hwc.fits", image))
    assert frame.data.shape == (10, 12) and frame.source["reduction"] == "luminance"


def test_degenerate_axes_are_squeezed(tmp_path):
    image = RNG.integers(0, 100, (1, 1, 6, 7)).astype(np.int16)
    frame = read_frame(write_fits(tmp_path / "squeeze.fits", image))
    np.testing.assert_array_equal(frame.data, image[0, 0])
    assert frame.source["planes"] == 1 and frame.source["reduction"] == "none"


def test_trailing_length_one_axis_is_squeezed(tmp_path):
    image = RNG.integers(0, 100, (6, 7, 1)).astype(np.int16)  # NAXIS1 = 1
    frame = read_frame(write_fits(tmp_path / "hw1.fits", image))
    np.testing.assert_array_equal(frame.data, image[..., 0])


@pytest.mark.parametrize("image", [
    np.full((8, 8), np.nan, np.float32),
    np.full((8, 8), 1234, np.uint16),
    np.arange(9, dtype=np.int16).reshape(3, 3),
    np.arange(50, dtype=np.float32).reshape(1, 50),
    np.arange(50, dtype=np.float32).reshape(50, 1),
], ids=["all-nan", "constant", "3x3", "1xN", "Nx1"])
def test_degenerate_but_valid_frames_are_returned(tmp_path, image):
    frame = read_frame(write_fits(tmp_path / "odd.fits", image))
    assert frame.data.shape == image.shape
    np.testing.assert_array_equal(frame.data, image)


# ------------------------------------------------------------------------------------ TIFF


@pytest.mark.parametrize("dtype, full_scale", [(np.uint8, 255.0), (np.uint16, 65535.0),
                                               (np.uint32, 4294967295.0), (np.float32, math.nan)])
def test_grey_tiff(tmp_path, dtype, full_scale):
    image = (RNG.random((20, 30)) * 200).astype(dtype)
    tifffile.imwrite(tmp_path / "grey.tif", image)
    frame = read_frame(tmp_path / "grey.tif")
    np.testing.assert_array_equal(frame.data, image)
    assert frame.data.dtype == dtype and not frame.data.flags.writeable
    assert frame.header == {} or all(key.startswith("TIFF_") for key in frame.header)
    assert frame.source["format"] == "tiff" and frame.source["reduction"] == "none"
    if math.isnan(full_scale):
        assert math.isnan(frame.source["full_scale"])
    else:
        assert frame.source["full_scale"] == full_scale


def test_uncompressed_tiff_is_memory_mapped_and_compressed_is_decoded(tmp_path):
    image = RNG.integers(0, 65536, (40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "raw.tif", image)
    tifffile.imwrite(tmp_path / "zip.tif", image, compression="zlib")
    mapped, decoded = read_frame(tmp_path / "raw.tif"), read_frame(tmp_path / "zip.tif")
    assert isinstance(mapped.data, np.memmap)
    np.testing.assert_array_equal(mapped.data, decoded.data)


def test_big_endian_tiff_becomes_native(tmp_path):
    image = RNG.integers(0, 65536, (10, 11), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "be.tiff", image, byteorder=">")
    data = read_frame(tmp_path / "be.tiff").data
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, image)


@pytest.mark.parametrize("planar", [False, True])
def test_rgb_tiff_becomes_luminance(tmp_path, planar):
    rgb = RNG.integers(0, 65536, (12, 16, 3), dtype=np.uint16)
    stored = np.moveaxis(rgb, -1, 0) if planar else rgb
    tifffile.imwrite(tmp_path / "rgb.tif", stored, photometric="rgb",
                     planarconfig="separate" if planar else "contig")
    frame = read_frame(tmp_path / "rgb.tif")
    expected = sum(w * rgb[..., i].astype(np.float64) for i, w in enumerate(REC709_WEIGHTS))
    np.testing.assert_allclose(frame.data, expected, rtol=1e-5)
    assert frame.source["reduction"] == "luminance" and frame.source["planes"] == 3
    assert frame.source["bits"] == 16 and frame.source["full_scale"] == 65535.0


def test_rgba_tiff_ignores_alpha(tmp_path):
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    frame = read_frame(tmp_path / "rgba.tif")
    expected = sum(w * rgba[..., i].astype(np.float64) for i, w in enumerate(REC709_WEIGHTS))
    np.testing.assert_allclose(frame.data, expected, rtol=1e-5)


def test_multi_page_tiff_reads_the_first_page(tmp_path):
    stack = RNG.integers(0, 256, (4, 10, 12), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    frame = read_frame(tmp_path / "stack.tif")
    np.testing.assert_array_equal(frame.data, stack[0])
    assert frame.source["pages"] == 4 and frame.source["hdu"] == 0


def test_tiff_tags_are_prefixed_never_fits_keywords(tmp_path):
    tifffile.imwrite(tmp_path / "tags.TIF", np.zeros((4, 4), np.uint8), software="SharpCap",
                     description="EXPTIME=10", metadata=None)
    frame = read_frame(tmp_path / "tags.TIF")
    assert frame.header == {"TIFF_SOFTWARE": "SharpCap", "TIFF_IMAGEDESCRIPTION": "EXPTIME=10"}


# ---------------------------------------------------------------------------- bad files


def test_unknown_extension_is_a_discover_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_stage(tmp_path / "notes.txt", "discover")


def test_empty_file(tmp_path):
    (tmp_path / "empty.fits").write_bytes(b"")
    assert "empty" in str(assert_stage(tmp_path / "empty.fits", "read"))


def test_truncated_fits(tmp_path):
    path = write_fits(tmp_path / "full.fits", RNG.integers(0, 65536, (100, 100), np.uint16))
    (tmp_path / "cut.fits").write_bytes(path.read_bytes()[:2880 + 5000])
    assert "truncated" in str(assert_stage(tmp_path / "cut.fits", "read"))


def test_truncated_fz(tmp_path):
    image = RNG.integers(0, 65536, (100, 100), np.uint16)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(image)]).writeto(tmp_path / "full.fz")
    data = (tmp_path / "full.fz").read_bytes()
    (tmp_path / "cut.fz").write_bytes(data[:len(data) - 6000])
    assert_stage(tmp_path / "cut.fz", "read")


@pytest.mark.parametrize("name", ["noise.fits", "noise.fits.gz", "noise.fz", "noise.tif"])
def test_random_bytes(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(7).bytes(6000))
    assert_stage(tmp_path / name, "read")


def test_table_only_fits(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E",
                                                       array=np.arange(5.0))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    assert "no image" in str(assert_stage(tmp_path / "table.fits", "read"))


def test_one_dimensional_image_is_refused(tmp_path):
    write_fits(tmp_path / "spectrum1d.fits", np.arange(100, dtype=np.float32))
    assert "1-D" in str(assert_stage(tmp_path / "spectrum1d.fits", "read"))


def test_zero_length_axis_is_refused(tmp_path):
    cards = ["SIMPLE  =                    T", "BITPIX  =                   16",
             "NAXIS   =                    2", "NAXIS1  =                   10",
             "NAXIS2  =                    0"]
    (tmp_path / "zero.fits").write_bytes(fits_header_bytes(cards))
    assert_stage(tmp_path / "zero.fits", "read")


def test_huge_header_is_refused_before_allocation(tmp_path):
    cards = ["SIMPLE  =                    T", "BITPIX  =                   16",
             "NAXIS   =                    2", "NAXIS1  =               100000",
             "NAXIS2  =               100000"]
    (tmp_path / "huge.fits").write_bytes(fits_header_bytes(cards))  # header only, no data
    tracemalloc.start()
    started = time.perf_counter()
    try:
        error = assert_stage(tmp_path / "huge.fits", "limits")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 20 * 2**20
    assert "(100000, 100000)" in str(error)


def test_max_pixels_is_configurable(tmp_path):
    path = write_fits(tmp_path / "small.fits", np.zeros((100, 100), np.int16))
    assert_stage(path, "limits", max_pixels=9_999)
    assert read_frame(path, max_pixels=10_000).data.shape == (100, 100)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((50, 50, 3), np.uint8), photometric="rgb")
    assert_stage(tmp_path / "rgb.tif", "limits", max_pixels=5000)


def test_broken_gzip(tmp_path):
    plain = write_fits(tmp_path / "plain.fits", RNG.integers(0, 65536, (100, 100), np.uint16))
    packed = bytearray(gzip.compress(plain.read_bytes()))
    packed[200:260] = bytes(60)
    (tmp_path / "broken.fits.gz").write_bytes(bytes(packed))
    assert_stage(tmp_path / "broken.fits.gz", "read")


def test_truncated_gzip(tmp_path):
    plain = write_fits(tmp_path / "plain.fits", RNG.integers(0, 65536, (100, 100), np.uint16))
    packed = gzip.compress(plain.read_bytes())
    (tmp_path / "cut.fits.gz").write_bytes(packed[: int(len(packed) * 0.8)])
    assert_stage(tmp_path / "cut.fits.gz", "read")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff(tmp_path, compression):
    tifffile.imwrite(tmp_path / "full.tif", RNG.integers(0, 65536, (100, 100), np.uint16),
                     compression=compression)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert_stage(tmp_path / "cut.tif", "read")


def test_directory_named_like_a_frame(tmp_path):
    (tmp_path / "folder.fits").mkdir()
    assert "directory" in str(assert_stage(tmp_path / "folder.fits", "read"))


def test_symlink_loop(tmp_path):
    (tmp_path / "a.fits").symlink_to(tmp_path / "b.fits")
    (tmp_path / "b.fits").symlink_to(tmp_path / "a.fits")
    assert_stage(tmp_path / "a.fits", "read")


def test_missing_file(tmp_path):
    assert_stage(tmp_path / "gone.fits", "read")


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.fits")
    assert "regular file" in str(assert_stage(tmp_path / "pipe.fits", "read"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path):
    path = write_fits(tmp_path / "secret.fits", np.zeros((4, 4), np.int16))
    path.chmod(0)
    try:
        assert_stage(path, "read")
    finally:
        path.chmod(0o644)


def test_io_errors_while_reading_say_why(tmp_path, monkeypatch):
    """What an unreadable file looks like to the reader, even when the tests run as root."""
    import exporter.readers

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    path = write_fits(tmp_path / "locked.fits", np.zeros((4, 4), np.int16))
    monkeypatch.setattr(exporter.readers, "_magic_compression", refuse)
    assert str(assert_stage(path, "read")) == "cannot read file: Permission denied"


def test_input_file_is_not_modified(tmp_path):
    path = write_fits(tmp_path / "keep.fits", RNG.integers(0, 65536, (20, 20), np.uint16))
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    frame = read_frame(path)
    with pytest.raises(ValueError):
        frame.data[0, 0] = 1
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- real frames


@pytest.mark.realframes
def test_every_real_frame_reads_into_a_2d_frame(real_frames_dir):
    files = real_frame_files(real_frames_dir)
    assert files, f"no frame files under {real_frames_dir}"  # the folder grows: no fixed count
    for path in files:
        frame = read_frame(path)
        assert frame.data.ndim == 2 and min(frame.data.shape) > 1, path.name
        assert np.isfinite(frame.data).any(), path.name
        assert frame.source["format"] in ("fits", "fits.gz", "fz", "tiff"), path.name
        assert frame.source["planes"] >= 1 and frame.source["bits"] in (8, 16, 32, 64)


@pytest.mark.realframes
def test_real_frame_specifics(real_frames_dir):
    by_name = {path.name: path for path in real_frame_files(real_frames_dir)}

    floyds = read_frame(by_name["ASPIRED-example__coj2m002-en12-20200321-0023-w00.fits.fz"])
    assert floyds.source["hdu"] == 1 and floyds.source["format"] == "fz"
    assert floyds.data.shape == (512, 2079) and floyds.header["OBSTYPE"] == "LAMPFLAT"

    seestar = read_frame(by_name["zeseestarstacker__Light_M 94_10.0s_IRCUT_20250326-212046.fit"])
    assert seestar.data.shape == (1920, 1080) and seestar.data.dtype == np.uint16
    assert seestar.header["BAYERPAT"] == "GRBG"

    jupiter = read_frame(by_name["logitech-brio4k-telescope-adapter__jupiter.tif"])
    assert jupiter.data.shape == (720, 960) and jupiter.source["reduction"] == "luminance"
    assert jupiter.source["bits"] == 16 and jupiter.header == {}

    horsehead = read_frame(by_name["astropy-data__HorseHead.fits"])
    assert horsehead.source["hdu"] == 0 and horsehead.data.shape == (893, 891)

    kast_bias = read_frame(by_name["PypeIt__b21.fits.gz"])
    assert kast_bias.header["OBSTYPE"] == "DARK" and kast_bias.header["OBJECT"] == "Bias"
    np.testing.assert_array_equal(kast_bias.data, fits.getdata(by_name["PypeIt__b21.fits.gz"]))

    ids_arc = read_frame(by_name["rascal__int20180101_01355922.fits.fz"])
    assert ids_arc.data.shape == (4200, 366) and ids_arc.header["IMAGETYP"] == "arc"
