"""Deep-sky light frames: sky background, stars, galaxies, nebulae and clusters.

:func:`deep_sky_scene` fills a :class:`~sample.physics.Canvas` with the expected
photo-electrons of one sub-exposure: a sky background with a light-pollution gradient, stars with
a power-law brightness distribution through a Moffat or Gaussian PSF (the brightest saturate),
and the target: a Sersic galaxy with disc, bulge and spiral arms, an emission or reflection
nebula made of random-field clouds (sometimes with dark lanes), or a globular / open cluster.
Satellite trails and diffraction spikes appear sometimes; vignetting and dust shadows of the
optics are applied by the caller.
"""

from __future__ import annotations

import numpy as np

from sample.physics import (SCENE_POINTS, Canvas, coarse_step, gradient, grid, line_image,
                            loguniform, power_law_fluxes, random_field, render_sources, resize,
                            rotated, smoothstep)

#: Catalogue names by kind of target, as users type them into capture programs.
TARGETS: dict[str, tuple[str, ...]] = {
    "galaxy": ("M31", "M33", "M51", "M81", "M101", "M63", "M106", "NGC 891", "NGC 4565",
               "NGC 2403", "M74", "M82", "NGC 7331", "M 104", "NGC4631", "Leo Triplet"),
    "nebula": ("M42", "NGC 7000", "IC 1396", "M8", "M16", "M17", "NGC 6960", "IC 1805",
               "Sh2-129", "NGC 2237", "IC 434", "M27", "M57", "NGC 6888", "Rosette", "M 20"),
    "cluster": ("M13", "M3", "M92", "M45", "NGC 869", "M35", "M11", "M15", "M5", "NGC 7789"),
    "field": ("Cygnus field", "Kemble 1", "C/2023 A3", "SN 2024ggi", "WASP-12", "TrES-3",
              "V1405 Cas", "HAT-P-32", "Polaris", "Vega"),
}

#: Colours (relative R, G, B electrons) of astrophysical emission.
H_ALPHA = (2.4, 0.45, 0.35)
OIII = (0.25, 1.3, 1.45)
REFLECTION = (0.55, 0.85, 1.6)
STARLIGHT = (1.15, 1.0, 0.85)
OLD_STARS = (1.3, 1.05, 0.7)


def sky_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """Colour of the sky background: sodium/LED light pollution, moonlight or dark sky."""
    choice = int(rng.integers(0, 3))
    if choice == 0:
        return (1.45, 1.05, 0.6)
    if choice == 1:
        return (0.95, 1.0, 1.1)
    return (1.1, 1.0, 0.9)


def add_stars(canvas: Canvas, rng: np.random.Generator, *, density: float, sky_e: float,
              full_scale_e: float, fwhm: float, beta: float | None, ellipticity: float,
              angle: float, absorption: np.ndarray | None = None,
              spikes: bool = False) -> int:
    """Field stars: ``density`` per 10^5 px, fluxes from a power law between the detection
    limit and a brightest star whose peak reaches up to ~40x saturation. Returns the count."""
    h, w = canvas.shape
    count = int(rng.poisson(density * h * w / 1e5))
    noise_e = np.sqrt(max(sky_e, 1.0))
    peak_fraction = 1.0 / (1.1331 * fwhm * fwhm)  # share of a star's flux in its peak pixel
    faintest = 2.5 * noise_e / peak_fraction
    brightest = max(faintest * 4, full_scale_e * loguniform(rng, 0.3, 40.0) / peak_fraction)
    flux = power_law_fluxes(rng, count, faintest, brightest, float(rng.uniform(0.55, 0.9)))
    y = rng.uniform(-5, h + 5, count)
    x = rng.uniform(-5, w + 5, count)
    bright = flux > 0.3 * full_scale_e / peak_fraction
    stars = render_sources((h, w), y[~bright], x[~bright], flux[~bright], fwhm, beta,
                           ellipticity, angle)
    # Bright stars need wide stamps for their wings and halos.
    stars += render_sources((h, w), y[bright], x[bright], flux[bright], fwhm, beta or 2.5,
                            ellipticity, angle, radius=int(min(60, 10 * fwhm + 8)))
    if spikes:
        for yi, xi, fi in zip(y[bright][:4], x[bright][:4], flux[bright][:4]):
            peak = fi * peak_fraction * 0.02
            length = 6 * fwhm * np.sqrt(fi * peak_fraction / full_scale_e + 1)
            # The spikes fade as exp(-d / length): drawn on a window 10 lengths around the star.
            reach = int(10 * length) + 4
            y0, y1 = max(0, int(yi) - reach), min(h, int(yi) + reach + 1)
            x0, x1 = max(0, int(xi) - reach), min(w, int(xi) + reach + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            window = (y1 - y0, x1 - x0)
            for spike_angle in (0.0, np.pi / 2):
                line = line_image(window, (yi - y0, xi - x0), spike_angle + angle, 1.2, peak)
                u, v = rotated(window, (yi - y0, xi - x0), spike_angle + angle)
                stars[y0:y1, x0:x1] += line * np.exp(-np.abs(u) / np.float32(length))
    if absorption is not None:
        stars *= absorption
    canvas.add(stars, STARLIGHT)
    return count


def sersic(shape: tuple[int, int], centre: tuple[float, float], r_eff: float, index: float,
           axis_ratio: float, angle: float) -> np.ndarray:
    """Sersic surface brightness I(r) = exp(-b_n((r/r_eff)^(1/n) - 1)), 1 at r_eff, on an
    ellipse of ``axis_ratio`` (b/a) at ``angle``."""
    u, v = rotated(shape, centre, angle)
    r = np.sqrt(u * u + (v / np.float32(axis_ratio)) ** 2) + 0.5
    b_n = 2.0 * index - 1.0 / 3.0 + 0.009876 / index
    return np.exp(-b_n * ((r / np.float32(r_eff)) ** (1.0 / index) - 1.0)).astype(np.float32)


def galaxy(shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
    """A disc galaxy with bulge, spiral arms and (when seen edge-on) a dust lane, or an
    elliptical; peak about 1. ``scale`` is the effective radius in pixels."""
    h, w = shape
    centre = (h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10))
    angle = float(rng.uniform(0, np.pi))
    if rng.random() < 0.25:
        image = sersic(shape, centre, scale, float(rng.uniform(2.5, 4.5)),
                       float(rng.uniform(0.55, 1.0)), angle)
        return image / image.max()
    axis_ratio = float(rng.uniform(0.12, 1.0))
    disc = sersic(shape, centre, scale, float(rng.uniform(0.8, 1.2)), axis_ratio, angle)
    if axis_ratio > 0.35:
        u, v = rotated(shape, centre, angle)
        v = v / np.float32(axis_ratio)
        radius = np.sqrt(u * u + v * v) + 1.0
        theta = np.arctan2(v, u)
        pitch = float(rng.uniform(0.2, 0.45))
        arms = int(rng.choice([2, 2, 3, 4]))
        phase = arms * (theta - np.log(radius / scale) / np.tan(pitch))
        disc *= 1.0 + 0.7 * smoothstep(radius, 0.3 * scale, 1.0 * scale) * np.cos(phase)
        disc *= 1.0 + 0.25 * random_field(shape, rng, 2.2, coarsen=2)
    else:
        u, v = rotated(shape, centre, angle)
        offset = float(rng.uniform(-0.15, 0.15)) * scale * axis_ratio
        lane = np.exp(-0.5 * ((v - offset) / np.float32(0.12 * scale * axis_ratio + 0.8)) ** 2)
        disc *= 1.0 - 0.75 * lane * np.exp(-np.abs(u) / np.float32(2.5 * scale))
    bulge = sersic(shape, centre, 0.2 * scale, 4.0, float(min(1.0, axis_ratio + 0.3)), angle)
    image = np.maximum(disc, 0) + bulge * float(rng.uniform(0.5, 4.0))
    return image / image.max()


def background_galaxies(shape: tuple[int, int], rng: np.random.Generator,
                        count: int) -> np.ndarray:
    """Faint small ellipses scattered over the field, peak about 1 each."""
    h, w = shape
    image = np.zeros(shape, dtype=np.float32)
    for _ in range(count):
        r_eff = float(loguniform(rng, 1.5, 6.0))
        size = int(8 * r_eff) + 2
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        y0, y1, x0, x1 = max(0, cy - size), min(h, cy + size), max(0, cx - size), min(w, cx + size)
        stamp = sersic((y1 - y0, x1 - x0), (cy - y0, cx - x0), r_eff,
                       float(rng.uniform(0.8, 3.0)), float(rng.uniform(0.3, 1.0)),
                       float(rng.uniform(0, np.pi)))
        image[y0:y1, x0:x1] += stamp / max(float(stamp.max()), 1e-6) * float(
            rng.uniform(0.2, 1.0))
    return image


def nebula(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Emission / reflection nebulosity and dust: returns (brightness with peak about 1,
    optical depth of dark clouds). Clouds are exponentiated random fields under 1..3 large
    envelopes, or filaments (supernova remnants), or a small ring (planetary nebula)."""
    h, w = shape
    style = rng.choice(["clouds", "clouds", "filaments", "ring"])
    if style == "ring":
        centre = (h / 2 + rng.normal(0, h / 12), w / 2 + rng.normal(0, w / 12))
        radius = float(rng.uniform(0.04, 0.15) * min(h, w))
        u, v = rotated(shape, centre, float(rng.uniform(0, np.pi)))
        r = np.sqrt(u * u + (v / np.float32(rng.uniform(0.6, 1.0))) ** 2)
        ring = np.exp(-0.5 * ((r - radius) / np.float32(0.3 * radius)) ** 2)
        halo = np.exp(-r / np.float32(2.0 * radius)) * 0.08
        texture = 1.0 + 0.3 * random_field(shape, rng, 2.5, coarsen=2)
        brightness = np.clip((ring + halo) * texture, 0, None)
        return brightness / brightness.max(), np.zeros(shape, np.float32)
    if style == "filaments":
        # Shock fronts: the zero contours of a smooth field are long, gently curved arcs.
        field = random_field(shape, rng, float(rng.uniform(4.0, 4.8)), coarsen=8)
        brightness = np.exp(-(field / np.float32(rng.uniform(0.04, 0.1))) ** 2)
        brightness *= smoothstep(random_field(shape, rng, 3.5, 8), -0.3, 1.0)
        brightness *= np.clip(1.0 + 0.4 * random_field(shape, rng, 2.5, coarsen=2), 0, None)
    else:
        field = random_field(shape, rng, float(rng.uniform(2.6, 3.6)), coarsen=4)
        brightness = np.exp(float(rng.uniform(0.8, 1.6)) * field)
    envelope = np.zeros(shape, np.float32)
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
        size = float(rng.uniform(0.3, 1.2) * max(h, w))
        envelope += np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / size ** 2)
    brightness = brightness * envelope
    brightness /= brightness.max()
    depth = np.zeros(shape, np.float32)
    if rng.random() < 0.45:
        dust = random_field(shape, rng, 3.2, coarsen=4)
        depth = np.clip(dust - float(rng.uniform(0.3, 1.2)), 0, None) * float(
            rng.uniform(1.0, 4.0))
    return brightness.astype(np.float32), depth.astype(np.float32)


def star_cluster(shape: tuple[int, int], rng: np.random.Generator, globular: bool,
                 fwhm: float, beta: float | None, brightest_e: float) -> np.ndarray:
    """Cluster members drawn from a Plummer profile (globular, plus its unresolved glow) or a
    loose group of bright stars (open cluster)."""
    h, w = shape
    centre = (h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10))
    core = float(rng.uniform(0.03, 0.12) * min(h, w))
    count = int(rng.integers(400, 2500) if globular else rng.integers(30, 150))
    if globular:
        u = rng.uniform(0.01, 0.999, count)
        radius = core / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    else:
        radius = np.abs(rng.normal(0, 3 * core, count))
    angle = rng.uniform(0, 2 * np.pi, count)
    y, x = centre[0] + radius * np.sin(angle), centre[1] + radius * np.cos(angle)
    flux = power_law_fluxes(rng, count, brightest_e * 1e-3, brightest_e, 1.0)
    image = render_sources(shape, y, x, flux, fwhm, beta)
    if globular:
        yy, xx = grid(shape, coarse_step(shape))
        r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / np.float32(core * core)
        glow = np.float32(brightest_e * 0.002 / fwhm ** 2) * (1.0 + r2) ** -2.5
        image += resize(glow.astype(np.float32), shape)
    return image


def deep_sky_scene(canvas: Canvas, rng: np.random.Generator, kind: str, *, sky_e: float,
                   full_scale_e: float, fwhm: float, narrowband: bool, reflector: bool) -> None:
    """Fill ``canvas`` with one deep-sky sub-exposure of a ``kind`` target (galaxy, nebula,
    cluster, field). ``sky_e``: mean sky background (e-/px); ``full_scale_e``: electrons at
    saturation; ``fwhm``: seeing in pixels; ``narrowband`` dims stars and sky relative to
    emission nebulae; ``reflector`` gives the brightest stars diffraction spikes."""
    h, w = canvas.shape
    # Extended targets are smooth at the scale of pixels: large frames get them on a grid of at
    # most SCENE_POINTS points, interpolated up (stars are always drawn at full resolution).
    step = coarse_step(canvas.shape, SCENE_POINTS)
    small = (int(np.ceil(h / step)), int(np.ceil(w / step)))
    sky = sky_e * _sky_gradient(canvas.shape, rng)
    canvas.add(sky, sky_colour(rng))
    beta = None if rng.random() < 0.3 else float(rng.uniform(2.3, 4.5))
    ellipticity = float(rng.uniform(0.0, 0.3)) if rng.random() < 0.3 else 0.0
    angle = float(rng.uniform(0, np.pi))
    absorption = None
    density = float(loguniform(rng, 8, 250))
    if kind == "nebula":
        brightness, depth = nebula(small, rng)
        absorption = resize(np.exp(-depth), canvas.shape)
        surface = min(sky_e * float(loguniform(rng, 0.3, 8.0)) * (4.0 if narrowband else 1.0),
                      0.8 * full_scale_e)
        colours = [H_ALPHA, OIII, REFLECTION]
        weights = [0.6, 0.25, 0.15]
        first = int(rng.choice(3, p=weights))
        layer = resize(brightness, canvas.shape)
        layer *= absorption
        layer *= np.float32(surface)
        canvas.add(layer, colours[first])
        if rng.random() < 0.5:
            layer = resize(nebula(small, rng)[0], canvas.shape)
            layer *= absorption
            layer *= np.float32(surface * rng.uniform(0.2, 0.7))
            canvas.add(layer, colours[(first + 1) % 3])
        del layer
    elif kind == "galaxy":
        scale = float(loguniform(rng, 0.03, 0.22) * min(h, w))
        core = sky_e * float(loguniform(rng, 0.5, 30.0))
        canvas.add(resize(galaxy(small, rng, scale / step), canvas.shape) * np.float32(core),
                   OLD_STARS)
        canvas.add(background_galaxies(canvas.shape, rng, int(rng.integers(0, 25)))
                   * np.float32(sky_e * 0.3), OLD_STARS)
        density *= 0.6
    elif kind == "cluster":
        globular = bool(rng.random() < 0.6)
        canvas.add(star_cluster(canvas.shape, rng, globular, fwhm, beta,
                                full_scale_e * fwhm * fwhm * float(loguniform(rng, 1, 30))),
                   OLD_STARS if globular else STARLIGHT)
    if narrowband:
        density *= 0.5
    add_stars(canvas, rng, density=density, sky_e=sky_e, full_scale_e=full_scale_e,
              fwhm=fwhm, beta=beta, ellipticity=ellipticity, angle=angle,
              absorption=absorption, spikes=reflector and rng.random() < 0.5)
    if rng.random() < 0.08:
        trail = line_image(canvas.shape, (rng.uniform(0, h), rng.uniform(0, w)),
                           float(rng.uniform(0, np.pi)), fwhm, sky_e * float(
                               loguniform(rng, 0.5, 30)))
        canvas.add(trail)


def _sky_gradient(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Sky brightness relative to its mean: light-pollution gradient of 0..40 % plus a faint
    large-scale airglow texture."""
    sky = gradient(shape, rng, float(rng.uniform(0.0, 0.4)))
    if rng.random() < 0.3:
        sky = sky * (1.0 + 0.03 * random_field(shape, rng, 3.5, coarsen=8))
    return sky
