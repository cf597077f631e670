"""Process set-up shared by every command: quiet TensorFlow, one logging format."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def quiet_tensorflow() -> None:
    """Set TensorFlow's log and oneDNN switches; must run before ``import tensorflow``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def configure_logging(verbose: bool = False) -> None:
    """One format for skyshard and Beam; ``force=True`` because importing Beam configures root."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger().addFilter(_drop_beam_import_noise)
    if not verbose:
        # Odd headers in real archives make astropy warn per card; what matters about a file is
        # whether it becomes a record or a dead letter (with the reason), not these warnings.
        from astropy.utils.exceptions import AstropyWarning

        warnings.filterwarnings("ignore", category=AstropyWarning)
    for noisy in ("apache_beam", "absl", "tensorflow", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _drop_beam_import_noise(record: logging.LogRecord) -> bool:
    """Beam warns about optional Google Cloud clients on import; irrelevant offline."""
    return "apitools not found" not in record.getMessage()
