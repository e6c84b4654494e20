"""Rank correlations: the known τ values of NAS-RobBench-201 (docs/nasrobbench201.md §5), the
baseline table, bootstrap CIs, score-column rules, deduplication, and `robntk correlate`."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from robntk.analysis import correlation as C
from robntk.commands import correlate as CC
from robntk.data.benchmark import load_nb201_accuracy


@pytest.fixture(scope="module")
def table(bench):
    return bench.table()


# --------------------------------------------------------------------------- statistics
def test_kendall_spearman_match_scipy_and_nan_rules():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    b = a + rng.normal(size=200)
    b_t = np.round(b, 1)  # ties → τ-b differs from τ-a
    assert C.kendall_tau(a, b_t) == pytest.approx(stats.kendalltau(a, b_t, variant="b").statistic, abs=1e-15)
    assert C.spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-15)
    a2, b2 = a.copy(), b.copy()
    a2[:10] = np.nan
    b2[5:15] = np.nan
    assert C.kendall_tau(a2, b2) == pytest.approx(stats.kendalltau(a[15:], b[15:]).statistic, abs=1e-15)
    assert C.spearman_rho(a2, b2) == pytest.approx(stats.spearmanr(a[15:], b[15:]).statistic, abs=1e-15)
    assert np.isnan(C.kendall_tau([1, 2], [1, 2]))
    assert np.isnan(C.spearman_rho([1, 2, np.nan], [1, 2, 3]))
    assert C.kendall_tau([1, 2, 3], [1, 2, 3]) == 1.0
    assert np.isnan(C.kendall_tau([1, 1, 1, 1], [1, 2, 3, 4]))  # constant input
    with pytest.raises(ValueError, match="same length"):
        C.kendall_tau([1, 2, 3], [1, 2])


def test_bootstrap_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(1)

    def sample(n):
        x = rng.normal(size=n)
        return x, x + 1.5 * rng.normal(size=n)

    widths = {}
    for n in (100, 1600):
        x, y = sample(n)
        for stat, point in (("kendall_tau", C.kendall_tau(x, y)), ("spearman_rho", C.spearman_rho(x, y))):
            lo, hi = C.bootstrap_ci(x, y, stat, n_boot=300, seed=0)
            assert lo < point < hi
            widths[(stat, n)] = hi - lo
    for stat in ("kendall_tau", "spearman_rho"):
        # width ∝ 1/sqrt(n): 16× the archs → about 1/4 the width
        assert 0.15 < widths[(stat, 1600)] / widths[(stat, 100)] < 0.4
    x, y = sample(300)
    assert C.bootstrap_ci(x, y, n_boot=50, seed=7) == C.bootstrap_ci(x, y, n_boot=50, seed=7)
    lo90, hi90 = C.bootstrap_ci(x, y, n_boot=300, level=0.90)
    lo99, hi99 = C.bootstrap_ci(x, y, n_boot=300, level=0.99)
    assert lo99 < lo90 < hi90 < hi99
    # the vectorised Spearman resamples equal scipy's on the same resamples
    idx = np.random.default_rng(0).integers(0, 300, size=(5, 300))
    ref = [stats.spearmanr(x[i], y[i]).statistic for i in idx]
    np.testing.assert_allclose(C._rowwise_spearman(x, y, idx), ref, atol=1e-12)
    assert all(np.isnan(v) for v in C.bootstrap_ci([1, 2], [2, 1]))
    assert all(np.isnan(v) for v in C.bootstrap_ci(x, y, n_boot=0))
    with pytest.raises(ValueError, match="unknown statistic 'pearson'"):
        C.bootstrap_ci(x, y, "pearson")


# --------------------------------------------------------------------------- known values (§5)
def test_known_tau_values(table):
    t = table
    assert len(t) == 6466
    tau = lambda a, b: round(C.kendall_tau(t[a], t[b]), 3)  # noqa: E731
    assert tau("cifar10_val_acc", "cifar10_val_pgd_8.0_acc") == 0.895
    assert tau("cifar100_val_acc", "cifar100_val_pgd_8.0_acc") == 0.880
    assert tau("ImageNet16-120_val_acc", "ImageNet16-120_val_pgd_8.0_acc") == 0.845
    assert tau("cifar10_val_fgsm_8.0_acc", "cifar10_val_pgd_8.0_acc") == 0.968
    assert tau("cifar10_val_pgd_8.0_acc", "cifar100_val_pgd_8.0_acc") == 0.907
    assert tau("cifar10_val_pgd_8.0_acc", "ImageNet16-120_val_pgd_8.0_acc") == 0.683
    assert round(C.spearman_rho(t["cifar10_val_fgsm_8.0_acc"], t["cifar10_val_pgd_8.0_acc"]), 3) == 0.998


def test_nb201_clean_accuracy_taus(table, data_dir):
    nb = load_nb201_accuracy(data_dir).loc[table.index]
    got = [
        round(C.kendall_tau(nb[f"{d}_nb201_test_acc"], table[f"{d}_val_acc"]), 3)
        for d in ("cifar10", "cifar100", "ImageNet16-120")
    ]
    assert got == [0.883, 0.766, 0.732]
    assert round(C.kendall_tau(nb["cifar10_nb201_test_acc"], table["cifar10_val_pgd_8.0_acc"]), 3) == 0.859


def test_baselines_and_their_taus(bench, space):
    b = C.baselines([0, 2581, 10], space)
    assert list(b.index) == [0, 2581, 10] and b.index.name == "nb201_index"
    # 0: avg_pool, 1x1, skip, 1x1, skip, skip → 2 × (16² + 32); 2581: four 3×3 + one 1×1
    assert b.loc[0].tolist() == [2 * 288, 0]
    assert b.loc[2581].tolist() == [4 * (9 * 256 + 32) + 288, 4]
    reps = list(space.representatives)
    scores = pd.DataFrame({"nb201_index": reps, "dummy": np.arange(len(reps), dtype=float)})
    tab = C.correlation_table(scores, bench, metrics=["val_acc", "val_pgd_8.0_acc", "autoattack"], n_boot=0)
    assert set(tab["score"]) == {"dummy", "num_params", "num_conv3x3"}
    assert (tab.loc[tab.score != "dummy", "kind"] == "baseline").all()
    piv = tab.set_index(["score", "dataset", "metric"])["kendall_tau"].round(3)
    expected = {  # docs/nasrobbench201.md §5, trivial proxies
        "num_params": {
            ("cifar10", "val_acc"): 0.600,
            ("cifar10", "val_pgd_8.0_acc"): 0.651,
            ("cifar10", "autoattack"): 0.643,
            ("cifar100", "val_pgd_8.0_acc"): 0.624,
            ("ImageNet16-120", "val_pgd_8.0_acc"): 0.447,
        },
        "num_conv3x3": {
            ("cifar10", "val_acc"): 0.534,
            ("cifar10", "val_pgd_8.0_acc"): 0.581,
            ("cifar10", "autoattack"): 0.569,
            ("cifar100", "val_pgd_8.0_acc"): 0.553,
            ("ImageNet16-120", "val_pgd_8.0_acc"): 0.370,
        },
    }
    for score, cells in expected.items():
        for (d, m), v in cells.items():
            assert piv[(score, d, m)] == v, (score, d, m)
    assert (tab["n"] == 6466).all()
    assert tab["kendall_tau_ci_low"].isna().all()  # n_boot=0


# --------------------------------------------------------------------------- table semantics
def test_table_dedup_columns_and_cis(bench, table, space):
    target = table["cifar10_val_pgd_8.0_acc"]
    reps = [r for r in space.representatives[:400]]
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "nb201_index": reps,
            "pgd_copy": target.loc[reps].to_numpy() + 0.002 * rng.normal(size=len(reps)),
            "arch_str": [space.arch_str(i) for i in reps],
            "uid": reps,
            "time_s": rng.random(len(reps)),
            "degenerate": np.zeros(len(reps), bool),
            "lambda_min_degenerate": np.zeros(len(reps), int),
            "lambda_min": rng.random(len(reps)),
        }
    )
    assert C.score_columns(df) == ["pgd_copy", "lambda_min"]
    # add isomorphs of the first representatives that have them: they must not be counted twice
    iso_rows = []
    for i in range(15625):
        r = space.representative(i)
        if r != i and r in set(reps[:50]):
            iso_rows.append({"nb201_index": i, "pgd_copy": -1.0, "lambda_min": 0.5})
        if len(iso_rows) == 5:
            break
    df2 = pd.concat([df, pd.DataFrame(iso_rows)], ignore_index=True)
    tab = C.correlation_table(
        df2, bench, datasets=["cifar10"], metrics=["val_pgd_8.0_acc", "val_acc"], n_boot=50, seed=1
    )
    assert list(tab.columns) == list(C.TABLE_COLUMNS)
    assert tab.attrs["n_archs"] == len(reps) and tab.attrs["n_isomorphs_dropped"] == len(iso_rows)
    row = tab[(tab.score == "pgd_copy") & (tab.metric == "val_pgd_8.0_acc")].iloc[0]
    assert row.n == len(reps)
    # the representative's row is kept, so the result equals the one without isomorph rows
    assert row.kendall_tau == pytest.approx(C.kendall_tau(df["pgd_copy"], target.loc[reps]), abs=1e-12)
    assert row.kendall_tau > 0.9
    assert row.kendall_tau_ci_low < row.kendall_tau < row.kendall_tau_ci_high
    assert row.spearman_rho_ci_low < row.spearman_rho < row.spearman_rho_ci_high
    assert set(tab.score) == {"pgd_copy", "lambda_min", "num_params", "num_conv3x3"}
    # NaN scores are dropped pairwise
    df3 = df.copy()
    df3.loc[:9, "lambda_min"] = np.nan
    t3 = C.correlation_table(df3, bench, datasets="cifar10", metrics="val_acc", n_boot=0, include_baselines=False)
    assert t3.set_index("score").loc["lambda_min", "n"] == len(reps) - 10
    assert list(t3.score) == ["pgd_copy", "lambda_min"]
    # explicit columns; a baseline name clash gets a prefix
    t4 = C.correlation_table(
        df.rename(columns={"lambda_min": "num_params"}),
        bench,
        datasets="cifar10",
        metrics="val_acc",
        n_boot=0,
        columns=["num_params"],
    )
    assert list(t4.score) == ["num_params", "baseline_num_params", "num_conv3x3"]


def test_table_input_errors(bench):
    ok = pd.DataFrame({"nb201_index": [0, 1, 2, 3], "s": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="need an 'nb201_index' column"):
        C.correlation_table(ok.drop(columns="nb201_index"), bench)
    with pytest.raises(ValueError, match="nb201_index repeated: \\[1\\]"):
        C.correlation_table(pd.DataFrame({"nb201_index": [0, 1, 1], "s": [1.0, 2.0, 3.0]}), bench)
    with pytest.raises(ValueError, match="integers in 0..15624"):
        C.correlation_table(pd.DataFrame({"nb201_index": [0, 15625], "s": [1.0, 2.0]}), bench)
    with pytest.raises(ValueError, match="no score columns"):
        C.correlation_table(ok[["nb201_index"]].assign(arch_str="x", time_s=1.0), bench)
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-1000'; allowed: cifar10, cifar100, ImageNet16-120"):
        C.correlation_table(ok, bench, datasets=["cifar-1000"])
    with pytest.raises(ValueError, match="unknown metric 'pgd'"):
        C.correlation_table(ok, bench, metrics=["pgd"])
    with pytest.raises(ValueError, match="score column 'nope' not found"):
        C.correlation_table(ok, bench, columns=["nope"])


# --------------------------------------------------------------------------- CLI
def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)  # added by robntk.cli for every command
    CC.add_arguments(p)
    return p


def _scores_file(tmp_path, table, space, suffix=".csv", n=300):
    rng = np.random.default_rng(2)
    reps = sorted(rng.choice(space.representatives, n, replace=False).tolist())
    target = table["cifar10_val_pgd_8.0_acc"].loc[reps].to_numpy()
    df = pd.DataFrame(
        {
            "nb201_index": reps,
            "arch_str": [space.arch_str(i) for i in reps],
            "noisy_pgd8": target + 0.01 * rng.normal(size=n),
            "random": rng.random(n),
            "score_s": rng.random(n),
        }
    )
    path = tmp_path / f"scores{suffix}"
    df.to_parquet(path) if suffix == ".parquet" else df.to_csv(path, index=False)
    return path, df


def test_cli_end_to_end(tmp_path, data_dir, table, space, capsys):
    path, df = _scores_file(tmp_path, table, space)
    out, fig = tmp_path / "res" / "table.csv", tmp_path / "res" / "heat.png"
    args = _parser().parse_args(
        [
            "--data-dir",
            str(data_dir),
            "--scores",
            str(path),
            "--out",
            str(out),
            "--figure",
            str(fig),
            "--n-boot",
            "20",
            "--seed",
            "3",
        ]
    )
    assert CC.run(args) == 0
    res = pd.read_csv(out)
    for col in (
        "score",
        "dataset",
        "metric",
        "n",
        "kendall_tau",
        "kendall_tau_ci_low",
        "kendall_tau_ci_high",
        "spearman_rho",
    ):
        assert col in res.columns
    assert len(res) == 4 * 18 and set(res.score) == {"noisy_pgd8", "random", "num_params", "num_conv3x3"}
    r = res[(res.score == "noisy_pgd8") & (res.dataset == "cifar10") & (res.metric == "val_pgd_8.0_acc")].iloc[0]
    want = C.kendall_tau(df["noisy_pgd8"], table["cifar10_val_pgd_8.0_acc"].loc[df.nb201_index])
    assert r.kendall_tau == pytest.approx(want, abs=1e-5) and r.kendall_tau > 0.8
    assert r.kendall_tau_ci_low < r.kendall_tau < r.kendall_tau_ci_high
    assert abs(res[res.score == "random"].kendall_tau).max() < 0.15
    with Image.open(fig) as im:
        assert im.format == "PNG" and im.size[0] > 300
    printed = capsys.readouterr().out
    assert "300 archs" in printed and "noisy_pgd8" in printed and str(out) in printed
    assert not list((tmp_path / "res").glob(".*"))  # no temporary files left behind


def test_cli_parquet_defaults_and_subsets(tmp_path, data_dir, table, space):
    path, _ = _scores_file(tmp_path, table, space, suffix=".parquet", n=60)
    args = _parser().parse_args(
        [
            "--data-dir",
            str(data_dir),
            "--scores",
            str(path),
            "--datasets",
            "cifar10",
            "cifar100",
            "--metrics",
            "val_acc",
            "autoattack",
            "--n-boot",
            "0",
            "--no-baselines",
        ]
    )
    assert CC.run(args) == 0
    res = pd.read_csv(tmp_path / "scores_correlation.csv")
    assert (tmp_path / "scores_tau.png").is_file()
    assert len(res) == 2 * 2 * 2 and set(res.dataset) == {"cifar10", "cifar100"}


def test_cli_bad_input(tmp_path, data_dir):
    p = _parser()

    def run(*argv):
        return CC.run(p.parse_args(["--data-dir", str(data_dir), *argv]))

    with pytest.raises(FileNotFoundError, match="scores file not found"):
        run("--scores", str(tmp_path / "missing.csv"))
    (tmp_path / "noidx.csv").write_text("arch,score\n1,0.5\n")
    with pytest.raises(ValueError, match=r"noidx\.csv has no 'nb201_index' column"):
        run("--scores", str(tmp_path / "noidx.csv"))
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unsupported scores file .*s\.json"):
        run("--scores", str(tmp_path / "s.json"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"cannot read scores file .*broken\.parquet"):
        run("--scores", str(tmp_path / "broken.parquet"))
    (tmp_path / "ok.csv").write_text("nb201_index,s\n0,1\n1,2\n2,3\n3,4\n")
    with pytest.raises(ValueError, match="unknown metric 'pgd8'"):
        run("--scores", str(tmp_path / "ok.csv"), "--metrics", "pgd8")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        run("--scores", str(tmp_path / "ok.csv"), "--datasets", "svhn")
    assert not (tmp_path / "ok_correlation.csv").exists()


def test_heatmap_rejects_bad_tables(tmp_path):
    from robntk.core.figures import tau_heatmap

    with pytest.raises(ValueError, match="lacks column"):
        tau_heatmap(pd.DataFrame({"score": ["a"]}), tmp_path / "x.png")
    t = pd.DataFrame(
        {"score": ["a", "b"], "dataset": ["cifar10"] * 2, "metric": ["val_acc"] * 2, "kendall_tau": [0.5, np.nan]}
    )
    p = tau_heatmap(t, tmp_path / "x.png")
    with Image.open(p) as im:
        assert im.format == "PNG"


def test_paired_tau_difference():
    from robntk.analysis.correlation import kendall_tau, paired_tau_difference

    rng = np.random.default_rng(0)
    t = rng.normal(size=300)
    good = t + 0.3 * rng.normal(size=300)
    bad = t + 3.0 * rng.normal(size=300)
    d, lo, hi = paired_tau_difference(good, bad, t, n_boot=300, seed=1)
    assert d == pytest.approx(kendall_tau(good, t) - kendall_tau(bad, t))
    assert 0 < lo < d < hi
    same = paired_tau_difference(good, good, t, n_boot=50)
    assert same == (0.0, 0.0, 0.0)
    # pairing: a monotone transform of the same score has an exactly zero difference in every resample
    assert paired_tau_difference(good, np.exp(good), t, n_boot=50) == (0.0, 0.0, 0.0)
    nan = np.where(np.arange(300) < 10, np.nan, good)
    assert paired_tau_difference(nan, bad, t, n_boot=0)[0] == pytest.approx(
        kendall_tau(good[10:], t[10:]) - kendall_tau(bad[10:], t[10:])
    )
    with pytest.raises(ValueError, match="same length"):
        paired_tau_difference(good, bad[:5], t)
