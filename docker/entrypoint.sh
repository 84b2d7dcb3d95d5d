#!/usr/bin/env bash
# maskbnn container entry point: put the host's Vivado / Vitis HLS (mounted at $XILINX_ROOT) on
# PATH, then run the make targets given as arguments (default: help).
set -euo pipefail
for settings in \
    "$XILINX_ROOT/Vivado/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/Vitis_HLS/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/Vitis/$VIVADO_VERSION/settings64.sh" \
    "$XILINX_ROOT/$VIVADO_VERSION/Vivado/settings64.sh" \
    "$XILINX_ROOT/$VIVADO_VERSION/Vitis/settings64.sh"; do
    # shellcheck disable=SC1090
    if [ -f "$settings" ]; then set +u; source "$settings"; set -u; fi
done
if ! command -v vivado >/dev/null; then
    echo "maskbnn container: no Vivado $VIVADO_VERSION under $XILINX_ROOT (mount it with" \
         "-v /path/to/Xilinx:$XILINX_ROOT:ro); continuing without it" >&2
fi
cd /maskbnn
# FINN+ compiles its simulator bridge (finn_xsi's xsi.so) against the mounted Vivado on first use,
# inside the image's venv, which a `docker run --rm` throws away: keep the built bridge in the
# mounted build/ folder, per Vivado version, and restore it instead of rebuilding every run.
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
exec make "${@:-help}"
