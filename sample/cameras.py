"""Camera models: sensor properties, per-frame settings and the readout chain.

A :class:`Camera` is one sensor as amateurs and observatories use it (cooled CMOS, planetary
CMOS, CCD, DSLR, professional CCD). :func:`draw_settings` picks what the user asked of it for one
frame (exposure, temperature, gain, offset, binning, 8-bit mode) and :func:`read_out` turns the
expected photo-electrons of a scene into the ADU the driver delivers: dark current with its
temperature law, hot pixels, amp glow, shot noise, cosmic rays, full-well saturation (with charge
bleeding on CCDs without anti-blooming), read noise, fixed column pattern, row banding, the ADC
pedestal, quantisation and the left-shift of 12/14-bit ADCs into 16-bit words.

Fixed-pattern defects (column offsets, hot pixels, bad columns, amp-glow position) belong to the
camera, not the frame: they are laid out once per camera on a virtual full sensor of
:data:`SENSOR_SIDE` pixels and every frame is a window of it, so they recur between frames of
the same camera as they do in real archives.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

#: Side (px) of the virtual full sensor on which a camera's fixed-pattern defects are laid out.
SENSOR_SIDE = 4096

#: Dark current doubles every this many degrees Celsius (silicon, near room temperature).
DARK_DOUBLING_C = 6.3


@dataclass(frozen=True)
class Camera:
    """Physical and electronic properties of one sensor.

    Gains are native e-/ADU and read noise e- RMS, given at the lowest and the highest gain
    setting (CMOS cameras interpolate between them log-linearly; CCDs have one fixed gain).
    Pedestals are native ADU: ``pedestal_adu + pedestal_per_offset * OFFSET``.
    Dark current and hot-pixel rates are e-/s/px at 0 C; amp glow e-/s/px at its source.
    """

    name: str                            # INSTRUME value as drivers write it
    kind: str                            # cmos | ccd | dslr
    adc_bits: int                        # native ADC depth
    scaled_to_16bit: bool                # driver left-shifts native ADU into 16-bit words
    bayer: str | None                    # colour mosaic (RGGB, GRBG, ...) or None for mono
    cooled: bool
    pixel_um: float
    full_well_e: float
    gain_e_per_adu: tuple[float, float]  # at lowest, highest gain setting
    read_noise_e: tuple[float, float]    # at lowest, highest gain setting
    gain_setting: tuple[int, int] | None  # driver GAIN range; None: fixed gain (CCD)
    offset_setting: tuple[int, int] | None  # driver OFFSET range; None: fixed pedestal
    pedestal_adu: float
    pedestal_per_offset: float
    dark_e_s_0c: float
    hot_fraction: float                  # share of pixels with strongly raised dark current
    amp_glow_e_s: float                  # glow at its source, e-/s/px; 0: none
    column_noise_e: float                # RMS of the fixed per-column offsets
    row_noise_e: float                   # RMS of per-frame row banding
    bad_columns: int = 0
    overscan_px: int = 0                 # unexposed columns read out on the right (pro CCDs)
    blooming: bool = False               # charge bleeds along columns above full well
    eight_bit_mode: bool = False         # has a high-speed 8-bit readout (planetary cameras)
    min_exposure_s: float = 0.0          # shortest exposure: what a "bias" really is
    cryogenic: bool = False              # liquid-nitrogen dewar (observatory CCDs)

    @property
    def is_colour(self) -> bool:
        return self.bayer is not None


def _cmos(name, bits, scaled, bayer, cooled, pixel, well, gain, noise, gain_range, offset_range,
          pedestal_per_offset, dark, hot, glow, col, row, **extra) -> Camera:
    return Camera(name=name, kind="cmos", adc_bits=bits, scaled_to_16bit=scaled, bayer=bayer,
                  cooled=cooled, pixel_um=pixel, full_well_e=well, gain_e_per_adu=gain,
                  read_noise_e=noise, gain_setting=gain_range, offset_setting=offset_range,
                  pedestal_adu=0.0, pedestal_per_offset=pedestal_per_offset, dark_e_s_0c=dark,
                  hot_fraction=hot, amp_glow_e_s=glow, column_noise_e=col, row_noise_e=row,
                  **extra)


def _ccd(name, pixel, well, gain, noise, pedestal, dark, hot, col, **extra) -> Camera:
    return Camera(name=name, kind="ccd", adc_bits=16, scaled_to_16bit=False, bayer=None,
                  cooled=True, pixel_um=pixel, full_well_e=well, gain_e_per_adu=(gain, gain),
                  read_noise_e=(noise, noise), gain_setting=None, offset_setting=None,
                  pedestal_adu=pedestal, pedestal_per_offset=0.0, dark_e_s_0c=dark,
                  hot_fraction=hot, amp_glow_e_s=0.0, column_noise_e=col, row_noise_e=0.15,
                  **extra)


#: The camera catalogue, by INSTRUME name. Numbers follow the makers' data sheets loosely.
CAMERAS: dict[str, Camera] = {c.name: c for c in (
    _cmos("ZWO ASI2600MM Pro", 16, False, None, True, 3.76, 50000, (0.78, 0.08), (3.3, 1.0),
          (0, 300), (0, 100), 10.0, 0.006, 2e-5, 0.0, 0.3, 0.6, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI2600MC Pro", 16, False, "RGGB", True, 3.76, 50000, (0.78, 0.08), (3.3, 1.0),
          (0, 300), (0, 100), 10.0, 0.006, 3e-5, 0.0, 0.3, 0.6, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI294MC Pro", 14, True, "RGGB", True, 4.63, 63700, (3.9, 0.12), (7.3, 1.2),
          (0, 570), (0, 80), 1.0, 0.05, 3e-4, 0.8, 0.5, 0.9, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI1600MM Pro", 12, True, None, True, 3.8, 20000, (5.0, 0.2), (3.6, 1.2),
          (0, 300), (0, 60), 1.0, 0.03, 2e-4, 0.4, 0.5, 0.8, min_exposure_s=3.2e-5),
    _cmos("QHY268M", 16, False, None, True, 3.76, 51000, (0.9, 0.3), (3.5, 1.2),
          (0, 100), (0, 100), 28.0, 0.008, 4e-5, 0.0, 0.35, 0.5, min_exposure_s=5e-5),
    _cmos("ZWO ASI224MC", 12, True, "RGGB", False, 3.75, 19200, (3.0, 0.06), (3.0, 0.8),
          (0, 600), (0, 60), 1.0, 0.012, 1.5e-4, 0.6, 0.5, 0.7, eight_bit_mode=True,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI290MM Mini", 12, True, None, False, 2.9, 14600, (3.6, 0.06), (3.2, 1.0),
          (0, 600), (0, 60), 1.0, 0.01, 1e-4, 0.3, 0.4, 0.6, eight_bit_mode=True,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI462MC", 12, True, "RGGB", False, 2.9, 11200, (2.8, 0.07), (2.7, 0.7),
          (0, 570), (0, 60), 1.0, 0.01, 1e-4, 0.25, 0.45, 0.6, eight_bit_mode=True,
          min_exposure_s=3.2e-5),
    _cmos("QHY5III462C", 12, True, "GBRG", False, 2.9, 11000, (2.6, 0.08), (2.8, 0.8),
          (0, 100), (0, 200), 0.5, 0.012, 1.5e-4, 0.3, 0.45, 0.7, eight_bit_mode=True,
          min_exposure_s=5e-5),
    Camera(name="Canon EOS 600D (modified)", kind="dslr", adc_bits=14, scaled_to_16bit=False,
           bayer="RGGB", cooled=False, pixel_um=4.3, full_well_e=26000,
           gain_e_per_adu=(5.5, 0.17), read_noise_e=(25.0, 2.6), gain_setting=(100, 3200),
           offset_setting=None, pedestal_adu=2048.0, pedestal_per_offset=0.0, dark_e_s_0c=0.02,
           hot_fraction=1e-4, amp_glow_e_s=0.15, column_noise_e=1.0, row_noise_e=2.0,
           min_exposure_s=1 / 4000),
    _ccd("SBIG ST-8300M", 5.4, 25500, 0.37, 9.3, 1000.0, 0.05, 1e-4, 0.6, bad_columns=2,
         min_exposure_s=0.09),
    _ccd("Atik 414EX", 6.45, 17000, 0.27, 4.0, 340.0, 0.008, 5e-5, 0.4, bad_columns=1,
         min_exposure_s=0.001),
    _ccd("SX Trius SX-694", 4.54, 20000, 0.3, 5.0, 900.0, 0.01, 5e-5, 0.5, bad_columns=1,
         min_exposure_s=0.001),
    # Liquid-nitrogen cooled observatory CCDs: negligible dark current at their -110 C, no
    # anti-blooming gate, overscan strips, many cosmic rays on large pixels.
    _ccd("e2v CCD42-40", 13.5, 150000, 1.2, 3.5, 950.0, 150.0, 2e-5, 0.3, bad_columns=2,
         overscan_px=32, blooming=True, cryogenic=True),
    _ccd("SITe SI-424A", 24.0, 300000, 2.6, 7.0, 1900.0, 150.0, 1e-5, 0.5, bad_columns=1,
         overscan_px=64, blooming=True, cryogenic=True),
    _ccd("Fairchild CCD 3041", 15.0, 100000, 1.6, 4.5, 600.0, 150.0, 3e-5, 0.4, bad_columns=3,
         overscan_px=48, blooming=True, cryogenic=True),
)}

#: Cameras whose drivers are used for high-frame-rate planetary capture.
PLANETARY_CAMERAS = tuple(n for n, c in CAMERAS.items() if c.eight_bit_mode)


@dataclass(frozen=True)
class Settings:
    """What one frame was taken with.

    ``e_per_adu`` and ``read_noise_e`` follow from the gain; ``pedestal_adu`` from the offset.
    All ADU are in the readout's own units (native bits, or 8 bits in 8-bit mode).
    ``origin`` is the window's top-left corner on the virtual full sensor.
    """

    exptime_s: float
    sensor_temp_c: float
    set_temp_c: float | None
    gain: int | None
    offset: int | None
    e_per_adu: float
    read_noise_e: float
    pedestal_adu: float
    binning: int
    eight_bit: bool
    origin: tuple[int, int]

    def output_max(self, camera: Camera) -> int:
        """Largest ADU the driver can deliver (255, native full scale, or 65535 when scaled)."""
        if self.eight_bit:
            return 255
        return 65535 if camera.scaled_to_16bit else 2 ** camera.adc_bits - 1

    def output_scale(self, camera: Camera) -> int:
        """Factor from readout ADU to delivered ADU (the driver's left shift)."""
        if self.eight_bit or not camera.scaled_to_16bit:
            return 1
        return 2 ** (16 - camera.adc_bits)

    def full_scale_e(self, camera: Camera) -> float:
        """Electrons per pixel that reach ADC saturation or full well, whichever comes first."""
        adc_max = 255 if self.eight_bit else 2 ** camera.adc_bits - 1
        return min((adc_max - self.pedestal_adu) * self.e_per_adu,
                   camera.full_well_e * self.binning ** 2)


def draw_temperature(camera: Camera, rng: np.random.Generator,
                     warm: bool = False) -> tuple[float, float | None]:
    """Sensor and set-point temperature in C. Cooled cameras sometimes miss their set point."""
    if camera.cryogenic:
        set_temp = float(rng.choice([-120.0, -110.0, -100.0]))
        return set_temp + float(rng.normal(0, 0.3)), set_temp
    ambient = float(rng.uniform(-5, 28))
    if not camera.cooled:
        return ambient + float(rng.uniform(2, 8)) * (1.0 if warm else 0.6), None
    set_temp = float(rng.choice([-25.0, -20.0, -15.0, -10.0, -10.0, -5.0, 0.0, 5.0]))
    reachable = ambient - (35.0 if camera.kind == "cmos" else 30.0)
    if set_temp < reachable:  # cooler at full power cannot reach the set point
        return reachable + float(rng.uniform(0, 3)), set_temp
    return set_temp + float(rng.normal(0, 0.2)), set_temp


def draw_settings(camera: Camera, rng: np.random.Generator, exptime_s: float, *,
                  high_gain: bool = False, eight_bit: bool = False, binning: int = 1,
                  shape: tuple[int, int] = (512, 512)) -> Settings:
    """Gain, offset, temperature and window for one frame of ``exptime_s`` seconds.

    ``high_gain`` biases the gain towards the top of the range (planetary capture);
    ``shape`` is the frame size, used to place the window on the virtual sensor.
    """
    temp, set_temp = draw_temperature(camera, rng, warm=exptime_s > 60)
    # Long exposures are taken near unity gain; planetary video at high gain.
    position = float(rng.uniform(0.45, 1.0) if high_gain else 0.75 * rng.beta(1.5, 2.5))
    gain = None
    if camera.gain_setting is not None:
        low, high = camera.gain_setting
        gain = int(round(low + position * (high - low)))
        if camera.kind == "dslr":  # ISO in full stops
            gain = int(2 ** round(np.log2(max(gain, 100) / 100)) * 100)
            position = np.log2(gain / low) / np.log2(high / low)
    g_lo, g_hi = camera.gain_e_per_adu
    r_lo, r_hi = camera.read_noise_e
    e_per_adu = float(np.exp(np.log(g_lo) + position * (np.log(g_hi) - np.log(g_lo))))
    read_noise = float(np.exp(np.log(r_lo) + position * (np.log(r_hi) - np.log(r_lo))))
    offset = None
    pedestal = camera.pedestal_adu
    if camera.offset_setting is not None:
        low, high = camera.offset_setting
        offset = int(rng.integers(low + (high - low) // 10, high + 1))
        pedestal += camera.pedestal_per_offset * offset
    else:
        pedestal *= float(rng.uniform(0.97, 1.03))  # CCD bias levels drift slowly
    if eight_bit:
        shift = 2 ** (camera.adc_bits - 8)
        e_per_adu *= shift
        pedestal /= shift
    height, width = shape
    origin = (int(rng.integers(0, max(1, SENSOR_SIDE - height - 64))),
              int(rng.integers(0, max(1, SENSOR_SIDE - width - 64))))
    return Settings(exptime_s=float(exptime_s), sensor_temp_c=temp, set_temp_c=set_temp,
                    gain=gain, offset=offset, e_per_adu=e_per_adu, read_noise_e=read_noise,
                    pedestal_adu=pedestal, binning=binning, eight_bit=eight_bit, origin=origin)


@dataclass(frozen=True)
class FixedPattern:
    """A camera's permanent defects on the virtual full sensor.

    ``columns``: per-column offset in units of ``column_noise_e``; ``hot_*``: hot-pixel
    coordinates and dark rates (e-/s at 0 C); ``bad_columns``: column index and extra charge
    (e-/s at 0 C); ``glow_sources``: amp-glow positions as fractions of the frame (y, x).
    """

    columns: np.ndarray
    hot_y: np.ndarray
    hot_x: np.ndarray
    hot_rate: np.ndarray
    bad_columns: np.ndarray
    bad_rate: np.ndarray
    glow_sources: tuple[tuple[float, float], ...]
    glow_length: float


@functools.lru_cache(maxsize=None)
def fixed_pattern(camera: Camera) -> FixedPattern:
    """The camera's defects, seeded by its name so they are the same in every run."""
    rng = np.random.default_rng(zlib.crc32(camera.name.encode()))
    n_hot = int(camera.hot_fraction * SENSOR_SIDE ** 2)
    corners = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0), (0.5, 0.0)]
    n_glow = int(rng.integers(1, 3))
    glow = tuple(corners[i] for i in rng.choice(len(corners), n_glow, replace=False))
    return FixedPattern(
        columns=rng.standard_normal(SENSOR_SIDE).astype(np.float32),
        hot_y=rng.integers(0, SENSOR_SIDE, n_hot),
        hot_x=rng.integers(0, SENSOR_SIDE, n_hot),
        # Hot-pixel dark rates span decades: a few are visible in 1 s, most only in long darks.
        hot_rate=np.exp(rng.uniform(np.log(0.02), np.log(40.0), n_hot)),
        bad_columns=rng.integers(0, SENSOR_SIDE, camera.bad_columns),
        bad_rate=np.exp(rng.uniform(np.log(0.5), np.log(20.0), camera.bad_columns)),
        glow_sources=glow,
        glow_length=float(rng.uniform(0.08, 0.25)),
    )


def dark_signal(camera: Camera, settings: Settings, shape: tuple[int, int]) -> np.ndarray:
    """Expected thermal electrons per pixel: uniform dark current, hot pixels, bad columns and
    amp glow, all proportional to exposure time and doubling every 6.3 C."""
    pattern = fixed_pattern(camera)
    t = settings.exptime_s
    thermal = 2.0 ** (settings.sensor_temp_c / DARK_DOUBLING_C)
    binned = settings.binning ** 2
    dark = np.full(shape, camera.dark_e_s_0c * thermal * t * binned, dtype=np.float32)
    oy, ox = settings.origin
    h, w = shape
    inside = ((pattern.hot_y >= oy) & (pattern.hot_y < oy + h)
              & (pattern.hot_x >= ox) & (pattern.hot_x < ox + w))
    dark[pattern.hot_y[inside] - oy, pattern.hot_x[inside] - ox] += (
        pattern.hot_rate[inside] * thermal * t)
    for column, rate in zip(pattern.bad_columns, pattern.bad_rate):
        if ox <= column < ox + w:
            dark[:, column - ox] += rate * thermal * t
    if camera.amp_glow_e_s > 0:
        # Glow is light from the readout amplifier, not thermal: it follows exposure time only.
        dark += amp_glow(shape, pattern, camera.amp_glow_e_s * t)
    return dark


def amp_glow(shape: tuple[int, int], pattern: FixedPattern, peak_e: float) -> np.ndarray:
    """Readout-amplifier glow: ``peak_e`` electrons at each source, falling off exponentially
    over ``glow_length`` of the frame diagonal."""
    h, w = shape
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    length = pattern.glow_length * np.hypot(h, w)
    glow = np.zeros(shape, dtype=np.float32)
    for fy, fx in pattern.glow_sources:
        distance = np.sqrt((yy - fy * (h - 1)) ** 2 + (xx - fx * (w - 1)) ** 2)
        glow += np.exp(-distance / length)
    return glow * np.float32(peak_e)


def add_cosmic_rays(electrons: np.ndarray, rng: np.random.Generator, exptime_s: float,
                    pixel_um: float, binning: int = 1) -> int:
    """Add muon and radioactivity hits in place: short straight tracks of 300..30000 e-.

    The rate, about 2 events / cm^2 / min at sea level, scales with sensor area and exposure;
    returns how many tracks were added. ``electrons`` is (H, W) or (C, H, W).
    """
    h, w = electrons.shape[-2:]
    area_cm2 = h * w * (pixel_um * binning * 1e-4) ** 2
    count = int(rng.poisson(area_cm2 * 2.0 * max(exptime_s, 0.0) / 60.0))
    count = min(count, 400)
    for _ in range(count):
        length = float(rng.exponential(3.0)) + 1.0
        angle = float(rng.uniform(0, np.pi))
        y0, x0 = float(rng.uniform(0, h)), float(rng.uniform(0, w))
        steps = np.linspace(0.0, length, int(np.ceil(length)) + 1)
        ys = np.clip((y0 + steps * np.sin(angle)).astype(int), 0, h - 1)
        xs = np.clip((x0 + steps * np.cos(angle)).astype(int), 0, w - 1)
        energy = float(np.exp(rng.uniform(np.log(300), np.log(30000))))
        deposit = energy / len(steps) * rng.uniform(0.5, 1.5, len(steps))
        if electrons.ndim == 3:
            electrons[:, ys, xs] += deposit.astype(np.float32)
        else:
            electrons[ys, xs] += deposit.astype(np.float32)
    return count


def bleed_columns(electrons: np.ndarray, full_well: float) -> None:
    """Spill charge above full well up and down its column, in place (CCDs without
    anti-blooming). Each saturated pixel fills ``excess / full_well`` neighbours on each side."""
    excess = electrons - full_well
    ys, xs = np.nonzero(excess > 0)
    if ys.size == 0:
        return
    order = np.argsort(excess[ys, xs])[::-1][:2000]
    h = electrons.shape[0]
    for y, x in zip(ys[order], xs[order]):
        reach = int(min(h, np.ceil(excess[y, x] / full_well / 2.0)))
        electrons[max(0, y - reach):min(h, y + reach + 1), x] = full_well
    np.minimum(electrons, full_well, out=electrons)


def read_out(camera: Camera, settings: Settings, electrons: np.ndarray | None,
             shape: tuple[int, int], rng: np.random.Generator, planes: int = 1) -> np.ndarray:
    """Expose and read one frame.

    ``electrons``: expected photo-electrons per pixel from the scene, (H, W) or (C, H, W), or
    None for a frame without light (bias, dark). ``planes`` > 1 reads a debayered colour frame.
    Returns int32 ADU as the driver delivers them, shape (H, W + overscan) or (C, H, W +
    overscan): 0..255 in 8-bit mode, otherwise native ADU, left-shifted to 16 bits when the
    camera's driver does so.
    """
    h, w = shape
    expected = dark_signal(camera, settings, shape)
    if electrons is not None:
        expected = electrons + expected
    if planes > 1 and expected.ndim == 2:
        expected = np.broadcast_to(expected, (planes, h, w))
    charge = rng.poisson(np.maximum(expected, 0.0)).astype(np.float32)
    add_cosmic_rays(charge, rng, settings.exptime_s, camera.pixel_um, settings.binning)
    well = camera.full_well_e * settings.binning ** 2
    if camera.blooming and charge.ndim == 2:
        bleed_columns(charge, well)
    np.minimum(charge, well, out=charge)
    # Row banding varies from frame to frame in strength, and runs on through the overscan.
    rows = rng.normal(0.0, camera.row_noise_e * rng.uniform(0.2, 1.5), (h, 1)).astype(np.float32)
    adu = _amplify(camera, settings, charge, rows, rng)
    if camera.overscan_px:
        overscan_shape = charge.shape[:-1] + (camera.overscan_px,)
        overscan = _amplify(camera, settings, np.zeros(overscan_shape, np.float32), rows, rng,
                            column_start=w)
        adu = np.concatenate([adu, overscan], axis=-1)
    adc_max = 255 if settings.eight_bit else 2 ** camera.adc_bits - 1
    counts = np.clip(np.rint(adu), 0, adc_max).astype(np.int32)
    return counts * settings.output_scale(camera)


def _amplify(camera: Camera, settings: Settings, charge: np.ndarray, rows: np.ndarray,
             rng: np.random.Generator, column_start: int = 0) -> np.ndarray:
    """Electrons to (unclipped) ADU: read noise, fixed column offsets, the frame's row banding
    ``rows`` (e-, shape (H, 1)), gain and pedestal."""
    pattern = fixed_pattern(camera)
    w = charge.shape[-1]
    ox = settings.origin[1] + column_start
    columns = pattern.columns[ox:ox + w] * np.float32(camera.column_noise_e)
    noise = rng.normal(0.0, settings.read_noise_e, charge.shape).astype(np.float32)
    electrons = charge + noise + columns[None, :] + rows
    return electrons / np.float32(settings.e_per_adu) + np.float32(settings.pedestal_adu)
