"""Figures of ``robntk report`` (matplotlib object API, Agg canvas; no ``pyplot`` state).

Each builder takes the tables of :mod:`robntk.analysis.report` and returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it atomically. Colours: the
Okabe–Ito palette for categories and ``viridis`` for values, both readable with the common
colour-vision deficiencies.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis.report import (
    CLEAN,
    EDGE_LABELS,
    METRIC_LABELS,
    OKABE_ITO,
    REFERENCE_LABELS,
    ROBUST,
    metric_label,
    random_guess,
)
from robntk.core import figures
from robntk.core.paths import atomic_save
from robntk.data.benchmark import DATASETS, METRICS, column_name
from robntk.nb201.searchspace import OPS

_DATASET_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "ImageNet16-120": "ImageNet16-120"}
_OP_LABELS = {
    "none": "none",
    "skip_connect": "skip",
    "nor_conv_1x1": "conv 1×1",
    "nor_conv_3x3": "conv 3×3",
    "avg_pool_3x3": "avg pool",
}


def new_figure(figsize: tuple[float, float]):
    """:func:`robntk.core.figures.new_figure` with constrained layout."""
    return figures.new_figure(figsize, layout="constrained")


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, e.g. ``.png``); returns the path."""
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))


def _datasets(table: pd.DataFrame) -> list[str]:
    return list(table.attrs.get("datasets", [d for d in DATASETS if any(c.startswith(d + "_") for c in table.columns)]))


def _metrics(table: pd.DataFrame) -> list[str]:
    return list(table.attrs.get("metrics", METRICS))


def _title(d: str) -> str:
    return _DATASET_TITLES.get(d, d)


def boxplot_figure(table: pd.DataFrame, whis: float = 1.5):
    """Box plots of every metric per dataset over the representatives, with the random-guess line.

    The statistics are :func:`matplotlib.cbook.boxplot_stats` (as in
    :func:`robntk.analysis.report.metric_summary`, the CSV behind this figure).

    Args:
        table: output of :func:`robntk.analysis.report.benchmark_table`.
        whis: whisker reach in IQRs.
    """
    from matplotlib import cbook

    ds = _datasets(table)
    fig = new_figure((4.2 * len(ds), 4.0))
    axes = fig.subplots(1, len(ds), squeeze=False)[0]
    for ax, d in zip(axes, ds):
        ms = [m for m in _metrics(table) if column_name(d, m) in table.columns]
        stats = []
        for m in ms:
            st = cbook.boxplot_stats(table[column_name(d, m)].dropna().to_numpy(), whis=whis)[0]
            st["label"] = METRIC_LABELS.get(m, m)
            stats.append(st)
        art = ax.bxp(
            stats,
            patch_artist=True,
            showmeans=False,
            flierprops={"marker": ".", "markersize": 2, "alpha": 0.4, "markeredgecolor": "0.35"},
            medianprops={"color": "black"},
        )
        for i, box in enumerate(art["boxes"]):
            box.set_facecolor(OKABE_ITO[i % 7])
            box.set_alpha(0.85)
        ax.axhline(random_guess(d), color="0.2", ls="--", lw=1, label=f"random guess ({random_guess(d):.3g})")
        ax.set_title(f"{_title(d)} ({len(table[column_name(d, ms[0])].dropna()):,} archs)", fontsize=10)
        ax.set_ylabel("accuracy")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.legend(loc="upper right", fontsize=7, frameon=False)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("NAS-RobBench-201: accuracy after adversarial training (ε in /255)", fontsize=11)
    return fig


def _annotated_heatmap(
    ax, grid: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis", fmt: str = "{:.2f}", fontsize: float = 7
):
    """imshow + per-cell text, the text white on dark cells (relative luminance of the cell colour < 0.45)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    cm, norm = colormaps[cmap], Normalize(vmin, vmax)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            dark = False
            if np.isfinite(v):
                r, g, b, _ = cm(norm(v))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.45
            ax.text(
                j,
                i,
                "—" if np.isnan(v) else fmt.format(v),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "black",
            )
    return im


def _tau_scale(grid: np.ndarray) -> tuple[str, float, float]:
    """Colour scale of correlations: viridis on [0, 1] when none is negative, else RdBu_r on [-1, 1]."""
    return ("viridis", 0.0, 1.0) if not (np.nanmin(grid) < 0) else ("RdBu_r", -1.0, 1.0)


def tau_matrix_figure(mat: pd.DataFrame, statistic: str = "Kendall τ-b"):
    """Annotated heatmap of the metric × metric τ matrix, dataset blocks outlined.

    Args:
        mat: output of :func:`robntk.analysis.report.tau_matrix` (rows/columns ``<dataset>_<metric>``).
        statistic: colour-bar label.
    """
    names = list(mat.index)
    labels, blocks = [], []
    for c in names:
        d = next((d for d in DATASETS if c.startswith(d + "_")), c.split("_")[0])
        labels.append(metric_label(d, c[len(d) + 1 :]))
        blocks.append(d)
    grid = mat.to_numpy(np.float64)
    cmap, vmin, vmax = _tau_scale(grid)
    n = len(names)
    fig = new_figure((0.48 * n + 2.6, 0.42 * n + 1.6))
    ax = fig.add_subplot(1, 1, 1)
    im = _annotated_heatmap(ax, grid, vmin, vmax, cmap=cmap, fontsize=6 if n > 12 else 8)
    ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    for i in range(1, n):
        if blocks[i] != blocks[i - 1]:
            ax.axhline(i - 0.5, color="white", lw=2)
            ax.axvline(i - 0.5, color="white", lw=2)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label=statistic)
    ax.set_title(f"{statistic} between metrics, within (diagonal blocks) and across datasets", fontsize=10)
    return fig


_SCATTER_ROWS = ((CLEAN, "nb201_test_acc"), (ROBUST, "nb201_test_acc"), (ROBUST, "jung_pgd"))


def standard_scatter_figure(table: pd.DataFrame, references: pd.DataFrame, agreement: pd.DataFrame):
    """Adversarial vs standard training: NAS-RobBench-201 metric against a standard-training reference.

    Rows: clean vs NB201 200-epoch test accuracy, PGD-8 vs NB201 test accuracy, PGD-8 vs Jung et
    al.'s PGD (ε = 1/255) accuracy of the standard-trained weights; columns: datasets. Each panel
    is annotated with τ-b and the top-k overlaps of ``agreement``.

    Args:
        table: output of :func:`robntk.analysis.report.benchmark_table`.
        references: output of :func:`robntk.analysis.report.reference_table`.
        agreement: output of :func:`robntk.analysis.report.standard_training_agreement`.
    """
    ds = _datasets(table)
    rows = [(m, r) for m, r in _SCATTER_ROWS if any(f"{d}_{r}" in references.columns for d in ds)]
    fig = new_figure((3.8 * len(ds), 3.3 * len(rows)))
    axes = fig.subplots(len(rows), len(ds), squeeze=False)
    kcols = [c for c in agreement.columns if c.startswith("top") and c.endswith("_overlap")]
    for i, (m, ref) in enumerate(rows):
        for j, d in enumerate(ds):
            ax = axes[i, j]
            col, rcol = column_name(d, m), f"{d}_{ref}"
            if col not in table.columns or rcol not in references.columns:
                ax.set_axis_off()
                continue
            x, y = references[rcol].reindex(table.index), table[col]
            ax.scatter(x, y, s=3, alpha=0.35, color=OKABE_ITO[0], edgecolors="none", rasterized=True)
            a = agreement[(agreement["dataset"] == d) & (agreement["metric"] == m) & (agreement["reference"] == ref)]
            if len(a):
                r = a.iloc[0]
                txt = f"τ = {r['kendall_tau']:.3f}\n" + "\n".join(
                    f"top-{c[3:-8]} overlap {int(r[c])}/{c[3:-8]}" for c in kcols if pd.notna(r[c])
                )
                ax.text(
                    0.03,
                    0.97,
                    txt,
                    transform=ax.transAxes,
                    va="top",
                    fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
                )
            ax.set_xlabel(REFERENCE_LABELS.get(ref, ref), fontsize=8)
            ax.set_ylabel(f"NAS-RobBench-201 {METRIC_LABELS.get(m, m)}", fontsize=8)
            ax.set_title(_title(d), fontsize=9)
            ax.grid(alpha=0.3)
    fig.suptitle("Adversarial (NAS-RobBench-201) vs standard training (NB201, Jung et al.)", fontsize=11)
    return fig


def standard_tau_figure(agreement: pd.DataFrame):
    """τ-b of every NAS-RobBench-201 metric (rows) with every standard-training reference (columns), per dataset.

    Args:
        agreement: output of :func:`robntk.analysis.report.standard_training_agreement`.
    """
    ds = [d for d in DATASETS if d in set(agreement["dataset"])] + [
        d for d in dict.fromkeys(agreement["dataset"]) if d not in DATASETS
    ]
    refs = [r for r in REFERENCE_LABELS if r in set(agreement["reference"])]
    ms = [m for m in METRICS if m in set(agreement["metric"])]
    fig = new_figure((0.55 * len(refs) * len(ds) + 2.5, 0.4 * len(ms) + 2.2))
    axes = fig.subplots(1, len(ds), squeeze=False)[0]
    im = None
    cmap, vmin, vmax = _tau_scale(agreement["kendall_tau"].to_numpy(np.float64))
    for ax, d in zip(axes, ds):
        grid = np.full((len(ms), len(refs)), np.nan)
        sub = agreement[agreement["dataset"] == d]
        for m, r, v in zip(sub["metric"], sub["reference"], sub["kendall_tau"]):
            grid[ms.index(m), refs.index(r)] = v
        im = _annotated_heatmap(ax, grid, vmin, vmax, cmap=cmap)
        ax.set_xticks(
            range(len(refs)),
            [r.replace("_test_acc", "").replace("jung_", "Jung ").replace("aa_", "") for r in refs],
            rotation=45,
            ha="right",
            rotation_mode="anchor",
            fontsize=7,
        )
        ax.set_yticks(range(len(ms)), [METRIC_LABELS.get(m, m) for m in ms], fontsize=8)
        ax.set_title(_title(d), fontsize=9)
    fig.colorbar(im, ax=list(axes), fraction=0.03, pad=0.02, label="Kendall τ-b")
    fig.suptitle(
        "Rank agreement with standard training (NB201 200-epoch test acc; Jung et al. at ε = 1/255)", fontsize=10
    )
    return fig


def operator_figure(freq: pd.DataFrame):
    """Heatmaps edge × op of op frequencies among the top-k (by clean, by PGD-8) and over the whole space.

    Args:
        freq: output of :func:`robntk.analysis.report.operator_frequency`.
    """
    ds = list(dict.fromkeys(freq["dataset"]))
    crits = list(dict.fromkeys(freq["criterion"]))
    fig = new_figure((3.3 * len(crits) + 1.0, 2.7 * len(ds) + 0.6))
    axes = fig.subplots(len(ds), len(crits), squeeze=False)
    im = None
    for i, d in enumerate(ds):
        for j, c in enumerate(crits):
            sub = freq[(freq["dataset"] == d) & (freq["criterion"] == c)]
            grid = np.full((len(EDGE_LABELS), len(OPS)), np.nan)
            for e, o, v in zip(sub["edge"], sub["op"], sub["frequency"]):
                grid[EDGE_LABELS.index(e), OPS.index(o)] = v
            ax = axes[i, j]
            im = _annotated_heatmap(ax, grid, 0.0, 1.0, fontsize=7)
            k = int(sub["k"].iloc[0])
            what = f"all {k:,} archs" if c == "all" else f"top-{k} by {METRIC_LABELS.get(c, c)}"
            ax.set_title(f"{_title(d)}: {what}", fontsize=9)
            ax.set_xticks(
                range(len(OPS)),
                [_OP_LABELS[o] for o in OPS],
                rotation=30,
                ha="right",
                rotation_mode="anchor",
                fontsize=7,
            )
            ax.set_yticks(range(len(EDGE_LABELS)), [f"edge {e}" for e in EDGE_LABELS], fontsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="share of architectures")
    fig.suptitle("Operator on each edge of the cell (node 0 = input, 3 = output)", fontsize=11)
    return fig


def accuracy_robustness_figure(scatter: pd.DataFrame):
    """Clean vs PGD-8 accuracy per dataset, coloured by the number of 3×3-conv edges.

    Args:
        scatter: :func:`robntk.analysis.report.benchmark_table` with an extra int column ``num_conv3x3``.
    """
    from matplotlib.colors import BoundaryNorm

    from robntk.analysis.correlation import kendall_tau

    ds = _datasets(scatter)
    fig = new_figure((4.0 * len(ds) + 0.8, 3.8))
    axes = fig.subplots(1, len(ds), squeeze=False)[0]
    norm = BoundaryNorm(np.arange(-0.5, 7.0, 1.0), 256)
    sc = None
    order = np.argsort(scatter["num_conv3x3"].to_numpy(), kind="stable")
    for ax, d in zip(axes, ds):
        x, y = scatter[column_name(d, CLEAN)].to_numpy()[order], scatter[column_name(d, ROBUST)].to_numpy()[order]
        sc = ax.scatter(
            x,
            y,
            c=scatter["num_conv3x3"].to_numpy()[order],
            cmap="viridis",
            norm=norm,
            s=4,
            alpha=0.7,
            edgecolors="none",
            rasterized=True,
        )
        ax.axvline(random_guess(d), color="0.5", ls=":", lw=1)
        ax.axhline(random_guess(d), color="0.5", ls=":", lw=1)
        ax.text(0.03, 0.97, f"τ = {kendall_tau(x, y):.3f}", transform=ax.transAxes, va="top", fontsize=8)
        ax.set_xlabel("clean accuracy")
        ax.set_ylabel("PGD-8 accuracy (ε = 8/255)")
        ax.set_title(_title(d), fontsize=10)
        ax.grid(alpha=0.3)
    cb = fig.colorbar(sc, ax=list(axes), ticks=range(7), fraction=0.03, pad=0.02)
    cb.set_label("# 3×3 conv edges")
    fig.suptitle("Robustness vs accuracy after adversarial training (dotted: random guess)", fontsize=11)
    return fig


def random_search_figure(curve: pd.DataFrame):
    """Expected PGD-8 accuracy of random search vs budget, selecting by clean or by PGD-8 accuracy.

    Args:
        curve: output of :func:`robntk.analysis.report.random_search_curve`.
    """
    ds = list(dict.fromkeys(curve["dataset"]))
    fig = new_figure((3.8 * len(ds), 3.4))
    axes = fig.subplots(1, len(ds), squeeze=False)[0]
    for ax, d in zip(axes, ds):
        sub = curve[curve["dataset"] == d]
        for i, (c, g) in enumerate(sub.groupby("criterion", sort=False)):
            ax.plot(
                g["k"],
                g["expected"],
                marker="o",
                ms=3,
                color=OKABE_ITO[i],
                label=f"select by {METRIC_LABELS.get(c, c)}",
            )
        ax.axhline(sub["best"].iloc[0], color="0.3", ls="--", lw=1, label="best in the space")
        ax.set_xscale("log")
        ax.set_xlabel("architectures queried (k)")
        rm = METRIC_LABELS.get(sub["report_metric"].iloc[0], sub["report_metric"].iloc[0])
        ax.set_ylabel(f"expected {rm} of the selected arch")
        ax.set_title(_title(d), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.suptitle("Random search on NAS-RobBench-201 (exact expectation, sampling without replacement)", fontsize=10)
    return fig


__all__ = [
    "accuracy_robustness_figure",
    "boxplot_figure",
    "new_figure",
    "operator_figure",
    "random_search_figure",
    "save_figure",
    "standard_scatter_figure",
    "standard_tau_figure",
    "tau_matrix_figure",
]
