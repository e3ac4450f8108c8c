# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv from
# pyproject.toml first (python3 >= 3.11 with venv and pip is all the machine needs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint diagram bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,diagrams]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mikrovoice demo

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mikrovoice tests
	$(BIN)/mypy

diagram: $(STAMP)
	$(BIN)/mikrovoice diagram

# One core, as the targets say; numpy's BLAS kept to one thread too.
bench: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 $(BIN)/python bench/simulation_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
