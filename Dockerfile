# maskbnn build environment for the FPGA flow (`make docker-bitstream NET=... BOARD=...`).
#
# - the project and its pinned dependencies, installed by `make setup` (requirements/*.txt), with
#   the CPU build of torch (this image never sees a GPU);
# - Verilator (Debian 12's 5.006) for the RTL-layer simulation;
# - the FINN+ external dependencies this flow needs (finn-hlslib, nlohmann_json, the board files of
#   FINN_BOARDS) fetched at image build time through FINN+'s own DependencyUpdater and its pinned
#   definitions (pipeline/finn/deps.py), each failure named (FINN_DEPS_FETCH=0 skips them: `make
#   bitstream` then names what is missing and the one command that fetches it);
# - Boost (program_options; interprocess is header-only) for FINN+'s simulation-based FIFO sizing,
#   whose node simulators CMake builds against it (finn_xsi/CMakeLists.txt);
# - Vivado / Vitis HLS are NOT in the image: mount the host's install read-only at $XILINX_ROOT.
#   FINN+ 1.6.1 supports Vivado / Vitis HLS 2022.2 and 2024.2 (VIVADO_VERSION build arg / env).
#
# Build and run it through make (docker-image, docker-demo, docker-bitstream, docker-test): they
# make the base image when the registry cannot be reached, pass a proxy's CA certificate, run as
# the calling user and check the Xilinx mount before starting.

# Where the CPU build of torch comes from (a wheel placed in docker/wheels/ is used first), and
# whether FINN+'s dependencies are fetched at build time.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG FINN_DEPS_FETCH=1
# boards whose Vivado board files the image fetches (Pynq-Z2's come from a CDN zip that may fail:
# add it with --build-arg FINN_BOARDS="Pynq-Z1 Pynq-Z2", or mount them: BOARD_FILES=DIR)
ARG FINN_BOARDS=Pynq-Z1

FROM debian:bookworm-slim AS base

ARG VIVADO_VERSION=2024.2
ARG XILINX_ROOT=/tools/Xilinx
# PEM text of an extra CA certificate, for networks whose proxy re-signs HTTPS (pip, git).
ARG EXTRA_CA_CERT=""
ENV VIVADO_VERSION=${VIVADO_VERSION} \
    XILINX_ROOT=${XILINX_ROOT} \
    FINN_DEPS=/opt/finn_deps \
    XILINX_LOCAL_USER_DATA=no \
    MASKBNN_CONTAINER=1 \
    DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# python3.11 is Debian 12's python3; compilers and cmake build FINN+'s XSI bridge and FIFO-sizing
# simulation against the mounted Vivado; the X/ncurses libraries are what Vivado's batch mode loads
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential make git ca-certificates wget \
        cmake zip unzip verilator libtinfo5 libncurses5 libx11-6 libxext6 libxrender1 libxtst6 libxi6 \
        libfreetype6 fontconfig procps locales libboost-dev libboost-program-options-dev \
    && ln -sf /usr/bin/python3 /usr/local/bin/python3.11 \
    && rm -rf /var/lib/apt/lists/*
RUN if [ -n "$EXTRA_CA_CERT" ]; then \
        printf '%s\n' "$EXTRA_CA_CERT" > /usr/local/share/ca-certificates/maskbnn-extra.crt \
        && update-ca-certificates >/dev/null; \
    fi

WORKDIR /maskbnn

# torch first and alone, CPU build only: any other route lets pip take PyPI's CUDA wheel (GBs).
# Its own stage, so a local wheel given in docker/wheels/ leaves no layer in the image.
FROM base AS torch
ARG TORCH_INDEX
COPY requirements/torch.txt requirements/
COPY docker/install-torch.sh docker/
COPY docker/wheels/ docker/wheels/
RUN python3 -m venv .venv && docker/install-torch.sh .venv/bin/python "$TORCH_INDEX" docker/wheels

FROM base
ARG FINN_DEPS_FETCH
ARG FINN_BOARDS
COPY --from=torch /maskbnn/.venv .venv
# dependency files next: the venv layer is rebuilt only when the pins change
COPY Makefile pyproject.toml ./
COPY requirements/ requirements/
COPY maskbnn/ maskbnn/
COPY pipeline/ pipeline/
COPY bench/ bench/
COPY models/ models/
COPY driver/ driver/
RUN make setup
RUN if [ "$FINN_DEPS_FETCH" = 1 ]; then .venv/bin/python -m maskbnn.pipeline.finn.deps \
        --dest "$FINN_DEPS" $(for b in $FINN_BOARDS; do printf -- '--board %s ' "$b"; done); \
    else echo "FINN+ dependencies not fetched (FINN_DEPS_FETCH=0)"; fi
# the rest of the tree, named (not `COPY . .`, which would bring docker/wheels/ back)
COPY README.md ./
COPY build_configs/ build_configs/
COPY data/ data/
COPY bitstreams/ bitstreams/
COPY docker/entrypoint.sh docker/
COPY tests/ tests/
# any user (docker run --user UID:GID) may run the project; outputs go to the mounted folders,
# and the entry point restores FINN+'s simulator bridge into its package folder
RUN make setup && chmod +x docker/entrypoint.sh \
    && mkdir -p build bitstreams && chmod a+rwx build bitstreams \
    && chmod -R a+rwX "$(.venv/bin/python -c 'import finn_xsi, os; print(os.path.dirname(finn_xsi.__file__))')"

ENTRYPOINT ["/maskbnn/docker/entrypoint.sh"]
CMD ["help"]
