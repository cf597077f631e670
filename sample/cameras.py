"""Camera models: sensor properties, per-frame settings and the readout chain.

A :class:`Camera` is one sensor as amateurs, observatories and space missions use it (cooled
CMOS, planetary CMOS, CCD, DSLR, professional and space CCDs), with its full sensor format.
:func:`draw_settings` picks what the user asked of it for one frame (exposure, temperature, gain,
offset, binning, 8-bit mode, whether the driver shifts 12/14-bit values into 16-bit words, the
zero level) and :func:`read_out` turns the expected photo-electrons of a scene into the ADU the
driver delivers: dark current with its temperature law, hot pixels, amp glow, shot noise, cosmic
rays, full-well saturation (with charge bleeding on CCDs without anti-blooming), read noise,
fixed column pattern, row banding, the ADC pedestal, quantisation and the left-shift.

What a camera delivers does not depend on what it is pointed at: readout mode, bit depth and
zero level are drawn without knowing the frame's class, so none of them can give it away.

Fixed-pattern defects (column offsets, hot pixels, bad columns, amp-glow position) belong to the
camera, not the frame: they are laid out once per camera on its full sensor and every frame is
a window of it, so they recur between frames of the same camera as they do in real archives.

Memory: the readout works in place on one float32 copy of the frame and draws its noise in
blocks of :data:`NOISE_BLOCK` pixels, so a 60-megapixel frame needs a few of its own size at
most.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

from sample.physics import coarse_step, grid, resize

#: Pixels per block when noise is drawn (bounds the temporary arrays of large frames).
NOISE_BLOCK = 1 << 21

#: Below this many expected electrons shot noise is drawn from the Poisson law itself, above
#: it from the normal law of the same mean and variance (indistinguishable there, and 5x faster).
POISSON_EXACT_BELOW = 30.0

#: Share of frames read in the 8-bit high-speed mode, by cameras that have one.
EIGHT_BIT_SHARE = 0.25

#: Share of frames of a multi-amplifier camera read through all its amplifiers (the others
#: through one), and the spread of the amplifiers' gains and offsets.
MULTI_TAP_SHARE = 0.7

#: Zero levels (the ADU of no light) and how often each occurs, whatever the frame shows:
#: ``native`` the camera's own pedestal or offset setting; ``raised`` a controller or offset set
#: to 2..23 % of full scale; ``mid`` a bipolar converter read around mid-scale (40..61 %, up to
#: ~40000 ADU in 16 bits); ``zero`` no pedestal at all, so noise is clipped at 0.
ZERO_LEVELS = {"native": 0.65, "raised": 0.2, "mid": 0.12, "zero": 0.03}

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
    sensor: tuple[int, int]              # full sensor format, (rows, columns) of active pixels
    adc_bits: int                        # native ADC depth
    scaled_to_16bit: bool                # the usual driver left-shifts native ADU to 16 bits
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
    group: str = "amateur"               # amateur | observatory | space: who operates it
    cosmic_factor: float = 1.0           # cosmic-ray rate relative to sea level (orbit: ~50)
    hot_rate_scale: float = 1.0          # hot-pixel dark rates relative to the usual decades
    amplifiers: int = 1                  # output amplifiers: 2 read the halves, 4 the quadrants

    @property
    def is_colour(self) -> bool:
        return self.bayer is not None

    @property
    def megapixels(self) -> float:
        return self.sensor[0] * self.sensor[1] / 1e6


def _cmos(name, sensor, bits, scaled, bayer, cooled, pixel, well, gain, noise, gain_range,
          offset_range, pedestal_per_offset, dark, hot, glow, col, row, **extra) -> Camera:
    extra.setdefault("eight_bit_mode", True)  # ZWO and QHY drivers all offer RAW8
    return Camera(name=name, kind="cmos", sensor=sensor, adc_bits=bits, scaled_to_16bit=scaled,
                  bayer=bayer, cooled=cooled, pixel_um=pixel, full_well_e=well, gain_e_per_adu=gain,
                  read_noise_e=noise, gain_setting=gain_range, offset_setting=offset_range,
                  pedestal_adu=0.0, pedestal_per_offset=pedestal_per_offset, dark_e_s_0c=dark,
                  hot_fraction=hot, amp_glow_e_s=glow, column_noise_e=col, row_noise_e=row,
                  **extra)


def _ccd(name, sensor, pixel, well, gain, noise, pedestal, dark, hot, col, **extra) -> Camera:
    return Camera(name=name, kind="ccd", sensor=sensor, adc_bits=16, scaled_to_16bit=False,
                  bayer=None, cooled=True, pixel_um=pixel, full_well_e=well,
                  gain_e_per_adu=(gain, gain), read_noise_e=(noise, noise), gain_setting=None,
                  offset_setting=None, pedestal_adu=pedestal, pedestal_per_offset=0.0,
                  dark_e_s_0c=dark, hot_fraction=hot, amp_glow_e_s=0.0, column_noise_e=col,
                  row_noise_e=0.15, **extra)


#: The camera catalogue, by INSTRUME name. Numbers follow the makers' data sheets loosely;
#: sensor formats are the makers' (rows, columns) of active pixels.
CAMERAS: dict[str, Camera] = {c.name: c for c in (
    _cmos("ZWO ASI2600MM Pro", (4176, 6248), 16, False, None, True, 3.76, 50000, (0.78, 0.08),
          (3.3, 1.0), (0, 300), (0, 100), 10.0, 0.006, 2e-5, 0.0, 0.3, 0.6,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI2600MC Pro", (4176, 6248), 16, False, "RGGB", True, 3.76, 50000, (0.78, 0.08),
          (3.3, 1.0), (0, 300), (0, 100), 10.0, 0.006, 3e-5, 0.0, 0.3, 0.6,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI6200MM Pro", (6388, 9576), 16, False, None, True, 3.76, 51400, (0.8, 0.25),
          (3.5, 1.2), (0, 470), (0, 100), 10.0, 0.004, 2e-5, 0.0, 0.3, 0.5,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI294MC Pro", (2822, 4144), 14, True, "RGGB", True, 4.63, 63700, (3.9, 0.12),
          (7.3, 1.2), (0, 570), (0, 80), 1.0, 0.05, 3e-4, 0.8, 0.5, 0.9, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI1600MM Pro", (3520, 4656), 12, True, None, True, 3.8, 20000, (5.0, 0.2),
          (3.6, 1.2), (0, 300), (0, 60), 1.0, 0.03, 2e-4, 0.4, 0.5, 0.8, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI533MC Pro", (3008, 3008), 14, True, "RGGB", True, 3.76, 50000, (0.8, 0.2),
          (3.8, 1.0), (0, 450), (0, 100), 4.0, 0.004, 3e-5, 0.0, 0.3, 0.5,
          min_exposure_s=3.2e-5),
    _cmos("QHY268M", (4210, 6280), 16, False, None, True, 3.76, 51000, (0.9, 0.3), (3.5, 1.2),
          (0, 100), (0, 100), 28.0, 0.008, 4e-5, 0.0, 0.35, 0.5, min_exposure_s=5e-5),
    _cmos("QHY600M", (6388, 9576), 16, False, None, True, 3.76, 51000, (0.9, 0.3), (3.5, 1.1),
          (0, 100), (0, 100), 25.0, 0.006, 3e-5, 0.0, 0.35, 0.5, min_exposure_s=5e-5),
    _cmos("ZWO ASI224MC", (976, 1304), 12, True, "RGGB", False, 3.75, 19200, (3.0, 0.06),
          (3.0, 0.8), (0, 600), (0, 60), 1.0, 0.012, 1.5e-4, 0.6, 0.5, 0.7,
          min_exposure_s=3.2e-5),
    _cmos("ZWO ASI290MM Mini", (1096, 1936), 12, True, None, False, 2.9, 14600, (3.6, 0.06),
          (3.2, 1.0), (0, 600), (0, 60), 1.0, 0.01, 1e-4, 0.3, 0.4, 0.6, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI178MM", (2080, 3096), 14, True, None, False, 2.4, 15000, (0.9, 0.06),
          (2.2, 1.4), (0, 510), (0, 60), 2.0, 0.02, 1e-4, 0.5, 0.4, 0.6, min_exposure_s=3.2e-5),
    _cmos("ZWO ASI462MC", (1096, 1936), 12, True, "RGGB", False, 2.9, 11200, (2.8, 0.07),
          (2.7, 0.7), (0, 570), (0, 60), 1.0, 0.01, 1e-4, 0.25, 0.45, 0.6,
          min_exposure_s=3.2e-5),
    _cmos("QHY5III462C", (1080, 1920), 12, True, "GBRG", False, 2.9, 11000, (2.6, 0.08),
          (2.8, 0.8), (0, 100), (0, 200), 0.5, 0.012, 1.5e-4, 0.3, 0.45, 0.7,
          min_exposure_s=5e-5),
    Camera(name="Canon EOS 600D (modified)", kind="dslr", sensor=(3456, 5184), adc_bits=14,
           scaled_to_16bit=False, bayer="RGGB", cooled=False, pixel_um=4.3, full_well_e=26000,
           gain_e_per_adu=(5.5, 0.17), read_noise_e=(25.0, 2.6), gain_setting=(100, 3200),
           offset_setting=None, pedestal_adu=2048.0, pedestal_per_offset=0.0, dark_e_s_0c=0.02,
           hot_fraction=1e-4, amp_glow_e_s=0.15, column_noise_e=1.0, row_noise_e=2.0,
           min_exposure_s=1 / 4000),
    _ccd("SBIG ST-8300M", (2504, 3326), 5.4, 25500, 0.37, 9.3, 1000.0, 0.05, 1e-4, 0.6,
         bad_columns=2, min_exposure_s=0.09),
    _ccd("Atik 414EX", (1039, 1391), 6.45, 17000, 0.27, 4.0, 340.0, 0.008, 5e-5, 0.4,
         bad_columns=1, min_exposure_s=0.001),
    _ccd("SX Trius SX-694", (2200, 2750), 4.54, 20000, 0.3, 5.0, 900.0, 0.01, 5e-5, 0.5,
         bad_columns=1, min_exposure_s=0.001),
    # Liquid-nitrogen cooled observatory CCDs: negligible dark current at their -110 C, no
    # anti-blooming gate, overscan strips, many cosmic rays on large pixels.
    _ccd("e2v CCD42-40", (2048, 2048), 13.5, 150000, 1.2, 3.5, 950.0, 150.0, 2e-5, 0.3,
         bad_columns=2, overscan_px=32, blooming=True, cryogenic=True, group="observatory"),
    _ccd("SITe SI-424A", (2048, 2048), 24.0, 300000, 2.6, 7.0, 1900.0, 150.0, 1e-5, 0.5,
         bad_columns=1, overscan_px=64, blooming=True, cryogenic=True, group="observatory"),
    _ccd("Fairchild CCD 3041", (2048, 2048), 15.0, 100000, 1.6, 4.5, 600.0, 150.0, 3e-5, 0.4,
         bad_columns=3, overscan_px=48, blooming=True, cryogenic=True, group="observatory",
         amplifiers=2),
    _ccd("e2v CCD44-82", (4096, 2048), 15.0, 200000, 1.4, 3.2, 1100.0, 150.0, 2e-5, 0.3,
         bad_columns=1, overscan_px=50, blooming=True, cryogenic=True, group="observatory",
         amplifiers=2),
    _ccd("e2v CCD231-84", (4096, 4112), 15.0, 350000, 1.9, 3.8, 1200.0, 150.0, 1e-5, 0.3,
         bad_columns=2, overscan_px=20, blooming=True, cryogenic=True, group="observatory",
         amplifiers=4),
    # Passively cooled CCDs in orbit: warm by observatory standards (-80 C), radiation-damaged
    # (many hot pixels) and hit by about fifty times more cosmic rays than on the ground.
    _ccd("SITe ST-002A (space)", (1024, 1024), 21.0, 144000, 4.0, 5.5, 1400.0, 46.0, 8e-4,
         0.2, bad_columns=1, overscan_px=19, blooming=True, group="space", cosmic_factor=50.0,
         hot_rate_scale=3000.0, min_exposure_s=0.1),
    _ccd("e2v CCD203-82 (space)", (4096, 4096), 12.0, 150000, 1.6, 3.1, 1000.0, 5.0, 3e-4,
         0.2, bad_columns=2, group="space", cosmic_factor=50.0, hot_rate_scale=500.0,
         min_exposure_s=0.0, amplifiers=4),
)}


@dataclass(frozen=True)
class Settings:
    """What one frame was taken with.

    ``e_per_adu`` and ``read_noise_e`` follow from the gain; ``pedestal_adu`` from the offset
    and the ``zero`` level kind (see :data:`ZERO_LEVELS`). All ADU are in the readout's own units
    (native bits, or 8 bits in 8-bit mode); ``shift`` says whether the driver left-shifts them
    into 16-bit words. ``origin`` is the window's top-left corner on the full sensor.
    ``taps``: when the frame is read through several amplifiers, each one's gain factor and
    offset (readout ADU), in the order left, right (two) or top-left, top-right, bottom-left,
    bottom-right (four); empty when one amplifier reads it all.
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
    shift: bool = False
    zero: str = "native"
    taps: tuple[tuple[float, float], ...] = ()

    def bits(self, camera: Camera) -> int:
        """Resolution of the delivered values: 8 in 8-bit mode, else the ADC's bits."""
        return 8 if self.eight_bit else camera.adc_bits

    def output_max(self, camera: Camera) -> int:
        """Largest ADU the driver can deliver (255, native full scale, or 65535 when shifted)."""
        if self.eight_bit:
            return 255
        return 65535 if self.shift else 2 ** camera.adc_bits - 1

    def output_scale(self, camera: Camera) -> int:
        """Factor from readout ADU to delivered ADU (the driver's left shift)."""
        if self.eight_bit or not self.shift:
            return 1
        return 2 ** (16 - camera.adc_bits)

    def zero_level(self, camera: Camera) -> float:
        """The pedestal in delivered ADU: what a pixel without light reads on average."""
        return self.pedestal_adu * self.output_scale(camera)

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
    if camera.group == "space":
        set_temp = float(rng.choice([-83.0, -80.0, -65.0]))
        return set_temp + float(rng.normal(0, 0.5)), set_temp
    ambient = float(rng.uniform(-5, 28))
    if not camera.cooled:
        return ambient + float(rng.uniform(2, 8)) * (1.0 if warm else 0.6), None
    set_temp = float(rng.choice([-25.0, -20.0, -15.0, -10.0, -10.0, -5.0, 0.0, 5.0]))
    reachable = ambient - (35.0 if camera.kind == "cmos" else 30.0)
    if set_temp < reachable:  # cooler at full power cannot reach the set point
        return reachable + float(rng.uniform(0, 3)), set_temp
    return set_temp + float(rng.normal(0, 0.2)), set_temp


def draw_settings(camera: Camera, rng: np.random.Generator, exptime_s: float, *,
                  high_gain: bool = False, eight_bit: bool | None = None, binning: int = 1,
                  shape: tuple[int, int] = (512, 512), shift: bool | None = None,
                  zero: str | None = None) -> Settings:
    """Gain, offset, temperature, readout mode, zero level and window for one frame of
    ``exptime_s`` seconds.

    ``high_gain`` biases the gain towards the top of the range (planetary capture);
    ``shape`` is the frame size, used to place the window on the sensor. ``eight_bit``,
    ``shift`` and ``zero`` force those choices; by default they are drawn from the camera
    alone (:data:`EIGHT_BIT_SHARE`, the driver's usual shift, :data:`ZERO_LEVELS`).
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
    if eight_bit is None:
        eight_bit = bool(camera.eight_bit_mode and rng.random() < EIGHT_BIT_SHARE)
    if shift is None:
        shift = bool(camera.adc_bits < 16 and not eight_bit
                     and rng.random() < (0.8 if camera.scaled_to_16bit else 0.3))
    if zero is None:
        names = list(ZERO_LEVELS)
        zero = names[int(rng.choice(len(names), p=list(ZERO_LEVELS.values())))]
    offset = None
    pedestal = camera.pedestal_adu
    if camera.offset_setting is not None:
        low, high = camera.offset_setting
        offset = int(rng.integers(low + (high - low) // 10, high + 1))
        pedestal += camera.pedestal_per_offset * offset
    else:
        pedestal *= float(rng.uniform(0.97, 1.03))  # CCD bias levels drift slowly
    readout_max = 255 if eight_bit else 2 ** camera.adc_bits - 1
    if eight_bit:
        factor = 2 ** (camera.adc_bits - 8)
        e_per_adu *= factor
        pedestal /= factor
    if zero == "raised":
        pedestal = readout_max * float(np.exp(rng.uniform(np.log(0.02), np.log(0.23))))
    elif zero == "mid":
        pedestal = readout_max * float(rng.uniform(0.40, 0.61))
    elif zero == "zero":
        pedestal = 0.0
    if zero != "native" and offset is not None and camera.pedestal_per_offset > 0:
        # The driver's OFFSET is what set that level.
        native = pedestal * (2 ** (camera.adc_bits - 8) if eight_bit else 1)
        offset = int(round(native / camera.pedestal_per_offset))
    rows, columns = camera.sensor[0] // binning, camera.sensor[1] // binning
    height, width = shape
    origin = (int(rng.integers(0, max(1, rows - height + 1))),
              int(rng.integers(0, max(1, columns - width + 1))))
    taps: tuple[tuple[float, float], ...] = ()
    if camera.amplifiers > 1 and rng.random() < MULTI_TAP_SHARE:
        # Each amplifier has its own gain (within ~1.5 %) and bias level (within ~3 % of the
        # pedestal and tens of ADU): the frame shows steps between halves or quadrants.
        taps = tuple((float(1 + rng.normal(0, 0.015)),
                      float(rng.normal(0, 0.03) * max(pedestal, 100.0) + rng.normal(0, 15)))
                     for _ in range(camera.amplifiers))
    return Settings(exptime_s=float(exptime_s), sensor_temp_c=temp, set_temp_c=set_temp,
                    gain=gain, offset=offset, e_per_adu=e_per_adu, read_noise_e=read_noise,
                    pedestal_adu=pedestal, binning=binning, eight_bit=eight_bit, origin=origin,
                    shift=shift, zero=zero, taps=taps)


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
    rows, columns = camera.sensor
    n_hot = int(camera.hot_fraction * rows * columns)
    corners = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0), (0.5, 0.0)]
    n_glow = int(rng.integers(1, 3))
    glow = tuple(corners[i] for i in rng.choice(len(corners), n_glow, replace=False))
    return FixedPattern(
        columns=rng.standard_normal(columns + camera.overscan_px).astype(np.float32),
        hot_y=rng.integers(0, rows, n_hot),
        hot_x=rng.integers(0, columns, n_hot),
        # Hot-pixel dark rates span decades: a few are visible in 1 s, most only in long darks.
        hot_rate=np.exp(rng.uniform(np.log(0.02), np.log(40.0), n_hot)) * camera.hot_rate_scale,
        bad_columns=rng.integers(0, columns, camera.bad_columns),
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
        sensor = (camera.sensor[0] // settings.binning, camera.sensor[1] // settings.binning)
        dark += amp_glow(shape, pattern, camera.amp_glow_e_s * t, sensor, settings.origin)
    return dark


def amp_glow(shape: tuple[int, int], pattern: FixedPattern, peak_e: float,
             sensor: tuple[int, int] | None = None,
             origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Readout-amplifier glow: ``peak_e`` electrons at each source on the edge of the
    ``sensor`` (rows, columns; default: the frame), falling off exponentially over
    ``glow_length`` of its diagonal. The frame is the window of ``shape`` at ``origin``, so a
    window far from the amplifiers sees little glow."""
    rows, columns = sensor or shape
    step = coarse_step(shape)
    yy, xx = grid(shape, step)
    yy += np.float32(origin[0])
    xx += np.float32(origin[1])
    length = pattern.glow_length * np.hypot(rows, columns)
    glow = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), dtype=np.float32)
    for fy, fx in pattern.glow_sources:
        distance = np.sqrt((yy - fy * (rows - 1)) ** 2 + (xx - fx * (columns - 1)) ** 2)
        glow += np.exp(-distance / np.float32(length))
    return resize(glow, shape) * np.float32(peak_e)


def add_cosmic_rays(electrons: np.ndarray, rng: np.random.Generator, exptime_s: float,
                    pixel_um: float, binning: int = 1, factor: float = 1.0) -> int:
    """Add muon and radioactivity hits in place: short straight tracks of 300..30000 e-.

    The rate, about 2 events / cm^2 / min at sea level (``factor`` times that in orbit), scales
    with sensor area and exposure; returns how many tracks were added. ``electrons`` is (H, W)
    or (C, H, W).
    """
    h, w = electrons.shape[-2:]
    area_cm2 = h * w * (pixel_um * binning * 1e-4) ** 2
    count = int(rng.poisson(area_cm2 * 2.0 * factor * max(exptime_s, 0.0) / 60.0))
    count = min(count, 400 if factor <= 1 else 3000)
    for _ in range(count):
        length = float(rng.exponential(3.0 if factor <= 1 else 5.0)) + 1.0
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


def shot_noise(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photo-electrons actually collected: a Poisson draw around each pixel's ``expected``
    (negative values count as 0). Returns a new float32 array of the same shape.

    Below :data:`POISSON_EXACT_BELOW` electrons the Poisson law is drawn; above it the normal
    law of the same mean and variance. Drawn in blocks of :data:`NOISE_BLOCK` pixels.
    """
    charge = np.maximum(expected, 0.0).astype(np.float32)
    flat = charge.reshape(-1)
    for start in range(0, flat.size, NOISE_BLOCK):
        block = flat[start:start + NOISE_BLOCK]
        small = (block > 0) & (block < POISSON_EXACT_BELOW)
        if small.any():
            block[small] = rng.poisson(block[small])
        large = block >= POISSON_EXACT_BELOW
        if large.any():
            mean = block[large]
            block[large] = mean + np.sqrt(mean) * rng.standard_normal(mean.size, np.float32)
    return charge


def read_out(camera: Camera, settings: Settings, electrons: np.ndarray | None,
             shape: tuple[int, int], rng: np.random.Generator, planes: int = 1,
             overscan: int | None = None) -> np.ndarray:
    """Expose and read one frame.

    ``electrons``: expected photo-electrons per pixel from the scene, (H, W) or (C, H, W), or
    None for a frame without light (bias, dark). ``planes`` > 1 reads a debayered colour frame.
    ``overscan``: unexposed columns read out on the right (default: the camera's).
    Returns int32 ADU as the driver delivers them, shape (H, W + overscan) or (C, H, W +
    overscan): 0..255 in 8-bit mode, otherwise native ADU, left-shifted to 16 bits when the
    driver does so.
    """
    h, w = shape
    overscan = camera.overscan_px if overscan is None else overscan
    expected = dark_signal(camera, settings, shape)
    if electrons is not None:
        if electrons.ndim == 2:
            expected += electrons
        else:
            expected = electrons + expected
    if planes > 1 and expected.ndim == 2:
        expected = np.broadcast_to(expected, (planes, h, w))
    charge = shot_noise(expected, rng)
    del expected
    add_cosmic_rays(charge, rng, settings.exptime_s, camera.pixel_um, settings.binning,
                    camera.cosmic_factor)
    well = camera.full_well_e * settings.binning ** 2
    if camera.blooming and charge.ndim == 2:
        bleed_columns(charge, well)
    np.minimum(charge, well, out=charge)
    # Row banding varies from frame to frame in strength, and runs on through the overscan.
    rows = rng.normal(0.0, camera.row_noise_e * rng.uniform(0.2, 1.5), (h, 1)).astype(np.float32)
    adc_max = 255 if settings.eight_bit else 2 ** camera.adc_bits - 1
    out = np.empty(charge.shape[:-1] + (w + overscan,), dtype=np.int32)
    _amplify(camera, settings, charge, rows, rng)
    _digitise(charge, adc_max, out[..., :w])
    del charge
    if overscan:
        bias = np.zeros(out.shape[:-1] + (overscan,), np.float32)
        _amplify(camera, settings, bias, rows, rng, column_start=w)
        _digitise(bias, adc_max, out[..., w:])
    if settings.output_scale(camera) > 1:
        out *= settings.output_scale(camera)
    return out


def _digitise(adu: np.ndarray, adc_max: int, out: np.ndarray) -> None:
    """Round, clip to the converter's range and store into the int32 ``out``."""
    np.rint(adu, out=adu)
    np.clip(adu, 0, adc_max, out=adu)
    out[...] = adu


def _amplify(camera: Camera, settings: Settings, charge: np.ndarray, rows: np.ndarray,
             rng: np.random.Generator, column_start: int = 0) -> None:
    """Electrons to (unclipped) ADU, in place: read noise, fixed column offsets, the frame's row
    banding ``rows`` (e-, shape (H, 1)), gain and pedestal."""
    pattern = fixed_pattern(camera)
    w = charge.shape[-1]
    ox = settings.origin[1] + column_start
    columns = np.take(pattern.columns, np.arange(ox, ox + w), mode="wrap") * np.float32(
        camera.column_noise_e)
    flat = charge.reshape(-1)
    read_noise = np.float32(settings.read_noise_e)
    for start in range(0, flat.size, NOISE_BLOCK):
        block = flat[start:start + NOISE_BLOCK]
        block += read_noise * rng.standard_normal(block.size, np.float32)
    charge += columns
    charge += rows
    charge *= np.float32(1.0 / settings.e_per_adu)
    charge += np.float32(settings.pedestal_adu)
    if settings.taps:
        _apply_taps(camera, settings, charge, column_start)


def _apply_taps(camera: Camera, settings: Settings, adu: np.ndarray, column_start: int) -> None:
    """Give each amplifier's part of the window its gain and offset, in place. Amplifiers read
    the sensor's left and right halves (two) or quadrants (four); overscan columns
    (``column_start`` > 0) belong to the amplifier of the window's right edge."""
    rows, columns = camera.sensor[0] // settings.binning, camera.sensor[1] // settings.binning
    oy, ox = settings.origin
    h, w = adu.shape[-2:]
    row_cut = int(np.clip(rows // 2 - oy, 0, h)) if camera.amplifiers == 4 else h
    column_cut = int(np.clip(columns // 2 - ox, 0, w))
    if column_start:
        column_cut = 0 if ox + column_start - 1 >= columns // 2 else w
    for index, (gain, offset) in enumerate(settings.taps):
        lower = camera.amplifiers == 4 and index // 2 == 1
        right = index % 2 == 1
        region = adu[..., slice(row_cut, h) if lower else slice(0, row_cut),
                     slice(column_cut, w) if right else slice(0, column_cut)]
        region *= np.float32(gain)
        region += np.float32(offset)
