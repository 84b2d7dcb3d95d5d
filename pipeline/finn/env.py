"""FINN's environment, owned in one place: import this module before any `finn` import.

FINN+ 1.6.1 reads its settings and tool locations from environment variables at import and run
time. We set them once here, inside the repository's build folder, so that nothing is written to
``~/.finn`` and generated compile commands get real paths:

- ``FINN_BUILD_DIR`` / ``FINN_SETTINGS``: FINN's scratch folder and settings file, in build/finn/;
- ``FINN_CUSTOM_HLS`` / ``FINN_RTLLIB``: folders inside the installed wheel (unset, the generated
  ``-I$FINN_CUSTOM_HLS`` swallows the next compiler flag);
- ``finn.builder.build_dataflow_steps`` imports ``SimEngine`` from ``finn.xsi`` for a type
  annotation only, and ``finn.xsi``'s lazy loader raises without Vivado. We bind a placeholder so
  the build steps that need no simulator import (see ../shared/notes/finn-offline.md).

Tools FINN cannot run without (Vivado, Vitis HLS) are checked with `require_tool`, which raises a
MissingToolError saying what to install or which Docker route to take.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from maskbnn.errors import MissingToolError
from maskbnn.paths import BUILD_DIR

FINN_HOME = BUILD_DIR / "finn"

# tool -> (executable, environment variables that name its install root)
TOOLS = {
    "vivado": ("vivado", ("XILINX_VIVADO",)),
    "vitis_hls": ("vitis_hls", ("XILINX_HLS", "XILINX_VITIS")),
}


def finn_package_dir() -> Path:
    spec = importlib.util.find_spec("finn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError(
            "FINN+ (pip package finn-plus) is not installed in this environment; run `make setup`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def simulator_headers() -> Path | None:
    """Vivado's xsim headers, which FINN+ compiles its simulator bridge (finn_xsi) against;
    None without a Vivado that has its simulator."""
    root = os.environ.get("XILINX_VIVADO")
    include = Path(root) / "data" / "xsim" / "include" if root else None
    return include if include is not None and include.is_dir() else None


def configure() -> Path:
    """Set FINN's environment variables (idempotent); returns FINN's build folder."""
    FINN_HOME.mkdir(parents=True, exist_ok=True)
    pkg = finn_package_dir()
    os.environ.setdefault("FINN_BUILD_DIR", str(FINN_HOME))
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FINN_SETTINGS", str(FINN_HOME / "settings.yaml"))
    os.environ.setdefault("FINN_CUSTOM_HLS", str(pkg / "custom_hls"))
    os.environ.setdefault("FINN_RTLLIB", str(pkg / "finn-rtllib"))
    if not simulator_headers():
        import finn.xsi

        # Only a type annotation in build_dataflow_steps uses SimEngine; binding the name stops
        # finn.xsi's lazy loader from demanding Vivado (and trying to compile its simulator
        # bridge against Vivado's xsim headers) at import time.
        if "SimEngine" not in vars(finn.xsi):
            finn.xsi.SimEngine = object
    _speed_up_qonnx_sanitize()
    return Path(os.environ["FINN_BUILD_DIR"])


def _speed_up_qonnx_sanitize() -> None:
    """qonnx 0.4's execute_onnx checks every integer-typed tensor after each node with Python's
    builtin `max` over the flattened array, element by element: three quarters of the time of a
    verification run of a streamlined CNV. Same check, same rounding and errors, with np.max."""
    import warnings

    import numpy as np
    import qonnx.core.onnx_exec as onnx_exec
    from qonnx.util.basic import get_execution_error_thresh

    def sanitize_quant_values(model, node_tensors, execution_context, check_values=False):
        for name in node_tensors:
            dtype = model.get_tensor_datatype(name)
            if not dtype.is_integer():
                continue
            values = execution_context[name]
            rounded = values
            if not np.all(dtype.allowed(values)):
                rounded = np.round(values)
                warnings.warn(
                    f"The values of tensor {name} can't be represented with the set datatype "
                    f"annotation ({dtype.name}), they will be rounded to match the datatype "
                    "annotation.",
                    stacklevel=2,
                )
            error = float(np.max(np.abs(values - rounded))) if np.size(values) else 0.0
            if error > get_execution_error_thresh():
                raise Exception(
                    f"Rounding error is too high to match set QONNX datatype ({dtype}) for input "
                    f"{name}"
                )
            if check_values and not np.all(dtype.allowed(rounded)):
                raise Exception(
                    f"Values can't be represented with set finn datatype ({dtype}) for input {name}"
                )
            execution_context[name] = rounded
        return execution_context

    onnx_exec.sanitize_quant_values = sanitize_quant_values


def ensure_xilinx_libraries() -> None:
    """What FINN+'s own command-line entry does before any step: prepend the Xilinx library
    folders (``$XILINX_VIVADO/lib/lnx64.o``, Vitis HLS's fpo library) to LD_LIBRARY_PATH. The
    node simulators dlopen the simulator kernel by bare file name and the loader reads the path
    only at process start, so the process restarts once when it changed. Call it first thing in
    a process (the CLI does), never after work was done. No-op without Vivado.

    FINN+'s list (its `xilinx_ld_library_paths`) starts with the system library folder, which
    shadows the libpython of an interpreter built with a shared libpython elsewhere (pyenv): the
    restarted process then runs its stdlib on Debian's libpython and breaks (multiprocessing's
    locks). So this interpreter's own library folder goes first; FINN+'s order follows. FINN+'s
    `ensure_ld_library_path` cannot take that folder, hence its restart is repeated here."""
    if not os.environ.get("XILINX_VIVADO"):
        return
    import sys
    import sysconfig

    from finn.interface.run_finn import (
        _LD_REEXEC_MARKER,
        prepend_ld_library_paths,
        xilinx_ld_library_paths,
    )

    own = (
        [sysconfig.get_config_var("LIBDIR")] if sysconfig.get_config_var("Py_ENABLE_SHARED") else []
    )
    changed = prepend_ld_library_paths([*own, *xilinx_ld_library_paths()])
    if not changed or os.environ.get(_LD_REEXEC_MARKER) == "1" or not Path(sys.argv[0]).is_file():
        return
    os.environ[_LD_REEXEC_MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], os.environ)


def tool_available(tool: str) -> bool:
    exe, env_vars = TOOLS[tool]
    return shutil.which(exe) is not None and any(os.environ.get(v) for v in env_vars)


def vivado_route(net: str, board: str = "Pynq-Z1") -> str:
    """Where to finish a step that needs Vivado. Inside our image (its Dockerfile sets
    MASKBNN_CONTAINER) the docker-bitstream route is already the one running, so the advice is
    about the mount instead."""
    host = (
        f"`make docker-bitstream NET={net} BOARD={board} XILINX_ROOT=/path/to/Xilinx` "
        f"(the folder that holds Vivado/<version>)"
    )
    if os.environ.get("MASKBNN_CONTAINER"):
        version = os.environ.get("VIVADO_VERSION", "<version>")
        root = os.environ.get("XILINX_ROOT", "/tools/Xilinx")
        return (
            f"this container looks for Vivado {version} under {root}, mounted from the host: "
            f"mount the folder that holds Vivado/{version} there (on the host: {host}, with "
            f"VIVADO_VERSION=2022.2 or 2024.2 as installed)"
        )
    return f"or build in the Vivado container: {host}"


def require_tool(tool: str, net: str = "<net>") -> None:
    """Raise MissingToolError unless `tool` ("vivado" or "vitis_hls") is installed and configured."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
    if tool_available(tool):
        return
    exe, env_vars = TOOLS[tool]
    raise MissingToolError(
        f"this step needs {exe} (AMD/Xilinx {tool.replace('_', ' ').title()}), which is not on "
        f"this machine: put it on PATH and set {' or '.join(env_vars)} to its install folder "
        f"(source its settings64.sh); {vivado_route(net)}"
    )


configure()
