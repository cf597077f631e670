"""The approaches skyshard replaces, re-created faithfully as baselines, and the bare read loop.

* :func:`load_everything`: **the original loader**, the in-memory loader skyshard replaces. It
  reads every frame with astropy (tifffile for TIFF), normalises it to the 5th..95th percentile,
  resizes it to 224 x 224 (``skimage.transform.resize``, bilinear, as its ``_resize_image``) and
  ``np.stack``s all images (float32, NumPy's default; float16 was one proposed remedy) plus
  features, confidences and labels into arrays: memory grows with every frame.
* :func:`sketch_dataset`: the **from_generator sketch**, the streaming loader proposed in its
  place, verbatim in structure:
  ``tf.data.Dataset.from_generator`` over a generator that reads each FITS/TIFF file on demand
  (``memmap=True``), yields float16 image, features, confidences and label, then
  ``shuffle(1024)``, ``map(resize to 224)``, ``map(augment)``, ``batch(8)``, ``prefetch``.
* :func:`bare_read`: the **practical limit** of one core: ``exporter.readers.read_frame`` over
  the same files, touching every pixel, nothing else.

Features of both baselines come from :func:`baseline_features`: the header values and global
pixel statistics the original loader computed (exposure, temperature, gain, binning;
mean, std, median, min, max, 1st and 99th percentile of the raw frame), with one presence flag
per header group as the confidences.

Run as a script (``python -m bench.baselines load-all|bare-read ROOT --json OUT``) each loop
measures itself in a fresh process, which is how :mod:`bench.run` takes its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

#: The original loader's and the sketch's image side.
IMAGE_SIZE = 224
#: Header keywords per confidence group, the original loader's four header groups.
HEADER_GROUPS = {
    "frame_type": ("IMAGETYP", "FRAME", "OBSTYPE"),
    "exposure": ("EXPTIME", "EXPOSURE"),
    "sensor": ("CCD-TEMP", "TEMPERAT", "GAIN"),
    "optics": ("FOCALLEN", "APTDIA", "XPIXSZ"),
}


def list_frames(root: str | Path, per_class: int | None = None) -> list[tuple[str, int]]:
    """``(path, label)`` of the frames of a labelled tree, sorted, at most ``per_class`` per
    class (the first ones by path); labels index the sorted class names."""
    from exporter.discovery import discover

    refs, _ = discover(root, labelled=True)
    classes = sorted({ref.class_name for ref in refs})
    taken: dict[str, int] = {}
    items = []
    for ref in sorted(refs, key=lambda r: r.path):
        if per_class is not None and taken.get(ref.class_name, 0) >= per_class:
            continue
        taken[ref.class_name] = taken.get(ref.class_name, 0) + 1
        items.append((ref.path, classes.index(ref.class_name)))
    return items


# --------------------------------------------------------------- reading, as the baselines do

def read_pixels(path: str, memmap: bool = False) -> tuple[np.ndarray, dict]:
    """A frame as the original loader read it: float32 2-D pixels (colour planes averaged) and
    the header as a dict (empty for TIFF). FITS through astropy (``memmap=True`` for the
    streaming sketch, as it asks for; astropy refuses to memory-map scaled integer data,
    BZERO/BSCALE, and then reads it normally), TIFF through tifffile."""
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        data = np.asarray(tifffile.imread(path), dtype=np.float32)
        header: dict = {}
        if data.ndim == 3:
            data = data.mean(axis=-1 if data.shape[-1] in (3, 4) else 0)
        return data, header
    from astropy.io import fits

    try:
        data, header = _read_fits(fits, path, memmap)
    except ValueError:
        if not memmap:
            raise
        data, header = _read_fits(fits, path, False)
    while data.ndim > 2:
        data = data.mean(axis=0)
    return data, header


def _read_fits(fits, path: str, memmap: bool) -> tuple[np.ndarray, dict]:
    with fits.open(path, memmap=memmap) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim >= 2)
        data = np.array(hdu.data, dtype=np.float32)
        header = {key: value for key, value in hdu.header.items()
                  if key not in ("COMMENT", "HISTORY", "")}
    return data, header


def _header_number(header: dict, keys: tuple[str, ...]) -> float:
    for key in keys:
        try:
            return float(header[key])
        except (KeyError, TypeError, ValueError):
            continue
    return math.nan


def baseline_features(data: np.ndarray, header: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(features float32 [11], confidences float32 [4])`` of one raw frame (see module doc)."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        finite = np.zeros(1, dtype=np.float32)
    p1, median, p99 = np.percentile(finite, (1, 50, 99))
    features = np.array([
        _header_number(header, ("EXPTIME", "EXPOSURE")),
        _header_number(header, ("CCD-TEMP", "TEMPERAT")),
        _header_number(header, ("GAIN",)),
        _header_number(header, ("XBINNING",)),
        finite.mean(), finite.std(), median, finite.min(), finite.max(), p1, p99,
    ], dtype=np.float32)
    confidences = np.array([float(any(k in header for k in keys))
                            for keys in HEADER_GROUPS.values()], dtype=np.float32)
    return features, confidences


def baseline_normalise(data: np.ndarray) -> np.ndarray:
    """The original loader's ``_normalize_image``: 5th..95th percentile to [0, 1], clipped."""
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    p5, p95 = np.percentile(data, (5, 95))
    return np.clip((data - p5) / max(p95 - p5, 1e-12), 0.0, 1.0).astype(np.float32)


def baseline_resize(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """The original loader's ``_resize_image``: bilinear ``skimage.transform.resize``."""
    from skimage.transform import resize

    return resize(image, (size, size), order=1, preserve_range=True).astype(np.float32)


# --------------------------------------------------------------------- the original loader

def load_everything(items: list[tuple[str, int]], size: int = IMAGE_SIZE,
                    on_error: Callable[[str, Exception], None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original ``prepare_dataset``: every frame into one array each of images
    ``[n, size, size, 1]`` float32, features, confidences and labels."""
    images, features, confidences, labels = [], [], [], []
    for path, label in items:
        try:
            data, header = read_pixels(path)
        except Exception as exc:  # noqa: BLE001 - it skipped unreadable files
            if on_error:
                on_error(path, exc)
            continue
        images.append(baseline_resize(baseline_normalise(data), size)[..., np.newaxis])
        f, c = baseline_features(data, header)
        features.append(f)
        confidences.append(c)
        labels.append(label)
    return np.stack(images), np.stack(features), np.stack(confidences), np.array(labels)


# -------------------------------------------------------------------- the streaming sketch

def sketch_generator(items: list[tuple[str, int]]) -> Callable[[], Iterator[tuple]]:
    """The sketch's ``gen_fn``: reads each file on demand, yields one float16 example."""
    def gen_fn():
        for path, label in items:
            try:
                data, header = read_pixels(path, memmap=True)
            except Exception:  # noqa: BLE001 - an unreadable file is skipped, as in the sketch
                continue
            f, c = baseline_features(data, header)
            image = baseline_normalise(data).astype(np.float16)[..., np.newaxis]
            with np.errstate(over="ignore"):  # float16 features overflow above 65504
                f = f.astype(np.float16)
            yield image, f, c.astype(np.float16), np.int32(label)
    return gen_fn


def sketch_dataset(items: list[tuple[str, int]], size: int = IMAGE_SIZE,
                   batch_size: int = 8, shuffle: bool = True, augment: bool = True):
    """The sketch's ``build_dataset`` over :func:`sketch_generator` (its structure, unchanged)."""
    import tensorflow as tf

    def augment_fn(image, features, confidences, label):
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
        image = tf.image.random_brightness(image, max_delta=0.05)
        return image, features, confidences, label

    def resize(image, features, confidences, label):
        return tf.image.resize(image, (size, size)), features, confidences, label

    ds = tf.data.Dataset.from_generator(
        sketch_generator(items),
        output_signature=(
            tf.TensorSpec(shape=(None, None, 1), dtype=tf.float16),
            tf.TensorSpec(shape=(None,), dtype=tf.float16),
            tf.TensorSpec(shape=(4,), dtype=tf.float16),
            tf.TensorSpec(shape=(), dtype=tf.int32),
        ))
    if shuffle:
        ds = ds.shuffle(1024)
    ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    if augment:
        ds = ds.map(augment_fn, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------ bare read

def bare_read(items: list[tuple[str, int]]) -> dict:
    """``read_frame`` over ``items`` touching every pixel; frames, bytes, seconds, CPU s."""
    from exporter.frame import FrameError
    from exporter.readers import read_frame

    frames = failed = 0
    total_bytes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for path, _ in items:
        try:
            frame = read_frame(path)
        except FrameError:
            failed += 1
            continue
        float(np.sum(frame.data, dtype=np.float64))
        frames += 1
        total_bytes += Path(path).stat().st_size
    return {"frames": frames, "failed": failed, "bytes": total_bytes,
            "seconds": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _input_bytes(items: list[tuple[str, int]]) -> int:
    return sum(Path(path).stat().st_size for path, _ in items)


def _own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """``load-all`` or ``bare-read`` over a labelled tree; writes a JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("mode", choices=("load-all", "bare-read"))
    parser.add_argument("root")
    parser.add_argument("--json", required=True, help="where to write the summary")
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--size", type=int, default=IMAGE_SIZE)
    args = parser.parse_args(argv)
    items = list_frames(args.root, args.per_class)
    if args.mode == "bare-read":
        result = bare_read(items)
    else:
        errors: list[str] = []
        wall, cpu = time.perf_counter(), time.process_time()
        images, features, confidences, labels = load_everything(
            items, args.size, on_error=lambda path, exc: errors.append(path))
        result = {"frames": int(len(labels)), "failed": len(errors),
                  "bytes": _input_bytes(items), "seconds": time.perf_counter() - wall,
                  "cpu_s": time.process_time() - cpu,
                  "arrays_mb": (images.nbytes + features.nbytes + confidences.nbytes
                                + labels.nbytes) / (1 << 20),
                  "image_shape": list(images.shape), "image_dtype": str(images.dtype)}
    result.update(mode=args.mode, root=str(args.root), peak_rss_mb=_own_peak_mb())
    Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
