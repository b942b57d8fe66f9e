# Two entry points for a fresh machine: `make demo` and `make test`.
# The venv gets torch==2.13.0 first (a CPU wheel on local disk) so that every extra's
# `torch>=2.2` range is already satisfied and pip never fetches a multi-GB CUDA build;
# then the package with every extra (all: torch, jax, keras, bench, ray, schedulefree, hf,
# lightning) and the test tools (dev).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo-out
export KERAS_BACKEND ?= torch
export MPLBACKEND ?= Agg

.PHONY: demo test venv bench results results-check clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/budgetsched schedules --out $(OUT)
	$(BIN)/budgetsched run --preset demo --store $(OUT)/study.db
	$(BIN)/budgetsched report $(OUT)/study.db --format md --output $(OUT)/report.md
	$(BIN)/budgetsched report $(OUT)/study.db
	$(BIN)/budgetsched plot $(OUT)/study.db --out $(OUT)

# docs/results.md's tables from the committed results (results/*.jsonl.gz), without retraining
results: $(STAMP)
	$(BIN)/python tools/render_docs.py docs/results.md

results-check: $(STAMP)
	$(BIN)/python tools/render_docs.py --check docs/results.md

bench: $(STAMP)
	$(BIN)/python benchmarks/scheduler_overhead.py
	$(BIN)/python benchmarks/engines.py --quick

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
