"""Planetary, lunar and solar captures: a bright body on a black or near-black sky.

Each ``draw_*`` function returns the body's components as ``(image, rgb)`` pairs with
brightness of order 1; :func:`planetary_scene` blurs them by the seeing, adds them to a canvas
and scales the result so the body sits where the user set the histogram (40..95 % of full
scale). Bodies: Jupiter (belts, zones, Great Red Spot, moons), Saturn (bands, rings with the
Cassini division, ring occultation of the globe), Mars (albedo features, polar cap, phase),
Venus (phase), the Moon (cratered, shaded relief with maria, whole disc or a close-up across the
terminator or the limb) and the Sun: white light with limb darkening, sunspots, faculae and
granulation; H-alpha with mottling, filaments and limb prominences; close-ups of the granulation
(no limb in view, sometimes a sunspot with its penumbral filaments); and full-disc extreme
ultraviolet images as space telescopes take them (171, 193, 211, 304 angstrom and others: an
optically thin corona, limb-brightened, with bright active-region loops, dark coronal holes and
the off-limb corona fading with height; at 304 angstrom the chromospheric network and
prominences). Which bodies are drawn depends on who observes (:data:`BODY_WEIGHTS`): the
extreme ultraviolet is seen from space only.
"""

from __future__ import annotations

import numpy as np

from sample.physics import (SCENE_POINTS, Canvas, blur, coarse_step, disc_coordinates, grid,
                             line_image, loguniform, random_field, render_sources, resize,
                             smoothstep, soft_disc, wide_blur)

#: Bodies (and solar views) and how often each is captured, by who observes: amateurs and
#: observatories from the ground, missions from space.
BODIES = ("jupiter", "saturn", "mars", "venus", "moon", "sun", "sun_halpha", "granulation",
          "sun_euv")
BODY_WEIGHTS: dict[str, tuple[float, ...]] = {
    "amateur":     (0.18, 0.12, 0.1, 0.04, 0.24, 0.14, 0.1, 0.08, 0.0),
    "observatory": (0.1, 0.08, 0.06, 0.03, 0.15, 0.22, 0.2, 0.16, 0.0),
    "space":       (0.08, 0.06, 0.05, 0.0, 0.03, 0.18, 0.0, 0.05, 0.55),
}

#: Extreme-ultraviolet passbands (angstrom): coronal scale height (solar radii) and the
#: strength of the bright network (304 is chromospheric; the others coronal).
EUV_BANDS = {94: (0.09, 0.2), 131: (0.07, 0.25), 171: (0.05, 0.35), 193: (0.07, 0.3),
             195: (0.07, 0.3), 211: (0.08, 0.3), 284: (0.09, 0.25), 304: (0.015, 0.6),
             335: (0.09, 0.2)}

#: OBJECT names capture programs write for each body.
BODY_NAMES = {"jupiter": ("Jupiter", "jup", "JUPITER"), "saturn": ("Saturn", "sat"),
              "mars": ("Mars", "MARS"), "venus": ("Venus",),
              "moon": ("Moon", "Luna", "moon", "Mond"), "sun": ("Sun", "Sonne", "sun"),
              "sun_halpha": ("Sun Ha", "Sun", "Halpha"),
              "granulation": ("Sun", "granulation", "AR 13664", "quiet Sun", "sunspot"),
              "sun_euv": ("Sun", "Full Sun", "full FOV", "AR")}

Component = tuple[np.ndarray, tuple[float, float, float]]

#: Bodies a few hundred pixels across at most (the others fill or cross large frames).
PLANETS = ("jupiter", "saturn", "mars", "venus")


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


def _limb_placement(shape: tuple[int, int], rng: np.random.Generator, whole: bool,
                    fraction: tuple[float, float] = (0.25, 0.45),
                    zoom: tuple[float, float] = (0.8, 4.0)) -> tuple[float, tuple[float, float]]:
    """Radius and centre of a solar disc: whole in the frame (radius a ``fraction`` of the
    short side), or a view several frames wide whose limb may cross the frame or lie just
    outside it (off-limb corona only)."""
    h, w = shape
    if whole:
        return float(rng.uniform(*fraction) * min(shape)), _centre(shape, rng, 0.03)
    radius = float(loguniform(rng, *zoom) * max(shape))
    direction = rng.uniform(0, 2 * np.pi)
    reach = radius - float(rng.uniform(-0.4, 0.9)) * min(shape)
    return radius, (h / 2 + reach * np.sin(direction), w / 2 + reach * np.cos(direction))


def _euv_loops(shape: tuple[int, int], rng: np.random.Generator, radius: float,
               centre: tuple[float, float], lon: float, lat: float, count: int,
               step: int) -> np.ndarray:
    """Coronal loops of one active region on a grid of ``step``-pixel blocks: semicircular
    arcs standing on the sphere at (``lon``, ``lat``), projected on the sky, hidden where
    they pass behind the disc."""
    h, w = shape
    small = (int(np.ceil(h / step)), int(np.ceil(w / step)))
    c = np.array([np.cos(lat) * np.sin(lon), np.sin(lat), np.cos(lat) * np.cos(lon)])
    ys, xs, fluxes = [], [], []
    for _ in range(count):
        angle = rng.uniform(0, np.pi)
        tangent = np.cross(c, [0.0, 0.0, 1.0] if abs(c[2]) < 0.9 else [1.0, 0.0, 0.0])
        tangent /= np.linalg.norm(tangent)
        other = np.cross(c, tangent)
        e = np.cos(angle) * tangent + np.sin(angle) * other
        half = float(loguniform(rng, 0.01, 0.12))
        height = half * float(rng.uniform(0.6, 1.6))
        shift = c + (rng.normal(0, 0.015, 3))
        points = int(np.clip(4 * np.pi * half * radius / step, 8, 600))
        t = np.linspace(0.0, np.pi, points)
        p = (shift[None, :] * (1 + height * np.sin(t))[:, None]
             + e[None, :] * (half * np.cos(t))[:, None])
        visible = (p[:, 2] > 0) | (p[:, 0] ** 2 + p[:, 1] ** 2 > 1)
        ys.append((centre[0] - p[visible, 1] * radius) / step)
        xs.append((centre[1] + p[visible, 0] * radius) / step)
        fluxes.append(np.full(int(visible.sum()), float(loguniform(rng, 0.3, 3.0))))
    if not ys:
        return np.zeros(small, np.float32)
    width = max(1.2, float(loguniform(rng, 0.002, 0.006)) * radius / step)
    return render_sources(small, np.concatenate(ys), np.concatenate(xs),
                          np.concatenate(fluxes) * width, width, None)


def euv_corona(rho: np.ndarray, scale_height: float, edge: float = 1e-3) -> np.ndarray:
    """Brightness of an optically thin corona of exponential ``scale_height`` (solar radii)
    at projected distance ``rho`` from the disc centre (solar radii), float32.

    On the disc only the near half of the shell is seen, along a path that lengthens towards
    the limb: H / sqrt(mu^2 + 2H/pi) with mu = sqrt(1 - rho^2). Above the limb the line of
    sight crosses the shell twice: sqrt(2 pi rho H) exp(-(rho - 1) / H), plus a slow
    rho^-4 tail of the extended corona. ``edge``: half-width of the limb's transition.
    """
    mu = np.sqrt(np.clip(1.0 - rho * rho, 0.0, None))
    on_disc = scale_height / np.sqrt(mu * mu + 2 * scale_height / np.pi)
    above = np.maximum(rho, 1.0)
    off_limb = (np.sqrt(2 * np.pi * above * scale_height)
                * np.exp(-(above - 1.0) / scale_height) + 0.03 * above ** -4)
    weight = smoothstep(rho, 1.0 - edge, 1.0 + edge)
    return (on_disc * (1 - weight) + off_limb * weight).astype(np.float32)


def draw_sun_euv(shape: tuple[int, int], rng: np.random.Generator,
                 band: int | None = None) -> list[Component]:
    """The Sun in an extreme-ultraviolet passband, as SDO/AIA, SOHO/EIT or TRACE see it.

    The corona is optically thin: on the disc the brightness of a shell of scale height H
    grows towards the limb as H / sqrt(mu^2 + 2H/pi), just above the limb it doubles (the line
    of sight crosses the shell twice) and it fades as exp(-(r - 1)/H) with height, with a slow
    power-law tail. On top: a network texture, dark coronal holes (often at the poles), bright
    active regions with loops, sometimes a flare with the diffraction cross of the entrance
    filter's mesh. 304 angstrom: a thin, spiky chromosphere with prominences off the limb.
    Computed on a grid of at most four million points.
    """
    band = int(band or rng.choice(list(EUV_BANDS)))
    scale_height, network = EUV_BANDS[band]
    step = coarse_step(shape, SCENE_POINTS)
    radius, centre = _limb_placement(shape, rng, rng.random() < 0.65)
    yy, xx = grid(shape, step)
    x = (xx - np.float32(centre[1])) / np.float32(radius)
    y = (np.float32(centre[0]) - yy) / np.float32(radius)
    rho = np.sqrt(x * x + y * y)
    small = rho.shape
    corona = euv_corona(rho, scale_height, 0.5 * step / radius)
    texture = np.exp(network * random_field(small, rng, float(rng.uniform(1.8, 2.4)), 1))
    holes = smoothstep(random_field(small, rng, 3.5, 2), 0.7, 1.4)
    if rng.random() < 0.6:
        holes = np.maximum(holes, smoothstep(np.abs(y), float(rng.uniform(0.7, 0.85)), 0.95)
                           * (rho < 1.3))
    image = corona * texture * (1.0 - 0.85 * holes)
    regions = int(rng.integers(0, 6))
    for _ in range(regions):
        lon, lat = float(rng.uniform(-1.3, 1.3)), float(rng.uniform(-0.6, 0.6))
        cx, cy = np.cos(lat) * np.sin(lon), np.sin(lat)
        size = float(loguniform(rng, 0.03, 0.12))
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * size * size))
        strength = float(loguniform(rng, 2.0, 15.0)) * scale_height
        image += np.float32(strength) * blob.astype(np.float32)
        if band != 304:
            image += np.float32(strength * 0.5) * _euv_loops(
                shape, rng, radius, centre, lon, lat, int(rng.integers(4, 25)), step)
    if band == 304:
        spicules = 1.0 + 0.5 * random_field(small, rng, 1.5, 1)
        rim = np.exp(-((rho - 1.0) / 0.01) ** 2) * np.clip(spicules, 0, None)
        image = image + np.float32(0.4 * scale_height ** 0.5) * rim.astype(np.float32)
        angle = np.arctan2(y, x)
        for _ in range(int(rng.integers(0, 4))):
            where = rng.uniform(-np.pi, np.pi)
            dangle = np.angle(np.exp(1j * (angle - where)))
            tall = float(rng.uniform(0.03, 0.12))
            image += (np.float32(0.3) * np.exp(-0.5 * (dangle / rng.uniform(0.02, 0.08)) ** 2)
                      * smoothstep(rho, 1.0, 1.01) * (1 - smoothstep(rho, 1 + tall / 2, 1 + tall))
                      ).astype(np.float32)
    image = resize(np.asarray(image, np.float32), shape)
    components: list[Component] = [(image, (1.0, 1.0, 1.0))]
    if regions and rng.random() < 0.12:  # a flare saturates, with the mesh's diffraction cross
        fy, fx = _centre(shape, rng, 0.2)
        peak = float(image.max()) * float(loguniform(rng, 3, 30))
        flare = render_sources(shape, np.array([fy]), np.array([fx]), np.array([peak * 9]), 2.5,
                               None)
        angle = float(rng.uniform(0, np.pi / 2))
        for spike in (angle, angle + np.pi / 2):
            flare += line_image(shape, (fy, fx), spike, 1.5, peak * 0.01)
        components.append((flare, (1.0, 1.0, 1.0)))
    return components


def draw_granulation(shape: tuple[int, int], rng: np.random.Generator) -> list[Component]:
    """A close-up of the photosphere, no limb in view: bright granules (convection cells, a
    Voronoi tessellation of random centres) separated by dark intergranular lanes, cells
    brightest in their middle; sometimes pores or a sunspot (dark umbra, penumbra of radial
    filaments) and a slight large-scale gradient. Computed on a grid of at most four million
    points, at least eight points per granule."""
    from scipy.spatial import cKDTree

    h, w = shape
    size = float(loguniform(rng, 6.0, 60.0))  # granule diameter, px
    step = max(1, int(size // 8), coarse_step(shape, SCENE_POINTS))
    count = int(np.clip(1.3 * (h + 2 * size) * (w + 2 * size) / size ** 2, 4, 3_000_000))
    seeds = np.column_stack([rng.uniform(-size, h + size, count),
                             rng.uniform(-size, w + size, count)])
    yy, xx = grid(shape, step)
    small = (yy.shape[0], xx.shape[1])
    points = np.column_stack([np.broadcast_to(yy, small).ravel(),
                              np.broadcast_to(xx, small).ravel()])
    distance, nearest = cKDTree(seeds).query(points, k=2)
    lane = ((distance[:, 1] - distance[:, 0]) / size).reshape(small)
    centre = (distance[:, 0] / size).reshape(small)
    brightness = (1.0 + 0.12 * rng.standard_normal(count))[nearest[:, 0]].reshape(small)
    image = brightness * (0.55 + 0.45 * smoothstep(lane, 0.0, 0.2)) * (1 - 0.3 * centre ** 2)
    if rng.random() < 0.4:
        sy, sx = _centre((small[0], small[1]), rng, 0.2)
        umbra = float(loguniform(rng, 0.03, 0.2)) * min(small)
        penumbra = umbra * float(rng.uniform(1.8, 2.6))
        sy_, sx_ = np.arange(small[0])[:, None] - sy, np.arange(small[1])[None, :] - sx
        r = np.sqrt(sy_ * sy_ + sx_ * sx_)
        theta = np.arctan2(sy_, sx_)
        filaments = 0.55 + 0.15 * np.cos(int(rng.integers(40, 120)) * theta
                                          + 3 * random_field(small, rng, 2.0, 1))
        spot = np.where(r < umbra, 0.15, np.where(r < penumbra, filaments, 1.0))
        spot = blur(spot.astype(np.float32), max(1.0, umbra * 0.05))
        image = image * spot
    image = image * (1.0 + 0.1 * random_field(small, rng, 4.0, 4))
    return [(resize(image.astype(np.float32), shape), (1.0, 0.98, 0.92))]


DRAW = {"jupiter": draw_jupiter, "saturn": draw_saturn, "mars": draw_mars,
        "venus": draw_venus, "moon": draw_moon, "sun": draw_sun, "sun_halpha": draw_sun_halpha,
        "granulation": draw_granulation, "sun_euv": draw_sun_euv}


def planetary_scene(canvas: Canvas, rng: np.random.Generator, body: str, *,
                    full_scale_e: float, seeing_px: float, **details) -> None:
    """Draw ``body`` on ``canvas``, blurred by ``seeing_px`` (Gaussian sigma), with its brightest
    parts at 40..95 % of ``full_scale_e`` and a faint glow of scattered light around it.

    ``details`` go to the body's drawing function (``band`` for ``sun_euv``). Frames above
    four million pixels are drawn on a coarser grid and interpolated: seeing blurs them anyway.
    """
    h, w = canvas.shape
    top, left, box = 0, 0, (h, w)
    if body in PLANETS and min(h, w) > 600:
        # A planet spans at most a few hundred pixels, however large the sensor: it is drawn
        # in a window of the frame and the rest is sky.
        side = float(loguniform(rng, 300, min(h, w)))
        box = (int(min(h, side * float(rng.uniform(0.8, 1.25)))), int(min(w, side)))
        top = int(rng.integers(0, h - box[0] + 1))
        left = int(rng.integers(0, w - box[1] + 1))
    step = coarse_step(box, SCENE_POINTS)
    small = (int(np.ceil(box[0] / step)), int(np.ceil(box[1] / step)))
    for image, rgb in DRAW[body](small, rng, **details):
        image = resize(blur(np.asarray(image, np.float32), seeing_px / step), box)
        if box != (h, w):
            image = np.pad(image, ((top, h - top - box[0]), (left, w - left - box[1])))
        canvas.add(image, rgb)
    canvas.scale_to(0.999, full_scale_e * float(rng.uniform(0.4, 0.95)), floor=0.05)
    if rng.random() < 0.5:
        total = canvas.data if canvas.data.ndim == 2 else canvas.data.mean(axis=0)
        glow = wide_blur(total, max(canvas.shape) * 0.05) * np.float32(rng.uniform(0.005, 0.04))
        canvas.add(glow)
