#!/usr/bin/env bash
# maskbnn container entry point: put the host's Vivado / Vitis HLS (mounted at $XILINX_ROOT) on
# PATH, then run the make targets given as arguments (default: help), or a command (bash, python).
set -euo pipefail
# `docker run --user UID:GID` gives a user with no home: FINN, matplotlib and pip want one
if [ ! -w "${HOME:-/}" ]; then
    export HOME="/tmp/home-$(id -u)"
    mkdir -p "$HOME"
fi
for settings in \
    "$XILINX_ROOT/Vivado/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/Vitis_HLS/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/Vitis/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/$VIVADO_VERSION/Vivado/settings64.sh" \
    "$XILINX_ROOT/$VIVADO_VERSION/Vitis/settings64.sh"; do
    # shellcheck disable=SC1090
    if [ -f "$settings" ]; then set +u; source "$settings"; set -u; fi
done
cd /maskbnn
case "${1:-help}" in
help)
    cat <<HELP
maskbnn container (Vivado $VIVADO_VERSION expected at $XILINX_ROOT, mounted read-only).
Arguments are make targets of the project, run inside the container:
  demo                          every stage on the shipped sample and weights
  test                          the test suite
  bitstream NET=.. BOARD=..     HLS/RTL sources -> bitfile (needs the Vivado mount)
  deploy NET=.. BOARD=..        board package
  verify|estimate|export NET=.. BOARD=..
or a command: bash, python, maskbnn ... (the project's venv is first on PATH).
From the host, make docker-demo / docker-bitstream / docker-test run these for you.
HELP
    ;;
bash | sh | python | python3 | maskbnn | pytest)
    export PATH="/maskbnn/.venv/bin:$PATH"
    exec "$@"
    ;;
*)
    exec make "$@"
    ;;
esac
