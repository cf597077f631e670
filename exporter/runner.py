"""The Beam runner a job runs on, and its pipeline: Beam's options pass through untouched.

Used by the export (:mod:`exporter.export`) and by scoring with ``--beam``
(:mod:`evaluation.beam_score`).
"""

from __future__ import annotations

import os

from skyshard.runtime import VERBOSE_ENV


#: The runner a Beam job gets when its options name none: Beam's local portable runner, the one
#: the ``DirectRunner`` runs batch pipelines on. In current Beam (2.77 is pinned) the
#: ``DirectRunner`` first downloads the Prism runner's binary from the internet and runs the
#: job there when it can, falling back to this runner offline and leaving a temporary folder
#: behind each time; Beam's own advice for keeping the local behaviour is to name this runner.
DEFAULT_RUNNER = "FnApiRunner"


#: Beam options whose values are secrets: never written into a manifest or a summary.
SECRET_OPTIONS = ("--s3_access_key_id", "--s3_secret_access_key", "--s3_session_token")


def recorded_options(beam_args: list[str] | None) -> list[str]:
    """``beam_args`` as a manifest or summary records them: credentials replaced by ``***``
    (``--s3_secret_access_key=…`` or ``--s3_secret_access_key …``)."""
    out, hide_next = [], False
    for arg in beam_args or []:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        name, equals, _ = arg.partition("=")
        if name in SECRET_OPTIONS:
            if equals:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


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
    """:data:`DEFAULT_RUNNER` with the job's options handed to its workers.

    With ``--environment_type`` (``EXTERNAL`` workers of a worker pool, ``PROCESS``, ``DOCKER``)
    and the default ``--direct_running_mode`` (``in_memory``), the workers are that environment's, and
    ``--direct_num_workers`` N of them are started (each a process of its own, e.g. one
    ``StartWorker`` call to the pool per worker) and share every stage's bundles. This is the
    local way to run N workers that share nothing with the launcher: Beam's embedded portable
    job service (``--runner=PortableRunner --job_endpoint=embed``) runs the job on this same
    runner but with one worker per environment whatever ``--direct_num_workers`` says.
    """
    from apache_beam.options.pipeline_options import DirectOptions, PortableOptions
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle
    from apache_beam.transforms import environments

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    environment = None
    if (options.view_as(PortableOptions).environment_type
            and options.view_as(DirectOptions).direct_running_mode == "in_memory"):
        environment = environments.Environment.from_options(options.view_as(PortableOptions))
    return fn_runner.FnApiRunner(default_environment=environment, provision_info=provision)
