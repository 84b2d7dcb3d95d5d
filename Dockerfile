# maskbnn build environment for the FPGA flow (`make docker-bitstream NET=... BOARD=...`).
#
# - the project and its pinned dependencies, installed by `make setup` (requirements/*.txt);
# - Verilator (Debian 12's 5.006) for the RTL-layer simulation;
# - the FINN+ external dependencies this flow needs (finn-hlslib, nlohmann_json, the board files of
#   FINN_BOARDS) fetched at image build time through FINN+'s own DependencyUpdater and its pinned
#   definitions (pipeline/finn_deps.py), each failure named; not FINN+'s whole list;
# - Boost (program_options; interprocess is header-only) for FINN+'s simulation-based FIFO sizing,
#   whose node simulators CMake builds against it (finn_xsi/CMakeLists.txt);
# - Vivado / Vitis HLS are NOT in the image: mount the host's install read-only at $XILINX_ROOT.
#   FINN+ 1.6.1 supports Vivado / Vitis HLS 2022.2 and 2024.2 (VIVADO_VERSION build arg / env).
#
#   docker build -t maskbnn --build-arg VIVADO_VERSION=2024.2 .
#   docker run --rm -v /tools/Xilinx:/tools/Xilinx:ro -v "$PWD/bitstreams:/maskbnn/bitstreams" \
#       maskbnn bitstream NET=mask_1w1a_0.5 BOARD=Pynq-Z1
FROM debian:bookworm-slim

ARG VIVADO_VERSION=2024.2
ARG XILINX_ROOT=/tools/Xilinx
# boards whose Vivado board files the image fetches (Pynq-Z2's come from a CDN zip that may fail:
# add it with --build-arg FINN_BOARDS="Pynq-Z1 Pynq-Z2", or mount them: BOARD_FILES=DIR)
ARG FINN_BOARDS=Pynq-Z1
# FINN_DEPS: where FINN+ finds finn-hlslib and the board files (filled below). The extra index
# serves the CPU wheel of torch==2.13.0; from PyPI alone pip would take the multi-GB CUDA build.
ENV VIVADO_VERSION=${VIVADO_VERSION} \
    XILINX_ROOT=${XILINX_ROOT} \
    FINN_DEPS=/opt/finn_deps \
    XILINX_LOCAL_USER_DATA=no \
    DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 LC_ALL=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

# python3.11 is Debian 12's python3; compilers and cmake build FINN+'s XSI bridge and FIFO-sizing
# simulation against the mounted Vivado; the X/ncurses libraries are what Vivado's batch mode loads
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential make git ca-certificates wget \
        cmake zip unzip verilator libtinfo5 libncurses5 libx11-6 libxext6 libxrender1 libxtst6 libxi6 \
        libfreetype6 fontconfig procps locales libboost-dev libboost-program-options-dev \
    && ln -sf /usr/bin/python3 /usr/local/bin/python3.11 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /maskbnn
# dependency files first: the venv layer is rebuilt only when the pins change
COPY Makefile pyproject.toml ./
COPY requirements/ requirements/
COPY maskbnn/ maskbnn/
COPY pipeline/ pipeline/
COPY models/ models/
COPY driver/ driver/
RUN make setup
RUN .venv/bin/python -m maskbnn.pipeline.finn_deps --dest "$FINN_DEPS" \
        $(for b in $FINN_BOARDS; do printf -- '--board %s ' "$b"; done)
COPY . .
RUN make setup && chmod +x docker/entrypoint.sh

ENTRYPOINT ["/maskbnn/docker/entrypoint.sh"]
CMD ["help"]
