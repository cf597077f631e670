"""docker/Dockerfile: the command-line image and the Beam worker image.

Everywhere, the file is checked as far as it can be without Docker: the worker target starts
from the SDK image of the Beam version pinned here, ends in Beam's boot entrypoint, and installs
the aws extra. Where Docker runs and the base images can be had (``make docker-test``, marker
``docker``), both images are built and run: the command line exports a mounted folder, and the
worker image serves as Beam's DOCKER environment for an export on an S3 server on loopback."""

from __future__ import annotations

import json
import os
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
    assert re.search(r"(?m)^ARG BEAM_SDK_IMAGE=(\S+)$", text)[1] == (
        "apache/beam_python3.11_sdk:${BEAM_VERSION}")
    assert stages["beam-sdk"].startswith("${BEAM_SDK_IMAGE} AS beam-sdk")
    assert re.search(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", text)[1] == "python:3.11-slim"
    assert stages["base"].startswith("${PYTHON_IMAGE} AS base")
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


#: Base images for the build: Docker Hub's unless these variables name a registry's copies
#: (the Dockerfile's PYTHON_IMAGE and BEAM_SDK_IMAGE build arguments).
BASE_IMAGES = {"PYTHON_IMAGE": os.environ.get("SKYSHARD_PYTHON_IMAGE", "python:3.11-slim"),
               "BEAM_SDK_IMAGE": os.environ.get("SKYSHARD_BEAM_SDK_IMAGE")}


def _base_images_available() -> bool:
    """Whether the base images are here or can be pulled (the test builds nothing without)."""
    for image in filter(None, BASE_IMAGES.values()):
        if subprocess.run(["docker", "image", "inspect", image],
                          capture_output=True).returncode == 0:
            continue
        if subprocess.run(["docker", "pull", image], capture_output=True).returncode != 0:
            return False
    return True


@pytest.fixture(scope="module")
def images():
    """Both targets built from the repository (``make docker``'s commands, test tags)."""
    if not _docker_runs():
        pytest.skip("no Docker daemon on this machine")
    if not _base_images_available():
        pytest.skip(f"base images out of reach ({', '.join(filter(None, BASE_IMAGES.values()))});"
                    " set SKYSHARD_PYTHON_IMAGE / SKYSHARD_BEAM_SDK_IMAGE to a registry's copies")
    args = [f"--build-arg={name}={image}" for name, image in BASE_IMAGES.items() if image]
    for target, tag in (("cli", "skyshard:test"), ("worker", "skyshard-worker:test")):
        subprocess.run(["docker", "build", "--network=host", *args, "-f", str(DOCKERFILE),
                        "--target", target, "-t", tag, str(REPO)], check=True,
                       env={**os.environ, "DOCKER_BUILDKIT": os.environ.get(
                           "DOCKER_BUILDKIT", "1" if shutil.which("docker-buildx") else "0")})
    return {"cli": "skyshard:test", "worker": "skyshard-worker:test"}


@pytest.mark.docker
def test_the_command_line_image_exports_a_mounted_folder(images, tmp_path):
    from sample import write_sample_tree

    frames, out = tmp_path / "frames", tmp_path / "out"
    write_sample_tree(frames, per_class=2, seed=8, classes=["bias", "flats", "spectrum"])
    out.mkdir()
    out.chmod(0o777)  # the image runs as its own user
    done = subprocess.run(["docker", "run", "--rm", "-v", f"{frames}:/data/frames:ro",
                           "-v", f"{out}:/data/out", images["cli"], "export", "/data/frames",
                           "/data/out/export", "--image-size", "32"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert sum(sum(split["counts_per_class"].values())
               for split in manifest["splits"].values()) == 6


@pytest.mark.docker
def test_the_worker_image_is_a_beam_worker(images, tmp_path, capsys):
    """The export with ``--environment_type=DOCKER``: the runner starts the worker image as
    Flink, Spark and Dataflow do (``docker run IMAGE --id=… --control_endpoint=…``), the job's
    options (the store's endpoint and keys) reach the container through the provision service,
    and the records are those of the local export."""
    import apache_beam

    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", images["worker"], "-c",
         "import exporter.pipeline, apache_beam.io.aws.s3filesystem, apache_beam; "
         "print(apache_beam.__version__)"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == apache_beam.__version__
    from bench.object_store import (AWS_VARIABLES, BUCKET, export_contents, s3_server,
                                    upload_tree)
    from cli.main import main
    from sample import write_sample_tree

    frames = tmp_path / "frames"
    write_sample_tree(frames, per_class=2, seed=8, classes=["bias", "flats", "spectrum"])
    assert main(["export", str(frames), str(tmp_path / "local"), "--image-size", "32"]) == 0
    before = _containers(images["worker"])
    try:
        with s3_server(tmp_path) as endpoint:
            upload_tree(frames, f"s3://{BUCKET}/frames")
            out = f"s3://{BUCKET}/export"
            assert main(["export", f"s3://{BUCKET}/frames", out, "--image-size", "32",
                         "--environment_type=DOCKER",
                         f"--environment_config={images['worker']}",
                         f"--s3_endpoint_url={endpoint}",
                         f"--s3_access_key_id={AWS_VARIABLES['AWS_ACCESS_KEY_ID']}",
                         f"--s3_secret_access_key={AWS_VARIABLES['AWS_SECRET_ACCESS_KEY']}",
                         f"--s3_region_name={AWS_VARIABLES['AWS_DEFAULT_REGION']}"]) == 0
            remote = export_contents(out)
    finally:
        started = _containers(images["worker"]) - before
        if started:  # Beam stops its worker containers but leaves them behind
            subprocess.run(["docker", "rm", "-f", *started], capture_output=True)
    assert started, "the job ran without starting the worker image"
    local = export_contents(tmp_path / "local")
    assert local["records"] and remote == local
    capsys.readouterr()


def _containers(image: str) -> set[str]:
    listed = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"ancestor={image}"],
                            capture_output=True, text=True, check=True).stdout
    return set(listed.split())
