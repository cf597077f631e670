"""FITS headers and file names in the conventions of capture programs, with their defects.

Each :class:`Program` writes what one capture program writes: MaxIm DL, Sequence Generator Pro,
N.I.N.A., APT, SharpCap, KStars/Ekos (INDI), ZWO ASIAIR, FireCapture, observatory data systems
(``OBSTYPE``, ``DETECTOR``, ``CCDSUM``, ``DATASEC``/``BIASSEC``), IRAF-era NOAO systems
(``IMAGETYP = 'zero' | 'object' | 'comp'``), ESO's (``HIERARCH ESO DPR CATG/TYPE/TECH``) and
space missions (HST-like ``IMAGETYP``/``OBSTYPE``/``OBSMODE``/``FILETYPE``/``TARGNAME``, or
solar-mission ``WAVELNTH``/``IMG_TYPE``). They disagree about almost everything, as they do in
real archives:

* frame type: ``IMAGETYP = 'Dark Frame'`` (MaxIm, SGP), ``'DARK'`` (N.I.N.A.), ``'Dark'``
  (APT, ASIAIR), ``FRAME = 'Dark'`` (Ekos), ``FRAMETYP`` (SharpCap, when set), ``OBSTYPE``
  (observatories: ``BIAS``, ``DARK``, ``FLAT``/``DOMEFLAT``/``LAMPFLAT``, ``OBJECT``,
  ``ARC``/``COMP``), ``IMAGETYP = 'zero'`` (IRAF), ``ESO DPR TYPE = 'FLAT,LAMP'`` (ESO),
  ``IMAGETYP = 'EXT' | 'WAVECAL'`` (HST), ``IMG_TYPE = 'LIGHT' | 'DARK'`` (solar missions),
  nothing at all (FireCapture);
* exposure: ``EXPTIME`` and/or ``EXPOSURE`` (seconds), ``DARKTIME``;
* temperature: ``CCD-TEMP``, ``SET-TEMP``, ``TEMPERAT``, ``CCDTEMP``;
* binning: ``XBINNING``/``YBINNING`` or ``CCDSUM = '2 2'``; pixel size ``XPIXSZ`` or
  ``PIXSIZE1``; optics ``TELESCOP``, ``FOCALLEN``, ``APTDIA``, ``FOCRATIO``; target
  ``OBJECT``, ``OBJCTRA``/``OBJCTDEC`` (sexagesimal strings) or ``RA``/``DEC`` (degrees).

:func:`apply_defects` then damages a share of headers the way real archives are damaged:
frame-type keywords missing (~15 %), calibration frames saved with the default light type
(~10 %), other wrong types, lower-case values, non-numeric or millisecond exposure times,
temperatures as strings, missing optics. Every header carries ``DATE-OBS`` in ISO format.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from astropy.io import fits
from astropy.time import Time

from sample.cameras import Camera, Settings

#: Keywords that carry a frame type in one convention or another.
FRAME_TYPE_KEYS = ("IMAGETYP", "FRAME", "FRAMETYP", "OBSTYPE", "IMG_TYPE", "ESO DPR TYPE",
                   "ESO DPR CATG")
EXPOSURE_KEYS = ("EXPTIME", "EXPOSURE", "DARKTIME")
TEMPERATURE_KEYS = ("CCD-TEMP", "TEMPERAT", "CCDTEMP")
OPTICS_KEYS = ("TELESCOP", "FOCALLEN", "APTDIA", "APTAREA", "FOCRATIO", "SCALE")

#: Frame kinds a capture program knows. Spectra of stars are lights to the program; arcs and
#: slit lamp flats are lights and flats to amateur programs but have their own types at
#: observatories.
KINDS = ("bias", "dark", "flat", "light", "arc", "lampflat")


@dataclass(frozen=True)
class Telescope:
    """Optics as headers describe them: focal length and aperture in mm."""

    name: str
    focal_mm: float
    aperture_mm: float
    reflector: bool = False


IMAGING_TELESCOPES = (
    Telescope("Sky-Watcher Esprit 100ED", 550, 100), Telescope("William Optics RedCat 51", 250, 51),
    Telescope("Takahashi FSQ-106EDX4", 530, 106), Telescope("Celestron EdgeHD 8", 2032, 203, True),
    Telescope("Celestron C11", 2800, 280, True),
    Telescope("Sky-Watcher Quattro 200P", 800, 200, True),
    Telescope("Askar FRA400", 400, 72), Telescope("Explore Scientific ED127", 952, 127),
    Telescope("Canon EF 200mm f/2.8L", 200, 71), Telescope("GSO RC8", 1624, 203, True),
    Telescope("Seestar S50", 250, 50),
)
PLANETARY_TELESCOPES = (
    Telescope("Celestron C8", 2032, 203, True), Telescope("Celestron C9.25", 2350, 235, True),
    Telescope("Celestron C14", 3910, 356, True),
    Telescope("Sky-Watcher Skymax 180", 2700, 180, True),
    Telescope("Lunt LS60THa", 500, 60), Telescope("Coronado PST", 400, 40),
    Telescope("Newton 254/1200", 1200, 254, True),
)
SPECTRO_TELESCOPES = (
    Telescope("Celestron C8", 2032, 203, True), Telescope("Sky-Watcher 150/750", 750, 150, True),
    Telescope("Celestron C11", 2800, 280, True), Telescope("Meade LX200 10in", 2500, 254, True),
    Telescope("TS Photon 8 f/4", 812, 203, True),
)
SPACE_TELESCOPES = (
    Telescope("HST", 57600, 2400, True), Telescope("SDO", 4125, 200, True),
    Telescope("SOHO", 1650, 120, True), Telescope("TRACE", 8660, 300, True),
)
OBSERVATORY_TELESCOPES = (
    Telescope("Shane 3m", 45720, 3000, True), Telescope("Liverpool Telescope", 20000, 2000, True),
    Telescope("FTS", 20000, 2000, True), Telescope("INT", 37500, 2540, True),
    Telescope("ESO-NTT", 38500, 3580, True), Telescope("KPNO 2.1m", 16700, 2100, True),
)
#: (latitude, longitude, elevation m) of observing sites.
SITES = ((48.14, 11.58, 520.0), (51.48, -0.0, 30.0), (34.22, -118.06, 1700.0),
         (-31.27, 149.06, 1165.0), (37.34, -121.64, 1283.0), (28.76, -17.88, 2326.0),
         (-29.26, -70.73, 2400.0), (52.52, 13.40, 40.0), (45.50, -73.57, 50.0))


@dataclass(frozen=True)
class Facts:
    """What a capture program knows when it writes a frame's header.

    ``kind``: one of :data:`KINDS`; ``target``: the object being observed (for calibration
    frames, the sequence's target, which some programs write anyway); ``width``/``height``: the
    written frame size in pixels including overscan; ``extra``: class-specific details
    (spectrograph ``grating``, ``slit_um``, ``lamp``; flat ``source``).
    """

    class_name: str
    kind: str
    index: int
    camera: Camera
    settings: Settings
    width: int
    height: int
    telescope: Telescope
    filter_name: str | None
    target: str | None
    ra_deg: float
    dec_deg: float
    date_obs: dt.datetime
    site: tuple[float, float, float]
    extra: dict = field(default_factory=dict)

    @property
    def is_calibration(self) -> bool:
        return self.kind in ("bias", "dark", "flat", "lampflat")


Card = tuple[str, object, str]


def iso(moment: dt.datetime, digits: int = 3) -> str:
    """``YYYY-MM-DDThh:mm:ss.sss`` (UTC) as astropy's ``Time.isot`` writes it."""
    time = Time(moment, scale="utc")
    time.precision = digits
    return time.isot


def sexagesimal(value: float, hours: bool) -> str:
    """'05 35 17.3' (hours) or '-05 23 28' (degrees) as MaxIm and N.I.N.A. write OBJCTRA/DEC."""
    sign = "-" if value < 0 else ("+" if not hours else "")
    value = abs(value) / (15.0 if hours else 1.0)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return f"{sign}{d:02d} {m:02d} {s:04.1f}" if hours else f"{sign}{d:02d} {m:02d} {s:02.0f}"


def _target_cards(f: Facts, rng: np.random.Generator, style: str) -> list[Card]:
    """OBJECT and pointing. Calibration frames get the sequence target, a generic name, or
    nothing, as different programs and users do."""
    cards: list[Card] = []
    name = f.target
    if f.is_calibration:
        choice = rng.random()
        if choice < 0.4:
            name = None
        elif choice < 0.65:
            name = {"bias": "Bias", "dark": "Dark", "flat": "FlatWizard",
                    "lampflat": f.target}.get(f.kind, f.target)
    if name:
        cards.append(("OBJECT", name, "Name of the object of interest"))
    if f.kind in ("light", "arc") or rng.random() < 0.3:
        if style == "sexagesimal":
            cards += [("OBJCTRA", sexagesimal(f.ra_deg, True), "[H M S] RA of imaged object"),
                      ("OBJCTDEC", sexagesimal(f.dec_deg, False), "[D M S] Dec of imaged object")]
        elif style == "degrees":
            cards += [("RA", round(f.ra_deg, 5), "[deg] RA of telescope"),
                      ("DEC", round(f.dec_deg, 5), "[deg] Declination of telescope")]
        else:
            cards += [("RA", round(f.ra_deg, 5), "[deg] RA of telescope"),
                      ("DEC", round(f.dec_deg, 5), "[deg] Declination of telescope"),
                      ("OBJCTRA", sexagesimal(f.ra_deg, True), "[H M S] RA of imaged object"),
                      ("OBJCTDEC", sexagesimal(f.dec_deg, False), "[D M S] Dec of imaged object")]
    return cards


def _optics_cards(f: Facts, with_ratio: bool = False) -> list[Card]:
    t = f.telescope
    cards: list[Card] = [("TELESCOP", t.name, "Name of telescope"),
                         ("FOCALLEN", float(t.focal_mm), "[mm] Focal length"),
                         ("APTDIA", float(t.aperture_mm), "[mm] Aperture diameter")]
    if with_ratio:
        cards.append(("FOCRATIO", round(t.focal_mm / t.aperture_mm, 2), "Focal ratio"))
    return cards


def _sensor_cards(f: Facts, pixel_keys: tuple[str, str] = ("XPIXSZ", "YPIXSZ")) -> list[Card]:
    s, c = f.settings, f.camera
    cards: list[Card] = [(pixel_keys[0], round(c.pixel_um * s.binning, 2), "[um] Pixel X size"),
                         (pixel_keys[1], round(c.pixel_um * s.binning, 2), "[um] Pixel Y size"),
                         ("XBINNING", s.binning, "X axis binning factor"),
                         ("YBINNING", s.binning, "Y axis binning factor")]
    if s.set_temp_c is not None:
        cards.append(("SET-TEMP", round(s.set_temp_c, 1), "[C] CCD temperature setpoint"))
    cards.append(("CCD-TEMP", round(s.sensor_temp_c, 2), "[C] CCD temperature"))
    return cards


def _gain_cards(f: Facts) -> list[Card]:
    s = f.settings
    cards: list[Card] = []
    if s.gain is not None:
        cards.append(("GAIN", s.gain, "Sensor gain"))
    if s.offset is not None:
        cards.append(("OFFSET", s.offset, "Sensor gain offset"))
    cards.append(("EGAIN", round(s.e_per_adu / s.output_scale(f.camera), 4),
                  "[e-/ADU] Electrons per A/D unit"))
    return cards


def _bayer_cards(f: Facts) -> list[Card]:
    """The mosaic as stored: the sensor's pattern, turned with the image when it was saved
    rotated or mirrored."""
    if f.camera.bayer is None or f.extra.get("rgb"):
        return []
    return [("BAYERPAT", f.extra.get("bayer", f.camera.bayer), "Sensor Bayer pattern"),
            ("XBAYROFF", 0, "Bayer pattern X axis offset"),
            ("YBAYROFF", 0, "Bayer pattern Y axis offset")]


def _site_cards(f: Facts) -> list[Card]:
    lat, lon, elev = f.site
    return [("SITELAT", round(lat, 4), "[deg] Observation site latitude"),
            ("SITELONG", round(lon, 4), "[deg] Observation site longitude"),
            ("SITEELEV", elev, "[m] Observation site elevation")]


def _filter_card(f: Facts) -> list[Card]:
    return [("FILTER", f.filter_name, "Active filter name")] if f.filter_name else []


def _local_time(f: Facts) -> dt.datetime:
    return f.date_obs + dt.timedelta(hours=round(f.site[1] / 15.0))


def maxim_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """MaxIm DL 6 (SBFITSEXT): sexagesimal pointing, EXPTIME and EXPOSURE, JD, SWCREATE."""
    cards: list[Card] = [
        ("DATE-OBS", iso(f.date_obs, 0), "YYYY-MM-DDThh:mm:ss observation start, UT"),
        ("EXPTIME", f.settings.exptime_s, "Exposure time in seconds"),
        ("EXPOSURE", f.settings.exptime_s, "Exposure time in seconds"),
        *_sensor_cards(f), ("IMAGETYP", types[f.kind], "Type of image"),
        ("XORGSUBF", 0, "Subframe X position in binned pixels"),
        ("YORGSUBF", 0, "Subframe Y position in binned pixels"),
        ("READOUTM", "Raw" if f.camera.bayer else "Monochrome", "Readout mode of image"),
        *_filter_card(f), *_optics_cards(f),
        ("APTAREA", round(np.pi * (f.telescope.aperture_mm / 2) ** 2 * 0.85, 1),
         "[mm^2] Aperture area"),
        *_target_cards(f, rng, "sexagesimal"), *_bayer_cards(f),
        ("INSTRUME", f.camera.name, "Detector instrument name"),
        ("JD", round(Time(f.date_obs, scale="utc").jd, 6), "Julian Date at start of exposure"),
        ("SWCREATE", "MaxIm DL Version 6.40 220318 26VR5", "Name of software that created image"),
        ("SBSTDVER", "SBFITSEXT Version 1.0", "SBIG FITS extensions ver"),
    ]
    if f.camera.kind == "ccd":
        cards.append(("PEDESTAL", 0, "Correction to add for zero-based ADU"))
    else:
        cards += _gain_cards(f)
    return cards


def sgp_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """Sequence Generator Pro 4: MaxIm-like types, RA/DEC in both forms, focuser keywords."""
    return [
        ("DATE-OBS", iso(f.date_obs), "Date of observation (UTC)"),
        ("DATE-LOC", iso(_local_time(f)), "Local date of observation"),
        ("IMAGETYP", types[f.kind], "Type of frame"),
        ("EXPOSURE", f.settings.exptime_s, "Exposure time in seconds"),
        ("EXPTIME", f.settings.exptime_s, "Exposure time in seconds"),
        *_sensor_cards(f), *_gain_cards(f), *_filter_card(f), *_optics_cards(f, True),
        *_target_cards(f, rng, "both"), *_bayer_cards(f), *_site_cards(f),
        ("INSTRUME", f.camera.name, "Camera"),
        ("FOCUSPOS", int(rng.integers(1000, 60000)), "Focuser position"),
        ("FOCUSTEM", round(float(rng.uniform(-5, 25)), 1), "Focuser temperature"),
        ("CREATOR", "Sequence Generator Pro v4.2.0.1054", "Capture software"),
    ]


def nina_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """N.I.N.A. 3: upper-case types, EXPOSURE and EXPTIME, GAIN/OFFSET/EGAIN, ROWORDER."""
    cards: list[Card] = [
        ("IMAGETYP", types[f.kind], "Type of exposure"),
        ("EXPOSURE", f.settings.exptime_s, "[s] Exposure duration"),
        ("EXPTIME", f.settings.exptime_s, "[s] Exposure duration"),
        ("DATE-LOC", iso(_local_time(f)), "Time of observation (local)"),
        ("DATE-OBS", iso(f.date_obs), "Time of observation (UTC)"),
        *_sensor_cards(f), *_gain_cards(f),
        ("INSTRUME", f.camera.name, "Imaging instrument name"),
        ("USBLIMIT", 40, "Camera-specific USB setting"), *_bayer_cards(f),
        *_optics_cards(f, True), *_target_cards(f, rng, "both"), *_site_cards(f),
        ("FWHEEL", "ZWO EFW", "Filter Wheel name"), *_filter_card(f),
        ("ROWORDER", f.extra.get("roworder", "TOP-DOWN"), "FITS Image Orientation"),
        ("EQUINOX", 2000.0, "Equinox of celestial coordinate system"),
        ("SWCREATE", "N.I.N.A. 3.1.2.9001 (x64)", "Software that created this file"),
    ]
    if f.kind == "light":
        cards.insert(-3, ("AIRMASS", round(float(rng.uniform(1.0, 2.5)), 4),
                          "Airmass at frame center (Gueymard 1993)"))
    return cards


def apt_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """Astro Photography Tool: capitalised types, ISOSPEED for DSLRs."""
    cards: list[Card] = [
        ("IMAGETYP", types[f.kind], "Image type"),
        ("EXPOSURE", f.settings.exptime_s, "Exposure time (s)"),
        ("DATE-OBS", iso(f.date_obs), "UTC"), *_sensor_cards(f),
        ("INSTRUME", f.camera.name, "Camera model"), *_optics_cards(f),
        *_filter_card(f), *_target_cards(f, rng, "sexagesimal"), *_bayer_cards(f),
        ("SWCREATE", "Astro Photography Tool - APT v.4.30", "Software"),
    ]
    if f.camera.kind == "dslr":
        cards.append(("ISOSPEED", f.settings.gain, "ISO camera setting"))
    else:
        cards += _gain_cards(f)
    if rng.random() < 0.5:
        cards.insert(2, ("EXPTIME", f.settings.exptime_s, "Exposure time (s)"))
    return cards


def sharpcap_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """SharpCap 4: few keywords; FRAMETYPE only when the user picked a frame type."""
    cards: list[Card] = [
        ("SWCREATE", "SharpCap v4.1.11924.0, 64 bit", "Software"),
        ("DATE-OBS", iso(f.date_obs, 6), "System Clock:Est. Frame Start"),
        ("EXPTIME", f.settings.exptime_s, ""), ("INSTRUME", f.camera.name, ""),
        ("XPIXSZ", round(f.camera.pixel_um * f.settings.binning, 2), ""),
        ("XBINNING", f.settings.binning, ""), *_gain_cards(f)[:2],
        ("CCD-TEMP", round(f.settings.sensor_temp_c, 1), ""), *_bayer_cards(f),
    ]
    if f.camera.bayer and not f.extra.get("rgb"):
        cards.append(("COLORTYP", f.extra.get("bayer", f.camera.bayer), ""))
    if rng.random() < 0.6:
        cards.insert(1, ("FRAMETYP", types[f.kind], ""))
    if f.target and f.kind == "light" and rng.random() < 0.5:
        cards.append(("OBJECT", f.target, ""))
    return cards


def ekos_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """KStars/Ekos through INDI: FRAME = 'Light', PIXSIZE1/2, SCALE, sometimes IMAGETYP too."""
    t = f.telescope
    scale = 206.265 * f.camera.pixel_um * f.settings.binning / t.focal_mm
    cards: list[Card] = [
        ("ROWORDER", f.extra.get("roworder", "TOP-DOWN"), "Row Order"),
        ("INSTRUME", f.camera.name, "CCD Name"),
        ("TELESCOP", t.name, "Telescope name"), ("OBSERVER", "Unknown", "Observer name"),
        ("EXPTIME", f.settings.exptime_s, "Total Exposure Time (s)"),
        ("CCD-TEMP", round(f.settings.sensor_temp_c, 2), "CCD Temperature (Celsius)"),
        ("PIXSIZE1", f.camera.pixel_um, "Pixel Size 1 (microns)"),
        ("PIXSIZE2", f.camera.pixel_um, "Pixel Size 2 (microns)"),
        ("XBINNING", f.settings.binning, "Binning factor in width"),
        ("YBINNING", f.settings.binning, "Binning factor in height"),
        ("FRAME", types[f.kind], "Frame Type"),
        ("FOCALLEN", float(t.focal_mm), "Focal Length (mm)"),
        ("APTDIA", float(t.aperture_mm), "Telescope diameter (mm)"),
        ("SCALE", round(scale, 6), "arcsecs per pixel"), *_filter_card(f),
        *_site_cards(f)[:2], *_target_cards(f, rng, "both"), *_gain_cards(f)[:2],
        *_bayer_cards(f), ("DATE-OBS", iso(f.date_obs), "UTC start date of observation"),
    ]
    if rng.random() < 0.5:
        cards.insert(10, ("IMAGETYP", types[f.kind] + " Frame", "Frame Type"))
    return cards


def asiair_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """ZWO ASIAIR: IMAGETYP = 'Light', EXPOSURE and EXPTIME, GAIN/OFFSET, BAYERPAT."""
    return [
        ("EXPOSURE", f.settings.exptime_s, "Exposure time in seconds"),
        ("EXPTIME", f.settings.exptime_s, "Exposure time in seconds"),
        ("DATE-OBS", iso(f.date_obs, 6), "UTC"), ("IMAGETYP", types[f.kind], ""),
        *_sensor_cards(f), *_gain_cards(f)[:2], ("INSTRUME", f.camera.name, ""),
        *_bayer_cards(f), ("FOCALLEN", float(f.telescope.focal_mm), ""),
        *_target_cards(f, rng, "degrees"), *_filter_card(f), *_site_cards(f)[:2],
        ("CREATOR", "ZWO ASIAIR", ""),
    ]


def firecapture_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """FireCapture: a handful of keywords and never a frame type."""
    cards: list[Card] = [("DATE-OBS", iso(f.date_obs), ""), ("INSTRUME", f.camera.name, "")]
    if rng.random() < 0.7:
        cards.append(("EXPTIME", f.settings.exptime_s, ""))
    if f.settings.gain is not None:
        cards.append(("GAIN", f.settings.gain, ""))
    if f.target and f.kind == "light":
        cards.append(("OBJECT", f.target, ""))
    cards.append(("SWCREATE", "FireCapture v2.7.14 ", ""))
    return cards


def observatory_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """Observatory data systems: OBSTYPE synonyms, CCDSUM, DATASEC/BIASSEC, TEMPERAT, UT,
    MJD-OBS, GAIN/RDNOISE; spectrograph keywords for long-slit frames."""
    s, c = f.settings, f.camera
    moment = Time(f.date_obs, scale="utc")
    cards: list[Card] = [
        ("OBSERVAT", rng.choice(["Lick", "ORM", "ESO-LASILLA", "Haleakala", "Siding Spring"]),
         "Observatory"),
        ("TELESCOP", f.telescope.name, "Telescope"),
        ("INSTRUME", str(rng.choice(["Kast", "SPRAT", "FLOYDS", "IDS", "EFOSC2", "DIS"]))
         if f.class_name in ("spectrum",) or f.kind in ("arc", "lampflat")
         else str(rng.choice(["PFCCD", "WFC", "IO:O", "Spectral", "T2KA"])), "Instrument"),
        ("DETECTOR", c.name, "Detector"),
        ("OBSTYPE", types[f.kind], "Observation type"),
        ("EXPTIME", s.exptime_s, "Exposure time (s)"),
        ("DARKTIME", round(s.exptime_s + float(rng.uniform(0.5, 3)), 3), "Dark time (s)"),
        ("DATE-OBS", iso(f.date_obs), "UT date and time at start of exposure"),
        ("UT", iso(f.date_obs).split("T")[1], "UT at start"),
        ("MJD-OBS", round(moment.mjd, 6), "MJD at start of exposure"),
        ("CCDSUM", f"{s.binning} {s.binning}", "On-chip binning"),
        ("GAIN", round(s.e_per_adu, 3), "[e-/ADU] Gain"),
        ("RDNOISE", round(s.read_noise_e, 2), "[e-] Read noise"),
        *_section_cards(f),
    ]
    cards.append((str(rng.choice(["TEMPERAT", "CCDTEMP"])), round(s.sensor_temp_c, 1),
                  "[C] Detector temperature"))
    if f.target and (f.kind in ("light", "arc", "lampflat") or rng.random() < 0.5):
        cards.append(("OBJECT", f.target, "Object name"))
    if f.kind in ("light", "arc"):
        cards += [("RA", sexagesimal(f.ra_deg, True).replace(" ", ":"), "Right ascension"),
                  ("DEC", sexagesimal(f.dec_deg, False).replace(" ", ":"), "Declination"),
                  ("EQUINOX", 2000.0, ""),
                  ("AIRMASS", round(float(rng.uniform(1.0, 2.2)), 3), "Airmass")]
    if f.filter_name:
        cards.append(("FILTER1", f.filter_name, "Filter"))
    if "grating" in f.extra:
        cards += [("GRATING", f.extra["grating"], "Grating"),
                  ("SLITWID", round(f.extra["slit_um"] / 35.0, 2), "[arcsec] Slit width"),
                  ("DISPAXIS", 2 if f.extra.get("vertical") else 1, "Dispersion axis")]
        if f.extra.get("lamp"):
            cards.append(("LAMP", f.extra["lamp"], "Calibration lamps on"))
    cards += [("OBSERVER", str(rng.choice(["Night assistant", "J. Smith", "robotic"])), ""),
              ("BUNIT", "ADU", "Pixel units")]
    return cards


def _section_cards(f: Facts) -> list[Card]:
    """DATASEC (and BIASSEC when overscan columns were read), in FITS 1-based x-then-y ranges;
    the overscan sits on the right, or on the left of a frame saved mirrored."""
    overscan = int(f.extra.get("overscan", 0))
    width = f.width - overscan
    if not overscan:
        return [("DATASEC", f"[1:{width},1:{f.height}]", "Image data section")]
    if f.extra.get("overscan_left"):
        return [("DATASEC", f"[{overscan + 1}:{f.width},1:{f.height}]", "Image data section"),
                ("BIASSEC", f"[1:{overscan},1:{f.height}]", "Overscan section")]
    return [("DATASEC", f"[1:{width},1:{f.height}]", "Image data section"),
            ("BIASSEC", f"[{width + 1}:{f.width},1:{f.height}]", "Overscan section")]


def iraf_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """NOAO/IRAF-era data systems (KPNO, CTIO, WIYN): lower-case ``IMAGETYP`` ('zero', 'dark',
    'flat', 'object', 'comp'), ``CCDSUM``, ``DATASEC``/``BIASSEC``/``TRIMSEC``, ``UT``/``ST``,
    sexagesimal ``RA``/``DEC`` with ``EPOCH``, ``DARKTIME``, ``IRAF-TLM``."""
    s = f.settings
    width = f.width - int(f.extra.get("overscan", 0))
    cards: list[Card] = [
        ("OBSERVAT", str(rng.choice(["KPNO", "CTIO", "NOAO", "WIYN"])), "Observatory"),
        ("TELESCOP", f.telescope.name, "Telescope"),
        ("INSTRUME", str(rng.choice(["GoldCam", "RCSpec", "T2KA", "Mosaic", "echelle"])),
         "Instrument"),
        ("IMAGETYP", types[f.kind], "Image type"),
        ("OBJECT", f.target or types[f.kind], "Object name"),
        ("EXPTIME", s.exptime_s, "Exposure time (sec)"),
        ("DARKTIME", round(s.exptime_s + float(rng.uniform(0.5, 2)), 3), "Dark time (sec)"),
        ("DATE-OBS", iso(f.date_obs, 1), "Date of observation start (UTC)"),
        ("UT", f.date_obs.strftime("%H:%M:%S"), "Universal time"),
        ("ST", f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:00",
         "Sidereal time"),
        ("RA", sexagesimal(f.ra_deg, True).replace(" ", ":"), "Right ascension"),
        ("DEC", sexagesimal(f.dec_deg, False).replace(" ", ":"), "Declination"),
        ("EPOCH", 2000.0, "Epoch of RA and DEC"),
        ("CCDSUM", f"{s.binning} {s.binning}", "CCD pixel summing"),
        *_section_cards(f),
        ("TRIMSEC", f"[2:{max(2, width - 1)},1:{f.height}]", "Section of useful data"),
        ("GAIN", round(s.e_per_adu, 2), "Gain (electrons/ADU)"),
        ("RDNOISE", round(s.read_noise_e, 1), "Read noise (electrons)"),
        ("CCDTEMP", round(s.sensor_temp_c, 1), "CCD temperature (C)"),
        ("IRAF-TLM", iso(f.date_obs + dt.timedelta(days=1), 0), "Time of last modification"),
    ]
    if f.kind in ("light", "arc"):
        cards.append(("AIRMASS", round(float(rng.uniform(1.0, 2.2)), 3), "Airmass"))
    if f.filter_name:
        cards.append(("FILTERS", f.filter_name, "Filter positions"))
    if "grating" in f.extra:
        cards += [("GRATING", f.extra["grating"].split()[0], "Grating"),
                  ("DISPAXIS", 2 if f.extra.get("vertical") else 1, "Dispersion axis")]
    return cards


#: ESO ``DPR`` category, type and technique by frame kind (type values are the ESO ones).
_ESO_DPR = {"bias": ("CALIB", "BIAS"), "dark": ("CALIB", "DARK"), "flat": ("CALIB", "FLAT"),
            "lampflat": ("CALIB", "FLAT,LAMP|LAMP,FLAT"), "arc": ("CALIB", "WAVE,LAMP|WAVE"),
            "light": ("SCIENCE", "OBJECT|OBJECT|STD")}
_ESO_FLATS = {"sky": "FLAT,SKY", "dome": "FLAT,DOME", "panel": "FLAT,LAMP",
              "internal": "FLAT,LAMP"}


def eso_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """ESO data flow system: ``HIERARCH ESO DPR CATG/TYPE/TECH``, ``ORIGIN = 'ESO'``,
    ``MJD-OBS``, RA/DEC in degrees and detector keywords under ``HIERARCH ESO DET``."""
    s = f.settings
    catg, dpr_type = _ESO_DPR[f.kind]
    dpr_type = str(rng.choice(dpr_type.split("|")))
    if f.kind == "flat":
        dpr_type = _ESO_FLATS.get(str(f.extra.get("subtype")), "FLAT")
    spectro = "grating" in f.extra or f.kind in ("arc", "lampflat")
    tech = ("ECHELLE" if f.extra.get("echelle") else "SPECTRUM") if spectro else str(
        rng.choice(["IMAGE", "IMAGE", "IMAGE,JITTER"]))
    moment = Time(f.date_obs, scale="utc")
    cards: list[Card] = [
        ("ORIGIN", "ESO", "European Southern Observatory"),
        ("TELESCOP", str(rng.choice(["ESO-NTT", "ESO-3P6", "ESO-VLT-U1", "ESO-VLT-U2"])),
         "ESO telescope designation"),
        ("INSTRUME", str(rng.choice(["UVES", "HARPS", "FEROS"] if f.extra.get("echelle") else
                                    ["EFOSC", "FORS2", "SOFI", "XSHOOTER"])), "Instrument used"),
        ("OBJECT", f.target or dpr_type, "Original target"),
        ("RA", round(f.ra_deg, 6), "[deg] Telescope pointing"),
        ("DEC", round(f.dec_deg, 6), "[deg] Telescope pointing"),
        ("EQUINOX", 2000.0, "Standard FK5"),
        ("EXPTIME", s.exptime_s, "Integration time"),
        ("MJD-OBS", round(moment.mjd, 8), "Obs start"),
        ("DATE-OBS", iso(f.date_obs), "Date of observation"),
        ("ESO DPR CATG", catg, "Observation category"),
        ("ESO DPR TYPE", dpr_type, "Observation type"),
        ("ESO DPR TECH", tech, "Observation technique"),
        ("ESO DET CHIP1 NAME", f.camera.name, "Detector chip name"),
        ("ESO DET WIN1 BINX", s.binning, "Binning factor along X"),
        ("ESO DET WIN1 BINY", s.binning, "Binning factor along Y"),
        ("ESO DET OUT1 CONAD", round(1.0 / s.e_per_adu, 3), "Conversion ADUs to electrons"),
        ("ESO DET OUT1 RON", round(s.read_noise_e, 2), "Readout noise per output (e-)"),
        ("ESO DET OUT1 PRSCX", int(f.extra.get("overscan", 0)), "Prescan region in X"),
        ("ESO TPL ID", "_".join(("SPEC" if spectro else "IMG", catg.lower(),
                                 dpr_type.split(",")[0].lower())), "Template signature ID"),
    ]
    if f.filter_name:
        cards.append(("ESO INS FILT1 NAME", f.filter_name, "Filter name"))
    if "grating" in f.extra:
        cards.append(("ESO INS GRIS1 NAME", f"Gr#{int(rng.integers(1, 20))}", "Grism name"))
    return cards


#: HST-like ``IMAGETYP`` / ``TARGNAME`` by frame kind (``EXT``: an external target).
_HST_TARGETS = {"bias": "BIAS", "dark": "DARK", "flat": "CCDFLAT", "lampflat": "CCDFLAT",
                "arc": "WAVE"}
#: Solar missions: (TELESCOP, INSTRUME, band in angstrom, arcsec per pixel of the full sensor).
#: The first three image the extreme ultraviolet, HMI the white-light disc, Hinode granulation.
SOLAR_MISSIONS = (("SDO/AIA", "AIA_3", (171, 193, 211, 304, 335, 94, 131), 0.6),
                  ("SOHO", "EIT", (171, 195, 284, 304), 2.63),
                  ("TRACE", "TRACE", (171, 195, 284), 0.5),
                  ("SDO/HMI", "HMI_FRONT2", (6173,), 0.5),
                  ("HINODE", "SOT/BFI", (4305, 5550), 0.054))


def space_cards(f: Facts, rng: np.random.Generator, types: dict[str, str]) -> list[Card]:
    """Space missions: HST-like raw files (``FILETYPE``, ``IMAGETYP``, ``OBSTYPE``,
    ``OBSMODE``, ``TARGNAME``, ``OPT_ELEM``, ``APERTURE``, ``DATE-OBS`` and ``TIME-OBS``), or
    solar missions (``WAVELNTH``, ``WAVEUNIT``, ``IMG_TYPE``, ``CDELT1``, ``RSUN_OBS``)."""
    s = f.settings
    mission = f.extra.get("mission")
    if mission is not None:
        telescope, instrument, band, scale = mission
        img_type = {"bias": "DARK", "dark": "DARK"}.get(f.kind, "LIGHT")
        return [
            ("TELESCOP", telescope, "Observatory"), ("INSTRUME", instrument, "Instrument"),
            ("DATE-OBS", iso(f.date_obs, 2), "Start of exposure"),
            ("T_OBS", iso(f.date_obs + dt.timedelta(seconds=s.exptime_s / 2), 2),
             "Mid-exposure"),
            ("WAVELNTH", int(band), "[angstrom] Wavelength of the passband"),
            ("WAVEUNIT", "angstrom", ""), ("EXPTIME", s.exptime_s, "[s] Exposure duration"),
            ("IMG_TYPE", img_type, "Image type"),
            ("OBJECT", str(rng.choice(["Full Sun", "full FOV", "Sun", "Active region"])), ""),
            ("CDELT1", round(scale * s.binning, 4), "[arcsec] Pixel size in x"),
            ("CDELT2", round(scale * s.binning, 4), "[arcsec] Pixel size in y"),
            ("CRPIX1", round(f.width / 2 + float(rng.normal(0, 3)), 2), "Sun centre x"),
            ("CRPIX2", round(f.height / 2 + float(rng.normal(0, 3)), 2), "Sun centre y"),
            ("RSUN_OBS", round(float(rng.uniform(944, 976)), 2), "[arcsec] Solar radius"),
            ("QUALITY", 0, "Quality flags"), ("CCDTEMP", round(s.sensor_temp_c, 1), "[C]"),
        ]
    spectro = "grating" in f.extra or f.kind in ("arc", "lampflat")
    instrument = "STIS" if spectro else str(rng.choice(["WFC3", "ACS", "STIS"]))
    target = _HST_TARGETS.get(f.kind) or (f.target or "UNKNOWN").upper().replace(" ", "")
    root = "o" if instrument == "STIS" else ("i" if instrument == "WFC3" else "j")
    root += "".join(str(c) for c in rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 8))
    start = Time(f.date_obs, scale="utc")
    cards: list[Card] = [
        ("FILENAME", f"{root}_raw.fits", "Name of file"),
        ("FILETYPE", "SCI" if f.kind != "arc" else "WAV", "Type of data found in data file"),
        ("TELESCOP", "HST", "Telescope used to acquire data"),
        ("INSTRUME", instrument, "Identifier for instrument used to acquire data"),
        ("ROOTNAME", root, "Rootname of the observation set"),
        ("IMAGETYP", types[f.kind], "Type of exposure identifier"),
        ("PRIMESI", instrument, "Instrument designated as prime"),
        ("TARGNAME", target, "Proposer's target name"),
        ("RA_TARG", round(f.ra_deg, 6), "[deg] Right ascension of the target"),
        ("DEC_TARG", round(f.dec_deg, 6), "[deg] Declination of the target"),
        ("DATE-OBS", start.isot[:10], "UT date of start of observation (yyyy-mm-dd)"),
        ("TIME-OBS", start.isot[11:19], "UT time of start of observation (hh:mm:ss)"),
        ("EXPSTART", round(start.mjd, 8), "Exposure start time (Modified Julian Date)"),
        ("EXPTIME", s.exptime_s, "Exposure duration (seconds)--calculated"),
        ("OBSTYPE", "SPECTROSCOPIC" if spectro else "IMAGING", "Observation type"),
        ("OBSMODE", str(rng.choice(["ACCUM", "ACCUM", "ACQ"])) if f.kind == "light"
         else "ACCUM", "Operating mode"),
        ("DETECTOR", "CCD" if instrument == "STIS" else ("UVIS" if instrument == "WFC3"
                                                        else "WFC"), "Detector in use"),
        ("CCDGAIN", round(s.e_per_adu), "Commanded gain of CCD"),
        ("CCDAMP", str(rng.choice(["A", "B", "C", "D"])), "CCD amplifier read out"),
        ("BINAXIS1", s.binning, "Axis 1 data bin size in unbinned pixels"),
        ("BINAXIS2", s.binning, "Axis 2 data bin size in unbinned pixels"),
    ]
    if spectro:
        grating = "E230M" if f.extra.get("echelle") else str(rng.choice(["G430L", "G750L",
                                                                         "G430M", "G140L"]))
        cards += [("OPT_ELEM", grating, "Optical element in use"),
                  ("APERTURE", str(rng.choice(["52X0.2", "52X2", "0.2X0.2", "52X0.1"])),
                   "Aperture name")]
        if f.kind in ("arc", "lampflat"):
            cards.append(("SCLAMP", "HITM1" if f.kind == "arc" else "TUNGSTEN",
                          "Lamp status"))
    elif f.filter_name:
        cards.append(("FILTER", f.filter_name, "Filter"))
    return cards


@dataclass(frozen=True)
class Program:
    """A capture program: its frame-type values, header writer and file-name style.

    ``types`` maps :data:`KINDS` to the value it writes (synonyms separated by ``|`` are
    picked at random); ``extensions`` are the FITS extensions it uses, with weights.
    ``type_keys``: the keywords whose values defects change (default: every frame-type keyword
    present); ``group``: who runs it (``amateur``, ``observatory`` or ``space``).
    """

    name: str
    types: dict[str, str]
    cards: Callable[[Facts, np.random.Generator, dict[str, str]], list[Card]]
    extensions: tuple[tuple[str, float], ...]
    light_value: str
    type_keys: tuple[str, ...] | None = None
    group: str = "amateur"

    def type_values(self, rng: np.random.Generator) -> dict[str, str]:
        """One value per kind, synonyms resolved with ``rng``."""
        return {kind: str(rng.choice(value.split("|"))) for kind, value in self.types.items()}


def _types(bias, dark, flat, light, arc=None, lampflat=None) -> dict[str, str]:
    return {"bias": bias, "dark": dark, "flat": flat, "light": light,
            "arc": arc or light, "lampflat": lampflat or flat}


PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("maxim", _types("Bias Frame", "Dark Frame", "Flat Field", "Light Frame"),
            maxim_cards, ((".fit", 0.5), (".fts", 0.25), (".fits", 0.25)), "Light Frame"),
    Program("sgp", _types("Bias Frame", "Dark Frame", "Flat Frame", "Light Frame"),
            sgp_cards, ((".fit", 0.8), (".fits", 0.2)), "Light Frame"),
    Program("nina", _types("BIAS", "DARK", "FLAT", "LIGHT"),
            nina_cards, ((".fits", 0.9), (".fit", 0.1)), "LIGHT"),
    Program("apt", _types("Bias", "Dark", "Flat", "Light"),
            apt_cards, ((".fit", 0.6), (".fits", 0.4)), "Light"),
    Program("sharpcap", _types("Bias", "Dark", "Flat", "Light"),
            sharpcap_cards, ((".fits", 1.0),), "Light"),
    Program("ekos", _types("Bias", "Dark", "Flat", "Light"),
            ekos_cards, ((".fits", 1.0),), "Light"),
    Program("asiair", _types("Bias", "Dark", "Flat", "Light"),
            asiair_cards, ((".fit", 1.0),), "Light"),
    Program("firecapture", _types("", "", "", ""),
            firecapture_cards, ((".fits", 0.5), (".fit", 0.3), (".FIT", 0.2)), ""),
    Program("observatory", _types("BIAS|ZERO|BIAS", "DARK", "FLAT|DOMEFLAT|SKYFLAT",
                                  "OBJECT|EXPOSE|SCIENCE", "ARC|COMP|LAMP|WAVE",
                                  "LAMPFLAT|LAMP-FLAT|FLAT"),
            observatory_cards, ((".fits", 0.8), (".fts", 0.2)), "OBJECT", group="observatory"),
    Program("iraf", _types("zero", "dark", "flat|dflat|sflat", "object", "comp", "flat"),
            iraf_cards, ((".fits", 0.85), (".fts", 0.1), (".fit", 0.05)), "object",
            type_keys=("IMAGETYP",), group="observatory"),
    Program("eso", _types("BIAS", "DARK", "FLAT", "OBJECT", "WAVE,LAMP", "FLAT,LAMP"),
            eso_cards, ((".fits", 1.0),), "OBJECT", type_keys=("ESO DPR TYPE",),
            group="observatory"),
    Program("space", _types("BIAS", "DARK", "FLAT", "EXT", "WAVECAL", "FLAT"),
            space_cards, ((".fits", 1.0),), "EXT", type_keys=("IMAGETYP", "IMG_TYPE"),
            group="space"),
)}


@contextlib.contextmanager
def quiet_cards() -> Iterator[None]:
    """Silence astropy's notices that a long value pushed a card's comment past 80 characters
    (it truncates the comment, as capture programs do) and that a long keyword became a
    ``HIERARCH`` card (as ESO's are meant to)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Card is too long",
                                category=fits.verify.VerifyWarning)
        warnings.filterwarnings("ignore", message=".*a HIERARCH card will be created",
                                category=fits.verify.VerifyWarning)
        yield


def build_header(program: Program, facts: Facts, rng: np.random.Generator) -> fits.Header:
    """The header ``program`` writes for ``facts`` (no defects yet)."""
    types = program.type_values(rng)
    header = fits.Header()
    with quiet_cards():
        for key, value, comment in program.cards(facts, rng, types):
            if value is None or value == "":
                continue
            if isinstance(value, (np.floating, np.integer)):
                value = value.item()
            header[key] = (value, comment)
    return header


def apply_defects(header: fits.Header, facts: Facts, program: Program,
                  rng: np.random.Generator) -> list[str]:
    """Damage ``header`` in place as real archives are damaged; returns the defect names.

    ``missing_type`` (15 %): every frame-type keyword removed. ``default_light`` (10 %, for
    calibration frames and arcs): saved with the program's light type. ``wrong_type`` (3 %):
    bias typed as dark (the Lick Kast habit), short darks as bias, flats as darks, lights as
    flats. ``lowercase_type`` (6 %), ``exptime_text`` (4 %: 'N/A', '', '120 s' ...),
    ``exptime_ms`` (2 %), ``missing_exptime`` (4 %), ``temperature_text`` (5 %),
    ``missing_optics`` (8 %).
    """
    with quiet_cards():
        return _apply_defects(header, facts, program, rng)


def _apply_defects(header: fits.Header, facts: Facts, program: Program,
                   rng: np.random.Generator) -> list[str]:
    defects: list[str] = []
    present = [k for k in FRAME_TYPE_KEYS if k in header]
    type_keys = [k for k in program.type_keys or FRAME_TYPE_KEYS if k in header]
    roll = rng.random()
    if type_keys and roll < 0.15:
        for key in present:
            del header[key]
        defects.append("missing_type")
    elif type_keys and roll < 0.26:
        if facts.kind != "light" and program.light_value:
            for key in type_keys:
                suffix = " Frame" if (str(header[key]).endswith(" Frame")
                                      and "Frame" not in program.light_value) else ""
                header[key] = program.light_value + suffix
            defects.append("default_light")
    elif type_keys and roll < 0.29:
        swap = {"bias": "dark", "dark": "bias", "flat": "dark", "lampflat": "light",
                "light": "flat", "arc": "flat"}[facts.kind]
        value = program.type_values(rng)[swap]
        for key in type_keys:
            header[key] = value
        defects.append("wrong_type")
    type_keys = [k for k in program.type_keys or FRAME_TYPE_KEYS if k in header]
    if type_keys and rng.random() < 0.06:
        for key in type_keys:
            header[key] = str(header[key]).lower()
        defects.append("lowercase_type")
    exposure_keys = [k for k in EXPOSURE_KEYS if k in header]
    roll = rng.random()
    if exposure_keys and roll < 0.04:
        text = str(rng.choice(["N/A", "", "unknown", f"{facts.settings.exptime_s:g} s",
                               "1/250" if facts.settings.exptime_s < 0.01 else "NaN"]))
        for key in exposure_keys:
            header[key] = text
        defects.append("exptime_text")
    elif exposure_keys and roll < 0.06:
        header[exposure_keys[0]] = round(facts.settings.exptime_s * 1000.0, 3)
        defects.append("exptime_ms")
    elif exposure_keys and roll < 0.10:
        for key in exposure_keys:
            del header[key]
        defects.append("missing_exptime")
    temperature_keys = [k for k in TEMPERATURE_KEYS if k in header]
    if temperature_keys and rng.random() < 0.05:
        value = float(header[temperature_keys[0]])
        header[temperature_keys[0]] = str(rng.choice([f"{value:.1f}C", f"{value:.2f}",
                                                      f"{value:+.0f} C", "N/A"]))
        defects.append("temperature_text")
    optics_keys = [k for k in OPTICS_KEYS if k in header]
    if optics_keys and rng.random() < 0.08:
        for key in optics_keys:
            del header[key]
        defects.append("missing_optics")
    return defects


def _safe(name: str | None) -> str:
    return (name or "Target").replace(" ", "_").replace("/", "-")


def safe_file_name(name: str) -> str:
    """``name`` without path separators and characters Windows forbids."""
    for bad in '/\\:*?"<>|':
        name = name.replace(bad, "-")
    return name


def file_name(program: Program, facts: Facts, rng: np.random.Generator) -> str:
    """File name stem (no extension) as ``program`` names ``facts``' frame, numbered by
    ``facts.index`` (1-based in names). Spectroscopists often name files themselves."""
    n = facts.index + 1
    kind = facts.kind
    t = facts.settings.exptime_s
    word = {"bias": "Bias", "dark": "Dark", "flat": "Flat", "light": "Light", "arc": "Light",
            "lampflat": "Flat"}[kind]
    target = _safe(facts.target)
    stamp = facts.date_obs.strftime("%Y-%m-%d_%H-%M-%S")
    temp = f"{facts.settings.sensor_temp_c:.0f}C"
    amateur_spectrum = facts.class_name == "spectrum" and program.name != "observatory"
    if amateur_spectrum and rng.random() < 0.6:
        if kind == "arc":
            lamp = str(facts.extra.get("lamp", "neon")).split("+")[0].lower().replace(" ", "_")
            return str(rng.choice([f"dados_arc_{n:04d}", f"{lamp}_{n:03d}",
                                   f"{target}_calib_{n:03d}"]))
        grating = str(facts.extra.get("grating", "200")).split()[0]
        return str(rng.choice([f"{target}_dados_{t:g}s_{n:04d}",
                               f"{target}_{grating}lmm_{n:03d}", f"dados_{target}_{n:04d}"]))
    if program.name == "maxim":
        if kind == "bias":
            return f"Bias_{n:04d}"
        if kind == "dark":
            return f"Dark_{t:g}s_{temp}_{n:04d}"
        if kind in ("flat", "lampflat"):
            return f"Flat_{facts.filter_name or 'L'}_{n:04d}"
        return str(rng.choice([f"Light_{target}_{t:g}s_{n:04d}",
                               f"{target}-{n:03d}{facts.filter_name or ''}"]))
    if program.name == "sgp":
        binning = f"{facts.settings.binning}x{facts.settings.binning}"
        if kind == "bias":
            return f"Bias_{binning}_frame{n}"
        if kind == "dark":
            return f"Dark_{t:g}sec_{binning}_frame{n}"
        if kind in ("flat", "lampflat"):
            return f"Flat_{facts.filter_name or 'L'}_{binning}_frame{n}"
        return f"{target}_{t:g}sec_{binning}_{facts.filter_name or 'L'}_frame{n}"
    if program.name == "nina":
        label = {"arc": "LIGHT", "lampflat": "FLAT"}.get(kind, kind.upper())
        return f"{stamp}_{label}_{target if kind == 'light' else ''}_{t:.2f}s_{n:04d}".replace(
            "__", "_")
    if program.name == "apt":
        letter = {"bias": "B", "dark": "D", "flat": "F", "lampflat": "F"}.get(kind, "L")
        if facts.camera.kind == "dslr":
            return f"{letter}_{n:04d}_ISO{facts.settings.gain}_{t:g}s__{temp}"
        settings = facts.settings
        return f"{letter}_{n:04d}_{t:g}s_Bin{settings.binning}_{temp}_gain{settings.gain}"
    if program.name == "sharpcap":
        clock = facts.date_obs.strftime("%H_%M_%S")
        if kind == "light":
            return f"{target}_{clock}_{n:05d}" if facts.target else f"Capture_{n:05d}"
        return f"{word}_{clock}_{n:05d}"
    if program.name == "ekos":
        exposure = f"{t:g}".replace(".", "_")
        prefix = f"{word}_{target}" if kind == "light" else word
        return f"{prefix}_{exposure}_secs_{facts.date_obs.strftime('%Y-%m-%dT%H-%M-%S')}_{n:03d}"
    if program.name == "asiair":
        camera = facts.camera.name.replace("ZWO ASI", "").replace(" Pro", "").replace(" ", "")
        gain = facts.settings.gain if facts.settings.gain is not None else 0
        prefix = f"Light_{target}" if kind == "light" else word
        stamp = facts.date_obs.strftime("%Y%m%d-%H%M%S")
        return (f"{prefix}_{t:.1f}s_Bin{facts.settings.binning}_{camera}_gain{gain}_{stamp}_"
                f"{facts.settings.sensor_temp_c:.1f}C_{n:04d}")
    if program.name == "firecapture":
        if kind == "light":
            return str(rng.choice([f"{target.lower()}_{n:04d}",
                                   f"{facts.date_obs.strftime('%Y-%m-%d-%H%M')}_{n % 10}-"
                                   f"{facts.filter_name or 'L'}-{target}_{n:04d}"]))
        return f"{word.lower()}_{n:04d}"
    prefix = str(rng.choice(["b", "r", "obs", "a"]))
    return str(rng.choice([f"{prefix}{n + 1000 * int(rng.integers(0, 9)):04d}",
                           f"{facts.date_obs.strftime('%Y%m%d')}_{n:04d}"]))
