"""Folding optimizer: exact search, legality, budgets by FINN's estimates, clear failures."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from maskbnn.errors import UserError
from maskbnn.paths import BUILD_CONFIGS
from maskbnn.pipeline.fold import optimizer as fo

NET, BOARD = "mask_1w1a_0.25", "Pynq-Z1"


# --- the search on hand-made units (pure Python: the DP against brute force) -------------------


def _units(seed: int) -> list[fo.Unit]:
    rng = random.Random(seed)
    units = []
    for u in range(4):
        opts = []
        for k in range(5):
            cycles = rng.randint(100, 5000)
            opts.append(fo.Option({f"n{u}": {"PE": k}}, cycles, rng.randint(50, 4000),
                                  rng.randint(0, 20)))  # fmt: skip
        units.append(fo.Unit(f"n{u}", [f"n{u}"], opts))
    return units


@pytest.mark.parametrize("seed", range(20))
def test_search_finds_the_brute_force_optimum(seed):
    units = _units(seed)
    budget = fo.Budget(lut=6000, bram18=30)
    best = None
    for combo in itertools.product(*(u.options for u in units)):
        if sum(o.lut for o in combo) <= budget.lut and sum(o.bram for o in combo) <= budget.bram18:
            cyc = max(o.cycles for o in combo)
            best = cyc if best is None else min(best, cyc)
    if best is None:
        with pytest.raises(UserError, match="does not fit even fully folded"):
            fo.search(units, budget)
        return
    choice, _, _ = fo.search(units, budget)
    assert max(o.cycles for o in choice.values()) == best
    assert sum(o.lut for o in choice.values()) <= budget.lut
    assert sum(o.bram for o in choice.values()) <= budget.bram18


def test_search_names_the_binding_resource():
    # one unit: fast needs 900 LUT / 0 BRAM or 100 LUT / 9 BRAM; slow is cheap
    opts = [fo.Option({}, 1000, 100, 0), fo.Option({}, 10, 900, 0), fo.Option({}, 10, 100, 9)]
    units = [fo.Unit("a", ["a"], opts)]
    _, binding, nxt = fo.search(units, fo.Budget(lut=500, bram18=5))
    assert (binding, nxt) == ("LUT or BRAM", 10)
    both = [fo.Unit("a", ["a"], [*opts[:1], fo.Option({}, 10, 900, 9)])]
    assert fo.search(both, fo.Budget(lut=500, bram18=5))[1] == "LUT+BRAM"
    _, binding, _ = fo.search(units, fo.Budget(lut=500, bram18=20))
    assert binding == "parallelism"  # the BRAM option fits: nothing faster exists
    _, binding, _ = fo.search([fo.Unit("a", ["a"], opts[:2])], fo.Budget(lut=500, bram18=20))
    assert binding == "LUT"


def test_bad_clock_and_budget_are_user_errors():
    with pytest.raises(UserError, match="464 MHz"):
        fo.check_clock(1.0)
    with pytest.raises(UserError, match="positive"):
        fo.check_clock(0)
    with pytest.raises(UserError, match="fraction"):
        fo.Budget.of("xc7z020clg400-1", 1.5, 0.95)
    b = fo.Budget.of("xc7z020clg400-1", 0.85, 0.95)
    assert (b.lut, b.bram18) == (45220, 266)  # 85% of 53,200 LUT; 133 of 140 BRAM36


# --- on FINN's hardware graph --------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph_path():
    return fo.hardware_graph(NET, BOARD)


@pytest.fixture(scope="module")
def result(graph_path):
    return fo.optimize(fo.load_graph(graph_path), NET, BOARD)


@pytest.mark.slow
def test_folding_is_legal_and_within_budget_by_finn(result, graph_path, tmp_path):
    from maskbnn.pipeline.fold.folding import folding_problems

    folding = result.folding()
    assert folding_problems(fo.load_graph(graph_path), folding) == []
    path = fo.write_folding(result, tmp_path / "f.json")
    est = fo.finn_estimates(graph_path, path, BOARD, 10.0, tmp_path / "check")
    t = est["total"]
    assert t["LUT"] <= result.budget.lut and t["BRAM_18K"] <= result.budget.bram18
    # the optimizer priced exactly what FINN's reports say after the build's own steps
    assert (t["max_cycles"], int(t["LUT"]), int(t["BRAM_18K"])) == (
        result.max_cycles, result.lut, result.bram
    )  # fmt: skip
    assert result.fps >= 24000  # the target for 0.25x


@pytest.mark.slow
def test_more_budget_is_never_slower(result, graph_path):
    small = fo.optimize(fo.load_graph(graph_path), NET, BOARD, lut_fraction=0.3)
    assert small.lut <= 0.3 * 53200
    assert small.max_cycles >= result.max_cycles


@pytest.mark.slow
def test_unreachable_target_names_binding_resource_and_best(graph_path):
    with pytest.raises(UserError) as err:
        fo.optimize(fo.load_graph(graph_path), NET, BOARD, lut_fraction=0.3, target_fps=1e6)
    msg = str(err.value)
    assert "cannot reach 1,000,000 FPS" in msg and "best folding found gives" in msg
    assert "LUT binds" in msg
    assert err.value.result.fps < 1e6


@pytest.mark.slow
def test_budget_below_fully_folded_says_so_with_minimum(graph_path):
    with pytest.raises(UserError, match=r"does not fit even fully folded") as err:
        fo.optimize(fo.load_graph(graph_path), NET, BOARD, lut_fraction=0.05)
    units = fo.build_units(fo.load_graph(graph_path), "xc7z020clg400-1")
    lut, bram = fo.fully_folded_front(units)[-1]  # the least-LUT whole folding
    assert lut > 0.05 * 53200 and f"{lut:,} LUT + {bram} BRAM18" in str(err.value)


@pytest.mark.slow
def test_cli_writes_the_best_folding_when_the_target_is_unreachable(tmp_path):
    from maskbnn.cli import main

    out = tmp_path / "fold.json"
    rc = main(["fold", "--network", NET, "--board", BOARD, "--lut-budget", "0.3",
               "--target-fps", "1000000", "--out", str(out)])  # fmt: skip
    assert rc == 2
    best = json.loads(out.with_suffix(".best.json").read_text())
    assert "MVAU_hls_0" in best and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("board", ["Pynq-Z1", "Pynq-Z2"])
def test_committed_folding_reproduces_its_record(board, tmp_path):
    """The committed file, through the build's steps, gives the numbers README.md records."""
    path = BUILD_CONFIGS / "folding" / f"{NET}_{board}.json"
    record = json.loads((BUILD_CONFIGS / "folding" / "folding_records.json").read_text())
    rec = next(r for r in record if r["network"] == NET and r["board"] == board)
    graph = fo.hardware_graph(NET, board)
    est = fo.finn_estimates(graph, path, board, 10.0, tmp_path)
    t = est["total"]
    assert (t["max_cycles"], t["LUT"], t["BRAM_18K"]) == (
        rec["finn"]["max_cycles"], rec["finn"]["LUT"], rec["finn"]["BRAM_18K"]
    )  # fmt: skip


@pytest.mark.slow
def test_comparison_baselines_at_the_same_budget(graph_path, result):
    from maskbnn.pipeline.fold import compare as fc

    graph = fo.load_graph(graph_path)
    budget = result.layer_budget  # the layers' share of the whole-fabric budget
    finn = fc.finn_target_fps(graph, result.part, 10.0, budget)
    assert finn["fits"] and finn["LUT"] <= budget.lut
    assert finn["BRAM_18K"] <= budget.bram18
    folding, why = fc.published_folding(graph, "BinaryCoP CNV", result.units, result.part)
    assert folding is None and "MVAU_hls_0" in why  # 0.25x has 16 channels, BinaryCoP PE 32
    bound = fo.board_bound(result.units, budget, 10.0)
    assert bound["bound_fps"] >= result.fps  # a bound can never be beaten


@pytest.mark.slow
def test_simd_cap_is_respected(graph_path, result):
    capped = fo.optimize(fo.load_graph(graph_path), NET, BOARD, max_simd=8)
    simds = [a["SIMD"] for n, a in capped.folding().items() if n.startswith("MVAU")]
    assert max(simds) <= 8 < max(a["SIMD"] for n, a in result.folding().items() if "MVAU" in n)
    assert capped.max_cycles >= result.max_cycles


@pytest.mark.slow
def test_cached_graph_from_another_config_is_rebuilt(tmp_path, monkeypatch):
    """The fold cache is keyed by the config it was made from (defaults included): a graph made
    before a build option or default changed is made again, not folded as it stands."""
    monkeypatch.setattr(fo, "BUILD_DIR", tmp_path)
    graph = fo.hardware_graph(NET, BOARD, rtl_mvau=False)  # always the fold cache, never a build
    key = graph.with_name("specialize_layers.key.json")
    made = json.loads(key.read_text())
    assert made["rtl_mvau"] is False and len(made["config_digest"]) == 64
    first = graph.stat().st_mtime_ns
    assert fo.hardware_graph(NET, BOARD, rtl_mvau=False) == graph
    assert graph.stat().st_mtime_ns == first  # same config: reused
    key.write_text(json.dumps(made | {"config_digest": "0" * 64}))
    assert fo.hardware_graph(NET, BOARD, rtl_mvau=False) == graph
    assert graph.stat().st_mtime_ns != first and json.loads(key.read_text()) == made


def test_what_a_missed_target_needs(graph_path):
    """The report's answer to "what would the target take": the least-LUT folding reaching it,
    over the budget exactly when the search found it does not fit (layers budget: exact)."""
    model = fo.load_graph(graph_path)
    res = fo.optimize(model, NET, BOARD, profile="max", lut_fraction=0.3)  # so that LUT binds
    here = fo.target_need(model, res, res.fps)
    assert here["over"] == {} and here["total"]["LUT"] <= res.lut
    faster = fo.target_need(model, res, 1e9 / res.clock_ns / res.next_cycles)
    assert faster["cycles"] == res.next_cycles and faster["over"]
    assert "LUT" in res.binding and "LUT" in faster["over"]
    step = faster["largest_step"]
    assert step["LUT"] > 0 and step["from"] != step["to"]
    assert "over the budget in" in fo.need_text(faster, 1.0)
    assert fo.target_need(model, res, 1e9) is None  # faster than any legal folding


@pytest.mark.slow
def test_whole_fabric_search_misses_no_faster_target(graph_path):
    """No cycle target faster than the result settles within the whole-fabric budget. At 45% LUT
    the targets do not settle monotonically (3,136 and 2,592 cycles do, 2,700 does not): a binary
    search alone stopped at 3,136."""
    from maskbnn.pipeline.fold import calibration

    model = fo.load_graph(graph_path)
    res = fo.optimize(model, NET, BOARD, lut_fraction=0.45)
    margin, measured = calibration.margin(), {}
    faster = [t for t in fo._cycle_targets(res.units) if t < res.max_cycles]
    for cycles in faster:
        got = fo.settle(model, res.units, cycles, res.budget, BOARD, margin, measured)
        assert got is None, (
            f"{cycles} cycles fit the whole fabric; the search stopped at {res.max_cycles}"
        )
