# Two entry points (see README): `make demo` runs the main job on the embedded default, `make test` the tests.
# Both install what they need first and skip whatever is already installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Real photographs for the embedded corpus (clean: wallpapers; fill: other photos; see blindbench/corpus.py),
# chromium for the user-study page's real-browser test (driven by playwright from the dev extra), and tcmalloc,
# which the `blindbench` command starts under (CPU forward passes ~2x faster; see blindbench/runtime.py).
APT_PACKAGES := mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers \
	opencv-doc palapeli-data chromium libtcmalloc-minimal4

.PHONY: demo test setup apt lint bench clean-data

demo: setup
	$(BIN)/blindbench demo

test: setup
	$(BIN)/python -m pytest -q

setup: apt $(VENV)/.installed

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# torch first, pinned to the CPU build that is on local disk; then the project (its torch range admits 2.13.0).
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/generate.py

clean-data:
	rm -rf data
