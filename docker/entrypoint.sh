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
exec make "${@:-help}"
