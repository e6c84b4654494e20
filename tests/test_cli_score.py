"""Several draws of a score (robntk.scoring.draws, used by ``robntk score --init-seeds/--attack-seeds``):
the draw configurations and file names, and the aggregate (geometric mean of the spectra)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robntk.scoring.config import ScoreConfig
from robntk.scoring.draws import GEOMETRIC_PREFIXES, aggregate_draws, draw_configs, draw_path


def _draw(lam, logdet, run_s, degenerate, order=(10, 2581)):
    t = pd.DataFrame(
        {
            "nb201_index": [10, 2581],
            "arch_str": ["a10", "a2581"],
            "disconnected": [True, False],
            "lambda_min_clean": lam,
            "cond_robust_eps8": [2.0, 8.0],
            "lambda_max_clean": [1.0, 4.0],
            "trace_clean": [3.0, 3.0],
            "logdet_clean": logdet,
            "run_s": run_s,
            "degenerate": degenerate,
            "compile_s": [9.0, 9.0],
        }
    )
    return t.set_index("nb201_index").loc[list(order)].reset_index()


def test_aggregate_is_the_geometric_mean_of_the_draws():
    a = _draw([0.0, 1e-2], [1.0, -3.0], [1.0, 2.0], [True, False])
    b = _draw([0.0, 1e-4], [3.0, -5.0], [0.5, 0.25], [False, False], order=(2581, 10))  # another row order
    agg = aggregate_draws([a, b]).set_index("nb201_index")
    assert list(agg.index) == [10, 2581]  # the first table's order
    assert agg.loc[2581, "lambda_min_clean"] == pytest.approx(1e-3, rel=1e-12)  # sqrt(1e-2 · 1e-4)
    assert math.isnan(agg.loc[10, "lambda_min_clean"])  # a draw ≤ 0: no geometric mean
    assert agg.loc[2581, "cond_robust_eps8"] == pytest.approx(8.0) and agg.loc[10, "trace_clean"] == pytest.approx(3.0)
    assert agg.loc[10, "logdet_clean"] == 2.0 and agg.loc[2581, "logdet_clean"] == -4.0  # arithmetic mean
    assert agg.loc[10, "run_s"] == 1.5 and agg.loc[2581, "run_s"] == 2.25  # summed
    assert bool(agg.loc[10, "degenerate"]) and not bool(agg.loc[2581, "degenerate"])  # any draw
    assert (agg["n_draws"] == 2).all() and agg.loc[10, "arch_str"] == "a10" and bool(agg.loc[10, "disconnected"])
    assert "compile_s" not in agg.columns  # per-run timings other than run_s are not aggregated
    assert GEOMETRIC_PREFIXES == ("lambda_min_", "lambda_max_", "cond_", "trace_")


def test_aggregate_of_one_draw_is_the_draw():
    a = _draw([0.5, 0.25], [1.0, 2.0], [1.0, 1.0], [False, False])
    agg = aggregate_draws([a])
    np.testing.assert_array_equal(agg["lambda_min_clean"], [0.5, 0.25])
    assert (agg["n_draws"] == 1).all()


def test_aggregate_rejects_bad_input():
    with pytest.raises(ValueError, match="aggregate_draws needs at least one table"):
        aggregate_draws([])
    a = _draw([0.5, 0.25], [1.0, 2.0], [1.0, 1.0], [False, False])
    with pytest.raises(ValueError, match="draw tables cover different archs; rerun the unfinished draws first"):
        aggregate_draws([a, a.iloc[:1]])


def test_draw_configs_and_paths():
    cfg = ScoreConfig(seed=3)
    draws = draw_configs(cfg, init_seeds=None, attack_seeds=[0, 3])
    assert [t for t, _ in draws] == ["s3_a0", "s3_a3"]
    assert draws[0][1].attack_seed == 0 and draws[1][1].attack_seed is None  # attack seed = seed: the default
    assert all(c.seed == 3 and c.eps == cfg.eps for _, c in draws)
    both = draw_configs(cfg, init_seeds=[0, 1], attack_seeds=[5])
    assert [t for t, _ in both] == ["s0_a5", "s1_a5"] and [c.seed for _, c in both] == [0, 1]
    assert [t for t, _ in draw_configs(cfg, [4, 2])] == ["s4_a4", "s2_a2"]
    assert draw_path("runs/scores.csv", "s0_a1") == Path("runs/scores.s0_a1.csv")
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        draw_configs(cfg, init_seeds=[-1])
