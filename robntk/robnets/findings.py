"""RobNets' three findings tested on NAS-RobBench-201.

RobNets (Guo et al., CVPR 2020, §4) reports, from ~1,000 one-shot-sampled DARTS-style cells:

1. *Densely connected patterns improve robustness.* Density (paper §4.2) is
   D = Σ_{(i,j),k} α_(i,j)^k / |E| — the share of switched-on (edge, op) slots. In NB201 every
   edge holds exactly one op, so two transfers are stated and both computed:
   ``density_connected`` = share of the 6 edges that are not ``none`` (connected edges), and
   ``density_param`` = share of edges with a parametrised op (1×1 or 3×3 conv), the NB201
   analogue of RobNets' "sep-conv on" slots.
2. *Under a small budget, convolutions on the direct edges help more.* NB201 has one direct
   edge from the cell input to the cell output, 0→3 (edge 3 in :data:`robntk.nb201.searchspace.EDGES`
   order). :func:`direct_edge_pairs` compares architectures of *equal parameter count* that
   differ only in where one convolution sits: arch A has a conv on the direct edge and op ``o``
   on edge e; arch B swaps the two ops (same op multiset, so the same parameter count).
   Because "direct edge" could also be read as "edge between consecutive nodes", the same test
   is available for any edge set (``direct=(0, 2, 5)`` = the chain 0→1→2→3).
3. *The FSP-matrix loss indicates robustness* (deeper cells: robust networks have lower loss):
   :mod:`robntk.robnets.fsp` (it trains networks).

:func:`run_density` and :func:`run_direct_edges` are the ``robntk robnets density`` /
``direct-edges`` jobs (configurations :class:`robntk.robnets.config.DensityConfig`,
:class:`robntk.robnets.config.DirectEdgesConfig`); every table goes through
:func:`robntk.core.tables.write_table` and every JSON file through
:func:`robntk.core.tables.write_json`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robntk.analysis.correlation import bootstrap_ci, kendall_tau
from robntk.core import paths
from robntk.core.tables import check_writable, write_json, write_table
from robntk.nb201.searchspace import EDGES, OPS, is_connected, num_cell_params, parse_arch_str
from robntk.robnets.config import DensityConfig, DirectEdgesConfig

CONV = ("nor_conv_1x1", "nor_conv_3x3")
DIRECT_EDGE = 3  # 0 → 3
METRICS = ("val_acc", "val_fgsm_8.0_acc", "val_pgd_8.0_acc")
#: Colour-blind-safe palette (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


# --------------------------------------------------------------------------- finding 1: density
def nb201_density(arch, kind: str = "connected") -> float:
    """Density of an NB201 cell: share of the 6 edges that are not ``none`` (``'connected'``)
    or that hold a conv (``'param'``).

    Raises:
        ValueError: unknown kind; malformed arch.
    """
    ops = parse_arch_str(arch) if isinstance(arch, str) else tuple(arch)
    if kind == "connected":
        return sum(op != "none" for op in ops) / len(EDGES)
    if kind == "param":
        return sum(op in CONV for op in ops) / len(EDGES)
    raise ValueError(f"unknown density kind {kind!r}; allowed: connected, param")


def density_table(bench, datasets: Sequence[str] = ("cifar10",)) -> pd.DataFrame:
    """One row per isomorphism representative (6,466): arch_str, both densities, the cell's
    parameter count at C=16, and the benchmark's clean/FGSM-8/PGD-8 accuracies."""
    space = bench.space
    reps = sorted(int(r) for r in np.unique(bench.isomorph))
    rows = []
    for r in reps:
        a = space.arch_str(r)
        rows.append(
            {
                "nb201_index": r,
                "arch_str": a,
                "density_connected": nb201_density(a, "connected"),
                "density_param": nb201_density(a, "param"),
                "cell_params": num_cell_params(a, 16),
                "connected": is_connected(a),
            }
        )
    df = pd.DataFrame(rows)
    for ds in datasets:
        for m in METRICS:
            df[f"{ds}_{m}"] = bench.values(df["nb201_index"].to_numpy(), ds, m)
    return df


def tau_table(
    df: pd.DataFrame, scores: Sequence[str], targets: Sequence[str], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Kendall τ-b with a 95% percentile-bootstrap CI of every score column vs every target column."""
    rows = []
    for s in scores:
        for t in targets:
            lo, hi = bootstrap_ci(df[s].to_numpy(float), df[t].to_numpy(float), n_boot=n_boot, seed=seed)
            rows.append(
                {
                    "score": s,
                    "target": t,
                    "n": int(df[[s, t]].dropna().shape[0]),
                    "kendall_tau": kendall_tau(df[s].to_numpy(float), df[t].to_numpy(float)),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


def density_figure(df: pd.DataFrame, path: str | Path, dataset: str = "cifar10") -> Path:
    """Mean ± sd of clean and PGD-8 accuracy per density level, both density definitions."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind, title in zip(
        axes, ("density_connected", "density_param"), ("connected edges (not none)", "parametrised edges (conv)")
    ):
        for (m, label), color, dx in zip(
            ((f"{dataset}_val_acc", "clean"), (f"{dataset}_val_pgd_8.0_acc", "PGD-8")), PALETTE, (-0.008, 0.008)
        ):
            g = df.groupby(kind)[m].agg(["mean", "std", "count"]).reset_index()
            ax.errorbar(
                g[kind] + dx, g["mean"] * 100, yerr=g["std"] * 100, marker="o", capsize=3, color=color, label=label
            )
        ax.set_xlabel(f"density: share of {title}")
        ax.set_title(f"NAS-RobBench-201 {dataset}, 6,466 cells", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%) — mean ± sd per level")
    axes[0].legend()
    out = Path(path)
    paths.atomic_save(out, lambda tmp: fig.savefig(tmp, dpi=130))
    return out


# --------------------------------------------------------------------------- finding 2: direct edges
def direct_edge_pairs(
    bench,
    direct: Sequence[int] = (DIRECT_EDGE,),
    dataset: str = "cifar10",
    metrics: Sequence[str] = ("val_acc", "val_pgd_8.0_acc"),
) -> pd.DataFrame:
    """All equal-parameter pairs that differ only in where one conv sits.

    For every cell A (all 15,625) with a conv on a ``direct`` edge d and a non-conv op on a
    non-direct edge e, B = A with the ops of d and e swapped. Pairs are reduced to distinct
    (representative A, representative B) and kept only when both cells are connected; the
    first cells found for a pair are kept as ``a_cell``/``b_cell`` (equal ``cell_params``). The
    benchmark values are those of the representatives (an isomorphism class shares one value;
    a conv on a dead edge counts in ``cell_params`` but not in the function). ``budget``
    = number of conv edges (the same in A and B); ``delta_<metric>`` = metric(A) − metric(B)
    (positive: the conv on the direct edge is better).

    Raises:
        ValueError: direct edges outside 0..5 or covering all edges.
    """
    direct = tuple(sorted(set(int(d) for d in direct)))
    if not direct or any(d not in range(len(EDGES)) for d in direct) or len(direct) == len(EDGES):
        raise ValueError(f"direct must be a proper, non-empty subset of edges 0..5, got {direct!r}")
    space = bench.space
    other = [e for e in range(len(EDGES)) if e not in direct]
    seen = set()
    rows = []
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        for d in direct:
            if ops[d] not in CONV:
                continue
            for e in other:
                if ops[e] in CONV:
                    continue
                b = list(ops)
                b[d], b[e] = ops[e], ops[d]
                if not (is_connected(ops) and is_connected(b)):
                    continue
                ia, ib = space.index_of(ops), space.index_of(b)
                ra, rb = bench.representative(ia), bench.representative(ib)
                if ra == rb or (ra, rb) in seen:
                    continue
                seen.add((ra, rb))
                rows.append(
                    {
                        "a": ra,
                        "b": rb,
                        "a_cell": ia,
                        "b_cell": ib,
                        "budget": sum(o in CONV for o in ops),
                        "conv": ops[d],
                        "moved_to_edge": e,
                        "other_op": ops[e],
                        "cell_params": num_cell_params(ops, 16),
                    }
                )
    df = pd.DataFrame(rows)
    for m in metrics:
        df[f"delta_{m}"] = bench.values(df["a"].to_numpy(), dataset, m) - bench.values(df["b"].to_numpy(), dataset, m)
    return df


def summarize_pairs(
    df: pd.DataFrame, metric: str = "val_pgd_8.0_acc", n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Per budget (conv edges): pairs, mean Δ (percentage points) with a bootstrap 95% CI, and the
    share of pairs where the direct placement wins (Δ > 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for budget, g in df.groupby("budget"):
        d = g[f"delta_{metric}"].dropna().to_numpy() * 100
        boot = rng.choice(d, size=(n_boot, len(d)), replace=True).mean(axis=1) if len(d) > 1 else np.array([np.nan])
        out.append(
            {
                "budget": int(budget),
                "pairs": len(d),
                "mean_delta_pp": float(d.mean()),
                "ci_low": float(np.quantile(boot, 0.025)),
                "ci_high": float(np.quantile(boot, 0.975)),
                "direct_wins": float(np.mean(d > 0)),
                "median_delta_pp": float(np.median(d)),
            }
        )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- the jobs
#: The three benchmark datasets of finding 1.
DENSITY_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: Score columns of finding 1's τ table.
DENSITY_SCORES = ("density_connected", "density_param", "cell_params")
DENSITY_DEFINITIONS = {
    "density_connected": "share of the 6 edges that are not none",
    "density_param": "share of the 6 edges holding nor_conv_1x1 or nor_conv_3x3",
}


def run_density(cfg: DensityConfig, out_dir: str | Path, bench) -> pd.DataFrame:
    """Finding 1 (``robntk robnets density``): the density table of the 6,466 representatives,
    τ of both densities and the cell parameter count vs clean / PGD-8 accuracy on the three
    datasets (``density_tau.csv``), mean/sd/count per density level on CIFAR-10
    (``density_levels_connected.csv``, ``density_levels_param.csv``), ``density.png`` and
    ``density_config.json`` in ``out_dir``.

    Args:
        cfg: the configuration. out_dir: output directory. bench: :class:`robntk.data.benchmark.RobBench`.

    Returns:
        The τ table (score, target, n, kendall_tau, ci_low, ci_high).

    Raises:
        PermissionError: ``out_dir`` not writable (checked first).
    """
    out = check_writable(Path(out_dir), "--out")
    df = density_table(bench, DENSITY_DATASETS)
    targets = [f"{ds}_{m}" for ds in DENSITY_DATASETS for m in ("val_acc", "val_pgd_8.0_acc")]
    tab = tau_table(df, list(DENSITY_SCORES), targets, n_boot=cfg.n_boot, seed=cfg.seed)
    cols = ["cifar10_val_acc", "cifar10_val_pgd_8.0_acc"]
    write_table(tab, out / "density_tau.csv")
    for kind in ("connected", "param"):
        levels = df.groupby(f"density_{kind}")[cols].agg(["mean", "std", "count"])
        write_table(levels, out / f"density_levels_{kind}.csv", index=True)
    density_figure(df, out / "density.png")
    write_json(
        {
            "command": "robntk robnets density",
            "config": cfg.to_dict(),
            "n_boot": cfg.n_boot,
            "n_archs": len(df),
            "definitions": DENSITY_DEFINITIONS,
        },
        out / "density_config.json",
    )
    return tab


def run_direct_edges(cfg: DirectEdgesConfig, out_dir: str | Path, bench) -> dict[str, Any]:
    """Finding 2 (``robntk robnets direct-edges``): the equal-parameter pairs of
    :func:`direct_edge_pairs` for ``cfg.direct``, summarised per budget for PGD-8 and clean
    accuracy (``direct_edges_<tag>_<metric>.csv``), Δ PGD-8 per budget and conv
    (``direct_edges_<tag>_by_conv.csv``) and ``direct_edges_<tag>_config.json``, tag = the edge
    ids joined by ``_``.

    Returns:
        ``{'pairs': n, 'summaries': {metric: DataFrame}, 'by_conv': DataFrame}``.

    Raises:
        PermissionError: ``out_dir`` not writable (checked first).
    """
    out = check_writable(Path(out_dir), "--out")
    pairs = direct_edge_pairs(bench, cfg.direct, dataset=cfg.dataset)
    tag = "_".join(map(str, cfg.direct))
    res = {}
    for m in ("val_pgd_8.0_acc", "val_acc"):
        res[m] = summarize_pairs(pairs, m, n_boot=cfg.n_boot, seed=cfg.seed)
        write_table(res[m], out / f"direct_edges_{tag}_{m}.csv")
    by_conv = pairs.groupby(["budget", "conv"])["delta_val_pgd_8.0_acc"].agg(["count", "mean"]).reset_index()
    by_conv["mean"] *= 100
    write_table(by_conv, out / f"direct_edges_{tag}_by_conv.csv")
    write_json(
        {
            "command": "robntk robnets direct-edges --direct " + " ".join(map(str, cfg.direct)),
            "config": cfg.to_dict(),
            "direct_edges": list(cfg.direct),
            "pairs": len(pairs),
            "dataset": cfg.dataset,
        },
        out / f"direct_edges_{tag}_config.json",
    )
    return {"pairs": len(pairs), "summaries": res, "by_conv": by_conv}
