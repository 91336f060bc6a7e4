# repro: ten LLM papers on one core. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv: the one on PATH; else `python -m uv`, which `make setup` installs for the user
# (`pip install --user uv`, nothing system-wide) when it is missing. UV=/path/to/uv picks another.
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN ?= $(UV) run --frozen --no-sync
# Local corpora and eval sets (../shared/data beside the repository, when present).
REPRO_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export REPRO_DATA_DIR
PRESET ?= tiny
JOBS ?= 1
# extra trainer flags for `make quickstart`, e.g. ARGS=--overwrite (replace runs/quickstart)
ARGS ?=
PACKAGES ?=
TASKS ?=
SLUGS := $(sort $(notdir $(wildcard packages/*)))
PYTEST_ARGS ?=

.PHONY: help setup quickstart test test-fast lint format base bench perf gpu-check prepare reproduce-all

help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'
	@echo "  packages: $(SLUGS)"

setup: ## install uv for the user if missing, then the whole workspace from uv.lock into .venv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: pip install --user uv"; \
		$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv; }
	$(UV) sync --frozen --all-packages --all-extras

quickstart: ## setup, then train the tiny dense model on wikitext-2 (a few minutes on 2 cores)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory setup && \
	$(RUN) repro-train --preset $(PRESET) --run-dir runs/quickstart $(ARGS); \
	status=$$?; echo "make quickstart: wall time $$(( $$(date +%s) - start )) s"; exit $$status

test: setup ## the whole test suite (CPU, < 20 minutes on 2 cores)
	$(RUN) pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: setup ## the test suite without the multi-process and install tests
	$(RUN) pytest -n 2 -m "not dist and not slow" $(PYTEST_ARGS)

lint: setup ## ruff check + format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup ## ruff format + autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

base: setup ## pretrain the tiny dense base for DSMoE / UniAttn / HARPE into runs/base/final
	$(RUN) repro-train --preset base --run-dir runs/base $(if $(wildcard runs/base/checkpoints),--resume,)

reproduce-%: setup ## run a package's experiment grid: make reproduce-finedeep [PRESET=tiny] [JOBS=2]
	@test -d packages/$* || { echo "no package packages/$*; available: $(SLUGS)"; exit 2; }
	$(RUN) python -m repro_$*.reproduce --preset $(PRESET) --jobs $(JOBS)

reproduce-all: setup ## every package's reproduce-<slug> in turn
	@for s in $(SLUGS); do $(MAKE) --no-print-directory reproduce-$$s PRESET=$(PRESET) JOBS=$(JOBS) || exit $$?; done

bench: setup ## lm-eval on every package with reproduced checkpoints: [PACKAGES=a,b] [TASKS=x,y]
	$(RUN) repro-bench $(if $(PACKAGES),--packages $(PACKAGES),) $(if $(TASKS),--tasks $(TASKS),)

perf: setup ## performance suite: ratios against the obvious alternative -> benchmarks/results/perf.md
	$(RUN) repro-perf

gpu-check: setup ## bf16 steps of every debug preset on every visible GPU (DDP + ZeRO-2): tokens/s, MFU
	$(RUN) python -m repro_benchmarks.gpu_check

prepare: setup ## tokenize a preset's corpus into shards before a launch: make prepare PRESET=small
	$(RUN) python -m repro_core.prepare --preset $(PRESET)
