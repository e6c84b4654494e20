"""The benchmark's own analyses (NAS-RobBench-201, Wu et al., ICLR 2024, Section 3) as tables and figures.

Pure functions return :class:`pandas.DataFrame` s computed over the representatives of the
isomorphism classes (6,466 for the full benchmark; isomorphs share one measured value, so each
class counts once). The builders of :mod:`robntk.analysis.report_figures` turn those tables into
:class:`matplotlib.figure.Figure` s (object API with the Agg canvas, never ``pyplot``);
:func:`robntk.analysis.report_writer.write_report` runs everything and writes each PNG next to the CSV behind it (the
``robntk report`` command, :mod:`robntk.commands.report`).

Analyses:

* :func:`metric_summary` — box-plot statistics of every metric per dataset, with the random-guess
  level (the project page's box-plot figure).
* :func:`tau_pairs` / :func:`tau_matrix` — Kendall τ-b (and Spearman ρ) between all metrics
  within and across datasets.
* :func:`standard_training_agreement` — rank agreement of NAS-RobBench-201 with standard-training
  references: NB201's 200-epoch test accuracies (:func:`robntk.data.benchmark.load_nb201_accuracy`)
  and Jung et al.'s robustness of the standard-trained NB201 weights (:func:`load_jung_robustness`):
  τ-b, Spearman ρ and the overlap of the top-k sets.
* :func:`operator_frequency` — which op sits on each edge among the top-k architectures.
* :func:`top_k_table` — the best architectures per dataset and criterion, with arch strings.
* :func:`random_search_curve` — exact expected outcome of random search with a clean or a
  robust selection criterion (the simplest of the NAS algorithms the paper runs).

Conventions. "Top-k by a metric" is the k architectures with the highest value; ties are
broken by the smaller NB201 index (a stable descending sort), architectures without a value
(NaN) are never selected. Accuracies are fractions in [0, 1]; ε of the metric names is in /255
units as in the official keys (``val_pgd_8.0_acc`` = PGD at ε = 8/255).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from robntk.analysis.correlation import kendall_tau, spearman_rho
from robntk.core.registry import NUM_CLASSES
from robntk.data.benchmark import DATASETS, METRICS, RobBench, column_name, load_nb201_accuracy
from robntk.data.jung import load_jung_robustness
from robntk.nb201.searchspace import EDGES, OPS, SearchSpace

#: Short labels of the metrics (figures and tables).
METRIC_LABELS: dict[str, str] = {
    "val_acc": "clean",
    "val_fgsm_3.0_acc": "FGSM-3",
    "val_pgd_3.0_acc": "PGD-3",
    "val_fgsm_8.0_acc": "FGSM-8",
    "val_pgd_8.0_acc": "PGD-8",
    "autoattack": "AA",
}
#: Short labels of the datasets.
DATASET_LABELS: dict[str, str] = {"cifar10": "C10", "cifar100": "C100", "ImageNet16-120": "IN16"}
#: Okabe & Ito (2008) colour-blind-safe palette (black last).
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
CLEAN, ROBUST = "val_acc", "val_pgd_8.0_acc"
EDGE_LABELS: tuple[str, ...] = tuple(f"{a}→{b}" for a, b in EDGES)

#: Reference columns produced by :func:`reference_table` (per dataset ``<dataset>_<name>``).
REFERENCE_LABELS: dict[str, str] = {
    "nb201_test_acc": "NB201 std. training, 200 ep, test acc",
    "jung_clean": "Jung std. training, clean",
    "jung_aa_apgd-ce": "Jung APGD-CE 1/255",
    "jung_aa_square": "Jung Square 1/255",
    "jung_fgsm": "Jung FGSM 1/255",
    "jung_pgd": "Jung PGD 1/255",
    "jung_corr": "Jung corruptions",
}
DEFAULT_OVERLAP_K: tuple[int, ...] = (10, 50, 100)
DEFAULT_OP_K = 100
DEFAULT_TOP = 10
DEFAULT_SEARCH_K: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def metric_label(dataset: str, metric: str) -> str:
    """Short label, e.g. ``'C10 PGD-8'`` (unknown names are kept as they are)."""
    return f"{DATASET_LABELS.get(dataset, dataset)} {METRIC_LABELS.get(metric, metric)}"


def random_guess(dataset: str) -> float:
    """Random-guess accuracy 1 / #classes (CIFAR-10 0.1, CIFAR-100 0.01, ImageNet16-120 1/120).

    Raises:
        ValueError: unknown dataset (lists the known ones).
    """
    if dataset not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r} for the random-guess level; known: {', '.join(NUM_CLASSES)}")
    return 1.0 / NUM_CLASSES[dataset]


# --------------------------------------------------------------------------- inputs
def benchmark_table(
    bench: RobBench, datasets: Sequence[str] | None = None, metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """The benchmark's values over its representatives, restricted to the report's metrics.

    Args:
        bench: the benchmark.
        datasets: datasets to keep (default: those of :data:`robntk.data.benchmark.DATASETS` present).
        metrics: metrics to keep (default: those of :data:`robntk.data.benchmark.METRICS` present).

    Returns:
        float64 DataFrame indexed by representative ``nb201_index`` with the present columns
        ``<dataset>_<metric>``; ``attrs['datasets']`` / ``attrs['metrics']`` list what is kept.

    Raises:
        ValueError: an unknown dataset or metric (lists the allowed names), or nothing left.
    """
    table = bench.table()
    ds = [d for d in DATASETS if d in bench.datasets] if datasets is None else list(datasets)
    ms = [m for m in METRICS if m in bench.metrics] if metrics is None else list(metrics)
    for d in ds:
        if d not in bench.datasets:
            raise ValueError(f"unknown dataset {d!r}; allowed: {', '.join(bench.datasets)}")
    for m in ms:
        if m not in bench.metrics:
            raise ValueError(f"unknown metric {m!r}; allowed: {', '.join(bench.metrics)}")
    cols = [column_name(d, m) for d in ds for m in ms if column_name(d, m) in table.columns]
    if not cols:
        raise ValueError(f"the benchmark has no values for datasets {ds} and metrics {ms}")
    out = table[cols].copy()
    out.attrs["datasets"] = [d for d in ds if any(c.startswith(d + "_") for c in cols)]
    out.attrs["metrics"] = [m for m in ms if any(c.endswith("_" + m) for c in cols)]
    return out


def reference_table(
    bench: RobBench,
    data_dir: str | os.PathLike | None = None,
    nb201: pd.DataFrame | None = None,
    jung: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Standard-training references on the benchmark's representatives.

    Args:
        bench: the benchmark (its representatives are the rows).
        data_dir: where to read the references from when not given.
        nb201: output of :func:`robntk.data.benchmark.load_nb201_accuracy` (read when None).
        jung: output of :func:`load_jung_robustness` (read when None).

    Returns:
        float64 DataFrame indexed like ``bench.table()`` with columns
        ``<dataset>_nb201_test_acc`` and ``<dataset>_jung_<label>``.

    Raises:
        FileNotFoundError: a reference file is missing (named).
    """
    nb201 = load_nb201_accuracy(data_dir) if nb201 is None else nb201
    jung = load_jung_robustness(data_dir) if jung is None else jung
    idx = bench.table().index
    return pd.concat([nb201.reindex(idx), jung.reindex(idx)], axis=1)


# --------------------------------------------------------------------------- selection helpers
def check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive int, got {k!r}")
    return int(k)


def top_k_indices(values: pd.Series, k: int) -> pd.Index:
    """NB201 indices of the k highest values (ties → smaller index first; NaN never selected).

    Args:
        values: float Series indexed by ``nb201_index``.
        k: how many (1 ≤ k ≤ number of non-NaN values).

    Returns:
        int64 Index of length k, best first.

    Raises:
        ValueError: k not a positive int or larger than the number of non-NaN values.
    """
    k = check_k(k)
    v = values.dropna()
    if k > len(v):
        raise ValueError(f"k = {k} exceeds the {len(v)} architectures with a value of {values.name!r}")
    order = np.lexsort((v.index.to_numpy(), -v.to_numpy()))
    return v.index[order[:k]]


def top_k_overlap(a: pd.Series, b: pd.Series, k: int) -> int:
    """Size of the intersection of the top-k sets of two rankings of the same architectures.

    Only architectures with a value in both ``a`` and ``b`` take part (so both top-k sets are drawn
    from one population); selection as in :func:`top_k_indices`. Two independent random rankings
    of n architectures share k²/n of them in expectation.

    Args:
        a, b: float Series indexed by ``nb201_index``.
        k: top-k size.

    Returns:
        |top_k(a) ∩ top_k(b)|, an int in [0, k].

    Raises:
        ValueError: bad k (see :func:`top_k_indices`).
    """
    both = a.notna() & b.reindex(a.index).notna()
    ia = top_k_indices(a[both], k)
    ib = top_k_indices(b.reindex(a.index)[both], k)
    return int(len(ia.intersection(ib)))


# --------------------------------------------------------------------------- analyses
def metric_summary(table: pd.DataFrame, whis: float = 1.5) -> pd.DataFrame:
    """Box-plot statistics of every metric per dataset (the project page's box-plot figure).

    Statistics are those of :func:`matplotlib.cbook.boxplot_stats` (quartiles by linear
    interpolation, whiskers at the most extreme value within ``whis`` × IQR of the box), the
    numbers :func:`boxplot_figure` draws.

    Args:
        table: output of :func:`benchmark_table` (columns ``<dataset>_<metric>``).
        whis: whisker reach in IQRs.

    Returns:
        One row per column: ``dataset, metric, label, n, mean, min, q1, median, q3, max,
        whisker_low, whisker_high, n_outliers, random_guess`` (fractions).

    Raises:
        ValueError: a column whose dataset is not in :data:`robntk.core.registry.NUM_CLASSES`.
    """
    from matplotlib import cbook

    rows = []
    for d in table.attrs.get("datasets", DATASETS):
        for m in table.attrs.get("metrics", METRICS):
            col = column_name(d, m)
            if col not in table.columns:
                continue
            v = table[col].dropna().to_numpy(np.float64)
            st = cbook.boxplot_stats(v, whis=whis)[0]
            rows.append(
                {
                    "dataset": d,
                    "metric": m,
                    "label": metric_label(d, m),
                    "n": int(v.size),
                    "mean": float(st["mean"]),
                    "min": float(v.min()),
                    "q1": float(st["q1"]),
                    "median": float(st["med"]),
                    "q3": float(st["q3"]),
                    "max": float(v.max()),
                    "whisker_low": float(st["whislo"]),
                    "whisker_high": float(st["whishi"]),
                    "n_outliers": int(len(st["fliers"])),
                    "random_guess": random_guess(d),
                }
            )
    return pd.DataFrame(rows)


def tau_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ-b and Spearman ρ between every pair of benchmark columns.

    Args:
        table: output of :func:`benchmark_table` (columns ``<dataset>_<metric>``, rows =
            representatives).

    Returns:
        One row per unordered pair of distinct columns, in column order:
        ``dataset_a, metric_a, dataset_b, metric_b, scope`` ('within' the same dataset or
        'across' datasets), ``n`` (pairs without NaN), ``kendall_tau`` (τ-b,
        :func:`robntk.analysis.correlation.kendall_tau`), ``spearman_rho``.
    """
    keys = _column_keys(table)
    rows = []
    for i, (ca, da, ma) in enumerate(keys):
        for cb, db, mb in keys[i + 1 :]:
            x, y = table[ca].to_numpy(np.float64), table[cb].to_numpy(np.float64)
            rows.append(
                {
                    "dataset_a": da,
                    "metric_a": ma,
                    "dataset_b": db,
                    "metric_b": mb,
                    "scope": "within" if da == db else "across",
                    "n": int((~(np.isnan(x) | np.isnan(y))).sum()),
                    "kendall_tau": kendall_tau(x, y),
                    "spearman_rho": spearman_rho(x, y),
                }
            )
    return pd.DataFrame(rows)


def _column_keys(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    out = []
    for d in table.attrs.get("datasets", DATASETS):
        for m in table.attrs.get("metrics", METRICS):
            if column_name(d, m) in table.columns:
                out.append((column_name(d, m), d, m))
    return out


def tau_matrix(pairs: pd.DataFrame, statistic: str = "kendall_tau") -> pd.DataFrame:
    """Square symmetric matrix from :func:`tau_pairs` (diagonal 1), rows/columns ``<dataset>_<metric>``.

    Raises:
        ValueError: ``statistic`` is not a column of ``pairs``.
    """
    if statistic not in pairs.columns:
        raise ValueError(f"unknown statistic {statistic!r}; allowed: kendall_tau, spearman_rho")
    names = list(
        dict.fromkeys(
            [column_name(d, m) for d, m in zip(pairs["dataset_a"], pairs["metric_a"])]
            + [column_name(d, m) for d, m in zip(pairs["dataset_b"], pairs["metric_b"])]
        )
    )
    mat = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for da, ma, db, mb, v in zip(
        pairs["dataset_a"], pairs["metric_a"], pairs["dataset_b"], pairs["metric_b"], pairs[statistic]
    ):
        a, b = column_name(da, ma), column_name(db, mb)
        mat.loc[a, b] = mat.loc[b, a] = v
    return mat


def standard_training_agreement(
    table: pd.DataFrame, references: pd.DataFrame, ks: Sequence[int] = DEFAULT_OVERLAP_K
) -> pd.DataFrame:
    """Rank agreement of each benchmark metric with each standard-training reference (same dataset).

    Args:
        table: output of :func:`benchmark_table`.
        references: output of :func:`reference_table` (same index); columns
            ``<dataset>_<reference>``, reference a key of :data:`REFERENCE_LABELS`.
        ks: top-k sizes for the overlap.

    Returns:
        One row per (dataset, metric, reference): ``dataset, metric, reference, n,
        kendall_tau, spearman_rho`` and per k ``top<k>_overlap`` (count) and
        ``top<k>_overlap_frac`` (count / k), plus ``top<k>_chance`` = k²/n.

    Raises:
        ValueError: bad k.
    """
    ks = [check_k(k) for k in ks]
    rows = []
    for col, d, m in _column_keys(table):
        for ref in REFERENCE_LABELS:
            rcol = f"{d}_{ref}"
            if rcol not in references.columns:
                continue
            a, b = table[col], references[rcol].reindex(table.index)
            keep = a.notna() & b.notna()
            n = int(keep.sum())
            row = {
                "dataset": d,
                "metric": m,
                "reference": ref,
                "n": n,
                "kendall_tau": kendall_tau(a, b),
                "spearman_rho": spearman_rho(a, b),
            }
            for k in ks:
                ov = top_k_overlap(a[keep], b[keep], k) if k <= n else math.nan
                row[f"top{k}_overlap"] = ov
                row[f"top{k}_overlap_frac"] = ov / k
                row[f"top{k}_chance"] = k * k / n if n else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def _op_matrix(indices, space: SearchSpace) -> np.ndarray:
    """(n, 6) int op ids (:data:`robntk.nb201.searchspace.OPS` order) of NB201 indices."""
    return np.array([[OPS.index(o) for o in space.ops(int(i))] for i in indices], dtype=np.int64)


def operator_frequency(
    table: pd.DataFrame, space: SearchSpace, k: int = DEFAULT_OP_K, criteria: Sequence[str] = (CLEAN, ROBUST)
) -> pd.DataFrame:
    """Share of each op on each edge among the top-k architectures, per dataset and criterion.

    The whole space (all representatives of ``table``) is added as criterion ``'all'`` for
    reference; it is the same population for every dataset.

    Args:
        table: output of :func:`benchmark_table`.
        space: the search space (ops of each NB201 index).
        k: top-k size (1 ≤ k ≤ number of architectures with a value).
        criteria: metrics to rank by.

    Returns:
        Long DataFrame ``dataset, criterion, k, edge, op, count, frequency`` (count / k; per
        (dataset, criterion, edge) the frequencies sum to 1). For ``'all'``, ``k`` is the number
        of representatives. Edges are labelled ``'0→1'`` … in :data:`robntk.nb201.searchspace.EDGES`
        order.

    Raises:
        ValueError: bad k, unknown criterion.
    """
    k = check_k(k)
    rows = []
    all_ops = _op_matrix(table.index, space)
    pos = {int(i): j for j, i in enumerate(table.index)}
    for d in table.attrs.get("datasets", DATASETS):
        sets = []
        for c in criteria:
            col = column_name(d, c)
            if col not in table.columns:
                allowed = ", ".join(table.attrs.get("metrics", METRICS))
                raise ValueError(f"unknown criterion {c!r} for {d}; allowed: {allowed}")
            sets.append((c, all_ops[[pos[int(i)] for i in top_k_indices(table[col], k)]]))
        sets.append(("all", all_ops))
        for c, ops in sets:
            for e, edge in enumerate(EDGE_LABELS):
                counts = np.bincount(ops[:, e], minlength=len(OPS))
                for o, op in enumerate(OPS):
                    rows.append(
                        {
                            "dataset": d,
                            "criterion": c,
                            "k": len(ops),
                            "edge": edge,
                            "op": op,
                            "count": int(counts[o]),
                            "frequency": counts[o] / len(ops),
                        }
                    )
    return pd.DataFrame(rows)


def operator_share(freq: pd.DataFrame) -> pd.DataFrame:
    """Share of each op over all 6 edges, from :func:`operator_frequency`.

    Returns:
        ``dataset, criterion, k, op, share`` (share = count over all edges / (6 k)).
    """
    g = freq.groupby(["dataset", "criterion", "k", "op"], sort=False)["count"].sum().reset_index()
    g["share"] = g["count"] / (len(EDGES) * g["k"])
    return g.drop(columns="count")


def top_k_table(
    table: pd.DataFrame, space: SearchSpace, k: int = DEFAULT_TOP, criteria: Sequence[str] = (CLEAN, ROBUST)
) -> pd.DataFrame:
    """The k best architectures per dataset and criterion, with their arch strings and all metrics.

    Args:
        table: output of :func:`benchmark_table`.
        space: the search space (arch strings).
        k: how many per (dataset, criterion).
        criteria: metrics to rank by.

    Returns:
        ``dataset, criterion, rank`` (1 = best), ``nb201_index, arch_str, num_conv3x3`` and one
        column per metric of that dataset (named by the metric, e.g. ``val_pgd_8.0_acc``).

    Raises:
        ValueError: bad k, unknown criterion.
    """
    k = check_k(k)
    metrics = table.attrs.get("metrics", METRICS)
    rows = []
    for d in table.attrs.get("datasets", DATASETS):
        for c in criteria:
            col = column_name(d, c)
            if col not in table.columns:
                raise ValueError(f"unknown criterion {c!r} for {d}; allowed: {', '.join(metrics)}")
            for r, i in enumerate(top_k_indices(table[col], k), start=1):
                row = {
                    "dataset": d,
                    "criterion": c,
                    "rank": r,
                    "nb201_index": int(i),
                    "arch_str": space.arch_str(int(i)),
                    "num_conv3x3": sum(o == "nor_conv_3x3" for o in space.ops(int(i))),
                }
                for m in metrics:
                    if column_name(d, m) in table.columns:
                        row[m] = float(table.at[i, column_name(d, m)])
                rows.append(row)
    return pd.DataFrame(rows)


def expected_best_of_k(select: np.ndarray, report: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Exact expected ``report`` value of the ``select``-best of k architectures drawn without replacement.

    Random search with budget k samples k of the n architectures uniformly without replacement
    and returns the one with the highest ``select`` value. Sorting by ``select`` ascending (ties
    → larger index first, i.e. the smaller index wins a tie, as in :func:`top_k_indices`), the
    i-th (1-based) is the winner with probability C(i−1, k−1) / C(n, k), so the expectation is
    Σ_i report_(i) C(i−1, k−1) / C(n, k), evaluated with log-gamma for stability.

    Args:
        select: float (n,) criterion values (no NaN).
        report: float (n,) values to report (no NaN), e.g. PGD-8 accuracy.
        ks: budgets, each in 1..n.

    Returns:
        float64 (len(ks),) expectations.

    Raises:
        ValueError: shapes differ, NaN present, a k outside 1..n.
    """
    from scipy.special import gammaln

    s = np.asarray(select, np.float64)
    r = np.asarray(report, np.float64)
    if s.shape != r.shape or s.ndim != 1:
        raise ValueError(f"select and report must be 1-D of equal length, got {s.shape} and {r.shape}")
    if np.isnan(s).any() or np.isnan(r).any():
        raise ValueError("select and report must not contain NaN (drop those architectures first)")
    n = s.size
    order = np.lexsort((-np.arange(n), s))  # ascending value; in a tie the smaller position ranks higher
    rs = r[order]
    i = np.arange(1, n + 1)
    out = []
    for k in ks:
        k = check_k(k)
        if k > n:
            raise ValueError(f"budget k = {k} exceeds the {n} architectures")
        lognum = np.where(i >= k, gammaln(i) - gammaln(k) - gammaln(np.maximum(i - k + 1, 1)), -np.inf)
        logden = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        out.append(float(np.exp(lognum - logden) @ rs))
    return np.asarray(out)


def random_search_curve(
    table: pd.DataFrame,
    ks: Sequence[int] = DEFAULT_SEARCH_K,
    report_metric: str = ROBUST,
    criteria: Sequence[str] = (CLEAN, ROBUST),
) -> pd.DataFrame:
    """Expected outcome of random search per dataset, selecting by each criterion (exact, no sampling).

    Args:
        table: output of :func:`benchmark_table`.
        ks: budgets (number of architectures queried); those above the population are skipped.
        report_metric: the metric reported for the selected architecture.
        criteria: selection metrics (the clean vs the robust criterion of the paper's NAS runs).

    Returns:
        ``dataset, criterion, report_metric, k, expected, best`` (``best`` = the population
        maximum of ``report_metric``).

    Raises:
        ValueError: unknown metric, bad k.
    """
    rows = []
    for d in table.attrs.get("datasets", DATASETS):
        rcol = column_name(d, report_metric)
        if rcol not in table.columns:
            raise ValueError(f"unknown report metric {report_metric!r} for {d}")
        for c in criteria:
            scol = column_name(d, c)
            if scol not in table.columns:
                raise ValueError(f"unknown criterion {c!r} for {d}")
            keep = table[scol].notna() & table[rcol].notna()
            sel, rep = table.loc[keep, scol].to_numpy(), table.loc[keep, rcol].to_numpy()
            kk = [int(k) for k in ks if check_k(k) <= sel.size]
            vals = expected_best_of_k(sel, rep, kk)
            for k, v in zip(kk, vals):
                rows.append(
                    {
                        "dataset": d,
                        "criterion": c,
                        "report_metric": report_metric,
                        "k": k,
                        "expected": v,
                        "best": float(rep.max()),
                    }
                )
    return pd.DataFrame(rows)


def num_conv3x3(indices, space: SearchSpace) -> np.ndarray:
    """Number of ``nor_conv_3x3`` edges of each NB201 index → int64 (n,)."""
    return (_op_matrix(indices, space) == OPS.index("nor_conv_3x3")).sum(axis=1)


# --------------------------------------------------------------------------- writing
