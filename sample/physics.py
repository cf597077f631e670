"""Building blocks of the light that reaches a sensor: colour canvas, point spread functions,
random fields, optical response (vignetting, dust shadows, gradients) and linear features.

Everything here works in expected photo-electrons per pixel (float32) on arrays of shape
``(height, width)``; the sensor model in :mod:`sample.cameras` adds the noise.

Frames reach 60 megapixels, so smooth maps (vignetting, gradients, glow) and random fields are
evaluated on coarser grids (:data:`SMOOTH_POINTS`, :data:`FIELD_POINTS` points at most) and
interpolated up, and point sources are drawn in batches: no step holds more than a few
frame-sized float32 arrays.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Most points a smooth map (vignetting, gradient, glow) is evaluated on before it is
#: interpolated to the frame; random fields get :data:`FIELD_POINTS`, scenes drawn on a grid
#: (planets, the Sun) :data:`SCENE_POINTS`.
SMOOTH_POINTS = 1 << 18
FIELD_POINTS = 1 << 20
SCENE_POINTS = 1 << 22

#: Stamp pixels drawn per batch by :func:`render_sources`.
STAMP_BATCH = 1 << 18

#: Relative colour of a neutral (white) source in R, G, B.
NEUTRAL = (1.0, 1.0, 1.0)

#: Relative quantum efficiency of a colour sensor's R, G, B pixels (mosaic filters included),
#: normalised so that white light gives a mono sensor's signal on average.
COLOUR_QE = (0.93, 1.22, 0.85)


class Canvas:
    """Expected photo-electrons per pixel, accumulated one component at a time.

    ``mode`` is ``"mono"`` (one plane seen through a filter with R, G, B transmission
    ``filter_rgb``), ``"bayer"`` (one plane, each pixel behind one colour of the mosaic
    ``pattern``) or ``"rgb"`` (three planes, a debayered colour frame). A component is an image
    of the electrons an unfiltered mono pixel would collect, plus its colour: relative flux in
    R, G, B with (1, 1, 1) for white.
    """

    def __init__(self, shape: tuple[int, int], mode: str = "mono", pattern: str = "RGGB",
                 filter_rgb: tuple[float, float, float] = NEUTRAL):
        self.shape = tuple(shape)
        self.mode = mode
        self.filter_rgb = np.asarray(filter_rgb, dtype=np.float32)
        planes = (3,) if mode == "rgb" else ()
        self.data = np.zeros(planes + self.shape, dtype=np.float32)
        #: (row phase, column phase, colour index) of the mosaic's four cells.
        self._cells = tuple((dy, dx, "RGB".index(colour)) for (dy, dx), colour in zip(
            ((0, 0), (0, 1), (1, 0), (1, 1)), pattern.upper()))

    def add(self, image: np.ndarray | float,
            rgb: tuple[float, float, float] = NEUTRAL) -> None:
        """Add ``image`` (electrons, (H, W) or scalar) of colour ``rgb``."""
        rgb = np.asarray(rgb, dtype=np.float32)
        if self.mode == "mono":
            self.data += image * np.float32(np.mean(rgb * self.filter_rgb))
        elif self.mode == "bayer":
            gains = rgb * np.asarray(COLOUR_QE, np.float32)
            for dy, dx, colour in self._cells:
                part = image[dy::2, dx::2] if np.ndim(image) == 2 else image
                self.data[dy::2, dx::2] += part * gains[colour]
        else:
            for c in range(3):
                self.data[c] += image * np.float32(rgb[c] * COLOUR_QE[c])

    def add_planes(self, planes: np.ndarray) -> None:
        """Add a colour image already split into R, G, B electrons, shape (3, H, W)."""
        if self.mode == "mono":
            for c in range(3):
                self.data += planes[c] * np.float32(self.filter_rgb[c] / 3.0)
        elif self.mode == "bayer":
            for dy, dx, colour in self._cells:
                self.data[dy::2, dx::2] += planes[colour, dy::2, dx::2]
        else:
            self.data += planes

    def crop(self, top: int, left: int, shape: tuple[int, int]) -> None:
        """Keep only the window of ``shape`` at (``top``, ``left``): a cut-out of the scene. A
        mosaic canvas keeps its pattern when ``top`` and ``left`` are even."""
        h, w = shape
        self.data = np.ascontiguousarray(self.data[..., top:top + h, left:left + w])
        self.shape = (h, w)

    def multiply(self, response: np.ndarray) -> None:
        """Apply a multiplicative (H, W) response to every plane: vignetting, dust, absorption."""
        self.data *= response

    def scale_to(self, quantile: float, target_e: float, floor: float = 0.0) -> None:
        """Scale so that the ``quantile`` (0..1) of the illuminated pixels becomes ``target_e``;
        illuminated means above ``floor`` times the brightest pixel. Large frames are measured
        on an even subsample of their pixels."""
        sample = self.data.reshape(-1)[::max(1, self.data.size // SCENE_POINTS)]
        lit = sample[sample > max(floor * float(self.data.max()), 0.0)]
        if lit.size == 0:
            return
        level = float(np.quantile(lit, quantile))
        if level > 0:
            self.data *= np.float32(target_e / level)


def grid(shape: tuple[int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column coordinates as broadcastable float32 arrays (H, 1) and (1, W).

    With ``step`` > 1: the centres of ``step`` x ``step`` blocks, in the frame's pixel units
    (the grid of :func:`coarse_step`, to be brought back with :func:`resize`)."""
    h, w = shape
    offset = (step - 1) / 2.0
    return (np.arange(0, h, step, dtype=np.float32)[:, None] + np.float32(offset),
            np.arange(0, w, step, dtype=np.float32)[None, :] + np.float32(offset))


def coarse_step(shape: tuple[int, int], points: int = SMOOTH_POINTS) -> int:
    """Block size at which a smooth map of ``shape`` has at most ``points`` points."""
    return max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / points))))


def rotated(shape: tuple[int, int], centre: tuple[float, float],
            angle: float, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) relative to ``centre`` (y, x), rotated by ``angle`` (radians), on
    the grid of :func:`grid` with ``step``."""
    yy, xx = grid(shape, step)
    dy, dx = yy - np.float32(centre[0]), xx - np.float32(centre[1])
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return dx * c + dy * s, -dx * s + dy * c


def loguniform(rng: np.random.Generator, low: float, high: float, size=None):
    """Draws spread evenly in log between ``low`` and ``high``."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Moffat core width alpha for a given FWHM and wing index beta."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def render_sources(shape: tuple[int, int], y: np.ndarray, x: np.ndarray, flux: np.ndarray,
                   fwhm: float, beta: float | None = 3.5, ellipticity: float = 0.0,
                   angle: float = 0.0, radius: int | None = None) -> np.ndarray:
    """Point sources seen through one PSF, each stamp normalised to its total ``flux`` (e-).

    The PSF is Moffat with index ``beta`` (Gaussian when None), elongated by ``ellipticity``
    (1 - b/a) along ``angle`` (radians). Sources are drawn on stamps of half-size ``radius``
    (default 3 FWHM), so cost scales with the number of sources, not the frame size.
    """
    h, w = shape
    out = np.zeros(h * w, dtype=np.float32)
    if len(flux) == 0:
        return out.reshape(shape)
    radius = int(radius or max(3, np.ceil(3.0 * fwhm)))
    y, x, flux = np.asarray(y), np.asarray(x), np.asarray(flux)
    order = np.argsort(y, kind="stable")
    batch = max(1, STAMP_BATCH // (2 * radius + 1) ** 2)
    for start in range(0, len(flux), batch):
        chosen = order[start:start + batch]
        _add_stamps(out, shape, y[chosen], x[chosen], flux[chosen], fwhm, beta, ellipticity,
                    angle, radius)
    return out.reshape(shape)


def _add_stamps(out: np.ndarray, shape: tuple[int, int], y: np.ndarray, x: np.ndarray,
                flux: np.ndarray, fwhm: float, beta: float | None, ellipticity: float,
                angle: float, radius: int) -> None:
    """Add one batch of PSF stamps of half-size ``radius`` into the flat ``out``; the batch's
    rows are close together, so only the span of ``out`` they touch is summed into."""
    h, w = shape
    offsets = np.arange(-radius, radius + 1)
    iy = np.floor(y).astype(int)
    ix = np.floor(x).astype(int)
    py = iy[:, None, None] + offsets[None, :, None]
    px = ix[:, None, None] + offsets[None, None, :]
    dy = (py - y[:, None, None]).astype(np.float32)
    dx = (px - x[:, None, None]).astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / (1.0 - ellipticity)
    r2 = u * u + v * v
    if beta is None:
        sigma = fwhm / 2.3548
        profile = np.exp(-r2 / (2.0 * sigma * sigma))
    else:
        alpha = moffat_alpha(fwhm, beta)
        profile = (1.0 + r2 / (alpha * alpha)) ** (-beta)
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    values = profile * flux[:, None, None]
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    index = (py * w + px)[inside]
    if index.size == 0:
        return
    low, high = int(index.min()), int(index.max()) + 1
    out[low:high] += np.bincount(index - low, weights=values[inside],
                                 minlength=high - low).astype(np.float32)


def power_law_fluxes(rng: np.random.Generator, count: int, faintest: float, brightest: float,
                     slope: float) -> np.ndarray:
    """Fluxes with cumulative counts N(>F) proportional to F**-slope between the limits, as
    star counts behave (slope about 0.6..0.9 for field stars)."""
    u = rng.uniform(0.0, 1.0, count)
    low, high = faintest ** -slope, brightest ** -slope
    return (low - u * (low - high)) ** (-1.0 / slope)


def random_field(shape: tuple[int, int], rng: np.random.Generator, slope: float = 3.0,
                 coarsen: int = 4) -> np.ndarray:
    """Gaussian random field with power spectrum ~ k**-slope, zero mean and unit RMS.

    Drawn on a grid ``coarsen`` times smaller and interpolated up: the large-scale structure of
    clouds, maria and albedo features does not need full resolution.
    """
    h, w = shape
    coarsen = max(coarsen, coarse_step(shape, FIELD_POINTS))
    small = (max(8, int(np.ceil(h / coarsen))), max(8, int(np.ceil(w / coarsen))))
    spectrum = np.fft.rfft2(rng.standard_normal(small))
    ky = np.fft.fftfreq(small[0])[:, None]
    kx = np.fft.rfftfreq(small[1])[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    field = np.fft.irfft2(spectrum * k ** (-slope / 2.0), s=small)
    field = (field - field.mean()) / (field.std() + 1e-12)
    return resize(field.astype(np.float32), shape)


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D array to exactly ``shape``, float32.

    Pixels are areas (scipy's ``zoom(order=1, grid_mode=True, mode="nearest")``): the centre of
    output pixel i samples input coordinate (i + 0.5) * n_in / n_out - 0.5, clipped to the
    edges. Computed one band of rows at a time, separably, so enlarging a small map to a large
    frame needs no more than the output array.
    """
    if image.shape == tuple(shape):
        return image
    h, w = shape

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, fy = axis(image.shape[0], h)
    x0, x1, fx = axis(image.shape[1], w)
    source = np.asarray(image, dtype=np.float32)
    columns = source[:, x0] * (1 - fx) + source[:, x1] * fx  # (rows in, w)
    out = np.empty((h, w), dtype=np.float32)
    band = max(1, (1 << 20) // max(w, 1))
    for top in range(0, h, band):
        rows = slice(top, min(h, top + band))
        low = columns[y0[rows]]
        step = columns[y1[rows]]
        step -= low
        step *= fy[rows, None]
        np.add(low, step, out=out[rows])
    return out


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (seeing, defocus) with ``sigma`` in pixels; no-op below 0.3 px."""
    if sigma < 0.3:
        return image
    return ndimage.gaussian_filter(image, sigma, mode="nearest")


def wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a large ``sigma`` (scattered light, glows): done on a grid of blocks
    averaged ``sigma / 4`` pixels on a side and interpolated back, so the cost does not grow
    with ``sigma``."""
    factor = int(sigma // 4)
    if factor < 2:
        return blur(image, sigma)
    h, w = image.shape
    padded = np.pad(image, ((0, -h % factor), (0, -w % factor)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor,
                            factor).mean(axis=(1, 3), dtype=np.float32)
    return resize(blur(blocks, sigma / factor), image.shape)


def smoothstep(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    """0 below ``edge0``, 1 above ``edge1``, smooth Hermite ramp between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def vignetting(shape: tuple[int, int], rng: np.random.Generator, corner_loss: float) -> np.ndarray:
    """Relative illumination of the focal plane: 1 at the optical axis, ``1 - corner_loss`` at
    the frame corners, falling off as (1 + (r/r0)^2)^-2 (the cos^4 law). The axis sits slightly
    off the frame centre and the fall-off is a little elliptical (tilted or off-axis optics)."""
    h, w = shape
    step = coarse_step(shape)
    centre = (h / 2 * (1 + rng.uniform(-0.15, 0.15)), w / 2 * (1 + rng.uniform(-0.15, 0.15)))
    u, v = rotated(shape, centre, float(rng.uniform(0, np.pi)), step)
    half_diagonal = 0.5 * np.hypot(h, w)
    r2 = (u * u + (v * rng.uniform(0.85, 1.15)) ** 2) / np.float32(half_diagonal ** 2)
    corner_loss = float(np.clip(corner_loss, 1e-3, 0.9))
    r0_2 = 1.0 / ((1.0 - corner_loss) ** -0.5 - 1.0)
    return resize(((1.0 + r2 / np.float32(r0_2)) ** -2).astype(np.float32), shape)


def dust_shadows(shape: tuple[int, int], rng: np.random.Generator, count: int,
                 size_px: tuple[float, float] = (6.0, 40.0),
                 obstruction: float = 0.35) -> np.ndarray:
    """Multiplicative map of out-of-focus dust shadows ("donuts") on filters and windows.

    Each is the defocused image of the aperture: a soft-edged disc of radius from ``size_px``,
    with a brighter hole of ``obstruction`` times its radius for reflecting telescopes (0 for
    refractors), absorbing 1..8 %.
    """
    h, w = shape
    response = np.ones(shape, dtype=np.float32)
    for _ in range(count):
        radius = float(loguniform(rng, *size_px))
        cy, cx = float(rng.uniform(0, h)), float(rng.uniform(0, w))
        depth = float(rng.uniform(0.01, 0.08))
        edge = 1.0 + 0.06 * radius
        y0, y1 = int(max(0, cy - radius - 3 * edge)), int(min(h, cy + radius + 3 * edge + 1))
        x0, x1 = int(max(0, cx - radius - 3 * edge)), int(min(w, cx + radius + 3 * edge + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        stretch = rng.uniform(1.0, 1.15)  # off-axis donuts are slightly elliptical
        r = np.sqrt(yy * yy + (xx / stretch) ** 2)
        disc = 1.0 - smoothstep(r, radius - edge, radius + edge)
        if obstruction > 0:
            inner = obstruction * radius
            disc *= smoothstep(r, inner - edge, inner + edge) * 0.85 + 0.15
        # Diffraction brightens the rim of the shadow a little.
        rim = np.exp(-((r - radius) / edge) ** 2) * 0.25
        response[y0:y1, x0:x1] *= (1.0 - depth * (disc - rim)).astype(np.float32)
    return response


def gradient(shape: tuple[int, int], rng: np.random.Generator, amplitude: float,
             curvature: float = 0.3) -> np.ndarray:
    """Smooth illumination gradient with mean about 1: a tilted plane of total swing
    ``amplitude`` across the frame, plus a quadratic term (light-pollution domes, twilight)."""
    h, w = shape
    angle = float(rng.uniform(0, 2 * np.pi))
    u, _ = rotated(shape, (h / 2, w / 2), angle, coarse_step(shape))
    t = u / np.float32(0.5 * np.hypot(h, w))
    plane = 1.0 + 0.5 * amplitude * t + curvature * amplitude * 0.5 * (t * t - 0.33)
    return resize(np.maximum(plane, 0.05).astype(np.float32), shape)


def line_image(shape: tuple[int, int], point: tuple[float, float], angle: float,
               width: float, peak: float) -> np.ndarray:
    """A straight line through ``point`` (y, x) at ``angle``: Gaussian cross-section of FWHM
    ``width`` px and ``peak`` electrons (satellite and aircraft trails, diffraction spikes).
    Computed one band of rows at a time."""
    h, w = shape
    yy, xx = grid(shape)
    across = (xx - np.float32(point[1])) * np.float32(np.sin(angle))
    sigma = np.float32(width / 2.3548)
    out = np.empty(shape, dtype=np.float32)
    band = max(1, (1 << 20) // max(w, 1))
    for top in range(0, h, band):
        rows = slice(top, min(h, top + band))
        distance = across - (yy[rows] - np.float32(point[0])) * np.float32(np.cos(angle))
        distance /= sigma
        np.exp(-0.5 * distance * distance, out=out[rows])
    out *= np.float32(peak)
    return out


def disc_coordinates(shape: tuple[int, int], centre: tuple[float, float], radius: float,
                     angle: float = 0.0,
                     flattening: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised coordinates on a (possibly oblate) planetary disc.

    Returns (x, y, mu): x along the equator, y towards the pole (both 1 at the limb) and
    mu = cos(angle of incidence) = sqrt(1 - x^2 - y^2) inside the disc, 0 outside.
    """
    u, v = rotated(shape, centre, angle)
    x = u / np.float32(radius)
    y = v / np.float32(radius * (1.0 - flattening))
    mu = np.sqrt(np.clip(1.0 - x * x - y * y, 0.0, None))
    return x, y, mu


def soft_disc(mu: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased disc mask from :func:`disc_coordinates` output (half a pixel of edge)."""
    r = np.sqrt(x * x + y * y)
    return 1.0 - smoothstep(r, 1.0 - 0.7 / radius, 1.0 + 0.7 / radius)
