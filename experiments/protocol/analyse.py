"""Analyse the protocol study (``run_protocol.py``): τ of every score per factor level, the
paper's claims with paired bootstrap CIs, and score stability across init seeds.

Usage::

    python experiments/protocol/analyse.py --data-dir ../shared/data

Reads ``scores_<level>.csv``; writes ``tau_by_level.csv``, ``claims.csv``, ``bn_mode_paired.csv``,
``stability.csv``,
``tau_by_level.png``, ``tau_vs_beta.png`` and ``summary.md`` (every number with its n).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robntk.analysis.correlation import baselines, bootstrap_ci, correlation_table, kendall_tau, paired_tau_difference  # noqa: E402
from robntk.core.figures import new_figure  # noqa: E402
from robntk.core.paths import atomic_save, atomic_write  # noqa: E402
from robntk.core.registry import AA_METRIC, CLEAN_METRIC, PGD8_METRIC  # noqa: E402
from robntk.core.tables import write_table  # noqa: E402
from robntk.data.benchmark import RobBench  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_protocol import BETAS, LEVELS  # noqa: E402

KERNELS = ["clean", "robust_eps8", "twice_eps8", "all_eps8_beta0.5", "robust_all_eps8_beta0.5"]
KEY = [f"lambda_min_{k}" for k in KERNELS] + [f"cond_{k}" for k in KERNELS] + ["trace_clean", "logdet_clean"]
#: The eps3 level's kernels are tagged eps3: its columns are renamed to the eps8 names (same role).
RENAME = {"eps3": ("eps3", "eps8")}


def partial_tau(x, y, z) -> float:
    """Kendall's partial τ of x and y given z: (τxy − τxz·τyz) / sqrt((1 − τxz²)(1 − τyz²))."""
    txy, txz, tyz = kendall_tau(x, y), kendall_tau(x, z), kendall_tau(y, z)
    return (txy - txz * tyz) / np.sqrt((1 - txz**2) * (1 - tyz**2))


def partial_tau_ci(x, y, z, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """:func:`partial_tau` with a 95% percentile bootstrap CI over archs (resampled jointly)."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    vals = np.array([partial_tau(x[i], y[i], z[i]) for i in idx])
    lo, hi = np.nanquantile(vals, [0.025, 0.975])
    return partial_tau(x, y, z), float(lo), float(hi)


#: The scoring draws on the same first 100 archs: init seeds 0, 1, 2 (weights, batch, attack starts)
#: and attack seeds 1, 2 on init seed 0's weights and batch.
DRAWS = ("base", "seed1", "seed2", "attack1", "attack2")


def claims_with_draws(levels, bench, pairs, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each claim's τ(a) − τ(b) on every scoring draw of :data:`DRAWS` (their common archs), and a
    95 % two-stage bootstrap CI that includes the draw spread: each resample draws the scoring draws
    with replacement and the archs with replacement (paired: the same archs for a and b and every
    draw), and averages τ(a) − τ(b) over the resampled draws. A verdict stands only if this CI
    excludes 0."""
    present = [d for d in DRAWS if d in levels]
    keys = sorted(set.intersection(*(set(levels[d]["nb201_index"]) for d in present)))
    cols = {c for a, b, _ in pairs for c in (a, b) if c != "num_params"}
    X = {d: levels[d].set_index("nb201_index").loc[keys, sorted(cols)] for d in present}
    nparams = baselines(pd.Series(keys), bench.space)["num_params"].to_numpy()
    rng = np.random.default_rng(seed)
    dsel = rng.integers(0, len(present), size=(n_boot, len(present)))
    asel = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    rows = []
    for a, b, m in pairs:
        acc = bench.values(np.asarray(keys), "cifar10", m)

        def col(d, c):
            return nparams if c == "num_params" else X[d][c].to_numpy()

        per = [kendall_tau(col(d, a), acc) - kendall_tau(col(d, b), acc) for d in present]
        boot = np.empty(n_boot)
        for r in range(n_boot):
            i = asel[r]
            diff = [kendall_tau(col(d, a)[i], acc[i]) - kendall_tau(col(d, b)[i], acc[i]) for d in present]
            boot[r] = np.mean(np.asarray(diff)[dsel[r]])
        lo, hi = np.nanquantile(boot, [0.025, 0.975])
        verdict = "a > b" if lo > 0 else ("a < b" if hi < 0 else "no difference resolved")
        rows.append(dict(a=a, b=b, metric=m, n_archs=len(keys), n_draws=len(present),
                         **{f"diff_{d}": v for d, v in zip(present, per)},
                         diff_mean=float(np.mean(per)), diff_min=float(np.min(per)), diff_max=float(np.max(per)),
                         ci_low=float(lo), ci_high=float(hi), verdict=verdict))  # fmt: skip
    return pd.DataFrame(rows)


def load(name):
    p = HERE / f"scores_{name}.csv"
    if not p.is_file():
        return None
    df = pd.read_csv(p)
    if name in RENAME:
        a, b = RENAME[name]
        df.columns = [c.replace(a, b) for c in df.columns]
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args(argv)
    bench = RobBench.load(args.data_dir)
    levels = {n: df for n in LEVELS if (df := load(n)) is not None and len(df) >= 10}
    rows = []
    for name, df in levels.items():
        cols = [c for c in KEY if c in df.columns]
        t = correlation_table(df, bench, columns=cols, n_boot=args.n_boot, seed=0, include_baselines=True)
        t.insert(0, "level", name)
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    write_table(table, HERE / "tau_by_level.csv", {"levels": {n: LEVELS[n][0] for n in levels}, "n_boot": args.n_boot})
    lines = [
        "# Protocol study — first results",
        "",
        "Kendall τ-b vs CIFAR-10 PGD-8 (n archs per level):",
        "",
        "| level | n | " + " | ".join(c.replace("lambda_min_", "λ_min ") for c in KEY[:5]) + " | #params |",
        "|---" * 8 + "|",
    ]
    c10 = table[(table.dataset == "cifar10") & (table.metric == PGD8_METRIC)]
    for name in levels:
        sub = c10[c10.level == name].set_index("score")
        cells = [f"{sub.loc[c, 'kendall_tau']:+.3f}" if c in sub.index else "—" for c in KEY[:5] + ["num_params"]]
        lines.append(f"| {name} | {int(sub['n'].iloc[0])} | " + " | ".join(cells) + " |")
    # claims on the base level (paired bootstrap, same archs)
    claims = []
    base = levels.get("base")
    if base is not None:
        acc = {
            m: bench.values(base["nb201_index"].to_numpy(), "cifar10", m)
            for m in (CLEAN_METRIC, PGD8_METRIC, AA_METRIC)
        }
        pairs = [
            ("lambda_min_robust_eps8", "lambda_min_clean", PGD8_METRIC),
            ("lambda_min_robust_eps8", "lambda_min_clean", AA_METRIC),
            ("lambda_min_robust_all_eps8_beta0.5", "lambda_min_clean", PGD8_METRIC),
            ("lambda_min_robust_all_eps8_beta0.5", "lambda_min_clean", AA_METRIC),
            ("lambda_min_robust_all_eps8_beta0.5", "lambda_min_robust_eps8", PGD8_METRIC),
            ("lambda_min_twice_eps8", "lambda_min_robust_eps8", PGD8_METRIC),
            ("lambda_min_twice_eps8", "lambda_min_robust_eps8", AA_METRIC),
            ("lambda_min_all_eps8_beta0.5", "lambda_min_clean", CLEAN_METRIC),
            ("lambda_min_robust_all_eps8_beta0.5", "num_params", PGD8_METRIC),
            ("lambda_min_clean", "num_params", PGD8_METRIC),
        ]
        base = base.assign(num_params=baselines(base["nb201_index"], bench.space)["num_params"].to_numpy())
        for a, b, m in pairs:
            d, lo, hi = paired_tau_difference(base[a], base[b], acc[m], n_boot=1000, seed=0)
            verdict = "a > b" if lo > 0 else ("a < b" if hi < 0 else "no difference resolved")
            pt, plo, phi = partial_tau_ci(base[a], acc[m], base[b])
            qt, qlo, qhi = partial_tau_ci(base[b], acc[m], base[a])
            claims.append(
                dict(
                    a=a,
                    b=b,
                    metric=m,
                    n=len(base),
                    tau_a=kendall_tau(base[a], acc[m]),
                    tau_b=kendall_tau(base[b], acc[m]),
                    diff=d,
                    ci_low=lo,
                    ci_high=hi,
                    verdict=verdict,
                    partial_tau_a_given_b=pt,
                    partial_ci_low=plo,
                    partial_ci_high=phi,
                    partial_tau_b_given_a=qt,
                    partial_b_ci_low=qlo,
                    partial_b_ci_high=qhi,
                    tau_a_b=kendall_tau(base[a], base[b]),
                )
            )
        write_table(pd.DataFrame(claims), HERE / "claims.csv", {"level": "base", "n_boot": 1000})
        if all(d in levels for d in DRAWS):
            cd = claims_with_draws(levels, bench, pairs)
            write_table(cd, HERE / "claims_draws.csv", {"draws": list(DRAWS), "n_boot": 1000, "seed": 0,
                        "bootstrap": "two-stage: draws and archs resampled with replacement, paired"})  # fmt: skip
            lines += ["", f"Claims with the spread of the scoring draws ({', '.join(DRAWS)}; their common "
                      f"{int(cd['n_archs'].iloc[0])} archs; two-stage bootstrap 95% CI over draws and archs):", "",
                      "| a | b | metric | τ(a) − τ(b) per draw | mean [CI] | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
            for r in cd.itertuples():
                per = ", ".join(f"{getattr(r, 'diff_' + d):+.3f}" for d in DRAWS)
                lines.append(f"| {r.a} | {r.b} | {r.metric} | {per} | {r.diff_mean:+.3f} "
                             f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {r.verdict} |")  # fmt: skip
        fig = new_figure((6, 4))
        ax = fig.subplots()
        for kern, metric, style in (("all", CLEAN_METRIC, "-o"), ("robust_all", PGD8_METRIC, "-s")):
            taus = [kendall_tau(base[f"lambda_min_{kern}_eps8_beta{b:g}"], acc[metric]) for b in BETAS]
            ax.plot(BETAS, taus, style, label=f"λ_min {'K_all' if kern == 'all' else 'K̃_all'}(β) vs C10 {metric}")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("β")
        ax.set_ylabel("Kendall τ-b")
        ax.set_title(f"base level (train-mode BN), n={len(base)}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        atomic_save(HERE / "tau_vs_beta.png", lambda p: fig.savefig(p, dpi=130))
        lines += [
            "",
            "Claims (base level, paired bootstrap 95% CI of τ(a) − τ(b), C10):",
            "",
            "| a | b | metric | τ(a) | τ(b) | diff [CI] | verdict | τ(a, b) | partial τ(a, acc given b) [CI] "
            "| partial τ(b, acc given a) [CI] |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in claims:
            lines.append(
                f"| {c['a']} | {c['b']} | {c['metric']} | {c['tau_a']:+.3f} | {c['tau_b']:+.3f} | "
                f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['verdict']} | "
                f"{c['tau_a_b']:+.3f} | {c['partial_tau_a_given_b']:+.3f} [{c['partial_ci_low']:+.3f}, "
                f"{c['partial_ci_high']:+.3f}] | {c['partial_tau_b_given_a']:+.3f} "
                f"[{c['partial_b_ci_low']:+.3f}, {c['partial_b_ci_high']:+.3f}] |"
            )
    # every level against the base level on the same archs (the level's prefix), paired bootstrap
    if base is not None:
        lv_rows = []
        for name, df in levels.items():
            if name == "base":
                continue
            m = base.merge(df, on="nb201_index", suffixes=("_base", "_level"))
            accm = bench.values(m["nb201_index"].to_numpy(), "cifar10", PGD8_METRIC)
            for c in (KEY[0], KEY[4]):
                d, lo, hi = paired_tau_difference(m[c + "_level"], m[c + "_base"], accm, n_boot=1000, seed=0)
                lv_rows.append(
                    dict(
                        level=name,
                        score=c,
                        n=len(m),
                        tau_level=kendall_tau(m[c + "_level"], accm),
                        tau_base=kendall_tau(m[c + "_base"], accm),
                        diff=d,
                        ci_low=lo,
                        ci_high=hi,
                    )
                )
        if lv_rows:
            write_table(
                pd.DataFrame(lv_rows), HERE / "level_vs_base.csv", {"metric": f"cifar10 {PGD8_METRIC}", "n_boot": 1000}
            )
            lines += [
                "",
                "Each level vs the base level on the same archs (C10 PGD-8; τ(level) − τ(base), paired 95% CI):",
                "",
                "| level | score | n | τ level | τ base | diff [CI] |",
                "|---|---|---|---|---|---|",
            ]
            for r in lv_rows:
                lines.append(
                    f"| {r['level']} | {r['score']} | {r['n']} | {r['tau_level']:+.3f} | {r['tau_base']:+.3f} | "
                    f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] |"
                )
    # BN mode: train (base) vs eval on the same archs, paired bootstrap
    if base is not None and "bn_eval" in levels:
        m = base.merge(levels["bn_eval"], on="nb201_index", suffixes=("_train", "_eval"))
        accm = {mt: bench.values(m["nb201_index"].to_numpy(), "cifar10", mt) for mt in (CLEAN_METRIC, PGD8_METRIC)}
        bn_rows = []
        for c in KEY[:5]:
            for mt, acc_m in accm.items():
                d, lo, hi = paired_tau_difference(m[c + "_train"], m[c + "_eval"], acc_m, n_boot=1000, seed=0)
                bn_rows.append(
                    dict(
                        score=c,
                        metric=mt,
                        n=len(m),
                        tau_train=kendall_tau(m[c + "_train"], acc_m),
                        tau_eval=kendall_tau(m[c + "_eval"], acc_m),
                        diff=d,
                        ci_low=lo,
                        ci_high=hi,
                    )
                )
        write_table(pd.DataFrame(bn_rows), HERE / "bn_mode_paired.csv", {"levels": ["base", "bn_eval"], "n_boot": 1000})
        lines += [
            "",
            f"BN mode, paired on the same {len(m)} archs (C10; τ(train) − τ(eval), 95% paired CI):",
            "",
            "| score | metric | τ train | τ eval | diff [CI] |",
            "|---|---|---|---|---|",
        ]
        for r in bn_rows:
            lines.append(
                f"| {r['score']} | {r['metric']} | {r['tau_train']:+.3f} | {r['tau_eval']:+.3f} | "
                f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] |"
            )
    # the paper's β claim in numbers, and whether K̃2ε adds information over K̃ε (partial τ)
    if base is not None:
        beta_rows = [
            dict(
                beta=bt,
                kernel=kern,
                metric=mt,
                n=len(base),
                kendall_tau=kendall_tau(base[f"lambda_min_{kern}_eps8_beta{bt:g}"], acc[mt]),
            )
            for kern in ("all", "robust_all")
            for mt in (CLEAN_METRIC, PGD8_METRIC)
            for bt in BETAS
        ]
        write_table(pd.DataFrame(beta_rows), HERE / "tau_vs_beta.csv", {"level": "base"})
        lines += [
            "",
            "λ_min of the mixed kernels vs β (base level, C10; the β with the largest τ is read off "
            "the benchmark, so it is descriptive, not a tuned choice):",
            "",
            "| kernel | metric | β=0 | β=0.5 | β=1 | best β (τ) |",
            "|---|---|---|---|---|---|",
        ]
        bt = pd.DataFrame(beta_rows)
        for (kern, mt), g in bt.groupby(["kernel", "metric"], sort=False):
            g = g.set_index("beta")["kendall_tau"]
            lines.append(
                f"| {kern} | {mt} | {g[0.0]:+.3f} | {g[0.5]:+.3f} | {g[1.0]:+.3f} | {g.idxmax():g} ({g.max():+.3f}) |"
            )
    # stability: τ between draws on common archs (init seeds: weights, batch and attack; attack seeds only)
    stab = []
    for what, group in (("init seed", ("base", "seed1", "seed2")), ("attack seed", ("base", "attack1", "attack2"))):
        present = [n for n in group if n in levels]
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                m = levels[a].merge(levels[b], on="nb201_index", suffixes=("_a", "_b"))
                for c in KEY[:5]:
                    lo, hi = bootstrap_ci(m[c + "_a"], m[c + "_b"], n_boot=args.n_boot)
                    rel = np.abs(m[c + "_a"] - m[c + "_b"]) / np.abs(m[c + "_b"])
                    stab.append(
                        dict(
                            factor=what,
                            a=a,
                            b=b,
                            score=c,
                            n=len(m),
                            kendall_tau=kendall_tau(m[c + "_a"], m[c + "_b"]),
                            ci_low=lo,
                            ci_high=hi,
                            median_rel_change=float(np.nanmedian(rel)),
                        )
                    )
        # the mean over the draws (geometric mean, as robntk score --init-seeds/--attack-seeds) vs one draw
        if len(present) == 3:
            m = levels[present[0]][["nb201_index"] + KEY[:5]]
            for n in present[1:]:
                m = m.merge(levels[n][["nb201_index"] + KEY[:5]], on="nb201_index", suffixes=("", f"_{n}"))
            accm = bench.values(m["nb201_index"].to_numpy(), "cifar10", PGD8_METRIC)
            for c in KEY[:5]:
                v = np.stack([m[c]] + [m[f"{c}_{n}"] for n in present[1:]])
                gm = np.exp(np.log(np.where(v > 0, v, np.nan)).mean(0))
                d, lo, hi = paired_tau_difference(gm, m[c], accm, n_boot=1000, seed=0)
                stab.append(
                    dict(
                        factor=f"{what}: mean of 3 vs base",
                        a="geomean",
                        b="base",
                        score=c,
                        n=len(m),
                        kendall_tau=kendall_tau(gm, accm),
                        ci_low=lo,
                        ci_high=hi,
                        median_rel_change=np.nan,
                        tau_base=kendall_tau(m[c], accm),
                        diff=d,
                    )
                )
    if "float64" in levels and base is not None:
        m = base.merge(levels["float64"], on="nb201_index", suffixes=("_32", "_64"))
        for c in KEY[:5] + ["trace_clean"]:
            rel = np.abs(m[c + "_32"] - m[c + "_64"]) / np.abs(m[c + "_64"])
            stab.append(
                dict(
                    factor="float32 vs float64 (same weights, batch and attack key)",
                    a="base",
                    b="float64",
                    score=c,
                    n=len(m),
                    kendall_tau=kendall_tau(m[c + "_32"], m[c + "_64"]),
                    median_rel_change=float(np.nanmedian(rel)),
                    max_rel_change=float(np.nanmax(rel)),
                )
            )
    if stab:
        st = pd.DataFrame(stab)
        write_table(
            st, HERE / "stability.csv", {"what": "score stability across draws and precisions", "n_boot": args.n_boot}
        )
        lines += [
            "",
            "Stability (τ between two draws on the same archs; median relative change of the value):",
            "",
            "| factor | a | b | score | n | τ(a, b) or τ(mean, PGD-8) | median rel. change | max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in st.to_dict("records"):
            mx = r.get("max_rel_change", np.nan)
            lines.append(
                f"| {r['factor']} | {r['a']} | {r['b']} | {r['score']} | {r['n']} | {r['kendall_tau']:+.3f} | "
                f"{r['median_rel_change']:.2e} | {'' if pd.isna(mx) else f'{mx:.2e}'} |"
            )
    fig = new_figure((9, 4))
    ax = fig.subplots()
    names = list(levels)
    for k, c in enumerate(KEY[:5]):
        vals = [c10[(c10.level == n) & (c10.score == c)]["kendall_tau"].squeeze() for n in names]
        ax.plot(
            np.arange(len(names)) + 0.08 * k,
            [float(v) if np.size(v) else np.nan for v in vals],
            "o",
            label=c.replace("lambda_min_", "λ_min "),
        )
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("Kendall τ-b vs C10 PGD-8")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save(HERE / "tau_by_level.png", lambda p: fig.savefig(p, dpi=130))
    with atomic_write(HERE / "summary.md") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
