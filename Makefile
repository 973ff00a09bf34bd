# Two promises of the README: `make reproduce` and `make test`. Both start with `setup`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PRESET ?= fashion_mnist
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

.PHONY: setup data test test-unit test-notebooks reproduce notebooks book bench edition clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (coded_lib)"
	touch $@

# Offline data and the browser for the book test: Debian packages, where apt-get can install them.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "Fashion-MNIST and chromium already installed"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist chromium chromium-driver) \
	    || echo "warning: apt-get could not install dataset-fashion-mnist / chromium; see README (Data)"; \
	else \
	  echo "note: no root apt-get here; install the Debian package dataset-fashion-mnist or set CODED_DATA (see README)"; \
	fi

setup: $(VENV)/.installed data

# One torch thread per process: the suite runs subprocesses (resume, gloo, XLA) and notebook kernels,
# and two processes each spinning two OpenMP threads on 2 cores were measured 5-20x slower. Two pytest
# workers (pytest-xdist) keep both cores busy; --dist loadfile keeps each file, so each notebook's cells,
# in one worker and in order.
test: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider \
	  -n 2 --dist loadfile

test-unit: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest tests -p no:cacheprovider

reproduce: setup
	$(PY) -m coded_lib.companion.reproduce --preset $(PRESET)

# rebuild the book from whatever notebooks already ran (no training)
book: setup
	$(PY) -m coded_lib.companion.reproduce --no-execute

# An edition of the book run by one runner (coded_lib.companion.at_scale), resumable stage by stage:
# EDITION=full (all of Fashion-MNIST on this CPU, ~2.5 h on 2 cores), EDITION=gpu (the paper's network, one GPU)
# or EDITION=default (make reproduce: its trainings go through the same runner, at_scale.default_plan)
EDITION ?= full
edition: setup
	if [ "$(EDITION)" = default ]; then $(PY) -m coded_lib.companion.reproduce --preset $(PRESET); \
	else $(PY) -m coded_lib.companion.at_scale run --edition $(EDITION); fi

bench: setup
	$(PY) benchmarks/run.py

# book/notebooks, book/results.csv and book/comparison.md are the committed edition: not removed
clean:
	rm -rf book/_build runs
