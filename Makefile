# aha-interp — every target sets up .venv/ first (idempotent), so each is one command from a clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# the released SALMONN masks: found by themselves ($$AHA_OFFICIAL_MASKS, masks/salmonn-13b); MASKS=DIR overrides
MASKS   ?=
# 1 thread: on a busy 2-core machine, 2 OpenMP threads can be far slower than one.
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: setup test test-fast test-slow reproduce reproduce-fast figures figures-salmonn notebooks bench clean

setup: $(STAMP)

# torch first, pinned to the CPU build on local disk; an unpinned torch pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(BIN)/pip install -q -e '.[test,notebooks]'
	$(BIN)/python -c "import aha_interp, pytest, nbclient"
	touch $(STAMP)

# everything CI runs; `test-fast` skips the slow tests (torchrun, notebook execution, long training),
# `test-slow` runs only those
test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# The main job: every table and figure of the paper, on the embedded tiny LALM and the released SALMONN masks.
reproduce: setup
	$(BIN)/aha-interp reproduce --out figures

# A smoke run of every experiment (few clips per point) into runs/reproduce-fast/.
reproduce-fast: setup
	$(BIN)/aha-interp reproduce --fast

figures: reproduce

figures-salmonn: setup
	$(BIN)/aha-interp figures salmonn $(if $(MASKS),--masks $(MASKS)) --out figures/salmonn

clean:
	rm -rf $(VENV) .pytest_cache

# Execute the notebooks in place so that their outputs are stored (what readers see on GitHub).
notebooks: setup
	$(BIN)/python notebooks/build_notebooks.py --execute

bench: setup
	$(BIN)/python benchmarks/gate_overhead.py
	$(BIN)/python benchmarks/train_overhead.py
	$(BIN)/python benchmarks/prune_speed.py
