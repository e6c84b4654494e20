"""Figures (matplotlib, Agg canvas; files written atomically).

Uses :class:`matplotlib.figure.Figure` with the Agg canvas directly, never ``pyplot``, so it
neither needs a display nor changes the process-wide backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .paths import atomic_save


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def tau_heatmap(table: pd.DataFrame, path: str | os.PathLike, value: str = "kendall_tau",
                title: str | None = None, dpi: int = 150) -> Path:
    """Heatmap of a correlation table: scores (rows) × (dataset, metric) (columns), annotated.

    Args:
        table: output of :func:`robntk.correlation.correlation_table` (long format with columns
            ``score``, ``dataset``, ``metric`` and ``value``). Row/column order follows first
            appearance in the table.
        path: output image (format from the suffix, e.g. ``.png``); written atomically.
        value: the column to plot, e.g. ``'kendall_tau'`` or ``'spearman_rho'``; colours span
            [-1, 1] (diverging map, 0 white).
        title: figure title (default: the value name).
        dpi: resolution.

    Returns:
        The written path.

    Raises:
        ValueError: ``table`` lacks a required column or has no rows.
    """
    need = ["score", "dataset", "metric", value]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"correlation table lacks column(s) {missing}; has {list(table.columns)}")
    if table.empty:
        raise ValueError("correlation table has no rows to plot")
    scores = list(dict.fromkeys(table["score"]))
    pairs = list(dict.fromkeys(zip(table["dataset"], table["metric"])))
    grid = np.full((len(scores), len(pairs)), np.nan)
    r_of = {s: i for i, s in enumerate(scores)}
    c_of = {p: j for j, p in enumerate(pairs)}
    for s, d, m, v in zip(table["score"], table["dataset"], table["metric"], table[value]):
        grid[r_of[s], c_of[(d, m)]] = v

    fig = _new_figure((max(4.0, 0.75 * len(pairs) + 2.5), max(2.0, 0.45 * len(scores) + 1.8)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([f"{d} {m}" for d, m in pairs], rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    ax.set_yticks(range(len(scores)))
    ax.set_yticklabels(scores, fontsize=8)
    for i in range(len(scores)):
        for j in range(len(pairs)):
            v = grid[i, j]
            txt = "—" if np.isnan(v) else f"{v:.2f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(v) and abs(v) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label=value)
    ax.set_title(title if title is not None else value, fontsize=10)
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))


def score_scatter(scores: pd.DataFrame, bench, columns: list[tuple[str, str]], path: str | os.PathLike,
                  dataset: str = "cifar10", dpi: int = 120) -> Path:
    """Scatter of log10 score vs benchmark accuracy, one panel per (score column, metric).

    Args:
        scores: table with ``nb201_index`` and the score columns. bench: a
            :class:`robntk.benchmark.RobBench`. columns: (score column, metric) pairs.
        path: PNG written atomically. dataset: benchmark dataset of the y axis.

    Non-positive scores (log undefined) are dropped and counted in the panel title.
    """
    fig = _new_figure((4.5 * len(columns), 4))
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, (col, metric) in zip(axes, columns):
        acc = bench.values(scores["nb201_index"].to_numpy(), dataset, metric)
        lam = scores[col].to_numpy(dtype=float)
        ok = lam > 0
        ax.scatter(np.log10(lam[ok]), acc[ok], s=12, color="#0072B2")
        ax.set_xlabel(f"log10 {col}")
        ax.set_ylabel(f"{dataset} {metric}")
        ax.set_title(f"n={int(ok.sum())} (score <= 0 dropped: {int((~ok).sum())})", fontsize=9)
    fig.tight_layout()
    return atomic_save(path, lambda p: fig.savefig(p, dpi=dpi))
