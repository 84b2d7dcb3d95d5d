# maskbnn — every target depends on `setup`; step targets mirror the pipeline's step names.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NET ?= mask_1w1a_0.25
BOARD ?= Pynq-Z1
EPOCHS ?=
SOURCE ?= data/maskedface-net-sample
VENV := .venv
PY := $(VENV)/bin/python
MASKBNN := $(VENV)/bin/maskbnn
BUILD := build
DEPS := requirements/torch.txt requirements/build.txt requirements/nodeps.txt requirements/lock.txt pyproject.toml
# The stamp's name carries a hash of the dependency files: any change to them re-runs setup,
# an unchanged tree makes `make setup` a no-op that takes well under a second.
STAMP := $(VENV)/.setup-$(shell cat $(DEPS) 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: help setup test lint format data demo train evaluate bench clean

help:
	@echo "make demo            set up, then run every stage on the shipped sample and weights"
	@echo "make test            set up, lint, run the test suite"
	@echo "make data SOURCE=DIR prepare a MaskedFace-Net folder into build/data/"
	@echo "make train NET=...   train a network (EPOCHS=N to override the config)"
	@echo "make bench           speed benchmarks, results in build/bench/"

setup: $(STAMP)

# pip warns once per package about index folders this machine's pip.conf names but lacks; hide that.
PIP = set -o pipefail; $(PY) -m pip install -q $(1) 2>&1 | { grep -v "is ignored: it is neither" || true; }

$(STAMP): $(DEPS)
	@command -v python3.11 >/dev/null || { echo "maskbnn needs python3.11 on PATH" >&2; exit 1; }
	test -x $(PY) || python3.11 -m venv $(VENV)
	@echo "installing the pinned working set into $(VENV) (see requirements/README.md)"
	@$(call PIP,-r requirements/torch.txt)
	@$(call PIP,-r requirements/build.txt)
	@$(call PIP,--no-deps -r requirements/nodeps.txt)
	@$(call PIP,--no-deps -r requirements/lock.txt)
	@$(call PIP,--no-deps --no-build-isolation -e .)
	rm -f $(VENV)/.setup-*
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(VENV)/bin/pytest -q

# --- pipeline steps ------------------------------------------------------------------------
DATA_OUT := $(BUILD)/data/$(notdir $(SOURCE))

data: setup
	$(MASKBNN) data prepare --source $(SOURCE) --out $(DATA_OUT)

demo: setup
	$(MASKBNN) demo

clean:
	rm -rf $(BUILD)
