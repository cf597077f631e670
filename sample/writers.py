"""File formats as cameras, programs and archives write them, and atomic writing.

A :class:`FileFormat` says how a frame's ADU end up on disk, in three independent choices:

* the pixel encoding (``family``): unsigned 16-bit (``BITPIX = 16``, ``BZERO = 32768``, the usual
  camera encoding), signed 16-bit, 16-bit scaled by ``BSCALE``/``BZERO`` (as IRAF stores
  reduced images), 32-bit integers, 32-bit float (ADU, or scaled to 0..1 as Siril and PixInsight
  save), 8-bit, colour cubes (``NAXIS3 = 3``) and TIFF (8/16-bit, grey or RGB, with or without
  compression; TIFFs carry no FITS header);
* the container: plain FITS, gzip (``.fits.gz``, ``.fit.gz``), bzip2 (``.fits.bz2``) or tile
  compression (``.fz``: Rice or gzip tiles in a ``CompImageHDU``);
* the layout of the FITS file's HDUs: the image in the primary HDU; an empty primary HDU with
  the header and the image in an extension; a binary table before the image; the image followed
  by a table; or the space-telescope set of ``SCI``, ``ERR`` and ``DQ`` extensions (``ERR`` and
  ``DQ`` empty with ``PIXVALUE``, as raw HST files have them).

All three are drawn by :func:`choose_format` from the camera's kind and readout alone, never from
the frame's class: no encoding, container or layout belongs to one class. Files are written to a
hidden temporary name and renamed into place, so a reader never sees half a file. Output is
byte-identical for identical input: gzip's time stamp is fixed (in ``.fits.gz`` files and in the
tiles of GZIP-compressed ``.fz`` files) and tile-compression dithering is seeded.
"""

from __future__ import annotations

import bz2
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

    ``name``: the pixel encoding family (:data:`FAMILIES`). ``container``: ``fits``,
    ``fits.gz``, ``fits.bz2``, ``fz`` or ``tiff``. ``dtype``: stored pixel type (``uint8``,
    ``uint16``, ``int16``, ``int32``, ``float32``). ``rgb``: three colour planes.
    ``normalized``: float data scaled to 0..1 of full scale. ``scaled``: float data stored as
    16-bit integers with ``BSCALE``/``BZERO``. ``compression``: TIFF codec or FITS
    tile-compression algorithm. ``extension``: file-name extension including the dot.
    ``layout``: HDU layout (:data:`LAYOUTS`); ``extname``: the image extension's ``EXTNAME``
    when it is not the primary HDU; ``header_in_image``: the header's cards sit in the image
    extension rather than in the (empty) primary HDU.
    """

    name: str
    container: str
    dtype: str
    extension: str
    rgb: bool = False
    normalized: bool = False
    compression: str | None = None
    big_endian: bool = False
    scaled: bool = False
    layout: str = "primary"
    extname: str | None = None
    header_in_image: bool = False


#: gzip level of ``.fits.gz`` files and gzip tiles: any level reads the same, and on noisy
#: pixels higher levels cost several times the time for a few per cent of size.
GZIP_LEVEL = 1

#: Pixel encodings. TIFF families are written by amateur software only.
FAMILIES = ("fits_u16", "fits_i16", "fits_i16_scaled", "fits_i32", "fits_f32", "fits_f32_norm",
            "fits_u8", "fits_rgb", "tiff_16", "tiff_8", "tiff_rgb16", "tiff_rgb8")

#: How often each encoding occurs (per cent), by who operates the camera.
FAMILY_WEIGHTS: dict[str, tuple[float, ...]] = {
    #             fu16 fi16 fscl fi32 ff32 fnorm fu8 frgb t16 t8  trgb16 trgb8
    "amateur":     (45, 5, 2, 2, 11, 7, 4, 5, 8, 4, 4, 3),
    "observatory": (48, 11, 9, 9, 20, 3, 0, 0, 0, 0, 0, 0),
    "space":       (50, 14, 7, 7, 22, 0, 0, 0, 0, 0, 0, 0),
}

#: FITS containers and how often each is used (per cent), by operator.
CONTAINERS = ("fits", "fits.gz", "fits.bz2", "fz")
CONTAINER_WEIGHTS = {"amateur": (70, 14, 4, 12), "observatory": (45, 25, 5, 25),
                     "space": (55, 25, 5, 15)}

#: HDU layouts and how often each is used (per cent), by operator.
LAYOUTS = ("primary", "extension", "table_first", "with_table", "sci_err_dq")
LAYOUT_WEIGHTS = {"amateur": (86, 7, 3, 4, 0), "observatory": (55, 25, 5, 10, 5),
                  "space": (10, 20, 0, 0, 70)}


def _draw(rng: np.random.Generator, names: tuple[str, ...], weights) -> str:
    p = np.asarray(weights, dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def choose_format(rng: np.random.Generator, group: str, fits_extension: str, eight_bit: bool,
                  high_zero: bool = False) -> FileFormat:
    """Pick a storage format for one frame of a camera operated by ``group`` (``amateur``,
    ``observatory``, ``space``), read in 8-bit mode or not.

    Nothing here knows the frame's class. 8-bit readouts favour 8-bit containers; a zero level
    high in the range (``high_zero``) is not stored as signed 16-bit, which would clip it.
    ``fits_extension`` is the program's own choice of ``.fits``, ``.fit`` or ``.fts``.
    """
    weights = np.asarray(FAMILY_WEIGHTS[group], dtype=float)
    index = {name: i for i, name in enumerate(FAMILIES)}
    if eight_bit:
        for name in ("fits_u8", "tiff_8", "tiff_rgb8"):
            weights[index[name]] *= 3.0
    if high_zero:
        weights[index["fits_i16"]] = 0.0
    family = _draw(rng, FAMILIES, weights)
    return format_of_family(family, rng, fits_extension, group)


def format_of_family(family: str, rng: np.random.Generator, fits_extension: str,
                     group: str = "amateur") -> FileFormat:
    """The concrete :class:`FileFormat` of a pixel encoding ``family``, with its container,
    layout and other random details drawn for a camera of ``group``."""
    if family.startswith("tiff"):
        extension = str(rng.choice([".tif", ".tif", ".tiff", ".TIF"]))
        compression = rng.choice([None, None, "zlib", "lzw"])
        return FileFormat(family, "tiff", "uint8" if family.endswith("8") else "uint16",
                          extension, rgb="rgb" in family,
                          compression=None if compression is None else str(compression),
                          big_endian=bool(rng.random() < 0.15))
    dtype = {"fits_u16": "uint16", "fits_i16": "int16", "fits_i16_scaled": "int16",
             "fits_i32": "int32", "fits_f32": "float32", "fits_f32_norm": "float32",
             "fits_u8": "uint8", "fits_rgb": "uint16"}[family]
    if family == "fits_rgb" and rng.random() < 0.5:
        dtype = "float32"
    rgb = family == "fits_rgb"
    normalized = family == "fits_f32_norm" or (rgb and dtype == "float32")
    scaled = family == "fits_i16_scaled"
    container = _draw(rng, CONTAINERS, CONTAINER_WEIGHTS[group])
    if container == "fz" and (scaled or dtype == "uint8" or rgb):
        container = "fits"  # tile compression of these is rare; keep them plain
    layout = _draw(rng, LAYOUTS, LAYOUT_WEIGHTS[group])
    compression = None
    if container == "fz":
        extension = str(rng.choice([".fits.fz", ".fz"]))
        compression = str(rng.choice(["RICE_1", "RICE_1", "GZIP_2", "GZIP_1"]))
        if layout in ("primary", "with_table"):
            layout = "extension"  # a compressed image always sits in an extension
    elif container == "fits.gz":
        extension = str(rng.choice([".fits.gz", ".fits.gz", ".fit.gz"]))
    elif container == "fits.bz2":
        extension = ".fits.bz2"
    else:
        extension = fits_extension
    extname = None
    if layout == "sci_err_dq":
        extname = "SCI"
    elif layout in ("extension", "table_first"):
        extname = str(rng.choice(["SCI", "IMAGE", "CCD1", "im1", "RAW", "DATA"]))
    # fpack keeps the header with the compressed image; other writers split it either way.
    header_in_image = layout == "extension" and (container == "fz" or rng.random() < 0.5)
    return FileFormat(family, container, dtype, extension, rgb=rgb, normalized=normalized,
                      compression=compression, scaled=scaled, layout=layout, extname=extname,
                      header_in_image=header_in_image)


def encode(adu: np.ndarray, full_scale: int, fmt: FileFormat) -> np.ndarray:
    """Convert delivered ADU (int, (H, W) or (3, H, W), 0..``full_scale``) to the stored array.

    8-bit containers of 16-bit data keep the top 8 bits; 16-bit containers of 8-bit data are
    shifted up as capture programs do. Signed 16-bit clips at 32767 as old software did. Scaled
    16-bit data are returned as float32 ADU (the writer quantises them with BSCALE/BZERO).
    TIFF colour is (H, W, 3); FITS colour is (3, H, W).
    """
    data = adu
    if fmt.dtype == "uint8":
        data = data >> 8 if full_scale > 255 else data
        data = np.clip(data, 0, 255).astype(np.uint8)
    elif fmt.dtype in ("uint16", "int16") and not fmt.scaled:
        if full_scale <= 255:
            data = data << 8
        top = 32767 if fmt.dtype == "int16" else 65535
        data = np.clip(data, 0, top).astype(fmt.dtype)
    elif fmt.dtype == "int32":
        data = data.astype(np.int32)
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
    their sha256 and in the split the export gives them. Within this block the stamp is 0, and
    the level :data:`GZIP_LEVEL` (astropy asks for 9, many times slower on noisy pixels).
    """
    from astropy.io.fits.hdu.compressed import _codecs

    original = _codecs.gzip_compress
    _codecs.gzip_compress = functools.partial(gzip.compress, mtime=0,
                                              compresslevel=GZIP_LEVEL)
    try:
        yield
    finally:
        _codecs.gzip_compress = original


def fits_bytes(data: np.ndarray, header: fits.Header | None, fmt: FileFormat,
               dither_seed: int = 1) -> bytes:
    """The FITS file for ``data`` with ``header``'s cards, in ``fmt``'s layout and container
    (gzip, bzip2 or tile compression)."""
    buffer = io.BytesIO()
    cards = header.copy() if header is not None else fits.Header()
    image = _image_hdu(data, fmt, dither_seed, primary=fmt.layout in ("primary", "with_table"))
    if fmt.rgb:
        image.header["CTYPE3"] = ("RGB", "Colour planes R, G, B")
    if image is not None and not isinstance(image, fits.PrimaryHDU):
        image.header["EXTNAME"] = (fmt.extname or "IMAGE", "Extension name")
        if fmt.layout == "sci_err_dq":
            image.header["EXTVER"] = (1, "Extension version")
    primary = image if isinstance(image, fits.PrimaryHDU) else fits.PrimaryHDU()
    target = image if (fmt.header_in_image or isinstance(image, fits.PrimaryHDU)) else primary
    for card in cards.cards:
        target.header.append(card)
    hdus = fits.HDUList([primary])
    if fmt.layout == "table_first":
        hdus.append(_table(dither_seed))
    if image is not primary:
        hdus.append(image)
    if fmt.layout == "with_table":
        hdus.append(_table(dither_seed))
    if fmt.layout == "sci_err_dq":
        hdus += [_empty_extension("ERR", data.shape, 0.0), _empty_extension("DQ", data.shape, 0)]
    with quiet_cards(), gzip_tiles_without_clock():
        hdus.writeto(buffer, output_verify="silentfix")
    raw = buffer.getvalue()
    if fmt.container == "fits.gz":
        packed = io.BytesIO()
        # mtime=0 keeps the file byte-identical between runs (astropy would stamp the clock);
        with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0,
                           compresslevel=GZIP_LEVEL) as stream:
            stream.write(raw)
        raw = packed.getvalue()
    elif fmt.container == "fits.bz2":
        raw = bz2.compress(raw, compresslevel=6)
    return raw


def _image_hdu(data: np.ndarray, fmt: FileFormat, dither_seed: int, primary: bool):
    """The HDU holding the pixels: primary, image extension or tile-compressed extension;
    scaled encodings are quantised to 16 bits with ``BSCALE``/``BZERO`` spanning the data."""
    if fmt.container == "fz":
        return fits.CompImageHDU(data, compression_type=fmt.compression or "RICE_1",
                                 dither_seed=dither_seed)
    hdu = fits.PrimaryHDU(data) if primary else fits.ImageHDU(data)
    if fmt.scaled:
        low, high = float(np.min(data)), float(np.max(data))
        bscale = (high - low) / 65000.0 if high > low else 1.0
        hdu.scale("int16", bzero=round((high + low) / 2.0, 3), bscale=bscale)
    return hdu


def _table(seed: int) -> fits.BinTableHDU:
    """A small binary table as pipelines attach them (frame times and a quality flag)."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(3, 40))
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="TIME", format="D", unit="s", array=np.cumsum(rng.uniform(0.5, 2, count))),
        fits.Column(name="FLAG", format="J", array=rng.integers(0, 2, count))])
    table.header["EXTNAME"] = str(rng.choice(["OBSLOG", "TIMES", "EVENTS"]))
    return table


def _empty_extension(name: str, shape: tuple[int, ...], value) -> fits.ImageHDU:
    """An HST-style image extension without data: every pixel is ``PIXVALUE``."""
    hdu = fits.ImageHDU()
    hdu.header["EXTNAME"] = (name, "Extension name")
    hdu.header["EXTVER"] = (1, "Extension version")
    hdu.header["PIXVALUE"] = (value, "Value of every pixel")
    hdu.header["NPIX1"] = (int(shape[-1]), "Length of constant array axis 1")
    hdu.header["NPIX2"] = (int(shape[-2]), "Length of constant array axis 2")
    return hdu


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
