"""NAS-Bench-Suite-Zero loader (the reference τ values of the NASLib proxies vs CIFAR-10 PGD-8)
and score combination: ranks, zero-shot rules against hand values / brute force, specs, the
seeded split, learned fits recovering planted structure, and the real-data report."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from robntk.analysis import combine as K
from robntk.analysis import combine_fit as KF
from robntk.analysis.correlation import kendall_tau
from robntk.data import suite_zero as Z


@pytest.fixture(scope="module")
def zc(data_dir):
    return Z.load_suite_zero("cifar10", data_dir, per_class="smallest")


def _tau(df, bench, col, index_col=None):
    idx = df.index.to_numpy() if index_col is None else df[index_col].to_numpy()
    return kendall_tau(df[col].to_numpy(), bench.values(idx, "cifar10", "val_pgd_8.0_acc"))


# --------------------------------------------------------------------------- Suite-Zero
def test_suite_zero_shapes_and_units(data_dir):
    cells = Z.load_suite_zero("cifar10", data_dir)
    assert cells.shape == (9445, 2 + len(Z.PROXIES)) and cells.index.name == "nb201_index"
    assert cells.loc[2581, "params"] == pytest.approx(1.073466) and cells.loc[2581, "flops"] == pytest.approx(
        155.584192
    )
    for rule in Z.PER_CLASS_RULES:
        per = Z.load_suite_zero("cifar10", data_dir, per_class=rule)
        assert per.shape[0] == Z.N_CLASSES == 6285
        assert per.index.is_monotonic_increasing and per.index.is_unique
    imn = Z.load_suite_zero("ImageNet16-120", data_dir)
    assert imn.shape[0] == 9445 and not np.allclose(imn["params"].to_numpy(), cells["params"].to_numpy())


def test_suite_zero_tau_vs_pgd8_reference_values(data_dir, bench):
    """The NASLib τ values quoted for the project (issue 11) are over the 6,285 classes with the
    file-order member of each class; over the 9,445 cells (PROVENANCE.md: params 0.655) and with
    the smallest-index member they differ by up to 0.05 (snip, fisher)."""
    quoted = {
        "params": 0.648,
        "nwot": 0.631,
        "synflow": 0.616,
        "jacov": 0.599,
        "snip": 0.475,
        "fisher": 0.435,
        "zen": 0.091,
    }
    per = Z.load_suite_zero("cifar10", data_dir, per_class="file_order")
    for col, ref in quoted.items():
        assert round(_tau(per, bench, col), 3) == ref, col
    cells = Z.load_suite_zero("cifar10", data_dir)
    measured_cells = {
        "params": 0.655,
        "nwot": 0.642,
        "synflow": 0.619,
        "jacov": 0.600,
        "snip": 0.524,
        "fisher": 0.482,
        "zen": 0.073,
    }
    for col, ref in measured_cells.items():
        assert round(_tau(cells, bench, col, "nb201_representative"), 3) == ref, col
    small = Z.load_suite_zero("cifar10", data_dir, per_class="smallest")
    measured_small = {
        "params": 0.653,
        "nwot": 0.635,
        "synflow": 0.616,
        "jacov": 0.597,
        "snip": 0.477,
        "fisher": 0.435,
        "zen": 0.097,
    }
    for col, ref in measured_small.items():
        assert round(_tau(small, bench, col), 3) == ref, col


def test_suite_zero_smallest_rule_equals_correlation_deduplicate(data_dir, bench):
    cells = Z.load_suite_zero("cifar10", data_dir).drop(columns=["nb201_representative", "arch_str"])
    dedup = K.score_table(cells, bench)
    small = Z.load_suite_zero("cifar10", data_dir, per_class="smallest")
    pd.testing.assert_frame_equal(dedup[list(Z.PROXIES)], small[list(Z.PROXIES)])
    mean = Z.load_suite_zero("cifar10", data_dir, per_class="mean")
    members = cells[bench.representatives_of(cells.index.to_numpy()) == 2581]
    assert mean.loc[2581, "nwot"] == pytest.approx(members["nwot"].mean())


def test_suite_zero_errors(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="zc_nb201_proxies.csv"):
        Z.load_suite_zero("cifar10", tmp_path)
    with pytest.raises(ValueError, match="unknown Suite-Zero dataset"):
        Z.load_suite_zero("cifar100", data_dir)
    with pytest.raises(ValueError, match="per_class"):
        Z.load_suite_zero("cifar10", data_dir, per_class="max")
    (tmp_path / "nasbench_suite_zero_nb201").mkdir()
    (tmp_path / Z.SUITE_ZERO_FILE).write_text("dataset,nb201_index\ncifar10,1\n")
    with pytest.raises(ValueError, match="corrupt"):
        Z.load_suite_zero("cifar10", tmp_path)


# --------------------------------------------------------------------------- ranks and zero-shot
def _toy():
    return pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0], "b": [4.0, 4.0, 1.0, np.nan], "c": [0.0, 1.0, 2.0, 3.0]},
        index=pd.Index([10, 11, 12, 13], name="nb201_index"),
    )


def test_normalised_ranks_hand_values():
    r = K.normalised_ranks(_toy(), ["a", "b"], signs=[1, -1])
    np.testing.assert_allclose(r["a"], [0.25, 0.5, 0.75, 1.0])
    # -b = [-4, -4, -1, nan]: average ranks 1.5, 1.5, 3 over 3 values
    np.testing.assert_allclose(r["b"].to_numpy()[:3], [0.5, 0.5, 1.0])
    assert np.isnan(r["b"].iloc[3])
    with pytest.raises(ValueError, match="signs"):
        K.normalised_ranks(_toy(), ["a"], signs=[2])
    with pytest.raises(ValueError, match="not found"):
        K.normalised_ranks(_toy(), ["zz"])


def test_zero_shot_means_hand_values():
    df = _toy()
    ra, rc = np.array([0.25, 0.5, 0.75, 1.0]), np.array([0.25, 0.5, 0.75, 1.0])
    rb = np.array([5 / 6, 5 / 6, 1 / 3])  # b: ranks 2.5, 2.5, 1 of 3
    m = K.zero_shot(df, ["a", "b"], "mean_rank")
    np.testing.assert_allclose(m.to_numpy()[:3], (ra[:3] + rb) / 2)
    assert np.isnan(m.iloc[3]) and m.name == "mean_rank(a,b)"
    g = K.zero_shot(df, ["a", "b"], "geometric_rank", weights=[3, 1])
    np.testing.assert_allclose(g.to_numpy()[:3], np.exp((3 * np.log(ra[:3]) + np.log(rb)) / 4))
    assert g.name == "geometric_rank(a:3,b:1)"
    h = K.zero_shot(df, ["a", "c"], "harmonic_rank")
    np.testing.assert_allclose(h.to_numpy(), 2 / (1 / ra + 1 / rc))
    with pytest.raises(ValueError, match="unknown zero-shot"):
        K.zero_shot(df, ["a"], "median_rank")
    with pytest.raises(ValueError, match="weights"):
        K.zero_shot(df, ["a", "c"], weights=[1, -1])


def test_vote_is_copeland_of_pairwise_majority():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(40, 3)).astype(float)  # many ties
    w = np.array([1.0, 1.0, 1.5])
    ref = np.zeros(40)
    for i, j in itertools.permutations(range(40), 2):
        s = np.sign(x[i] - x[j]) @ w
        ref[i] += int(s > 0) - int(s < 0)
    np.testing.assert_allclose(K.vote_score(x, w, block=7), ref / 39)
    one = K.vote_score(x[:, :1])
    assert kendall_tau(one, x[:, 0]) == pytest.approx(1.0)
    x[5, 1] = np.nan
    v = K.vote_score(x)
    assert np.isnan(v[5]) and np.isfinite(np.delete(v, 5)).all()


def test_specs_round_trip_and_errors():
    df = _toy()
    assert K.parse_spec("params") == (None, ["params"], None, [1.0])
    assert K.parse_spec("-plain") == (None, ["plain"], None, [-1.0])
    assert K.parse_spec("vote(a, -b:2)") == ("vote", ["a", "b"], [1.0, 2.0], [1.0, -1.0])
    s = K.from_spec(df, "mean_rank(a,-c)")
    assert s.name == "mean_rank(a,-c)"
    np.testing.assert_allclose(s.to_numpy(), 0.625)  # a and -c are opposite: every row averages to (n+1)/2n
    np.testing.assert_allclose(K.from_spec(df, "-a").to_numpy(), -df["a"].to_numpy())
    stored = df.assign(**{"vote(a,c)": [9.0, 8.0, 7.0, 6.0]})  # a column named like a spec wins
    np.testing.assert_array_equal(K.from_spec(stored, "vote(a,c)").to_numpy(), [9.0, 8.0, 7.0, 6.0])
    spec = K.spec_string("vote", ["a", "b"], weights=[1, 2], signs=[1, -1])
    assert K.parse_spec(spec) == ("vote", ["a", "b"], [1.0, 2.0], [1.0, -1.0])
    for bad, msg in (
        ("foo(a)", "unknown combination"),
        ("mean_rank(a,)", "empty column"),
        ("mean_rank(a:x)", "bad weight"),
        ("", "non-empty"),
    ):
        with pytest.raises(ValueError, match=msg):
            K.parse_spec(bad)


# --------------------------------------------------------------------------- learned
def test_split_is_seeded_disjoint_and_halved():
    keys = np.arange(100, 201)
    tr, te = KF.split(keys, seed=4)
    assert len(tr) == 50 and len(te) == 51 and not set(tr) & set(te) and set(tr) | set(te) == set(keys)
    tr2, _ = KF.split(keys[::-1], seed=4)
    np.testing.assert_array_equal(tr, tr2)  # independent of the input order
    assert not np.array_equal(tr, KF.split(keys, seed=5)[0])
    with pytest.raises(ValueError, match="train_fraction"):
        KF.split(keys, 0, 1.0)


def _planted(n=600, seed=0):
    rng = np.random.default_rng(seed)
    a, b, noise = rng.normal(size=(3, n))
    df = pd.DataFrame({"a": a, "b": b, "noise": noise}, index=pd.Index(np.arange(n), name="nb201_index"))
    return df


def test_learned_fits_recover_planted_structure():
    df = _planted()
    tr, te = KF.split(df.index, seed=0)
    ra = df["a"].rank(pct=True)
    y = 2 * ra - df["b"].rank(pct=True)  # target: a linear function of the ranks, b negatively
    lin = KF.fit(df, y, ["a", "b", "noise"], "linear", train_index=tr)
    w = np.asarray(lin.weights)  # fitted to the target's percentile rank: the ratio 2 : -1 : 0 survives
    assert w[0] / -w[1] == pytest.approx(2, rel=0.1) and abs(w[2]) < 0.05 * w[0]
    assert kendall_tau(lin.predict(df).loc[te], y.loc[te]) > 0.97
    pl = KF.fit(df, y, ["a", "b", "noise"], "pairwise_logistic", train_index=tr, n_pairs=20_000)
    w = np.asarray(pl.weights)
    assert w[0] > 0 > w[1] and abs(w[2]) < 0.2 * w[0] and w[0] / -w[1] == pytest.approx(2, rel=0.25)
    quad = KF.fit(df, ra**2, ["a", "b"], "quadratic", train_index=tr, ridge=1e-8)
    assert kendall_tau(quad.predict(df).loc[te], ra.loc[te]) > 0.999
    g = KF.fit(df, -df["b"], ["a", "b", "noise"], "greedy_mean_rank", train_index=tr)
    assert g.columns == ("b",) and g.signs == (-1.0,) and g.name == "greedy_mean_rank(-b)"
    with pytest.raises(ValueError, match="unknown learned"):
        KF.fit(df, y, ["a"], "svm")
    with pytest.raises(ValueError, match="training keys"):
        KF.fit(df, y, ["a"], train_index=[10_000])


def test_report_on_naslib_proxies(zc, bench):
    """Real numbers: zero-shot over all 6,285 classes; learned on split seed 0 (3,142 train / 3,143 test)."""
    cols = list(Z.PROXIES)
    table, models = KF.report(
        zc,
        bench,
        singles=["params"],
        zero_shot_specs=["vote(synflow,jacov,snip)"],
        learned=[("linear", cols)],
        targets=[("cifar10", "val_pgd_8.0_acc")],
        n_boot=30,
        progress=False,
    )
    assert table.attrs["n_train"] == 3142 and table.attrs["n_test"] == 3143
    t = table.set_index(["score", "eval_set"])["kendall_tau"]
    assert round(t[("params", "all")], 3) == 0.653
    assert round(t[("vote(synflow,jacov,snip)", "all")], 3) == 0.719
    assert round(t[("linear(13 cols)", "test")], 3) == 0.775
    assert ("linear(13 cols)", "all") not in t.index  # learned: held-out only
    row = table[table["score"] == "linear(13 cols)"].iloc[0]
    assert row.kendall_tau_ci_low < row.kendall_tau < row.kendall_tau_ci_high
    assert models["linear(13 cols)"].info["n_train"] == 3142


def test_combine_command(tmp_path, data_dir, bench):
    import argparse
    import json

    from robntk.commands import combine as cmd

    rng = np.random.default_rng(0)
    reps = np.asarray(bench.space.representatives)[::10]
    y = bench.values(reps, "cifar10", "val_pgd_8.0_acc")
    df = pd.DataFrame(
        {"nb201_index": reps, "good": y + 0.01 * rng.normal(size=reps.size), "noise": rng.normal(size=reps.size)}
    )
    df.to_csv(tmp_path / "s.csv", index=False)
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    cmd.add_arguments(p)
    out = tmp_path / "t.csv"
    args = p.parse_args(
        [
            "--data-dir",
            str(data_dir),
            "--scores",
            str(tmp_path / "s.csv"),
            "--n-boot",
            "20",
            "--out",
            str(out),
            "--write-scores",
            str(tmp_path / "c.csv"),
            "--no-progress",
            "--learned",
            "linear",
            "greedy_mean_rank",
        ]
    )
    assert cmd.run(args) == 0
    t = pd.read_csv(out)
    assert set(t["kind"]) == {"single", "zero_shot", "learned"}
    side = json.loads((tmp_path / "t.csv.json").read_text())
    assert side["n_train"] == len(reps) // 2 and len(side["train_index"]) == side["n_train"]
    assert side["models"]["greedy_mean_rank(good)"]["columns"] == ["good"]
    lin = t[(t["score"] == "linear(2 cols)") & (t["dataset"] == "cifar10") & (t["metric"] == "val_pgd_8.0_acc")]
    assert lin["eval_set"].tolist() == ["test"] and lin["kendall_tau"].iloc[0] > 0.8  # noise only dilutes "good"
    c = pd.read_csv(tmp_path / "c.csv")
    assert c["is_train"].sum() == side["n_train"] and "mean_rank(good,noise)" in c.columns
