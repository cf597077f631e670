"""The software versions every artefact records (manifest, run record, scores, benchmarks).

Read from the installed distributions' metadata, so asking costs no import of TensorFlow or Beam.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from skyshard import __version__

#: Record key -> the distributions that provide it, first installed one wins (TensorFlow comes as
#: ``tensorflow`` with CUDA or as ``tensorflow-cpu``).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "apache-beam": ("apache-beam",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "numpy": ("numpy",),
    "astropy": ("astropy",),
    "tifffile": ("tifffile",),
    "scipy": ("scipy",),
    "scikit-learn": ("scikit-learn",),
    "protobuf": ("protobuf",),
}


def library_versions() -> dict[str, str]:
    """``{"python": …, "skyshard": …, library: version}`` for the libraries in :data:`LIBRARIES`
    that are installed."""
    out = {"python": platform.python_version(), "skyshard": __version__}
    for key, distributions in LIBRARIES.items():
        for name in distributions:
            try:
                out[key] = version(name)
                break
            except PackageNotFoundError:
                continue
    return out
