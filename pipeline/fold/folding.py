"""Folding files: FINN's JSON (node name -> PE, SIMD, ...), checked before FINN applies them.

FINN's ApplyConfig only warns about a node name it does not know and asserts deep inside code
generation when PE or SIMD do not divide the matrix; we refuse such a file up front, listing the
valid node names and the legal values of every attribute that is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from maskbnn.errors import UserError
from maskbnn.pipeline.finn.hwgraph import base_op

# attribute -> node attribute that it must divide, per FINN layer (op type without _hls/_rtl)
DIVIDES = {
    "MVAU": {"PE": "MH", "SIMD": "MW"},
    "VVAU": {"PE": "Channels"},
    "Thresholding": {"PE": "NumChannels"},
    "ConvolutionInputGenerator": {"SIMD": "IFMChannels"},
    "Pool": {"PE": "Channels"},
    "StreamingMaxPool": {"PE": "NumChannels"},
    "LabelSelect": {"PE": "Labels"},
    "FMPadding": {"SIMD": "NumChannels"},
    "DuplicateStreams": {"PE": "NumChannels"},
    "ElementwiseAdd": {"PE": "out_shape"},  # the last dimension: channels
    "AddStreams": {"PE": "NumChannels"},
}
# Other attributes FINN's folding files carry, accepted as they are.
PASSTHROUGH = {"ram_style", "ram_style_thresholds", "resType", "mem_mode", "parallel_window",
               "runtime_writeable_weights", "depth", "impl_style", "mac_resource",
               "depth_trigger_uram", "depth_trigger_bram", "preferred_impl_style"}  # fmt: skip


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def attr_total(inst, name: str) -> int:
    """The size a folding attribute must divide (a shape attribute: its last dimension)."""
    v = inst.get_nodeattr(name)
    return int(v[-1]) if isinstance(v, list | tuple) else int(v)


def load_folding(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"folding file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"folding file {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"folding file {path} must hold a JSON object of node name -> attributes")
    return data


def folding_problems(model, folding: dict) -> list[str]:
    """Everything wrong with `folding` for the specialised hardware graph `model` (empty if fine).
    Never raises on a malformed file: each wrong entry becomes a problem naming key and value."""
    from qonnx.custom_op.registry import getCustomOp

    nodes = {n.name: n for n in model.graph.node}
    problems: list[str] = []
    unknown = sorted(k for k in folding if k != "Defaults" and k not in nodes)
    if unknown:
        problems.append(
            f"unknown node names {unknown}; the hardware graph's nodes are: {', '.join(nodes)}"
        )
    for key, entry in folding.items():
        if not isinstance(entry, dict):
            problems.append(f"{key}: expected an object of attributes, got {entry!r}")
    effective = _effective(folding, nodes, problems)

    def value(name: str, attr: str) -> int | None:
        if attr in effective.get(name, {}):
            v = effective[name][attr][0]
            return v if _is_count(v) else None  # a wrong type is reported once, below
        node = nodes[name]
        return int(getCustomOp(node).get_nodeattr(attr)) if _has_attr(node, attr) else None

    for name, entry in effective.items():
        node = nodes[name]
        op = base_op(node.op_type)
        rules = DIVIDES.get(op, {})
        inst = getCustomOp(node)
        for attr, (val, where) in entry.items():
            if attr in rules:
                total = attr_total(inst, rules[attr])
                if not _is_count(val):
                    problems.append(
                        f"{where}: {attr}={val!r} must be a whole number; legal: {divisors(total)}"
                    )
                elif total % val:
                    problems.append(
                        f"{where}: {attr}={val} must divide {rules[attr]}={total}; legal: "
                        f"{divisors(total)}"
                    )
            elif attr == "resType" and node.op_type == "MVAU_rtl" and val != "dsp":
                problems.append(f"{where}: resType={val!r}: FINN's RTL MVAU takes only 'dsp'")
            elif attr not in PASSTHROUGH:
                problems.append(
                    f"{where}: attribute {attr!r} is not a folding attribute of {op}; "
                    f"use {sorted(rules) + sorted(PASSTHROUGH)}"
                )
    # Coupling: a sliding-window generator streams SIMD channels per cycle into its consumer.
    for name, node in nodes.items():
        if base_op(node.op_type) != "ConvolutionInputGenerator":
            continue
        consumers = model.find_consumers(node.output[0]) or []
        if not consumers:
            continue
        cons = consumers[0]
        if name not in effective and cons.name not in effective:
            continue  # neither side set by this file
        cop = base_op(cons.op_type)
        swg_simd = value(name, "SIMD")
        ch = int(getCustomOp(node).get_nodeattr("IFMChannels"))
        pw = effective.get(name, {}).get("parallel_window", (None,))[0]
        if pw and swg_simd != ch:
            problems.append(f"{name}: parallel_window=1 needs SIMD={ch} (all channels)")
        if cop == "Pool":
            pe = value(cons.name, "PE")
            if swg_simd != pe:
                problems.append(
                    f"{name} -> {cons.name}: the window generator's SIMD ({swg_simd}) must equal "
                    f"the pool's PE ({pe}); legal pairs: {divisors(ch)}"
                )
        elif cop == "MVAU":
            simd = value(cons.name, "SIMD")
            mw = int(getCustomOp(cons).get_nodeattr("MW"))
            if simd is not None and swg_simd is not None and simd % swg_simd:
                legal = [s for s in divisors(mw) if s % swg_simd == 0]
                problems.append(
                    f"{name} -> {cons.name}: the MVAU's SIMD ({simd}) must be a multiple of the "
                    f"window generator's SIMD ({swg_simd}) so whole stream words feed it; legal "
                    f"MVAU SIMD: {legal}"
                )
    return problems


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _effective(folding: dict, nodes: dict, problems: list[str]) -> dict[str, dict[str, tuple]]:
    """node name -> attribute -> (value, where it was set) as FINN's ApplyConfig applies them:
    "Defaults" entries {attr: [value, op types or "all", value, op types, ...]} on every node of
    those op types, then the node's own entry over them. Malformed defaults become problems."""
    from qonnx.custom_op.registry import is_custom_op

    out: dict[str, dict[str, tuple]] = {}
    defaults = folding.get("Defaults", {})
    for attr, spec in defaults.items() if isinstance(defaults, dict) else ():
        where = f"Defaults.{attr}"
        if not isinstance(spec, list) or not spec or len(spec) % 2:
            problems.append(
                f'{where}: expected [value, [op types] or "all", ...] pairs, got {spec!r}'
            )
            continue
        for val, ops in zip(spec[::2], spec[1::2], strict=True):
            if ops == "all" and len(spec) > 2:
                problems.append(f'{where}: "all" must be the only pair, got {spec!r}')
                continue
            if ops != "all" and not (
                isinstance(ops, list) and all(isinstance(o, str) for o in ops)
            ):
                problems.append(f'{where}: op types must be a list of names or "all", got {ops!r}')
                continue
            lacking = []
            for name, node in nodes.items():
                if is_custom_op(node.domain, node.op_type) and (
                    ops == "all" or node.op_type in ops
                ):
                    if _has_attr(node, attr):
                        out.setdefault(name, {})[attr] = (val, f"{where} on {name}")
                    else:
                        lacking.append(name)
            if lacking:
                problems.append(f"{where}: {', '.join(lacking)} have no attribute {attr!r}")
    for name, entry in folding.items():
        if name in nodes and isinstance(entry, dict):
            out.setdefault(name, {}).update({a: (v, name) for a, v in entry.items()})
    return out


def validate_folding(model, path: Path) -> dict:
    """Load and check a folding file against the hardware graph; UserError listing every problem."""
    folding = load_folding(path)
    problems = folding_problems(model, folding)
    if problems:
        raise UserError(f"folding file {path} is not valid:\n  " + "\n  ".join(problems))
    return folding


def _has_attr(node, attr: str) -> bool:
    from qonnx.custom_op.registry import getCustomOp

    try:
        getCustomOp(node).get_nodeattr(attr)
        return True
    except (AttributeError, KeyError, Exception):
        return False
