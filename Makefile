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

# make budget-<slug>: train the package's baseline arm at the tiny preset's shape for STEPS steps
# (constant lr after warm-up, val loss every EVAL_EVERY), then `repro-budget` says from which step
# the val loss improves < 1% per 10% of the steps and how long the grid takes there (its trained
# arms x BUDGET_SEEDS runs on BUDGET_JOBS workers, capped at 90 minutes). A finished run in
# BUDGET_DIR/<slug> is measured again, a partial one resumed from its checkpoint, nothing replaced.
STEPS ?= 3000
EVAL_EVERY ?= 100
SAVE_EVERY ?= 250
BUDGET_DIR ?= runs/budget
BUDGET_SEEDS ?= 3
BUDGET_JOBS ?= 2
BUDGET_SET ?= train.min_lr_ratio=1.0
BUDGET_SLUGS := finedeep cartesian_moe scaffold_bpe
budget_train_finedeep := repro-finedeep-train
budget_arm_finedeep := model.variant=dense
budget_train_cartesian_moe := repro-cartesian-moe-train
budget_arm_cartesian_moe := model.variant=dense
budget_train_scaffold_bpe := repro-scaffold-bpe-lm-train
budget_arm_scaffold_bpe := data.tokenizer=plain-bpe:4096
budget_arms_prefix_scaffold_bpe := lm-

budget-%: setup ## a tiny grid's step budget from one long baseline run: make budget-finedeep [STEPS=3000]
	@test -n "$(budget_train_$*)" || { echo "error: no budget baseline for '$*'; available: $(BUDGET_SLUGS)"; exit 2; }
	@dir=$(BUDGET_DIR)/$*; flags=; \
	if [ -f $$dir/results.json ]; then \
	  echo "make budget-$*: $$dir holds a finished run; measuring it (remove it to train again)"; \
	else \
	  if [ -n "$$(ls -A $$dir 2>/dev/null)" ]; then \
	    if compgen -G "$$dir/checkpoints/step-*" >/dev/null; then flags=--resume; \
	    else echo "error: $$dir holds a partial run with no checkpoint to resume: remove it or set BUDGET_DIR"; exit 2; fi; \
	  fi; \
	  OMP_NUM_THREADS=1 nice -n 10 $(RUN) $(budget_train_$*) --preset tiny --run-dir $$dir $$flags \
	    --set $(budget_arm_$*) --set train.max_steps=$(STEPS) --set train.eval_every=$(EVAL_EVERY) \
	    --set train.save_every=$(SAVE_EVERY) --set train.progress=true $(foreach kv,$(BUDGET_SET),--set $(kv)) || exit $$?; \
	fi; \
	arms=$$($(RUN) python -c "from repro_$*.reproduce import GRID; \
	  print(sum(len(a.settings or GRID.settings) for a in GRID.arms if a.name.startswith('$(budget_arms_prefix_$*)')))") || exit $$?; \
	$(RUN) repro-budget $$dir --arms $$arms --seeds $(BUDGET_SEEDS) --jobs $(BUDGET_JOBS)

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
