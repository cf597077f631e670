"""Long-slit spectra as a Baader DADOS (or an observatory spectrograph) records them.

The slit is imaged across the spatial axis as a band of illuminated rows; the grating disperses
wavelength along the other axis (mostly horizontal). Frames:

* ``star``: one or a few stellar traces (a few to tens of pixels wide, slightly tilted and
  curved) carrying a continuum (Planck x detector QE) with absorption lines of the star's
  spectral type and telluric bands, over a faint sky with light-pollution emission lines;
* ``arc``: a calibration lamp (neon, argon-neon, mercury-argon, helium, energy-saving lamp):
  many narrow emission lines across the whole slit length, curved by the spectrograph's smile;
* ``nebula``: extended emission lines (H-alpha, [O III], H-beta ...) along part of the slit;
* ``solar``: daylight through the slit, a continuum with Fraunhofer lines along the whole slit;
* ``lampflat`` (a flat, not a spectrum class): a tungsten-lamp continuum filling the slit.

Wavelengths are in nanometres. :func:`spectrum_scene` adds the electrons to a canvas; colour
cameras see the dispersion as a gradual change of colour along the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sample.physics import Canvas, loguniform, smoothstep

KINDS = ("star", "arc", "nebula", "solar")
KIND_WEIGHTS = (0.52, 0.3, 0.08, 0.1)

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


def trace_profile(shape: tuple[int, int], rng: np.random.Generator, row: float,
                  width: float) -> np.ndarray:
    """Spatial profile of a star along the slit: Moffat-like core of FWHM ``width`` rows
    (seeing, guiding drift), centred on a row that drifts linearly and quadratically along the
    dispersion axis (misalignment, atmospheric dispersion). Shape (H, W), rows sum to ~1."""
    h, w = shape
    xs = np.arange(w, dtype=np.float64)[None, :] / max(w, 1) - 0.5
    centre = row + float(rng.normal(0, 0.01)) * w * xs + float(rng.normal(0, 4)) * xs * xs
    rows = np.arange(h, dtype=np.float64)[:, None]
    if rng.random() < 0.2:  # trailed along the slit to widen the spectrum
        half = width * float(rng.uniform(1.5, 5))
        profile = smoothstep(rows, centre - half - 1.5, centre - half + 1.5) * (
            1 - smoothstep(rows, centre + half - 1.5, centre + half + 1.5))
        return profile / (2 * half)
    alpha = width / 1.2
    profile = (1 + ((rows - centre) / alpha) ** 2) ** -2.5
    return profile / (alpha * 1.18)


@dataclass(frozen=True)
class SlitSetup:
    """What the observer set up for one long-slit frame (decided before exposing, so headers
    and file names can say it): frame ``kind``, wavelength solution, slit width in microns,
    dispersion along the rows (``vertical``), lamps switched on, the star's spectral type
    (index into :data:`SPECTRAL_TYPES`) and the OBJECT name."""

    kind: str
    dispersion: Dispersion
    slit_um: int
    vertical: bool
    lamps: tuple[str, ...]
    spectral_type: int | None
    object_name: str

    @property
    def grating(self) -> str:
        return "900 l/mm" if abs(self.dispersion.step) < 0.12 else "200 l/mm"


def draw_setup(rng: np.random.Generator, kind: str, shape: tuple[int, int],
               vertical: bool) -> SlitSetup:
    """Grating, slit, lamps and target for a frame of ``kind`` (star, arc, nebula, solar,
    lampflat) on a sensor of ``shape``."""
    length = shape[0] if vertical else shape[1]
    dispersion = draw_dispersion(rng, length)
    lamps: tuple[str, ...] = ()
    spectral_type = None
    if kind == "arc":
        lamps, names = ARC_SETUPS[int(rng.integers(0, len(ARC_SETUPS)))]
        name = str(rng.choice(names))
        dispersion = _centre_on_lines(dispersion, lamps, rng)
    elif kind == "lampflat":
        lamps = ("Tungsten",)
        name = str(rng.choice(["Flat", "LAMPFLAT", "Tungsten", "halogen flat", "W lamp"]))
    elif kind == "solar":
        spectral_type = 3
        name = str(rng.choice(["Sun", "Daylight", "sky", "Solar spectrum"]))
    elif kind == "nebula":
        name = str(rng.choice(["M57", "M42", "NGC 7027", "NGC 6543", "M27"]))
    else:
        spectral_type = int(rng.integers(0, len(SPECTRAL_TYPES)))
        name = str(rng.choice(STAR_NAMES[SPECTRAL_TYPES[spectral_type][0]]))
    return SlitSetup(kind=kind, dispersion=dispersion,
                     slit_um=int(rng.choice([25, 35, 50])), vertical=vertical, lamps=lamps,
                     spectral_type=spectral_type, object_name=name)


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
    """Fill ``canvas`` with the long-slit frame described by ``setup``.

    Light that fills the slit (lamps, sky, daylight, nebulae) is spread over the slit rows with
    the slit image's curvature; stellar traces are narrow enough to ignore it.
    """
    h, w = canvas.shape
    shape = (w, h) if setup.vertical else (h, w)
    oversample = 4
    wavelength = setup.dispersion.wavelengths(oversample)
    slit_px = float(rng.uniform(1.6, 4.5)) * setup.slit_um / 35.0
    line_fwhm_nm = slit_px * abs(setup.dispersion.step)
    slit, first, last = slit_band(rng, shape[0])
    qe = detector_qe(wavelength)
    filling = np.zeros_like(wavelength)        # light filling the slit, e- per row
    extended: list[tuple[np.ndarray, np.ndarray]] = []  # (spectrum, profile along the slit)
    traces: list[tuple[np.ndarray, np.ndarray]] = []    # (spectrum, (H, W) spatial profile)
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
                             last, full_scale_e)
    channels = [np.ones_like(wavelength)] if canvas.mode == "mono" else list(
        channel_response(wavelength))
    planes = np.zeros((len(channels),) + shape, dtype=np.float32)
    curvature, tilt = float(rng.normal(0, 2e-4)), float(rng.normal(0, 0.01))
    centre_row = 0.5 * (first + last)
    for c, channel in enumerate(channels):
        planes[c] += (resample_along_slit(filling * channel, oversample, shape, curvature, tilt,
                                          centre_row) * slit[:, None]).astype(np.float32)
        for spectrum, extent in extended:
            planes[c] += (resample_along_slit(spectrum * channel, oversample, shape, curvature,
                                              tilt, centre_row)
                          * (extent * slit)[:, None]).astype(np.float32)
        for spectrum, spatial in traces:
            binned = (spectrum * channel).reshape(-1, oversample).mean(axis=1)
            planes[c] += (spatial * binned[None, :]).astype(np.float32)
    if setup.vertical:
        planes = np.ascontiguousarray(np.transpose(planes, (0, 2, 1)))
    if canvas.mode == "mono":
        canvas.add(planes[0])
    else:
        canvas.add_planes(planes)


def _add_star_traces(traces: list, rng: np.random.Generator, spectral_type: int,
                     shape: tuple[int, int], wavelength: np.ndarray, qe: np.ndarray,
                     first: float, last: float, full_scale_e: float) -> None:
    """Append the target star's trace and sometimes fainter neighbours on the slit."""
    count = 1 + int(rng.poisson(0.4))
    for n in range(count):
        row = float(rng.uniform(first + 3, max(first + 4, last - 3)))
        width = float(loguniform(rng, 2.0, 14.0))
        star_type = spectral_type if n == 0 else int(rng.integers(0, len(SPECTRAL_TYPES)))
        spectrum = stellar_spectrum(wavelength, rng, SPECTRAL_TYPES[star_type]) * qe
        peak = full_scale_e * loguniform(rng, 0.1, 1.5) * (
            1.0 if n == 0 else loguniform(rng, 0.01, 0.3))
        spatial = trace_profile(shape, rng, row, width)
        traces.append((spectrum / spectrum.max() * peak * width, spatial))
