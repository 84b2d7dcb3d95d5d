# maskbnn — every target depends on `setup`; step targets mirror the pipeline's step names.
SHELL := /bin/bash
.DEFAULT_GOAL := help

NET ?= mask_1w1a_0.25
BOARD ?= Pynq-Z1
EPOCHS ?=
SOURCE ?= data/maskedface-net-sample
DATA ?= $(SOURCE)
CKPT ?= models/pretrained/$(NET).tar
BOARD_FILES ?=
XILINX_ROOT ?= /tools/Xilinx
VIVADO_VERSION ?= 2024.2
IMAGE ?= maskbnn-finn:$(VIVADO_VERSION)
VENV := .venv
PY := $(VENV)/bin/python
MASKBNN := $(VENV)/bin/maskbnn
BUILD := build
DEPS := requirements/torch.txt requirements/build.txt requirements/nodeps.txt requirements/lock.txt \
	requirements/notebook.txt pyproject.toml
# The stamp's name carries a hash of the dependency files: any change to them re-runs setup,
# an unchanged tree makes `make setup` a no-op that takes well under a second.
STAMP := $(VENV)/.setup-$(shell cat $(DEPS) 2>/dev/null | sha256sum | cut -c1-16)
# A second, small venv: FINN+'s board driver (numpy<2) as the referee of the board tests.
BOARD_VENV := .venv-board
BOARD_DEPS := requirements/board.txt driver/pyproject.toml
BOARD_STAMP := $(BOARD_VENV)/.setup-$(shell cat $(BOARD_DEPS) 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: help setup test test-fast lint format data demo train evaluate export build estimate estimates-all \
	verify rtlsim bitstream deploy fold fold-all fold-report bench ops methods-table docker-image \
	docker-demo docker-bitstream docker-test clean

help:
	@echo "make demo                  set up, then run every stage on the shipped sample and weights"
	@echo "make test                  set up, lint, run the whole test suite (test-fast: no slow tests)"
	@echo "make data SOURCE=DIR       prepare a MaskedFace-Net folder into build/data/"
	@echo "make train NET=.. [EPOCHS=N DATA=DIR]   train (default data: the shipped sample)"
	@echo "make evaluate NET=.. [DATA=DIR]         evaluate the shipped weights on every image of DATA"
	@echo "make export|build|verify NET=.. BOARD=Pynq-Z1|Pynq-Z2   QONNX, FINN build, golden chain"
	@echo "make estimates-all         FINN estimates of the three mask widths on both boards (maskbnn estimate)"
	@echo "make bitstream NET=.. BOARD=..          HLS/RTL sources -> bitfile (needs Vivado; else says how)"
	@echo "make deploy NET=.. BOARD=..             board package: driver wheel, golden vectors, bitstream"
	@echo "make fold NET=.. BOARD=..  |  make fold-report   folding optimizer and its comparison"
	@echo "make bench                 speed benchmarks, results in build/bench/"
	@echo "make ops                   BOPs, FLOPs, OPs of every network (+ ImageNet Bi-Real-18 check)"
	@echo "make methods-table         training methods: accuracy, BOPs, FINN deployable + estimates"
	@echo "make docker-bitstream NET=.. BOARD=.. XILINX_ROOT=DIR   the bitstream in the image, Vivado mounted"
	@echo "make docker-demo | docker-test         the demo in the image | build and check the image"

setup: $(STAMP) $(BOARD_STAMP)

# pip warns once per package about index folders this machine's pip.conf names but lacks; hide that.
PIP = set -o pipefail; $(or $(2),$(PY)) -m pip install -q $(1) 2>&1 | { grep -v "is ignored: it is neither" || true; }

$(STAMP): $(DEPS)
	@command -v python3.11 >/dev/null || { echo "maskbnn needs python3.11 on PATH" >&2; exit 1; }
	test -x $(PY) || python3.11 -m venv $(VENV)
	@echo "installing the pinned working set into $(VENV) (see requirements/README.md)"
	@$(call PIP,-r requirements/torch.txt)
	@$(call PIP,-r requirements/build.txt)
	@$(call PIP,--no-deps -r requirements/nodeps.txt)
	@$(call PIP,--no-deps -r requirements/lock.txt)
	@$(call PIP,--no-deps -r requirements/notebook.txt)
	@$(call PIP,--no-deps --no-build-isolation -e .)
	@$(call PIP,--no-deps --no-build-isolation -e driver)
	@command -v verilator >/dev/null || { echo "installing Debian's verilator (RTL-layer simulation)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq verilator >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq verilator >/dev/null; }; \
	  else sudo apt-get install -y -qq verilator >/dev/null; fi; }
	rm -f $(VENV)/.setup-*
	touch $@

$(BOARD_STAMP): $(BOARD_DEPS)
	test -x $(BOARD_VENV)/bin/python || python3.11 -m venv $(BOARD_VENV)
	@echo "installing FINN+'s board driver (the referee) into $(BOARD_VENV)"
	@$(call PIP,--no-deps -r requirements/board.txt,$(BOARD_VENV)/bin/python)
	@$(call PIP,--no-deps --no-build-isolation -e driver,$(BOARD_VENV)/bin/python)
	rm -f $(BOARD_VENV)/.setup-*
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

# --- pipeline steps, in pipeline/steps.py's order (tests/test_steps.py): file-in/file-out, so Make
# rebuilds only what changed ----------------------------------------------------------------------
DATA_OUT := $(BUILD)/data/$(notdir $(SOURCE))
NET_DIR = $(BUILD)/$(NET)
EXPORT_INDEX = $(NET_DIR)/export/export.json
BUILD_SUMMARY = $(NET_DIR)/$(BOARD)/build.json
VERIFIED = $(NET_DIR)/$(BOARD)/verified.stamp

data: setup
	$(MASKBNN) data prepare --source $(SOURCE) --out $(DATA_OUT)

demo: setup
	$(MASKBNN) demo

train: setup
	$(MASKBNN) train --net $(NET) --datadir $(DATA) --experiments $(BUILD)/experiments \
	  $(if $(EPOCHS),--epochs $(EPOCHS))

evaluate: setup
	$(MASKBNN) train --evaluate --net $(NET) --pretrained --datadir $(DATA) --eval-split all \
	  --metrics-json $(BUILD)/experiments/$(NET)_eval.json

export: $(EXPORT_INDEX)
$(EXPORT_INDEX): $(CKPT) | setup
	$(MASKBNN) export --net $(NET) --checkpoint $(CKPT)

build estimate: $(BUILD_SUMMARY)
$(BUILD_SUMMARY): $(EXPORT_INDEX) build_configs/$(NET).yaml $(wildcard build_configs/folding/$(NET)_*.json) | setup
	$(MASKBNN) build --net $(NET) --board $(BOARD)

# A stamp, because the verification report is written even when verification fails.
verify: $(VERIFIED)
$(VERIFIED): $(BUILD_SUMMARY) | setup
	$(MASKBNN) verify --net $(NET) --board $(BOARD) --checkpoint $(CKPT)
	$(MASKBNN) rtlsim --net $(NET) --board $(BOARD)
	touch $@

# `make estimate` is `make build` for one NET; this one tabulates FINN's estimates of the three widths.
estimates-all: setup
	for n in mask_1w1a_0.25 mask_1w1a_0.5 mask_1w1a; do $(MAKE) --no-print-directory export NET=$$n || exit 1; done
	$(MASKBNN) estimate

rtlsim: setup
	$(MASKBNN) rtlsim --net $(NET) --board $(BOARD)

deploy: verify
	$(MASKBNN) deploy --net $(NET) --board $(BOARD) --checkpoint $(CKPT)

bitstream: verify
	$(MASKBNN) bitstream --net $(NET) --board $(BOARD) --checkpoint $(CKPT) \
	  $(if $(BOARD_FILES),--board-files $(BOARD_FILES))

# the folding comparison's networks: build_configs/tables/folding.yaml
FOLD_NETS = $(PY) -c 'from maskbnn.config import load_folding_table as t; print(*t().networks)'
fold: setup
	$(MASKBNN) fold --net $(NET) --board $(BOARD)

fold-all: setup
	nets=$$($(FOLD_NETS)) || exit 2; \
	for n in $$nets; do for b in Pynq-Z1 Pynq-Z2; do $(MASKBNN) fold --net $$n --board $$b || exit 1; done; done

fold-report: setup
	$(MASKBNN) fold-report --boards $(BOARD)

ops: setup
	$(MASKBNN) ops --all --reference --json $(BUILD)/ops/ops.json --markdown $(BUILD)/ops/ops.md

methods-table: setup
	$(MASKBNN) methods-table --board $(BOARD) --out $(BUILD)/methods

# bench-verify times the executor against FINN on each width's hardware graph: built first.
BENCH_NETS = $(PY) -c 'from maskbnn.bench.verify import NETS; print(*NETS)'
bench: setup
	nets=$$($(BENCH_NETS)) || exit 2; \
	for n in $$nets; do $(MAKE) --no-print-directory build NET=$$n BOARD=$(BOARD) || exit 1; done
	$(MASKBNN) bench-train
	$(MASKBNN) bench-verify --board $(BOARD)
	$(MASKBNN) bench-driver
	$(MASKBNN) bench-prepare

# --- the Docker image (Vivado mounted at run time) ----------------------------------------------
# DOCKER_BUILD_OPTS / DOCKER_RUN_OPTS pass options through (e.g. --network host); CA_CERT is a PEM
# file for networks whose proxy re-signs HTTPS; TORCH_WHEEL a local CPU torch wheel for networks
# that cannot reach the PyTorch index; FINN_DEPS_FETCH=0 builds without FINN+'s dependencies.
DOCKER_BUILD_OPTS ?=
DOCKER_RUN_OPTS ?=
CA_CERT ?=
TORCH_WHEEL ?=
FINN_DEPS_FETCH ?= 1
DOCKER_USER ?= $(shell id -u):$(shell id -g)
DOCKER_OUT ?= $(CURDIR)
DOCKER_RUN = docker run --rm --user $(DOCKER_USER) $(DOCKER_RUN_OPTS) \
	-v $(DOCKER_OUT)/build:/maskbnn/build -v $(DOCKER_OUT)/bitstreams:/maskbnn/bitstreams

docker-image:
	docker/base-image.sh debian:bookworm-slim
	$(if $(TORCH_WHEEL),cp $(TORCH_WHEEL) docker/wheels/)
	docker build -t $(IMAGE) $(DOCKER_BUILD_OPTS) --build-arg VIVADO_VERSION=$(VIVADO_VERSION) \
	  --build-arg XILINX_ROOT=$(XILINX_ROOT) --build-arg FINN_DEPS_FETCH=$(FINN_DEPS_FETCH) \
	  $(if $(CA_CERT),--build-arg EXTRA_CA_CERT="$$(cat $(CA_CERT))") .

docker-demo: docker-image
	mkdir -p $(DOCKER_OUT)/build $(DOCKER_OUT)/bitstreams
	$(DOCKER_RUN) $(IMAGE) demo

# The Xilinx install is checked before anything is built: docker would otherwise create an empty
# root-owned folder for a missing mount source and the build would stop only at the bitstream.
docker-bitstream:
	@test -d "$(XILINX_ROOT)/Vivado/$(VIVADO_VERSION)" -o -d "$(XILINX_ROOT)/$(VIVADO_VERSION)/Vivado" || { \
	  echo "no Vivado $(VIVADO_VERSION) under XILINX_ROOT=$(XILINX_ROOT): pass the folder that holds" \
	    "Vivado/$(VIVADO_VERSION) (make docker-bitstream XILINX_ROOT=/path/to/Xilinx" \
	    "VIVADO_VERSION=2022.2|2024.2 NET=$(NET) BOARD=$(BOARD))" >&2; exit 2; }
	$(MAKE) --no-print-directory docker-image
	mkdir -p $(DOCKER_OUT)/build $(DOCKER_OUT)/bitstreams
	$(DOCKER_RUN) -v $(XILINX_ROOT):$(XILINX_ROOT):ro \
	  $(if $(BOARD_FILES),-v $(BOARD_FILES):/board_files:ro) \
	  $(IMAGE) bitstream NET=$(NET) BOARD=$(BOARD) $(if $(BOARD_FILES),BOARD_FILES=/board_files)

# Builds the image and checks it: demo inside it, files owned by the caller, docker-bitstream
# refusing a missing Xilinx folder at once, the image size (build/bench/docker.json).
docker-test:
	tests/docker/run.sh

clean:
	rm -rf $(BUILD)

models/pretrained/%.tar:
	@test -f build_configs/$*.yaml || { echo "unknown network NET=$*; networks: \
	  $(basename $(notdir $(wildcard build_configs/*.yaml)))" >&2; exit 2; }
	@echo "no shipped weights $@: train them (make train NET=$*) and pass CKPT=path/to/best.tar" >&2; exit 2
