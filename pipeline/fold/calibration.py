"""How far FINN's resource estimate is from what Vivado synthesises: the margin the fabric budget
adds, calibrated on post-synthesis figures of foldings FINN+ 1.6.1 can estimate here.

Each pair puts a post-synthesis figure next to FINN+ 1.6.1's estimate of the same part of the same
folding (its layers plus the FIFOs and width converters the bitstream stage inserts). The ratio
post/estimate above 1 is the estimate's shortfall.

The margin is the largest ratio less 1 over the pairs that set it, so a folding within budget by
the estimate stays within it after synthesis for every pair seen so far. Below 0 (crediting an
estimate that runs high) only when at least ``CREDIT_MIN_PAIRS`` independent pairs (distinct
networks: one network on two boards of the same part is one design) all run high: one design's
overestimate says little of another's (FINN's LUT model is per layer and its errors differ by
layer type and width), and a budget cut short fails placement after an hour of Vivado while a
margin too large costs FPS only. BRAM: FINN counts BRAM18 halves; Vivado reports RAMB36 and
RAMB18 tiles, taken as two and one BRAM18.

Pairs come from two places:

- published builds (build_configs/tables/calibration.yaml: source, scope, FINN version and
  whether the build's weight memory is the kind FINN+ 1.6.1 generates, on each row); their FINN+
  1.6.1 estimate is the one ``maskbnn fold-report`` recomputes from the published folding on our
  graph of the same network (a slow test checks each);
- our own builds: every ``bitstreams/NET/BOARD/manifest.json`` whose ``post_synthesis.resources``
  holds FINN's ``post_synth_resources.json`` (``"(top)"``: the whole design; one row per node).
  With ``estimates.fabric`` (our estimate before the margin) the pair is the whole design; with
  only FINN's layer totals in ``estimates``, it is the layers' post-synthesis rows vs those totals.
  Once one exists, only our own builds set the margin (same tools), so it tightens with every
  build.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from maskbnn.config import load_calibration_table
from maskbnn.paths import REPO_ROOT

RESOURCES = ("LUT", "BRAM_18K", "DSP")


def _post(res: dict) -> dict[str, int]:
    """LUT / BRAM18 / DSP of one entry of FINN's post_synth_resources.json."""
    return {
        "LUT": int(res.get("LUT", 0)),
        "BRAM_18K": 2 * int(res.get("BRAM_36K", 0)) + int(res.get("BRAM_18K", 0)),
        "DSP": int(res.get("DSP", res.get("DSP48", 0))),
    }


NOT_LAYERS = ("(top)", "top_", "StreamingFIFO", "StreamingDataWidthConverter", "IODMA")


def published_pairs() -> list[dict]:
    """The published pairs of build_configs/tables/calibration.yaml, as rows; a whole-design
    figure has the shell figure taken off, as the estimate side has no shell."""
    from maskbnn.pipeline.finn.fabric import SHELL  # fabric.py imports this module

    rows = []
    for p in load_calibration_table().published:
        post = _post(dataclasses.asdict(p.post))
        if p.whole_design:
            post = {k: post[k] - int(SHELL[k]) for k in RESOURCES}
        rows.append({"design": p.design, "source": p.source, "scope": p.scope, "finn": p.finn,
                     "network": p.network, "folding": p.folding, "note": p.note, "post": post,
                     "estimate": _post(dataclasses.asdict(p.estimate)), "current": p.current,
                     "own": False})  # fmt: skip
    return rows


def measured_shell(res: dict) -> dict[str, int]:
    """The shell as fabric.SHELL counts it, from one build's post_synth_resources.json: "(top)"
    less every dataflow node row but the IODMAs (``top_*`` rows are the shell's own blocks)."""
    top = _post(res["(top)"])
    nodes = [_post(v) for k, v in res.items()
             if not k.startswith(("(top)", "top_")) and "IODMA" not in k]  # fmt: skip
    return {k: top[k] - sum(n[k] for n in nodes) for k in RESOURCES}


def own_pair(man: dict, shell: dict) -> dict | None:
    """One manifest's pair, or None before synthesis. With our whole-fabric estimate in the
    manifest (``estimates.fabric``): the whole design, the shell figure taken off both sides.
    Without it: the layers alone, FINN's per-node post-synthesis rows vs its layer estimate."""
    try:
        res = man["post_synthesis"]["resources"]
        est = man["estimates"]
    except (KeyError, TypeError):
        return None
    if not isinstance(res, dict) or "(top)" not in res:
        return None
    if "fabric" in est:
        before, top = est["fabric"]["before_margin"], _post(res["(top)"])
        post = {k: top[k] - int(shell[k]) for k in RESOURCES}
        estimate = {k: int(before[k]) - int(shell[k]) for k in RESOURCES}
        scope = "whole design less the shell figure"
    else:
        rows = [_post(v) for k, v in res.items() if not k.startswith(NOT_LAYERS)]
        post = {k: sum(r[k] for r in rows) for k in RESOURCES}
        estimate = {k: int(est.get(k, 0)) for k in RESOURCES}
        scope = "layers"
    return {"post": post, "estimate": estimate, "scope": scope, "shell": measured_shell(res)}


def own_pairs(root: Path = REPO_ROOT / "bitstreams", shell: dict | None = None) -> list[dict]:
    """Pairs from our released bitstreams (``bitstreams/NET/BOARD/manifest.json``)."""
    from maskbnn.pipeline.finn.fabric import SHELL  # fabric.py imports this module

    shell = SHELL if shell is None else shell
    rows = []
    for path in sorted(Path(root).glob("*/*/manifest.json")):
        try:
            man = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        pair = own_pair(man, shell)
        if pair is None:
            continue  # not synthesised yet: nothing to compare
        rows.append({
            "design": f"{man.get('network')} on {man.get('board')} (our build, {pair['scope']})",
            "source": path.relative_to(Path(root).parent).as_posix(),
            "scope": pair["scope"],
            "finn": "FINN+ 1.6.1 (ours)",
            "network": man.get("network"),
            "note": "shell measured in this build (top less the dataflow nodes but the IODMAs): "
            + ", ".join(f"{k} {v:,}" for k, v in pair["shell"].items())
            + "; the shell figure: "
            + ", ".join(f"{k} {int(shell[k]):,}" for k in RESOURCES),
            "post": pair["post"],
            "estimate": pair["estimate"],
            "current": True,
            "own": True,
        })  # fmt: skip
    return rows


def table(root: Path = REPO_ROOT / "bitstreams") -> list[dict]:
    """Every pair with its post/estimate ratio per resource (None where the estimate is 0)."""
    rows = [*published_pairs(), *own_pairs(root)]
    for r in rows:
        r["ratio"] = {
            k: round(r["post"][k] / r["estimate"][k], 3) if r["estimate"][k] > 0 else None
            for k in RESOURCES
        }
    return rows


# Independent pairs (distinct networks) that must all run high before the margin goes below 0.
CREDIT_MIN_PAIRS = 3


def used_pairs(rows: list[dict]) -> list[dict]:
    """The pairs that set the margin: our own builds when there are any, else the published
    pairs of the implementation FINN+ 1.6.1 generates."""
    return [r for r in rows if r["own"]] or [r for r in rows if r["current"]]


def margin(rows: list[dict] | None = None) -> dict[str, float]:
    """Fraction added per resource to FINN's estimated parts: the largest ratio less 1 over
    the pairs that set it; below 0 only with ``CREDIT_MIN_PAIRS`` independent pairs."""
    rows = table() if rows is None else rows
    used = used_pairs(rows)
    out = {}
    for k in RESOURCES:
        seen = [r for r in used if r["ratio"][k] is not None]
        worst = max((r["ratio"][k] for r in seen), default=1.0) - 1
        if len({r["network"] for r in seen}) < CREDIT_MIN_PAIRS:
            worst = max(0.0, worst)
        out[k] = round(worst, 3)
    return out


def spread(rows: list[dict]) -> dict[str, tuple[float, float] | None]:
    """(lowest, highest) post/estimate ratio per resource over all pairs."""
    out: dict[str, tuple[float, float] | None] = {}
    for k in RESOURCES:
        ratios = [r["ratio"][k] for r in rows if r["ratio"][k] is not None]
        out[k] = (min(ratios), max(ratios)) if ratios else None
    return out


def to_markdown(rows: list[dict]) -> str:
    m, s = margin(rows), spread(rows)
    used = used_pairs(rows)
    lines = [
        "## Calibration: post-synthesis vs FINN+ 1.6.1's estimate of the same folding",
        "",
        "| design | source | scope | FINN | LUT post / est. | BRAM18 post / est. | ratio LUT "
        "| ratio BRAM | current | sets the margin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, e, q = r["post"], r["estimate"], r["ratio"]
        lines.append(
            f"| {r['design']} | {r['source']} | {r['scope']} | {r['finn']} | "
            f"{p['LUT']:,} / {e['LUT']:,} | {p['BRAM_18K']} / {e['BRAM_18K']} | {q['LUT']} | "
            f"{q['BRAM_18K']} | {'yes' if r['current'] else 'no'} | "
            f"{'yes' if r in used else 'no'} |"
        )
    notes = [f"- {r['design']}: {r['note']}" for r in rows if r.get("note")]
    span = ", ".join(f"{k} {v[0]}-{v[1]}" for k, v in s.items() if v)
    who = "our own builds" if any(r["own"] for r in rows) else "the current published pairs"
    lines += [
        *(["", *notes] if notes else []),
        "",
        f"Spread of post/estimate over all {len(rows)} pairs: {span}. Margin (largest ratio less 1 "
        f"over {who}, {len(used)} pair(s); below 0 only when {CREDIT_MIN_PAIRS} independent "
        "pairs all run high): " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in m.items()) + ".",
    ]
    return "\n".join(lines) + "\n"
