"""A Beam SDK worker's boot program, for worker pools on machines that have skyshard installed.

Beam's runners start Python workers in one of two ways: in a container, whose entrypoint is
Beam's ``boot`` program (the Docker worker image, ``docker/Dockerfile`` target ``worker``), or,
with ``--environment_type=EXTERNAL``, by asking a worker pool
(``python -m apache_beam.runners.worker.worker_pool_main``) already running on the worker
machine. Without ``--container_executable``, that pool starts a bare ``SdkHarness`` that never
receives the job's pipeline options: Beam's file systems then have no options, and reading or
writing ``s3://`` fails in the worker ("Must provide one of client or options").

This program does what Beam's ``boot`` does for a container, minus installing artefacts
(skyshard and its pins are installed already): it fetches the job's provision info (pipeline
options, endpoints) from the runner, puts it where ``sdk_worker_main`` reads it, and runs
``sdk_worker_main``, which hands the options to ``FileSystems``. Use it as the pool's
executable::

    python -m apache_beam.runners.worker.worker_pool_main --service_port=50000 \\
        --container_executable=skyshard-beam-worker

The pool calls it with ``--id``, ``--provision_endpoint``, ``--control_endpoint``,
``--logging_endpoint`` and ``--artifact_endpoint`` (the last is not used).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="skyshard-beam-worker", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--id", required=True, help="worker id")
    parser.add_argument("--provision_endpoint", required=True)
    parser.add_argument("--control_endpoint", required=True)
    parser.add_argument("--logging_endpoint", default="")
    parser.add_argument("--artifact_endpoint", default="")
    parser.add_argument("--semi_persistent_directory", default="")
    return parser.parse_args(argv)


def worker_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment ``sdk_worker_main`` reads: pipeline options and endpoints from the
    runner's provision service (the flags where it names none)."""
    import grpc
    from apache_beam.portability.api import (beam_provision_api_pb2,
                                             beam_provision_api_pb2_grpc, endpoints_pb2)
    from google.protobuf import json_format, text_format

    with grpc.insecure_channel(args.provision_endpoint) as channel:
        info = beam_provision_api_pb2_grpc.ProvisionServiceStub(channel).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(),
            metadata=[("worker_id", args.id)]).info

    def descriptor(provided, flag: str) -> str:
        url = provided.url if provided.url else flag
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    env = {**os.environ,
           "WORKER_ID": args.id,
           "PIPELINE_OPTIONS": json_format.MessageToJson(info.pipeline_options),
           "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(info.control_endpoint,
                                                        args.control_endpoint),
           "SEMI_PERSISTENT_DIRECTORY": (args.semi_persistent_directory
                                         or tempfile.mkdtemp(prefix="skyshard-worker-"))}
    if info.logging_endpoint.url or args.logging_endpoint:
        env["LOGGING_API_SERVICE_DESCRIPTOR"] = descriptor(info.logging_endpoint,
                                                           args.logging_endpoint)
    if info.runner_capabilities:
        env["RUNNER_CAPABILITIES"] = " ".join(info.runner_capabilities)
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    env = worker_environment(args)
    os.execve(sys.executable, [sys.executable, "-m",
                               "apache_beam.runners.worker.sdk_worker_main"], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
