"""Few-shot predictors of NAS-RobBench-201 PGD-8 accuracy: label budgets, baselines, structure shift,
dataset transfer and supervised reference rows (see README.md).

Run from the repository root (each part writes its own draws CSV; ``summarise`` builds the tables):

    ROBNTK_DATA=../shared/data nice -n 19 python experiments/predictors/run_predictors.py budgets
    ROBNTK_DATA=../shared/data nice -n 19 python experiments/predictors/run_predictors.py shift --budgets 50 100
    ROBNTK_DATA=../shared/data nice -n 19 python experiments/predictors/run_predictors.py transfer --budgets 50 100
    ROBNTK_DATA=../shared/data nice -n 19 python experiments/predictors/run_predictors.py supervised --draws 1
    ROBNTK_DATA=../shared/data python experiments/predictors/run_predictors.py summarise

Options: ``--draws N`` (default 30), ``--cv-folds K`` (inner CV folds, default 3), ``--budgets 10 20 ...``, ``--tag T`` (writes draws_<part>T.csv, so
one part can run in two processes; ``summarise`` reads every draws_<part>*.csv).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis import cell_features as CF
from robntk.analysis import combine as K
from robntk.analysis import combine_fit as KF
from robntk.analysis import predictor_eval as PE
from robntk.analysis import predictors as P
from robntk.analysis.combine_fit import split
from robntk.core.paths import atomic_write
from robntk.core.tables import write_json, write_table
from robntk.data.benchmark import RobBench, load_nb201_accuracy
from robntk.data.suite_zero import PROXIES, load_suite_zero

HERE = Path(__file__).resolve().parent
TARGET = ("cifar10", "val_pgd_8.0_acc")
OTHER = {"cifar100_pgd8": ("cifar100", "val_pgd_8.0_acc"), "in16_pgd8": ("ImageNet16-120", "val_pgd_8.0_acc")}
BUDGETS = (10, 20, 50, 100, 200, 500, 1000)
SEED = 0


def setup():
    bench = RobBench.load()
    zc = load_suite_zero("cifar10", per_class="smallest")
    keys = zc.index.to_numpy(np.int64)
    strs = [bench.space.arch_strs[i] for i in keys]
    feats = {
        "proxies+onehot+graf": CF.feature_table(keys, strs, zc, list(PROXIES)),
        "onehot": CF.feature_table(keys, strs, None, encodings=("onehot",)),
        "params+nwot": CF.feature_table(keys, strs, zc, ["params", "nwot"], encodings=()),
    }
    nb = load_nb201_accuracy()["cifar10_nb201_test_acc"].reindex(keys)
    full = feats["proxies+onehot+graf"].copy()
    full["nb201_clean_rank"] = nb.rank(pct=True).to_numpy()
    feats["proxies+onehot+graf+nb201clean"] = full
    for f in feats.values():
        assert (f.index.to_numpy() == keys).all()
    y = {"target": bench.values(keys, *TARGET), **{k: bench.values(keys, *v) for k, v in OTHER.items()}}
    ops = CF.arch_ops(strs)
    return bench, zc, keys, feats, y, ops


def predictors(zc, feats, cfg, with_other=True):
    fns = {f"extra_trees[{k}]": ("few_shot", PE.model_predict_fn(f, cfg)) for k, f in feats.items()}
    if with_other:
        fns["extra_trees[proxies+onehot+graf+nb201clean]"] = (
            "few_shot+other_benchmark",
            fns.pop("extra_trees[proxies+onehot+graf+nb201clean]")[1],
        )
    else:
        fns.pop("extra_trees[proxies+onehot+graf+nb201clean]")
    scores = zc[list(PROXIES)]

    def quadratic(train, y_train, seed):
        comb = KF.fit(scores, pd.Series(y_train, index=train), list(PROXIES), "quadratic", train_index=train)
        return comb.predict(scores).to_numpy()

    fns["quadratic[13 proxies] (combine.fit)"] = ("few_shot", quadratic)
    for spec in ("params", "nwot", "mean_rank(params,nwot)", "vote(synflow,jacov,snip)"):
        s = K.from_spec(scores, spec).to_numpy()
        fns[spec] = ("zero_shot", lambda train, y_train, seed, s=s: s)
    return fns


MODERN = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap", "swap_reg")
#: The zero-shot rule chosen on NB201 standard-training labels (experiments/proxies_modern/zero_shot.py).
ZS_NB201 = ("geometric_rank", ("az_progressivity", "meco", "jacov", "params"))


def modern_setup(zc, keys, feats, y):
    """Restrict to the archs the modern-proxy store holds (a uniform random sample of the
    representatives) and add the modern proxies and the NB201-chosen zero-shot rule as features
    (percentile ranks over the sample; an undefined proxy ranks last, 0)."""
    import sys

    sys.path.insert(0, str(HERE.parent / "proxies_modern"))
    from correlate import add_derived, load_store

    bench = RobBench.load()
    mod = add_derived(load_store(HERE.parent / "proxies_modern" / "store"), bench)
    sub = np.array([k for k in keys if k in mod.index and mod.loc[k, list(MODERN)].notna().any()], np.int64)
    raw = pd.concat([mod.loc[sub, list(MODERN)], zc.loc[sub, list(PROXIES)]], axis=1).fillna(-np.inf)
    zs = K.zero_shot(raw, ZS_NB201[1], ZS_NB201[0]).rank(pct=True).rename("zs_nb201")
    extra = pd.concat([raw[list(MODERN)].rank(pct=True).add_prefix("mod_"), zs], axis=1)
    pos = pd.Series(np.arange(keys.size), index=keys).loc[sub].to_numpy()
    base = feats["proxies+onehot+graf"].loc[sub]
    fs = {"proxies+onehot+graf": base, "proxies+modern+zs+onehot+graf": pd.concat([base, extra], axis=1)}
    return sub, fs, {k: v[pos] for k, v in y.items()}, zs.to_numpy()


def run(part: str, draws: int, budgets, tag: str = "", cv_folds: int = 3) -> None:
    t0 = time.perf_counter()
    bench, zc, keys, feats, y, ops = setup()
    cfg = P.PredictorConfig(cv_folds=cv_folds)
    evals = {k: v for k, v in y.items() if k != "target"}
    if part == "budgets":
        res = PE.few_shot_draws(
            predictors(zc, feats, cfg), keys, y["target"], budgets, draws, SEED, evals=evals, progress=True
        )
    elif part == "shift":
        low, high = PE.conv3x3_split(feats["onehot"], ops, at_most=2)
        keep = ("extra_trees[proxies+onehot+graf]", "extra_trees[onehot]", "params", "vote(synflow,jacov,snip)")
        fns = {k: v for k, v in predictors(zc, feats, cfg, with_other=False).items() if k in keep}
        parts = []
        for name, pool, test in (("train<=2_test>=3", low, high), ("train>=3_test<=2", high, low)):
            r = PE.few_shot_draws(fns, keys, y["target"], [b for b in budgets if b <= pool.size], draws,
                                 SEED, pool=pool, test=test, progress=True)  # fmt: skip
            r.insert(0, "split", name)
            r["n_pool"] = pool.size
            parts.append(r)
        res = pd.concat(parts, ignore_index=True)
    elif part == "transfer":
        parts = []
        fns = {k: v for k, v in predictors(zc, feats, cfg, with_other=False).items() if k.startswith("extra_trees[p")}
        fns = {"extra_trees[proxies+onehot+graf]": fns["extra_trees[proxies+onehot+graf]"]}
        for fit_on in ("cifar100_pgd8", "in16_pgd8"):  # fitted on the target dataset's own labels
            r = PE.few_shot_draws(fns, keys, y[fit_on], budgets, draws, SEED, progress=True)
            r.insert(0, "fit_on", fit_on)
            parts.append(r)
        res = pd.concat(parts, ignore_index=True)
    elif part == "modern":  # the sample the modern proxies cover; the same draws for every row
        keys, fs, y, zs = modern_setup(zc, keys, feats, y)
        fns = {f"extra_trees[{k}]": ("few_shot", PE.model_predict_fn(f, cfg)) for k, f in fs.items()}
        big = fs["proxies+modern+zs+onehot+graf"]
        prior = dataclasses.replace(cfg, prior_column=big.columns.get_loc("zs_nb201"))
        fns["extra_trees[proxies+modern+zs+onehot+graf] blended with the zero-shot prior (w by inner CV)"] = (
            "few_shot",
            PE.model_predict_fn(big, prior),
        )
        fns["zero_shot: " + K.spec_string(ZS_NB201[0], ZS_NB201[1])] = ("zero_shot", lambda tr, yt, sd: zs)
        evals = {k: v for k, v in y.items() if k != "target"}
        res = PE.few_shot_draws(fns, keys, y["target"], budgets, draws, SEED, evals=evals, progress=True)
    elif part == "supervised":  # random halves of the size of experiments/combine's split (3,142 labels)
        train, _ = split(keys, SEED)
        fns = predictors(zc, feats, cfg)
        fns = {
            k: v
            for k, v in fns.items()
            if k in ("extra_trees[proxies+onehot+graf]", "quadratic[13 proxies] (combine.fit)")
        }
        fns = {k: ("supervised", fn) for k, (_, fn) in fns.items()}
        res = PE.few_shot_draws(fns, keys, y["target"], [train.size], draws, SEED, evals=evals, progress=True)
    else:
        raise SystemExit(f"unknown part {part!r}")
    wall = time.perf_counter() - t0
    write_table(res, HERE / f"draws_{part}{tag}.csv", {
        "part": part, "draws": draws, "budgets": list(budgets), "seed": SEED, "target": list(TARGET),
        "predictor_config": {"model": cfg.model, "n_estimators": cfg.n_estimators, "cv_folds": cfg.cv_folds,
                             "grid": P.DEFAULT_GRIDS[cfg.model]},
        "n_archs": int(keys.size), "benchmark_source": bench.source, "wall_s": round(wall, 1),
    })  # fmt: skip
    print(f"{part}: {len(res)} rows, {wall:.0f} s")


def summarise() -> None:
    out = {}
    for part in ("budgets", "shift", "transfer", "supervised", "modern"):
        paths = sorted(HERE.glob(f"draws_{part}*.csv"))
        if not paths:
            continue
        d = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
        by = [c for c in ("split", "fit_on") if c in d.columns]
        if by:
            s = pd.concat(
                [PE.summarise_draws(g).assign(**dict(zip(by, k if isinstance(k, tuple) else (k,))))
                 for k, g in d.groupby(by, sort=False)], ignore_index=True)  # fmt: skip
        else:
            s = PE.summarise_draws(d)
        write_table(s, HERE / f"summary_{part}.csv")
        out[part] = len(s)
        if part == "budgets":
            PE.plot_budgets(
                s,
                HERE / "tau_vs_budget.png",
                "target",
                "CIFAR-10 PGD-8, NAS-RobBench-201: τ on the archs not labelled (mean, 95% CI over draws)",
            )
            for ev, lab in (("cifar100_pgd8", "CIFAR-100"), ("in16_pgd8", "ImageNet16-120")):
                PE.plot_budgets(
                    s,
                    HERE / f"transfer_{ev}.png",
                    ev,
                    f"fitted on CIFAR-10 PGD-8 labels, evaluated on {lab} PGD-8 (mean, 95% CI over draws)",
                )
    write_json(out, HERE / "summary_index.json")
    atomic_write_text(HERE / "summary.md", markdown())
    print(json.dumps(out))


def _fmt(r, col):
    return f"{r[col + '_mean']:.3f} [{r[col + '_ci_low']:.3f}, {r[col + '_ci_high']:.3f}]"


def markdown() -> str:
    """The tables of README.md, from the summary CSVs."""
    lines = []
    path = HERE / "summary_budgets.csv"
    if path.is_file():
        s = pd.read_csv(path)
        for ev in ("target", "cifar100_pgd8", "in16_pgd8"):
            d = s[s["eval"] == ev]
            budgets = sorted(d["budget"].unique())
            for col, what in (("tau", "all test archs"), ("tau_top", "top 20 % by the target")):
                lines += [f"\n### eval {ev}, τ over {what} (mean [95% CI] over draws; columns = labels)\n"]
                lines += ["| predictor | kind | " + " | ".join(str(b) for b in budgets) + " |"]
                lines += ["|---|---|" + "---|" * len(budgets)]
                for (name, kind), g in d.groupby(["predictor", "kind"], sort=False):
                    g = g.set_index("budget")
                    cells = [_fmt(g.loc[b], col) if b in g.index else "" for b in budgets]
                    lines += [f"| {name} | {kind} | " + " | ".join(cells) + " |"]
    for part, by in (("shift", "split"), ("transfer", "fit_on"), ("supervised", None), ("modern", None)):
        path = HERE / f"summary_{part}.csv"
        if not path.is_file():
            continue
        s = pd.read_csv(path)
        lines += [f"\n### {part} (mean [95% CI] over draws)\n"]
        lead = [by] if by else []
        lines += [
            "| "
            + " | ".join(lead + ["predictor", "kind", "labels", "eval", "draws", "n_test", "τ", "τ top 20 %"])
            + " |"
        ]
        lines += ["|" + "---|" * (len(lead) + 8)]
        for _, r in s.iterrows():
            cells = [str(r[by])] if by else []
            cells += [r["predictor"], r["kind"], str(r["budget"]), r["eval"], str(r["n_draws"]), str(r["n_test"]),
                      _fmt(r, "tau"), _fmt(r, "tau_top")]  # fmt: skip
            lines += ["| " + " | ".join(cells) + " |"]
    return "\n".join(lines).lstrip() + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("budgets", "shift", "transfer", "supervised", "modern", "summarise"))
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--budgets", type=int, nargs="+", default=BUDGETS)
    ap.add_argument("--cv-folds", type=int, default=3, help="inner CV folds (3 keeps the 2-core run short)")
    ap.add_argument("--tag", default="", help="suffix of the draws file (a part split over processes)")
    a = ap.parse_args()
    summarise() if a.part == "summarise" else run(a.part, a.draws, tuple(a.budgets), a.tag, a.cv_folds)
