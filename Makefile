# The two commands a newcomer runs on a fresh machine (README): `make demo` and `make test`.
# Both install what they need first; `make setup` is shared and idempotent.

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
APT_PACKAGES = mosquitto systemd nodejs npm

.PHONY: setup system-packages python-packages models demo test lint

setup: system-packages python-packages models

system-packages:
	@if { ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; } || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

python-packages:
	$(PIP) install -q -e ".[dev,export,bench]"
	# face_recognition 1.3.0 requires a package named `dlib`; dlib-bin (bench extra) provides the module
	# without compiling, so the peer itself is installed without its dependency list.
	$(PIP) install -q --no-deps face_recognition==1.3.0

models:
	$(PYTHON) models/recipe.py detectors
	$(PYTHON) models/recipe.py check

demo: setup
	edgeface demo

lint:
	ruff check . && ruff format --check .

test: setup lint
	$(PYTHON) models/recipe.py verify-embedder
	$(PYTHON) -m pytest -q
