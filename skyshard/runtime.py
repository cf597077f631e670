"""Process set-up shared by every command: quiet TensorFlow, one logging format, quiet library
warnings."""

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
    # Beam logs a Ctrl-C inside a transform as an error with its traceback before re-raising
    # it; the command reports the interruption itself, in one line.
    logging.getLogger("apache_beam.runners.common").addFilter(_drop_interrupt_report)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # inherited by reader helpers and Beam worker processes
    quiet_library_warnings()
    for noisy in ("apache_beam", "absl", "tensorflow", "matplotlib", "PIL", "botocore",
                  "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


#: Set by ``--verbose``; reader helpers and Beam workers read it from their environment.
VERBOSE_ENV = "SKYSHARD_VERBOSE"


def quiet_library_warnings() -> None:
    """Silence astropy's per-file warnings unless ``--verbose`` (:data:`VERBOSE_ENV`) is on.

    Odd cards in real archives and truncated files make astropy warn once per card or file;
    what matters about a file is whether it becomes a record or a dead letter with its reason,
    and the dead letter already says that. Runs in every process that reads frames: the
    command itself, the reader helpers (:mod:`exporter.isolation`) and Beam's workers.
    """
    if os.environ.get(VERBOSE_ENV) == "1":
        return
    from astropy.utils.exceptions import AstropyWarning

    warnings.filterwarnings("ignore", category=AstropyWarning)


def _drop_interrupt_report(record: logging.LogRecord) -> bool:
    """False for a log record that only reports a Ctrl-C (KeyboardInterrupt)."""
    if record.exc_info and record.exc_info[0] is not None \
            and issubclass(record.exc_info[0], KeyboardInterrupt):
        return False
    return not record.getMessage().startswith("KeyboardInterrupt")


def _drop_beam_import_noise(record: logging.LogRecord) -> bool:
    """Beam warns about optional Google Cloud clients on import, irrelevant offline, and logs
    every listing of its object-store file systems on the root logger."""
    message = record.getMessage()
    return "apitools not found" not in message and not (
        record.name == "root" and message.startswith("Finished listing")) and not (
        message.startswith("No shards found to finalize"))
