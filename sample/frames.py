"""One sample frame from plan to pixels: who took it, how, and what the sensor recorded.

:func:`plan_frame` decides everything a capture program knows before the shutter opens (camera,
frame geometry, readout, file format, program, settings, optics, filter, target, date, header
with its defects, file name); :func:`render_frame` produces the pixels; :func:`make_frame` does
both from a seed. Planning is cheap, so header and format statistics can be studied on thousands
of plans without drawing a pixel.

What does not define a class is drawn without knowing the class, so that no such property can
give a frame's class away: the camera (from one fleet, :data:`FLEET`), the frame's geometry
(:func:`draw_geometry`: full sensor, binned, trimmed, a region of interest or a software cut-out,
from 64 px to 60 megapixels, saved turned or mirrored), the readout (8-bit mode, bit depth, zero
level) and the file format (encoding, compression, HDU layout). The class then decides the scene,
the exposure, the program that wrote the header (among those that drive the camera) and what the
header says.

Per class, the physics is: ``bias`` a zero or shortest exposure (pedestal, read noise, column
pattern, row banding); ``darks`` 1..900 s of dark current, hot pixels and amp glow;
``flats`` panel, twilight-sky, dome, internal or spectrograph-lamp illumination (a slit or an
échelle's orders) with vignetting and dust shadows at 20..60 % of the range above the zero
level; ``deep_sky`` sky, stars and a target through the same optics; ``planetary`` a planet,
the Moon or the Sun (white light, H-alpha, granulation, extreme ultraviolet) on a dark sky;
``spectrum`` long-slit, échelle and space spectra of stars, arc lamps, nebulae and daylight.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from sample import deepsky, planets, spectra
from sample.cameras import CAMERAS, Camera, Settings, draw_settings, read_out
from sample.headers import (IMAGING_TELESCOPES, OBSERVATORY_TELESCOPES, PLANETARY_TELESCOPES,
                            PROGRAMS, SITES, SOLAR_MISSIONS, SPACE_TELESCOPES,
                            SPECTRO_TELESCOPES, Facts, Program, Telescope, apply_defects,
                            build_header, file_name, safe_file_name)
from sample.physics import (Canvas, dust_shadows, gradient, loguniform, render_sources,
                            vignetting)
from sample.writers import FileFormat, choose_format, encode, format_of_family, write_frame

#: The sample's classes, in the project's index order; also the folder names.
CLASSES = ("bias", "darks", "flats", "deep_sky", "planetary", "spectrum")

#: The camera fleet: the relative share of frames each camera takes, the same for every class.
FLEET: dict[str, float] = {
    "ZWO ASI2600MM Pro": 5, "ZWO ASI2600MC Pro": 4, "ZWO ASI6200MM Pro": 1.5, "QHY600M": 1.5,
    "ZWO ASI294MC Pro": 5, "ZWO ASI1600MM Pro": 6, "ZWO ASI533MC Pro": 3, "QHY268M": 3,
    "ZWO ASI224MC": 5, "ZWO ASI290MM Mini": 4, "ZWO ASI178MM": 4, "ZWO ASI462MC": 4,
    "QHY5III462C": 2, "Canon EOS 600D (modified)": 4, "SBIG ST-8300M": 4, "Atik 414EX": 3,
    "SX Trius SX-694": 3, "e2v CCD42-40": 4, "SITe SI-424A": 3, "Fairchild CCD 3041": 3,
    "e2v CCD44-82": 3, "e2v CCD231-84": 3, "SITe ST-002A (space)": 4,
    "e2v CCD203-82 (space)": 4,
}

PROGRAM_NAMES = ("maxim", "sgp", "nina", "apt", "sharpcap", "ekos", "asiair", "firecapture",
                 "observatory", "iraf", "eso", "space")

#: How often each capture program wrote a frame of each class (relative weights), among the
#: programs that drive the frame's camera (:func:`programs_for`).
PROGRAM_WEIGHTS: dict[str, dict[str, float]] = {
    #            maxim sgp nina apt sharpcap ekos asiair firecapture observatory iraf eso space
    "bias":      dict(zip(PROGRAM_NAMES, (12, 9, 18, 8, 9, 9, 11, 8, 16, 8, 8, 1))),
    "darks":     dict(zip(PROGRAM_NAMES, (12, 9, 18, 8, 9, 9, 11, 8, 16, 8, 8, 1))),
    "flats":     dict(zip(PROGRAM_NAMES, (12, 9, 18, 8, 9, 9, 11, 7, 17, 8, 8, 1))),
    "deep_sky":  dict(zip(PROGRAM_NAMES, (12, 11, 22, 10, 10, 12, 14, 1, 8, 6, 6, 1))),
    "planetary": dict(zip(PROGRAM_NAMES, (2, 1, 3, 3, 33, 4, 6, 45, 8, 3, 2, 1))),
    "spectrum":  dict(zip(PROGRAM_NAMES, (18, 5, 15, 5, 12, 8, 5, 5, 27, 10, 10, 1))),
}

#: How a frame's geometry comes about, and how often: the full sensor (perhaps binned), the
#: sensor with its edges trimmed off, a region of interest set in the driver, or a cut-out a
#: program or a person made later.
GEOMETRY_MODES = {"full": 0.1, "trim": 0.04, "roi": 0.43, "cutout": 0.43}

#: Dihedral transforms of a saved image and how often each occurs: 0 as read out, 1..3 turned
#: by 90, 180, 270 degrees, 4 rows reversed (bottom-up), 5 columns reversed, 6 transposed,
#: 7 anti-transposed.
ORIENTATIONS = (0.55, 0.05, 0.05, 0.05, 0.15, 0.05, 0.05, 0.05)

#: Colour planes cost three times the memory: frames above this many pixels are kept to one.
MAX_RGB_PIXELS = 16_000_000

#: Filter transmission in R, G, B and whether it is narrowband.
FILTERS: dict[str, tuple[tuple[float, float, float], bool]] = {
    "L": ((1, 1, 1), False), "R": ((1, 0.03, 0), False), "G": ((0.03, 1, 0.03), False),
    "B": ((0, 0.03, 1), False), "Ha": ((0.3, 0, 0), True), "OIII": ((0, 0.25, 0.2), True),
    "SII": ((0.25, 0, 0), True), "IR685": ((0.5, 0.02, 0.01), False),
    "CH4": ((0.08, 0, 0), True), "V": ((0.2, 1, 0.1), False), "I": ((0.6, 0, 0), False),
    "L-eXtreme": ((0.35, 0.25, 0.05), True), "Baader Solar Continuum": ((0.02, 0.5, 0.02), False),
    "F656N": ((0.3, 0, 0), True), "F606W": ((0.6, 1, 0.3), False),
    "F814W": ((0.5, 0.05, 0), False),
}

DARK_EXPOSURES = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 480, 600,
                  900)
LIGHT_EXPOSURES = (10, 15, 20, 30, 60, 90, 120, 180, 240, 300, 420, 600)

#: Solar subtypes of the planetary class: taken by day.
SOLAR = ("sun", "sun_halpha", "granulation", "sun_euv")


@dataclass(frozen=True)
class Geometry:
    """Where the frame's pixels come from and how they were saved.

    ``mode``: ``full``, ``trim``, ``roi`` or ``cutout`` (see :data:`GEOMETRY_MODES`);
    ``binning``: on-chip binning factor; ``shape``: the exposed pixels as stored (rows,
    columns), overscan excluded; ``orientation``: the transform applied when saving (see
    :data:`ORIENTATIONS`); ``overscan``: unexposed columns read out with the frame (right, or
    left when mirrored; none for trimmed frames and cut-outs); ``parent``: for a cut-out, the
    frame it was cut from (rows, columns, as read out).
    """

    mode: str
    binning: int
    shape: tuple[int, int]
    orientation: int = 0
    overscan: int = 0
    parent: tuple[int, int] | None = None

    @property
    def transposed(self) -> bool:
        return self.orientation in (1, 3, 6, 7)

    @property
    def readout_shape(self) -> tuple[int, int]:
        """The exposed pixels as the sensor read them out, before the saved transform."""
        return (self.shape[1], self.shape[0]) if self.transposed else self.shape

    @property
    def stored_shape(self) -> tuple[int, int]:
        """Rows and columns in the file, overscan included."""
        return self.shape[0], self.shape[1] + self.overscan

    @property
    def pixels(self) -> int:
        return self.stored_shape[0] * self.stored_shape[1]


@dataclass(frozen=True)
class FramePlan:
    """Everything decided before exposing one frame.

    ``subtype``: what kind of frame within the class (``short``/``long`` dark, ``panel``/
    ``sky``/``dome``/``internal``/``lampflat``/``echelle_flat`` flat, deep-sky target kind,
    planetary body or solar view, slit frame kind). ``mode``: how colour is recorded (``mono``,
    ``bayer`` raw mosaic, ``rgb`` debayered). ``header`` is None for TIFF. ``defects``: header
    defects applied (see :func:`sample.headers.apply_defects`). ``slit``: the spectrograph
    set-up. ``band``: the passband in angstrom of an extreme-ultraviolet image.
    """

    class_name: str
    index: int
    subtype: str
    kind: str
    program: Program
    camera: Camera
    settings: Settings
    geometry: Geometry
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
    band: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """The exposed pixels as stored (rows, columns), overscan excluded."""
        return self.geometry.shape

    @property
    def full_scale(self) -> int:
        """Largest delivered ADU value (255, 2**bits - 1, or 65535)."""
        return self.settings.output_max(self.camera)

    @property
    def zero_level(self) -> float:
        """ADU of a pixel without light: the pedestal as delivered."""
        return self.settings.zero_level(self.camera)

    def nuisance(self) -> dict[str, float | str]:
        """What the frame is stored as, apart from what it shows: pixels (overscan included),
        aspect (columns / rows), stored dtype, bit depth of the values and zero level (ADU).
        None of these is meant to predict the class."""
        rows, columns = self.geometry.stored_shape
        dtype = self.fmt.dtype + ("_normalized" if self.fmt.normalized else "") + (
            "_scaled" if self.fmt.scaled else "")
        return {"pixels": rows * columns, "aspect": columns / rows, "dtype": dtype,
                "bits": self.settings.bits(self.camera), "zero_level": self.zero_level}


@dataclass
class Frame:
    """A rendered frame: its plan, delivered ADU (int32) and the array as stored on disk."""

    plan: FramePlan
    adu: np.ndarray
    data: np.ndarray = field(repr=False)

    @property
    def header(self) -> fits.Header | None:
        return self.plan.header

    @property
    def exposed(self) -> np.ndarray:
        """The delivered ADU without the overscan columns."""
        overscan = self.plan.geometry.overscan
        if not overscan:
            return self.adu
        if self.plan.geometry.orientation in (2, 5):  # mirrored: overscan on the left
            return self.adu[..., overscan:]
        return self.adu[..., :-overscan]

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


def programs_for(camera: Camera) -> tuple[str, ...]:
    """The programs that drive ``camera``: observatory and mission data systems their own
    detectors, FireCapture and SharpCap only CMOS cameras, the ASIAIR only ZWO cameras and
    DSLRs, the others any amateur camera."""
    if camera.group == "observatory":
        return ("observatory", "iraf", "eso")
    if camera.group == "space":
        return ("space",)
    names = ["maxim", "sgp", "nina", "apt", "ekos"]
    if camera.kind == "cmos":
        names += ["sharpcap", "firecapture"]
    if camera.name.startswith("ZWO") or camera.kind == "dslr":
        names.append("asiair")
    return tuple(n for n in PROGRAM_NAMES if n in names)


def draw_camera(rng: np.random.Generator, program: str | None = None) -> Camera:
    """A camera of the fleet (:data:`FLEET`), one that ``program`` drives when it is given."""
    fleet = {name: weight for name, weight in FLEET.items()
             if program is None or program in programs_for(CAMERAS[name])}
    return CAMERAS[_pick(rng, fleet)]


def draw_program(rng: np.random.Generator, class_name: str, camera: Camera) -> str:
    """The program that wrote a frame of ``class_name`` taken with ``camera``."""
    weights = PROGRAM_WEIGHTS[class_name]
    return _pick(rng, {name: weights[name] for name in programs_for(camera)})


def draw_geometry(rng: np.random.Generator, camera: Camera) -> Geometry:
    """The frame's size and how it was saved; nothing here knows the class.

    A mode of :data:`GEOMETRY_MODES`; binning 1..4 (a DSLR's "superpixel" half-size raw
    counts as 2), less often 1 on large sensors (15 % on the largest); regions of interest
    64..2400 px a side in steps the drivers allow; cut-outs 64..1024 px a side of any aspect
    from 1:4 to 4:1, cut from a frame 1.5..6 times larger; a transform
    of :data:`ORIENTATIONS` (no transposing of frames with overscan columns). Frames larger
    than a few megapixels come only from full or trimmed sensors: a tail of a few per cent, up to
    the 61 megapixels of the largest sensors.
    """
    mode = _pick(rng, GEOMETRY_MODES)
    unbinned = float(np.clip(2.5 / camera.megapixels, 0.15, 0.7))
    p = np.array([unbinned, (1 - unbinned) * 0.6, (1 - unbinned) * 0.2, (1 - unbinned) * 0.2])
    binning = int(rng.choice(4, p=p)) + 1
    rows, columns = camera.sensor[0] // binning, camera.sensor[1] // binning
    parent = None
    if mode == "full":
        shape = (rows, columns)
    elif mode == "trim":
        shape = (rows - int(rng.integers(0, 65)), columns - int(rng.integers(0, 129)))
    elif mode == "roi":
        height = 2 * round(float(loguniform(rng, 64, min(rows, 2400))) / 2)
        width = 8 * round(float(loguniform(rng, 64, min(columns, 2400))) / 8)
        shape = (int(np.clip(height, 64, rows)), int(np.clip(width, 64, columns)))
    else:
        side = float(loguniform(rng, 64, 1024))
        aspect = float(loguniform(rng, 0.25, 4.0))
        shape = (int(np.clip(side / np.sqrt(aspect), 64, rows)),
                 int(np.clip(side * np.sqrt(aspect), 64, columns)))
        factor = float(loguniform(rng, 1.5, 6.0))
        factor = min(factor, np.sqrt(2.5e6 / (shape[0] * shape[1])))
        parent = (int(np.clip(shape[0] * factor, shape[0], rows)),
                  int(np.clip(shape[1] * factor, shape[1], columns)))
    overscan = camera.overscan_px if mode in ("full", "roi") else 0
    orientations = np.asarray(ORIENTATIONS, dtype=float)
    if overscan:
        orientations[[1, 3, 6, 7]] = 0.0
    orientation = int(rng.choice(8, p=orientations / orientations.sum()))
    if orientation in (1, 3, 6, 7):
        shape = (shape[1], shape[0])
    return Geometry(mode=mode, binning=binning, shape=shape, orientation=orientation,
                    overscan=overscan, parent=parent)


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Apply transform ``orientation`` (see :data:`ORIENTATIONS`) to the last two axes."""
    if orientation == 0:
        return image
    if orientation in (1, 2, 3):
        turned = np.rot90(image, orientation, axes=(-2, -1))
    elif orientation == 4:
        turned = image[..., ::-1, :]
    elif orientation == 5:
        turned = image[..., :, ::-1]
    elif orientation == 6:
        turned = np.swapaxes(image, -1, -2)
    else:
        turned = np.rot90(np.swapaxes(image, -1, -2), 2, axes=(-2, -1))
    return np.ascontiguousarray(turned)


def stored_pattern(pattern: str, readout_shape: tuple[int, int], orientation: int) -> str:
    """The Bayer pattern (e.g. ``RGGB``) of a mosaic read out as ``readout_shape`` (rows,
    columns, overscan included) and saved with transform ``orientation``."""
    rows, columns = readout_shape
    cells = np.array([[pattern[(y % 2) * 2 + x % 2] for x in range(2 + columns % 2)]
                      for y in range(2 + rows % 2)])
    turned = orient(cells, orientation)
    return "".join(turned[:2, :2].ravel())


def draw_subtype(rng: np.random.Generator, class_name: str, group: str) -> tuple[str, str]:
    """(subtype, kind) of a frame taken by a camera of ``group`` (``amateur``,
    ``observatory``, ``space``): see :class:`FramePlan`."""
    if class_name == "bias":
        return "bias", "bias"
    if class_name == "darks":
        return ("short" if rng.random() < 0.22 else "long"), "dark"
    if class_name == "flats":
        options = {"amateur": {"panel": 50, "sky": 28, "dome": 8, "lampflat": 10,
                               "echelle_flat": 4},
                   "observatory": {"dome": 30, "sky": 25, "lampflat": 30, "echelle_flat": 15},
                   "space": {"internal": 60, "lampflat": 28, "echelle_flat": 12}}[group]
        subtype = _pick(rng, options)
        return subtype, "lampflat" if subtype in ("lampflat", "echelle_flat") else "flat"
    if class_name == "deep_sky":
        return _pick(rng, {"galaxy": 30, "nebula": 35, "cluster": 15, "field": 20}), "light"
    if class_name == "planetary":
        return _pick(rng, dict(zip(planets.BODIES, planets.BODY_WEIGHTS[group]))), "light"
    kind = _pick(rng, dict(zip(spectra.KINDS, spectra.KIND_WEIGHTS[group])))
    return kind, "arc" if kind in ("arc", "echelle_arc") else "light"


def draw_exposure(rng: np.random.Generator, class_name: str, subtype: str, camera: Camera,
                  program: str, filter_name: str | None) -> float:
    """Exposure time in seconds for a frame of ``class_name``/``subtype``."""
    if class_name == "bias":
        if camera.group != "amateur" or rng.random() < 0.35:
            return 0.0
        return camera.min_exposure_s
    if class_name == "darks":
        choices = [t for t in DARK_EXPOSURES if (t <= 5) == (subtype == "short")]
        return float(rng.choice(choices))
    if class_name == "flats":
        low, high = {"panel": (0.001, 3.0), "sky": (0.3, 15.0), "dome": (1.0, 30.0),
                     "internal": (0.1, 20.0), "lampflat": (1.0, 60.0),
                     "echelle_flat": (1.0, 120.0)}[subtype]
        return round(float(loguniform(rng, low, high)), 4)
    if class_name == "deep_sky":
        if filter_name and FILTERS.get(filter_name, ((1, 1, 1), False))[1]:
            return float(rng.choice([180, 300, 600, 900, 1200]))
        return float(rng.choice(LIGHT_EXPOSURES))
    if class_name == "planetary":
        low, high = {"sun": (1e-4, 5e-3), "sun_halpha": (1e-3, 2e-2), "moon": (1e-3, 3e-2),
                     "granulation": (1e-4, 5e-3), "sun_euv": (0.5, 3.0)}.get(
            subtype, (3e-3, 5e-2))
        return round(float(loguniform(rng, low, high)), 6)
    low, high = {"star": (5.0, 900.0), "arc": (0.5, 60.0), "nebula": (300.0, 1800.0),
                 "solar": (0.005, 2.0), "spectroheliograph": (0.001, 0.05),
                 "echelle": (60.0, 1800.0),
                 "echelle_arc": (1.0, 60.0), "raster": (1.0, 30.0)}[subtype]
    return round(float(loguniform(rng, low, high)), 3)


def draw_filter(rng: np.random.Generator, class_name: str, subtype: str, camera: Camera,
                program: str) -> str | None:
    """The filter in the light path (or the filter wheel's position for darks)."""
    if camera.group == "space":
        if class_name in ("deep_sky", "planetary") and subtype not in SOLAR:
            return str(rng.choice(["F606W", "F814W", "F656N"]))
        return None
    if camera.group == "observatory":
        return str(rng.choice(["B", "V", "R", "I", "clear", "OPEN"])) if rng.random() < 0.7 \
            else None
    if class_name == "spectrum":
        return str(rng.choice(["Clear", "UV/IR Cut"])) if rng.random() < 0.2 else None
    if class_name == "planetary":
        if subtype in ("sun", "granulation"):
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


def draw_telescope(rng: np.random.Generator, class_name: str, subtype: str,
                   camera: Camera) -> Telescope:
    if camera.group == "space":
        solar = class_name == "planetary" and subtype in SOLAR
        pool = SPACE_TELESCOPES[1:] if solar else SPACE_TELESCOPES[:1]
    elif camera.group == "observatory":
        pool = OBSERVATORY_TELESCOPES
    elif class_name == "planetary":
        pool = PLANETARY_TELESCOPES[4:6] if subtype == "sun_halpha" else PLANETARY_TELESCOPES
    elif class_name == "spectrum":
        pool = SPECTRO_TELESCOPES
    else:
        pool = IMAGING_TELESCOPES
    return pool[int(rng.integers(0, len(pool)))]


def draw_mission(rng: np.random.Generator, class_name: str, subtype: str,
                 camera: Camera) -> tuple | None:
    """The solar mission whose keywords a space camera's frame carries (None: HST-like):
    always for solar views of the planetary class, for a third of the calibration frames."""
    if camera.group != "space":
        return None
    if class_name == "planetary" and subtype in SOLAR:
        if subtype == "sun_euv":
            return SOLAR_MISSIONS[int(rng.integers(0, 3))]
        return SOLAR_MISSIONS[4 if subtype == "granulation" else 3]
    if class_name in ("bias", "darks") and rng.random() < 0.33:
        return SOLAR_MISSIONS[int(rng.integers(0, len(SOLAR_MISSIONS)))]
    return None


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
               camera: str | Camera | None = None, program: str | None = None,
               family: str | None = None, subtype: str | None = None,
               shape: tuple[int, int] | None = None) -> FramePlan:
    """Decide everything about frame ``index`` of ``class_name`` except its pixels.

    Keyword arguments force a choice: ``camera`` (a :data:`~sample.cameras.CAMERAS`
    name, or a :class:`~sample.cameras.Camera` of one's own, e.g. a camera the fleet does not
    hold), ``program`` (a :data:`~sample.headers.PROGRAMS` name), ``family`` (a
    :data:`~sample.writers.FAMILIES` name), ``subtype`` and ``shape`` (rows, columns: a
    region of interest of that size, saved as read out).
    """
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASSES}")
    # What does not define the class: camera, geometry, readout, storage.
    if isinstance(camera, Camera):
        cam = camera
    else:
        cam = CAMERAS[camera] if camera else draw_camera(rng, program)
    geometry = draw_geometry(rng, cam)
    if shape is not None:
        geometry = Geometry(mode="roi", binning=1, shape=tuple(shape),
                            overscan=cam.overscan_px)
    program_name = program or draw_program(rng, class_name, cam)
    prog = PROGRAMS[program_name]
    fits_extension = str(rng.choice([e for e, _ in prog.extensions],
                                    p=np.asarray([w for _, w in prog.extensions]) / sum(
                                        w for _, w in prog.extensions)))
    drawn_subtype, kind = draw_subtype(rng, class_name, cam.group)
    if subtype is not None:
        drawn_subtype = subtype
        kind = {"arc": "arc", "echelle_arc": "arc", "lampflat": "lampflat",
                "echelle_flat": "lampflat"}.get(subtype, kind)
    filter_name = draw_filter(rng, class_name, drawn_subtype, cam, program_name)
    exptime = draw_exposure(rng, class_name, drawn_subtype, cam, program_name, filter_name)
    settings = draw_settings(cam, rng, exptime, high_gain=class_name == "planetary",
                             binning=geometry.binning, shape=geometry.readout_shape)
    fmt = (format_of_family(family, rng, fits_extension, cam.group) if family
           else choose_format(rng, cam.group, fits_extension, settings.eight_bit,
                              high_zero=settings.zero == "mid"))
    if fmt.rgb and geometry.pixels > MAX_RGB_PIXELS:
        fmt = format_of_family({"fits_rgb": "fits_u16", "tiff_rgb16": "tiff_16",
                                "tiff_rgb8": "tiff_8"}[fmt.name], rng, fits_extension, cam.group)
    mode = ("rgb" if fmt.rgb else "bayer") if cam.is_colour else "mono"
    # What the class decides: scene set-up, optics, target, header.
    scene_shape = geometry.parent or geometry.readout_shape
    slit = None
    if class_name == "spectrum" or kind == "lampflat":
        slit = spectra.draw_setup(rng, drawn_subtype, scene_shape,
                                  vertical=bool(rng.random() < 0.5), space=cam.group == "space")
    telescope = draw_telescope(rng, class_name, drawn_subtype, cam)
    target = draw_target(rng, class_name, drawn_subtype, slit)
    mission = draw_mission(rng, class_name, drawn_subtype, cam)
    band = None
    if class_name == "planetary" and drawn_subtype == "sun_euv":
        band = int(rng.choice(mission[2] if mission else list(planets.EUV_BANDS)))
        mission = mission and (mission[0], mission[1], band, mission[3])
    elif mission is not None:
        mission = (mission[0], mission[1], int(rng.choice(mission[2])), mission[3])
    rows, columns = geometry.stored_shape
    extra: dict = {"rgb": fmt.rgb, "overscan": geometry.overscan,
                   "overscan_left": geometry.orientation in (2, 5), "subtype": drawn_subtype,
                   "roworder": "BOTTOM-UP" if geometry.orientation == 4 else "TOP-DOWN"}
    if cam.bayer is not None:
        readout = geometry.readout_shape
        extra["bayer"] = stored_pattern(cam.bayer, (readout[0], readout[1] + geometry.overscan),
                                        geometry.orientation)
    if mission is not None:
        extra["mission"] = mission
    if slit is not None:
        extra.update(grating=slit.grating, slit_um=slit.slit_um,
                     vertical=slit.vertical != geometry.transposed,
                     lamp="+".join(slit.lamps) or None, echelle=bool(slit.orders))
    facts = Facts(class_name=class_name, kind=kind, index=index, camera=cam, settings=settings,
                  width=columns, height=rows, telescope=telescope,
                  filter_name=filter_name, target=target,
                  ra_deg=float(rng.uniform(0, 360)), dec_deg=float(rng.uniform(-60, 85)),
                  date_obs=draw_date(rng, drawn_subtype in SOLAR + ("solar", "spectroheliograph",
                                                                    "raster")),
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
                     program=prog, camera=cam, settings=settings, geometry=geometry, fmt=fmt,
                     mode=mode, filter_name=filter_name, telescope=telescope, target=target,
                     header=header, defects=defects, file_name=name, software=software,
                     slit=slit, band=band)


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
    """Flat-field illumination at 20..60 % of the range above the zero level: a panel, the
    twilight sky (faint stars shine through half of them), a dome screen, a space camera's
    internal lamp, or a spectrograph's lamp through its slit or échelle orders."""
    if plan.subtype in ("lampflat", "echelle_flat"):
        spectra.spectrum_scene(canvas, rng, plan.slit, full_scale_e=full_scale_e,
                               exptime_s=plan.settings.exptime_s)
        return
    colour, slope = {"panel": ((0.9, 1.0, 1.25), 0.03), "sky": ((0.75, 1.0, 1.45), 0.08),
                     "dome": ((1.5, 1.0, 0.55), 0.1), "internal": ((1.3, 1.0, 0.7), 0.05)
                     }[plan.subtype]
    illumination = gradient(canvas.shape, rng, float(rng.uniform(0, slope)))
    canvas.add(illumination, colour)
    if plan.subtype == "sky" and rng.random() < 0.5:  # stars shine through twilight
        h, w = canvas.shape
        n = int(rng.integers(3, 30) * max(1.0, h * w / 1e6))
        stars = render_sources(canvas.shape, rng.uniform(0, h, n), rng.uniform(0, w, n),
                               loguniform(rng, 0.05, 2.0, n), float(rng.uniform(1.5, 4.0)))
        canvas.add(stars, (1.1, 1.0, 0.9))
    canvas.multiply(optical_response(canvas.shape, rng, plan.telescope))
    canvas.scale_to(0.5, full_scale_e * float(rng.uniform(0.2, 0.6)))


def _fill_deep_sky(canvas: Canvas, plan: FramePlan, rng: np.random.Generator,
                   full_scale_e: float) -> None:
    """Sky, stars and target, seen through the optics; from space the sky is a hundred
    times darker."""
    narrowband = FILTERS.get(plan.filter_name or "", ((1, 1, 1), False))[1]
    rate = loguniform(rng, 0.02, 0.8) if narrowband else loguniform(rng, 0.3, 25.0)
    if plan.camera.group == "space":
        rate *= 0.01
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


def _cut_out(canvas: Canvas, rng: np.random.Generator, shape: tuple[int, int],
             structure: float) -> None:
    """Crop ``canvas`` to a cut-out of ``shape``: where a person would cut it, on the part
    with the most structure among 12 candidate windows (with probability ``structure``), or
    anywhere. Offsets are even, so a mosaic keeps its pattern."""
    height, width = canvas.shape
    h, w = shape
    candidates = [(2 * int(rng.integers(0, (height - h) // 2 + 1)),
                   2 * int(rng.integers(0, (width - w) // 2 + 1))) for _ in range(12)]
    top, left = candidates[0]
    if rng.random() < structure:
        scene = canvas.data if canvas.data.ndim == 2 else canvas.data.sum(axis=0)
        step = max(1, int(np.sqrt(h * w / 4096)))
        contrast = [float(np.std(scene[t:t + h:step, s:s + w:step])) for t, s in candidates]
        top, left = candidates[int(np.argmax(contrast))]
    canvas.crop(top, left, shape)


def render_frame(plan: FramePlan, rng: np.random.Generator) -> np.ndarray:
    """The ADU the driver delivered for ``plan``, saved with its transform: int32, (H, W) or
    (3, H, W) for colour formats, overscan columns included."""
    settings, camera, geometry = plan.settings, plan.camera, plan.geometry
    full_scale_e = settings.full_scale_e(camera)
    filter_rgb = FILTERS.get(plan.filter_name or "", ((1.0, 1.0, 1.0), False))[0]
    canvas = Canvas(geometry.parent or geometry.readout_shape, plan.mode,
                    camera.bayer or "RGGB", filter_rgb)
    lit = True
    if plan.class_name == "flats":
        _fill_flat(canvas, plan, rng, full_scale_e)
    elif plan.class_name == "deep_sky":
        _fill_deep_sky(canvas, plan, rng, full_scale_e)
    elif plan.class_name == "planetary":
        details = {"band": plan.band} if plan.subtype == "sun_euv" else {}
        planets.planetary_scene(canvas, rng, plan.subtype, full_scale_e=full_scale_e,
                                seeing_px=0.0 if camera.group == "space" else float(
                                    rng.uniform(0.5, 2.5)), **details)
    elif plan.class_name == "spectrum":
        spectra.spectrum_scene(canvas, rng, plan.slit, full_scale_e=full_scale_e,
                               exptime_s=settings.exptime_s)
    elif plan.class_name == "darks" and rng.random() < 0.03:
        _fill_light_leak(canvas, rng)
    else:
        lit = False
    if geometry.parent is not None:
        # A cut-out of a planet or a spectrum shows it; of a star field or a flat, any part.
        structure = 0.0 if not lit else (1.0 if plan.class_name in ("planetary", "spectrum")
                                         else 0.7)
        _cut_out(canvas, rng, geometry.readout_shape, structure)
    planes = 3 if plan.mode == "rgb" else 1
    adu = read_out(camera, settings, canvas.data if lit else None, geometry.readout_shape, rng,
                   planes, overscan=geometry.overscan)
    del canvas
    if plan.fmt.rgb and adu.ndim == 2:  # a mono frame saved as a grey RGB image
        adu = np.repeat(adu[None], 3, axis=0)
    return orient(adu, geometry.orientation)


def make_frame(class_name: str, seed: int | np.random.Generator = 0, index: int = 0,
               **force) -> Frame:
    """Plan and render frame ``index`` of ``class_name``.

    ``seed`` is the tree's seed (the frame's generator is derived from it, the class and the
    index, see :func:`frame_rng`) or a generator to use directly. ``force`` passes
    ``camera``, ``program``, ``family``, ``subtype`` or ``shape`` to :func:`plan_frame`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else frame_rng(seed, class_name, index)
    plan = plan_frame(class_name, index, rng, **force)
    adu = render_frame(plan, rng)
    return Frame(plan=plan, adu=adu, data=encode(adu, plan.full_scale, plan.fmt))
