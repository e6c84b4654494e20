"""Combine the NAS-Bench-Suite-Zero (NASLib) proxies into one training-free score; τ vs NAS-RobBench-201.

Run from the repository root:

    PYTHONPATH=$PWD ROBNTK_DATA=/work/shared/data nice -n 10 python experiments/combine/run_combine.py

Writes next to this file: combination_table.csv (every τ with its 95% bootstrap CI),
split_seeds.csv (learned fits over 10 split seeds), models.json (fitted weights),
combined_scores.csv (per representative: the combinations, usable by `robntk search --scores`),
summary.md (the tables quoted in README.md). See README.md for what is zero-shot and what is tuned.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis import combine as K
from robntk.analysis import combine_fit as KF
from robntk.analysis.correlation import baselines, bootstrap_ci, kendall_tau
from robntk.core.paths import atomic_save, atomic_write
from robntk.data.benchmark import RobBench, load_nb201_accuracy
from robntk.data.suite_zero import PROXIES, load_suite_zero

HERE = Path(__file__).resolve().parent
N_BOOT = 1000
SPLIT_SEED = 0
ALL = list(PROXIES)
ABDELFATTAH = ["synflow", "jacov", "snip"]  # Abdelfattah et al. ICLR 2021 vote
ZERO_SHOT = [
    f"mean_rank({','.join(ALL)})",
    f"geometric_rank({','.join(ALL)})",
    f"harmonic_rank({','.join(ALL)})",
    f"vote({','.join(ALL)})",
    f"vote({','.join(ABDELFATTAH)})",
    f"mean_rank({','.join(ABDELFATTAH)})",
    f"geometric_rank({','.join(ABDELFATTAH)})",
    f"harmonic_rank({','.join(ABDELFATTAH)})",
]
LEARNED = [("linear", ALL), ("pairwise_logistic", ALL), ("greedy_mean_rank", ALL), ("quadratic", ALL)]
TARGETS = KF.EVAL_TARGETS


def main() -> None:
    t0 = time.perf_counter()
    bench = RobBench.load()
    zc = load_suite_zero("cifar10", per_class="smallest")
    zc_in = load_suite_zero("ImageNet16-120", per_class="smallest")
    scores = zc[ALL]

    # Tuned on another benchmark: NB201 standard-training (200-epoch) CIFAR-10 test accuracy of the
    # representative cell, all 6,285 classes; no NAS-RobBench-201 label is used.
    nb201 = load_nb201_accuracy()["cifar10_nb201_test_acc"].reindex(scores.index)
    other = {
        "nb201clean_greedy": KF.fit(scores, nb201, ALL, "greedy_mean_rank"),
        "nb201clean_linear": KF.fit(scores, nb201, ALL, "linear"),
    }
    fixed = {
        f"{c.name} [fit on NB201 std-training clean acc]": ("tuned_other_benchmark", c.predict(scores))
        for c in other.values()
    }

    table, models = KF.report(
        scores,
        bench,
        singles=ALL,
        zero_shot_specs=ZERO_SHOT,
        learned=LEARNED,
        fixed=fixed,
        targets=TARGETS,
        split_seed=SPLIT_SEED,
        n_boot=N_BOOT,
        seed=0,
    )
    train, test = KF.split(scores.index, SPLIT_SEED)

    # learned weights applied to the ImageNet16-120 proxies (same names), held-out classes, IN16 PGD-8
    extra = []
    for label, comb in models.items():
        ev = KF.evaluate(
            comb.predict(zc_in[ALL]), bench, [("ImageNet16-120", "val_pgd_8.0_acc")], index=test, n_boot=N_BOOT
        )
        for r in ev.itertuples(index=False):
            extra.append(
                (
                    f"{label} [on IN16 proxies]",
                    "learned",
                    "test",
                    r.dataset,
                    r.metric,
                    r.n,
                    r.kendall_tau,
                    r.kendall_tau_ci_low,
                    r.kendall_tau_ci_high,
                )
            )
    for spec in ("params", "nwot", f"vote({','.join(ABDELFATTAH)})"):
        ev = KF.evaluate(
            K.from_spec(zc_in[ALL], spec),
            bench,
            [("ImageNet16-120", "val_pgd_8.0_acc")],
            index=scores.index,
            n_boot=N_BOOT,
        )
        for r in ev.itertuples(index=False):
            kind = "single" if "(" not in spec else "zero_shot"
            extra.append(
                (
                    f"{spec} [on IN16 proxies]",
                    kind,
                    "all",
                    r.dataset,
                    r.metric,
                    r.n,
                    r.kendall_tau,
                    r.kendall_tau_ci_low,
                    r.kendall_tau_ci_high,
                )
            )
    # reference: robntk's closed-form cell #params over all 6,466 classes (NASLib covers 6,285)
    reps = np.asarray(bench.space.representatives)
    npar = baselines(reps, bench.space)["num_params"].to_numpy(np.float64)
    for d, m in TARGETS:
        y = bench.values(reps, d, m)
        lo, hi = bootstrap_ci(npar, y, "kendall_tau", N_BOOT, 0)
        extra.append(
            (
                "num_params (cell, closed form) [6,466 classes]",
                "single",
                "all_6466",
                d,
                m,
                len(reps),
                kendall_tau(npar, y),
                lo,
                hi,
            )
        )
    table = pd.concat([table, pd.DataFrame(extra, columns=list(KF.REPORT_COLUMNS))], ignore_index=True)
    atomic_save(HERE / "combination_table.csv", lambda p: table.to_csv(p, index=False, float_format="%.4f"))

    # robustness of the learned fits to the split: 10 seeds, test τ vs CIFAR-10 PGD-8 (no CIs)
    y_c10 = pd.Series(bench.values(scores.index.to_numpy(), *KF.TARGET), index=scores.index)
    rows = []
    for s in range(10):
        tr, te = KF.split(scores.index, s)
        for m, cols in LEARNED:
            c = KF.fit(scores, y_c10, cols, m, train_index=tr)
            p = c.predict(scores).loc[te]
            rows.append(
                (
                    s,
                    m,
                    c.name if m == "greedy_mean_rank" else m,
                    len(tr),
                    len(te),
                    kendall_tau(p.to_numpy(), y_c10.loc[te].to_numpy()),
                )
            )
    seeds = pd.DataFrame(rows, columns=["split_seed", "method", "model", "n_train", "n_test", "kendall_tau_test"])
    atomic_save(HERE / "split_seeds.csv", lambda p: seeds.to_csv(p, index=False, float_format="%.4f"))

    all_models = {**models, **{k: v for k, v in other.items()}}
    with atomic_write(HERE / "models.json") as fh:
        json.dump(
            {
                k: {
                    "method": c.method,
                    "columns": list(c.columns),
                    "weights": list(c.weights),
                    "signs": list(c.signs),
                    "intercept": c.intercept,
                    "info": c.info,
                }
                for k, c in all_models.items()
            },
            fh,
            indent=2,
        )

    comb = pd.DataFrame(index=scores.index)
    for spec in ("params", "nwot", "synflow", ZERO_SHOT[0], ZERO_SHOT[4]):
        comb[spec] = K.from_spec(scores, spec)
    comb["linear_c10pgd8_half"] = models["linear(13 cols)"].predict(scores)
    comb["nb201clean_greedy"] = other["nb201clean_greedy"].predict(scores)
    comb["is_train_half"] = comb.index.isin(train).astype(int)
    comb = comb.reset_index()
    atomic_save(HERE / "combined_scores.csv", lambda p: comb.to_csv(p, index=False, float_format="%.8g"))

    with atomic_write(HERE / "summary.md") as fh:
        fh.write(summarise(table, seeds, all_models, len(train), len(test)))
    print(f"done in {time.perf_counter() - t0:.0f} s")


def _cell(r) -> str:
    return f"{r.kendall_tau:.3f} [{r.kendall_tau_ci_low:.3f}, {r.kendall_tau_ci_high:.3f}]"


def summarise(table: pd.DataFrame, seeds: pd.DataFrame, models, n_train: int, n_test: int) -> str:
    cols = [
        ("cifar10", "val_pgd_8.0_acc", "C10 PGD-8"),
        ("cifar10", "val_acc", "C10 clean"),
        ("cifar100", "val_pgd_8.0_acc", "C100 PGD-8"),
        ("ImageNet16-120", "val_pgd_8.0_acc", "IN16 PGD-8"),
    ]
    out = [
        (
            f"Kendall τ-b [95% bootstrap CI, {N_BOOT} resamples]. all = the 6,285 classes NASLib scored; "
            f"test = the held-out half (split seed {SPLIT_SEED}: {n_train} train / {n_test} test).\n"
        )
    ]
    for eval_set, title in (("all", "Over all 6,285 classes (no fitting)"), ("test", "On the held-out half")):
        sub = table[table["eval_set"] == eval_set]
        out.append(
            f"\n### {title}\n\n| score | kind | "
            + " | ".join(c[2] for c in cols)
            + " |\n|---|---|"
            + "---|" * len(cols)
        )
        for score in dict.fromkeys(sub["score"]):
            s = sub[sub["score"] == score]
            cells = []
            for d, m, _ in cols:
                r = s[(s["dataset"] == d) & (s["metric"] == m)]
                cells.append(_cell(r.iloc[0]) if len(r) else "")
            out.append(f"| {score} | {s['kind'].iloc[0]} | " + " | ".join(cells) + " |")
    extra = table[table["eval_set"] == "all_6466"]
    if len(extra):
        out.append("\n### Closed-form cell #params over all 6,466 classes\n\n| target | τ |\n|---|---|")
        for r in extra.itertuples(index=False):
            out.append(f"| {r.dataset} {r.metric} | {_cell(r)} |")
    g = seeds.groupby("method")["kendall_tau_test"]
    out.append(
        "\n### Learned fits over 10 split seeds (test τ vs C10 PGD-8)\n\n| method | mean | sd | min | max |\n"
        "|---|---|---|---|---|"
    )
    for m, v in g:
        out.append(f"| {m} | {v.mean():.3f} | {v.std(ddof=1):.3f} | {v.min():.3f} | {v.max():.3f} |")
    out.append("\n### Fitted models (split seed 0 unless stated)\n")
    for k, c in models.items():
        w = (
            ", ".join(f"{col}{'(-)' if s < 0 else ''}: {wt:+.3f}" for col, s, wt in zip(c.columns, c.signs, c.weights))
            if c.method != "quadratic"
            else f"{len(c.weights)} weights (see models.json)"
        )
        out.append(
            f"- `{k}` ({c.method}, n_train {c.info.get('n_train')}, train τ {c.info.get('train_tau', float('nan')):.3f}): {w}"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
