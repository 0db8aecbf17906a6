# All targets create/update .venv themselves. torch is pinned to the CPU wheel that
# this machine class ships on disk; an unpinned torch would pull a multi-GB CUDA build.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   ?= torch==2.13.0
DEMO_DIR ?= runs/demo

.PHONY: setup demo test test-fast lint bench wheel gpu-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/pip install -q "$(TORCH)"
	# DeepSpeed ships as an sdist whose build imports torch: build it against the torch above.
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation "deepspeed>=0.16,<0.20"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/merl demo --out $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python -m bench

# dist/merl_ray-*.whl: what `ray up ray_config.yaml` installs on every node (one wheel only).
wheel: $(STAMP)
	rm -rf dist build
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .
	rm -rf build

# One-GPU check (DDP bf16 + DeepSpeed ZeRO-2 bf16 through Ray Train; see bench/gpu.py). Not part of
# `bench` or CI, and no setup step: a GPU machine brings its own CUDA torch (this venv's is CPU-only).
GPU_PY ?= $(shell test -x $(BIN)/python && echo $(BIN)/python || echo $(PY))
GPU_CHECK_ARGS ?= --out gpu-check.json
gpu-check:
	$(GPU_PY) -m bench gpu $(GPU_CHECK_ARGS)

clean:
	rm -rf runs .pytest_cache
