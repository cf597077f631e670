"""Planetary, lunar and solar disks: one large, round, sharp-edged bright region on black.

The largest connected region above half-way between the floor and the maximum of the binned frame
(:func:`~exporter.features.sampling.binned_frame`, binned again to at most :data:`DISK_SIDE`
pixels and despiked), measured for its area, circularity, edge sharpness and contrast.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.measure import perimeter

from exporter.features.kernels import despike
from exporter.features.sampling import pixel_noise
from exporter.features.scalars import sigma_log
from exporter.preprocessing import block_mean

#: Long side (pixels) of the image used for the disk metrics.
DISK_SIDE = 256

DISK_FEATURE_NAMES: tuple[str, ...] = (
    "disk_area_fraction", "disk_circularity", "disk_edge_sharpness", "disk_contrast_sigma_log",
)


def disk_features(binned: np.ndarray, despiked: np.ndarray | None = None) -> dict[str, float]:
    """The largest bright region of the binned frame, measured as a planetary disk.

    The frame is binned again to at most :data:`DISK_SIDE` pixels on its long side and despiked
    (:func:`~exporter.features.kernels.despike`). The region is the largest connected area above
    half-way between the 1st percentile (the floor) and the maximum; it counts as a disk only when
    its median stands more than 10 noise sigmas (pixel noise of the binned image) above the median
    outside it and it holds at least 4 pixels.

    Parameters
    ----------
    binned : ndarray
        The binned frame (:func:`~exporter.features.sampling.binned_frame`), ADU.
    despiked : ndarray, optional
        Its 3x3 median when known (used when it needs no further binning), as
        :attr:`~exporter.features.sampling.FrameSamples.despiked_binned` holds it.

    Returns
    -------
    dict of str to float
        Keyed and ordered as :data:`DISK_FEATURE_NAMES`: ``disk_area_fraction`` (the region's
        share of the image; 0 when it is no disk), ``disk_circularity`` (``4 pi area /
        perimeter**2``, 1 for a circle), ``disk_edge_sharpness`` (sqrt of the area above 75 % over
        the area above 25 % of the floor-to-peak span: about 1 for a hard limb, 0.46 for a Gaussian
        blob, low for a flat's smooth fall-off) and ``disk_contrast_sigma_log`` (median inside
        minus median outside, in noise units). Shape features are NaN when there is no disk.
    """
    out = {"disk_area_fraction": math.nan, "disk_circularity": math.nan,
           "disk_edge_sharpness": math.nan, "disk_contrast_sigma_log": math.nan}
    factor = max(1, math.ceil(max(binned.shape) / DISK_SIDE))
    image = block_mean(binned, min(factor, binned.shape[0]), min(factor, binned.shape[1]))
    # Binned no further: the binned frame's 3x3 median, when known, is this image's.
    smooth = despike(image) if factor > 1 or despiked is None else despiked.astype(np.float64)
    floor, peak = float(np.percentile(smooth, 1.0)), float(smooth.max())
    span = peak - floor
    if not span > 0:
        out["disk_area_fraction"] = 0.0
        return out
    labels, _ = ndimage.label(smooth > floor + 0.5 * span)
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == 1 + int(np.argmax(sizes))
    outside = smooth[labels == 0]
    contrast = float(np.median(smooth[region]) - np.median(outside)) if outside.size \
        else math.nan
    noise = pixel_noise([image])
    out["disk_contrast_sigma_log"] = sigma_log(contrast, noise)
    significant = contrast > 0 and (not noise > 0 or contrast > 10.0 * noise)
    area = int(np.count_nonzero(region))
    if not significant or area < 4:
        out["disk_area_fraction"] = 0.0
        return out
    out["disk_area_fraction"] = area / region.size
    crop = np.pad(region[ndimage.find_objects(region.astype(int))[0]], 1)
    length = float(perimeter(crop))
    out["disk_circularity"] = min(1.0, 4.0 * math.pi * area / length ** 2) if length > 0 \
        else math.nan
    low_labels, _ = ndimage.label(smooth > floor + 0.25 * span)
    peak_index = np.unravel_index(np.argmax(np.where(region, smooth, -np.inf)), smooth.shape)
    body = low_labels == low_labels[peak_index]
    high = np.count_nonzero(body & (smooth > floor + 0.75 * span))
    out["disk_edge_sharpness"] = math.sqrt(high / np.count_nonzero(body))
    return out
