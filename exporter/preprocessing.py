"""The image channel of a record: one frame as a float16 ``(size, size, 1)`` array in [0, 1].

Recipe (default options)::

    ADU frame --(non-finite -> median)--> --(bin by integer factors, block mean)-->
    [--(denoise)--> --(background subtraction)-->]
    --(0.5..99.9 percentile interval, asinh stretch a=0.1)--> [--(percentile_norm)-->]
    --(bilinear, anti-aliased resize of the remainder to size x size)--> [--(CLAHE)-->]
    --> float16 [0, 1]              (bracketed steps: options, off by default)

Why this order and these choices:

* **Binning before the stretch.** Averaging ``f x f`` blocks is what on-chip binning does: it
  keeps flux (faint stars stay stars), averages noise down uniformly and is an exact anti-alias
  filter for integer factors. Doing it in linear ADU before the non-linear stretch keeps the
  photometric meaning, and stretching the binned image (at most ~2x the output size) instead of
  a 24-megapixel frame keeps the cost at one pass over the pixels.
* **Asymmetric percentile interval 0.5 .. 99.9.** The lower limit sits in the sky/bias noise, so
  the noise texture of a bias stays visible; the upper limit ignores a few hot pixels and
  cosmic rays but keeps a planetary disk, a spectral trace and the bright centre of a
  vignetted flat inside the range. ZScale would clip every bright object to white, which erases
  what tells planetary frames and spectra apart.
* **Asinh stretch.** Linear near black and logarithmic above it: faint stars and the faint
  continuum of a spectrum are lifted while bright lines, disks and the flat's fall-off keep
  their shape (a log stretch would flatten the vignetting of a flat).
* **Squash by default.** The square is filled ignoring the aspect ratio; the aspect ratio is a
  feature of its own (``log10_aspect``), and padding would spend most of a slit spectrum's
  image on padding. ``resize='pad'`` letterboxes instead (padding value 0).

Optional enhancements, all off by default: ``denoise`` (median or Gaussian
filter on the binned image, in ADU), ``background`` (subtract a smooth polynomial sky fitted
to cell medians, before the stretch), ``clahe`` (scikit-image adaptive histogram equalisation
on the final size x size image) and ``percentile_norm`` (rescale the stretched image between
two of its percentiles).

Absolute levels do not survive this per-frame normalisation by design; they are carried as
features (:mod:`exporter.features.pixel_stats`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from astropy.visualization import (AsinhStretch, AsymmetricPercentileInterval, LinearStretch,
                                   LogStretch, SqrtStretch)
from scipy import ndimage
from skimage.exposure import equalize_adapthist
from skimage.transform import resize as sk_resize

from exporter.features.kernels import block_medians
from exporter.frame import as_image

STRETCHES = ("asinh", "linear", "log", "sqrt")
RESIZES = ("squash", "pad")
DENOISERS = ("none", "median", "gaussian")


@dataclass
class PreprocessOptions:
    """How the image channel is made; recorded in the export manifest (``preprocessing``).

    ``stretch``: ``asinh`` (default), ``linear``, ``log`` or ``sqrt``; ``asinh_a``/``log_a``: the
    astropy stretch parameter. ``interval``: lower and upper percentile mapped to 0 and 1.
    ``resize``: ``squash`` (fill the square, ignore the aspect ratio) or ``pad`` (keep the aspect
    ratio, pad with 0). ``denoise``: ``none``, ``median`` (window ``denoise_size`` binned pixels)
    or ``gaussian`` (sigma ``denoise_size`` binned pixels); ``True``/``False`` mean
    ``median``/``none``. ``background``: before the stretch, subtract a polynomial of
    ``background_degree`` fitted to the medians of a ``background_cells`` x
    ``background_cells`` grid. ``clahe``: adaptive histogram equalisation with
    ``clahe_clip_limit`` on the final image.
    ``percentile_norm``: ``None`` or (low, high) percentiles of the stretched image rescaled to
    0 and 1.
    """

    stretch: str = "asinh"
    interval: tuple[float, float] = (0.5, 99.9)
    asinh_a: float = 0.1
    log_a: float = 1000.0
    resize: str = "squash"
    denoise: str = "none"
    denoise_size: float = 3.0
    background: bool = False
    background_cells: int = 16
    background_degree: int = 2
    clahe: bool = False
    clahe_clip_limit: float = 0.01
    percentile_norm: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.denoise, bool) or self.denoise is None:
            self.denoise = "median" if self.denoise else "none"
        self.interval = _percentile_pair(self.interval, "interval")
        if self.percentile_norm is not None:
            self.percentile_norm = _percentile_pair(self.percentile_norm, "percentile_norm")
        if self.stretch not in STRETCHES:
            raise ValueError(f"stretch must be one of {STRETCHES}, not {self.stretch!r}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, not {self.resize!r}")
        if self.denoise not in DENOISERS:
            raise ValueError(f"denoise must be one of {DENOISERS}, not {self.denoise!r}")
        if not self.denoise_size > 0:
            raise ValueError(f"denoise_size must be > 0, got {self.denoise_size}")
        if not (self.background_cells >= 3 and 0 <= self.background_degree <= 4):
            raise ValueError("background_cells must be >= 3 and background_degree 0..4")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PreprocessOptions:
        """Options from a dict such as ``asdict(options)`` read back from JSON (lists become
        tuples); unknown keys raise ``ValueError``."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown preprocessing options: {sorted(unknown)}")
        return cls(**values)


def _percentile_pair(pair, name: str) -> tuple[float, float]:
    low, high = (float(v) for v in pair)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"{name} must be two percentiles 0 <= low < high <= 100, got {pair}")
    return low, high


def describe(options: PreprocessOptions | None = None) -> dict[str, Any]:
    """The manifest's ``preprocessing`` entry: ``stretch`` and ``resize`` in words, the
    ``options`` as a JSON-ready dict (:meth:`PreprocessOptions.from_dict` reads it back) and the
    enhancement steps that are on."""
    # replace() re-validates: options may have been changed attribute by attribute.
    options = replace(options) if options is not None else PreprocessOptions()
    low, high = options.interval
    param = {"asinh": f"(a={options.asinh_a:g})", "log": f"(a={options.log_a:g})"}
    stretch = (f"non-finite -> median; AsymmetricPercentileInterval({low:g}, {high:g}) + "
               f"{options.stretch.capitalize()}Stretch{param.get(options.stretch, '()')}")
    resize = {"squash": "squash: block mean by integer factors per axis, then bilinear "
                        "anti-aliased resize to size x size (aspect ratio not kept)",
              "pad": "pad: block mean by one integer factor, bilinear anti-aliased resize "
                     "keeping the aspect ratio, centred on a size x size canvas of 0"}
    enhancements = []
    if options.denoise != "none":
        enhancements.append(f"denoise {options.denoise} {options.denoise_size:g} (binned px)")
    if options.background:
        enhancements.append(f"background: Polynomial2D(degree={options.background_degree}) "
                            f"fitted to {options.background_cells}x{options.background_cells} "
                            "cell medians, subtracted")
    if options.clahe:
        enhancements.append(f"CLAHE clip_limit {options.clahe_clip_limit:g}")
    if options.percentile_norm is not None:
        enhancements.append("percentile_norm {:g}..{:g}".format(*options.percentile_norm))
    plain = {key: list(value) if isinstance(value, tuple) else value
             for key, value in asdict(options).items()}
    return {"stretch": stretch, "resize": resize[options.resize],
            "enhancements": enhancements, "options": plain}


# --------------------------------------------------------------------------- building blocks

def finite_filled(data: np.ndarray) -> np.ndarray:
    """``data`` unchanged when every pixel is finite (always for integers), else a copy (same
    dtype) with NaN/inf replaced by the median of the finite pixels (0 when there are none)."""
    if not np.issubdtype(data.dtype, np.floating):
        return data
    finite = np.isfinite(data)
    if finite.all():
        return data
    fill = float(np.median(data[finite])) if finite.any() else 0.0
    return np.where(finite, data, np.asarray(fill, data.dtype))


def block_mean(data: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Mean of ``fy`` x ``fx`` blocks (binning); a centred crop drops the remainder.

    Integer data is summed in float32 (exact to 2**24, no overflow), float data in float64 (no
    overflow near the float32 limit); the result has that dtype. Row groups are summed first, so
    the inner loop runs over contiguous memory. ``data`` must be finite (see
    :func:`finite_filled`).
    """
    dtype = np.float64 if np.issubdtype(data.dtype, np.floating) else np.float32
    height, width = data.shape
    ny, nx = height // fy, width // fx
    y0, x0 = (height - ny * fy) // 2, (width - nx * fx) // 2
    data = data[y0:y0 + ny * fy, x0:x0 + nx * fx]
    if fy == 1 and fx == 1:
        return data.astype(dtype)
    rows = data.reshape(ny, fy, nx * fx).sum(axis=1, dtype=dtype)
    out = rows[:, 0::fx].copy()
    for k in range(1, fx):
        out += rows[:, k::fx]
    out /= fy * fx
    return out


def binning_factors(shape: tuple[int, int], size: int, keep_aspect: bool) -> tuple[int, int]:
    """Largest integer block factors that keep the binned image at least ``size`` pixels along
    each axis (along the long axis only when ``keep_aspect``)."""
    height, width = shape
    if keep_aspect:
        f = max(1, max(height, width) // size)
        return min(f, height), min(f, width)
    return max(1, height // size), max(1, width // size)


def _stretch(options: PreprocessOptions):
    return {"asinh": lambda: AsinhStretch(a=options.asinh_a),
            "linear": LinearStretch,
            "log": lambda: LogStretch(a=options.log_a),
            "sqrt": SqrtStretch}[options.stretch]()


def normalise(image: np.ndarray, options: PreprocessOptions) -> np.ndarray:
    """Percentile interval then stretch: finite ADU -> float32 in [0, 1].

    A frame without spread (constant) becomes all zeros.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vmin, vmax = AsymmetricPercentileInterval(*options.interval).get_limits(image)
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or vmax <= vmin:
        return np.zeros(image.shape, np.float32)
    scaled = np.nan_to_num(np.clip((image - vmin) / (vmax - vmin), 0.0, 1.0))
    return np.asarray(_stretch(options)(scaled, clip=True), dtype=np.float32)


def subtract_background(image: np.ndarray, cells: int = 16, degree: int = 2) -> np.ndarray:
    """``image`` minus a smooth background (ADU).

    The background is a 2-D polynomial of ``degree`` (astropy ``Polynomial2D``, linear least
    squares with 3-sigma outlier rejection, so cells holding a bright star or galaxy do not
    count) fitted to the medians of a ``cells`` x ``cells`` grid. A low-order surface follows
    sky gradients and vignetting up to the corners, where box-interpolated backgrounds
    (``Background2D``) extrapolate flat, and it leaves stars and compact objects alone. Images
    with fewer than 3 x 3 cells get their median subtracted.
    """
    from astropy.modeling import fitting, models
    from astropy.stats import sigma_clip

    mesh = block_medians(image, cells)
    ny, nx = mesh.shape
    if min(ny, nx) < 3:
        return image - np.median(image)
    height, width = image.shape
    cell_y = ((np.arange(ny) + 0.5) * (height // ny) - 0.5) / max(height - 1, 1) * 2 - 1
    cell_x = ((np.arange(nx) + 0.5) * (width // nx) - 0.5) / max(width - 1, 1) * 2 - 1
    yy, xx = np.meshgrid(cell_y, cell_x, indexing="ij")
    fitter = fitting.FittingWithOutlierRemoval(fitting.LinearLSQFitter(), sigma_clip, niter=3,
                                               sigma=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        surface, _ = fitter(models.Polynomial2D(degree), xx, yy, mesh)
    y = np.linspace(-1.0, 1.0, height)[:, np.newaxis]
    x = np.linspace(-1.0, 1.0, width)[np.newaxis, :]
    return image - surface(x, y)


def denoise(image: np.ndarray, method: str, size: float) -> np.ndarray:
    """Median (window ``size``, rounded up to odd) or Gaussian (sigma ``size``) filter."""
    if method == "median":
        window = max(1, int(math.ceil(size)) // 2 * 2 + 1)
        return ndimage.median_filter(image, size=window, mode="reflect")
    if method == "gaussian":
        return ndimage.gaussian_filter(image, sigma=size, mode="reflect")
    return image


def percentile_rescale(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of ``image`` to 0 and 1, clipped."""
    vmin, vmax = np.percentile(image, (low, high))
    if vmax <= vmin:
        return image
    return np.clip((image - vmin) / (vmax - vmin), 0.0, 1.0)


def fit_to_square(image: np.ndarray, size: int, keep_aspect: bool) -> np.ndarray:
    """Bilinear resize to ``size`` x ``size`` (anti-aliased when shrinking); with
    ``keep_aspect`` the content keeps its aspect ratio, centred on a canvas of zeros."""
    height, width = image.shape
    if keep_aspect:
        scale = size / max(height, width)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    else:
        shape = (size, size)
    shrinking = shape[0] < height or shape[1] < width
    out = sk_resize(image, shape, order=1, mode="edge", anti_aliasing=shrinking,
                    preserve_range=True)
    if not keep_aspect:
        return out
    canvas = np.zeros((size, size), out.dtype)
    y0, x0 = (size - shape[0]) // 2, (size - shape[1]) // 2
    canvas[y0:y0 + shape[0], x0:x0 + shape[1]] = out
    return canvas


# --------------------------------------------------------------------------- public API

def preprocess_image(data: np.ndarray, size: int = 224,
                     options: PreprocessOptions | None = None) -> np.ndarray:
    """One frame's image channel.

    ``data``: 2-D array in ADU, any numeric dtype, may hold NaN/inf, may be a read-only memmap
    (never modified). ``size``: output side in pixels. Returns float16 ``(size, size, 1)``, all
    finite, in [0, 1]; a constant frame gives zeros. Raises :class:`FrameError` (stage
    ``preprocess``) when ``data`` is not a non-empty 2-D numeric array.
    """
    # replace() re-validates: options may have been changed attribute by attribute.
    options = replace(options) if options is not None else PreprocessOptions()
    with np.errstate(all="ignore"):  # extreme ADU values overflow harmlessly to 0 or 1
        return _preprocess(data, size, options)


def _preprocess(data: np.ndarray, size: int, options: PreprocessOptions) -> np.ndarray:
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    size = int(size)
    data = as_image(data, stage="preprocess")
    if data.dtype == np.bool_:
        data = data.astype(np.float32)
    keep_aspect = options.resize == "pad"
    image = block_mean(finite_filled(data), *binning_factors(data.shape, size, keep_aspect))
    if options.denoise != "none":
        image = denoise(image, options.denoise, options.denoise_size)
    if options.background:
        image = subtract_background(image, options.background_cells, options.background_degree)
    image = normalise(image, options)
    if options.percentile_norm is not None:
        image = percentile_rescale(image, *options.percentile_norm)
    image = fit_to_square(image, size, keep_aspect)
    if options.clahe and size >= 8 and np.ptp(image) > 0:
        # At the output resolution, so its tiles (1/8 of the side) mean the same for any frame.
        image = equalize_adapthist(image, clip_limit=options.clahe_clip_limit)
    image = np.clip(np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    return image.astype(np.float16)[:, :, np.newaxis]
