"""A real S3-compatible object store on 127.0.0.1, for the tests and the cluster benchmark:
moto's server mode in a subprocess, and Beam worker pools that read from and write to it.

:func:`s3_server` starts the server on a free port, waits until it answers (polling, no fixed
sleep), sets the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) for the test process and every process it
starts, and stops it afterwards. Nothing is looked up on the network: the endpoint is an IP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from urllib.error import URLError
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
BUCKET = "skyshard-tests"

AWS_VARIABLES = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` s or when
    ``process`` died."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:g} s")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        with urlopen(url, timeout=1):
            return True
    except (URLError, OSError):
        return False


@contextlib.contextmanager
def s3_server(log_dir: Path) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 with the AWS variables set; yields the endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_dir / "moto.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # a live request log
    saved = {name: os.environ.get(name) for name in [*AWS_VARIABLES, "AWS_ENDPOINT_URL"]}
    try:
        wait_until(lambda: _answers(endpoint), 60, "moto's S3 server", process)
        os.environ.update(AWS_VARIABLES, AWS_ENDPOINT_URL=endpoint)
        from skyshard import storage

        storage.configure()  # a fresh client for this endpoint
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def upload_tree(folder: Path, url: str) -> None:
    """Copy every file under ``folder`` to ``url`` (``s3://bucket/prefix``), keys relative."""
    import boto3

    bucket, _, prefix = url[len("s3://"):].partition("/")
    client = boto3.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder)}")


def keys_under(url: str) -> list[str]:
    import boto3

    bucket, _, prefix = url[len("s3://"):].partition("/")
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    return sorted(o["Key"][len(prefix) + 1:] for page in pages for o in page.get("Contents", []))


def export_contents(export: str | Path) -> dict:
    """What must be equal between two exports of the same frames: every record's bytes by key
    (with its split), the scaler, the counts per split and class, and the shard hashes."""
    from skyshard.example_proto import decode_example
    from skyshard.manifest import Manifest
    from skyshard.tfrecord import read_records

    manifest = Manifest.read(export)
    records = {}
    for split in manifest.splits:
        for path in manifest.shard_paths(export, split):
            for data in read_records(path):
                example = decode_example(data)
                records[example["key"].decode()] = (example["split"].decode(),
                                                    hashlib.sha256(data).hexdigest())
    return {"records": records, "scaler": manifest.scaler,
            "counts": {name: dict(info.counts_per_class) for name, info in
                       manifest.splits.items()},
            "shards": sorted(s.sha256 for info in manifest.splits.values() for s in info.shards),
            "classes": list(manifest.classes)}


@contextlib.contextmanager
def worker_pool(log_dir: Path, name: str = "worker-pool") -> Iterator[str]:
    """A Beam worker pool on 127.0.0.1 (``worker_pool_main``), its workers started by
    skyshard's worker boot program in processes of their own; yields ``localhost:PORT`` for
    ``--environment_config``. The pool inherits the AWS variables, as a worker machine's would
    be configured."""
    port = free_port()
    boot = log_dir / "skyshard-beam-worker"
    boot.write_text(f"#!/bin/sh\nexec {sys.executable} -m exporter.worker_boot \"$@\"\n")
    boot.chmod(0o755)
    env = {**os.environ,
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get(
               "PYTHONPATH")])])}
    log = open(log_dir / f"{name}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
         f"--service_port={port}", f"--container_executable={boot}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_dir)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 60, "Beam's worker pool", process)
        yield f"localhost:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
