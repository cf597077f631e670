"""Broken and degenerate files, as every real archive has some: for demos and dead-letter tests.

Each kind is named for what is wrong with it; all carry frame extensions, so a scanner picks
them up like any frame:

========================  =====================================================================
``empty``                 zero bytes (an interrupted copy)
``truncated_fits``        a valid header, then only part of the data unit
``random_bytes``          noise with a ``.fit`` extension
``html_as_fits``          an HTML error page saved under a ``.fits`` name (a failed download)
``table_only``            valid FITS with an empty primary HDU and a binary table, no image
``header_only``           valid FITS whose primary HDU has ``NAXIS = 0`` and no extension
``broken_gzip``           a ``.fits.gz`` whose gzip stream stops mid-way
``truncated_tiff``        a TIFF cut off inside its pixel strips
``all_nan``               valid float FITS whose pixels are all NaN (readable, unusable)
========================  =====================================================================
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import tifffile
from astropy.io import fits

from skyshard.files import write_bytes_atomic

#: Kind -> file name.
BAD_FILES: dict[str, str] = {
    "empty": "Light_M42_120s_9999.fits",
    "truncated_fits": "Dark_300s_-10C_9998.fit",
    "random_bytes": "Bias_9997.fit",
    "html_as_fits": "download_9996.fits",
    "table_only": "catalog_9995.fits",
    "header_only": "header_only_9994.fts",
    "broken_gzip": "Flat_L_9993.fits.gz",
    "truncated_tiff": "jupiter_9992.tif",
    "all_nan": "calibrated_9991.fits",
}

#: Kinds that no FITS or TIFF reader can turn into an image; the others read without error
#: but hold no image (``table_only``, ``header_only``) or no usable pixel (``all_nan``).
UNREADABLE = ("empty", "truncated_fits", "random_bytes", "html_as_fits", "broken_gzip",
              "truncated_tiff")


def _image_fits(rng: np.random.Generator) -> bytes:
    data = (1000 + rng.normal(0, 10, (256, 256))).astype(np.uint16)
    header = fits.Header([("IMAGETYP", "Dark Frame"), ("EXPTIME", 300.0), ("CCD-TEMP", -10.0)])
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buffer)
    return buffer.getvalue()


def bad_payload(kind: str, seed: int = 0) -> bytes:
    """The contents of a broken file of ``kind`` (see the module table)."""
    rng = np.random.default_rng([seed, list(BAD_FILES).index(kind)])
    if kind == "empty":
        return b""
    if kind == "truncated_fits":
        whole = _image_fits(rng)
        return whole[:2880 + (len(whole) - 2880) // 3]
    if kind == "random_bytes":
        return rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    if kind == "html_as_fits":
        return (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
                b"<body><h1>Not Found</h1><p>The requested URL was not found.</p></body></html>\n")
    if kind == "table_only":
        table = fits.BinTableHDU.from_columns([
            fits.Column(name="RA", format="D", array=rng.uniform(0, 360, 50)),
            fits.Column(name="DEC", format="D", array=rng.uniform(-90, 90, 50)),
            fits.Column(name="MAG", format="E", array=rng.uniform(8, 16, 50))])
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(buffer)
        return buffer.getvalue()
    if kind == "header_only":
        primary = fits.PrimaryHDU()
        primary.header["IMAGETYP"] = "Light Frame"
        primary.header["OBJECT"] = "M31"
        buffer = io.BytesIO()
        primary.writeto(buffer)
        return buffer.getvalue()
    if kind == "broken_gzip":
        packed = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as stream:
            stream.write(_image_fits(rng))
        whole = packed.getvalue()
        return whole[:len(whole) // 2]
    if kind == "truncated_tiff":
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, rng.integers(0, 255, (240, 320), dtype=np.uint8),
                         software=False, metadata=None)
        whole = buffer.getvalue()
        return whole[:len(whole) // 2]
    if kind == "all_nan":
        buffer = io.BytesIO()
        fits.PrimaryHDU(np.full((128, 128), np.nan, dtype=np.float32)).writeto(buffer)
        return buffer.getvalue()
    raise ValueError(f"unknown bad-file kind {kind!r}; expected one of {tuple(BAD_FILES)}")


def write_bad_files(out_dir: str | Path, kinds: tuple[str, ...] | None = None,
                    seed: int = 0) -> dict[str, Path]:
    """Write one broken file of each of ``kinds`` (default: all) into ``out_dir``.

    Returns kind -> path. Contents depend only on ``seed``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for kind in kinds or tuple(BAD_FILES):
        path = out_dir / BAD_FILES[kind]
        write_bytes_atomic(path, bad_payload(kind, seed))
        written[kind] = path
    return written
