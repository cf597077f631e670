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
    # Beam logs a Ctrl-C inside a transform as an error with its traceback before re-raising
    # it; the command reports the interruption itself, in one line.
    logging.getLogger("apache_beam.runners.common").addFilter(_drop_interrupt_report)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # inherited by reader helpers and Beam worker processes
    quiet_library_warnings()
    for noisy in ("apache_beam", "absl", "tensorflow", "matplotlib", "PIL"):
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


#: The runner a Beam job gets when its options name none: Beam's local portable runner, the one
#: the ``DirectRunner`` runs batch pipelines on. In current Beam (2.77 is pinned) the
#: ``DirectRunner`` first downloads the Prism runner's binary from the internet and runs the
#: job there when it can, falling back to this runner offline and leaving a temporary folder
#: behind each time; Beam's own advice for keeping the local behaviour is to name this runner.
DEFAULT_RUNNER = "FnApiRunner"


def beam_pipeline(beam_args: list[str] | None):
    """A Beam pipeline for ``beam_args``, passed through untouched, and the name of its runner.

    Without ``--runner`` the pipeline runs on :data:`DEFAULT_RUNNER`, set up as the
    ``DirectRunner`` sets it up (the pipeline options are handed to its workers, which
    ``--direct_running_mode=multi_processing`` starts as processes): a local run downloads
    nothing and runs where it was measured and tested. Those local worker processes log errors
    only (about forty lines of start-up and shut-down news per run otherwise), unless
    ``--verbose`` or ``--default_sdk_harness_log_level`` says otherwise.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import (PipelineOptions, StandardOptions,
                                                      WorkerOptions)

    options = PipelineOptions(list(beam_args or []))
    named = options.view_as(StandardOptions).runner
    if named:
        return beam.Pipeline(options=options), str(named)
    workers = options.view_as(WorkerOptions)
    if not workers.default_sdk_harness_log_level and os.environ.get(VERBOSE_ENV) != "1":
        workers.default_sdk_harness_log_level = "ERROR"
    return beam.Pipeline(runner=_local_runner(options), options=options), DEFAULT_RUNNER


def _local_runner(options):
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def _drop_interrupt_report(record: logging.LogRecord) -> bool:
    """False for a log record that only reports a Ctrl-C (KeyboardInterrupt)."""
    if record.exc_info and record.exc_info[0] is not None \
            and issubclass(record.exc_info[0], KeyboardInterrupt):
        return False
    return not record.getMessage().startswith("KeyboardInterrupt")


def _drop_beam_import_noise(record: logging.LogRecord) -> bool:
    """Beam warns about optional Google Cloud clients on import; irrelevant offline."""
    return "apitools not found" not in record.getMessage()
