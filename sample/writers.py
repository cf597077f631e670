"""File formats as cameras and programs write them, and atomic writing.

A :class:`FileFormat` says how a frame's ADU end up on disk: plain FITS as unsigned 16-bit
(``BITPIX = 16``, ``BZERO = 32768``, the usual camera encoding), signed 16-bit, 8-bit or 32-bit
float (ADU, or scaled to 0..1 as Siril and PixInsight save), gzip-compressed FITS
(``.fits.gz``), tile-compressed FITS (``.fz``: an empty primary HDU and a ``CompImageHDU``),
colour cubes (``NAXIS3 = 3``), and TIFF (8/16-bit, grey or RGB, with or without compression;
TIFFs carry no FITS header). Files are written to a hidden temporary name and renamed into
place, so a reader never sees half a file. Output is byte-identical for identical input:
gzip's time stamp is fixed (in ``.fits.gz`` files and in the tiles of GZIP-compressed ``.fz``
files) and tile-compression dithering is seeded.
"""

from __future__ import annotations

import functools
import gzip
import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from astropy.io import fits

from sample.headers import quiet_cards
from skyshard.files import write_bytes_atomic


@dataclass(frozen=True)
class FileFormat:
    """How pixels are stored.

    ``container``: ``fits``, ``fits.gz``, ``fz`` or ``tiff``. ``dtype``: stored pixel type
    (``uint8``, ``uint16``, ``int16``, ``float32``). ``rgb``: three colour planes.
    ``normalized``: float data scaled to 0..1 of full scale. ``compression``: TIFF codec or
    FITS tile-compression algorithm. ``extension``: file-name extension including the dot.
    """

    name: str
    container: str
    dtype: str
    extension: str
    rgb: bool = False
    normalized: bool = False
    compression: str | None = None
    big_endian: bool = False


#: Format families and, per class, how often they occur (relative weights).
FAMILIES = ("fits_u16", "fits_i16", "fits_f32", "fits_f32_norm", "fits_u8", "fits_gz", "fz",
            "fits_rgb", "tiff_16", "tiff_8", "tiff_rgb16", "tiff_rgb8")
CLASS_WEIGHTS: dict[str, tuple[float, ...]] = {
    #                fu16 fi16 ff32 fnorm fu8  gz   fz   frgb  t16  t8   trgb16 trgb8
    "bias":           (50, 5, 6, 3, 3, 9, 9, 1, 7, 3, 2, 2),
    "darks":          (50, 5, 6, 3, 3, 9, 9, 1, 7, 3, 2, 2),
    "flats":          (44, 4, 7, 4, 3, 9, 9, 3, 7, 3, 4, 3),
    "deep_sky":       (42, 4, 7, 5, 2, 8, 8, 4, 6, 3, 7, 4),
    "planetary":      (20, 2, 4, 2, 14, 4, 4, 4, 8, 12, 12, 14),
    "spectrum": (48, 5, 9, 4, 3, 8, 10, 1, 7, 3, 1, 1),
}


def choose_format(rng: np.random.Generator, class_name: str, program: str,
                  fits_extension: str, eight_bit: bool) -> FileFormat:
    """Pick a storage format for one frame of ``class_name`` written by ``program``.

    Observatories never write TIFF but often compress; FireCapture and SharpCap favour TIFF;
    8-bit readouts favour 8-bit containers. ``fits_extension`` is the program's own choice of
    ``.fits``, ``.fit`` or ``.fts``.
    """
    weights = np.asarray(CLASS_WEIGHTS[class_name], dtype=float)
    family_index = {name: i for i, name in enumerate(FAMILIES)}
    if program == "observatory":
        for name in ("tiff_16", "tiff_8", "tiff_rgb16", "tiff_rgb8", "fits_u8", "fits_rgb",
                     "fits_f32_norm"):
            weights[family_index[name]] = 0.0
        weights[family_index["fits_gz"]] *= 2.5
        weights[family_index["fz"]] *= 2.5
    elif program in ("firecapture", "sharpcap"):
        for name in ("tiff_16", "tiff_8", "tiff_rgb16", "tiff_rgb8"):
            weights[family_index[name]] *= 2.0
    if eight_bit:
        for name in ("fits_u8", "tiff_8", "tiff_rgb8"):
            weights[family_index[name]] *= 3.0
    else:
        weights[family_index["fits_u8"]] *= 0.2
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=weights / weights.sum()))]
    return format_of_family(family, rng, fits_extension)


def format_of_family(family: str, rng: np.random.Generator, fits_extension: str) -> FileFormat:
    """The concrete :class:`FileFormat` of a format family, with its random details."""
    if family.startswith("tiff"):
        extension = str(rng.choice([".tif", ".tif", ".tiff", ".TIF"]))
        compression = rng.choice([None, None, "zlib", "lzw"])
        return FileFormat(family, "tiff", "uint8" if family.endswith("8") else "uint16",
                          extension, rgb="rgb" in family,
                          compression=None if compression is None else str(compression),
                          big_endian=bool(rng.random() < 0.15))
    if family == "fits_gz":
        dtype = str(rng.choice(["uint16", "uint16", "float32", "int16"]))
        return FileFormat(family, "fits.gz", dtype, ".fits.gz")
    if family == "fz":
        dtype = str(rng.choice(["uint16", "uint16", "uint16", "float32"]))
        return FileFormat(family, "fz", dtype, str(rng.choice([".fits.fz", ".fz"])),
                          compression=str(rng.choice(["RICE_1", "RICE_1", "GZIP_2"])))
    dtype = {"fits_u16": "uint16", "fits_i16": "int16", "fits_f32": "float32",
             "fits_f32_norm": "float32", "fits_u8": "uint8", "fits_rgb": "uint16"}[family]
    if family == "fits_rgb" and rng.random() < 0.5:
        dtype = "float32"
    return FileFormat(family, "fits", dtype, fits_extension, rgb=family == "fits_rgb",
                      normalized=family == "fits_f32_norm" or (
                          family == "fits_rgb" and dtype == "float32"))


def encode(adu: np.ndarray, full_scale: int, fmt: FileFormat) -> np.ndarray:
    """Convert delivered ADU (int, (H, W) or (3, H, W), 0..``full_scale``) to the stored array.

    8-bit containers of 16-bit data keep the top 8 bits; 16-bit containers of 8-bit data are
    shifted up as capture programs do. Signed 16-bit clips at 32767 as old software did.
    TIFF colour is (H, W, 3); FITS colour is (3, H, W).
    """
    data = adu
    if fmt.dtype == "uint8":
        data = data >> 8 if full_scale > 255 else data
        data = np.clip(data, 0, 255).astype(np.uint8)
    elif fmt.dtype in ("uint16", "int16"):
        if full_scale <= 255:
            data = data << 8
        top = 32767 if fmt.dtype == "int16" else 65535
        data = np.clip(data, 0, top).astype(fmt.dtype)
    else:
        data = data.astype(np.float32)
        if fmt.normalized:
            data /= np.float32(full_scale)
    if fmt.container == "tiff" and data.ndim == 3:
        data = np.ascontiguousarray(np.moveaxis(data, 0, -1))
    return data


@contextmanager
def gzip_tiles_without_clock():
    """astropy's GZIP_1/GZIP_2 tile codecs call ``gzip.compress``, which stamps every tile with
    the current second: two runs of the same seed then differ in their ``.fz`` bytes, hence in
    their sha256 and in the split the export gives them. Within this block the stamp is 0."""
    from astropy.io.fits.hdu.compressed import _codecs

    original = _codecs.gzip_compress
    _codecs.gzip_compress = functools.partial(gzip.compress, mtime=0)
    try:
        yield
    finally:
        _codecs.gzip_compress = original


def fits_bytes(data: np.ndarray, header: fits.Header | None, fmt: FileFormat,
               dither_seed: int = 1) -> bytes:
    """The FITS file (or tile-compressed FITS) for ``data`` with ``header``'s cards."""
    buffer = io.BytesIO()
    cards = header.copy() if header is not None else fits.Header()
    if fmt.container == "fz":
        hdus = fits.HDUList([fits.PrimaryHDU(),
                             fits.CompImageHDU(data, header=cards,
                                               compression_type=fmt.compression or "RICE_1",
                                               dither_seed=dither_seed)])
    else:
        primary = fits.PrimaryHDU(data)
        for card in cards.cards:
            primary.header.append(card)
        if fmt.rgb:
            primary.header["CTYPE3"] = ("RGB", "Colour planes R, G, B")
        hdus = fits.HDUList([primary])
    with quiet_cards(), gzip_tiles_without_clock():
        hdus.writeto(buffer, output_verify="silentfix")
    raw = buffer.getvalue()
    if fmt.container == "fits.gz":
        packed = io.BytesIO()
        # mtime=0 keeps the file byte-identical between runs (astropy would stamp the clock);
        # level 6 is gzip's own default, and level 9 is many times slower on noisy pixels.
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0,
                           compresslevel=6) as stream:
            stream.write(raw)
        raw = packed.getvalue()
    return raw


def tiff_bytes(data: np.ndarray, fmt: FileFormat, software: str | None) -> bytes:
    """A baseline TIFF of ``data`` ((H, W) grey or (H, W, 3) RGB), no FITS header."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data, photometric="rgb" if data.ndim == 3 else "minisblack",
                     compression=fmt.compression, software=software or False, metadata=None,
                     byteorder=">" if fmt.big_endian else "<")
    return buffer.getvalue()


def frame_bytes(data: np.ndarray, header: fits.Header | None, fmt: FileFormat,
                software: str | None = None, dither_seed: int = 1) -> bytes:
    """The file contents for an encoded frame (see :func:`encode`) in ``fmt``."""
    if fmt.container == "tiff":
        return tiff_bytes(data, fmt, software)
    return fits_bytes(data, header, fmt, dither_seed)


def write_frame(path: Path, data: np.ndarray, header: fits.Header | None, fmt: FileFormat,
                software: str | None = None, dither_seed: int = 1) -> Path:
    """Write an encoded frame (see :func:`encode`) to ``path`` in ``fmt``; returns ``path``."""
    write_bytes_atomic(path, frame_bytes(data, header, fmt, software, dither_seed))
    return Path(path)
