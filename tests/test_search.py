"""Architecture search on the NAS-RobBench-201 table: the optimum, the neighbourhood and mutation,
query counting under isomorphism, random search against its closed form and the documented
expected best-of-k values, determinism, training-free search, and `robntk search`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from robntk.analysis import search as S
from robntk.analysis import search_curves as SC
from robntk.commands import search as cmd
from robntk.nb201.searchspace import NUM_ARCHS


@pytest.fixture(scope="module")
def land(bench):
    return S.Landscape(bench, "cifar10")


# --------------------------------------------------------------------------- landscape
def test_benchmark_optimum(land):
    rob, clean = land.metric("robust"), land.metric("clean")
    i = int(np.nanargmax(rob))
    assert land.rep[i] == S.OPTIMUM_CIFAR10_PGD8[0] == 2581
    assert round(float(rob[i]), 4) == S.OPTIMUM_CIFAR10_PGD8[1] == 0.4811
    assert int(land.rep[int(np.nanargmax(clean))]) == 9930 and round(float(np.nanmax(clean)), 4) == 0.7956
    # the clean optimum is the second most robust architecture, just below 0.478; only 2581 reaches it
    assert round(float(rob[9930]), 4) == 0.4779
    assert int((rob[land.representatives] >= 0.478).sum()) == 1


def test_neighbours_differ_in_one_edge_and_are_symmetric(land, bench):
    for cell in (0, 2581, 9930, 15624):
        nb = land.neighbours(cell)
        assert nb.shape == (24,) and len(set(nb.tolist())) == 24
        diff = (land.ops[nb] != land.ops[cell]).sum(axis=1)
        assert (diff == 1).all()
        for n in nb[:5]:
            assert cell in land.neighbours(int(n))
    # hand-derived: 2581 with edge 0→1 set to none
    s = "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert bench.space.index_of(s) in land.neighbours(2581)


def test_mutation_follows_autodl_rule(land):
    rng = np.random.default_rng(0)
    n = 3000
    edges = []
    for _ in range(n):
        child = land.mutate(2581, rng)
        d = np.flatnonzero(land.ops[child] != land.ops[2581])
        assert d.size == 1
        edges.append(int(d[0]))
    freq = np.bincount(edges, minlength=6) / n
    # node uniform (1/3), then an incoming edge uniform: edge 0→1 1/3, edges into node 2 1/6, node 3 1/9
    np.testing.assert_allclose(freq, [1 / 3, 1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9], atol=0.03)


def test_oracle_counts_isomorphic_queries_once(land):
    counts = np.bincount(land.rep, minlength=NUM_ARCHS)
    rep = int(np.flatnonzero(counts >= 3)[0])
    members = np.flatnonzero(land.rep == rep)
    o = S.Oracle(land.metric("robust"), land.rep, budget=2)
    vals = {o.query(int(m)) for m in members}
    assert len(vals) == 1 and o.history == [rep]
    other = int(land.representatives[land.representatives != rep][0])
    o.query(other)
    o.query(other)  # repeat: free
    assert o.history == [rep, other]
    with pytest.raises(S._BudgetExhausted):
        o.query(int(land.representatives[land.representatives != rep][1]))


# --------------------------------------------------------------------------- random search
def test_expected_best_random_closed_form_and_documented_values(land):
    assert SC.expected_best_random([1.0, 2.0, 3.0], 2) == pytest.approx(8 / 3, abs=1e-12)
    assert SC.expected_best_random([5.0, 1.0, 3.0, 2.0], 1) == pytest.approx(2.75, abs=1e-12)
    v = land.metric("robust")[land.representatives]
    # docs/nasrobbench201.md §5: expected PGD-8 of the best of k random archs (C10)
    for k, ref in ((10, 0.4617), (100, 0.4726), (500, 0.4764)):
        assert SC.expected_best_random(v, k) == pytest.approx(ref, abs=6e-5)  # doc rounds 0.472651 to 0.4726
    with pytest.raises(ValueError, match="k must be"):
        SC.expected_best_random(v, 0)


def test_random_search_matches_closed_form(land):
    cfg = S.SearchConfig(budget=100, n_seeds=300)
    res = S.run_search("random", land, "robust", cfg, progress=False)
    assert all(len(set(r.tolist())) == 100 for r in res.queried)
    assert np.isin(res.queried, land.representatives).all()
    cur = SC.curves([res], land, report=["robust"])
    v = land.metric("robust")[land.representatives]
    for k in (10, 100):
        row = cur[cur["queries"] == k].iloc[0]
        exact = SC.expected_best_random(v, k)
        assert row["ci_low"] - 0.001 < exact < row["ci_high"] + 0.001
        assert abs(row["mean"] - exact) < 0.0025


def test_full_budget_random_search_finds_the_optimum(land):
    res = S.run_search("random", land, "robust", S.SearchConfig(budget=6466, n_seeds=1), progress=False)
    assert sorted(res.queried[0].tolist()) == land.representatives.tolist()
    assert SC.incumbents(res.queried, land.metric("robust"))[0, -1] == 2581


# --------------------------------------------------------------------------- incumbents, reach
def test_incumbents_hand_example():
    values = np.zeros(NUM_ARCHS)
    values[[3, 5, 7, 9]] = [0.5, 0.7, 0.7, 0.9]
    q = np.array([[3, 5, 7, 9], [7, 3, -1, -1], [-1, -1, -1, -1]])
    inc = SC.incumbents(q, values)
    np.testing.assert_array_equal(inc, [[3, 5, 5, 9], [7, 7, 7, 7], [-1, -1, -1, -1]])


def test_queries_to_reach_counts_first_hit(land):
    q = np.full((3, 5), -1)
    others = [int(i) for i in land.representatives if i not in (2581, 9930)][:4]
    q[0] = [others[0], 9930, 2581, others[1], others[2]]  # robust criterion: reaches at 3
    q[1] = [2581, others[0], others[1], others[2], others[3]]  # reaches at 1
    q[2] = [others[0], others[1], others[2], others[3], 9930]  # 9930 is 0.4779 < 0.478: never
    cfg = S.SearchConfig(budget=5, n_seeds=3)
    res = S.SearchResult("random", "robust", q, np.arange(3), cfg)
    r = SC.queries_to_reach(res, land, 0.478)
    assert (r["n_reached"], r["fraction"], r["mean_reached"], r["median"]) == (2, 2 / 3, 2.0, 3.0)
    # by the clean criterion the incumbent of run 0 is 9930 (clean optimum), so 0.478 is not reached
    r = SC.queries_to_reach(S.SearchResult("random", "clean", q, np.arange(3), cfg), land, 0.478)
    assert r["n_reached"] == 1 and r["mean_reached"] == 1.0


# --------------------------------------------------------------------------- methods
@pytest.mark.parametrize("method", ["random", "rea", "ls", "tf"])
def test_same_seed_same_trajectory(land, method):
    score = pd.Series(land.metric("clean")[land.representatives] * 0 + 1.0, index=land.representatives, name="const")
    kw = {"score": score} if method == "tf" else {}
    cfg = S.SearchConfig(budget=60, n_seeds=3, seed=7)
    a = S.run_search(method, land, "robust", cfg, progress=False, **kw)
    b = S.run_search(method, land, "robust", cfg, progress=False, **kw)
    np.testing.assert_array_equal(a.queried, b.queried)
    assert (a.queried >= 0).all()
    for row in a.queried:
        assert len(set(row.tolist())) == 60  # distinct classes (a repeat costs nothing)
    c = S.run_search(method, land, "robust", S.SearchConfig(budget=60, n_seeds=3, seed=8), progress=False, **kw)
    assert not np.array_equal(a.queried, c.queried)


def test_rea_and_ls_beat_random_and_ls_finds_optimum(land):
    cfg = S.SearchConfig(budget=300, n_seeds=20)
    res = {m: S.run_search(m, land, "robust", cfg, progress=False) for m in ("random", "rea", "ls")}
    cur = SC.curves(list(res.values()), land, report=["robust"])
    final = cur[cur["queries"] == 300].set_index("method")["mean"]
    assert final["ls"] == pytest.approx(0.4811, abs=5e-5)  # every seed reaches 2581 by 300 queries
    assert final["rea"] > final["random"] + 0.001
    assert SC.queries_to_reach(res["ls"], land, 0.478)["fraction"] == 1.0


def test_local_search_walks_to_the_best_neighbour(land):
    """ls_num_init=1, whole neighbourhood: start, its neighbourhood's classes, then the new classes
    of the best neighbour's neighbourhood (or a random restart at a local optimum)."""
    v = land.metric("robust")
    for seed in range(5):
        cfg = S.SearchConfig(budget=200, n_seeds=1, seed=seed, ls_num_init=1)
        q = S.run_search("ls", land, "robust", cfg, progress=False).queried[0].tolist()
        start = q[0]
        nb1 = sorted(set(land.rep[land.neighbours(start)].tolist()) - {start})
        assert sorted(q[1 : 1 + len(nb1)]) == nb1
        best = v[land.neighbours(start)].max()
        pos = 1 + len(nb1)
        if best > v[start]:  # moved: next queries are the unseen classes around a best neighbour
            candidates = [c for c in land.neighbours(start) if v[c] == best]
            nxt = set(q[pos : pos + 3])
            assert any(nxt <= set(land.rep[land.neighbours(int(c))].tolist()) for c in candidates)
        else:  # local optimum: a random restart outside what was seen
            assert q[pos] not in set(q[:pos])


def test_training_free_search_order_and_pool(land):
    rob = land.metric("robust")
    oracle_score = pd.Series(rob[land.representatives], index=land.representatives, name="oracle")
    res = S.run_search("tf", land, "robust", S.SearchConfig(budget=5, n_seeds=2), score=oracle_score, progress=False)
    top5 = land.representatives[np.argsort(-rob[land.representatives], kind="stable")[:5]]
    np.testing.assert_array_equal(res.queried[0], top5)
    assert res.queried[0, 0] == 2581 and res.label == "tf:oracle"
    # a pool of 50 random archs per seed: the best queried is the pool's best
    res = S.run_search(
        "tf", land, "robust", S.SearchConfig(budget=50, n_seeds=4, tf_pool=50), score=oracle_score, progress=False
    )
    v = rob[res.queried]
    assert (np.diff(v, axis=1) <= 0).all()
    assert len({tuple(sorted(r)) for r in res.queried.tolist()}) == 4
    # a pool smaller than the budget stops early (-1 padding)
    small = oracle_score.iloc[:3]
    res = S.run_search("tf", land, "robust", S.SearchConfig(budget=5, n_seeds=1), score=small, progress=False)
    assert (res.queried[0, 3:] == -1).all()
    with pytest.raises(ValueError, match="representatives only"):
        S.run_search(
            "tf",
            land,
            "robust",
            S.SearchConfig(budget=5, n_seeds=1),
            score=pd.Series([1.0], index=[int(np.flatnonzero(land.rep != np.arange(NUM_ARCHS))[0])]),
            progress=False,
        )


def test_bad_inputs(land):
    with pytest.raises(ValueError, match="unknown search method"):
        S.run_search("bananas", land)
    with pytest.raises(ValueError, match="budget"):
        S.run_search("random", land, config=S.SearchConfig(budget=0))
    with pytest.raises(ValueError, match="budget must be ≤ 6466"):
        S.SearchConfig(budget=7000).validate()
    with pytest.raises(ValueError, match="needs score"):
        S.run_search("tf", land, config=S.SearchConfig(budget=3, n_seeds=1))
    with pytest.raises(ValueError, match="unknown metric"):
        land.metric("val_nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        S.Landscape(land.bench, "mnist")


# --------------------------------------------------------------------------- command
def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    cmd.add_arguments(p)
    return p


def test_search_command_writes_results(tmp_path, data_dir, land):
    scores = pd.DataFrame({"nb201_index": land.representatives, "oracle": land.metric("robust")[land.representatives]})
    scores.to_csv(tmp_path / "s.csv", index=False)
    out = tmp_path / "out"
    args = _parser().parse_args(
        [
            "--data-dir",
            str(data_dir),
            "--budget",
            "40",
            "--seeds",
            "3",
            "--out",
            str(out),
            "--scores",
            str(tmp_path / "s.csv"),
            "--score",
            "oracle",
            "mean_rank(oracle)",
            "--no-progress",
            "--threshold",
            "0.478",
            "0.47",
        ]
    )
    assert cmd.run(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["budget"] == 40 and cfg["optimum"]["robust"] == {
        "nb201_index": 2581,
        "value": pytest.approx(0.48113, abs=1e-5),
    }
    cur = pd.read_csv(out / "curves.csv")
    assert set(cur["method"]) == {"random", "rea", "ls", "tf:oracle", "tf:mean_rank(oracle)"}
    assert len(cur) == 5 * 2 * 2 * 40  # methods × criteria × reported × queries
    row = cur[(cur.method == "tf:oracle") & (cur.criterion == "robust") & (cur.report == "robust") & (cur.queries == 1)]
    assert row["mean"].iloc[0] == pytest.approx(0.48113, abs=1e-5)
    reach = pd.read_csv(out / "reach.csv")
    assert len(reach) == 5 * 2 * 2
    q = np.load(out / "queried.npz")
    assert q["tf:oracle|robust"].shape == (3, 40) and q["tf:oracle|robust"][0, 0] == 2581
    assert (out / "curves.png").stat().st_size > 10_000
    # same command, same bits
    args.out = str(tmp_path / "out2")
    args.no_figure = True
    cmd.run(args)
    assert (out / "curves.csv").read_bytes() == (tmp_path / "out2" / "curves.csv").read_bytes()


# --------------------------------------------------------------------------- predictor-guided search
def _features(land, noise: float = 0.0, seed: int = 0):
    """One informative feature (the PGD-8 accuracy, optionally noised) and one random feature."""
    reps = land.representatives
    rng = np.random.default_rng(seed)
    rob = land.metric("robust")[reps]
    return pd.DataFrame({"f": rob + noise * rng.normal(size=reps.size), "r": rng.random(reps.size)}, index=reps)


def test_predictor_search_reaches_a_planted_optimum(land):
    """Warm start from a useless score (constant), then the predictor learns the planted feature:
    every seed queries the optimum 2581 within 40 queries (random search: 40/6,466 ≈ 0.6 % of seeds)."""
    pytest.importorskip("sklearn")
    const = pd.Series(1.0, index=land.representatives, name="const")
    cfg = S.SearchConfig(budget=40, n_seeds=3, pred_init=10, pred_batch=10, pred_trees=20)
    res = S.run_search("predictor", land, "robust", cfg, score=const, features=_features(land), progress=False)
    assert res.label == "predictor:const"
    for row in res.queried:
        assert len(set(row.tolist())) == 40 and 2581 in row[10:].tolist()
    assert SC.queries_to_reach(res, land, 0.478)["fraction"] == 1.0
    again = S.run_search("predictor", land, "robust", cfg, score=const, features=_features(land), progress=False)
    assert again.queried.tobytes() == res.queried.tobytes()  # same seed → same bits
    # warm start = the tf order: an oracle score puts 2581 first
    oracle = pd.Series(land.metric("robust")[land.representatives], index=land.representatives, name="oracle")
    res = S.run_search("predictor", land, "robust", cfg, score=oracle, features=_features(land), progress=False)
    assert (res.queried[:, 0] == 2581).all()


def test_predictor_search_batches_and_bad_inputs(land):
    pytest.importorskip("sklearn")
    feats = _features(land).iloc[:25]  # only 25 candidates: the run stops early (-1 padding)
    const = pd.Series(1.0, index=land.representatives, name="const")
    cfg = S.SearchConfig(budget=30, n_seeds=1, pred_init=5, pred_batch=4, pred_growth=0.0, pred_trees=5)
    res = S.run_search("predictor", land, "robust", cfg, score=const, features=feats, progress=False)
    assert sorted(res.queried[0, :25].tolist()) == sorted(feats.index.tolist()) and (res.queried[0, 25:] == -1).all()
    with pytest.raises(ValueError, match="predictor search needs features="):
        S.run_search("predictor", land, config=cfg, score=const, progress=False)
    with pytest.raises(ValueError, match="features= is only used by method 'predictor'"):
        S.run_search("random", land, config=cfg, features=feats, progress=False)
    bad = feats.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="features must be finite"):
        S.run_search("predictor", land, config=cfg, score=const, features=bad, progress=False)
    with pytest.raises(ValueError, match="pred_growth must be a number in"):
        S.SearchConfig(pred_growth=-1.0)
    with pytest.raises(ValueError, match="pred_init must be an int ≥ 1, got 0"):
        S.SearchConfig(pred_init=0)


def test_search_command_runs_the_predictor(tmp_path, data_dir, land):
    pytest.importorskip("sklearn")
    reps = land.representatives
    noise = np.random.default_rng(1).random(reps.size)
    pd.DataFrame({"nb201_index": reps, "oracle": land.metric("robust")[reps], "noise": noise}).to_csv(
        tmp_path / "s.csv", index=False
    )
    out = tmp_path / "out"
    argv = ["--data-dir", str(data_dir), "--methods", "predictor", "--criteria", "robust", "--budget", "80"]
    argv += ["--seeds", "2", "--scores", str(tmp_path / "s.csv"), "--score", "noise", "--features", "oracle"]
    argv += ["--pred-trees", "10", "--out", str(out), "--no-progress", "--no-figure"]
    assert cmd.run(_parser().parse_args(argv)) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["warm_start"] == "noise" and cfg["features"][0] == "zc_oracle" and cfg["n_feature_rows"] == 6466
    reach = pd.read_csv(out / "reach.csv")
    assert reach["method"].tolist() == ["predictor:noise"] and reach["fraction"].iloc[0] == 1.0
