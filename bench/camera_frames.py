"""Camera-sized frames for the export's stage profile.

The sample trees hold frames of 0.1 to 0.5 megapixels, the size of planetary regions of
interest; a deep-sky camera writes 16 to 60 megapixels (an IMX571 sensor: 6248 x 4176, 52 MB
per 16-bit frame). Reading and decoding scale with the pixels, while the per-frame features read
bounded samples, tiles and a binned copy (docs/features.md), so the export's ratio to a bare
read depends on the frame size. This module writes, once per work folder, one such frame per
class: the first 16-bit FITS frame of each class of a sample tree, tiled to the full sensor (the
pixel values, header and file name kept), as an unsigned 16-bit FITS with ``BZERO = 32768`` as
camera drivers write it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyshard.files import atomic_output

#: Sensor size written: Sony IMX571 (ZWO ASI2600, QHY268), a common deep-sky sensor.
CAMERA_SHAPE = (4176, 6248)
#: Marker of a complete tree.
DONE = ".bench-camera-complete"
#: Header cards left to astropy when the tiled frame is written.
STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "EXTEND", "BZERO",
              "BSCALE", "PCOUNT", "GCOUNT", "XTENSION", "CHECKSUM", "DATASUM", "END"}


def sixteen_bit_mono(path: Path) -> bool:
    """Whether ``path`` is a plain FITS file holding one 16-bit plane."""
    from astropy.io import fits

    if path.suffix.lower() not in (".fits", ".fit", ".fts"):
        return False
    try:
        with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdus:
            header = hdus[0].header
            return header.get("BITPIX") == 16 and header.get("NAXIS") == 2
    except (OSError, ValueError):
        return False


def tile_to(data: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``data`` repeated along both axes and cut to ``shape``."""
    reps = (-(-shape[0] // data.shape[0]), -(-shape[1] // data.shape[1]))
    return np.tile(data, reps)[:shape[0], :shape[1]]


def ensure_camera_tree(root: Path, sample_tree: Path,
                       shape: tuple[int, int] = CAMERA_SHAPE) -> Path:
    """``root/<class>/<file>``: one camera-sized frame per class of ``sample_tree`` (see the
    module docstring), written if not there yet; returns ``root``. Classes without a 16-bit
    mono FITS frame are left out."""
    from astropy.io import fits

    if (root / DONE).is_file():
        return root
    for class_dir in sorted(p for p in sample_tree.iterdir() if p.is_dir()):
        source = next((p for p in sorted(class_dir.rglob("*")) if sixteen_bit_mono(p)), None)
        if source is None:
            continue
        with fits.open(source) as hdus:
            data = np.asarray(hdus[0].data, dtype=np.float64)
            cards = [(k, v, c) for k, v, c in hdus[0].header.cards
                     if k and k not in STRUCTURAL and k not in ("COMMENT", "HISTORY")]
        tiled = np.clip(np.rint(tile_to(data, shape)), 0, 65535).astype(np.uint16)
        header = fits.Header(cards)
        target = root / class_dir.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(target) as partial:
            fits.PrimaryHDU(tiled, header=header).writeto(partial, output_verify="fix")
    (root / DONE).write_text("")
    return root
