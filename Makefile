# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv from
# pyproject.toml first (python3 >= 3.11 with venv and pip is all the machine needs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint diagram bench clean asterisk-libs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,diagrams]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mikrovoice demo

# The real Asterisk of tests/interop (a build for Debian 12 amd64, vendored there) needs these
# runtime libraries; a fresh machine may lack some: install them (Debian/Ubuntu, as root or sudo).
ASTERISK_LIBS := libxml2 libxslt1.1 libsqlite3-0 libssl3 libjansson4 libuuid1 libcrypt1 libedit2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

asterisk-libs:
	@command -v dpkg >/dev/null || { echo "asterisk-libs: no dpkg here; tests/interop says what is missing"; exit 0; }; \
	missing=$$(for p in $(ASTERISK_LIBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing for the real Asterisk of tests/interop:" $$missing; \
		$(SUDO) apt-get install -y --no-install-recommends $$missing \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $$missing; }; \
	fi

test: $(STAMP) lint asterisk-libs
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mikrovoice tests
	$(BIN)/mypy

diagram: $(STAMP)
	$(BIN)/mikrovoice diagram

# Every benchmark of issue 10 (docs/performance.md), under 10 minutes on a 2-core machine; each writes
# bench/results/NAME.json. The simulation on one core, as its target says, numpy's BLAS on one thread.
# A benchmark that fails (its own verdict, or a crash) does not stop the others ("-"); the summary
# then reports its figures as missing or from an older run, and exits 1 if any is.
bench: $(STAMP)
	-OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 $(BIN)/python bench/simulation_speed.py
	-$(BIN)/python bench/fleet.py
	-$(BIN)/python bench/teardown.py
	-$(BIN)/python bench/dead_air.py
	-$(BIN)/python bench/calls.py
	$(BIN)/python bench/summary.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
