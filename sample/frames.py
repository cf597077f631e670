"""One sample frame from plan to pixels: who took it, how, and what the sensor recorded.

:func:`plan_frame` decides everything a capture program knows before the shutter opens (program,
camera, settings, frame size, file format, optics, filter, target, date, header with its
defects, file name); :func:`render_frame` produces the pixels; :func:`make_frame` does both
from a seed. Planning is cheap, so header and format statistics can be studied on thousands of
plans without drawing a pixel.

Per class, the physics is: ``bias`` a zero or shortest exposure (pedestal, read noise, column
pattern, row banding); ``darks`` 1..900 s of dark current, hot pixels and amp glow;
``flats`` panel, sky, dome or slit-lamp illumination with vignetting and dust shadows at
20..60 % of full scale; ``deep_sky`` sky, stars and a target through the same optics;
``planetary`` a planet, the Moon or the Sun on a dark sky; ``spectrum`` long-slit
spectra of stars, arc lamps, nebulae and daylight.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from sample import deepsky, planets, spectra
from sample.cameras import CAMERAS, Camera, Settings, draw_settings, read_out
from sample.headers import (IMAGING_TELESCOPES, OBSERVATORY_TELESCOPES,
                                     PLANETARY_TELESCOPES, PROGRAMS, SITES, SPECTRO_TELESCOPES,
                                     Facts, Program, Telescope, apply_defects, build_header,
                                     file_name, safe_file_name)
from sample.physics import (Canvas, dust_shadows, gradient, loguniform,
                                     render_sources, vignetting)
from sample.writers import (FileFormat, choose_format, encode, format_of_family,
                                     write_frame)

#: The sample's classes, in the project's index order; also the folder names.
CLASSES = ("bias", "darks", "flats", "deep_sky", "planetary", "spectrum")

#: How often each capture program wrote a frame of each class (relative weights).
PROGRAM_WEIGHTS: dict[str, dict[str, float]] = {
    #             maxim sgp  nina  apt  sharpcap ekos asiair firecapture observatory
    "bias":           dict(zip(PROGRAMS, (12, 9, 18, 8, 9, 9, 11, 8, 16))),
    "darks":          dict(zip(PROGRAMS, (12, 9, 18, 8, 9, 9, 11, 8, 16))),
    "flats":          dict(zip(PROGRAMS, (12, 9, 18, 8, 9, 9, 11, 7, 17))),
    "deep_sky":       dict(zip(PROGRAMS, (12, 11, 22, 10, 10, 12, 14, 1, 8))),
    "planetary":      dict(zip(PROGRAMS, (2, 0, 3, 3, 33, 4, 6, 45, 4))),
    "spectrum": dict(zip(PROGRAMS, (18, 5, 15, 5, 12, 8, 5, 5, 27))),
}

#: Cameras each program drives.
PROGRAM_CAMERAS: dict[str, tuple[str, ...]] = {
    "maxim": ("SBIG ST-8300M", "Atik 414EX", "SX Trius SX-694", "ZWO ASI1600MM Pro",
              "QHY268M", "Canon EOS 600D (modified)"),
    "sgp": ("ZWO ASI1600MM Pro", "ZWO ASI2600MM Pro", "QHY268M", "ZWO ASI294MC Pro",
            "Atik 414EX", "SX Trius SX-694"),
    "nina": ("ZWO ASI2600MM Pro", "ZWO ASI2600MC Pro", "ZWO ASI294MC Pro", "ZWO ASI1600MM Pro",
             "QHY268M", "Canon EOS 600D (modified)", "Atik 414EX"),
    "apt": ("Canon EOS 600D (modified)", "ZWO ASI294MC Pro", "ZWO ASI1600MM Pro",
            "ZWO ASI2600MC Pro"),
    "sharpcap": ("ZWO ASI224MC", "ZWO ASI290MM Mini", "ZWO ASI462MC", "ZWO ASI294MC Pro",
                 "QHY5III462C", "ZWO ASI1600MM Pro"),
    "ekos": ("ZWO ASI2600MM Pro", "ZWO ASI294MC Pro", "QHY268M", "Canon EOS 600D (modified)",
             "SX Trius SX-694", "ZWO ASI224MC"),
    "asiair": ("ZWO ASI2600MC Pro", "ZWO ASI2600MM Pro", "ZWO ASI294MC Pro", "ZWO ASI1600MM Pro",
               "ZWO ASI224MC", "ZWO ASI462MC"),
    "firecapture": ("ZWO ASI224MC", "ZWO ASI290MM Mini", "ZWO ASI462MC", "QHY5III462C",
                    "ZWO ASI1600MM Pro"),
    "observatory": ("e2v CCD42-40", "SITe SI-424A", "Fairchild CCD 3041"),
}

#: Frame sizes (rows, columns) shared by all classes, with per-class weights: sizes overlap
#: between classes so that size alone never gives a frame's class away.
SHAPES = ((240, 320), (288, 352), (300, 400), (384, 512), (400, 600), (480, 640), (512, 512),
          (520, 696), (540, 720), (600, 800), (256, 256), (480, 480), (600, 600), (254, 1024),
          (350, 1056), (300, 1000), (768, 1024), (1024, 1024))
SHAPE_WEIGHTS = {
    "bias": (2, 1, 3, 4, 4, 6, 5, 4, 3, 6, 2, 2, 3, 2, 2, 1, 1, 0.5),
    "darks": (2, 1, 3, 4, 4, 6, 5, 4, 3, 6, 2, 2, 3, 2, 2, 1, 1, 0.5),
    "flats": (2, 1, 3, 4, 4, 6, 5, 4, 3, 6, 2, 2, 3, 2, 2, 1, 1, 0.5),
    "deep_sky": (1, 1, 2, 4, 4, 6, 5, 5, 4, 7, 2, 2, 3, 1, 1, 1, 1.5, 0.7),
    "planetary": (8, 4, 6, 5, 3, 8, 5, 2, 2, 3, 3, 4, 2, 0.5, 0.5, 0.5, 0.7, 0.3),
    "spectrum": (1, 1, 2, 3, 4, 5, 3, 3, 3, 5, 1, 1, 1, 5, 5, 5, 1, 0.3),
}

#: Filter transmission in R, G, B and whether it is narrowband.
FILTERS: dict[str, tuple[tuple[float, float, float], bool]] = {
    "L": ((1, 1, 1), False), "R": ((1, 0.03, 0), False), "G": ((0.03, 1, 0.03), False),
    "B": ((0, 0.03, 1), False), "Ha": ((0.3, 0, 0), True), "OIII": ((0, 0.25, 0.2), True),
    "SII": ((0.25, 0, 0), True), "IR685": ((0.5, 0.02, 0.01), False),
    "CH4": ((0.08, 0, 0), True), "V": ((0.2, 1, 0.1), False), "I": ((0.6, 0, 0), False),
    "L-eXtreme": ((0.35, 0.25, 0.05), True), "Baader Solar Continuum": ((0.02, 0.5, 0.02), False),
}

DARK_EXPOSURES = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 480, 600,
                  900)
LIGHT_EXPOSURES = (10, 15, 20, 30, 60, 90, 120, 180, 240, 300, 420, 600)


@dataclass(frozen=True)
class FramePlan:
    """Everything decided before exposing one frame.

    ``subtype``: what kind of frame within the class (``short``/``long`` dark, ``panel``/
    ``sky``/``dome``/``lampflat`` flat, deep-sky target kind, planetary body, slit frame kind).
    ``mode``: how colour is recorded (``mono``, ``bayer`` raw mosaic, ``rgb`` debayered).
    ``header`` is None for TIFF. ``defects``: header defects applied (see
    :func:`sample.headers.apply_defects`). ``slit``: the spectrograph set-up.
    """

    class_name: str
    index: int
    subtype: str
    kind: str
    program: Program
    camera: Camera
    settings: Settings
    shape: tuple[int, int]
    fmt: FileFormat
    mode: str
    filter_name: str | None
    telescope: Telescope
    target: str | None
    header: fits.Header | None
    defects: tuple[str, ...]
    file_name: str
    software: str | None = None
    slit: spectra.SlitSetup | None = None

    @property
    def full_scale(self) -> int:
        """Largest delivered ADU value (255, 2**bits - 1, or 65535)."""
        return self.settings.output_max(self.camera)


@dataclass
class Frame:
    """A rendered frame: its plan, delivered ADU (int32) and the array as stored on disk."""

    plan: FramePlan
    adu: np.ndarray
    data: np.ndarray = field(repr=False)

    @property
    def header(self) -> fits.Header | None:
        return self.plan.header

    def write(self, directory: Path, name: str | None = None) -> Path:
        """Write to ``directory`` under ``name`` (default: the plan's file name)."""
        return write_frame(Path(directory) / (name or self.plan.file_name), self.data,
                           self.plan.header, self.plan.fmt, self.plan.software,
                           dither_seed=1 + self.plan.index % 9999)


def frame_rng(seed: int, class_name: str, index: int, stream: int = 0) -> np.random.Generator:
    """The random generator of frame ``index`` of ``class_name``: independent of every other
    frame, so a larger ``--per-class`` leaves earlier frames untouched. ``stream`` separates
    the labelled tree (0) from the unlabelled "new night" (1)."""
    entropy = [int(seed), int(stream), CLASSES.index(class_name), int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def draw_shape(rng: np.random.Generator, class_name: str) -> tuple[int, int]:
    """Frame size: a common sensor or region-of-interest size, or (15 %) an arbitrary ROI."""
    if rng.random() < 0.15:
        height = 8 * int(rng.integers(25, 101))
        width = int(np.clip(8 * round(height * loguniform(rng, 0.75, 2.6) / 8), 200, 1088))
        return height, width
    weights = np.asarray(SHAPE_WEIGHTS[class_name], dtype=float)
    return SHAPES[int(rng.choice(len(SHAPES), p=weights / weights.sum()))]


def draw_subtype(rng: np.random.Generator, class_name: str, program: str) -> tuple[str, str]:
    """(subtype, kind) of a frame: see :class:`FramePlan`."""
    if class_name == "bias":
        return "bias", "bias"
    if class_name == "darks":
        return ("short" if rng.random() < 0.22 else "long"), "dark"
    if class_name == "flats":
        options = ({"dome": 40, "sky": 25, "lampflat": 35} if program == "observatory"
                   else {"panel": 55, "sky": 28, "dome": 8, "lampflat": 9})
        subtype = _pick(rng, options)
        return subtype, "lampflat" if subtype == "lampflat" else "flat"
    if class_name == "deep_sky":
        return _pick(rng, {"galaxy": 30, "nebula": 35, "cluster": 15, "field": 20}), "light"
    if class_name == "planetary":
        body = planets.BODIES[int(rng.choice(len(planets.BODIES), p=planets.BODY_WEIGHTS))]
        return body, "light"
    kind = spectra.KINDS[int(rng.choice(len(spectra.KINDS), p=spectra.KIND_WEIGHTS))]
    return kind, "arc" if kind == "arc" else "light"


def draw_exposure(rng: np.random.Generator, class_name: str, subtype: str, camera: Camera,
                  program: str, filter_name: str | None) -> float:
    """Exposure time in seconds for a frame of ``class_name``/``subtype``."""
    if class_name == "bias":
        if program == "observatory" or rng.random() < 0.35:
            return 0.0
        return camera.min_exposure_s
    if class_name == "darks":
        choices = [t for t in DARK_EXPOSURES if (t <= 5) == (subtype == "short")]
        return float(rng.choice(choices))
    if class_name == "flats":
        low, high = {"panel": (0.001, 3.0), "sky": (0.3, 15.0), "dome": (1.0, 30.0),
                     "lampflat": (1.0, 60.0)}[subtype]
        return round(float(loguniform(rng, low, high)), 4)
    if class_name == "deep_sky":
        if filter_name and FILTERS.get(filter_name, ((1, 1, 1), False))[1]:
            return float(rng.choice([180, 300, 600, 900, 1200]))
        return float(rng.choice(LIGHT_EXPOSURES))
    if class_name == "planetary":
        low, high = {"sun": (1e-4, 5e-3), "sun_halpha": (1e-3, 2e-2),
                     "moon": (1e-3, 3e-2)}.get(subtype, (3e-3, 5e-2))
        return round(float(loguniform(rng, low, high)), 6)
    low, high = {"star": (5.0, 900.0), "arc": (0.5, 60.0), "nebula": (300.0, 1800.0),
                 "solar": (0.005, 2.0)}[subtype]
    return round(float(loguniform(rng, low, high)), 3)


def draw_filter(rng: np.random.Generator, class_name: str, subtype: str, camera: Camera,
                program: str) -> str | None:
    """The filter in the light path (or the filter wheel's position for darks)."""
    if program == "observatory":
        return str(rng.choice(["B", "V", "R", "I", "clear", "OPEN"])) if rng.random() < 0.7 \
            else None
    if class_name == "spectrum":
        return str(rng.choice(["Clear", "UV/IR Cut"])) if rng.random() < 0.2 else None
    if class_name == "planetary":
        if subtype == "sun":
            return "Baader Solar Continuum" if rng.random() < 0.5 else None
        if subtype == "sun_halpha":
            return "Ha 0.5A"
        if camera.is_colour:
            return "IR-Cut" if rng.random() < 0.4 else None
        return str(rng.choice(["R", "G", "B", "IR685", "L", "CH4"]))
    if camera.is_colour:
        return str(rng.choice(["UV/IR Cut", "L-eXtreme", "L-Pro"])) if rng.random() < 0.5 \
            else None
    if class_name in ("bias", "darks") and rng.random() < 0.4:
        return "Dark" if rng.random() < 0.5 else None
    names = ["L", "R", "G", "B", "Ha", "OIII", "SII"]
    return names[int(rng.choice(len(names), p=[0.3, 0.1, 0.1, 0.1, 0.2, 0.12, 0.08]))]


def draw_eight_bit(rng: np.random.Generator, class_name: str, camera: Camera,
                   program: str) -> bool:
    """Whether the frame was read in a planetary camera's 8-bit high-speed mode."""
    if not camera.eight_bit_mode:
        return False
    if class_name == "planetary":
        return bool(rng.random() < 0.7)
    return bool(rng.random() < (0.4 if program in ("firecapture", "sharpcap") else 0.1))


def draw_telescope(rng: np.random.Generator, class_name: str, subtype: str,
                   program: str) -> Telescope:
    if program == "observatory":
        pool = OBSERVATORY_TELESCOPES
    elif class_name == "planetary":
        pool = PLANETARY_TELESCOPES[4:6] if subtype == "sun_halpha" else PLANETARY_TELESCOPES
    elif class_name == "spectrum":
        pool = SPECTRO_TELESCOPES
    else:
        pool = IMAGING_TELESCOPES
    return pool[int(rng.integers(0, len(pool)))]


def draw_target(rng: np.random.Generator, class_name: str, subtype: str,
                slit: spectra.SlitSetup | None) -> str:
    """OBJECT of the frame, or of the sequence a calibration frame belongs to."""
    if slit is not None:
        return slit.object_name
    if class_name == "planetary":
        return str(rng.choice(planets.BODY_NAMES[subtype]))
    kind = subtype if class_name == "deep_sky" else str(rng.choice(list(deepsky.TARGETS)))
    return str(rng.choice(deepsky.TARGETS[kind]))


def draw_date(rng: np.random.Generator, daytime: bool) -> dt.datetime:
    """UTC start of exposure between 2016 and 2025, at night or (solar work) by day."""
    day = dt.datetime(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 3600)))
    hour = rng.uniform(8, 16) if daytime else (rng.uniform(19, 29) % 24)
    return day + dt.timedelta(hours=float(hour))


def plan_frame(class_name: str, index: int, rng: np.random.Generator, *,
               camera: str | None = None, program: str | None = None,
               family: str | None = None, subtype: str | None = None) -> FramePlan:
    """Decide everything about frame ``index`` of ``class_name`` except its pixels.

    Keyword arguments force a choice: ``camera`` (a :data:`~sample.cameras.CAMERAS`
    name), ``program`` (a :data:`~sample.headers.PROGRAMS` name), ``family`` (a
    :data:`~sample.writers.FAMILIES` name) and ``subtype``.
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    program_name = program or _pick(rng, PROGRAM_WEIGHTS[class_name])
    prog = PROGRAMS[program_name]
    cam = CAMERAS[camera] if camera else CAMERAS[str(rng.choice(PROGRAM_CAMERAS[program_name]))]
    drawn_subtype, kind = draw_subtype(rng, class_name, program_name)
    if subtype is not None:
        drawn_subtype = subtype
        kind = {"arc": "arc", "lampflat": "lampflat"}.get(subtype, kind)
    filter_name = draw_filter(rng, class_name, drawn_subtype, cam, program_name)
    exptime = draw_exposure(rng, class_name, drawn_subtype, cam, program_name, filter_name)
    eight_bit = draw_eight_bit(rng, class_name, cam, program_name)
    shape = draw_shape(rng, class_name)
    binning = 2 if (cam.kind != "dslr" and rng.random() < (
        0.4 if program_name == "observatory" else 0.1)) else 1
    settings = draw_settings(cam, rng, exptime, high_gain=class_name == "planetary",
                             eight_bit=eight_bit, binning=binning, shape=shape)
    extensions = prog.extensions
    fits_extension = str(rng.choice([e for e, _ in extensions],
                                    p=np.asarray([w for _, w in extensions]) / sum(
                                        w for _, w in extensions)))
    fmt = (format_of_family(family, rng, fits_extension) if family
           else choose_format(rng, class_name, program_name, fits_extension, eight_bit))
    mode = ("rgb" if fmt.rgb else "bayer") if cam.is_colour else "mono"
    slit = None
    if class_name == "spectrum" or drawn_subtype == "lampflat":
        slit = spectra.draw_setup(rng, drawn_subtype, shape, vertical=bool(rng.random() < 0.15))
    telescope = draw_telescope(rng, class_name, drawn_subtype, program_name)
    target = draw_target(rng, class_name, drawn_subtype, slit)
    extra: dict = {"rgb": fmt.rgb}
    if slit is not None:
        extra.update(grating=slit.grating, slit_um=slit.slit_um, vertical=slit.vertical,
                     lamp="+".join(slit.lamps) or None)
    facts = Facts(class_name=class_name, kind=kind, index=index, camera=cam, settings=settings,
                  width=shape[1] + cam.overscan_px, height=shape[0], telescope=telescope,
                  filter_name=filter_name, target=target,
                  ra_deg=float(rng.uniform(0, 360)), dec_deg=float(rng.uniform(-60, 85)),
                  date_obs=draw_date(rng, drawn_subtype in ("sun", "sun_halpha", "solar")),
                  site=SITES[int(rng.integers(0, len(SITES)))], extra=extra)
    header, defects = None, ()
    if fmt.container != "tiff":
        header = build_header(prog, facts, rng)
        defects = tuple(apply_defects(header, facts, prog, rng))
    software = {"sharpcap": "SharpCap", "firecapture": "FireCapture v2.7"}.get(program_name)
    if fmt.container == "tiff" and software is None:
        software = rng.choice([None, "DeepSkyStacker", "Siril", "PixInsight", "AutoStakkert!"])
        software = None if software is None else str(software)
    name = safe_file_name(file_name(prog, facts, rng)) + fmt.extension
    return FramePlan(class_name=class_name, index=index, subtype=drawn_subtype, kind=kind,
                     program=prog, camera=cam, settings=settings, shape=shape, fmt=fmt,
                     mode=mode, filter_name=filter_name, telescope=telescope, target=target,
                     header=header, defects=defects, file_name=name, software=software,
                     slit=slit)


def optical_response(shape: tuple[int, int], rng: np.random.Generator,
                     telescope: Telescope) -> np.ndarray:
    """Relative throughput of the optics over the frame: vignetting and dust shadows, whose
    central hole follows the telescope's secondary obstruction."""
    corner_loss = float(loguniform(rng, 0.03, 0.5))
    obstruction = float(rng.uniform(0.25, 0.45)) if telescope.reflector else 0.0
    dust = dust_shadows(shape, rng, int(rng.poisson(4)), obstruction=obstruction)
    return vignetting(shape, rng, corner_loss) * dust


def _fill_flat(canvas: Canvas, plan: FramePlan, rng: np.random.Generator,
               full_scale_e: float) -> None:
    """Flat-field illumination at 20..60 % of full scale."""
    if plan.subtype == "lampflat":
        spectra.spectrum_scene(canvas, rng, plan.slit, full_scale_e=full_scale_e,
                               exptime_s=plan.settings.exptime_s)
        return
    colour, slope = {"panel": ((0.9, 1.0, 1.25), 0.03), "sky": ((0.75, 1.0, 1.45), 0.08),
                     "dome": ((1.5, 1.0, 0.55), 0.1)}[plan.subtype]
    illumination = gradient(canvas.shape, rng, float(rng.uniform(0, slope)))
    canvas.add(illumination, colour)
    if plan.subtype == "sky" and rng.random() < 0.25:  # stars shine through twilight
        h, w = canvas.shape
        n = int(rng.integers(3, 30))
        stars = render_sources(canvas.shape, rng.uniform(0, h, n), rng.uniform(0, w, n),
                               loguniform(rng, 0.05, 2.0, n), float(rng.uniform(1.5, 4.0)))
        canvas.add(stars, (1.1, 1.0, 0.9))
    canvas.multiply(optical_response(canvas.shape, rng, plan.telescope))
    canvas.scale_to(0.5, full_scale_e * float(rng.uniform(0.2, 0.6)))


def _fill_deep_sky(canvas: Canvas, plan: FramePlan, rng: np.random.Generator,
                   full_scale_e: float) -> None:
    """Sky, stars and target, seen through the optics."""
    narrowband = FILTERS.get(plan.filter_name or "", ((1, 1, 1), False))[1]
    rate = loguniform(rng, 0.02, 0.8) if narrowband else loguniform(rng, 0.3, 25.0)
    binned = plan.settings.binning ** 2
    sky_e = float(np.clip(rate * plan.settings.exptime_s * binned, 20.0, 0.3 * full_scale_e))
    scale = 206.265 * plan.camera.pixel_um * plan.settings.binning / plan.telescope.focal_mm
    fwhm = float(np.clip(rng.uniform(1.3, 4.0) / scale, 1.5, 5.0) * rng.uniform(0.95, 1.05))
    deepsky.deep_sky_scene(canvas, rng, plan.subtype, sky_e=sky_e, full_scale_e=full_scale_e,
                           fwhm=fwhm, narrowband=narrowband, reflector=plan.telescope.reflector)
    canvas.multiply(optical_response(canvas.shape, rng, plan.telescope))


def _fill_light_leak(canvas: Canvas, rng: np.random.Generator) -> None:
    """A faint light leak from one edge (loose cap, bright room): 3 % of darks."""
    canvas.add(gradient(canvas.shape, rng, 1.5, curvature=1.0) * np.float32(
        loguniform(rng, 5, 80)))


def render_frame(plan: FramePlan, rng: np.random.Generator) -> np.ndarray:
    """The ADU the driver delivered for ``plan``: int32, (H, W) or (3, H, W) for colour
    formats, plus overscan columns for observatory CCDs."""
    settings, camera = plan.settings, plan.camera
    full_scale_e = settings.full_scale_e(camera)
    filter_rgb = FILTERS.get(plan.filter_name or "", ((1.0, 1.0, 1.0), False))[0]
    canvas = Canvas(plan.shape, plan.mode, camera.bayer or "RGGB", filter_rgb)
    lit = True
    if plan.class_name == "flats":
        _fill_flat(canvas, plan, rng, full_scale_e)
    elif plan.class_name == "deep_sky":
        _fill_deep_sky(canvas, plan, rng, full_scale_e)
    elif plan.class_name == "planetary":
        planets.planetary_scene(canvas, rng, plan.subtype, full_scale_e=full_scale_e,
                                seeing_px=float(rng.uniform(0.5, 2.5)))
    elif plan.class_name == "spectrum":
        spectra.spectrum_scene(canvas, rng, plan.slit, full_scale_e=full_scale_e,
                               exptime_s=settings.exptime_s)
    elif plan.class_name == "darks" and rng.random() < 0.03:
        _fill_light_leak(canvas, rng)
    else:
        lit = False
    planes = 3 if plan.mode == "rgb" else 1
    adu = read_out(camera, settings, canvas.data if lit else None, plan.shape, rng, planes)
    if plan.fmt.rgb and adu.ndim == 2:  # a mono frame saved as a grey RGB image
        adu = np.repeat(adu[None], 3, axis=0)
    return adu


def make_frame(class_name: str, seed: int | np.random.Generator = 0, index: int = 0,
               **force) -> Frame:
    """Plan and render frame ``index`` of ``class_name``.

    ``seed`` is the tree's seed (the frame's generator is derived from it, the class and the
    index, see :func:`frame_rng`) or a generator to use directly. ``force`` passes
    ``camera``, ``program``, ``family`` or ``subtype`` to :func:`plan_frame`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else frame_rng(seed, class_name, index)
    plan = plan_frame(class_name, index, rng, **force)
    adu = render_frame(plan, rng)
    return Frame(plan=plan, adu=adu, data=encode(adu, plan.full_scale, plan.fmt))
