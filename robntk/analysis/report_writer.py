"""``write_report``: run every analysis of :mod:`robntk.analysis.report`, draw each figure with
:mod:`robntk.analysis.report_figures`, and write each PNG next to the CSV behind it plus ``report.json``
(configuration, files, key numbers, wall time). Used by ``robntk report``
(:mod:`robntk.commands.report`) and ``notebooks/benchmark_report.ipynb``.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robntk.analysis.report import (
    CLEAN,
    DEFAULT_OP_K,
    DEFAULT_OVERLAP_K,
    DEFAULT_SEARCH_K,
    DEFAULT_TOP,
    METRIC_LABELS,
    ROBUST,
    benchmark_table,
    check_k,
    metric_summary,
    num_conv3x3,
    operator_frequency,
    operator_share,
    random_search_curve,
    reference_table,
    standard_training_agreement,
    tau_matrix,
    tau_pairs,
    top_k_table,
)
from robntk.core import paths
from robntk.core.tables import write_json, write_table
from robntk.data.benchmark import METRICS, RobBench, column_name

#: Allowed PNG resolutions (dots per inch): below 10 fonts cannot be drawn, above 1200 one figure
#: needs gigabytes of memory.
DPI_RANGE: tuple[int, int] = (10, 1200)


def check_dpi(dpi, name: str = "dpi") -> int:
    """``dpi`` if it is an integer in :data:`DPI_RANGE`.

    Raises:
        ValueError: naming ``name`` and the range.
    """
    lo, hi = DPI_RANGE
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Integral) or not lo <= dpi <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {dpi!r}")
    return int(dpi)


def _markdown_top(top: pd.DataFrame) -> str:
    lines = []
    metrics = [m for m in METRICS if m in top.columns]
    for (d, c), g in top.groupby(["dataset", "criterion"], sort=False):
        lines += [
            f"## {d}, top {len(g)} by {METRIC_LABELS.get(c, c)}",
            "",
            "| rank | nb201_index | " + " | ".join(METRIC_LABELS.get(m, m) for m in metrics) + " | #3×3 | arch_str |",
            "|" + "---|" * (len(metrics) + 4),
        ]
        for _, r in g.iterrows():
            vals = " | ".join(f"{r[m]:.4f}" for m in metrics)
            arch = str(r["arch_str"]).replace("|", "\\|")  # a bare '|' would split the table cell, even in code
            lines.append(f"| {r['rank']} | {r['nb201_index']} | {vals} | {r['num_conv3x3']} | `{arch}` |")
        lines.append("")
    return "\n".join(lines)


def write_report(
    bench: RobBench,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    op_k: int = DEFAULT_OP_K,
    overlap_ks: Sequence[int] = DEFAULT_OVERLAP_K,
    top: int = DEFAULT_TOP,
    search_ks: Sequence[int] = DEFAULT_SEARCH_K,
    references: pd.DataFrame | None | bool = None,
    dpi: int = 150,
    progress: bool = True,
) -> dict:
    """Run every analysis and write each figure (PNG) with the CSV behind it into ``out_dir``.

    Files (all written atomically): ``metric_boxplots.{png,csv}``, ``tau_matrix.png`` with
    ``tau_matrix.csv`` (square) and ``tau_pairs.csv`` (long, with Spearman), ``standard_training.png``
    and ``standard_training_tau.png`` with ``standard_training_agreement.csv`` and
    ``standard_training_scatter.csv``, ``operator_frequency.{png,csv}`` with ``operator_share.csv``,
    ``top{top}.csv`` / ``top{top}.md``, ``accuracy_robustness.{png,csv}``,
    ``random_search.{png,csv}``, and ``report.json`` (configuration, files, key numbers, seconds).

    Args:
        bench: the benchmark (any source :class:`robntk.data.benchmark.RobBench` reads).
        out_dir: output directory (created).
        data_dir: where the standard-training references are read from.
        op_k: top-k of the operator-frequency heatmap (clipped to the population).
        overlap_ks: top-k sizes of the standard-training overlap.
        top: length of the top tables.
        search_ks: random-search budgets (those above the number of architectures are skipped;
            at least one must fit).
        references: a :func:`reference_table` to use; None reads it from ``data_dir``; False skips
            the standard-training section. A missing reference file skips that section too and is
            recorded under ``skipped`` in the manifest; a corrupt one raises before anything is
            written.
        dpi: PNG resolution, in :data:`DPI_RANGE`.
        progress: tqdm progress over the sections.

    Returns:
        The manifest written to ``report.json``: ``files`` (names inside ``out_dir``),
        ``key_numbers``, ``skipped``, ``config``, ``source`` / ``benchmark_file`` (folder/name of the
        file read) and ``elapsed_s`` (wall seconds of the analyses and writing, without loading).

    Raises:
        ValueError: bad k / top / dpi, no search k within the number of architectures, no usable
            benchmark columns — all before anything is written.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    for name, v in (("op_k", op_k), ("top", top), ("dpi", dpi)):
        check_k(v, name)
    check_dpi(dpi)
    overlap_ks = [check_k(k, "overlap k") for k in overlap_ks]
    search_ks = [check_k(k, "search k") for k in search_ks]
    w = _ReportWriter(bench, benchmark_table(bench), Path(out_dir), dpi)
    if not search_ks or min(search_ks) > w.n:  # checked before anything is written
        raise ValueError(
            f"every search k ({', '.join(map(str, search_ks))}) exceeds the {w.n} architectures "
            f"of the benchmark; give at least one in 1..{w.n}"
        )
    if references is None:  # read before anything is written: a corrupt file stops the report here
        try:
            references = reference_table(bench, data_dir)
        except FileNotFoundError as exc:
            references = False
            w.skipped["standard_training"] = str(exc)
    w.out.mkdir(parents=True, exist_ok=True)
    sections = {
        "boxplots": w.boxplots,
        "tau": w.tau,
        "standard": lambda: w.standard(references, data_dir, overlap_ks),
        "operators": lambda: w.operators(op_k),
        "top": lambda: w.top(top),
        "scatter": w.scatter,
        "search": lambda: w.search(search_ks),
    }
    bar = tqdm(list(sections), desc="report", unit="section", disable=not progress, dynamic_ncols=True)
    for name in bar:
        bar.set_postfix_str(name)
        sections[name]()
    bench_file = None if bench.path is None else f"{bench.path.parent.name}/{bench.path.name}"
    manifest = {
        "command": "robntk report",
        "source": bench.source,
        "benchmark_file": bench_file,
        "config": {"op_k": op_k, "overlap_ks": overlap_ks, "top": top, "search_ks": search_ks, "dpi": dpi},
        "files": sorted(w.files) + ["report.json"],
        "key_numbers": w.key,
        "skipped": w.skipped,
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    write_json(manifest, w.out / "report.json")
    return manifest


class _ReportWriter:
    """The sections of :func:`write_report`; each computes its tables, writes them and notes key numbers."""

    def __init__(self, bench: RobBench, table: pd.DataFrame, out: Path, dpi: int):
        self.bench, self.table, self.out, self.dpi = bench, table, out, dpi
        self.n = len(table)
        self.files: list[str] = []
        self.skipped: dict[str, str] = {}
        self.key: dict = {"n_architectures": self.n}

    def csv(self, name: str, df: pd.DataFrame, index: bool = False) -> None:
        write_table(df, self.out / name, index=index)
        self.files.append(name)

    def png(self, name: str, fig) -> None:
        from robntk.analysis.report_figures import save_figure

        save_figure(fig, self.out / name, dpi=self.dpi)
        self.files.append(name)

    def _cols(self, *metrics: str) -> list[str]:
        return [
            column_name(d, m)
            for d in self.table.attrs["datasets"]
            for m in metrics
            if column_name(d, m) in self.table.columns
        ]

    def boxplots(self) -> None:
        from robntk.analysis.report_figures import boxplot_figure

        self.csv("metric_boxplots.csv", metric_summary(self.table))
        self.png("metric_boxplots.png", boxplot_figure(self.table))

    def tau(self) -> None:
        from robntk.analysis.report_figures import tau_matrix_figure

        pairs = tau_pairs(self.table)
        mat = tau_matrix(pairs)
        self.csv("tau_pairs.csv", pairs)
        self.csv("tau_matrix.csv", mat.rename_axis("column"), index=True)
        self.png("tau_matrix.png", tau_matrix_figure(mat))
        self.key["kendall_tau_clean_vs_pgd8"] = {
            d: float(mat.loc[column_name(d, CLEAN), column_name(d, ROBUST)])
            for d in self.table.attrs["datasets"]
            if column_name(d, CLEAN) in mat.index and column_name(d, ROBUST) in mat.index
        }

    def standard(self, references, data_dir, overlap_ks: Sequence[int]) -> None:
        from robntk.analysis.report_figures import standard_scatter_figure, standard_tau_figure

        if references is False:
            self.skipped.setdefault("standard_training", "references=False (--no-standard)")
            return
        if references is None:
            try:
                references = reference_table(self.bench, data_dir)
            except FileNotFoundError as exc:
                self.skipped["standard_training"] = str(exc)
                return
        agree = standard_training_agreement(self.table, references, [k for k in overlap_ks if k <= self.n])
        self.csv("standard_training_agreement.csv", agree)
        scat = pd.concat([self.table, references.reindex(self.table.index)], axis=1)
        used = [
            c
            for d in self.table.attrs["datasets"]
            for c in (column_name(d, CLEAN), column_name(d, ROBUST), f"{d}_nb201_test_acc", f"{d}_jung_pgd")
        ]
        self.csv("standard_training_scatter.csv", scat[[c for c in used if c in scat.columns]].reset_index())
        self.png("standard_training.png", standard_scatter_figure(self.table, references, agree))
        self.png("standard_training_tau.png", standard_tau_figure(agree))
        shown = ((CLEAN, "nb201_test_acc"), (CLEAN, "jung_clean"), (ROBUST, "nb201_test_acc"), (ROBUST, "jung_pgd"))
        self.key["standard_training"] = {
            f"{r['dataset']} {METRIC_LABELS.get(r['metric'], r['metric'])} vs {r['reference']}": _agreement_numbers(r)
            for _, r in agree.iterrows()
            if (r["metric"], r["reference"]) in shown
        }

    def operators(self, op_k: int) -> None:
        from robntk.analysis.report_figures import operator_figure

        k = min(op_k, int(self.table[self._cols(CLEAN, ROBUST)].notna().sum().min()))
        freq = operator_frequency(self.table, self.bench.space, k)
        share = operator_share(freq)
        self.csv("operator_frequency.csv", freq)
        self.csv("operator_share.csv", share)
        self.png("operator_frequency.png", operator_figure(freq))
        ops: dict = {}
        for _, r in share.iterrows():
            ops.setdefault(f"{r['dataset']} {r['criterion']} k={r['k']}", {})[r["op"]] = round(float(r["share"]), 4)
        self.key["operator_share"] = ops

    def top(self, top: int) -> None:
        tt = top_k_table(self.table, self.bench.space, min(top, self.n))
        self.csv(f"top{top}.csv", tt)
        _atomic_text(self.out / f"top{top}.md", _markdown_top(tt))
        self.files.append(f"top{top}.md")
        self.key["best"] = {
            f"{r['dataset']} {r['criterion']}": [int(r["nb201_index"]), round(float(r[r["criterion"]]), 4)]
            for _, r in tt[tt["rank"] == 1].iterrows()
        }

    def scatter(self) -> None:
        from robntk.analysis.report_figures import accuracy_robustness_figure

        sc = self.table[self._cols(CLEAN, ROBUST)].copy()
        sc.attrs = dict(self.table.attrs)
        sc["num_conv3x3"] = num_conv3x3(self.table.index, self.bench.space)
        self.csv("accuracy_robustness.csv", sc.reset_index())
        self.png("accuracy_robustness.png", accuracy_robustness_figure(sc))

    def search(self, search_ks: Sequence[int]) -> None:
        from robntk.analysis.report_figures import random_search_figure

        rs = random_search_curve(self.table, search_ks)
        self.csv("random_search.csv", rs)
        self.png("random_search.png", random_search_figure(rs))


def _agreement_numbers(row: pd.Series) -> dict:
    out = {"kendall_tau": round(float(row["kendall_tau"]), 4)}
    for c in row.index:
        if c.startswith("top") and c.endswith("_overlap"):
            out[c] = None if pd.isna(row[c]) else int(row[c])
    return out


def _atomic_text(path: Path, text: str) -> Path:
    with paths.atomic_write(path) as fh:
        fh.write(text)
    return path
