"""The install's pins stay coherent: one TensorFlow per install (the CPU build by default, the
CUDA build with the `gpu` extra), the same version either way, every requirement pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TENSORFLOWS = {"tensorflow", "tensorflow-cpu"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pins(name: str) -> tuple[dict[str, str], list[str]]:
    """``constraints file -> ({distribution: version}, [included constraint files])``."""
    pins, included = {}, []
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-c "):
            included.append(line[3:].strip())
        elif line:
            dist, version = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line).groups()
            pins[canonicalize_name(dist)] = version
    return pins, included


def test_tensorflow_comes_from_exactly_one_extra():
    project = _project()
    base = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not base & TENSORFLOWS, "a TensorFlow in the base dependencies joins the GPU one"
    cpu = [Requirement(r) for r in project["optional-dependencies"]["cpu"]]
    gpu = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    assert [(r.name, r.extras) for r in cpu] == [("tensorflow-cpu", set())]
    assert [(r.name, r.extras) for r in gpu] == [("tensorflow", {"and-cuda"})]
    assert cpu[0].specifier == gpu[0].specifier


def test_the_cpu_and_gpu_pins_agree_and_pin_every_requirement():
    cpu, cpu_included = _pins("constraints.txt")
    gpu_own, gpu_included = _pins("constraints-gpu.txt")
    assert cpu_included == [] and gpu_included == ["constraints.txt"]
    assert "tensorflow" not in cpu and "tensorflow-cpu" not in gpu_own
    assert gpu_own["tensorflow"] == cpu["tensorflow-cpu"]
    assert not set(gpu_own) & set(cpu), "constraints-gpu.txt repeats a CPU pin"
    assert all(name == "tensorflow" or name.startswith("nvidia-") for name in gpu_own)

    project = _project()
    extras = project["optional-dependencies"]
    for text in [*project["dependencies"], *extras["cpu"], *extras["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "skyshard":  # another extra of this package (test includes aws)
            continue
        assert name in cpu, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(cpu[name], prereleases=True), (name, cpu[name])
    tensorflow = Requirement(extras["gpu"][0])
    assert tensorflow.specifier.contains(gpu_own["tensorflow"])


def test_every_install_path_names_its_tensorflow():
    makefile = (REPO / "Makefile").read_text()
    assert "-c $(if $(GPU),constraints-gpu.txt,constraints.txt) -e '.[$(TF),test]'" in makefile
    assert "TF     := $(if $(GPU),gpu,cpu)" in makefile
    # both images (the command line and the Beam worker, which scores) need TensorFlow
    assert "'.[cpu,aws]'" in (REPO / "docker" / "Dockerfile").read_text()
