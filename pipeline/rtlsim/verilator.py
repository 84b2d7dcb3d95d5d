"""RTL simulation of a network's RTL-backend layers with Verilator, bit-exact against FINN.

FINN+ simulates RTL only through Vivado's xsim (finn.xsi). Its RTL-backend layers
(Thresholding_rtl, ConvolutionInputGenerator_rtl, FMPadding_rtl, StreamingDataWidthConverter_rtl,
StreamingFIFO_rtl, MVAU_rtl) are plain (System)Verilog: the templates ship in the wheel
(``finn-rtllib``) and hw_codegen fills them in per layer. This module builds each generated layer with Verilator and a
small C++ AXI-stream testbench (rtlsim/axis_testbench.cpp) and replays what FINN's own rtlsim path
does (``RTLBackend.execute_node``): the layer's input from real images, packed with FINN's
``npy_to_rtlsim_input``, streamed in; the output unpacked with ``rtlsim_output_to_npy``; compared
exactly with FINN's Python execution of the same layer on the same input. Simulated cycles per frame
are recorded next to FINN's estimate (``get_exp_cycles``).

Verilator 5.006 (Debian 12) does not elaborate some constructs of finn-rtllib's FIFO, data-width
converter, padding and RTL MVAU as written; VERILATOR_REWRITES restates them equivalently in the
staged copy (FINN's files stay untouched), and the bit-exact comparison would expose a wrong
restatement. The RTL MVAU (mvu.sv, behavioural under ``VERILATOR``) reads its weights from a second
stream, which the testbench feeds as FINN's own rtlsim does (`weight_beats`). Identical layers
(same generated sources once the layer name is factored out, e.g. the many depth-2 FIFOs) share one
Verilator build, cached under ``build/rtlsim-cache/``.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import MissingToolError, UserError, VerificationError
from maskbnn.outputs import folder_lock, write_atomic, write_json
from maskbnn.paths import BUILD_DIR, rel
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.hardware import codegen_model
from maskbnn.pipeline.verify.stages import base_op
from maskbnn.report import md_table
from maskbnn_board.datatypes import IntType, parse_datatype
from maskbnn_board.errors import DeploymentError
from maskbnn_board.packing import pack, packed_bytes, unpack

TESTBENCH = Path(__file__).resolve().parent / "axis_testbench.cpp"
CACHE_DIR = BUILD_DIR / "rtlsim-cache"
DUT = "maskbnn_dut"  # every layer's generated files are renamed to this before building
# Op types whose Verilator build may still fail for configurations not met so far (e.g. a FIFO deep
# enough for FINN's BRAM/URAM path, a DWC width ratio not in our networks): such a layer is recorded
# as not simulated, with Verilator's first error, instead of stopping the run. All RTL layers of the
# three CNV builds simulate with the rewrites below; any other build failure is an error.
KNOWN_UNSUPPORTED = {
    "StreamingFIFO_rtl": "this configuration of finn-rtllib fifo.sv does not elaborate in "
    "Verilator 5.006",
    "StreamingDataWidthConverter_rtl": "this width ratio of finn-rtllib vpc.sv does not "
    "elaborate in Verilator 5.006",
}


# Source rewrites that keep the hardware's meaning but let Verilator 5.006 elaborate it. They are
# applied to the staged copy only (FINN's files are untouched), and each one replaces text that must
# match exactly: a changed finn-rtllib file is then built as it is, and a wrong rewrite would show up
# as a mismatch against FINN's Python execution, never as a silent pass.
def _rewrite_vpc(text: str) -> str:
    """dwc/hdl/vpc.sv (data-width converter core). (1) Verilator 5.006 cannot evaluate the
    recursive constant function gcd: the same Euclid algorithm as a loop. (2) With one output
    lane (N0 == 1) the unpacked-array shifts ``{ Buf[1 +: N0-1], x }`` keep a zero-width slice in
    a constant-false branch (internal error), and with two lanes Verilator reads them as incomplete
    assignment patterns: the same shifts written as the element loop vpc.sv itself uses."""
    text = text.replace(
        "\t\treturn (b == 0)? a : gcd(b, a % b);\n",
        "\t\tautomatic int unsigned  t;\n"
        "\t\twhile (b != 0) begin t = b; b = a % b; a = t; end\n"
        "\t\treturn a;\n",
    )
    for last in ("idat[0 +: GCD]", "W0'('x)"):  # the two shifts (with and without input)
        text = text.replace(
            f"if(N0 > 1)  Buf <= {{ Buf[1 +: N0-1], {last} }};",
            "if(N0 > 1) begin for(int unsigned  i = 1; i < N0; i++)  Buf[i-1] <= Buf[i]; "
            f"Buf[N0-1] <= {last}; end",
        )
    return text


_FIFO_ABITS = """\ttypedef struct {
\t\tint unsigned  lo;
\t\tint unsigned  hi;
\t} abits_t;
\tfunction abits_t INIT_ABITS();
\t\tautomatic abits_t  abits = '{ lo: $clog2(DEPTH_REQ), hi: 0 };
\t\tif(abits.lo > MIN_ABITS) begin
\t\t\t// Consider Decomposition into lo + hi
\t\t\tautomatic int unsigned  hi_abits = $clog2(DEPTH_REQ - 2**(abits.lo-1));
\t\t\tif(hi_abits < abits.lo - 1) begin
\t\t\t\tabits.lo--;
\t\t\t\tabits.hi = hi_abits < 1? 1 : hi_abits;
\t\t\tend
\t\tend
\t\treturn  abits;
\tendfunction : INIT_ABITS
\tlocalparam abits_t       ABITS      = INIT_ABITS();
"""
_FIFO_ABITS_INT = """\tfunction int unsigned INIT_ABITS(input bit  want_hi);
\t\tautomatic int unsigned  lo = $clog2(DEPTH_REQ);
\t\tautomatic int unsigned  hi = 0;
\t\tif(lo > MIN_ABITS) begin
\t\t\tautomatic int unsigned  hi_abits = $clog2(DEPTH_REQ - 2**(lo-1));
\t\t\tif(hi_abits < lo - 1) begin
\t\t\t\tlo--;
\t\t\t\thi = hi_abits < 1? 1 : hi_abits;
\t\t\tend
\t\tend
\t\treturn  want_hi? hi : lo;
\tendfunction
\tlocalparam int unsigned  ABITS_LO = INIT_ABITS(0);
\tlocalparam int unsigned  ABITS_HI = INIT_ABITS(1);
"""


def _rewrite_fifo(text: str) -> str:
    """fifo/hdl/fifo.sv. (1) Verilator 5.006 cannot evaluate the struct-valued constant function
    that splits the memory address bits into lo + hi: the same computation as two integer
    constants. (2) It reads the SRL shift ``A <= { idat, A[0:DEPTH_IMPL-2] }`` (unpacked array,
    A[0] newest) as an incomplete assignment pattern: the same shift as an element loop."""
    if _FIFO_ABITS in text:
        text = text.replace(_FIFO_ABITS, _FIFO_ABITS_INT)
        text = text.replace("ABITS.lo", "ABITS_LO").replace("ABITS.hi", "ABITS_HI")
    return text.replace(
        "if(push)  A <= { idat, A[0:DEPTH_IMPL-2] };",
        "if(push) begin for(int unsigned  i = DEPTH_IMPL-1; i > 0; i--)  A[i] <= A[i-1]; "
        "A[0] <= idat; end",
    )


def leading_pad_beats(inst) -> int:
    """Output beats an FMPadding layer emits before it needs its first input beat."""
    top, left, _, right = inst.get_nodeattr("Padding")
    width = inst.get_nodeattr("ImgDim")[1] + left + right
    folds = inst.get_nodeattr("NumChannels") // inst.get_nodeattr("SIMD")
    return (top * width + left) * folds


def _rewrite_fmpadding(text: str) -> str:
    """fmpadding/hdl/fmpadding.sv. Verilator 5.006 generates C++ that does not compile for the
    register buffers declared as an unpacked struct {vld, dat} (it assigns 0U to the struct): the
    same two fields as a packed struct, which it handles; reads and writes are by field name."""
    return text.replace(
        "typedef struct {\n\t\tlogic  vld;", "typedef struct packed {\n\t\tlogic  vld;"
    )


def _rewrite_mvu(text: str) -> str:
    """mvu/mvu.sv (the RTL MVU core, behavioural under VERILATOR): the narrow-weight assertion's
    `always_ff @(posedge clk iff en && !rst)` does not parse; the same guard as an `if`."""
    return text.replace(
        "always_ff @(posedge clk iff en && !rst) begin",
        "always_ff @(posedge clk) if(en && !rst) begin",
    )


def _rewrite_mvu_axi(text: str) -> str:
    """mvu/mvu_vvu_axi.sv: the output queue's unpacked-array shift `{ odat, OBuf[0:M-1] }`
    reads as an incomplete assignment pattern (as in vpc.sv): the same shift as a loop."""
    return text.replace(
        "if(ovld)  OBuf <= { odat, OBuf[0:MAX_IN_FLIGHT-1] };",
        "if(ovld) begin for(int unsigned  i = MAX_IN_FLIGHT; i > 0; i--)  OBuf[i] <= OBuf[i-1]; "
        "OBuf[0] <= odat; end",
    )


_LEAF_LOADS = """\t\ttypedef int unsigned  leaf_load_t[2*N-1];
\t\tfunction leaf_load_t init_leaf_loads();
\t\t\tautomatic leaf_load_t  res;
\t\t\tfor(int unsigned  i = 2*N-1; i-- > N-1;)  res[i] = 1;
\t\t\tfor(int unsigned  i =   N-1; i-- >   0;)  res[i] = res[2*i+1] + res[2*i+2];
\t\t\treturn  res;
\t\tendfunction : init_leaf_loads
\t\tlocalparam leaf_load_t   LEAF_LOAD = init_leaf_loads();
"""
_LEVELS = "\tlocalparam int unsigned  L = $clog2(N);  // Number of levels with reductions\n"
_LEAF_LOAD_FN = """\tfunction automatic int unsigned  leaf_load(input int unsigned  i);
\t\tautomatic int unsigned  lo = i;
\t\tautomatic int unsigned  hi = i;
\t\tautomatic int unsigned  cnt = 0;
\t\twhile(1) begin
\t\t\tif(hi >= N-1)  cnt += hi - (lo > N-1? lo : N-1) + 1;
\t\t\tif(lo >= N-1)  break;
\t\t\tif(hi > N-2)  hi = N-2;
\t\t\tlo = 2*lo+1;
\t\t\thi = 2*hi+2;
\t\tend
\t\treturn  cnt;
\tendfunction : leaf_load
"""


def _rewrite_add_multi(text: str) -> str:
    """mvu/add_multi.sv (adder tree): Verilator 5.006 refuses a constant function declared
    inside a generate block (init_leaf_loads, the leaf count under each heap node). The same
    count per node, walking the node's subtree level by level, as a module-level function."""
    if _LEAF_LOADS not in text or _LEVELS not in text:
        return text
    text = text.replace(_LEAF_LOADS, "").replace(_LEVELS, _LEVELS + _LEAF_LOAD_FN)
    for k in ("i", "LIDX", "RIDX"):
        text = text.replace(f"LEAF_LOAD[{k}]", f"leaf_load({k})")
    return text


VERILATOR_REWRITES = {
    "vpc.sv": _rewrite_vpc,
    "fifo.sv": _rewrite_fifo,
    "fmpadding.sv": _rewrite_fmpadding,
    "mvu.sv": _rewrite_mvu,
    "mvu_vvu_axi.sv": _rewrite_mvu_axi,
    "add_multi.sv": _rewrite_add_multi,
}
INSTALL_HINT = "install it with `sudo apt-get install -y verilator` (Debian/Ubuntu; 5.006 tested)"


class VerilatorBuildError(RuntimeError):
    @property
    def first_error(self) -> str:
        errs = [ln for ln in str(self).splitlines() if ln.startswith("%Error")]
        return errs[0] if errs else str(self).splitlines()[-1]


@dataclass
class LayerResult:
    name: str
    op_type: str
    frames: int
    passed: bool
    simulated: bool = True
    mismatches: int = 0
    sim_cycles_first_frame: int | None = None  # reset released -> frame 1's last output beat
    sim_cycles_per_frame: float | None = None  # steady state: between consecutive frames' ends
    finn_estimate_cycles: int | None = None  # FINN's get_exp_cycles()
    ratio: float | None = None  # sim_cycles_first_frame / finn_estimate_cycles
    build_seconds: float = 0.0
    sim_seconds: float = 0.0
    cached_build: bool = False
    sources: list[str] = field(default_factory=list)
    first: list[dict] = field(default_factory=list)
    note: str = ""


def verilator_version() -> str | None:
    exe = shutil.which("verilator")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return out or None


def require_verilator() -> str:
    version = verilator_version()
    if version is None:
        raise MissingToolError(
            f"RTL simulation needs Verilator, which is not on PATH: {INSTALL_HINT}"
        )
    return version


def is_rtl_layer(node) -> bool:
    return node.op_type.endswith("_rtl") and "fpgadataflow" in (node.domain or "")


# --- sources and builds ------------------------------------------------------------------------


def _rename(text: str, name: str) -> str:
    # the layer name followed by a digit would be another layer (FIFO_rtl_1 vs FIFO_rtl_10)
    return re.sub(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![0-9])", DUT, text)


def stage_sources(node, inst, dest: Path) -> tuple[list[Path], str]:
    """Copy the layer's generated files (renamed to DUT) and its finn-rtllib sources into `dest`;
    returns the HDL files in FINN's compile order and the Verilog top module."""
    code_gen = Path(inst.get_nodeattr("code_gen_dir_ipgen") or "")
    if not code_gen.is_dir():
        raise UserError(
            f"{node.name}: no generated RTL (code_gen_dir_ipgen {code_gen or 'unset'}); "
            "the build's bitstream/hw_codegen.onnx points at sources that are gone: delete it "
            "and run this rtlsim command again (it regenerates them)"
        )
    dest.mkdir(parents=True, exist_ok=True)
    hdl: list[Path] = []
    for f in inst.get_rtl_file_list(abspath=True):
        f = Path(f)
        if f.name.startswith("fifo_gauge"):
            # FINN's behavioural FIFO for xsim-based sizing, used only under `FINN_SIMULATION`;
            # we simulate the synthesised FIFO (and Verilator 5.006 cannot parse the gauge)
            continue
        if not f.is_file():
            raise UserError(f"{node.name}: RTL source {f} is missing")
        if f.parent.resolve() == code_gen.resolve():
            target = dest / _rename(f.name, node.name)
            target.write_text(_rename(f.read_text(), node.name))
        else:
            target = dest / f.name
            text = f.read_text()
            rewrite = VERILATOR_REWRITES.get(f.name)
            target.write_text(rewrite(text) if rewrite else text)
        hdl.append(target)
    # memory initialisation files ($readmemh, relative to the simulator's working directory)
    for f in sorted(code_gen.iterdir()):
        if f.suffix in (".dat", ".mem") and f.is_file():
            (dest / _rename(f.name, node.name)).write_text(_rename(f.read_text(), node.name))
    top = _rename(inst.get_nodeattr("gen_top_module") or node.name, node.name)
    return hdl, top


def build_key(folder: Path, version: str) -> str:
    h = hashlib.sha256(version.encode())
    h.update(" ".join(_VERILATOR_FLAGS + _CXXFLAGS).encode())
    h.update(TESTBENCH.read_bytes())
    for f in sorted(folder.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:20]


# Verilator's own `--build` compiles each generated .cpp file and its runtime (verilated.cpp,
# verilated_threads.cpp) separately, re-parsing its headers every time: ~9 s of CPU per layer,
# most of a cold run. We compile the runtime once per Verilator version into the cache, and a
# layer's generated files with the testbench as one translation unit: ~2 s per layer.
_VERILATOR_FLAGS = [
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN",
    "--x-assign", "0", "--x-initial", "0",  # deterministic, like a reset FPGA register
    # mvu.sv's DSP start-up watchdog waits `#100ns` in an initial block: a cycle-based
    # simulation has no delays (the watchdog's flag is clear from the start)
    "--no-timing",
    # vpc.sv shifts its N0-lane buffer in a loop of non-blocking assignments, which Verilator
    # 5.006 handles only when it unrolls the loop; its default limit (64) is below the 128 lanes
    # of a 1-to-128-bit converter in the 1x network
    "--unroll-count", "4096",
]  # fmt: skip
_CXXFLAGS = ["-O0", "-std=gnu++17", "-faligned-new", "-w", "-DVM_COVERAGE=0", "-DVM_SC=0",
             "-DVM_TRACE=0", "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=0"]  # fmt: skip
_RUNTIME = ("verilated.cpp", "verilated_threads.cpp")


@functools.cache
def _verilator_include() -> Path:
    root = subprocess.run(
        ["verilator", "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True
    ).stdout.strip()
    return Path(root) / "include"


def _compile(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(["g++", *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise VerilatorBuildError(f"g++ failed (g++ {' '.join(args)}):\n{proc.stderr[-3000:]}")


def runtime_objects(version: str, cache: Path = CACHE_DIR) -> list[Path]:
    """Verilator's runtime, compiled once per version and flags (atomically, into the cache)."""
    inc = _verilator_include()
    tag = hashlib.sha256((version + " ".join(_CXXFLAGS)).encode()).hexdigest()[:12]
    out = cache / f"runtime-{tag}"
    objs = [out / f"{Path(src).stem}.o" for src in _RUNTIME]
    if all(o.is_file() for o in objs):
        return objs
    tmp = cache / f"runtime-{tag}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for src, obj in zip(_RUNTIME, objs, strict=True):
        _compile([*_CXXFLAGS, f"-I{inc}", f"-I{inc / 'vltstd'}", "-c", str(inc / src), "-o",
                  obj.name], tmp)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for obj in objs:
        (tmp / obj.name).replace(obj)
    shutil.rmtree(tmp, ignore_errors=True)
    return objs


def build_simulator(
    hdl: list[Path], top: str, key: str, version: str, cache: Path = CACHE_DIR
) -> tuple[Path, bool]:
    """The Verilator binary for these sources (built, or reused from the cache)."""
    out = cache / key
    exe = out / "sim"
    if exe.is_file():
        return exe, True
    runtime = runtime_objects(version, cache)
    tmp = cache / f"{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    obj = tmp / "obj"
    cmd = [
        "verilator", "--cc", "--prefix", "Vdut",
        "--top-module", top, *_VERILATOR_FLAGS, "--Mdir", str(obj), *[str(f) for f in hdl],
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        raise VerilatorBuildError(f"Verilator failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    generated = sorted(p.name for p in obj.glob("Vdut*.cpp"))
    unity = "".join(f'#include "{name}"\n' for name in generated)
    (obj / "unity.cpp").write_text(unity + f'#include "{TESTBENCH}"\n')
    inc = _verilator_include()
    _compile([*_CXXFLAGS, "-I.", f"-I{inc}", f"-I{inc / 'vltstd'}", "unity.cpp",
              *map(str, runtime), "-o", str(tmp / "sim"), "-pthread", "-latomic"], obj)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp / "sim"), exe)
    shutil.rmtree(tmp, ignore_errors=True)
    return exe, False


# --- reference and streams ---------------------------------------------------------------------


def generic_trace(model, x: np.ndarray) -> list[dict[str, np.ndarray]]:
    """FINN's Python execution of the graph (each `_hls`/`_rtl` layer mapped back to FINN's
    generic layer), one full execution context per image."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    generic = ModelWrapper(copy.deepcopy(model.model))
    for node in generic.graph.node:
        op = base_op(node.op_type)
        if op != node.op_type:
            node.op_type = op
            node.domain = "finn.custom_op.fpgadataflow"
    inp = generic.graph.input[0].name
    return [
        execute_onnx(generic, {inp: x[i : i + 1].astype(np.float32)}, return_full_exec_context=True)
        for i in range(len(x))
    ]


# FINN's own packing (finn.util.data_packing: npy_to_rtlsim_input / rtlsim_output_to_npy) goes
# element by element through bitstring and qonnx's DataType checks: 1.5-2 minutes of a 0.5x
# network's simulation, against well under a second of Verilator. These are the same layouts in
# NumPy (element 0 of the innermost folded dimension in the least significant bits, two's
# complement, BIPOLAR as one bit with 0 = -1); tests/test_rtlsim.py checks them against FINN's.


def _stream_type(dtype) -> IntType:
    """The driver's IntType of a qonnx DataType (only integer streams are simulated)."""
    try:
        return parse_datatype(dtype.get_canonical_name())
    except DeploymentError as err:
        raise UserError(f"stream: {err}") from None


def pack_beats(folded: np.ndarray, dtype) -> list[int]:
    """One int per beat from a folded array (..., elements per beat) of `dtype` values: the
    driver's stream packing (the bytes of a word, little-endian) read as one integer."""
    v = np.rint(np.asarray(folded, dtype=np.float64)).astype(np.int64)
    words = pack(v.reshape(-1, v.shape[-1]), _stream_type(dtype), check=False, wrap=True)
    return [int.from_bytes(row.tobytes(), "little") for row in words]


def unpack_beats(beats: list[int], dtype, elems: int) -> np.ndarray:
    """(beats, elems) float32 values of `dtype` from the beats' low elems * bitwidth bits."""
    t = _stream_type(dtype)
    n = packed_bytes(elems, t)
    raw = b"".join((b & ((1 << (8 * n)) - 1)).to_bytes(n, "little") for b in beats)
    words = np.frombuffer(raw, np.uint8).reshape(len(beats), n)
    return unpack(words, t, elems).astype(np.float32)


def pack_frames(inst, frames: list[np.ndarray]) -> list[int]:
    """The input stream of `frames` as RTLBackend.execute_node packs it, frame after frame."""
    shape = inst.get_folded_input_shape(0)
    beats: list[int] = []
    for f in frames:
        folded = np.asarray(f, dtype=np.float32).reshape(shape)
        beats += pack_beats(folded, inst.get_input_datatype(0))
    return beats


def unpack_frames(inst, beats: list[int], n: int) -> np.ndarray:
    folded = list(inst.get_folded_output_shape(0))
    vals = unpack_beats(beats, inst.get_output_datatype(0), folded[-1])
    return vals.reshape(n, *inst.get_normal_output_shape(0)[1:])


def hardware_order(inst, y: np.ndarray) -> np.ndarray:
    """FINN's Python execution of a depthwise sliding window gives (kernel position, channel);
    with SIMD < channels the hardware streams channel folds outermost, (channel fold, kernel
    position, SIMD), which is what the depthwise consumer (Pool, VVAU) reads. FINN's own SWG tests
    permute the expectation the same way before comparing with rtlsim."""
    if not inst.onnx_node.op_type.startswith("ConvolutionInputGenerator"):
        return y
    if not inst.get_nodeattr("depthwise"):
        return y
    simd, ch = int(inst.get_nodeattr("SIMD")), int(inst.get_nodeattr("IFMChannels"))
    k = int(np.prod(inst.get_nodeattr("ConvKernelDim")))
    if simd == ch:
        return y
    lead = y.shape[:-1]
    y = y.reshape(*lead, k, ch // simd, simd)
    return np.swapaxes(y, -3, -2).reshape(*lead, k * ch)


def has_weight_stream(inst) -> bool:
    """FINN's RTL MVAU in internal_decoupled mode: its core (what we simulate) reads the weights
    from a second stream, in1_V, which the IP feeds from a memory streamer."""
    return inst.onnx_node.op_type == "MVAU_rtl" and inst.get_nodeattr("mem_mode") == (
        "internal_decoupled"
    )


def weight_beats(inst, weights: np.ndarray, frames: int, work: Path) -> list[int]:
    """The weight stream as FINN's own MVAU_rtl rtlsim feeds it: the folded matrix written by
    FINN's make_weight_file ("decoupled_npy"), once per output pixel (numInputVectors / TH),
    frame after frame."""
    path = work / "weights.npy"
    inst.make_weight_file(weights, "decoupled_npy", str(path))
    folded = np.load(path)
    beats = pack_beats(folded.reshape(-1, folded.shape[-1]), inst.get_input_datatype(1))
    reps = int(np.prod(inst.get_nodeattr("numInputVectors"))) // int(inst.get_nodeattr("TH"))
    return beats * reps * frames


def out_beats_per_frame(inst) -> int:
    return int(np.prod(list(inst.get_folded_output_shape(0))[:-1]))


# --- one layer ---------------------------------------------------------------------------------


def simulate_layer(
    node,
    inst,
    inputs: list[np.ndarray],
    expected: np.ndarray,
    work: Path,
    version: str,
    cache: Path = CACHE_DIR,
    weights: np.ndarray | None = None,
) -> LayerResult:
    """One layer on `inputs` (one array per frame) vs `expected`; `weights` (the layer's weight
    initializer) feed the weight stream of a layer that has one (`has_weight_stream`)."""
    res = LayerResult(node.name, node.op_type, len(inputs), False)
    res.finn_estimate_cycles = int(inst.get_exp_cycles())
    if not _drives_in0_out0(inst):
        intf = inst.get_verilog_top_module_intf_names()
        res.note = (f"interfaces {[n for n, _ in intf['s_axis']]} -> {[n for n, _ in intf['m_axis']]}: "
                    "the testbench drives in0_V -> out0_V only")  # fmt: skip
        return res
    shutil.rmtree(work, ignore_errors=True)
    hdl, top = stage_sources(node, inst, work / "src")
    res.sources = [f.name for f in hdl]
    t0 = time.perf_counter()
    try:
        key = build_key(work / "src", version)
        exe, res.cached_build = build_simulator(hdl, top, key, version, cache)
    except VerilatorBuildError as err:
        if node.op_type not in KNOWN_UNSUPPORTED:
            raise
        res.simulated, res.passed = False, False
        res.note = f"not simulated: {KNOWN_UNSUPPORTED[node.op_type]} ({err.first_error})"
        return res
    res.build_seconds = round(time.perf_counter() - t0, 2)

    beats = pack_frames(inst, inputs)
    (work / "input.hex").write_text("".join(f"{b:x}\n" for b in beats))
    per = out_beats_per_frame(inst)
    max_cycles = 200 * (res.finn_estimate_cycles + len(beats)) * len(inputs) + 100_000
    args = [str(work / "input.hex"), str(work / "output.hex"), str(per), str(len(inputs)),
            str(max_cycles)]  # fmt: skip
    if has_weight_stream(inst):
        if weights is None:
            raise UserError(f"{node.name}: its weight stream needs the weights, none given")
        wb = weight_beats(inst, weights, len(inputs), work)
        (work / "weights.hex").write_text("".join(f"{b:x}\n" for b in wb))
        args.append(str(work / "weights.hex"))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        cwd=work / "src",  # $readmemh paths are relative ("./<layer>_...")
    )
    res.sim_seconds = round(time.perf_counter() - t0, 2)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{node.name}: simulator exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    out_hex = (work / "output.hex").read_text().split()
    surplus = out_hex[per * len(inputs) :]
    if node.op_type.startswith("FMPadding") and len(surplus) <= leading_pad_beats(inst):
        # a padding unit emits the next frame's top/left border before that frame's first input
        # beat: during the testbench's drain those beats are legal, and must be zeros
        if all(int(h, 16) == 0 for h in surplus):
            out_hex = out_hex[: per * len(inputs)]
    if run["timeout"] or len(out_hex) != per * len(inputs):
        res.mismatches = len(inputs)
        res.first = [{"error": f"{len(out_hex)} output beats, expected {per * len(inputs)}; "
                      f"{run['beats_in_consumed']}/{run['beats_in']} input beats consumed in "
                      f"{run['cycles']} cycles"}]  # fmt: skip
        return res
    got = unpack_frames(inst, [int(h, 16) for h in out_hex], len(inputs))
    want = hardware_order(inst, np.stack([np.asarray(e, dtype=np.float32) for e in expected]))
    want = want.reshape(got.shape)
    diff = (got != want).reshape(len(inputs), -1)
    bad = np.flatnonzero(diff.any(axis=1))
    res.mismatches = int(len(bad))
    for i in bad[:3]:
        j = np.flatnonzero(diff[i])[:8]
        res.first.append({"frame": int(i), "positions": j.tolist(),
                          "expected": want[i].ravel()[j].tolist(), "got": got[i].ravel()[j].tolist()})  # fmt: skip
    done = run["frame_done"]
    res.sim_cycles_first_frame = int(done[0])
    if len(done) > 1:
        res.sim_cycles_per_frame = round((done[-1] - done[0]) / (len(done) - 1), 1)
    if res.finn_estimate_cycles:
        res.ratio = round(res.sim_cycles_first_frame / res.finn_estimate_cycles, 3)
    res.passed = res.mismatches == 0
    return res


# --- a whole network ---------------------------------------------------------------------------


def _drives_in0_out0(inst) -> bool:
    intf = inst.get_verilog_top_module_intf_names()
    return [n for n, _ in intf["s_axis"]] == ["in0_V"] and [n for n, _ in intf["m_axis"]] == [
        "out0_V"
    ]


def prebuild(layers: list, out: Path, version: str, workers: int) -> dict[str, float]:
    """Build the simulators the cache lacks, `workers` at a time (Verilator's C++ builds are
    most of a cold run); returns build seconds by layer name. Failures are left for
    simulate_layer, which reports them layer by layer."""
    from concurrent.futures import ThreadPoolExecutor

    from qonnx.custom_op.registry import getCustomOp

    jobs: dict[str, tuple[list[Path], str, str]] = {}
    for node in layers:
        inst = getCustomOp(node)
        if not _drives_in0_out0(inst):
            continue
        work = out / "layers" / node.name
        shutil.rmtree(work, ignore_errors=True)
        hdl, top = stage_sources(node, inst, work / "src")
        key = build_key(work / "src", version)
        if key not in jobs and not (CACHE_DIR / key / "sim").is_file():
            jobs[key] = (hdl, top, node.name)

    def build(key: str) -> tuple[str, float]:
        hdl, top, name = jobs[key]
        t0 = time.perf_counter()
        try:
            build_simulator(hdl, top, key, version)
        except VerilatorBuildError:
            pass
        return name, round(time.perf_counter() - t0, 2)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return dict(pool.map(build, list(jobs)))


def simulate_network(
    model_path: Path,
    x: np.ndarray,
    out: Path,
    names: list[str] | None = None,
    workers: int | None = None,
) -> dict:
    """Simulate every RTL layer of the code-generated graph at `model_path` on images `x` (uint8
    NHWC); writes ``rtlsim.json`` / ``rtlsim.md`` into `out` and raises VerificationError on any
    mismatch."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    version = require_verilator()
    t_all = time.perf_counter()
    model = ModelWrapper(str(model_path))
    layers = [n for n in model.graph.node if is_rtl_layer(n)]
    if not layers:
        raise UserError(f"{model_path}: no RTL-backend layers to simulate")
    t0 = time.perf_counter()
    contexts = generic_trace(model, x)
    t_ref = round(time.perf_counter() - t0, 2)
    print(f"  FINN Python execution of {len(x)} images: {t_ref} s", flush=True)
    t0 = time.perf_counter()
    runtime_objects(version)  # once, before builds run side by side
    built = prebuild(layers, out, version, workers or os.cpu_count() or 1)
    if built:
        print(f"  {len(built)} Verilator builds, {workers or os.cpu_count()} at a time: "
              f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    results: list[LayerResult] = []
    for node in layers:
        inst = getCustomOp(node)
        inputs = [c[node.input[0]] for c in contexts]
        expected = np.stack([c[node.output[0]] for c in contexts])
        weights = model.get_initializer(node.input[1]) if has_weight_stream(inst) else None
        r = simulate_layer(node, inst, inputs, expected, out / "layers" / node.name, version,
                           weights=weights)  # fmt: skip
        if node.name in built:  # built above: record that build, not the cache hit
            r.build_seconds, r.cached_build = built[node.name], False
        results.append(r)
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        status = "skip" if not r.simulated else "ok  " if r.passed else "FAIL"
        print(f"  {status} {r.name:36s} sim {r.sim_cycles_first_frame!s:>7} "
              f"est {r.finn_estimate_cycles:>7} ({ratio})  build {r.build_seconds:5.1f} s"
              f"{' (cached)' if r.cached_build else ''}", flush=True)  # fmt: skip
    report = {
        "model": rel(model_path),
        "verilator": version,
        "frames": len(x),
        "images": names or [],
        # a layer Verilator cannot build (a known tool limit) is listed, not counted as passed
        "passed": all(r.passed or _tool_limit(r) for r in results),
        "simulated": sum(r.simulated for r in results),
        "not_simulated": {r.name: r.note for r in results if not r.simulated},
        "finn_python_seconds": t_ref,
        "layers": [asdict(r) for r in results],
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    # the release gate reads this report: never half-written
    write_atomic(out / "rtlsim.md", to_markdown(report))
    write_json(out / "rtlsim.json", report)
    if not report["passed"]:
        bad = [r for r in results if not (r.passed or _tool_limit(r))]
        raise VerificationError(
            f"Verilator simulation differs from FINN's Python execution in {len(bad)} RTL "
            f"layer(s), first {bad[0].name}: {bad[0].note or json.dumps(bad[0].first[:1])}; "
            f"report: {rel(out / 'rtlsim.md')}"
        )
    return report


def to_markdown(r: dict) -> str:
    lines = [
        f"# Verilator simulation of the RTL layers: {'PASSED' if r['passed'] else 'FAILED'}",
        "",
        f"`{r['model']}`, {r['frames']} real images, {r['verilator']}. Each layer's output is "
        "compared bit for bit with FINN's Python execution of the same layer on the same input. "
        "Cycles: from reset release to the first frame's last output beat (input always valid, "
        "output always ready), and the steady-state interval between frames; FINN's estimate is "
        f"`get_exp_cycles()` (0 for FIFOs and width converters: FINN does not estimate them). "
        f"{r['seconds']} s in total.",
        "",
    ]
    header = ("layer", "result", "sim cycles (frame 1)", "sim cycles/frame (steady)",
              "FINN estimate", "sim/est", "build s")  # fmt: skip
    lines += md_table(
        header,
        (
            (L["name"], _status(L), L["sim_cycles_first_frame"], L["sim_cycles_per_frame"] or "-",
             L["finn_estimate_cycles"] or "none (0)",
             "-" if L["ratio"] is None else f"{L['ratio']:.2f}",
             f"{L['build_seconds']}{' (cached)' if L['cached_build'] else ''}")
            for L in r["layers"]
        ),
    )  # fmt: skip
    if r["not_simulated"]:
        lines += [
            "",
            "Not simulated (Verilator limitations, see pipeline/rtlsim/verilator.py):",
            "",
        ]
        lines += [f"- {name}: {note}" for name, note in r["not_simulated"].items()]
    for L in r["layers"]:
        if L["simulated"] and not L["passed"]:
            lines += ["", f"## {L['name']}", ""]
            lines += [f"- `{json.dumps(d)}`" for d in L["first"]]
            if L["note"]:
                lines.append(f"- {L['note']}")
    return "\n".join(lines) + "\n"


def _tool_limit(r: LayerResult) -> bool:
    return not r.simulated and r.op_type in KNOWN_UNSUPPORTED


def _status(L: dict) -> str:
    return "not simulated" if not L["simulated"] else "ok" if L["passed"] else "**FAIL**"


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--net", required=True, help="network name, e.g. mask_1w1a_0.25")
    p.add_argument("--board", choices=sorted(BOARDS), help="default: the config's build.board")
    p.add_argument("--build", type=Path, help="build folder (default build/<net>/<board>)")
    p.add_argument("--images", type=int, default=3, help="real images streamed (default 3)")
    p.add_argument("--data", type=Path, help="image folder (default: build.verify.data)")


def run(args: argparse.Namespace) -> int:
    from maskbnn.pipeline.verify.chain import load_images

    cfg = load_network_config(args.net)  # an unknown name is named before any advice to build it
    board = args.board or cfg.build.board
    require_verilator()
    bd = BuildDir.at(args.build, args.net, board)
    build = bd.root
    with folder_lock(build, f"maskbnn rtlsim --net {args.net} --board {board}", create=False):
        model_path = codegen_model(args.net, board, build)
        x, names, _ = load_images(args.net, args.images, args.data)
        r = simulate_network(model_path, x, bd.rtlsim, names)
    skipped = ", ".join(r["not_simulated"])
    print(f"Verilator simulation PASSED: {r['simulated']} RTL layers bit-exact on {r['frames']} "
          f"images ({r['seconds']} s)"
          f"{f'; not simulated (reasons in the report): {skipped}' if skipped else ''}"
          f"; report {rel(bd.rtlsim / 'rtlsim.md')}")  # fmt: skip
    return 0
