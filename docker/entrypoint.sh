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
    # FINN+ compiles its simulator bridge (finn_xsi's xsi.so) against the mounted Vivado on first
    # use, inside the image's venv, which `docker run --rm` throws away: keep the built bridge in
    # the mounted build/ folder, per Vivado version, and restore it instead of rebuilding.
    if command -v vivado >/dev/null && [ -d "${XILINX_VIVADO:-}/data/xsim/include" ]; then
        xsi_dir=$(.venv/bin/python -c 'import finn_xsi, os; print(os.path.dirname(finn_xsi.__file__))')
        cache="build/finn_xsi/$VIVADO_VERSION"
        if [ -f "$cache/xsi.so" ] && [ -f "$cache/VERSION" ]; then
            cp "$cache/xsi.so" "$cache/VERSION" "$xsi_dir/"
        elif .venv/bin/python -m finn.xsi.setup; then
            mkdir -p "$cache" && cp "$xsi_dir/xsi.so" "$xsi_dir/VERSION" "$cache/"
        else
            echo "maskbnn container: building FINN+'s simulator bridge failed (python -m" \
                 "finn.xsi.setup); FIFO sizing will not simulate" >&2
        fi
    fi
    exec make "$@"
    ;;
esac
