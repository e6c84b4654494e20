"""Few-shot predictors: encodings against hand-derived values, inner CV choosing a planted
hyper-parameter, predictors recovering a known ranking, the evaluation protocol (test labels never
reach the fit, by construction; same seed → same bits), the real-data feature table and a real
100-label fit, and ``robntk predict``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from robntk.analysis import cell_features as CF  # noqa: E402
from robntk.analysis import combine as K  # noqa: E402
from robntk.analysis import predictor_eval as PE  # noqa: E402
from robntk.analysis import predictors as P  # noqa: E402
from robntk.analysis.correlation import kendall_tau  # noqa: E402
from robntk.commands import predict as cmd  # noqa: E402
from robntk.nb201.searchspace import OP_ID  # noqa: E402

FAST = P.PredictorConfig(n_estimators=20, cv_folds=3, grid={"max_features": (1.0,), "min_samples_leaf": (1,)})


# --------------------------------------------------------------------------- encodings
def test_onehot_hand_example():
    ops = CF.arch_ops(["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"])
    np.testing.assert_array_equal(ops, [[3, 0, 0, 1, 0, 4]])
    oh = CF.onehot_features(ops)
    assert oh.shape == (1, 30) and oh.to_numpy().sum() == 6
    assert oh.loc[0, "e0_nor_conv_3x3"] == 1 and oh.loc[0, "e3_skip_connect"] == 1 and oh.loc[0, "e5_avg_pool_3x3"] == 1
    assert oh.loc[0, "e0_none"] == 0


def test_graf_hand_examples():
    g = CF.graf_features(
        CF.arch_ops(
            [
                "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|",  # only 0→3 skip is live
                ("skip_connect",) * 6,
                ("none",) * 6,
                ("nor_conv_3x3",) * 6,
            ]
        )
    )
    assert g.shape == (4, 36)
    a = g.iloc[0]
    assert (a["count_nor_conv_3x3"], a["count_skip_connect"], a["count_none"]) == (1, 1, 4)
    assert (a["paths_skip"], a["minpath_skip"], a["maxpath_skip"]) == (1, 1, 1)
    assert (a["paths_conv3x3"], a["paths_any"], a["maxpath_any"]) == (0, 1, 1)
    assert (a["live_skip_connect"], a["live_nor_conv_3x3"]) == (1, 0)  # edge 0→1 is dead (1→3 is none)
    assert [a[f"indeg_{v}"] for v in (1, 2, 3)] == [1, 0, 1] and [a[f"outdeg_{v}"] for v in (0, 1, 2)] == [2, 0, 0]
    s = g.iloc[1]
    assert (s["paths_skip"], s["minpath_skip"], s["maxpath_skip"], s["paths_conv"]) == (4, 1, 3, 0)
    assert s["live_skip_connect"] == 6
    assert g.iloc[2].drop("count_none").sum() == 0 and g.iloc[2]["count_none"] == 6
    c = g.iloc[3]
    assert (c["paths_conv3x3"], c["paths_conv"], c["paths_param_free"], c["live_nor_conv_3x3"]) == (4, 4, 0, 6)


def test_encoding_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="unknown op 'conv5'"):
        CF.arch_ops(["|conv5~0|+|none~0|none~1|+|none~0|none~1|none~2|"])
    with pytest.raises(ValueError, match=r"op ids must be in 0..4, got values in 0..7"):
        CF.graf_features(np.array([[0, 0, 0, 0, 0, 7]]))
    with pytest.raises(ValueError, match=r"integer \(n, 6\) array"):
        CF.onehot_features(np.zeros((2, 5), dtype=int))
    with pytest.raises(ValueError, match=r"unknown encoding\(s\) \['bag'\]"):
        CF.feature_table([0], ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], encodings=("bag",))


# --------------------------------------------------------------------------- models
def _synthetic(n=240, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    y = x[:, 0] + 0.5 * x[:, 1] + 0.05 * rng.normal(size=n)
    return x, y


@pytest.mark.parametrize("model, min_tau", [("ridge", 0.9), ("extra_trees", 0.7), ("random_forest", 0.65)])
def test_predictor_recovers_a_known_ranking(model, min_tau):
    x, y = _synthetic()
    fp = P.fit_predictor(x[:120], y[:120], P.PredictorConfig(model=model, n_estimators=30, cv_folds=3))
    assert kendall_tau(fp.predict(x[120:]), y[120:]) > min_tau
    assert fp.n_train == 120 and fp.params in fp.config.candidates()


def test_inner_cv_picks_the_planted_hyper_parameter():
    """Ridge with a huge α predicts a constant (τ NaN → −∞): the small α must win; CV τ is real."""
    x, y = _synthetic(80)
    cfg = P.PredictorConfig(model="ridge", cv_folds=4, grid={"alpha": (1e9, 0.1)})
    params, taus = P.inner_cv(x, y, cfg)
    assert params == {"alpha": 0.1} and taus[1] > 0.85 and (math.isnan(taus[0]) or taus[0] < taus[1])


def test_same_seed_same_bits_and_seed_matters():
    x, y = _synthetic(120)
    cfg = P.PredictorConfig(n_estimators=15, cv_folds=3, seed=3)
    a = P.fit_predictor(x[:60], y[:60], cfg).predict(x[60:])  # unseen rows (trees interpolate seen ones)
    b = P.fit_predictor(x[:60], y[:60], cfg).predict(x[60:])
    assert a.tobytes() == b.tobytes()
    c = P.fit_predictor(x[:60], y[:60], P.PredictorConfig(n_estimators=15, cv_folds=3, seed=4)).predict(x[60:])
    assert not np.array_equal(a, c)


def test_prior_blend_weight_is_chosen_by_inner_cv():
    """A prior column equal to the labels' order wins alone (w = 1: predictions are the prior);
    a noise prior loses (w = 0: predictions are bit-equal to the plain model's)."""
    x, y = _synthetic(120)
    rng = np.random.default_rng(1)
    good = np.column_stack([x, pd.Series(y).rank(pct=True).to_numpy()])
    cfg = P.PredictorConfig(model="ridge", cv_folds=3, grid={"alpha": (1.0,)}, prior_column=5)
    fp = P.fit_predictor(good[:60], y[:60], cfg)
    assert fp.prior_weight == 1.0 and fp.describe()["prior_weight"] == 1.0
    np.testing.assert_array_equal(fp.predict(good[60:]), good[60:, 5])
    assert len(fp.cv_tau) == 5 and fp.cv_tau[0] == 1.0  # one τ per (candidate, weight); w = 1 first
    # a tie goes to the earlier weight: a constant prior leaves the ranking of every w < 1 blend
    # unchanged (equal τ) and is undefined alone (w = 1: τ NaN, never chosen)
    const = np.column_stack([x, np.full(120, 0.5)])
    ft = P.fit_predictor(const[:60], y[:60], cfg)
    assert math.isnan(ft.cv_tau[0]) and len(set(ft.cv_tau[1:])) == 1 and ft.prior_weight == 0.75
    rev = dataclasses.replace(cfg, prior_weights=(0.0, 0.25, 0.5, 0.75, 1.0))
    assert P.fit_predictor(const[:60], y[:60], rev).prior_weight == 0.0
    noise = np.column_stack([x, rng.uniform(size=120)])
    fq = P.fit_predictor(noise[:60], y[:60], P.PredictorConfig(model="ridge", cv_folds=3, grid={"alpha": (1.0,)},
                                                            prior_column=5))  # fmt: skip
    plain = P.fit_predictor(noise[:60], y[:60], P.PredictorConfig(model="ridge", cv_folds=3, grid={"alpha": (1.0,)}))
    assert fq.prior_weight == 0.0 and plain.prior_weight is None
    assert fq.predict(noise[60:]).tobytes() == plain.predict(noise[60:]).tobytes()
    with pytest.raises(ValueError, match="prior_weights must be weights in"):
        P.PredictorConfig(prior_column=0, prior_weights=(0.5, 2.0))
    with pytest.raises(ValueError, match="prior_column must be None or a column index"):
        P.PredictorConfig(prior_column=-1)
    with pytest.raises(ValueError, match="prior_column 9 is not a column of features with 6 columns"):
        P.fit_predictor(noise[:60], y[:60], P.PredictorConfig(prior_column=9))


def test_predictor_bad_inputs():
    x, y = _synthetic(20)
    with pytest.raises(ValueError, match="unknown predictor model 'xgboost'"):
        P.PredictorConfig(model="xgboost")
    with pytest.raises(ValueError, match="cv_folds must be an int ≥ 2, got 1"):
        P.PredictorConfig(cv_folds=1)
    with pytest.raises(ValueError, match=r"grid keys for ridge must be among \['alpha'\]"):
        P.PredictorConfig(model="ridge", grid={"max_depth": (2,)})
    with pytest.raises(ValueError, match="need at least 5 labelled architectures, got 3"):
        P.fit_predictor(x[:3], y[:3])
    bad = y.copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match=r"labels must be finite; rows \[4\]"):
        P.fit_predictor(x, bad)
    with pytest.raises(ValueError, match="all labels are equal"):
        P.fit_predictor(x, np.ones(20))
    fp = P.fit_predictor(x, y, FAST)
    with pytest.raises(ValueError, match=r"features must be \(m, 5\), got \(2, 4\)"):
        fp.predict(np.zeros((2, 4)))


# --------------------------------------------------------------------------- evaluation protocol
def test_tau_top_and_summary_hand_values():
    y = np.arange(10.0)
    pred = y.copy()
    pred[[8, 9]] = pred[[9, 8]]  # swap inside the top
    assert PE.tau_top(pred, y, 0.3) == pytest.approx(1 / 3)  # kept y = 7, 8, 9: 2 concordant pairs, 1 discordant
    assert PE.tau_top(y, y, 0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="top fraction must be in"):
        PE.tau_top(y, y, 0.0)
    d = pd.DataFrame(
        {"predictor": "p", "kind": "few_shot", "budget": 10, "draw": [0, 1, 2], "eval": "target", "n_train": 10,
         "n_test": 90, "tau": [0.1, 0.2, 0.3], "tau_top": [0.0, 0.0, 0.3]}
    )  # fmt: skip
    s = PE.summarise_draws(d).iloc[0]
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2) · sd / √n
    assert s["tau_mean"] == pytest.approx(0.2) and s["tau_sd"] == pytest.approx(0.1)
    assert (s["tau_ci_low"], s["tau_ci_high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert s["n_draws"] == 3 and s["tau_top_mean"] == pytest.approx(0.1)


def test_tau_top_keeps_rows_at_or_above_the_quantile():
    y = np.arange(10.0)  # top 20 %: y ≥ 7.2 → y = 8, 9 (2 rows) → fewer than 3 → NaN
    assert math.isnan(PE.tau_top(y, y, 0.2))
    assert PE.tau_top(-y, y, 0.3) == pytest.approx(-1.0)  # y ≥ 6.3: 7, 8, 9 reversed


def test_test_labels_never_reach_the_fit():
    """By construction: the predictor gets only the training keys' labels; scrambling every
    label outside the pool leaves every prediction bit-identical."""
    x, y = _synthetic(120, seed=1)
    keys = np.arange(1000, 1120)
    feats = pd.DataFrame(x, index=keys)
    pool, test = keys[:60], keys[60:]
    seen, preds = [], {}

    def spy(tag):
        inner = PE.model_predict_fn(feats, FAST)

        def fn(train, y_train, seed):
            seen.append((tag, train.copy(), y_train.copy()))
            p = inner(train, y_train, seed)
            preds.setdefault(tag, []).append(p)
            return p

        return fn

    y2 = y.copy()
    y2[60:] = np.random.default_rng(9).normal(size=60)  # labels of the test part scrambled
    a = PE.few_shot_draws({"m": ("few_shot", spy("a"))}, keys, y, [10, 30], 2, seed=5, pool=pool, test=test)
    b = PE.few_shot_draws({"m": ("few_shot", spy("b"))}, keys, y2, [10, 30], 2, seed=5, pool=pool, test=test)
    for (_, tr, yt), (_, tr2, yt2) in zip([s for s in seen if s[0] == "a"], [s for s in seen if s[0] == "b"]):
        assert np.isin(tr, pool).all() and np.array_equal(tr, tr2)
        np.testing.assert_array_equal(yt, y[tr - 1000])
        assert yt.tobytes() == yt2.tobytes()
    for p, q in zip(preds["a"], preds["b"]):
        assert p.tobytes() == q.tobytes()
    assert list(a.columns) == list(PE.DRAW_COLUMNS) and len(a) == 4
    assert (a["n_test"] == 60).all() and not a["tau"].equals(b["tau"])  # evaluated on different labels
    assert (a["tau"] > 0.5).all()
    again = PE.few_shot_draws(
        {"m": ("few_shot", PE.model_predict_fn(feats, FAST))}, keys, y, [10, 30], 2, 5, pool, test
    )
    assert again[["tau", "tau_top"]].to_numpy().tobytes() == a[["tau", "tau_top"]].to_numpy().tobytes()


def test_few_shot_draws_bad_inputs():
    keys = np.arange(50)
    fns = {"z": ("zero_shot", lambda tr, yt, s: np.zeros(50))}
    with pytest.raises(ValueError, match=r"budget 60 must be in 5..50"):
        PE.few_shot_draws(fns, keys, np.arange(50.0), [60], 1)
    with pytest.raises(ValueError, match="n_draws must be an int ≥ 1, got 0"):
        PE.few_shot_draws(fns, keys, np.arange(50.0), [10], 0)
    with pytest.raises(ValueError, match=r"pool keys must be among keys, e.g. \[99\]"):
        PE.few_shot_draws(fns, keys, np.arange(50.0), [10], 1, pool=[1, 99])


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real(bench, data_dir):
    from robntk.data.suite_zero import PROXIES, load_suite_zero

    zc = load_suite_zero("cifar10", data_dir, per_class="smallest")
    keys = zc.index.to_numpy(np.int64)
    feats = CF.feature_table(keys, [bench.space.arch_strs[i] for i in keys], zc, list(PROXIES))
    return feats, bench.values(keys, "cifar10", "val_pgd_8.0_acc")


def test_real_feature_table(real, bench):
    feats, y = real
    assert feats.shape == (6285, 13 + 30 + 36) and feats.attrs["n_dropped"] == 0
    assert np.isfinite(feats.to_numpy()).all()
    row = feats.loc[2581]  # the PGD-8 optimum: |3x3~0|+|1x1~0|3x3~1|+|skip~0|3x3~1|3x3~2|
    assert (row["count_nor_conv_3x3"], row["count_nor_conv_1x1"], row["count_skip_connect"]) == (4, 1, 1)
    # paths: 0→3 skip; 0→1→3 3x3,3x3; 0→2→3 1x1,3x3; 0→1→2→3 3x3,3x3,3x3
    assert (row["paths_conv3x3"], row["paths_conv"], row["minpath_conv"], row["maxpath_conv"]) == (2, 3, 2, 3)
    assert (row["paths_skip"], row["live_nor_conv_3x3"], row["live_skip_connect"]) == (1, 4, 1)
    # percentile rank of its NASLib params (1.073466 M) among the 6,285 scored classes, average rank on ties
    v = CF.feature_table([2581], [bench.space.arch_strs[2581]], None).shape  # encodings alone: 66 columns
    assert v == (1, 66) and row["zc_params"] == pytest.approx(0.988385, abs=1e-6)
    low, high = PE.conv3x3_split(feats, CF.arch_ops([bench.space.arch_strs[i] for i in feats.index]))
    assert low.size + high.size == 6285 and 2581 in high
    # the all-representative table drops the 181 classes NASLib did not score
    from robntk.data.suite_zero import load_suite_zero

    reps = np.asarray(bench.space.representatives)
    full = CF.feature_table(reps, [bench.space.arch_strs[i] for i in reps], load_suite_zero("cifar10", None))
    assert len(full) + full.attrs["n_dropped"] == 6466


def test_real_100_labels_beat_every_single_proxy(real):
    """100 CIFAR-10 PGD-8 labels, one draw: τ on the other 6,185 ≈ 0.82 (README); params alone 0.653."""
    feats, y = real
    d = PE.few_shot_draws(
        {"et": ("few_shot", PE.model_predict_fn(feats, P.PredictorConfig(n_estimators=50, cv_folds=3)))},
        feats.index.to_numpy(),
        y,
        [100],
        1,
        seed=0,
    )
    assert d["n_test"].iloc[0] == 6185
    assert 0.76 < d["tau"].iloc[0] < 0.9


# --------------------------------------------------------------------------- command
def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=None)
    cmd.add_arguments(p)
    return p


def test_predict_command(tmp_path, data_dir, bench):
    reps = np.asarray(bench.space.representatives)
    pick = np.random.default_rng(0).choice(reps[reps > 1000], 30, replace=False)
    iso = int(np.flatnonzero(bench.isomorph != np.arange(len(bench.isomorph)))[0])  # a non-representative cell
    lab = pd.DataFrame(
        {
            "arch_str": [bench.space.arch_strs[i] for i in pick] + [bench.space.arch_strs[iso]] * 2,
            "acc": list(bench.values(pick, "cifar10", "val_pgd_8.0_acc")) + [0.40, 0.42],
        }
    )
    lab.to_csv(tmp_path / "l.csv", index=False)
    argv = ["--data-dir", str(data_dir), "--labels", str(tmp_path / "l.csv"), "--target", "acc"]
    argv += ["--out", str(tmp_path / "r.csv"), "--n-estimators", "20", "--cv-folds", "3"]
    assert cmd.run(_parser().parse_args(argv)) == 0
    r = pd.read_csv(tmp_path / "r.csv")
    side = json.loads((tmp_path / "r.csv.json").read_text())
    assert list(r.columns) == ["rank", "nb201_index", "arch_str", "predicted", "labelled", "label"]
    assert r["rank"].tolist() == list(range(1, len(r) + 1)) and (np.diff(r["predicted"]) <= 0).all()
    assert len(r) == side["n_classes_ranked"] and set(r["nb201_index"]) <= set(reps.tolist())
    n_lab = side["predictor"]["n_train"]
    assert r["labelled"].sum() == n_lab and side["n_rows"] == 32 and side["n_merged"] == 1
    merged = r[r["nb201_index"] == bench.isomorph[iso]]
    if len(merged):  # the two rows of one class are averaged
        assert merged["label"].iloc[0] == pytest.approx(0.41)
    assert (
        side["kind"] == f"few_shot ({n_lab} labels)" and side["predictor"]["params"] in side["predictor"]["candidates"]
    )
    # same command, same bits
    argv2 = argv[:-5] + [str(tmp_path / "r2.csv")] + argv[-4:]
    assert cmd.run(_parser().parse_args(argv2)) == 0
    assert (tmp_path / "r.csv").read_bytes() == (tmp_path / "r2.csv").read_bytes()


def test_predict_command_with_a_zero_shot_prior(tmp_path, data_dir, bench):
    """With labels equal to the prior's own order the inner CV trusts the prior alone (w = 1), so
    the ranking of every class is the prior's percentile rank; an unknown column is named."""
    from robntk.data.suite_zero import load_suite_zero

    zc = load_suite_zero("cifar10", data_dir, per_class="smallest")
    prior = K.from_spec(zc, "geometric_rank(jacov,params)")
    pick = np.random.default_rng(1).choice(zc.index.to_numpy(), 40, replace=False)
    pd.DataFrame({"nb201_index": pick, "y": prior.loc[pick].to_numpy()}).to_csv(tmp_path / "l.csv", index=False)
    argv = ["--data-dir", str(data_dir), "--labels", str(tmp_path / "l.csv"), "--target", "y", "--n-estimators", "10"]
    argv += ["--cv-folds", "3", "--prior", "geometric_rank(jacov,params)", "--out", str(tmp_path / "r.csv")]
    assert cmd.run(_parser().parse_args(argv)) == 0
    r = pd.read_csv(tmp_path / "r.csv")
    side = json.loads((tmp_path / "r.csv.json").read_text())
    assert side["prior"] == "geometric_rank(jacov,params)" and side["predictor"]["prior_weight"] == 1.0
    assert "prior" in side["features"] and len(r) == len(zc)
    expect = prior.rank(pct=True).reindex(r["nb201_index"]).to_numpy()
    np.testing.assert_allclose(r["predicted"].to_numpy(), expect, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="nosuch"):
        cmd.run(_parser().parse_args(argv[:-3] + ["geometric_rank(nosuch,params)", "--out", str(tmp_path / "x.csv")]))


def test_predict_command_bad_labels_are_named(tmp_path, data_dir):
    pd.DataFrame({"arch_str": ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "acc": [0.3]}).to_csv(
        tmp_path / "l.csv", index=False
    )
    base = ["--data-dir", str(data_dir), "--labels", str(tmp_path / "l.csv"), "--out", str(tmp_path / "r.csv")]
    with pytest.raises(ValueError, match="has no 'pgd' column"):
        cmd.run(_parser().parse_args(base + ["--target", "pgd"]))
    pd.DataFrame({"arch_str": ["|none~0|+|bad~0|none~1|+|none~0|none~1|none~2|"], "acc": [0.3]}).to_csv(
        tmp_path / "l.csv", index=False
    )
    with pytest.raises(ValueError, match=r"row 0: unknown op 'bad'"):
        cmd.run(_parser().parse_args(base + ["--target", "acc"]))
    pd.DataFrame({"nb201_index": [1, 2], "acc": [0.3, "x"]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(ValueError, match=r"column 'acc' must hold finite numbers; row 1 has 'x'"):
        cmd.run(_parser().parse_args(base + ["--target", "acc"]))
    assert not (tmp_path / "r.csv").exists()
    assert OP_ID["nor_conv_3x3"] == 3


def test_plot_budgets(tmp_path):
    rows = []
    for name, kind in (("et", "few_shot"), ("params", "zero_shot")):
        for b in (10, 100):
            for d in range(3):
                rows.append((name, kind, b, d, "target", b, 50, 0.5 + 0.001 * b + 0.01 * d, 0.2 + 0.01 * d))
    s = PE.summarise_draws(pd.DataFrame(rows, columns=list(PE.DRAW_COLUMNS)))
    assert len(s) == 4 and s.loc[0, "tau_mean"] == pytest.approx(0.52)
    out = PE.plot_budgets(s, tmp_path / "f.png", title="t")
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no rows for eval 'nope'"):
        PE.plot_budgets(s, tmp_path / "g.png", "nope")
