"""Read one FITS or TIFF file into a :class:`~exporter.frame.RawFrame`.

What comes in is a path; what comes out is a 2-D array in physical units (ADU after
BZERO/BSCALE), the file's header as a plain ``dict`` and a ``source`` dict of provenance. Anything
that cannot become such a frame raises :class:`~exporter.frame.FrameError` with a stage
(``discover``, ``read`` or ``limits``) and a message for the dead-letter file; no other exception
type escapes :func:`read_frame`.

Memory: the pixel count claimed by the header is checked against ``max_pixels`` before any pixel
is touched; FITS files are opened with ``memmap=True`` and converted one 2-D plane at a time, so a
read holds the output plane plus one stored plane (memory-mapped for uncompressed files, decoded
in memory for gzip and tile-compressed ones), never a whole cube. FITS data are always returned
as an in-memory native-byte-order array (FITS is big-endian, so one converting copy is needed
anyway), which therefore never depends on the file staying open. Uncompressed single-channel TIFF
data in native byte order are returned as a read-only :class:`numpy.memmap` (no copy); it owns its
own mapping, so nothing needs to be kept open, but it pins one file descriptor until the array is
released. All returned arrays are flagged read-only.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporter.frame import DEFAULT_MAX_PIXELS, FrameError, RawFrame

#: Extensions read as FITS and as TIFF, matched case-insensitively against the end of the name.
FITS_EXTENSIONS = (".fits.gz", ".fit.gz", ".fts.gz", ".fits.bz2", ".fit.bz2", ".fts.bz2",
                   ".fits", ".fit", ".fts", ".fz")
TIFF_EXTENSIONS = (".tiff", ".tif")

#: Rec. 709 luma weights for R, G, B: colour frames are reduced to luminance with these.
REC709_WEIGHTS = (0.2126, 0.7152, 0.0722)

#: Header cards that carry no keyword value.
_COMMENTARY_KEYWORDS = frozenset({"COMMENT", "HISTORY", ""})

#: TIFF tags exposed in ``RawFrame.header``, under a ``TIFF_`` prefix so they never pass for FITS
#: keywords; long descriptions (ImageJ, OME-XML) are cut to this many characters.
_TIFF_TAGS = ("Software", "ImageDescription", "DateTime", "Make", "Model")
_TIFF_TEXT_LIMIT = 1024

_MAGIC_COMPRESSION = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"PK": "zip"}

#: HDUs searched for an image before a FITS file is given up (multi-extension cameras have tens).
MAX_HDUS = 1000


def frame_kind(path: str | os.PathLike) -> str:
    """``'fits'`` or ``'tiff'``, decided from the file name's extension (any case).

    Raises :class:`FrameError` (stage ``discover``) for any other extension.
    """
    name = os.fspath(path).lower()
    if name.endswith(FITS_EXTENSIONS):
        return "fits"
    if name.endswith(TIFF_EXTENSIONS):
        return "tiff"
    raise FrameError("discover", f"not a FITS or TIFF file name: {os.path.basename(name)!r}")


def read_frame(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_bytes: int | None = None) -> RawFrame:
    """Read the image in ``path`` as a 2-D frame in physical units.

    ``max_pixels`` bounds the number of stored values (all axes, planes and colour samples
    included) that a file may claim; larger files are refused (stage ``limits``) from their
    header, before any pixel is read. ``max_bytes`` (None: no bound) bounds the memory the read
    may need: a compressed file whose decoded data plus one float32 plane would take more is
    refused from its header too, before anything is decompressed (stage ``limits``), and so is a
    read that runs out of memory. Raises :class:`FrameError` for any file that cannot become a
    frame, and ValueError only for a ``max_pixels`` below 1.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    path = Path(path)
    kind = frame_kind(path)
    reader = _read_fits if kind == "fits" else _read_tiff
    file_size = _regular_file_size(path)
    try:
        return reader(path, file_size, max_pixels, max_bytes)
    except FrameError:
        raise
    except Exception as exc:  # decoders raise anything from OSError to TypeError to zlib.error
        if ran_out_of_memory(exc):
            raise FrameError("limits", out_of_memory_message("reading pixels", max_bytes)) \
                from exc
        raise FrameError("read", _read_error_message(kind, exc)) from exc


def _read_error_message(kind: str, exc: Exception) -> str:
    """A dead-letter message: the system's reason for I/O errors, the decoder's otherwise."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read file: {exc.strerror or exc}"
    return f"cannot read {kind.upper()} file (corrupt or truncated?): {type(exc).__name__}: {exc}"


def _regular_file_size(path: Path) -> int:
    """Size in bytes of ``path``, refusing what is not a non-empty regular file (stage ``read``)."""
    try:
        status = path.stat()  # follows symlinks, so a symlink loop fails here
    except OSError as exc:
        raise FrameError("read", f"cannot access file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(status.st_mode):
        raise FrameError("read", "is a directory, not a file")
    if not stat.S_ISREG(status.st_mode):
        raise FrameError("read", "not a regular file (device, FIFO or socket)")
    if status.st_size == 0:
        raise FrameError("read", "empty file")
    return status.st_size


def _check_pixel_count(shape: tuple[int, ...], max_pixels: int) -> None:
    """Refuse (stage ``limits``) a frame whose claimed size exceeds ``max_pixels`` values."""
    count = math.prod(shape)
    if count > max_pixels:
        raise FrameError("limits", f"image of shape {shape} holds {count} values, "
                                   f"more than max_pixels={max_pixels}")


def ran_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a ``MemoryError``: a decoder that
    could not allocate may report it as something else (a bzip2 stream then "ends before the
    end-of-stream marker")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def out_of_memory_message(doing: str, max_bytes: int | None) -> str:
    """The dead letter's message for a frame that ran out of memory while ``doing``."""
    if max_bytes is None:
        return f"out of memory while {doing}"
    return (f"out of memory while {doing}: the frame needs more than the reader may use "
            f"({max_bytes >> 20} MB, --reader-memory-mb)")


def _check_memory(decoded_bytes: int, plane_pixels: int, max_bytes: int | None) -> None:
    """Refuse (stage ``limits``) a frame whose read needs more than ``max_bytes``: the bytes a
    decoder must hold at once (``decoded_bytes``, 0 for a memory-mapped file) plus one float32
    plane. A lower bound of what the read takes, known from the header."""
    needed = decoded_bytes + 4 * plane_pixels
    if max_bytes is not None and needed > max_bytes:
        held = f"{decoded_bytes >> 20} MB of decoded data and " if decoded_bytes else ""
        raise FrameError("limits", f"reading the frame needs at least {needed >> 20} MB ({held}"
                                   f"a {(4 * plane_pixels) >> 20} MB float32 plane), more than "
                                   f"the reader may use ({max_bytes >> 20} MB, "
                                   "--reader-memory-mb)")


def _read_only(data: np.ndarray) -> np.ndarray:
    data.flags.writeable = False
    return data


# --------------------------------------------------------------------------------------- FITS


@dataclass(frozen=True)
class _Scaling:
    """How stored FITS values become physical ones: ``physical = stored * bscale + bzero``.

    ``signed_shift`` is the integer dtype the data really have when BZERO only moves the sign
    bit (uint16 cameras store int16 with BZERO = 32768): the conversion is then exact and stays
    integer. ``blank`` is the stored value of undefined integer pixels (BLANK), if any.
    """

    bzero: float
    bscale: float
    blank: int | None
    signed_shift: np.dtype | None

    @property
    def is_identity(self) -> bool:
        return self.bzero == 0 and self.bscale == 1


def _read_fits(path: Path, file_size: int, max_pixels: int,
               max_bytes: int | None = None) -> RawFrame:
    from astropy.io import fits

    compression = _magic_compression(path)
    with fits.open(path, mode="readonly", memmap=True, do_not_scale_image_data=True,
                   lazy_load_hdus=True) as hdul:
        index, hdu, shape = _first_image_hdu(hdul)
        _check_pixel_count(shape, max_pixels)
        mapped = compression is None and not _is_tile_compressed(hdu)
        if mapped:
            _check_not_truncated(hdu, shape, file_size)
        image_axes, plane_axes = _plane_layout(shape)
        # A gzip or bzip2 stream and a tile-compressed HDU are decoded whole, in memory.
        _check_memory(0 if mapped else math.prod(shape) * _stored_dtype(hdu.header).itemsize,
                      shape[image_axes[0]] * shape[image_axes[1]], max_bytes)
        scaling = _fits_scaling(hdu.header, _stored_dtype(hdu.header))
        # A cube is read through .section one plane at a time; a plain image through .data, which
        # is a memmap for uncompressed files.
        pixels = hdu.section if plane_axes else hdu.data
        planes = (_physical(raw, scaling) for raw in _planes(pixels, shape, image_axes, plane_axes))
        data, plane_count, reduction = _reduce_planes(planes, [shape[a] for a in plane_axes])
        header = _merged_header(hdul[0].header, hdu.header)
        source = _fits_source(hdu, index, shape, scaling, compression, header)
    source.update(planes=plane_count, reduction=reduction)
    return RawFrame(data=_read_only(data), header=header, source=source)


def _magic_compression(path: Path) -> str | None:
    """``'gzip'``, ``'bzip2'`` or ``'zip'`` when the file is a compressed stream, else None."""
    with open(path, "rb") as stream:
        return _MAGIC_COMPRESSION.get(stream.read(2))


def _is_tile_compressed(hdu) -> bool:
    from astropy.io import fits

    return isinstance(hdu, fits.CompImageHDU)


def _first_image_hdu(hdul) -> tuple[int, Any, tuple[int, ...]]:
    """The first HDU holding an image of two or more axes: ``(index, hdu, numpy-order shape)``.

    Primary, IMAGE and tile-compressed (``.fz``) HDUs count; tables and random groups do not.
    Only headers are read.
    """
    from astropy.io import fits

    found_one_dimensional = False
    previous_location = -1
    for index, hdu in enumerate(hdul):
        previous_location = _check_hdu_advances(hdu, index, previous_location)
        if isinstance(hdu, fits.GroupsHDU) or not isinstance(
                hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        shape = _header_shape(hdu.header)
        if len(shape) >= 2 and all(shape):
            return index, hdu, shape
        found_one_dimensional |= len(shape) == 1 and shape[0] > 0
    if found_one_dimensional:
        raise FrameError("read", "only a 1-D image (NAXIS=1): not a frame")
    raise FrameError("read", "no image data: no HDU holds a non-empty image of 2 or more axes")


def _check_hdu_advances(hdu, index: int, previous_location: int) -> int:
    """The byte where ``hdu``'s header starts; refuses (stage ``read``) an HDU that does not
    start after the previous one, or one past :data:`MAX_HDUS`.

    astropy can re-read the same HDU forever: a gzip file whose primary header says
    ``SIMPLE = F`` becomes a non-standard HDU of negative size, and every next HDU is that one
    again (an endless loop that also grows the HDU list without bound).
    """
    if index >= MAX_HDUS:
        raise FrameError("read", f"no image among the first {MAX_HDUS} HDUs")
    location = getattr(hdu, "_header_offset", None)  # on every astropy HDU, public or not
    if location is None:
        return previous_location
    if location <= previous_location:
        raise FrameError("read", f"malformed FITS: HDU {index} starts at byte {location}, not "
                                 f"after the previous HDU (byte {previous_location})")
    return location


def _header_shape(header) -> tuple[int, ...]:
    """Array shape in numpy order (NAXISn reversed) as the header claims it."""
    try:
        naxis = int(header.get("NAXIS", 0))
        lengths = [int(header.get(f"NAXIS{axis}", 0)) for axis in range(1, naxis + 1)]
    except (TypeError, ValueError) as exc:
        raise FrameError("read", f"malformed NAXIS keywords: {exc}") from exc
    if any(length < 0 for length in lengths):
        raise FrameError("read", f"negative axis length in NAXISn: {lengths}")
    return tuple(reversed(lengths))


def _stored_dtype(header) -> np.dtype:
    """The on-disk pixel dtype from BITPIX (the tile-compressed HDU's image BITPIX for .fz)."""
    bitpix = header.get("BITPIX")
    dtypes = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
    if bitpix not in dtypes:
        raise FrameError("read", f"unsupported BITPIX={bitpix!r}")
    return np.dtype(dtypes[bitpix])


def _check_not_truncated(hdu, shape: tuple[int, ...], file_size: int) -> None:
    """Refuse an uncompressed file whose data end before the header says they do.

    Missing trailing padding is tolerated (astropy reads such files); missing pixels are not.
    """
    needed = hdu.fileinfo()["datLoc"] + math.prod(shape) * _stored_dtype(hdu.header).itemsize
    if needed > file_size:
        raise FrameError("read", f"truncated FITS file: data need {needed} bytes, "
                                 f"file has {file_size}")


def _fits_scaling(header, stored: np.dtype) -> _Scaling:
    try:
        bzero = float(header.get("BZERO", 0.0))
        bscale = float(header.get("BSCALE", 1.0))
    except (TypeError, ValueError) as exc:
        raise FrameError("read", f"malformed BZERO/BSCALE: {exc}") from exc
    if not (math.isfinite(bzero) and math.isfinite(bscale)) or bscale == 0:
        raise FrameError("read", f"unusable scaling BZERO={bzero}, BSCALE={bscale}")
    blank = header.get("BLANK") if stored.kind in "iu" else None
    blank = blank if isinstance(blank, int) and not isinstance(blank, bool) else None
    return _Scaling(bzero, bscale, blank, _signed_shift_dtype(stored, bzero, bscale))


def _signed_shift_dtype(stored: np.dtype, bzero: float, bscale: float) -> np.dtype | None:
    """The integer dtype reached by a sign-bit BZERO (uint16 from int16 + 32768, int8 from
    uint8 - 128), or None when the scaling is anything else."""
    if bscale != 1 or stored.kind not in "iu":
        return None
    half_range = 2 ** (8 * stored.itemsize - 1)
    if stored.kind == "i" and bzero == half_range:
        return np.dtype(f"u{stored.itemsize}")
    if stored.kind == "u" and bzero == -half_range:
        return np.dtype(f"i{stored.itemsize}")
    return None


def _physical(raw: np.ndarray, scaling: _Scaling) -> np.ndarray:
    """One plane of stored values as a new native-order array of physical values.

    Exactly one output array is allocated: the shifted integer dtype for sign-bit BZERO, the
    stored integer dtype without scaling, float32 otherwise (BLANK pixels become NaN).
    """
    if scaling.blank is None and scaling.signed_shift is not None:
        return _shift_sign_bit(raw, scaling.signed_shift)
    if scaling.blank is None and scaling.is_identity and raw.dtype.kind in "iu":
        return raw.astype(raw.dtype.newbyteorder("="))
    data = raw.astype(np.float32)
    if scaling.blank is not None:
        data[raw == scaling.blank] = np.nan
    if scaling.bscale != 1:
        data *= np.float32(scaling.bscale)
    if scaling.bzero != 0:
        data += np.float32(scaling.bzero)
    return data


def _shift_sign_bit(raw: np.ndarray, target: np.dtype) -> np.ndarray:
    """``raw + BZERO`` for a sign-bit BZERO, done exactly as a flip of the sign bit."""
    same_bits = raw.view(target.newbyteorder(raw.dtype.byteorder))
    sign_bit = np.uint64(1 << (8 * target.itemsize - 1)).astype(target)
    return np.bitwise_xor(same_bits, sign_bit, dtype=target)


def _merged_header(primary, image) -> dict[str, Any]:
    """Primary header cards updated by the image HDU's cards (the image HDU wins)."""
    merged = _header_values(primary)
    if image is not primary:
        merged.update(_header_values(image))
    return merged


def _header_values(header) -> dict[str, Any]:
    """Upper-case keyword -> Python value; commentary cards skipped, first duplicate kept.

    Malformed cards are silently fixed where astropy can and skipped where it cannot; a value
    that is undefined in the file (``KEY =`` with nothing after it) becomes None.
    """
    values: dict[str, Any] = {}
    for card in header.cards:
        try:
            keyword = card.keyword.strip().upper()
            if keyword in _COMMENTARY_KEYWORDS or keyword in values:
                continue
            values[keyword] = _card_value(card)
        except Exception:  # a card astropy cannot parse even after fixing: skip it
            continue
    return values


def _card_value(card) -> Any:
    from astropy.io.fits.card import Undefined

    try:
        value = card.value
    except Exception:  # VerifyError for non-standard cards
        card.verify("silentfix")
        value = card.value
    return None if isinstance(value, Undefined) else value


def _fits_source(hdu, index: int, shape: tuple[int, ...], scaling: _Scaling,
                 compression: str | None, header: dict[str, Any]) -> dict[str, Any]:
    stored = _stored_dtype(hdu.header)
    pixel_dtype = scaling.signed_shift or stored.newbyteorder("=")
    saturation = _saturation_hint(header)
    return {
        "format": _fits_format(hdu, compression),
        "dtype": pixel_dtype.name,
        "bits": 8 * stored.itemsize,
        "full_scale": _fits_full_scale(stored, scaling, saturation),
        "saturation_hint": saturation,
        "original_shape": shape,
        "hdu": index,
    }


def _fits_format(hdu, compression: str | None) -> str:
    if _is_tile_compressed(hdu):
        return "fz"
    return {"gzip": "fits.gz", "bzip2": "fits.bz2"}.get(compression, "fits")


def _saturation_hint(header: dict[str, Any]) -> float:
    """SATURATE, else DATAMAX, when a finite positive number; NaN otherwise."""
    for keyword in ("SATURATE", "DATAMAX"):
        value = header.get(keyword)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value) and value > 0:
                return float(value)
    return math.nan


def _fits_full_scale(stored: np.dtype, scaling: _Scaling, saturation: float) -> float:
    """Largest physical value the stored integers can hold; the saturation hint for floats."""
    if stored.kind == "f":
        return saturation
    if scaling.signed_shift is not None:
        return float(np.iinfo(scaling.signed_shift).max)
    largest = np.iinfo(stored).max if scaling.bscale > 0 else np.iinfo(stored).min
    return float(largest) * scaling.bscale + scaling.bzero


# ------------------------------------------------------------------------------ planes, cubes


def _plane_layout(shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, ...]]:
    """Which two axes hold the image and which longer-than-1 axes hold planes to reduce.

    Axes of length 1 are squeezed away, except that a 1xN or 1x1 frame stays 2-D. The image is
    the last two remaining axes (NAXIS1, NAXIS2), unless the last axis is a 3- or 4-long colour
    axis behind a longer one (pixel-interleaved RGB written as NAXIS1 = 3).
    """
    long_axes = [axis for axis, length in enumerate(shape) if length > 1]
    if len(long_axes) < 2:
        image_axes = (len(shape) - 2, len(shape) - 1)
    elif (len(long_axes) == 3 and shape[long_axes[2]] in (3, 4)
          and shape[long_axes[0]] not in (3, 4)):
        image_axes = (long_axes[0], long_axes[1])
    else:
        image_axes = (long_axes[-2], long_axes[-1])
    plane_axes = tuple(axis for axis in long_axes if axis not in image_axes)
    return image_axes, plane_axes


def _planes(pixels, shape: tuple[int, ...], image_axes: tuple[int, int],
            plane_axes: tuple[int, ...]) -> Iterator[np.ndarray]:
    """Yield the 2-D planes of ``pixels`` (an array, memmap or astropy section), one at a time."""
    plane_lengths = [shape[axis] for axis in plane_axes]
    for plane_index in np.ndindex(*plane_lengths):
        position = dict(zip(plane_axes, plane_index))
        index = tuple(slice(None) if axis in image_axes else position.get(axis, 0)
                      for axis in range(len(shape)))
        yield np.asarray(pixels[index])


def _reduce_planes(planes: Iterator[np.ndarray],
                   plane_lengths: list[int]) -> tuple[np.ndarray, int, str]:
    """Reduce the planes to one 2-D array: ``(data, planes reduced, reduction)``.

    One plane: returned as is (``none``). One colour axis of 3 or 4 planes: Rec. 709 luminance
    of the first three (a fourth, alpha, is ignored). Anything else: the mean of all planes.
    """
    count = math.prod(plane_lengths)
    if count == 1:
        return next(planes), 1, "none"
    if len(plane_lengths) == 1 and count in (3, 4):
        return _luminance(planes), count, "luminance"
    return _mean(planes, count), count, "mean"


def _luminance(planes: Iterator[np.ndarray]) -> np.ndarray:
    """Rec. 709 luminance, float32, from an iterator over R, G, B (and ignored alpha) planes."""
    luminance = None
    for weight, plane in zip(REC709_WEIGHTS, planes):
        term = np.array(plane, dtype=np.float32)  # a plain array even when plane is a memmap
        term *= np.float32(weight)
        if luminance is None:
            luminance = term
        else:
            luminance += term
    return luminance


def _mean(planes: Iterator[np.ndarray], count: int) -> np.ndarray:
    """Mean of ``count`` planes, accumulated in float64 one plane at a time, as float32."""
    total = None
    for plane in planes:
        if total is None:
            total = np.array(plane, dtype=np.float64)
        else:
            total += plane
    total /= count
    return total.astype(np.float32)


# --------------------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path, file_size: int, max_pixels: int,
               max_bytes: int | None = None) -> RawFrame:
    """First page of a TIFF; colour samples reduced to luminance. Other pages are ignored."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        _check_pixel_count(page.shape, max_pixels)
        _check_tiff_not_truncated(page, file_size)
        decoded = 0 if page.is_memmappable else math.prod(page.shape) * page.dtype.itemsize
        _check_memory(decoded, math.prod(page.shape) // max(1, int(page.samplesperpixel)),
                      max_bytes)
        if page.is_memmappable:
            raw = tifffile.memmap(path, page=0, mode="r")
        else:
            raw = page.asarray()
        data, planes, reduction = _tiff_plane(raw, page.axes)
        source = {
            "format": "tiff",
            "dtype": page.dtype.name,
            "bits": int(page.bitspersample),
            "full_scale": _tiff_full_scale(page.dtype, int(page.bitspersample)),
            "saturation_hint": math.nan,
            "original_shape": tuple(page.shape),
            "planes": planes,
            "reduction": reduction,
            "hdu": 0,
            "pages": len(tif.pages),
        }
        header = _tiff_header(page)
    return RawFrame(data=_read_only(data), header=header, source=source)


def _check_tiff_not_truncated(page, file_size: int) -> None:
    ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts)]
    if not ends or max(ends) > file_size:
        raise FrameError("read", f"truncated TIFF file: pixel data end at byte "
                                 f"{max(ends, default=0)}, file has {file_size}")


def _tiff_plane(raw: np.ndarray, axes: str) -> tuple[np.ndarray, int, str]:
    """Reduce one TIFF page (axes such as ``YX``, ``YXS``, ``SYX``) to a native 2-D array."""
    if "Y" not in axes or "X" not in axes:
        raise FrameError("read", f"TIFF page has no 2-D image (axes {axes!r})")
    order = [axes.index(axis) for axis in axes if axis not in "YX"] + [axes.index("Y"),
                                                                       axes.index("X")]
    stack = np.transpose(raw, order).reshape(-1, raw.shape[axes.index("Y")],
                                             raw.shape[axes.index("X")])
    samples = stack.shape[0]
    if samples in (3, 4) and "S" in axes:
        return _luminance(iter(stack)), samples, "luminance"
    if samples == 2 and "S" in axes:  # grey + alpha: the alpha sample is not image data
        return _native(stack[0]), 1, "none"
    if samples == 1:
        return _native(stack[0]), 1, "none"
    return _mean(iter(stack), samples), samples, "mean"


def _native(data: np.ndarray) -> np.ndarray:
    """``data`` itself when it already is a native integer or float32 array (keeping a memmap),
    else one converted copy: native byte order, float32 for other floats, uint8 for bilevel."""
    if data.dtype.kind == "b":
        return data.astype(np.uint8)
    if data.dtype.kind == "f" and data.dtype.itemsize != 4:
        return data.astype(np.float32)
    if data.dtype.isnative:
        return data
    return data.astype(data.dtype.newbyteorder("="))


def _tiff_full_scale(dtype: np.dtype, bits: int) -> float:
    """Largest value the samples can hold (``2**bits - 1`` for unsigned); NaN for float data."""
    if dtype.kind == "u":
        return float(2 ** min(bits, 8 * dtype.itemsize) - 1)
    if dtype.kind == "i":
        return float(np.iinfo(dtype).max)
    return math.nan


def _tiff_header(page) -> dict[str, Any]:
    """A few descriptive TIFF tags as ``TIFF_<NAME>`` text; never FITS keywords."""
    header = {}
    for name in _TIFF_TAGS:
        tag = page.tags.get(name)
        if tag is not None and isinstance(tag.value, (str, bytes)):
            text = tag.value.decode("latin-1") if isinstance(tag.value, bytes) else tag.value
            if text.strip():
                header[f"TIFF_{name.upper()}"] = text.strip()[:_TIFF_TEXT_LIMIT]
    return header
