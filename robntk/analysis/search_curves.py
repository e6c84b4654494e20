"""What search runs found: incumbents, best-found curves with CIs, queries-to-threshold, and the figure.

The search harness over :class:`robntk.analysis.search.SearchResult` runs (the methods, the
landscape and the query counting live in :mod:`robntk.analysis.search`). The architecture a
method returns after t queries is the best queried one by the search criterion (earliest on
ties); :func:`incumbents` computes it for every t, :func:`curves` reports its value under any
metric (e.g. search by clean accuracy, report PGD-8 accuracy) as a mean with a Student-t CI over
seeds, :func:`queries_to_reach` counts the queries until a threshold is reached,
:func:`expected_best_random` is the exact expectation random search is checked against, and
:func:`plot_curves` draws the curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from robntk.analysis.search import Landscape, SearchResult

CURVE_COLUMNS: tuple[str, ...] = (
    "method",
    "criterion",
    "report",
    "queries",
    "n_seeds",
    "mean",
    "ci_low",
    "ci_high",
    "median",
)


def incumbents(queried: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Best-so-far architecture by ``values`` after each query (earliest on ties).

    Args:
        queried: int64 (n_seeds, budget) queried representatives, -1 padding.
        values: float64 (15,625,) criterion value per cell.

    Returns:
        int64 (n_seeds, budget): the incumbent after t+1 queries (-1 before the first query;
        after an early stop the last incumbent is carried on).
    """
    q = np.asarray(queried, dtype=np.int64)
    v = np.where(q >= 0, values[np.maximum(q, 0)], -np.inf)
    run_max = np.maximum.accumulate(v, axis=1)
    # position of the first occurrence of each running maximum
    is_new = np.concatenate([np.ones((q.shape[0], 1), bool), v[:, 1:] > run_max[:, :-1]], axis=1) & (q >= 0)
    pos = np.where(is_new, np.arange(q.shape[1])[None, :], 0)
    pos = np.maximum.accumulate(pos, axis=1)
    inc = np.take_along_axis(q, pos, axis=1)
    inc[np.cumsum(q >= 0, axis=1) == 0] = -1
    return inc


def _mean_ci(x: np.ndarray, level: float) -> tuple[float, float, float]:
    n = x.shape[0]
    m = x.mean(0)
    if n < 2:
        return m, np.full_like(m, np.nan), np.full_like(m, np.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(0, ddof=1) / math.sqrt(n)
    return m, m - half, m + half


def curves(
    results: Sequence[SearchResult], land: Landscape, report: Sequence[str] = ("clean", "robust"), level: float = 0.95
) -> pd.DataFrame:
    """Mean (and Student-t CI over seeds) of the incumbent's value vs number of queries.

    Args:
        results: runs from :func:`robntk.analysis.search.run_search`.
        land: the landscape (metric values).
        report: metrics reported (aliases or benchmark metric names).
        level: CI level.

    Returns:
        Long DataFrame with columns :data:`CURVE_COLUMNS` (``method`` is :attr:`SearchResult.label`,
        ``queries`` = 1..budget); ``median`` is the median over seeds.
    """
    rows = []
    for res in results:
        inc = incumbents(res.queried, land.metric(res.criterion))
        for rep_name in report:
            vals = land.metric(rep_name)[np.maximum(inc, 0)]
            vals[inc < 0] = np.nan
            m, lo, hi = _mean_ci(vals, level)
            med = np.median(vals, axis=0)
            t = np.arange(1, inc.shape[1] + 1)
            rows.append(
                pd.DataFrame(
                    {
                        "method": res.label,
                        "criterion": res.criterion,
                        "report": rep_name,
                        "queries": t,
                        "n_seeds": inc.shape[0],
                        "mean": m,
                        "ci_low": lo,
                        "ci_high": hi,
                        "median": med,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)[list(CURVE_COLUMNS)]


def queries_to_reach(
    res: SearchResult,
    land: Landscape,
    threshold: float,
    report: str = "robust",
    level: float = 0.95,
    n_boot: int = 1000,
) -> dict:
    """How many queries a run needs until its incumbent reaches ``report`` ≥ ``threshold``.

    The incumbent is chosen by the run's own criterion (so a clean-criterion run reaches a PGD-8
    threshold only when its best-by-clean architecture is that robust).

    Returns:
        dict with ``fraction`` (seeds reaching it within the budget), ``n_reached``, ``n_seeds``,
        ``median`` (over all seeds, unreached counted as > budget: NaN when fewer than half reach),
        ``mean_reached`` and its percentile-bootstrap CI ``ci_low``/``ci_high`` over the seeds that
        reached (seeded, ``n_boot`` resamples; NaN when none), and ``budget``.
    """
    inc = incumbents(res.queried, land.metric(res.criterion))
    vals = land.metric(report)[np.maximum(inc, 0)]
    hit = (vals >= threshold) & (inc >= 0)
    reached = hit.any(axis=1)
    first = np.where(reached, hit.argmax(axis=1) + 1, np.iinfo(np.int64).max)
    n, k = len(first), int(reached.sum())
    srt = np.sort(first)
    median = float(np.median(srt)) if k > n / 2 else math.nan
    mean_r, lo, hi = math.nan, math.nan, math.nan
    if k:
        x = first[reached].astype(np.float64)
        mean_r = float(x.mean())
        boot = np.random.default_rng(0).choice(x, size=(n_boot, k), replace=True).mean(axis=1)
        lo, hi = (float(v) for v in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))
    return {
        "method": res.label,
        "criterion": res.criterion,
        "report": report,
        "threshold": threshold,
        "budget": res.queried.shape[1],
        "n_seeds": n,
        "n_reached": k,
        "fraction": k / n,
        "median": median,
        "mean_reached": mean_r,
        "ci_low": lo,
        "ci_high": hi,
    }


def expected_best_random(values: np.ndarray, k: int) -> float:
    """Exact expected maximum of ``k`` values drawn without replacement from ``values``.

    E[max] = Σ_j v_(j) · C(j-1, k-1) / C(n, k) over the ascending order statistics v_(j); used to
    check random search (log-space binomials, :func:`scipy.special.gammaln`).

    Raises:
        ValueError: k outside 1..n.
    """
    from scipy.special import gammaln

    v = np.sort(np.asarray(values, dtype=np.float64))
    n = v.size
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    j = np.arange(k, n + 1)
    logw = (gammaln(j) - gammaln(k) - gammaln(j - k + 1)) - (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))
    return float(np.sum(np.exp(logw) * v[k - 1 :]))


# --------------------------------------------------------------------------- figure
#: Okabe-Ito colour-blind-safe palette.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def plot_curves(table: pd.DataFrame, land: Landscape, path, title: str | None = None, dpi: int = 150):
    """Grid of best-found accuracy vs queries: rows = search criterion, columns = reported metric.

    Lines are the mean over seeds with the CI band of :func:`curves`; a dashed line marks the
    benchmark optimum of the reported metric. Log-scaled query axis.

    Args:
        table: output of :func:`curves`.
        land: the landscape (for the optima).
        path: output image, written atomically.
        title: figure title.
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ValueError: empty table or missing columns.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from robntk.core.paths import atomic_save

    missing = [c for c in CURVE_COLUMNS if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"curve table is empty or lacks columns {missing}")
    crits = list(dict.fromkeys(table["criterion"]))
    reps = list(dict.fromkeys(table["report"]))
    methods = list(dict.fromkeys(table["method"]))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}
    fig = Figure(figsize=(5.2 * len(reps), 3.8 * len(crits)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(crits), len(reps), squeeze=False)
    names = {"clean": "clean accuracy", "robust": "PGD-8 accuracy"}
    for i, c in enumerate(crits):
        for j, r in enumerate(reps):
            ax = axes[i][j]
            opt = float(np.nanmax(land.metric(r)))
            lo_y = []
            for m in methods:
                d = table[(table["criterion"] == c) & (table["report"] == r) & (table["method"] == m)]
                if d.empty:
                    continue
                ax.plot(d["queries"], d["mean"], color=colour[m], label=m, lw=1.6)
                ax.fill_between(d["queries"], d["ci_low"], d["ci_high"], color=colour[m], alpha=0.2, lw=0)
                q10 = d[d["queries"] >= 10]
                if len(q10):
                    lo_y.append(float(q10["mean"].iloc[0]))
            ax.axhline(opt, color="0.3", ls="--", lw=1, label=f"optimum {opt:.4f}")
            ax.set_xscale("log")
            if lo_y:
                ax.set_ylim(min(lo_y) - 0.002, opt + 0.002)
            ax.set_xlabel("benchmark queries (distinct architectures)")
            ax.set_ylabel(f"{land.dataset} {names.get(r, r)} of best found")
            ax.set_title(f"search by {names.get(c, c)}, report {names.get(r, r)}", fontsize=10)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
