"""Kendall τ of the new proxies (and the AZ-NAS aggregation) against NAS-RobBench-201 CIFAR-10
PGD-8 and clean accuracy, on whatever the resumable store of the background run holds so far.

Reads ``store/<proxy>`` (the stores ``robntk proxies`` writes; safe while the run is appending;
each column on the archs its store holds, n per row), adds ``swap_reg`` post hoc (``swap`` × exp(−(P − μ)²/σ), P the
parameter count in thousands, the defaults of :func:`robntk.proxies.meco_swap.swap_reg`) and
``az_nas`` (:func:`robntk.proxies.az_nas.az_nas_rank` over the scored archs, a NaN component
ranked last as the reference's −∞) and ``zcprob`` (from its stored terms), and writes
``correlation.csv`` / ``correlation.md`` / ``tau_heatmap.png``: τ-b (95 % bootstrap CIs, 200
resamples, n stated) against every NAS-RobBench-201 target (clean, FGSM, PGD-3, PGD-8, AutoAttack
on CIFAR-10, CIFAR-100, ImageNet16-120) and NB201 standard-training CIFAR-10 accuracy, beside
NAS-Bench-Suite-Zero's NASLib proxies (``naslib_*``) and the NTK family (1,000 archs).

    ROBNTK_DATA=../shared/data nice -n 19 python experiments/proxies_modern/correlate.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis.correlation import bootstrap_ci, correlation_table, kendall_tau
from robntk.core.figures import tau_heatmap
from robntk.data.benchmark import RobBench, load_nb201_accuracy
from robntk.data.suite_zero import PROXIES as NASLIB_PROXIES
from robntk.data.suite_zero import load_suite_zero
from robntk.jobs.store import ResultStore
from robntk.nb201.network import TinyNetwork
from robntk.proxies import param_count
from robntk.proxies.az_nas import az_nas_rank
from robntk.proxies.meco_swap import SWAP_MU, SWAP_SIGMA
from robntk.proxies.robust import ZCPROB_T, zcprob_from_terms

HERE = Path(__file__).resolve().parent


def load_store(store: Path) -> pd.DataFrame:
    """One column per proxy sub-store, indexed by nb201_index: every arch any sub-store holds
    (NaN where a proxy has not reached it yet; the τ of a column uses the archs it holds)."""
    cols = {}
    for d in sorted(p for p in store.iterdir() if (p / "header.json").is_file()):
        rows = ResultStore.open(d, create=False).read().rows
        cols[d.name] = pd.Series({i: r[d.name] for i, r in rows.items()}, dtype=np.float64)
    return pd.DataFrame(cols).sort_index()


def add_derived(df: pd.DataFrame, bench: RobBench) -> pd.DataFrame:
    """Add ``swap_reg`` (from ``swap`` and the parameter count), ``az_nas`` (AZ-NAS's rank
    aggregation over the archs of ``df``) and ``zcprob`` (Eq. 4 from its two stored terms at
    ``ZCPROB_T``) where their inputs are present."""
    df = df.copy()
    net = TinyNetwork.for_dataset("cifar10")
    if "swap" in df:
        P = np.array([int(param_count(net, bench.space.ops(int(i)))) / 1e3 for i in df.index])
        df["swap_reg"] = df["swap"] * np.exp(-((P - SWAP_MU) ** 2) / SWAP_SIGMA)
    comps = ["az_expressivity", "az_progressivity", "az_trainability"]
    if {*comps, "flops"} <= set(df):  # the reference scores an undefined (NaN) component as -inf
        have = df[comps + ["flops"]].notna().any(axis=1) & df["flops"].notna()
        sub = df.loc[have]
        df.loc[have, "az_nas"] = az_nas_rank(sub.assign(**{c: sub[c].fillna(-np.inf) for c in comps}))
    if {"zcprob_ntk", "zcprob_curv"} <= set(df):
        df["zcprob"] = zcprob_from_terms(df["zcprob_ntk"], df["zcprob_curv"], ZCPROB_T)
    return df


#: Peer rows beside the new proxies: NAS-Bench-Suite-Zero's NASLib proxies (all its classes) and the
#: NTK family in the default protocol (1,000 archs of experiments/protocol's base level).
NTK_COLUMNS = ("lambda_min_clean", "lambda_min_all_eps8_beta0.5", "lambda_min_robust_all_eps8_beta0.5")
NTK_SCORES = HERE.parent / "protocol" / "scores_base.csv"


def with_peers(df: pd.DataFrame, data_dir) -> pd.DataFrame:
    """``df`` joined with the peer rows (``naslib_<proxy>``, the NTK columns), NaN where absent."""
    naslib = load_suite_zero("cifar10", data_dir, per_class="smallest")[list(NASLIB_PROXIES)].add_prefix("naslib_")
    out = df.join(naslib, how="left")
    if NTK_SCORES.is_file():
        out = out.join(pd.read_csv(NTK_SCORES).set_index("nb201_index")[list(NTK_COLUMNS)], how="left")
    return out


def nb201_rows(df: pd.DataFrame, cols, data_dir, n_boot: int) -> pd.DataFrame:
    """τ-b [bootstrap CI] of each column against NB201 200-epoch standard-training CIFAR-10 test
    accuracy (the other benchmark), in :func:`correlation_table`'s long format."""
    acc = load_nb201_accuracy(data_dir)["cifar10_nb201_test_acc"].reindex(df.index).to_numpy()
    rows = []
    for c in cols:
        x = df[c].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(acc)
        lo, hi = bootstrap_ci(x[ok], acc[ok], n_boot=n_boot)
        rows.append({"score": c, "kind": "score", "dataset": "nb201_standard_training", "metric": "test_acc",
                     "n": int(ok.sum()), "kendall_tau": kendall_tau(x[ok], acc[ok]),
                     "kendall_tau_ci_low": lo, "kendall_tau_ci_high": hi})  # fmt: skip
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=str(HERE / "store"))
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--n-boot", type=int, default=200)
    a = ap.parse_args(argv)
    df = load_store(Path(a.store))
    bench = RobBench.load(a.data_dir)
    df = add_derived(df, bench)
    df.index.name = "nb201_index"
    cols = [c for c in df.columns if c != "vkdnw_dim" and df[c].notna().sum() >= 30]  # skip stray partial columns
    df = with_peers(df, a.data_dir)
    peers = [c for c in df.columns if c.startswith("naslib_") or c in NTK_COLUMNS]
    tab = correlation_table(df, bench, n_boot=a.n_boot, columns=cols + peers)
    tab = pd.concat([tab, nb201_rows(df, cols + peers, a.data_dir, a.n_boot)], ignore_index=True)
    tab.to_csv(HERE / "correlation.csv", index=False)
    tau_heatmap(tab[tab.kind == "score"], HERE / "tau_heatmap.png",
                title="Kendall τ-b: new proxies, NASLib (Suite-Zero) and NTK (1,000 archs) rows")  # fmt: skip
    wide = tab.assign(target=tab.dataset + " " + tab.metric).pivot_table(
        index="score", columns="target", values="kendall_tau", sort=False
    )
    n = tab.groupby("score", sort=False)["n"].max()
    md = ["| score | n | " + " | ".join(wide.columns) + " |", "|---|---|" + "---|" * wide.shape[1]]
    md += [f"| {k} | {n[k]} | " + " | ".join(f"{v:.3f}" for v in r) + " |" for k, r in wide.iterrows()]
    (HERE / "correlation.md").write_text(
        "Kendall τ-b vs every NAS-RobBench-201 target and NB201 standard-training accuracy (95 % CIs "
        f"in correlation.csv, {a.n_boot} resamples); n = archs with the score defined.\n\n" + "\n".join(md) + "\n"
    )
    (HERE / "correlation.json").write_text(
        json.dumps(
            {"n_archs_in_store": len(df), "n_with_every_proxy": int(df[cols].notna().all(axis=1).sum()), **tab.attrs},
            indent=1,
        )
    )
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
