"""Rank correlation of scores with NAS-RobBench-201, and the trivial baselines.

* :func:`kendall_tau` (τ-b, :func:`scipy.stats.kendalltau`) and :func:`spearman_rho`
  (:func:`scipy.stats.spearmanr`) drop pairs where either value is NaN (±inf are kept: they are
  ordered) and return NaN when fewer than 3 pairs remain or an input is constant.
* :func:`bootstrap_ci`: percentile bootstrap over architectures.
* :func:`baselines`: #cell parameters and #3×3-conv edges, the trivial proxies an NTK score must beat.
* :func:`correlation_table`: every score column × every (dataset, metric) of the benchmark.

Matching and deduplication. Scores are matched to the benchmark through the isomorphism
representative of each NB201 index. Isomorphic cells are one architecture in NAS-RobBench-201
(they share one measured value), so an isomorphism class is counted once: when a scores table
holds several members of one class, the row with the smallest NB201 index is kept (the
representative itself when present) and the others are dropped (their number is reported in
``table.attrs['n_isomorphs_dropped']``).

Which columns are scores (:func:`score_columns`): a column is a score iff its dtype is numeric
and not boolean, its name is not an identifier (:data:`ID_COLUMNS`), does not end in ``_s``
(timings in seconds) and does not contain ``degenerate`` (flags stored as 0/1). Pass
``columns=`` (``robntk correlate --columns``) to choose explicitly.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from robntk.core.registry import AA_METRIC, CLEAN_METRIC, PGD8_METRIC
from robntk.core.tables import read_table
from robntk.data.benchmark import DATASETS, METRICS, RobBench
from robntk.nb201.searchspace import NUM_ARCHS, SearchSpace, num_cell_params

#: Columns never treated as scores (identifiers and bookkeeping).
ID_COLUMNS: frozenset[str] = frozenset(
    {
        "nb201_index",
        "uid",
        "arch_str",
        "arch",
        "isomorph",
        "representative",
        "is_evaluated",
        "is_unique",
        "ops_code",
        "index",
        "seed",
        "shard",
        "status",
    }
)
#: Width C used for the #params baseline (NB201's first stage). The cell count at C=16 orders
#: cells exactly like the whole-network count (C = 16, 32, 64 stages): with at most 6 edges the
#: 3×3/1×1 cost ratio (8.1 at C=16, 8.7 for the network) never changes an order.
BASELINE_C = 16
BASELINES: tuple[str, ...] = ("num_params", "num_conv3x3")
TABLE_COLUMNS: tuple[str, ...] = (
    "score",
    "kind",
    "dataset",
    "metric",
    "n",
    "kendall_tau",
    "kendall_tau_ci_low",
    "kendall_tau_ci_high",
    "spearman_rho",
    "spearman_rho_ci_low",
    "spearman_rho_ci_high",
)
STATISTICS: tuple[str, ...] = ("kendall_tau", "spearman_rho")
DEFAULT_N_BOOT = 200
#: Most bootstrap resamples a command takes (``--n-boot``): the resample indices are one int64
#: array of n_boot × n_archs (100,000 × 6,466 ≈ 5 GB).
MAX_N_BOOT = 100_000


def check_n_boot(n_boot, name: str = "--n-boot") -> int:
    """``n_boot`` if it is an integer in [0, :data:`MAX_N_BOOT`].

    Raises:
        ValueError: naming ``name`` and the range.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {n_boot!r}")
    if n_boot > MAX_N_BOOT:
        raise ValueError(
            f"{name} must be at most {MAX_N_BOOT} (the resamples are one n_boot x n_archs array), got {n_boot!r}"
        )
    return int(n_boot)


# --------------------------------------------------------------------------- statistics
def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(_st.kendalltau(x, y).statistic)


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(_st.spearmanr(x, y).statistic)


def kendall_tau(a, b) -> float:
    """Kendall τ-b between two equal-length 1-D arrays (:func:`scipy.stats.kendalltau`, variant 'b').

    Pairs where either value is NaN are dropped. Returns NaN if fewer than 3 pairs remain or
    either array is constant.

    Raises:
        ValueError: different lengths.
    """
    x, y = _pairs(a, b)
    return _tau(x, y) if x.size >= 3 else math.nan


def spearman_rho(a, b) -> float:
    """Spearman ρ (average ranks for ties; :func:`scipy.stats.spearmanr`) with the NaN rule of
    :func:`kendall_tau` (NaN pairs dropped, NaN for < 3 pairs or a constant input).

    Raises:
        ValueError: different lengths.
    """
    x, y = _pairs(a, b)
    return _rho(x, y) if x.size >= 3 else math.nan


def _rowwise_spearman(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Spearman ρ of each resample (rows of ``idx``), vectorised, in blocks to bound memory."""
    out = np.empty(idx.shape[0])
    for s in range(0, idx.shape[0], 64):
        block = idx[s : s + 64]
        rx = _st.rankdata(x[block], axis=1)
        ry = _st.rankdata(y[block], axis=1)
        rx -= rx.mean(axis=1, keepdims=True)
        ry -= ry.mean(axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            out[s : s + 64] = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    return out


def bootstrap_ci(
    a, b, statistic: str | Callable = "kendall_tau", n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a rank correlation, resampling architectures.

    NaN pairs are dropped first (as in :func:`kendall_tau`); then ``n_boot`` resamples of the n
    remaining pairs are drawn with replacement and the statistic's ``(1-level)/2`` and
    ``(1+level)/2`` quantiles are returned (resamples giving NaN, e.g. constant, are ignored).
    Spearman is vectorised over resamples; Kendall τ-b costs ~0.6 ms per resample at n = 6,466
    (O(n log n) in scipy), so the default of 200 resamples (instead of the textbook 1,000; the
    percentile endpoints then move by about ±0.002 at n = 6,466) keeps a full 18-column table at
    a few seconds per score.

    Args:
        a, b: equal-length 1-D arrays.
        statistic: 'kendall_tau', 'spearman_rho' or a callable ``f(x, y) -> float``.
        n_boot: number of resamples (0 → (NaN, NaN)).
        seed: seed of :func:`numpy.random.default_rng`.
        level: confidence level in (0, 1).

    Returns:
        (low, high); (NaN, NaN) when fewer than 3 pairs or ``n_boot`` = 0.

    Raises:
        ValueError: unknown statistic, bad n_boot/level, different lengths.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if callable(statistic):
        fn = statistic
    elif statistic == "kendall_tau":
        fn = _tau
    elif statistic == "spearman_rho":
        fn = None
    else:
        raise ValueError(f"unknown statistic {statistic!r}; allowed: {', '.join(STATISTICS)} or a callable")
    x, y = _pairs(a, b)
    n = x.size
    if n < 3 or n_boot == 0:
        return (math.nan, math.nan)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    if fn is None:
        vals = _rowwise_spearman(x, y, idx)
    else:
        vals = np.array([fn(x[i], y[i]) for i in idx], dtype=np.float64)
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.quantile(vals, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return (float(lo), float(hi))


def paired_tau_difference(
    a, b, target, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """τ-b(a, target) − τ-b(b, target) on the same architectures, with a *paired* percentile
    bootstrap CI (each resample draws architectures once and recomputes both τ on them).

    Rows where any of a, b, target is NaN are dropped first.

    Args:
        a, b: two scores, equal-length 1-D arrays. target: benchmark accuracies, same length.
        n_boot, seed, level: as :func:`bootstrap_ci`.

    Returns:
        (difference, ci_low, ci_high); NaNs when fewer than 3 rows remain.

    Raises:
        ValueError: different lengths, bad n_boot/level.
    """
    a, b, t = (np.asarray(v, dtype=np.float64).ravel() for v in (a, b, target))
    if not a.shape == b.shape == t.shape:
        raise ValueError(f"a, b and target must have the same length, got {a.shape}, {b.shape}, {t.shape}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    ok = ~(np.isnan(a) | np.isnan(b) | np.isnan(t))
    a, b, t = a[ok], b[ok], t[ok]
    if a.size < 3:
        return (math.nan, math.nan, math.nan)
    diff = _tau(a, t) - _tau(b, t)
    if n_boot == 0:
        return (float(diff), math.nan, math.nan)
    idx = np.random.default_rng(seed).integers(0, a.size, size=(n_boot, a.size))
    vals = np.array([_tau(a[i], t[i]) - _tau(b[i], t[i]) for i in idx])
    vals = vals[~np.isnan(vals)]
    lo, hi = np.quantile(vals, [(1.0 - level) / 2.0, (1.0 + level) / 2.0]) if vals.size else (math.nan, math.nan)
    return (float(diff), float(lo), float(hi))


# --------------------------------------------------------------------------- baselines
def baselines(indices: Iterable[int], space: SearchSpace, C: int = BASELINE_C) -> pd.DataFrame:
    """Trivial architecture proxies.

    Args:
        indices: NB201 indices.
        space: the search space (for the cells' ops).
        C: channel width for the parameter count (default 16).

    Returns:
        DataFrame indexed by ``nb201_index`` (input order) with int64 columns
        ``num_params`` (trainable parameters of one cell at width C: 3×3 edge 9C²+2C, 1×1 edge
        C²+2C, other ops 0; :func:`robntk.nb201.searchspace.num_cell_params`; orders cells like the
        whole TinyNetwork count) and ``num_conv3x3`` (number of ``nor_conv_3x3`` edges).

    Raises:
        ValueError: an index outside 0..15624.
    """
    idx = [space.check_index(i) for i in indices]
    ops = [space.ops(i) for i in idx]
    return pd.DataFrame(
        {
            "num_params": np.array([num_cell_params(o, C) for o in ops], dtype=np.int64),
            "num_conv3x3": np.array([sum(op == "nor_conv_3x3" for op in o) for o in ops], dtype=np.int64),
        },
        index=pd.Index(np.asarray(idx, dtype=np.int64), name="nb201_index"),
    )


# --------------------------------------------------------------------------- tables
def score_columns(df: pd.DataFrame) -> list[str]:
    """Columns of ``df`` that are scores (the rule in the module docstring), in order."""
    out = []
    for c in df.columns:
        name = str(c)
        dt = df[c].dtype
        if pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt):
            continue
        if name in ID_COLUMNS or name.endswith("_s") or "degenerate" in name.lower():
            continue
        out.append(c)
    return out


def _indexed(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with an int64 ``nb201_index`` index (from the column or the index), validated."""
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    if "nb201_index" in scores.columns:
        df = scores.set_index("nb201_index")
    elif scores.index.name == "nb201_index":
        df = scores
    else:
        raise ValueError(f"scores need an 'nb201_index' column (or index); columns are {list(scores.columns)}")
    raw = df.index.to_numpy()
    try:
        idx = np.asarray(raw, dtype=np.float64)
        ok = np.isfinite(idx).all() and (idx == np.round(idx)).all() and (idx >= 0).all() and (idx < NUM_ARCHS).all()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        bad = [
            v
            for v in raw
            if not (
                isinstance(v, (int, np.integer, float, np.floating))
                and float(v).is_integer()
                and 0 <= float(v) < NUM_ARCHS
            )
        ][:3]
        bad = [v.item() if isinstance(v, np.generic) else v for v in bad]  # 99999, not np.int64(99999)
        raise ValueError(f"nb201_index values must be integers in 0..{NUM_ARCHS - 1}; bad values e.g. {bad}")
    df = df.copy()
    df.index = pd.Index(idx.astype(np.int64), name="nb201_index")
    dup = df.index[df.index.duplicated()].unique()
    if len(dup):
        raise ValueError(
            f"scores must have one row per architecture; nb201_index repeated: {list(dup[:5])} "
            "(average seeds/shards before correlating)"
        )
    return df


def deduplicate(scores: pd.DataFrame, bench: RobBench) -> tuple[pd.DataFrame, int]:
    """Keep one row per isomorphism class (smallest NB201 index), re-indexed by representative.

    Args:
        scores: DataFrame with an ``nb201_index`` column or index.
        bench: benchmark providing the isomorphism map.

    Returns:
        (DataFrame indexed by the representative ``nb201_index``, sorted; number of rows dropped).

    Raises:
        ValueError: missing/invalid/duplicated ``nb201_index``.
    """
    df = _indexed(scores).sort_index()
    reps = bench.representatives_of(df.index.to_numpy())
    keep = ~pd.Index(reps).duplicated(keep="first")
    out = df[keep].copy()
    out.index = pd.Index(reps[keep], name="nb201_index")
    return out.sort_index(), int((~keep).sum())


def _as_list(v, default: Sequence[str]) -> list[str]:
    if v is None:
        return list(default)
    return [v] if isinstance(v, str) else list(v)


def correlation_table(
    scores: pd.DataFrame,
    bench: RobBench,
    datasets: Sequence[str] | str = DATASETS,
    metrics: Sequence[str] | str = METRICS,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    include_baselines: bool = True,
    columns: Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Rank correlation of each score column with each benchmark (dataset, metric).

    Args:
        scores: one row per architecture; ``nb201_index`` as column or index; score columns
            selected by :func:`score_columns` unless ``columns`` is given. Isomorphs are
            deduplicated (module docstring); NaN scores are dropped pairwise (see ``n``).
        bench: the benchmark (:class:`robntk.data.benchmark.RobBench`).
        datasets, metrics: which benchmark values to correlate with (validated against ``bench``).
        n_boot: bootstrap resamples for the CIs (0: no CIs, NaN); see :func:`bootstrap_ci`.
        seed: bootstrap seed (the same for every row).
        include_baselines: add the :func:`baselines` (``num_params``, ``num_conv3x3``; prefixed
            ``baseline_`` if a score column already has that name), computed on the same
            deduplicated architectures, as extra rows with ``kind='baseline'``.
        columns: explicit score columns (must be numeric).
        level: CI level.

    Returns:
        Long DataFrame, one row per (score, dataset, metric), columns :data:`TABLE_COLUMNS`:
        ``score``, ``kind`` ('score'/'baseline'), ``dataset``, ``metric``, ``n`` (pairs used),
        ``kendall_tau`` (τ-b) with ``kendall_tau_ci_low``/``_high``, ``spearman_rho`` with
        ``spearman_rho_ci_low``/``_high``. ``attrs``: ``n_archs`` (deduplicated rows),
        ``n_isomorphs_dropped``, ``n_boot``, ``level``, ``seed``.

    Raises:
        ValueError: no/invalid ``nb201_index``, repeated index, no score columns, unknown or
            non-numeric explicit column, unknown dataset/metric (lists the allowed names).
    """
    df, dropped = deduplicate(scores, bench)
    if columns is None:
        cols = score_columns(df)
        if not cols:
            raise ValueError(
                f"no score columns found among {list(df.columns)} (numeric, not an identifier, not *_s, "
                "not *degenerate*); pass columns= / --columns"
            )
    else:
        cols = list(columns)
        for c in cols:
            if c not in df.columns:
                raise ValueError(f"score column {c!r} not found; columns are {list(df.columns)}")
            if pd.api.types.is_bool_dtype(df[c].dtype) or not pd.api.types.is_numeric_dtype(df[c].dtype):
                raise ValueError(f"score column {c!r} is not numeric (dtype {df[c].dtype})")
    pairs = [(d, m, bench.column(d, m)) for d in _as_list(datasets, DATASETS) for m in _as_list(metrics, METRICS)]
    targets = {col: bench.values(df.index.to_numpy(), d, m) for d, m, col in pairs}

    series: list[tuple[str, str, np.ndarray]] = [
        (str(c), "score", df[c].to_numpy(dtype=np.float64, na_value=np.nan)) for c in cols
    ]
    if include_baselines:
        base = baselines(df.index, bench.space)
        for c in BASELINES:
            name = c if c not in {s for s, _, _ in series} else f"baseline_{c}"
            series.append((name, "baseline", base[c].to_numpy(np.float64)))

    rows = []
    for name, kind, x in series:
        for d, m, col in pairs:
            y = targets[col]
            xs, ys = _pairs(x, y)
            n = int(xs.size)
            tau = _tau(xs, ys) if n >= 3 else math.nan
            rho = _rho(xs, ys) if n >= 3 else math.nan
            t_lo, t_hi = bootstrap_ci(xs, ys, "kendall_tau", n_boot, seed, level)
            r_lo, r_hi = bootstrap_ci(xs, ys, "spearman_rho", n_boot, seed, level)
            rows.append((name, kind, d, m, n, tau, t_lo, t_hi, rho, r_lo, r_hi))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table.attrs.update(n_archs=len(df), n_isomorphs_dropped=dropped, n_boot=n_boot, level=level, seed=seed)
    return table


# --------------------------------------------------------------------------- I/O
def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """Read a scores file (CSV/TSV or parquet, one row per architecture, column ``nb201_index``).

    Raises:
        FileNotFoundError: missing file.
        ValueError: unsupported suffix, unreadable file, no ``nb201_index`` column (all messages
            name the file).
    """
    return read_table(path, required=("nb201_index",), what="scores file")


def summary(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """A text table of τ-b [CI] per score and dataset vs the first of PGD-8, AutoAttack, clean in
    ``metrics``."""
    metric = next((m for m in (PGD8_METRIC, AA_METRIC, CLEAN_METRIC) if m in metrics), metrics[0])
    sub = table[table["metric"] == metric]
    datasets = list(dict.fromkeys(sub["dataset"]))
    width = max([len("score")] + [len(s) for s in sub["score"]])
    lines = [
        f"Kendall tau-b [{100 * table.attrs.get('level', 0.95):.0f}% CI] vs {metric}:",
        " " * width + "".join(f"  {d:>24}" for d in datasets),
    ]
    for s in dict.fromkeys(sub["score"]):
        cells = []
        for d in datasets:
            r = sub[(sub["score"] == s) & (sub["dataset"] == d)].iloc[0]
            ci = (
                ""
                if math.isnan(r.kendall_tau_ci_low)
                else f" [{r.kendall_tau_ci_low:+.3f},{r.kendall_tau_ci_high:+.3f}]"
            )
            cells.append(f"  {r.kendall_tau:>+8.3f}{ci:>16}")
        lines.append(f"{s:<{width}}" + "".join(cells))
    return "\n".join(lines)
