"""Kendall τ of the new proxies (and the AZ-NAS aggregation) against NAS-RobBench-201 CIFAR-10
PGD-8 and clean accuracy, on whatever the resumable store of the background run holds so far.

Reads ``store/<proxy>`` (the stores ``robntk proxies`` writes; safe while the run is appending;
each column on the archs its store holds, n per row), adds ``swap_reg`` post hoc (``swap`` × exp(−(P − μ)²/σ), P the
parameter count in thousands, the defaults of :func:`robntk.proxies.meco_swap.swap_reg`) and
``az_nas`` (:func:`robntk.proxies.az_nas.az_nas_rank` over the scored archs, a NaN component
ranked last as the reference's −∞) and ``zcprob`` (from its stored terms), and writes
``correlation.csv`` / ``correlation.md`` (τ-b with 95 % bootstrap CIs, 200 resamples, n stated).

    ROBNTK_DATA=../shared/data nice -n 19 python experiments/proxies_modern/correlate.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis.correlation import correlation_table
from robntk.data.benchmark import RobBench
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
    tab = correlation_table(
        df, bench, datasets=["cifar10"], metrics=["val_pgd_8.0_acc", "val_acc"], n_boot=a.n_boot, columns=cols
    )
    tab.to_csv(HERE / "correlation.csv", index=False)
    show = tab[["score", "kind", "metric", "n", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]]
    md = ["| " + " | ".join(show.columns) + " |", "|" + "---|" * show.shape[1]]
    md += ["| " + " | ".join(str(v) for v in r) + " |" for r in show.round(3).itertuples(index=False)]
    (HERE / "correlation.md").write_text("\n".join(md) + "\n")
    (HERE / "correlation.json").write_text(
        json.dumps(
            {"n_archs_in_store": len(df), "n_with_every_proxy": int(df.notna().all(axis=1).sum()), **tab.attrs},
            indent=1,
        )
    )
    print(f"{len(df)} archs in the store, {int(df.notna().all(axis=1).sum())} with every proxy")
    print(show.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
