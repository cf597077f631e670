# skyshard: `make test` and `make demo` create .venv from constraints.txt on first use.
# GPU=1 (`make venv GPU=1`, `make test GPU=1`): TensorFlow with CUDA (the `gpu` extra, pinned by
# constraints-gpu.txt) instead of the CPU build. One .venv holds one of the two, never both.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
GPU    ?=
TF     := $(if $(GPU),gpu,cpu)
OTHER  := $(if $(GPU),cpu,gpu)
STAMP  := $(VENV)/.installed-$(TF)
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: venv test demo model bench bench-quick bench-test docker docker-test clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt constraints-gpu.txt
	@if [ -e $(VENV)/.installed-$(OTHER) ] || { [ "$(TF)" = gpu ] && [ -e $(VENV)/.installed ]; }; \
	then echo "make: $(VENV) holds the $(OTHER) TensorFlow; 'make clean' first (two TensorFlows cannot share it)" >&2; exit 2; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(if $(GPU),constraints-gpu.txt,constraints.txt) -e '.[$(TF),test]'
	touch $(STAMP)

# Two pytest processes (pytest-xdist), each test file whole on one of them: the suite is mostly
# single-threaded TensorFlow and Beam startups, so two cores take half the time.
# TEST_WORKERS=0 runs it in one process. No benchmark runs here: tests marked `bench` are
# deselected (make bench-test runs them).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not bench and not research and not docker" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/skyshard demo $(or $(WORKDIR),demo-run) --fresh

# The built-in general model (skyshard/builtin/general/): a large sample, exported and trained
# with a fixed recipe (research/builtin_model.py); about an hour on two cores.
MODEL_WORK ?= build/builtin-model

model: $(STAMP)
	$(BIN)/python -m research.builtin_model --work $(MODEL_WORK)

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

# The quick benchmark end to end (a few minutes), checking the shape of what it writes.
bench-test: $(STAMP)
	$(BIN)/python -m pytest -q -m bench $(PYTEST_ARGS)

# The research tools (ablation, fine-tuning, real-frame report) end to end on tiny data.
research-test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m research $(PYTEST_ARGS)

# Two images: the command line (skyshard:0.1.0) and a Beam SDK worker for cluster runners
# (skyshard-worker:0.1.0); docs/cluster.md.
# PYTHON_IMAGE / BEAM_SDK_IMAGE: a registry's copies of the base images where Docker Hub is out
# of reach (`make docker PYTHON_IMAGE=registry.example.org/python:3.11-slim ...`).
DOCKER_BASES := $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
                $(if $(BEAM_SDK_IMAGE),--build-arg BEAM_SDK_IMAGE=$(BEAM_SDK_IMAGE))

docker:
	docker build $(DOCKER_BASES) -f docker/Dockerfile --target cli -t skyshard:0.1.0 .
	docker build $(DOCKER_BASES) -f docker/Dockerfile --target worker -t skyshard-worker:0.1.0 .

# Builds both images and runs them: the command line on a mounted folder, the worker as Beam's
# DOCKER environment against an S3 server on loopback (needs a Docker daemon; the base images
# from Docker Hub, or SKYSHARD_PYTHON_IMAGE / SKYSHARD_BEAM_SDK_IMAGE naming copies).
docker-test: $(STAMP)
	$(BIN)/python -m pytest -q -m docker tests/test_docker_images.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) demo-run .pytest_cache
