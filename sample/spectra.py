"""Slit spectra as a Baader DADOS, an observatory or a space spectrograph records them.

The slit is imaged across the spatial axis as a band of illuminated rows; the grating disperses
wavelength along the other axis (horizontal or vertical, equally often). Frames:

* ``star``: one or a few stellar traces (a few to tens of pixels wide, slightly tilted and
  curved) carrying a continuum (Planck x detector QE) with absorption lines of the star's
  spectral type and telluric bands, over a faint sky with light-pollution emission lines;
* ``arc``: a calibration lamp (neon, argon-neon, mercury-argon, helium, energy-saving lamp):
  many narrow emission lines across the whole slit length, curved by the spectrograph's smile;
* ``nebula``: extended emission lines (H-alpha, [O III], H-beta ...) along part of the slit;
* ``solar``: daylight through the slit, a continuum with Fraunhofer lines along the whole slit;
* ``echelle`` and ``echelle_arc``: an échelle or cross-dispersed spectrograph's many curved
  orders stacked across the frame (4..8 orders cross-dispersed, 15..60 échelle), each under the
  grating's blaze, carrying a star's spectrum or a thorium-argon lamp's dense lines;
* ``spectroheliograph``: a Sol'Ex-like solar scan frame: a narrow window of the solar spectrum
  around a strong line (H-alpha, Ca II K and H, the Na D pair, the Mg b triplet, He I D3, Fe I)
  across a long slit laid on the solar disc: a bright continuum whose brightness follows the
  limb darkening along the slit (dark beyond the limb when the slit crosses it), the lines
  strongly curved by the spectrograph's smile, sunspots as dark streaks along the dispersion,
  dust on the slit as thin dark lines;
* ``raster``: a space ultraviolet spectrograph's readout: a few narrow spectral windows side by
  side, each with emission lines whose brightness and Doppler shift change along the slit as it
  crosses solar structures, sometimes with the dark fiducial marks of the slit;
* ``lampflat`` and ``echelle_flat`` (flats, not spectra): a tungsten-lamp continuum filling
  the slit, or the orders of an échelle.

A space spectrograph (``SlitSetup.space``) sees no sky: no airglow or light pollution, sharper
traces. Frames are computed in blocks of rows, so memory does not grow with their size.

Wavelengths are in nanometres. :func:`spectrum_scene` adds the electrons to a canvas; colour
cameras see the dispersion as a gradual change of colour along the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sample.physics import Canvas, loguniform, smoothstep

KINDS = ("star", "arc", "nebula", "solar", "spectroheliograph", "echelle", "echelle_arc",
         "raster")
#: How often each kind is taken (per cent), by who observes.
KIND_WEIGHTS: dict[str, tuple[float, ...]] = {
    "amateur":     (36, 23, 7, 8, 14, 7, 5, 0),
    "observatory": (36, 23, 8, 2, 5, 15, 11, 0),
    "space":       (30, 10, 15, 0, 0, 12, 5, 28),
}

#: Strong solar lines a spectroheliograph is centred on (nm) and the width of their wings.
SOLAR_LINES = ((656.28, 0.12), (393.37, 0.35), (396.85, 0.3), (589.0, 0.05), (589.59, 0.05),
               (517.27, 0.08), (518.36, 0.09), (587.56, 0.02), (527.04, 0.03), (516.89, 0.03))

#: Pixels of the frame computed per block of rows.
BLOCK_PIXELS = 1 << 20

#: Emission lines (nm, relative intensity) of calibration lamps.
LAMPS: dict[str, tuple[tuple[float, float], ...]] = {
    "Neon": ((540.06, 0.3), (585.25, 1.0), (588.19, 0.5), (594.48, 0.6), (597.55, 0.2),
             (603.00, 0.3), (607.43, 0.4), (609.62, 0.5), (614.31, 0.7), (616.36, 0.3),
             (621.73, 0.3), (626.65, 0.5), (630.48, 0.3), (633.44, 0.6), (638.30, 0.6),
             (640.22, 0.9), (650.65, 0.6), (653.29, 0.3), (659.90, 0.4), (667.83, 0.4),
             (671.70, 0.3), (692.95, 0.4), (703.24, 0.5), (717.39, 0.2), (724.52, 0.3),
             (743.89, 0.2), (747.24, 0.1), (753.58, 0.15), (754.40, 0.1)),
    "Argon": ((696.54, 0.6), (706.72, 0.5), (714.70, 0.2), (727.29, 0.3), (738.40, 0.6),
              (750.39, 1.0), (751.47, 0.6), (763.51, 1.0), (772.38, 0.5), (794.82, 0.5),
              (800.62, 0.4), (801.48, 0.4), (810.37, 0.5), (811.53, 0.8), (826.45, 0.4),
              (840.82, 0.4), (842.46, 0.5), (852.14, 0.3), (415.86, 0.05), (420.07, 0.06),
              (425.94, 0.04), (427.22, 0.04), (430.01, 0.04), (451.07, 0.03), (560.67, 0.02)),
    "Mercury": ((404.66, 0.5), (407.78, 0.1), (435.83, 1.0), (491.60, 0.05), (546.07, 1.0),
                (576.96, 0.4), (579.07, 0.4), (690.75, 0.05)),
    "Helium": ((388.86, 0.6), (402.62, 0.1), (447.15, 0.5), (471.31, 0.1), (492.19, 0.2),
               (501.57, 0.4), (587.56, 1.0), (667.82, 0.4), (706.52, 0.5), (728.14, 0.1)),
    # Compact fluorescent lamp: mercury plus the europium and terbium phosphor bands.
    "Energy saving lamp": ((404.66, 0.3), (435.83, 0.8), (487.7, 0.4), (542.4, 0.7),
                           (546.07, 1.0), (577.0, 0.2), (579.07, 0.2), (587.6, 0.2),
                           (593.4, 0.15), (611.6, 1.0), (625.7, 0.1), (631.1, 0.2),
                           (650.8, 0.1), (662.6, 0.08), (687.7, 0.1), (707.0, 0.1)),
}

def _thorium_argon() -> tuple[tuple[float, float], ...]:
    """A thorium-argon hollow-cathode lamp for échelle work: argon's strong lines plus several
    hundred thorium lines of widely spread strength (a fixed, seeded list: same every run)."""
    rng = np.random.default_rng(232)
    thorium = tuple(zip(np.round(rng.uniform(370.0, 900.0, 600), 3),
                        np.round(np.exp(rng.uniform(np.log(0.01), 0.0, 600)), 3)))
    return thorium + LAMPS["Argon"]


LAMPS["Thorium-Argon"] = _thorium_argon()

#: Lamp mixtures offered by calibration units, with the OBJECT names people give them.
ARC_SETUPS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("Neon",), ("Arc Neon", "Neon", "Ne lamp", "neon calib", "Calibration")),
    (("Argon", "Neon"), ("ArNe", "Arc ArNe", "Ar+Ne", "Calibration lamp", "COMP")),
    (("Mercury", "Argon"), ("HgAr", "Arc HgAr", "hg-ar")),
    (("Helium", "Argon"), ("HeAr", "WAVE", "He-Ar")),
    (("Energy saving lamp",), ("ESL", "energy saving lamp", "Sparlampe", "Arc CFL")),
)

#: Stellar absorption lines (nm, depth, width nm) by spectral type.
_BALMER = ((656.28, 1.0, 1.2), (486.13, 1.0, 1.5), (434.05, 0.9, 1.5), (410.17, 0.8, 1.4),
           (397.01, 0.7, 1.2), (388.9, 0.6, 1.0))
_METALS = ((393.37, 1.0, 0.8), (396.85, 1.0, 0.8), (430.8, 0.6, 0.5), (516.7, 0.4, 0.3),
           (517.3, 0.5, 0.3), (518.4, 0.5, 0.3), (527.0, 0.4, 0.3), (589.0, 0.6, 0.25),
           (589.6, 0.55, 0.25), (617.3, 0.2, 0.2), (649.5, 0.2, 0.2), (849.8, 0.4, 0.4),
           (854.2, 0.5, 0.4), (866.2, 0.45, 0.4))
_TELLURIC = ((686.9, 0.5, 1.0), (759.4, 0.8, 2.5), (718.0, 0.2, 3.0), (822.0, 0.3, 4.0))
#: (name, temperature K, Balmer strength, metal strength, molecular bands)
SPECTRAL_TYPES = (("B", 15000, 0.45, 0.05, 0.0), ("A", 9500, 0.8, 0.15, 0.0),
                  ("F", 7000, 0.45, 0.4, 0.0), ("G", 5800, 0.2, 0.7, 0.0),
                  ("K", 4500, 0.08, 0.9, 0.15), ("M", 3400, 0.03, 0.8, 0.7))
STAR_NAMES = {"B": ("Rigel", "Spica", "Regulus", "gam Cas", "P Cygni", "zet Tau"),
              "A": ("Vega", "Sirius", "Deneb", "Altair", "Castor", "HD 188350"),
              "F": ("Procyon", "Polaris", "Canopus", "del Cep"),
              "G": ("Capella", "Sun", "alf Cen", "HD 10307"),
              "K": ("Arcturus", "Aldebaran", "Pollux", "Hamal"),
              "M": ("Betelgeuse", "Antares", "mu Cep", "R Leo", "Mira")}
#: Nebular emission lines (nm, relative intensity).
NEBULAR = ((656.28, 1.0), (658.35, 0.35), (654.80, 0.12), (486.13, 0.3), (500.68, 1.2),
           (495.89, 0.4), (434.05, 0.12), (672.4, 0.15), (630.0, 0.05), (587.56, 0.05))
#: Light-pollution and airglow lines in the night sky (nm, relative intensity).
SKY_LINES = ((435.83, 0.6), (546.07, 1.0), (577.0, 0.4), (579.07, 0.4), (557.73, 0.5),
             (589.3, 0.8), (630.0, 0.3), (819.5, 0.3), (611.6, 0.3), (656.28, 0.1))


@dataclass(frozen=True)
class Dispersion:
    """Linear wavelength solution: lambda(x) = start + step * x (nm), x along the dispersion
    axis of ``length`` pixels; ``step`` < 0 when blue is on the right."""

    start: float
    step: float
    length: int

    def wavelengths(self, oversample: int = 1) -> np.ndarray:
        x = np.arange(self.length * oversample, dtype=np.float64) / oversample
        return self.start + self.step * x


def draw_dispersion(rng: np.random.Generator, length: int) -> Dispersion:
    """Grating and camera: 0.05..0.5 nm/px (the DADOS 900 l/mm and 200 l/mm gratings with
    different pixel sizes), centred between 420 and 720 nm, sometimes flipped."""
    step = float(loguniform(rng, 0.05, 0.5))
    centre = float(rng.uniform(420, 720))
    start = centre - step * length / 2
    if rng.random() < 0.3:
        return Dispersion(start + step * length, -step, length)
    return Dispersion(start, step, length)


def detector_qe(wavelength: np.ndarray) -> np.ndarray:
    """Silicon quantum efficiency, peak 1 near 560 nm, dropping to ~0 at 330 and 1050 nm."""
    return np.clip(np.exp(-0.5 * ((wavelength - 560.0) / 170.0) ** 2)
                   * smoothstep(wavelength, 330.0, 400.0)
                   * (1 - smoothstep(wavelength, 900.0, 1060.0)), 0, None)


def planck(wavelength: np.ndarray, temperature: float) -> np.ndarray:
    """Black-body spectral radiance, normalised to 1 at its maximum over ``wavelength``."""
    x = 14387769.0 / (wavelength * temperature)  # hc / (lambda k T), lambda in nm
    radiance = wavelength ** -5.0 / np.expm1(np.clip(x, 1e-6, 700))
    return radiance / radiance.max()


def channel_response(wavelength: np.ndarray) -> np.ndarray:
    """Relative response (3, N) of a colour sensor's R, G, B pixels versus wavelength."""
    centres, widths = (610.0, 535.0, 465.0), (55.0, 45.0, 40.0)
    bands = [np.exp(-0.5 * ((wavelength - c) / s) ** 2) for c, s in zip(centres, widths)]
    bands[0] = bands[0] + 0.35 * smoothstep(wavelength, 680, 760)  # no IR-cut filter
    return np.asarray(bands)


def absorption_lines(wavelength: np.ndarray, lines, scale: float) -> np.ndarray:
    """Transmission 1 - sum(depth * Gaussian(width)) for (centre, depth, width) ``lines``."""
    depth = np.zeros_like(wavelength)
    for centre, strength, width in lines:
        depth += strength * scale * np.exp(-0.5 * ((wavelength - centre) / width) ** 2)
    return np.clip(1.0 - depth, 0.02, 1.0)


def emission_lines(wavelength: np.ndarray, lines, fwhm_nm: float) -> np.ndarray:
    """Sum of Gaussian emission lines (centre, intensity) of ``fwhm_nm``, peak = intensity."""
    sigma = fwhm_nm / 2.3548
    flux = np.zeros_like(wavelength)
    for centre, intensity in lines:
        flux += intensity * np.exp(-0.5 * ((wavelength - centre) / sigma) ** 2)
    return flux


def stellar_spectrum(wavelength: np.ndarray, rng: np.random.Generator,
                     spectral_type: tuple) -> np.ndarray:
    """Photon spectrum of a star of ``spectral_type`` seen through the atmosphere (relative)."""
    _, temperature, balmer, metals, bands = spectral_type
    continuum = planck(wavelength, temperature * float(rng.uniform(0.9, 1.1)))
    continuum *= np.exp(-0.12 * (450.0 / wavelength) ** 4)  # Rayleigh extinction
    transmission = absorption_lines(wavelength, _BALMER, balmer)
    transmission *= absorption_lines(wavelength, _METALS, metals)
    transmission *= absorption_lines(wavelength, _TELLURIC, 1.0)
    if bands > 0:  # TiO band heads degrade to the red
        for head in (476.1, 495.4, 516.7, 544.8, 558.9, 615.9, 705.4):
            ramp = smoothstep(wavelength, head, head + 0.3) * np.exp(
                -(wavelength - head).clip(0) / 25.0)
            transmission *= 1 - 0.6 * bands * ramp
    spectrum = continuum * transmission
    if rng.random() < 0.12:  # emission-line star (Be star, P Cygni)
        spectrum += continuum.max() * emission_lines(wavelength, ((656.28, 1.5), (486.13, 0.4)),
                                                     1.2)
    return spectrum


def slit_band(rng: np.random.Generator, height: int) -> tuple[np.ndarray, float, float]:
    """Illumination profile of the slit along the spatial axis: (profile (H,), first row,
    last row). The slit covers 30..100 % of the rows with soft edges and slight unevenness."""
    length = float(rng.uniform(0.3, 1.05) * height)
    first = float(rng.uniform(-0.05 * height, max(0.0, height - length)))
    rows = np.arange(height, dtype=np.float64)
    edge = float(rng.uniform(0.5, 3.0))
    profile = smoothstep(rows, first - edge, first + edge) * (
        1 - smoothstep(rows, first + length - edge, first + length + edge))
    profile *= 1.0 + 0.05 * np.sin(rows / height * rng.uniform(2, 8) + rng.uniform(0, 6))
    return profile, first, first + length


def resample_along_slit(spectrum: np.ndarray, oversample: int, shape: tuple[int, int],
                        curvature: float, tilt: float, centre_row: float) -> np.ndarray:
    """Spread a 1-D spectrum (oversampled ``oversample`` times) over every row, each row
    shifted by the slit image's smile ``curvature * dy^2 + tilt * dy`` (px)."""
    h, w = shape
    dy = np.arange(h, dtype=np.float64)[:, None] - centre_row
    x = np.arange(w, dtype=np.float64)[None, :] + curvature * dy * dy + tilt * dy
    fine = np.arange(spectrum.size, dtype=np.float64) / oversample
    return np.interp(x.ravel(), fine, spectrum, left=0.0, right=0.0).reshape(shape)


@dataclass(frozen=True)
class TraceProfile:
    """Spatial profile of a star along the slit: a Moffat-like core of FWHM ``width`` rows
    (seeing, guiding drift), or a flat band ``2 * half`` rows wide when trailed along the slit,
    centred on ``centre`` (one row per column: it drifts along the dispersion axis). Each column
    sums to about 1."""

    centre: np.ndarray
    width: float
    half: float | None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        """The profile's rows ``top`` to ``bottom`` (exclusive), shape (rows, W)."""
        rows = np.arange(top, bottom, dtype=np.float64)[:, None]
        centre = self.centre[None, :]
        if self.half is not None:
            half = self.half
            profile = smoothstep(rows, centre - half - 1.5, centre - half + 1.5) * (
                1 - smoothstep(rows, centre + half - 1.5, centre + half + 1.5))
            return profile / (2 * half)
        alpha = self.width / 1.2
        return (1 + ((rows - centre) / alpha) ** 2) ** -2.5 / (alpha * 1.18)


def trace_profile(shape: tuple[int, int], rng: np.random.Generator, row: float,
                  width: float) -> TraceProfile:
    """A star's :class:`TraceProfile` on a frame of ``shape``, centred near ``row``: it drifts
    linearly and quadratically along the dispersion axis (misalignment, atmospheric
    dispersion), and 20 % are trailed along the slit to widen the spectrum."""
    h, w = shape
    xs = np.arange(w, dtype=np.float64) / max(w, 1) - 0.5
    centre = row + float(rng.normal(0, 0.01)) * w * xs + float(rng.normal(0, 4)) * xs * xs
    half = width * float(rng.uniform(1.5, 5)) if rng.random() < 0.2 else None
    return TraceProfile(centre=centre, width=width, half=half)


@dataclass(frozen=True)
class SlitSetup:
    """What the observer set up for one long-slit frame (decided before exposing, so headers
    and file names can say it): frame ``kind``, wavelength solution, slit width in microns,
    dispersion along the rows (``vertical``), lamps switched on, the star's spectral type
    (index into :data:`SPECTRAL_TYPES`) and the OBJECT name; ``orders`` of an échelle (0 for
    a long slit); ``space``: a spectrograph in orbit (no sky)."""

    kind: str
    dispersion: Dispersion
    slit_um: int
    vertical: bool
    lamps: tuple[str, ...]
    spectral_type: int | None
    object_name: str
    orders: int = 0
    space: bool = False

    @property
    def grating(self) -> str:
        if self.orders:
            return "31.6 l/mm echelle" if self.orders > 10 else "110 l/mm cross-dispersed"
        return "900 l/mm" if abs(self.dispersion.step) < 0.12 else "200 l/mm"


def draw_setup(rng: np.random.Generator, kind: str, shape: tuple[int, int],
               vertical: bool, space: bool = False) -> SlitSetup:
    """Grating, slit, lamps, orders and target for a frame of ``kind`` (star, arc, nebula,
    solar, echelle, echelle_arc, raster, lampflat, echelle_flat) on a sensor of ``shape``."""
    length = shape[0] if vertical else shape[1]
    across = shape[1] if vertical else shape[0]
    dispersion = draw_dispersion(rng, length)
    lamps: tuple[str, ...] = ()
    spectral_type = None
    orders = 0
    if kind.startswith("echelle"):
        wanted = int(rng.integers(4, 9)) if rng.random() < 0.3 else int(rng.integers(15, 61))
        orders = int(max(2, min(wanted, across // 7)))
    if kind == "arc":
        lamps, names = ARC_SETUPS[int(rng.integers(0, len(ARC_SETUPS)))]
        name = str(rng.choice(names))
        dispersion = _centre_on_lines(dispersion, lamps, rng)
    elif kind == "echelle_arc":
        lamps = ("Thorium-Argon",)
        name = str(rng.choice(["ThAr", "ThAr lamp", "WAVE", "Th-Ar", "Calibration"]))
    elif kind in ("lampflat", "echelle_flat"):
        lamps = ("Tungsten",)
        name = str(rng.choice(["Flat", "LAMPFLAT", "Tungsten", "halogen flat", "W lamp",
                               "Quartz", "FLAT,LAMP", "flat lamp", "Halogen"]))
    elif kind == "solar":
        spectral_type = 3
        name = str(rng.choice(["Sun", "Daylight", "sky", "Solar spectrum"]))
    elif kind == "nebula":
        name = str(rng.choice(["M57", "M42", "NGC 7027", "NGC 6543", "M27", "NGC 4151"]))
    elif kind == "raster":
        name = str(rng.choice(["AR 12192", "Quiet Sun", "Coronal hole", "Limb", "Sun"]))
    elif kind == "spectroheliograph":
        name = str(rng.choice(["Sun", "Sun Ha", "Soleil", "Sun CaK", "sun"]))
    else:
        spectral_type = int(rng.integers(0, len(SPECTRAL_TYPES)))
        name = str(rng.choice(STAR_NAMES[SPECTRAL_TYPES[spectral_type][0]]))
    return SlitSetup(kind=kind, dispersion=dispersion,
                     slit_um=int(rng.choice([25, 35, 50])), vertical=vertical, lamps=lamps,
                     spectral_type=spectral_type, object_name=name, orders=orders,
                     space=space)


def _centre_on_lines(dispersion: Dispersion, lamps: tuple[str, ...],
                     rng: np.random.Generator) -> Dispersion:
    """Move the wavelength range onto the lamps' lines when fewer than three fall inside it,
    as an observer calibrates with a lamp that shows lines in the observed range."""
    lines = np.asarray([c for lamp in lamps for c, _ in LAMPS[lamp]])
    covered = dispersion.start + dispersion.step * np.array([0.0, dispersion.length])
    low, high = covered.min(), covered.max()
    if np.count_nonzero((lines > low) & (lines < high)) >= 3:
        return dispersion
    centre = float(rng.choice(lines))
    span = dispersion.step * dispersion.length
    return Dispersion(centre - span * float(rng.uniform(0.3, 0.7)), dispersion.step,
                      dispersion.length)


def spectrum_scene(canvas: Canvas, rng: np.random.Generator, setup: SlitSetup, *,
                   full_scale_e: float, exptime_s: float) -> None:
    """Fill ``canvas`` with the slit frame described by ``setup``: an échelle's orders, a
    space spectrograph's raster windows or a long-slit frame (:func:`long_slit_scene`)."""
    h, w = canvas.shape
    shape = (w, h) if setup.vertical else (h, w)
    if setup.orders:
        planes = echelle_planes(rng, setup, shape, full_scale_e, canvas.mode != "mono")
    elif setup.kind == "spectroheliograph":
        planes = spectroheliograph_planes(rng, shape, full_scale_e, canvas.mode != "mono")
    elif setup.kind == "raster":
        planes = raster_planes(rng, shape, full_scale_e)
    else:
        planes = long_slit_planes(rng, setup, shape, full_scale_e, exptime_s,
                                  canvas.mode != "mono")
    if setup.vertical:
        planes = np.ascontiguousarray(np.transpose(planes, (0, 2, 1)))
    if canvas.mode == "mono" or planes.shape[0] == 1:
        canvas.add(planes[0])
    else:
        canvas.add_planes(planes)


def _row_blocks(height: int, width: int):
    """Row ranges of at most :data:`BLOCK_PIXELS` pixels."""
    rows = max(1, BLOCK_PIXELS // max(width, 1))
    return ((start, min(height, start + rows)) for start in range(0, height, rows))


def long_slit_planes(rng: np.random.Generator, setup: SlitSetup, shape: tuple[int, int],
                     full_scale_e: float, exptime_s: float, colour: bool) -> np.ndarray:
    """Electrons (planes, H, W) of a long-slit frame dispersed along the rows.

    Light that fills the slit (lamps, sky, daylight, nebulae) is spread over the slit rows with
    the slit image's curvature; stellar traces are narrow enough to ignore it.
    """
    oversample = 4
    wavelength = setup.dispersion.wavelengths(oversample)
    slit_px = float(rng.uniform(1.6, 4.5)) * setup.slit_um / 35.0
    line_fwhm_nm = slit_px * abs(setup.dispersion.step)
    slit, first, last = slit_band(rng, shape[0])
    qe = detector_qe(wavelength)
    filling = np.zeros_like(wavelength)        # light filling the slit, e- per row
    extended: list[tuple[np.ndarray, np.ndarray]] = []  # (spectrum, profile along the slit)
    traces: list[tuple[np.ndarray, TraceProfile]] = []  # (spectrum, spatial profile)
    if setup.kind == "arc":
        lines = [(c, i * float(loguniform(rng, 0.5, 2.0)))
                 for lamp in setup.lamps for c, i in LAMPS[lamp]]
        spectrum = emission_lines(wavelength, lines, line_fwhm_nm) * qe
        if rng.random() < 0.4:  # warm filament glow under the lines
            spectrum += 0.01 * qe * planck(wavelength, 3000)
        filling += spectrum / max(spectrum.max(), 1e-9) * full_scale_e * loguniform(rng, 0.3, 3)
    elif setup.kind == "lampflat":
        spectrum = planck(wavelength, float(rng.uniform(2700, 3300))) * qe
        if rng.random() < 0.3:  # fringing of thinned CCDs in the red
            spectrum *= 1 + 0.1 * smoothstep(wavelength, 650, 800) * np.sin(wavelength / 1.7)
        filling += spectrum / spectrum.max() * full_scale_e * rng.uniform(0.2, 0.6)
    elif setup.kind == "solar":
        spectrum = stellar_spectrum(wavelength, rng, SPECTRAL_TYPES[3]) * qe
        filling += spectrum / spectrum.max() * full_scale_e * rng.uniform(0.3, 0.8)
    else:
        if not setup.space:
            sky = 0.02 * planck(wavelength, 4000) + emission_lines(
                wavelength, SKY_LINES, line_fwhm_nm) * loguniform(rng, 0.1, 2.0)
            filling += sky * qe * loguniform(rng, 0.5, 30.0) * np.sqrt(max(exptime_s, 1.0))
        if setup.kind == "nebula":
            lines = [(c, i * float(rng.uniform(0.5, 1.5))) for c, i in NEBULAR]
            spectrum = emission_lines(wavelength, lines, line_fwhm_nm) * qe
            rows = np.arange(shape[0])
            extent = np.zeros(shape[0])
            for _ in range(int(rng.integers(1, 4))):
                middle = rng.uniform(first, last)
                extent += np.exp(-0.5 * ((rows - middle) / rng.uniform(5, 0.3 * shape[0])) ** 2)
            level = full_scale_e * loguniform(rng, 0.05, 1.0)
            extended.append((spectrum / max(spectrum.max(), 1e-9) * level, extent))
        else:
            _add_star_traces(traces, rng, setup.spectral_type, shape, wavelength, qe, first,
                             last, full_scale_e, sharp=setup.space)
    channels = [np.ones_like(wavelength)] if not colour else list(channel_response(wavelength))
    planes = np.zeros((len(channels),) + shape, dtype=np.float32)
    # The smile bends a line by about 3 % of the slit image's half length at its ends.
    half_slit = max(0.5 * (last - first), 8.0)
    curvature, tilt = float(rng.normal(0, 0.03)) / half_slit, float(rng.normal(0, 0.01))
    centre_row = 0.5 * (first + last)
    for top, bottom in _row_blocks(*shape):
        block = (bottom - top, shape[1])
        for c, channel in enumerate(channels):
            part = resample_along_slit(filling * channel, oversample, block, curvature, tilt,
                                       centre_row - top) * slit[top:bottom, None]
            for spectrum, extent in extended:
                part += (resample_along_slit(spectrum * channel, oversample, block, curvature,
                                             tilt, centre_row - top)
                         * (extent * slit)[top:bottom, None])
            for spectrum, profile in traces:
                binned = (spectrum * channel).reshape(-1, oversample).mean(axis=1)
                part += profile.rows(top, bottom) * binned[None, :]
            planes[c, top:bottom] = part
    return planes


def _add_star_traces(traces: list, rng: np.random.Generator, spectral_type: int,
                     shape: tuple[int, int], wavelength: np.ndarray, qe: np.ndarray,
                     first: float, last: float, full_scale_e: float,
                     sharp: bool = False) -> None:
    """Append the target star's trace and sometimes fainter neighbours on the slit; ``sharp``
    traces (no seeing: a space spectrograph) are 1.5..4 rows wide."""
    count = 1 + int(rng.poisson(0.4))
    for n in range(count):
        row = float(rng.uniform(first + 3, max(first + 4, last - 3)))
        width = float(loguniform(rng, 1.5, 4.0) if sharp else loguniform(rng, 2.0, 14.0))
        star_type = spectral_type if n == 0 else int(rng.integers(0, len(SPECTRAL_TYPES)))
        spectrum = stellar_spectrum(wavelength, rng, SPECTRAL_TYPES[star_type]) * qe
        peak = full_scale_e * loguniform(rng, 0.1, 1.5) * (
            1.0 if n == 0 else loguniform(rng, 0.01, 0.3))
        spatial = trace_profile(shape, rng, row, width)
        traces.append((spectrum / spectrum.max() * peak * width, spatial))


def echelle_planes(rng: np.random.Generator, setup: SlitSetup, shape: tuple[int, int],
                   full_scale_e: float, colour: bool) -> np.ndarray:
    """Electrons (planes, H, W) of an échelle frame: ``setup.orders`` orders dispersed along
    the rows and stacked across them, spaced as 1/m^2 (wider apart in the blue), curved and
    tilted. Order m covers lambda_c = K/m over one free spectral range lambda_c/m, under the
    blaze sinc^2(pi m (1 - lambda/lambda_c)). A star's orders are seeing-wide traces; a lamp's
    (thorium-argon, tungsten flat) fill the short slit, so their lines are short dashes."""
    h, w = shape
    n = setup.orders
    first_order = int(rng.integers(3, 6)) if n <= 10 else int(rng.integers(30, 90))
    m = np.arange(first_order, first_order + n)
    centre_nm = float(rng.uniform(500, 650))
    k_const = centre_nm * (first_order + n / 2)
    spacing = 1.0 / m.astype(float) ** 2
    spacing = np.cumsum(spacing) - spacing[0]
    margin = float(rng.uniform(0.02, 0.1)) * h
    rows_c = margin + spacing / max(spacing[-1], 1e-9) * (h - 2 * margin)
    gap = (h - 2 * margin) / max(n - 1, 1)
    curvature = float(rng.normal(0, 0.6)) * gap / (w / 2) ** 2
    tilt = float(rng.normal(0, 0.02))
    lamp = setup.kind != "echelle"
    slit_rows = float(rng.uniform(0.4, 0.8)) * gap if lamp else 0.0
    fwhm = float(loguniform(rng, 1.5, 5.0))
    x = np.arange(w, dtype=np.float64)
    xc = w / 2 + float(rng.normal(0, 0.05)) * w
    temperature = float(rng.uniform(2700, 3300))
    star = SPECTRAL_TYPES[setup.spectral_type if setup.spectral_type is not None
                          else int(rng.integers(0, len(SPECTRAL_TYPES)))]
    lines = LAMPS["Thorium-Argon"]
    overlap = float(rng.uniform(1.0, 1.3))
    level = full_scale_e * float(loguniform(rng, 0.15, 0.9))
    planes = np.zeros((1 if not colour else 3,) + shape, dtype=np.float32)
    for order, centre_row in zip(m, rows_c):
        lambda_c = k_const / order
        wavelength = lambda_c + (x - xc) / w * lambda_c / order * overlap
        blaze = np.sinc(order * (1.0 - wavelength / lambda_c)) ** 2
        qe = detector_qe(wavelength)
        if setup.kind == "echelle_arc":
            fwhm_nm = 2.5 * lambda_c / order * overlap / w
            flux = emission_lines(wavelength, [(c, i) for c, i in lines
                                               if abs(c - lambda_c) < lambda_c / order], fwhm_nm)
        elif setup.kind == "echelle_flat":
            flux = planck(wavelength, temperature)
        else:
            flux = stellar_spectrum(wavelength, rng, star)
        spectrum = (flux * blaze * qe).astype(np.float32)
        centre = centre_row + curvature * (x - xc) ** 2 + tilt * (x - xc)
        reach = (slit_rows / 2 if lamp else 0) + 3 * fwhm + 2
        low = int(max(0, np.floor(centre.min() - reach)))
        high = int(min(h, np.ceil(centre.max() + reach) + 1))
        if low >= high:
            continue
        rows = np.arange(low, high, dtype=np.float64)[:, None]
        offset = rows - centre[None, :]
        if lamp:
            edge = max(0.7, fwhm / 2)
            profile = smoothstep(offset, -slit_rows / 2 - edge, -slit_rows / 2 + edge) * (
                1 - smoothstep(offset, slit_rows / 2 - edge, slit_rows / 2 + edge))
        else:
            alpha = fwhm / 1.2
            profile = (1 + (offset / alpha) ** 2) ** -2.5
        values = (profile * spectrum[None, :]).astype(np.float32)
        if colour:
            response = channel_response(wavelength)
            for c in range(3):
                planes[c, low:high] += values * response[c][None, :].astype(np.float32)
        else:
            planes[0, low:high] += values
    peak = float(planes.max())
    if peak > 0:
        planes *= np.float32(level / peak)
    # Scattered light fills the gaps between the orders faintly.
    planes += np.float32(float(rng.uniform(0.002, 0.02)) * float(planes.mean()))
    return planes


def spectroheliograph_planes(rng: np.random.Generator, shape: tuple[int, int],
                             full_scale_e: float, colour: bool) -> np.ndarray:
    """Electrons (planes, H, W) of one spectroheliograph frame, dispersed along the rows (W
    columns of wavelength), the slit along the columns (H rows).

    The slit lies on the solar disc as a chord at distance ``d`` from the centre; along it the
    continuum follows the limb darkening I = 1 - u(1 - mu) - v(1 - mu)^2 and drops to scattered
    light beyond the limb. The window (0.002..0.02 nm/px) is centred near a strong line of
    :data:`SOLAR_LINES`, with its neighbours and weak photospheric lines; every line bends
    along the slit with the smile (its ends shifted by up to a third of the window). Sunspots
    dim the continuum over a few rows and deepen the lines; plage brightens a line core; dust
    on the slit leaves thin dark lines along the dispersion.
    """
    h, w = shape
    rows = np.arange(h, dtype=np.float64)
    columns = np.arange(w, dtype=np.float64)
    # Where the slit lies on the disc: the disc's radius in rows, the chord's offset.
    radius = float(loguniform(rng, 0.35, 2.0)) * h
    chord = float(rng.uniform(0.0, 0.9))
    centre_row = h / 2 + float(rng.normal(0, 0.3)) * h
    along = (rows - centre_row) / radius
    mu = np.sqrt(np.clip(1.0 - chord ** 2 - along ** 2, 0.0, None))
    u, v = float(rng.uniform(0.75, 0.95)), float(rng.uniform(-0.25, -0.15))
    inside = smoothstep(mu, 0.0, 0.02)
    continuum = inside * (1 - u * (1 - mu) - v * (1 - mu) ** 2) + 0.01 * (1 - inside)
    for _ in range(int(rng.poisson(0.8))):  # sunspots
        middle, half = float(rng.uniform(0, h)), float(loguniform(rng, 1.0, 0.03 * h + 2))
        continuum *= 1 - 0.7 * np.exp(-0.5 * ((rows - middle) / half) ** 2)
    step = float(loguniform(rng, 0.002, 0.02))  # nm per px
    centre_nm, wing = SOLAR_LINES[int(rng.integers(0, len(SOLAR_LINES)))]
    centre_nm += float(rng.normal(0, 0.15)) * step * w
    wavelength = centre_nm + (columns - w / 2) * step
    smile = float(rng.uniform(-0.35, 0.35)) * w / max(h / 2, 1) ** 2
    bend = smile * (rows - h / 2) ** 2  # px, per row
    lines = [(c, min(0.95, 0.2 + 2 * width), width) for c, width in SOLAR_LINES
             if abs(c - centre_nm) < step * w]
    lines += [(float(c), float(rng.uniform(0.05, 0.5)), float(loguniform(rng, 0.003, 0.015)))
              for c in rng.uniform(wavelength[0], wavelength[-1], int(rng.integers(2, 12)))]
    plage = np.exp(0.3 * np.convolve(rng.standard_normal(h), np.ones(15) / 15, mode="same"))
    level = full_scale_e * float(rng.uniform(0.3, 0.9))
    planes = np.zeros((3 if colour else 1,) + shape, dtype=np.float32)
    response = channel_response(wavelength) if colour else np.ones((1, w))
    for top, bottom in _row_blocks(h, w):
        shifted = wavelength[None, :] - (bend[top:bottom, None] * step)
        transmission = np.ones((bottom - top, w))
        for centre, depth, width in lines:
            core = depth / np.where(width > 0.05, plage[top:bottom, None], 1.0)
            transmission *= 1 - np.clip(core, 0, 0.97) * np.exp(
                -0.5 * ((shifted - centre) / max(width, 0.6 * step)) ** 2)
        block = transmission * continuum[top:bottom, None] * level
        for c in range(planes.shape[0]):
            planes[c, top:bottom] = (block * response[c][None, :]).astype(np.float32)
    for dust in rng.uniform(0, h, int(rng.poisson(2))):
        planes *= (1 - 0.4 * np.exp(-0.5 * ((rows - dust) / 0.8) ** 2))[None, :, None].astype(
            np.float32)
    return planes


def raster_planes(rng: np.random.Generator, shape: tuple[int, int],
                  full_scale_e: float) -> np.ndarray:
    """Electrons (1, H, W) of a space ultraviolet spectrograph's readout (IRIS, SUMER, EIS
    style): 1..4 spectral windows side by side along the rows, each holding 1..3 emission
    lines 1.5..4 px wide. Along the slit (the rows) the solar structures it crosses make each
    line's brightness vary by a factor of ten and its Doppler shift by a few pixels; a weak
    continuum sits under some windows; dark fiducial marks cross the slit in 40 %."""
    h, w = shape
    count = int(rng.integers(1, 5))
    cuts = np.sort(rng.uniform(0, w, count - 1)).astype(int)
    edges = np.concatenate([[0], cuts, [w]])
    rows = np.arange(h, dtype=np.float64)

    def along_slit(slope: float) -> np.ndarray:
        walk = np.cumsum(rng.standard_normal(h))
        smooth = np.convolve(walk, np.ones(9) / 9, mode="same")
        return (smooth - smooth.mean()) / (smooth.std() + 1e-9) * slope

    structure = np.exp(along_slit(1.0))
    planes = np.zeros((1,) + shape, dtype=np.float32)
    for left, right in zip(edges[:-1], edges[1:]):
        gap = int(rng.integers(0, 6)) if right - left > 20 else 0
        x = np.arange(left + gap, right, dtype=np.float64)
        if x.size == 0:
            continue
        window = np.zeros((h, x.size))
        for _ in range(int(rng.integers(1, 4))):
            centre = float(rng.uniform(x[0], x[-1] + 1))
            width = float(rng.uniform(1.5, 4.0)) / 2.3548
            shift = along_slit(float(rng.uniform(0.3, 3.0)))
            bright = structure ** float(rng.uniform(0.5, 1.5)) * np.exp(along_slit(0.5))
            window += (bright[:, None] * float(loguniform(rng, 0.1, 1.0))
                       * np.exp(-0.5 * ((x[None, :] - centre - shift[:, None]) / width) ** 2))
        if rng.random() < 0.4:
            window += float(rng.uniform(0.005, 0.05)) * structure[:, None]
        planes[0, :, left + gap:right] = window.astype(np.float32)
    if rng.random() < 0.4:
        for mark in rng.uniform(0.1, 0.9, 2) * h:
            planes[0] *= (1 - 0.8 * np.exp(-0.5 * ((rows - mark) / 1.2) ** 2))[:, None].astype(
                np.float32)
    peak = float(planes.max())
    if peak > 0:
        planes *= np.float32(full_scale_e * float(loguniform(rng, 0.1, 0.8)) / peak)
    return planes
