"""Operations count (``maskbnn ops``): BOPs, FLOPs and OPs = BOPs/64 + FLOPs of a network.

The definition is the one of Bi-Real Net (Liu et al., ECCV 2018), Real-to-Binary (Martinez et al.,
ICLR 2020) and ReActNet (Liu et al., ECCV 2020), after XNOR-Net: a 64-bit CPU word does 64 binary
multiply-accumulates (XNOR + popcount) per instruction, so 64 BOPs cost one FLOP.

What is counted, exactly:

- only the multiply-accumulates (MACs) of convolution and linear layers (torch ``_ConvNd`` and
  ``nn.Linear``, Brevitas' ``QuantConv2d``/``QuantLinear`` included): a conv output element costs
  in_channels/groups x kernel volume MACs, a linear output element in_features MACs. One MAC is one
  BOP or one FLOP (not two);
- not counted: biases, BatchNorm, pooling, activations (sign, ReLU, ...), residual additions,
  scaling factors, the quantisers themselves. The papers do not count them either: for Bi-Real-18
  on ImageNet, the MACs alone give 1.676e9 BOPs, 1.378e8 FLOPs and 1.640e8 OPs against the published
  1.68e9, 1.39e8 and 1.63e8, and adding even one operation per BatchNorm output element and per
  pooling-window element (4.6e6) would put FLOPs 2.5% and OPs 3.5% above them
  (tests/test_ops_count.py checks both). The full-precision variant counts 1.814e9, ResNet-18's
  "1.8e9 FLOPs" (He et al., CVPR 2016), which are multiply-adds too;
- a layer's MACs are BOPs when both its weights and its inputs are 1-bit, i.e. when
  (a) the module has a truthy ``is_binary`` attribute (binary layers written in plain torch declare
  themselves), or (b) it is a Brevitas layer whose weight quantiser is 1-bit and whose input is
  1-bit: on the forward pass it takes at most two values of equal non-zero magnitude (+-a), as the
  layer computes with it (after the layer's own input quantiser, when it has one), and the
  activation quantiser that produced it, if any, is 1-bit: the layer's own input quantiser, else a
  QuantTensor input's bit width, else the Brevitas ``act_quant``/``input_quant``/``output_quant``
  that ran last before the layer. The second condition is needed because the values alone mislead
  on untrained weights: there a 2-bit activation can saturate at +-1 (it does in tfc_1w2a).
  Everything else is FLOPs, including low-bit layers that are not 1/1 (a 1-bit weight times a 2-bit
  or 8-bit activation): BNN-PYNQ CNV's first conv sees the 8-bit image and is FLOPs, as the papers'
  real-valued first layer is.

The count runs one forward pass (batch 1, ``eval()``, ``no_grad``) with forward hooks, by default on
a seeded uniform [0, 1) image, the networks' input range. Rule (b) reads the values that pass, so it
is a property of that pass; modules the pass never calls are not counted.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import nn

from maskbnn.config import network_names
from maskbnn.errors import UserError
from maskbnn.models.registry import get_network
from maskbnn.pipeline.reports.ops_reference import IMAGENET_INPUT, PUBLISHED_BIREAL18, bireal18
from maskbnn.report import md_table

BOPS_PER_FLOP = 64
DEFINITION = (
    "OPs = BOPs/64 + FLOPs (Bi-Real Net, Real-to-Binary, ReActNet); BOPs and FLOPs are the "
    "multiply-accumulates of conv/linear layers with 1-bit weights and 1-bit (+-a) inputs, resp. "
    "all others; BatchNorm, pooling, activations, additions and biases are not counted"
)
# Brevitas layers' activation quantiser attributes; their outputs are the next layer's input.
ACT_QUANT_ATTRS = ("act_quant", "input_quant", "output_quant")


def layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of one call of a conv or linear layer, per sample."""
    batch = out.shape[0] if out.dim() > 1 else 1
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        per_in = module.out_channels // module.groups * math.prod(module.kernel_size)
        return inp.numel() // batch * per_in
    if isinstance(module, nn.modules.conv._ConvNd):
        per_out = module.in_channels // module.groups * math.prod(module.kernel_size)
        return out.numel() // batch * per_out
    return out.numel() // batch * module.in_features


def _value(x):
    """The float tensor of a plain tensor or a Brevitas QuantTensor."""
    return getattr(x, "value", x)


def _bits(x) -> float | None:
    return None if x is None else float(x)


def weight_bit_width(module: nn.Module) -> float | None:
    """Bit width of a Brevitas layer's weight quantiser; None for plain layers or no quantiser."""
    proxy = getattr(module, "weight_quant", None)
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        return None
    try:
        bits = module.quant_weight().bit_width
        return _bits(proxy.bit_width() if bits is None else bits)
    except Exception:  # an exotic quantiser that cannot say: not provably 1-bit
        return None


def act_quantisers(model: nn.Module) -> list[tuple[nn.Module, nn.Module, str]]:
    """(owner, proxy, attribute) of every enabled Brevitas activation quantiser in the model."""
    found = []
    for owner in model.modules():
        for attr in ACT_QUANT_ATTRS:
            proxy = getattr(owner, attr, None)
            if isinstance(proxy, nn.Module) and getattr(proxy, "is_quant_enabled", False):
                found.append((owner, proxy, attr))
    return found


def input_levels(x: torch.Tensor) -> tuple[int, bool]:
    """(number of distinct values, whether they are at most two of equal non-zero magnitude)."""
    values = torch.unique(x.detach())
    mags = values.abs()
    pm = values.numel() <= 2 and float(mags.min()) > 0 and float(mags.min()) == float(mags.max())
    return values.numel(), pm


def classify(
    module: nn.Module, x: torch.Tensor, act_bits: float | None
) -> tuple[bool, str, float | None, int]:
    """(binary?, why, weight bits, distinct input values) of one call: rules (a) and (b) above."""
    levels, pm = input_levels(x)
    bits = weight_bit_width(module)
    if getattr(module, "is_binary", False):
        return True, "is_binary attribute", bits, levels
    if bits is None:
        return False, "real-valued weights", bits, levels
    if bits != 1:
        return False, f"{bits:g}-bit weights", bits, levels
    if not pm:
        return False, f"1-bit weights, input takes {levels} values", bits, levels
    if act_bits is not None and act_bits != 1:
        return False, f"1-bit weights, {act_bits:g}-bit input quantiser", bits, levels
    return True, "1-bit weights, +-a input", bits, levels


def _is_counted(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd | nn.Linear)


@torch.no_grad()
def count_ops(
    model: nn.Module,
    input_shape: tuple[int, ...],
    example: torch.Tensor | None = None,
    seed: int = 0,
) -> dict:
    """BOPs, FLOPs, OPs of one forward pass, per layer and in total.

    ``input_shape`` is one sample's shape without the batch dimension, e.g. (3, 32, 32); the pass
    runs on ``example`` when given (batch 1), else on a seeded uniform [0, 1) tensor of that shape.
    """
    if example is None:
        gen = torch.Generator().manual_seed(seed)
        example = torch.rand((1, *input_shape), generator=gen)
    if example.shape[0] != 1:
        raise ValueError(f"count on a batch of 1, got input shape {tuple(example.shape)}")
    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    rows: dict[str, dict] = {}
    last_act_bits: list[float | None] = [None]  # the activation quantiser that ran last
    pending: dict[nn.Module, tuple[float | None, torch.Tensor | None]] = {}

    def quantised(owner: nn.Module, proxy: nn.Module, attr: str):
        def hook(_proxy, _inp, out) -> None:
            bits = _bits(getattr(out, "bit_width", None)) or _bits(proxy.bit_width())
            last_act_bits[0] = bits
            if attr == "input_quant" and owner in pending:
                pending[owner] = (bits, _value(out))

        return hook

    def before(module: nn.Module, inp: tuple) -> None:
        bits = _bits(getattr(inp[0], "bit_width", None)) if inp else None
        pending[module] = (last_act_bits[0] if bits is None else bits, None)

    def count(module: nn.Module, inp: tuple, out) -> None:
        raw = _value(inp[0])
        act_bits, seen = pending.pop(module, (None, None))
        binary, why, bits, levels = classify(module, raw if seen is None else seen, act_bits)
        out = _value(out)
        row = rows.setdefault(
            names[module],
            {
                "name": names[module],
                "type": type(module).__name__,
                "in_shape": list(raw.shape[1:]),
                "out_shape": list(out.shape[1:]),
                "weight_bits": bits,
                "input_bits": act_bits,
                "input_levels": levels,
                "calls": 0,
                "bops": 0,
                "flops": 0,
                "why": why,
            },
        )
        row["calls"] += 1
        row["bops" if binary else "flops"] += layer_macs(module, raw, out)
        row["input_levels"] = max(row["input_levels"], levels)
        if not binary:
            row["why"] = why

    handles = [
        proxy.register_forward_hook(quantised(owner, proxy, attr))
        for owner, proxy, attr in act_quantisers(model)
    ]
    for module in names:
        if _is_counted(module):
            handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(count))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    layers = list(rows.values())
    for row in layers:
        row["kind"] = "binary" if row["flops"] == 0 else "real" if row["bops"] == 0 else "mixed"
    return {"input_shape": list(example.shape), "layers": layers, "totals": totals(layers)}


def totals(layers: list[dict]) -> dict:
    bops = sum(r["bops"] for r in layers)
    flops = sum(r["flops"] for r in layers)
    macs = bops + flops
    return {
        "bops": bops,
        "flops": flops,
        "ops": bops / BOPS_PER_FLOP + flops,
        "macs": macs,
        "binary_mac_share": bops / macs if macs else 0.0,
    }


def network_ops(name: str) -> dict:
    """The count for a registered network (build_configs/<name>.yaml) at its input shape."""
    from maskbnn.models.brevitas_methods import bake_if_installed

    model, cfg = get_network(name)
    bake_if_installed(model, cfg.model.method)  # a method on Brevitas layers: count what deploys
    shape = (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    return {"network": name, **count_ops(model, shape)}


def reference_ops() -> dict:
    """The count for the reference ImageNet Bi-Real-18, with the published figures beside it."""
    torch.manual_seed(0)
    result = count_ops(bireal18(), IMAGENET_INPUT)
    return {"network": "bireal18_imagenet", "published": PUBLISHED_BIREAL18, **result}


# --- tables -------------------------------------------------------------------------------------


def _e(x: float) -> str:
    return f"{x:.3e}"


def summary_table(results: list[dict]) -> str:
    lines = [
        "| network | input | BOPs | FLOPs | OPs | binary MAC share |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["totals"]
        lines.append(
            f"| {r['network']} | {'x'.join(map(str, r['input_shape'][1:]))} | {_e(t['bops'])} | "
            f"{_e(t['flops'])} | {_e(t['ops'])} | {100 * t['binary_mac_share']:.2f}% |"
        )
        if "published" in r:
            p = r["published"]
            lines.append(
                f"| {r['network']} (published) | | {_e(p['bops'])} | {_e(p['flops'])} | "
                f"{_e(p['ops'])} | |"
            )
    return "\n".join(lines) + "\n"


def layer_table(result: dict) -> str:
    lines = md_table(
        ("layer", "type", "in", "out", "kind", "BOPs", "FLOPs", "why"),
        (
            (r["name"], r["type"], "x".join(map(str, r["in_shape"])),
             "x".join(map(str, r["out_shape"])), r["kind"], f"{r['bops']:,}", f"{r['flops']:,}",
             r["why"])
            for r in result["layers"]
        ),
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def to_markdown(results: list[dict]) -> str:
    parts = ["# Operations count", "", DEFINITION + ".", "", summary_table(results)]
    for r in results:
        parts += [f"## {r['network']}", "", layer_table(r)]
    return "\n".join(parts)


# --- CLI ----------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--network",
        "--net",
        dest="network",
        action="append",
        default=[],
        metavar="NET",
        help="a name from build_configs/ (repeatable, or a comma list)",
    )
    p.add_argument("--all", action="store_true", help="every network in build_configs/")
    p.add_argument(
        "--reference",
        action="store_true",
        help="add the ImageNet Bi-Real-18 reference and its published figures",
    )
    p.add_argument("--layers", action="store_true", help="print the per-layer tables too")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every count as JSON")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="write the tables as Markdown")


def selected_networks(args: argparse.Namespace) -> list[str]:

    names = [n.strip() for arg in args.network for n in arg.split(",") if n.strip()]
    if args.all:
        names += [n for n in network_names() if n not in names]
    if not names and not args.reference:
        raise UserError("name networks with --network NET[,NET...], or give --all or --reference")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    results = [network_ops(name) for name in selected_networks(args)]
    if args.reference:
        results.append(reference_ops())
    print(summary_table(results), end="")
    if args.layers:
        for r in results:
            print(f"\n{r['network']}\n{layer_table(r)}", end="")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"definition": DEFINITION, "networks": results}, indent=2) + "\n"
        )
        print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(to_markdown(results))
        print(f"wrote {args.markdown}")
    return 0
