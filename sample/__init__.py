"""Realistic sample frames: the demo data and the test source of skyshard.

Six classes (:data:`CLASSES`): ``bias``, ``darks``, ``flats``, ``deep_sky``, ``planetary`` and
``spectrum``, made by physics rather than noise (sensor models with dark current, hot
pixels, amp glow, read noise and column patterns; optics with vignetting and dust; stars,
galaxies, nebulae, planets, the Moon and the Sun in white light, H-alpha and the extreme
ultraviolet; long-slit, échelle and space spectra, arc lamps and lamp flats), written in the
formats and header conventions of real capture programs, observatories and space missions,
including their mistakes. What does not define a class (camera, frame size and orientation,
bit depth, zero level, file format) is drawn without knowing the class.

Python API::

    from sample import write_sample_tree, write_bad_files, make_frame
    paths = write_sample_tree("frames/", per_class=50, seed=0)
    broken = write_bad_files("broken/")            # kind -> path
    frame = make_frame("darks", seed=0, index=3)   # in memory: plan, ADU, stored array

The command line is ``skyshard sample OUT [--per-class N] [--seed S]`` (see
:mod:`cli.sample`).
"""

import importlib

#: Public name -> defining module. Imported on first use (PEP 562), so that
#: ``import cli.sample`` (every ``skyshard`` start) loads neither numpy nor astropy.
_EXPORTS = {
    "BAD_FILES": "badfiles", "UNREADABLE": "badfiles", "write_bad_files": "badfiles",
    "CLASSES": "frames", "Frame": "frames", "FramePlan": "frames", "frame_rng": "frames",
    "make_frame": "frames", "plan_frame": "frames", "Geometry": "frames",
    "LABELS_FILE": "tree", "SampleExistsError": "tree", "write_sample_tree": "tree",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sample.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sample' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
