"""Planetary, lunar and solar captures: a bright body on a black or near-black sky.

Each ``draw_*`` function returns the body's components as ``(image, rgb)`` pairs with
brightness of order 1; :func:`planetary_scene` blurs them by the seeing, adds them to a canvas
and scales the result so the body sits where the user set the histogram (40..95 % of full
scale). Bodies: Jupiter (belts, zones, Great Red Spot, moons), Saturn (bands, rings with the
Cassini division, ring occultation of the globe), Mars (albedo features, polar cap, phase),
Venus (phase), the Moon (cratered, shaded relief with maria, whole disc or a close-up across the
terminator or the limb) and the Sun (white light with limb darkening, sunspots, faculae and
granulation; or H-alpha with mottling, filaments and limb prominences).
"""

from __future__ import annotations

import numpy as np

from sample.physics import (Canvas, blur, disc_coordinates, grid, loguniform,
                                     random_field, render_sources, smoothstep, soft_disc)

#: Bodies and how often they are captured.
BODIES = ("jupiter", "saturn", "mars", "venus", "moon", "sun", "sun_halpha")
BODY_WEIGHTS = (0.2, 0.14, 0.12, 0.04, 0.26, 0.16, 0.08)

#: OBJECT names capture programs write for each body.
BODY_NAMES = {"jupiter": ("Jupiter", "jup", "JUPITER"), "saturn": ("Saturn", "sat"),
              "mars": ("Mars", "MARS"), "venus": ("Venus",),
              "moon": ("Moon", "Luna", "moon", "Mond"), "sun": ("Sun", "Sonne", "sun"),
              "sun_halpha": ("Sun Ha", "Sun", "Halpha")}

Component = tuple[np.ndarray, tuple[float, float, float]]


def _centre(shape: tuple[int, int], rng: np.random.Generator,
            spread: float = 0.08) -> tuple[float, float]:
    h, w = shape
    return (h / 2 + rng.normal(0, spread * h), w / 2 + rng.normal(0, spread * w))


def draw_jupiter(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Oblate banded disc: dark brown belts (NEB, SEB, temperate belts) on cream zones,
    wavy band edges, darker poles, limb darkening, sometimes the Great Red Spot and moons."""
    radius = float(rng.uniform(0.12, 0.42) * min(shape))
    centre = _centre(shape, rng)
    x, y, mu = disc_coordinates(shape, centre, radius, float(rng.normal(0, 0.3)), 0.065)
    disc = soft_disc(mu, x, y, radius)
    wobble = 0.025 * random_field(shape, rng, 3.0, coarsen=2)
    lat = np.arcsin(np.clip(y, -1, 1)) + wobble
    belts = np.zeros(shape, np.float32)
    for centre_deg, width_deg, depth in ((15, 5, 0.45), (-17, 6, 0.5), (28, 3, 0.25),
                                         (-29, 3, 0.25), (40, 4, 0.2), (-42, 4, 0.2)):
        depth *= float(rng.uniform(0.4, 1.3))
        belts += depth * np.exp(-0.5 * ((np.degrees(lat) - centre_deg) / width_deg) ** 2)
    belts += 0.35 * smoothstep(np.abs(np.degrees(lat)), 45, 75)
    limb = mu ** 0.45
    components: list[Component] = [(disc * limb, (1.0, 0.93, 0.8)),
                                    (-disc * limb * np.clip(belts, 0, 0.85), (0.8, 0.95, 1.2))]
    if rng.random() < 0.5:
        spot_x = float(rng.uniform(-0.6, 0.6))
        spot = np.exp(-0.5 * (((x - spot_x) / 0.09) ** 2 + ((y + 0.38) / 0.05) ** 2))
        components.append((-disc * limb * spot * 0.4, (0.5, 1.0, 1.3)))
    moons = int(rng.integers(0, 4))
    if moons:
        distance = rng.uniform(1.3, 6.0, moons) * rng.choice([-1, 1], moons) * radius
        angle = float(rng.normal(0, 0.3))
        my = centre[0] + distance * np.sin(angle) + rng.normal(0, 2, moons)
        mx = centre[1] + distance * np.cos(angle)
        flux = rng.uniform(5, 25, moons) * max(1.0, radius / 40) ** 2
        components.append((render_sources(shape, my, mx, flux, max(1.5, radius * 0.06), None),
                           (1.0, 0.95, 0.85)))
    return components


def draw_saturn(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Globe with soft bands and rings (C, B, Cassini division, A) tilted by 3..27 degrees;
    the near half of the rings covers the globe, the globe hides the far half."""
    radius = float(rng.uniform(0.07, 0.2) * min(shape))
    centre = _centre(shape, rng)
    angle = float(rng.normal(0, 0.3))
    x, y, mu = disc_coordinates(shape, centre, radius, angle, 0.098)
    globe = soft_disc(mu, x, y, radius)
    lat = np.degrees(np.arcsin(np.clip(y, -1, 1)))
    bands = 1.0 - 0.2 * np.exp(-0.5 * ((np.abs(lat) - 25) / 8) ** 2) - 0.3 * smoothstep(
        np.abs(lat), 50, 80)
    globe_light = globe * mu ** 0.5 * bands
    tilt = np.radians(rng.uniform(3, 27)) * rng.choice([-1, 1])
    u = x
    v = y * (1 - 0.098) / np.float32(np.sin(tilt))
    ring_r = np.sqrt(u * u + v * v)
    ring = (0.25 * smoothstep(ring_r, 1.22, 1.26) * (1 - smoothstep(ring_r, 1.50, 1.53))
            + 0.95 * smoothstep(ring_r, 1.52, 1.55) * (1 - smoothstep(ring_r, 1.93, 1.96))
            + 0.7 * smoothstep(ring_r, 2.02, 2.05) * (1 - smoothstep(ring_r, 2.25, 2.28)))
    near_side = (v * np.sign(tilt)) < 0
    ring_visible = np.where(near_side | (globe < 0.5), ring, 0.0)
    globe_visible = globe_light * np.where(near_side, 1 - np.clip(ring, 0, 0.9), 1.0)
    return [(globe_visible.astype(np.float32), (1.0, 0.9, 0.65)),
            (ring_visible.astype(np.float32) * 0.9, (1.0, 0.95, 0.8))]


def draw_mars(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Small orange disc with dark albedo markings, a bright polar cap, limb haze and a
    gibbous phase."""
    radius = float(loguniform(rng, 0.04, 0.22) * min(shape))
    x, y, mu = disc_coordinates(shape, _centre(shape, rng), radius, float(rng.uniform(0, 6.3)))
    disc = soft_disc(mu, x, y, radius)
    albedo = 1.0 - 0.35 * smoothstep(random_field(shape, rng, 2.5, coarsen=2), 0.2, 1.2)
    cap_lat = float(rng.uniform(55, 80))
    cap = smoothstep(np.degrees(np.arcsin(np.clip(y, -1, 1))) * rng.choice([-1, 1]),
                     cap_lat - 3, cap_lat + 3)
    phase = float(rng.uniform(0, 0.35))  # terminator as an ellipse of semi-axis cos(phase)
    lit = smoothstep(x, -np.cos(np.pi * phase) - 0.05, -np.cos(np.pi * phase) + 0.05)
    surface = disc * lit * mu ** 0.3
    return [(surface * albedo * (1 - cap), (1.0, 0.55, 0.33)),
            (surface * cap * 1.3, (1.0, 1.0, 1.0)),
            (disc * lit * (1 - mu) ** 4 * 0.3, (0.6, 0.8, 1.3))]


def draw_venus(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Featureless disc in any phase from crescent to gibbous, strongly limb-darkened."""
    radius = float(loguniform(rng, 0.05, 0.35) * min(shape))
    x, y, mu = disc_coordinates(shape, _centre(shape, rng), radius, float(rng.uniform(0, 6.3)))
    disc = soft_disc(mu, x, y, radius)
    cos_phase = float(rng.uniform(-0.9, 0.9))
    terminator = cos_phase * np.sqrt(np.clip(1 - y * y, 0, 1))
    lit = smoothstep(x, terminator - 0.04, terminator + 0.04)
    return [(disc * lit * (0.3 + 0.7 * mu ** 0.6), (1.0, 1.0, 0.92))]


def crater_relief(shape: tuple[int, int], rng: np.random.Generator,
                  largest: float) -> np.ndarray:
    """Height map of impact craters: bowls with raised rims, radii from a power law
    N(>R) ~ R^-2 between 1.5 px and ``largest`` px."""
    h, w = shape
    relief = np.zeros(shape, dtype=np.float32)
    count = int(min(900, h * w / 400))
    radii = 1.5 * rng.uniform(0, 1, count) ** -0.5
    radii = radii[radii < largest]
    for radius in radii:
        cy, cx = rng.uniform(-radius, h + radius), rng.uniform(-radius, w + radius)
        reach = int(2 * radius) + 2
        y0, y1 = int(max(0, cy - reach)), int(min(h, cy + reach + 1))
        x0, x1 = int(max(0, cx - reach)), int(min(w, cx + reach + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        rho = np.sqrt(yy * yy + xx * xx) / np.float32(radius)
        bowl = np.where(rho < 1, rho * rho - 1, 0.0)
        rim = 0.35 * np.exp(-((rho - 1) / 0.25) ** 2)
        peak = 0.3 * np.exp(-(rho / 0.15) ** 2) if radius > 15 else 0.0
        relief[y0:y1, x0:x1] += (np.float32(0.2 * radius) * (bowl + rim + peak)).astype(
            np.float32)
    return relief


def draw_moon(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Lunar surface: maria and highland albedo, shaded crater relief under a sun elevation that
    falls to zero at the terminator. Either the whole disc in the frame or a close-up of a
    disc several frames wide, so the frame is filled or crossed by the limb."""
    h, w = shape
    whole = rng.random() < 0.35
    if whole:
        radius = float(rng.uniform(0.25, 0.46) * min(shape))
        centre = _centre(shape, rng, 0.05)
        largest = radius * 0.12
    else:
        radius = float(loguniform(rng, 1.2, 8.0) * max(shape))
        direction = rng.uniform(0, 2 * np.pi)
        # The frame centre lies on the disc; the limb may cross the frame.
        reach = radius - float(rng.uniform(0.05, 0.7)) * min(shape)
        centre = (h / 2 + reach * np.sin(direction), w / 2 + reach * np.cos(direction))
        largest = min(shape) * 0.25
    x, y, mu = disc_coordinates(shape, centre, radius)
    disc = soft_disc(mu, x, y, radius)
    maria = smoothstep(random_field(shape, rng, 3.2, coarsen=8), 0.0, 0.8)
    albedo = (1.0 - 0.45 * maria) * (1.0 + 0.06 * random_field(shape, rng, 1.8, coarsen=1))
    relief = crater_relief(shape, rng, largest) * (1.0 - 0.6 * maria)
    gy, gx = np.gradient(relief)
    sun_azimuth = float(rng.uniform(0, 2 * np.pi))
    # Sun elevation over the frame: from a low angle near the terminator to high noon.
    yy, xx = grid(shape)
    along = ((xx - w / 2) * np.cos(sun_azimuth) + (yy - h / 2) * np.sin(sun_azimuth)) / max(
        shape)
    # The frame centre is sunlit; the terminator crosses the frame when the slope is steep.
    elevation = np.clip(float(rng.uniform(0.05, 0.9)) + float(rng.uniform(0.2, 1.5)) * along,
                        -0.3, 1.4)
    slope = gx * np.cos(sun_azimuth) + gy * np.sin(sun_azimuth)
    light = np.clip(np.sin(elevation) - np.cos(elevation) * slope, 0.0, None)
    light *= smoothstep(elevation, -0.02, 0.04)
    return [(disc * albedo * light, (1.0, 0.97, 0.9))]


def draw_sun(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """White-light photosphere: limb darkening I = 1 - u(1 - mu) - v(1 - mu)^2, sunspot groups
    (umbra and penumbra), faculae near the limb and granulation when the scale resolves it.
    The disc is whole, or a close-up several frames wide."""
    h, w = shape
    whole = rng.random() < 0.5
    if whole:
        radius = float(rng.uniform(0.3, 0.47) * min(shape))
        centre = _centre(shape, rng, 0.04)
    else:
        radius = float(loguniform(rng, 1.0, 6.0) * max(shape))
        direction = rng.uniform(0, 2 * np.pi)
        reach = radius - float(rng.uniform(0.05, 1.0)) * min(shape)
        centre = (h / 2 + reach * np.sin(direction), w / 2 + reach * np.cos(direction))
    x, y, mu = disc_coordinates(shape, centre, radius)
    disc = soft_disc(mu, x, y, radius)
    u, v = float(rng.uniform(0.75, 0.95)), float(rng.uniform(-0.25, -0.15))
    photosphere = 1.0 - u * (1.0 - mu) - v * (1.0 - mu) ** 2
    spots = np.ones(shape, np.float32)
    for _ in range(int(rng.integers(0, 6))):
        gx, gy = rng.uniform(-0.8, 0.8), rng.uniform(-0.5, 0.5)
        for _ in range(int(rng.integers(1, 6))):
            sx, sy = gx + rng.normal(0, 0.04), gy + rng.normal(0, 0.02)
            umbra = float(loguniform(rng, 0.003, 0.02))
            r = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
            spots *= 1.0 - 0.8 * (1 - smoothstep(r, umbra * 0.8, umbra * 1.2))
            spots *= 1.0 - 0.25 * (1 - smoothstep(r, umbra * 2.0, umbra * 2.6))
    faculae = 0.15 * smoothstep(random_field(shape, rng, 2.5, coarsen=4), 0.8, 1.6) * (
        1 - mu) ** 2
    granule_px = radius * 0.0015
    texture = 1.0
    if granule_px > 1.5:
        texture = 1.0 + 0.05 * random_field(shape, rng, 1.5, coarsen=max(1, int(granule_px / 2)))
    return [(disc * photosphere * spots * (1 + faculae) * texture, (1.0, 0.98, 0.92))]


def draw_sun_halpha(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """Chromosphere in H-alpha: mottled disc, dark filaments, bright plage, prominences standing
    off the limb."""
    h, w = shape
    radius = float(rng.uniform(0.3, 0.46) * min(shape) if rng.random() < 0.6
                   else loguniform(rng, 1.0, 4.0) * max(shape))
    if radius < min(shape):
        centre = _centre(shape, rng, 0.04)
    else:
        direction = rng.uniform(0, 2 * np.pi)
        reach = radius - float(rng.uniform(0.05, 0.8)) * min(shape)
        centre = (h / 2 + reach * np.sin(direction), w / 2 + reach * np.cos(direction))
    x, y, mu = disc_coordinates(shape, centre, radius)
    disc = soft_disc(mu, x, y, radius)
    mottle = 1.0 + 0.15 * random_field(shape, rng, 2.0, coarsen=2)
    filaments = smoothstep(np.abs(random_field(shape, rng, 3.0, coarsen=4)), 0.06, 0.0)
    filaments *= smoothstep(random_field(shape, rng, 3.0, coarsen=8), 0.5, 1.2)
    plage = 0.4 * smoothstep(random_field(shape, rng, 2.8, coarsen=4), 1.2, 2.0)
    chromosphere = disc * (0.6 + 0.4 * mu ** 0.3) * mottle * (1 - 0.6 * filaments) * (1 + plage)
    r = np.sqrt(x * x + y * y)
    angle = np.arctan2(y, x)
    prominences = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(0, 5))):
        where = rng.uniform(-np.pi, np.pi)
        height = float(rng.uniform(0.02, 0.08))
        width = float(rng.uniform(0.02, 0.1))
        dangle = np.angle(np.exp(1j * (angle - where)))
        prominences += (np.exp(-0.5 * (dangle / width) ** 2) * smoothstep(r, 1.0, 1.005)
                        * (1 - smoothstep(r, 1.0 + height * 0.5, 1.0 + height)))
    return [(chromosphere.astype(np.float32), (1.0, 0.15, 0.1)),
            (prominences * 0.25, (1.0, 0.15, 0.1))]


DRAW = {"jupiter": draw_jupiter, "saturn": draw_saturn, "mars": draw_mars,
        "venus": draw_venus, "moon": draw_moon, "sun": draw_sun, "sun_halpha": draw_sun_halpha}


def planetary_scene(canvas: Canvas, rng: np.random.Generator, body: str, *,
                    full_scale_e: float, seeing_px: float) -> None:
    """Draw ``body`` on ``canvas``, blurred by ``seeing_px`` (Gaussian sigma), with its brightest
    parts at 40..95 % of ``full_scale_e`` and a faint glow of scattered light around it."""
    components = DRAW[body](canvas.shape, rng)
    for image, rgb in components:
        canvas.add(blur(np.asarray(image, np.float32), seeing_px), rgb)
    canvas.scale_to(0.999, full_scale_e * float(rng.uniform(0.4, 0.95)), floor=0.05)
    if rng.random() < 0.5:
        total = canvas.data if canvas.data.ndim == 2 else canvas.data.mean(axis=0)
        glow = blur(total, max(canvas.shape) * 0.05) * np.float32(rng.uniform(0.005, 0.04))
        canvas.add(glow)
