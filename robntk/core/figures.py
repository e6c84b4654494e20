"""Figures (matplotlib, Agg canvas; files written atomically).

Uses :class:`matplotlib.figure.Figure` with the Agg canvas directly, never ``pyplot``, so it
neither needs a display nor changes the process-wide backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.core.paths import atomic_save


def new_figure(figsize: tuple[float, float], layout: str | None = None):
    """A :class:`~matplotlib.figure.Figure` (size in inches) with an Agg canvas, never pyplot;
    ``layout``: matplotlib's layout engine (e.g. ``'constrained'``) or None."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def tau_heatmap(
    table: pd.DataFrame, path: str | os.PathLike, value: str = "kendall_tau", title: str | None = None, dpi: int = 150
) -> Path:
    """Heatmap of a correlation table: scores (rows) × (dataset, metric) (columns), annotated.

    Args:
        table: output of :func:`robntk.analysis.correlation.correlation_table` (long format with columns
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

    fig = new_figure((max(4.0, 0.75 * len(pairs) + 2.5), max(2.0, 0.45 * len(scores) + 1.8)))
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
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if np.isfinite(v) and abs(v) > 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label=value)
    ax.set_title(title if title is not None else value, fontsize=10)
    fig.tight_layout()
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))


def score_scatter(
    scores: pd.DataFrame,
    bench,
    columns: list[tuple[str, str]],
    path: str | os.PathLike,
    dataset: str = "cifar10",
    dpi: int = 120,
) -> Path:
    """Scatter of log10 score vs benchmark accuracy, one panel per (score column, metric).

    Args:
        scores: table with ``nb201_index`` and the score columns. bench: a
            :class:`robntk.data.benchmark.RobBench`. columns: (score column, metric) pairs.
        path: PNG written atomically. dataset: benchmark dataset of the y axis.

    Non-positive scores (log undefined) are dropped and counted in the panel title.
    """
    fig = new_figure((4.5 * len(columns), 4))
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


def training_curves(
    records: list[dict],
    path: str | os.PathLike,
    *,
    lr_curve: tuple | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path:
    """Per-epoch training loss, training accuracy and learning rate of a run (3 panels).

    Args:
        records: the run's ``metrics.jsonl`` records (:func:`robntk.train.rundir.read_metrics`), each
            with ``epoch``, ``step``, ``train_loss``, ``train_acc``, ``lr_last`` and ``method``.
        path: PNG written atomically.
        lr_curve: optional ``(epoch_position (T,), lr (T,))`` of the whole schedule, drawn as a
            line under the per-epoch markers (:func:`robntk.train.loop.lr_curve`).
        title: figure title (default: none).

    Returns:
        The written path.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("no training records to plot")
    ep = [r["epoch"] for r in records]
    method = records[-1].get("method")
    adv = method in ("pgd", "fgsm")
    fig = new_figure((12, 3.4))
    axes = fig.subplots(1, 3)
    axes[0].plot(ep, [r["train_loss"] for r in records], "o-", color="#0072B2")
    axes[0].set(xlabel="epoch", ylabel="training loss", title=f"training loss ({method})")
    axes[1].plot(ep, [r["train_acc"] for r in records], "o-", color="#D55E00")
    axes[1].set(
        xlabel="epoch",
        ylabel="accuracy",
        title="train accuracy (" + ("adversarial" if adv else "natural") + " examples, train-mode BN)",
    )
    if lr_curve is not None:
        axes[2].plot(
            np.asarray(lr_curve[0]), np.asarray(lr_curve[1]), "-", color="#009E73", label="OneCycle lr (per step)"
        )
    spe = records[0]["step"] / records[0]["epoch"]
    axes[2].plot(
        [(r["step"] - 1) / spe for r in records],
        [r["lr_last"] for r in records],
        "o",
        color="#0072B2",
        label="lr of each epoch's last step",
    )
    axes[2].set(xlabel="epoch", ylabel="learning rate", title="schedule")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return atomic_save(path, lambda p: fig.savefig(p, dpi=dpi))
