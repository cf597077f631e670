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
        tmp = target.with_name(target.name + ".tmp")
        fits.PrimaryHDU(tiled, header=header).writeto(tmp, overwrite=True, output_verify="fix")
        tmp.replace(target)
    (root / DONE).write_text("")
    return root


def camera_profile(root: Path, sample_tree: Path, image_size: int,
                   rounds: int = 3) -> dict:
    """The export's per-frame work against a bare read at camera size: the stage profile
    (:func:`bench.export_bench.stage_profile`) and the bare read-and-decode loop
    (:func:`bench.baselines.bare_read`, best of ``rounds``) over the frames of
    :func:`ensure_camera_tree`, in this process, in CPU ms per frame. ``ratio``: bare read /
    the whole frame's work, the ceiling of the export's ratio per core at this size (the export
    runs at about 0.98 x its per-frame work, the stage table of measure 1)."""
    from bench.baselines import bare_read
    from bench.export_bench import stage_profile

    tree = ensure_camera_tree(root, sample_tree)
    items = [(str(p), 0) for p in sorted(tree.rglob("*")) if p.is_file() and p.name != DONE]
    if not items:
        return {"shape": list(CAMERA_SHAPE), "frames": 0}
    reads = [bare_read(items) for _ in range(rounds)]
    best = min(reads, key=lambda r: r["cpu_s"])
    stages = stage_profile(tree, image_size)
    bare_ms = 1000 * best["cpu_s"] / best["frames"]
    return {"shape": list(CAMERA_SHAPE), "frames": best["frames"],
            "mb_per_frame": best["bytes"] / best["frames"] / 2 ** 20,
            "bare_read_cpu_ms": bare_ms, "stages": stages,
            "ratio": bare_ms / stages["total_cpu_ms_per_frame"]}
