"""Folding optimizer: the PE/SIMD/memory style/multiplier resource per layer that maximises FINN's
estimated FPS within a LUT, BRAM and DSP budget (of the whole fabric by default, see fabric.py).

Everything is priced by FINN's own per-node functions (``get_exp_cycles``,
``node_res_estimation``: the same ones ``res_estimation`` and the estimate reports use); nothing is
re-modelled here. FINN's totals are sums over nodes and a node's estimate depends only on its own
attributes, so the problem separates into *units* that must be folded together:

- an MVAU with the sliding-window generator (SWG) that feeds it: the SWG streams SIMD channels per
  cycle and the MVAU's SIMD must be a multiple of it (pipeline/fold/folding.py), so the SWG takes the
  largest legal value, gcd(channels, MVAU SIMD); when that is all channels, the RTL SWG's
  parallel-window mode (a whole window per cycle) is a further option;
- a Pool with its depthwise SWG (SWG SIMD = Pool PE);
- any other layer with a folding attribute (Thresholding PE, LabelSelect PE, ...).

For a cycle target T every unit has a set of legal options meeting it, each with a (LUT, BRAM,
DSP) cost. Whether T fits the budget is a choice of one option per unit, solved exactly by dynamic
programming over (BRAM18, DSP) (small integers) keeping the least LUT. A binary search
over the finitely many cycle values gives the smallest feasible T, i.e. the highest FPS FINN's
estimates allow; among the foldings reaching it we keep the one using the least of the budget.
FINN's SetFolding instead folds each layer independently to a fixed target and never looks at
resources; that is the baseline the comparison report puts ours against.

What the bitstream adds around the layers (FIFOs, width converters, shell, margin) depends on the
folding through the stream widths, so the whole-fabric budget is met by `search_fabric`: for a
cycle target, fold the layers in what is left, measure the choice's whole fabric, tighten, repeat;
the same binary search over the targets, each target settled afresh.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from maskbnn.config import BOARDS, load_network_config
from maskbnn.errors import UserError
from maskbnn.paths import BUILD_DIR
from maskbnn.pipeline.builddir import BuildDir
from maskbnn.pipeline.finn import env as finn_env  # noqa: F401  (FINN's environment before importing it)
from maskbnn.pipeline.finn.build import steps
from maskbnn.pipeline.finn.estimates import collect
from maskbnn.pipeline.finn.fabric import DEVICES, RESOURCES, SHELL, fabric, percent
from maskbnn.pipeline.finn.hwgraph import base_op
from maskbnn.pipeline.finn.steps import run_finn_steps
from maskbnn.pipeline.fold import calibration
from maskbnn.pipeline.fold.folding import attr_total, divisors

# Budget profiles. "default": the whole fabric (layers, inserted FIFOs/DWCs, shell, margin; see
# fabric.py) within 80% LUT / 90% BRAM (room for placement and routing) and every DSP. "max": the
# layers alone within 85% LUT / 95% BRAM, for users who want to try a fuller device.
PROFILES = {
    "default": {"lut": 0.80, "bram": 0.90, "dsp": 1.0, "fabric": True},
    "max": {"lut": 0.85, "bram": 0.95, "dsp": 1.0, "fabric": False},
}
DEFAULT_LUT_FRACTION = PROFILES["max"]["lut"]
DEFAULT_BRAM_FRACTION = PROFILES["max"]["bram"]
# Zynq-7000 -1 speed grade: global clock buffers top out at 464 MHz (DS187); no design goes faster.
MIN_CLOCK_NS = 1000.0 / 464.0
# FINN's HLS weight streams are ap_uint<PE*SIMD*W>, which Vitis HLS caps at this width.
MAX_AP_INT_W = 8191
MVAU_RAM_STYLES = ("block", "distributed")
# Single-attribute layers: attribute -> node attribute it must divide (as pipeline/fold/folding.py).
SIMPLE = {
    "Thresholding": ("PE", "NumChannels"),
    "LabelSelect": ("PE", "Labels"),
    "StreamingMaxPool": ("PE", "NumChannels"),
    "FMPadding": ("SIMD", "NumChannels"),
    "DuplicateStreams": ("PE", "NumChannels"),
    "ElementwiseAdd": ("PE", "out_shape"),
    "AddStreams": ("PE", "NumChannels"),
}


@dataclass(frozen=True)
class Budget:
    lut: int
    bram18: int
    dsp: int = 0

    @classmethod
    def of(
        cls, part: str, lut_fraction: float, bram_fraction: float, dsp_fraction: float = 1.0
    ) -> Budget:
        if part not in DEVICES:
            raise UserError(f"no resource totals for part {part}; known: {', '.join(DEVICES)}")
        for name, f in (("LUT", lut_fraction), ("BRAM", bram_fraction), ("DSP", dsp_fraction)):
            if not 0 < f <= 1:
                raise UserError(f"{name} budget {f} must be a fraction in (0, 1], e.g. 0.85")
        dev = DEVICES[part]
        # BRAM budgets are whole BRAM36 (two BRAM18 each), as the issue states them.
        return cls(
            int(dev["LUT"] * lut_fraction),
            2 * math.floor(dev["BRAM_18K"] / 2 * bram_fraction),
            int(dev["DSP"] * dsp_fraction),
        )


@dataclass(frozen=True)
class Option:
    """One legal folding of a unit: node name -> attributes, and FINN's estimates for it."""

    attrs: dict
    cycles: int
    lut: int
    bram: int
    dsp: int = 0


@dataclass
class Unit:
    name: str  # the node whose parallelism defines the unit (MVAU, Pool, ...)
    nodes: list[str]
    options: list[Option] = field(default_factory=list)


@dataclass
class FoldResult:
    network: str
    board: str
    part: str
    clock_ns: float
    budget: Budget
    units: list[Unit]
    choice: dict[str, Option]  # unit name -> chosen option
    binding: str  # what stops a faster folding: "LUT", "BRAM", "LUT or BRAM", "LUT+BRAM",
    # "DSP", ... or "parallelism" (every layer at its largest legal parallelism)
    next_cycles: int | None  # the next faster cycle target, which does not fit
    profile: str = "max"
    fabric: dict | None = None  # the whole fabric of the choice (profile "default")
    layer_budget: Budget | None = None  # what the layers may use once the rest is taken
    next_need: dict | None = None  # the next step's least-LUT folding and its fabric (target_need)

    @property
    def max_cycles(self) -> int:
        return max(o.cycles for o in self.choice.values())

    @property
    def fps(self) -> float:
        return 1e9 / self.clock_ns / self.max_cycles

    @property
    def lut(self) -> int:
        return sum(o.lut for o in self.choice.values())

    @property
    def bram(self) -> int:
        return sum(o.bram for o in self.choice.values())

    @property
    def dsp(self) -> int:
        return sum(o.dsp for o in self.choice.values())

    @property
    def bottleneck(self) -> str:
        return max(self.choice, key=lambda u: self.choice[u].cycles)

    def folding(self) -> dict:
        """FINN's folding-file JSON (every attribute written, so FINN's defaults never matter)."""
        out: dict = {"Defaults": {}}
        for unit in self.units:
            out.update(copy.deepcopy(self.choice[unit.name].attrs))
        return out

    def summary(self) -> dict:
        return {
            "network": self.network,
            "board": self.board,
            "part": self.part,
            "clock_ns": self.clock_ns,
            "profile": self.profile,
            "budget": {
                "LUT": self.budget.lut,
                "BRAM_18K": self.budget.bram18,
                "DSP": self.budget.dsp,
                "applies_to": "whole fabric" if self.fabric else "layers",
            },
            "fps": round(self.fps, 1),
            "max_cycles": self.max_cycles,
            "bottleneck": self.bottleneck,
            "LUT": self.lut,
            "BRAM_18K": self.bram,
            "DSP": self.dsp,
            "binding": self.binding,
            "next_cycles": self.next_cycles,
        }


# --- pricing options with FINN's own functions -------------------------------------------------


def _price(model, attrs: dict, part: str) -> Option:
    """Set `attrs` on the nodes, read FINN's estimates, restore nothing (callers copy the model)."""
    from qonnx.custom_op.registry import getCustomOp

    for name, values in attrs.items():
        inst = getCustomOp(model.get_node_from_name(name))
        for k, v in values.items():
            inst.set_nodeattr(k, v)
    return _estimate(model, [model.get_node_from_name(n) for n in attrs], part, attrs)


def _estimate(model, nodes, part: str, attrs: dict) -> Option:
    from qonnx.custom_op.registry import getCustomOp

    cycles = lut = bram = dsp = 0
    for node in nodes:
        inst = getCustomOp(node)
        res = inst.node_res_estimation(part)
        cycles = max(cycles, int(inst.get_exp_cycles()))
        lut += int(res["LUT"])
        bram += int(res["BRAM_18K"])
        dsp += int(res["DSP"])
    return Option(attrs, cycles, lut, bram, dsp)


def _swg_of(model, node):
    prod = model.find_producer(node.input[0])
    if prod is not None and base_op(prod.op_type) == "ConvolutionInputGenerator":
        return prod
    return None


def _mvau_options(model, node, part: str, max_simd: int | None = None) -> list[Option]:
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    mw, mh = int(inst.get_nodeattr("MW")), int(inst.get_nodeattr("MH"))
    wbits = inst.get_input_datatype(1).bitwidth()
    swg = _swg_of(model, node)
    swg_inst = getCustomOp(swg) if swg is not None else None
    options = []
    for pe in divisors(mh):
        for simd in divisors(mw):
            if pe * simd * wbits > MAX_AP_INT_W or (max_simd and simd > max_simd):
                continue
            for style, res_type in itertools.product(_ram_styles(node), _res_types(node, inst)):
                attrs = {
                    node.name: {
                        "PE": pe,
                        "SIMD": simd,
                        "ram_style": style,
                        "mem_mode": "internal_decoupled",
                        "resType": res_type,
                    }
                }
                if swg_inst is None:
                    options.append(_price(model, attrs, part))
                    continue
                ch = int(swg_inst.get_nodeattr("IFMChannels"))
                swg_style = swg_inst.get_nodeattr("ram_style")
                windows = [0, 1] if simd % ch == 0 and _parallel_window_ok(swg_inst) else [0]
                for pw in windows:
                    full = dict(attrs)
                    full[swg.name] = {
                        "SIMD": math.gcd(ch, simd),
                        "parallel_window": pw,
                        "ram_style": swg_style,
                    }
                    options.append(_price(model, full, part))
    return options


def _ram_styles(node) -> tuple[str, ...]:
    """Where the MVAU's weights may go. FINN's MVAU_rtl.lut_estimation returns 0 whatever the
    memory style, so LUTRAM weights would look free to the search; the RTL MVAU is offered with
    its weights in BRAM only, which FINN does price."""
    return ("block",) if node.op_type == "MVAU_rtl" else MVAU_RAM_STYLES


def _res_types(node, inst) -> tuple[str, ...]:
    """Where the MVAU's multipliers may go. FINN's RTL MVU is built from DSP slices only
    (hw_codegen refuses "lut"). The HLS MVAU's resType="dsp" binds finn-hlslib's multiply to a
    DSP48, which only exists when both operands are multi-bit: with bipolar weights (Binary in
    interpret.hpp) the product is a select between x and -x, with XNOR it is a gate; there is no
    multiplier for Vitis HLS to bind, yet FINN's estimate would count P*SIMD DSPs and no LUTs."""
    if node.op_type == "MVAU_rtl":
        return ("dsp",)
    multi_bit = all(inst.get_input_datatype(i).bitwidth() >= 2 for i in (0, 1))
    if multi_bit and not inst.get_nodeattr("binaryXnorMode"):
        return ("lut", "dsp")
    return ("lut",)


def _parallel_window_ok(swg_inst) -> bool:
    # FINN's RTL SWG offers a whole window per cycle for non-depthwise 2D windows only.
    return (
        swg_inst.onnx_node.op_type == "ConvolutionInputGenerator_rtl"
        and not swg_inst.get_nodeattr("depthwise")
        and all(int(k) > 1 for k in swg_inst.get_nodeattr("ConvKernelDim"))
    )


def _pool_options(model, node, part: str) -> list[Option]:
    from qonnx.custom_op.registry import getCustomOp

    ch = int(getCustomOp(node).get_nodeattr("Channels"))
    swg = _swg_of(model, node)
    options = []
    for pe in divisors(ch):
        attrs = {node.name: {"PE": pe}}
        if swg is not None:
            style = getCustomOp(swg).get_nodeattr("ram_style")
            attrs[swg.name] = {"SIMD": pe, "parallel_window": 0, "ram_style": style}
        options.append(_price(model, attrs, part))
    return options


def _simple_options(model, node, part: str) -> list[Option]:
    from qonnx.custom_op.registry import getCustomOp

    attr, total = SIMPLE[base_op(node.op_type)]
    n = attr_total(getCustomOp(node), total)
    return [_price(model, {node.name: {attr: v}}, part) for v in divisors(n)]


def build_units(model, part: str, max_simd: int | None = None) -> list[Unit]:
    """Every foldable unit of the specialised hardware graph with all its legal options priced."""
    work = copy.deepcopy(model)  # pricing sets attributes; leave the caller's graph untouched
    units: list[Unit] = []
    claimed: set[str] = set()
    for node in work.graph.node:
        op = base_op(node.op_type)
        if op == "MVAU":
            options = _mvau_options(work, node, part, max_simd)
        elif op == "Pool":
            options = _pool_options(work, node, part)
        elif op in SIMPLE:
            options = _simple_options(work, node, part)
        else:
            continue
        nodes = list(options[0].attrs)
        claimed.update(nodes)
        units.append(Unit(node.name, nodes, options))
    foldable = {"ConvolutionInputGenerator", "VVAU", "MVAU", "Pool", *SIMPLE}
    loose = [
        n.name for n in work.graph.node if n.name not in claimed and base_op(n.op_type) in foldable
    ]
    if loose:
        raise UserError(
            f"the optimizer does not know how to fold {loose} (a window generator without an "
            "MVAU or Pool after it, or a VVAU); write a folding file by hand for this network"
        )
    fixed = [n for n in work.graph.node if n.name not in claimed]
    if fixed:  # layers without folding attributes still cost cycles and resources
        units.append(
            Unit("(unfolded layers)", [n.name for n in fixed], [_estimate(work, fixed, part, {})])
        )
    return units


# --- the search --------------------------------------------------------------------------------


def _pareto(options: list[Option], max_cycles: int) -> list[Option]:
    """Options meeting the cycle target that no other option beats in LUT, BRAM and DSP."""
    fit = sorted(
        (o for o in options if o.cycles <= max_cycles), key=lambda o: (o.bram, o.dsp, o.lut)
    )
    front: list[Option] = []
    for o in fit:  # sorted: an earlier option can dominate a later one, never the reverse
        if not any(f.lut <= o.lut and f.bram <= o.bram and f.dsp <= o.dsp for f in front):
            front.append(o)
    return front


def _fit(
    units: list[Unit], max_cycles: int, lut: float, bram: float, dsp: float = math.inf
) -> dict[str, Option] | None:
    """One option per unit with cycles <= max_cycles within (lut, bram, dsp), least budget share;
    None when no such choice exists."""
    states = _states(units, max_cycles, lut, bram, dsp)
    if states is None:
        return None

    def share(key: tuple[int, int]) -> tuple[float, int]:
        b, d = key
        lu = states[key][0]
        used = [lu / max(lut, 1), b / max(bram, 1)] + ([d / max(dsp, 1)] if d else [])
        return max(used), lu + b + d

    best = min(states, key=share)
    return {u.name: o for u, o in zip(units, states[best][1], strict=True)}


def _states(units: list[Unit], max_cycles: int, lut: float, bram: float, dsp: float):
    """Exact DP over total (BRAM18, DSP) keeping the least LUT and its options; None when
    nothing fits (layers without a DSP option add no DSP state: the space stays that of BRAM)."""
    states: dict[tuple[int, int], tuple[int, list[Option]]] = {(0, 0): (0, [])}
    for unit in units:
        front = _pareto(unit.options, max_cycles)
        if not front:
            return None
        nxt: dict[tuple[int, int], tuple[int, list[Option]]] = {}
        for (b, d), (lu, picked) in states.items():
            for o in front:
                key, nl = (b + o.bram, d + o.dsp), lu + o.lut
                if key[0] > bram or key[1] > dsp or nl > lut:
                    continue
                if key not in nxt or nl < nxt[key][0]:
                    nxt[key] = (nl, [*picked, o])
        if not nxt:
            return None
        states = nxt
    return states


def _cycle_targets(units: list[Unit]) -> list[int]:
    floor = max(min(o.cycles for o in u.options) for u in units)  # fastest any folding can be
    return sorted({o.cycles for u in units for o in u.options if o.cycles >= floor})


def minimum_resources(units: list[Unit]) -> tuple[int, int]:
    """(LUT, BRAM18) lower bounds: each unit's least LUT and least BRAM, possibly from different
    options (see `fully_folded_front` for totals one folding actually reaches)."""
    lut = sum(min(o.lut for o in u.options) for u in units)
    bram = sum(min(o.bram for o in u.options) for u in units)
    return lut, bram


def fully_folded_front(units: list[Unit]) -> list[tuple[int, int]]:
    """(LUT, BRAM18) totals of the cheapest whole-network foldings, no budget: the trade-off
    memory styles give (weights in BRAM vs in LUTRAM), least BRAM first."""
    slowest = max(o.cycles for u in units for o in u.options)
    states: dict[int, int] = {0: 0}
    for unit in units:
        nxt: dict[int, int] = {}
        for b, lu in states.items():
            for o in _pareto([o for o in unit.options if not o.dsp] or unit.options, slowest):
                if b + o.bram not in nxt or lu + o.lut < nxt[b + o.bram]:
                    nxt[b + o.bram] = lu + o.lut
        states = nxt
    front, best = [], math.inf
    for b in sorted(states):
        if states[b] < best:
            front.append((states[b], b))
            best = states[b]
    return front


def search(units: list[Unit], budget: Budget) -> tuple[dict[str, Option], str, int | None]:
    """The fastest choice within `budget`: (choice, binding resource, next faster target)."""
    targets = _cycle_targets(units)
    lo, hi = 0, len(targets) - 1
    dsp = budget.dsp
    best = _fit(units, targets[hi], budget.lut, budget.bram18, dsp)
    if best is None:
        front = fully_folded_front(units)
        ends = sorted({front[0], front[-1]}, key=lambda p: p[1])
        need = " or ".join(f"{lu:,} LUT + {b} BRAM18" for lu, b in ends)
        raise UserError(
            f"the network does not fit even fully folded (every layer at PE=SIMD=1): FINN "
            f"estimates its cheapest foldings at {need}; the budget is {budget.lut:,} LUT and "
            f"{budget.bram18} BRAM18. Raise the budget or use a larger device"
        )
    while lo < hi:  # smallest index whose target fits
        mid = (lo + hi) // 2
        got = _fit(units, targets[mid], budget.lut, budget.bram18, dsp)
        if got is not None:
            best, hi = got, mid
        else:
            lo = mid + 1
    best = _fit(units, targets[lo], budget.lut, budget.bram18, dsp) or best
    if lo == 0:
        return best, "parallelism", None
    faster = targets[lo - 1]
    limits = {"LUT": budget.lut, "BRAM": budget.bram18, "DSP": dsp}

    def fits_without(*free: str) -> bool:
        lim = {k: math.inf if k in free else v for k, v in limits.items()}
        return _fit(units, faster, lim["LUT"], lim["BRAM"], lim["DSP"]) is not None

    # "LUT or BRAM": more of either would do (memory styles trade one for the other);
    # "LUT+BRAM": only more of both together would.
    alone = [k for k in limits if fits_without(k)]
    if alone:
        return best, " or ".join(alone), faster
    pair = "LUT+BRAM" if fits_without("LUT", "BRAM") else "LUT+BRAM+DSP"
    return best, pair, faster


def optimize(
    model,
    network: str,
    board: str,
    clock_ns: float = 10.0,
    lut_fraction: float | None = None,
    bram_fraction: float | None = None,
    target_fps: float | None = None,
    max_simd: int | None = None,
    profile: str = "default",
) -> FoldResult:
    """Fold the specialised hardware graph `model` for the highest estimated FPS in budget.

    The `profile` (PROFILES) sets the budget fractions (`lut_fraction`/`bram_fraction` override
    them) and whether they bound the whole fabric or the layers alone. With `target_fps`, a
    folding that cannot reach it raises a UserError naming the binding resource and the best FPS
    found (the best folding is on the error as `.result`).
    `max_simd` optionally caps MVAU SIMD (FINN's estimates do not price the depth of a wide
    popcount tree, which may limit the clock after synthesis)."""
    if board not in BOARDS:
        raise UserError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    check_clock(clock_ns)
    part = BOARDS[board]
    if profile not in PROFILES:
        raise UserError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    budget = Budget.of(
        part,
        prof["lut"] if lut_fraction is None else lut_fraction,
        prof["bram"] if bram_fraction is None else bram_fraction,
        prof["dsp"],
    )
    if max_simd is not None and max_simd < 1:
        raise UserError(f"--max-simd {max_simd} must be at least 1")
    units = build_units(model, part, max_simd)
    if prof["fabric"]:
        choice, binding, nxt, fab, layer_budget = search_fabric(model, units, budget, board)
    else:
        (choice, binding, nxt), fab, layer_budget = search(units, budget), None, budget
    result = FoldResult(network, board, part, clock_ns, budget, units, choice, binding, nxt,
                        profile, fab, layer_budget)  # fmt: skip
    if fab and nxt:
        result.next_need = need_at(model, result, nxt)
    if target_fps is not None and result.fps < target_fps:
        scope = "the whole fabric within" if fab else "the layers within"
        err = UserError(
            f"{network} on {board} cannot reach {target_fps:,.0f} FPS at "
            f"{1000 / clock_ns:.0f} MHz with {scope} {budget.lut:,} LUT / {budget.bram18} BRAM18: "
            f"the best folding found gives {result.fps:,.0f} FPS ({result.lut:,} LUT, "
            f"{result.bram} BRAM18, bottleneck {result.bottleneck}); {explain(result)}"
        )
        err.result = result
        raise err
    return result


def choice_fabric(model, choice: dict[str, Option], board: str, margin: dict | None = None):
    """The whole fabric (fabric.py) of a choice: its attributes set on a copy of the graph."""
    from qonnx.custom_op.registry import getCustomOp

    work = copy.deepcopy(model)
    for o in choice.values():
        for name, values in o.attrs.items():
            inst = getCustomOp(work.get_node_from_name(name))
            for k, v in values.items():
                inst.set_nodeattr(k, v)
    layers = {
        "LUT": sum(o.lut for o in choice.values()),
        "BRAM_18K": sum(o.bram for o in choice.values()),
        "DSP": sum(o.dsp for o in choice.values()),
    }
    return fabric(layers, work, board, BOARDS[board], margin)


def layer_budget(budget: Budget, extra: dict, margin: dict) -> Budget:
    """What the layers may use when the whole fabric must stay within `budget`: the fabric is
    (layers + extra) * (1 + margin) + shell, `extra` being FINN's estimate of what the bitstream
    stage inserts (FIFOs, DWCs, IODMAs)."""

    def room(total: int, k: str) -> int:
        return max(0, math.floor((total - SHELL[k]) / (1 + margin[k])) - int(extra[k]))

    return Budget(room(budget.lut, "LUT"), room(budget.bram18, "BRAM_18K"), room(budget.dsp, "DSP"))


SCAN_MISSES = 6


def settle(model, units: list[Unit], cycles: int, budget: Budget, board: str, margin: dict,
           measured: dict | None = None, rounds: int = 12):  # fmt: skip
    """A folding meeting `cycles` whose whole fabric fits `budget`, as (choice, fabric, layer
    budget), or None: fold the layers in the budget left by the inserted parts measured so far,
    measure that folding's fabric, tighten, repeat. `measured` caches fabrics by choice."""
    measured = {} if measured is None else measured
    extra = {k: 0 for k in RESOURCES}
    cap = {"LUT": budget.lut, "BRAM_18K": budget.bram18, "DSP": budget.dsp}
    for _ in range(rounds):
        lb = layer_budget(budget, extra, margin)
        choice = _fit(units, cycles, lb.lut, lb.bram18, lb.dsp)
        if choice is None:
            return None
        key = tuple(id(o) for o in choice.values())
        if key not in measured:  # FINN's insertion on a copy of the graph: ~1 s
            measured[key] = choice_fabric(model, choice, board, margin)
        fab = measured[key]
        over = {k: fab["total"][k] - cap[k] for k in RESOURCES}
        if all(v <= 0 for v in over.values()):
            return choice, fab, lb
        p = fab["parts"]
        seen = {k: max(extra[k], p["dwc_fifo"][k] + p["iodma"][k]) for k in RESOURCES}
        if seen == extra:  # rounding of the margin: take the excess off directly
            seen = {k: extra[k] + max(0, over[k]) for k in RESOURCES}
        extra = seen
    return None


def search_fabric(model, units: list[Unit], budget: Budget, board: str, rounds: int = 12):
    """`search` with the whole fabric in `budget`: the smallest cycle target at which some
    folding's whole fabric fits (binary search over the targets, as `search`, then a scan).

    What the bitstream inserts depends on the folding (stream widths), so each target is settled
    on its own (`settle`), afresh: the wide streams of a faster folding must not shrink the room
    of a slower one."""
    margin = calibration.margin()
    targets = _cycle_targets(units)
    measured: dict = {}

    def attempt(cycles: int, limit: Budget):
        return settle(model, units, cycles, limit, board, margin, measured, rounds)

    best = attempt(targets[-1], budget)
    if best is None:
        lb = layer_budget(budget, {k: 0 for k in RESOURCES}, margin)
        try:
            search(units, lb)  # raises the fully-folded message when the layers alone do not fit
        except UserError as err:
            raise UserError(
                f"{err} (whole-fabric budget {budget.lut:,} LUT / {budget.bram18} BRAM18 / "
                f"{budget.dsp} DSP leaves the layers {lb.lut:,} LUT / {lb.bram18} BRAM18 after "
                "the FIFOs, width converters, shell and margin; see `--profile max`)"
            ) from None
        raise UserError(
            f"no folding fits the whole-fabric budget {budget.lut:,} LUT / {budget.bram18} "
            f"BRAM18 / {budget.dsp} DSP once the FIFOs, width converters, shell and margin are "
            "added, even fully folded; see `--profile max`"
        )
    lo, hi = 0, len(targets) - 1
    while lo < hi:  # smallest index whose target fits
        mid = (lo + hi) // 2
        got = attempt(targets[mid], budget)
        if got is not None:
            best, hi = got, mid
        else:
            lo = mid + 1
    # Settling is not monotone in the target: a slower target's least-share folding can have
    # wider streams (more FIFO/DWC) than a faster one's and fail where the faster one fits. So
    # the next faster targets are tried one by one until SCAN_MISSES fail in a row.
    idx, misses = lo - 1, 0
    while idx >= 0 and misses < SCAN_MISSES:
        got = attempt(targets[idx], budget)
        if got is not None:
            best, lo, misses = got, idx, 0
        else:
            misses += 1
        idx -= 1
    choice, fab, lb = best
    if lo == 0:
        return choice, "parallelism", None, fab, lb
    faster = targets[lo - 1]
    free = 10**9

    def fits_without(*names: str) -> bool:
        relaxed = Budget(
            free if "LUT" in names else budget.lut,
            free if "BRAM" in names else budget.bram18,
            free if "DSP" in names else budget.dsp,
        )
        return attempt(faster, relaxed) is not None

    # as `search`: "LUT or BRAM" when more of either would do, "LUT+BRAM" when only both would
    alone = [k for k in ("LUT", "BRAM", "DSP") if fits_without(k)]
    if alone:
        return choice, " or ".join(alone), faster, fab, lb
    pair = "LUT+BRAM" if fits_without("LUT", "BRAM") else "LUT+BRAM+DSP"
    return choice, pair, faster, fab, lb


def check_clock(clock_ns: float) -> None:
    if not clock_ns > 0:
        raise UserError(f"clock period {clock_ns} ns must be positive, e.g. --clock-ns 10")
    if clock_ns < MIN_CLOCK_NS:
        raise UserError(
            f"clock period {clock_ns} ns ({1000 / clock_ns:.0f} MHz) is faster than the xc7z020's "
            f"global clock limit of 464 MHz ({MIN_CLOCK_NS:.2f} ns); FINN designs on PYNQ boards "
            "run at 100 MHz (10 ns)"
        )


def explain(result: FoldResult) -> str:
    """Why the folding cannot go faster, in words."""
    if result.binding == "parallelism":
        return (
            f"every layer is at its largest legal parallelism; {result.bottleneck} cannot be "
            "unfolded further, so no budget makes it faster"
        )
    need = result.next_cycles
    fps = 1e9 / result.clock_ns / need if need else 0
    text = (
        f"{result.binding} binds: the next step ({need:,} cycles, {fps:,.0f} FPS) does not fit "
        f"the {result.binding} budget"
    )
    if result.next_need is not None:  # the whole fabric: what the layers leave is not the point
        return f"{text}: {need_text(result.next_need, fps)}"
    lb = result.layer_budget or result.budget
    if need and "LUT" in result.binding:  # how much more LUT the layers would need for it
        alt = _states(result.units, need, math.inf, lb.bram18, lb.dsp)
        if alt is not None:
            lut = min(lu for lu, _ in alt.values())
            text += (
                f"; its cheapest folding needs {lut:,} LUT for the layers, "
                f"{lut - lb.lut:,} more than they have"
            )
    return text


def target_need(model, result: FoldResult, fps: float) -> dict | None:
    """What reaching `fps` would take (see `need_at`)."""
    return need_at(model, result, math.floor(1e9 / result.clock_ns / fps + 1e-6))


def need_at(model, result: FoldResult, cycles: int) -> dict | None:
    """What a cycle target would take: the folding of least layer LUT meeting it (any LUT and
    BRAM, the DSPs there are), its whole fabric and what it exceeds of the budget. None when no
    folding is that fast (largest legal parallelism is slower)."""
    if cycles < 1:
        return None
    fps = 1e9 / result.clock_ns / cycles
    states = _states(result.units, cycles, math.inf, math.inf, result.budget.dsp)
    if states is None:
        return None
    key = min(states, key=lambda k: states[k][0])
    choice = {u.name: o for u, o in zip(result.units, states[key][1], strict=True)}
    # the unit whose next legal folding costs most: FINN's PE | MH, SIMD | MW rules make steps
    grow = max(choice, key=lambda u: choice[u].lut - result.choice[u].lut)
    if result.fabric:
        total = choice_fabric(model, choice, result.board)["total"]
    else:
        total = {"LUT": states[key][0], "BRAM_18K": key[0], "DSP": key[1]}
    limit = {"LUT": result.budget.lut, "BRAM_18K": result.budget.bram18, "DSP": result.budget.dsp}
    return {
        "fps": fps,
        "cycles": cycles,
        "scope": "whole fabric" if result.fabric else "layers",
        "total": total,
        "percent": percent(total, result.part),
        "over": {k: total[k] - limit[k] for k in limit if total[k] > limit[k]},
        "largest_step": {
            "unit": grow,
            "LUT": choice[grow].lut - result.choice[grow].lut,
            "from": _pe_simd(result.choice[grow].attrs.get(grow, {})),
            "to": _pe_simd(choice[grow].attrs.get(grow, {})),
        },
    }


def need_text(need: dict | None, fps: float) -> str:
    if need is None:
        return f"no legal folding reaches {fps:,.0f} FPS (every layer at its largest parallelism)"
    t, pc = need["total"], need["percent"]
    over = ", ".join(f"{k} by {v:,}" for k, v in need["over"].items())
    over = (
        f"over the budget in {over}" if over else "within the budget, yet no folding settled there"
    )
    step = need["largest_step"]
    return (
        f"its least-LUT folding (FINN's estimates) needs a {need['scope']} of {t['LUT']:,} LUT "
        f"({pc['LUT']}%) / {t['BRAM_18K']} BRAM18 ({pc['BRAM_18K']}%) / {t['DSP']} DSP, {over}; "
        f"the largest step is {step['unit']} ({step['from']} -> {step['to']}, "
        f"{step['LUT']:+,} LUT)"
    )


def _pe_simd(attrs: dict) -> str:
    return " x ".join(f"{k} {attrs[k]}" for k in ("PE", "SIMD") if k in attrs) or "unfolded"


def board_bound(units: list[Unit], budget: Budget, clock_ns: float) -> dict:
    """Upper bound per layer: each unit alone gets the whole budget left by the others at their
    cheapest; the network can never be faster than the slowest of these (in FPS)."""
    rows = []
    min_lut = {u.name: min(o.lut for o in u.options) for u in units}
    min_bram = {u.name: min(o.bram for o in u.options) for u in units}
    tot_lut, tot_bram = sum(min_lut.values()), sum(min_bram.values())
    for u in units:
        lut_left = budget.lut - (tot_lut - min_lut[u.name])
        bram_left = budget.bram18 - (tot_bram - min_bram[u.name])
        fits = [o for o in u.options if o.lut <= lut_left and o.bram <= bram_left]
        best = min(fits, key=lambda o: o.cycles) if fits else None
        rows.append({"unit": u.name, "cycles": best.cycles if best else None,
                     "attrs": best.attrs if best else None})  # fmt: skip
    worst = max((r for r in rows if r["cycles"]), key=lambda r: r["cycles"])
    return {"bound_fps": 1e9 / clock_ns / worst["cycles"], "bound_unit": worst["unit"],
            "bound_cycles": worst["cycles"], "per_unit": rows}  # fmt: skip


# --- the hardware graph ------------------------------------------------------------------------


def hardware_graph(
    net: str, board: str, rebuild: bool = False, rtl_mvau: bool | None = None
) -> Path:
    """The specialised (unfolded) hardware graph of `net`: the build's own intermediate model when
    it exists, else FINN's steps up to specialize_layers run on an export (the shipped weights, or
    random ones: folding and resources do not depend on weight values). `rtl_mvau` overrides the
    config's build.rtl_mvau: False gives the first conv as FINN's HLS MVAU, as the published
    designs the margin is calibrated on were built."""
    cfg = load_network_config(net)
    use_rtl = cfg.build.rtl_mvau if rtl_mvau is None else rtl_mvau
    own = use_rtl == cfg.build.rtl_mvau
    # a graph is reused only when made from this config (defaults included): an older build or
    # cache would fold node names and layer types the build no longer makes
    key = {"config_digest": cfg.hardware_digest(), "rtl_mvau": use_rtl}
    bd = BuildDir.of(net, board)
    built = bd.intermediate_model("specialize_layers")
    if own and not rebuild and built.is_file() and bd.summary.is_file():
        if json.loads(bd.summary.read_text()).get("config_digest") == key["config_digest"]:
            return built
    out = BUILD_DIR / "fold" / net / board / ("" if own else f"rtl_mvau-{use_rtl}")
    graph, made_from = out / "specialize_layers.onnx", out / "specialize_layers.key.json"
    if graph.is_file() and made_from.is_file() and not rebuild:
        if json.loads(made_from.read_text()) == key:
            return graph
    _run_steps_to_specialize(net, board, out, rtl_mvau)
    made_from.write_text(json.dumps(key) + "\n")
    return graph


def _run_steps_to_specialize(net: str, board: str, out: Path, rtl_mvau: bool | None) -> None:
    import torch
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
    from qonnx.core.modelwrapper import ModelWrapper

    from maskbnn.models.brevitas_methods import bake_if_installed
    from maskbnn.models.checkpoint import load_weights, pretrained_path
    from maskbnn.models.registry import get_network
    from maskbnn.pipeline.export.qonnx_export import export_qonnx_files

    cfg = load_network_config(net)
    torch.manual_seed(0)
    model, _ = get_network(net)
    try:
        load_weights(model, pretrained_path(net), net)
    except UserError:
        pass  # no shipped weights: random ones fold and cost the same
    bake_if_installed(model, cfg.model.method)
    exported = export_qonnx_files(model.eval(), net, out / "export", "NHWC", cfg.model.image_size)
    fcfg = DataflowBuildConfig(
        output_dir=str(out),
        synth_clk_period_ns=cfg.build.clock_ns,
        board=board,
        fpga_part=BOARDS[board],
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[],
    )
    m, _ = run_finn_steps(
        ModelWrapper(str(exported.topk)),
        fcfg,
        steps(rtl_mvau=cfg.build.rtl_mvau if rtl_mvau is None else rtl_mvau),
        stop="specialize_layers",
        log=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    m.save(str(out / "specialize_layers.onnx"))


def load_graph(path: Path):
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(str(path))


def write_folding(result: FoldResult, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.folding(), indent=2) + "\n")
    return path


def finn_estimates(graph: Path, folding: Path, board: str, clock_ns: float, out: Path) -> dict:
    """Apply a folding file to the specialised graph with the build's own steps (validation,
    FINN's ApplyConfig, bit-width minimisation, FINN's estimate reports) and collect the
    estimates exactly as `maskbnn build` does: what `make estimate` will report for this file."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    out = Path(out)
    (out / "report").mkdir(parents=True, exist_ok=True)
    fcfg = DataflowBuildConfig(
        output_dir=str(out),
        synth_clk_period_ns=clock_ns,
        board=board,
        fpga_part=BOARDS[board],
        folding_config_file=str(folding),
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[],
    )
    model, _ = run_finn_steps(load_graph(graph), fcfg, steps(), start="validate_folding", log=False)
    model.save(str(out / "hw_model.onnx"))
    return collect(out / "report", out / "hw_model.onnx", clock_ns, board, "")
