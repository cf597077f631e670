"""docker/Dockerfile: the command-line image and the Beam worker image.

Where Docker runs, both images are built and run (a Beam worker must import skyshard's
transforms and Beam's S3 file system, and carry Beam's boot program); elsewhere that test skips
and the file is checked as far as it can be without Docker: the worker target starts from the
SDK image of the Beam version pinned here, ends in Beam's boot entrypoint, and installs the
aws extra."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def _stages(text: str) -> dict[str, str]:
    """Stage name -> its lines, from ``FROM ... AS name`` to the next FROM."""
    parts = re.split(r"(?m)^FROM ", text)[1:]
    return {part.split("\n", 1)[0].split()[-1]: part for part in parts}


def test_worker_target_is_a_beam_worker_of_the_pinned_beam():
    import apache_beam

    text = DOCKERFILE.read_text()
    pinned = re.search(r"(?m)^apache-beam==(\S+)$", (REPO / "constraints.txt").read_text())[1]
    assert re.search(r"(?m)^ARG BEAM_VERSION=(\S+)$", text)[1] == pinned == apache_beam.__version__
    stages = _stages(text)
    assert "apache/beam_python3.11_sdk:${BEAM_VERSION}" in stages["beam-sdk"]
    worker = stages["worker"]
    assert worker.startswith("base AS worker")
    assert "COPY --from=beam-sdk /opt/apache/beam /opt/apache/beam" in worker
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in worker
    assert "'.[cpu,aws]'" in stages["base"] and "-c constraints.txt" in stages["base"]
    assert 'ENTRYPOINT ["skyshard"]' in stages["cli"]
    # `docker build` without --target still gives the command-line image.
    assert list(stages)[-1] == "cli"


def _docker_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _docker_runs(), reason="no Docker daemon on this machine")
def test_images_build_and_run():
    for target, tag in (("cli", "skyshard:test"), ("worker", "skyshard-worker:test")):
        subprocess.run(["docker", "build", "-f", str(DOCKERFILE), "--target", target, "-t", tag,
                        str(REPO)], check=True)
    done = subprocess.run(["docker", "run", "--rm", "skyshard:test", "--help"],
                          capture_output=True, text=True, check=True)
    assert "export" in done.stdout
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", "skyshard-worker:test", "-c",
         "import exporter.pipeline, apache_beam.io.aws.s3filesystem, apache_beam; "
         "print(apache_beam.__version__)"], capture_output=True, text=True, check=True)
    import apache_beam

    assert done.stdout.strip() == apache_beam.__version__
    subprocess.run(["docker", "run", "--rm", "--entrypoint", "test", "skyshard-worker:test",
                    "-x", "/opt/apache/beam/boot"], check=True)
