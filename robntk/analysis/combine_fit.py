"""Learned combinations of training-free score columns, and the honest evaluation of any combination.

The learned family of :mod:`robntk.analysis.combine` (:data:`LEARNED_METHODS`, :func:`fit`):
weights fitted on the benchmark accuracies of a seeded training subset (:func:`split`), kept as a
:class:`Combination`. :func:`evaluate` gives Kendall τ-b with a percentile-bootstrap CI over
architectures; :func:`report` evaluates single columns, zero-shot rules and learned combinations
on one seeded split (learned ones on the held-out part only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from robntk.analysis.combine import _check_columns, from_spec, normalised_ranks, parse_spec, spec_string
from robntk.analysis.correlation import DEFAULT_N_BOOT, bootstrap_ci, kendall_tau
from robntk.data.benchmark import RobBench

LEARNED_METHODS: tuple[str, ...] = ("linear", "quadratic", "pairwise_logistic", "greedy_mean_rank")
#: Default target of the learned fits and first evaluation target.
TARGET: tuple[str, str] = ("cifar10", "val_pgd_8.0_acc")
#: Default evaluation targets of :func:`report` (PGD-8 on the three datasets, CIFAR-10 clean).
EVAL_TARGETS: tuple[tuple[str, str], ...] = (
    ("cifar10", "val_pgd_8.0_acc"),
    ("cifar10", "val_acc"),
    ("cifar100", "val_pgd_8.0_acc"),
    ("ImageNet16-120", "val_pgd_8.0_acc"),
)
REPORT_COLUMNS: tuple[str, ...] = (
    "score",
    "kind",
    "eval_set",
    "dataset",
    "metric",
    "n",
    "kendall_tau",
    "kendall_tau_ci_low",
    "kendall_tau_ci_high",
)


# --------------------------------------------------------------------------- learned
def split(index, seed: int, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of architectures into a training and a held-out part.

    Args:
        index: architecture keys (e.g. a table's ``nb201_index``), unique.
        seed: seed of :func:`numpy.random.default_rng` (a permutation of the sorted keys).
        train_fraction: share in the training part (rounded down), in (0, 1).

    Returns:
        (train keys, test keys), each sorted int64.

    Raises:
        ValueError: bad fraction, repeated keys, fewer than 2 keys.
    """
    keys = np.sort(np.asarray(index, dtype=np.int64))
    if keys.size < 2 or np.unique(keys).size != keys.size:
        raise ValueError(f"split needs at least 2 distinct keys, got {keys.size} ({np.unique(keys).size} distinct)")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    perm = np.random.default_rng(seed).permutation(keys)
    n_train = max(1, min(keys.size - 1, int(keys.size * train_fraction)))
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def _quadratic_features(r: np.ndarray) -> np.ndarray:
    k = r.shape[1]
    iu = np.triu_indices(k, 1)
    return np.column_stack([r, r**2, r[:, iu[0]] * r[:, iu[1]]])


@dataclass(frozen=True)
class Combination:
    """A fitted (learned) combination of score columns.

    Attributes:
        method: one of :data:`LEARNED_METHODS`.
        columns: the score columns used (in feature order).
        weights: float64 weights (per rank feature; for ``quadratic``: ranks, squares, then the
            pairwise products in ``numpy.triu_indices`` order; for ``greedy_mean_rank``: 1 per
            selected column).
        signs: ±1 per column (``greedy_mean_rank`` may flip columns; 1 otherwise).
        intercept: additive constant (does not change the ranking).
        info: fit details (training size, seed, regularisation, training τ).
    """

    method: str
    columns: tuple[str, ...]
    weights: tuple[float, ...]
    signs: tuple[float, ...]
    intercept: float = 0.0
    info: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        """Short label, e.g. ``linear[13 cols]`` or ``greedy_mean_rank(params,nwot)``."""
        if self.method == "greedy_mean_rank":
            return "greedy_" + spec_string("mean_rank", self.columns, signs=self.signs)
        return f"{self.method}[{','.join(self.columns)}]"

    def predict(self, scores: pd.DataFrame) -> pd.Series:
        """Combined score of every row of ``scores`` (ranks computed over ``scores``' rows).

        Returns:
            float64 Series indexed like ``scores``, named :attr:`name`; NaN where a used column is NaN.

        Raises:
            ValueError: a column is missing.
        """
        r = normalised_ranks(scores, self.columns, self.signs).to_numpy()
        if self.method == "greedy_mean_rank":
            v = r.mean(axis=1)
        else:
            f = _quadratic_features(r) if self.method == "quadratic" else r
            v = f @ np.asarray(self.weights) + self.intercept
        return pd.Series(v, index=scores.index, name=self.name)


def _fit_pairwise_logistic(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_pairs: int, l2: float
) -> np.ndarray:
    n = x.shape[0]
    i = rng.integers(0, n, size=n_pairs)
    j = rng.integers(0, n, size=n_pairs)
    keep = y[i] != y[j]
    i, j = i[keep], j[keep]
    d = x[i] - x[j]
    s = np.where(y[i] > y[j], 1.0, -1.0)

    def loss(w):
        z = s * (d @ w)
        val = np.logaddexp(0.0, -z).mean() + 0.5 * l2 * (w @ w)
        g = -(d * (s * np.exp(-np.logaddexp(0.0, z)))[:, None]).mean(axis=0) + l2 * w
        return val, g

    res = optimize.minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return res.x


def _greedy(r: pd.DataFrame, y: np.ndarray, max_columns: int | None, tol: float):
    """Forward selection of (column, sign) for mean_rank; a flipped rank is 1 - r (rank of -x up to a constant)."""
    chosen: list[tuple[str, float]] = []
    total = np.zeros(len(r))
    best = -np.inf
    while len(chosen) < (max_columns or r.shape[1]):
        used = {c for c, _ in chosen}
        cand = []
        for c in r.columns:
            if c in used:
                continue
            for sg in (1.0, -1.0):
                rc = r[c].to_numpy() if sg > 0 else 1.0 - r[c].to_numpy()
                tau = kendall_tau(total + rc, y)
                cand.append((-np.inf if math.isnan(tau) else tau, c, sg, rc))
        if not cand:
            break
        tau, c, sg, rc = max(cand, key=lambda t: t[0])  # first of equal maxima (column order, + before -)
        if not tau > best + tol:
            break
        best, total = tau, total + rc
        chosen.append((c, sg))
    return chosen, best


def fit(
    scores: pd.DataFrame,
    target: pd.Series,
    columns: Sequence[str],
    method: str = "linear",
    train_index=None,
    seed: int = 0,
    ridge: float = 1e-3,
    n_pairs: int = 200_000,
    l2: float = 1e-4,
    max_columns: int | None = None,
    tol: float = 1e-4,
) -> Combination:
    """Fit a learned combination on the training architectures.

    Rank features are the percentile ranks of ``columns`` over all rows of ``scores`` (no labels
    involved); only ``target`` values of ``train_index`` rows are used.

    Args:
        scores: DataFrame of score columns, one row per architecture, indexed by ``nb201_index``.
        target: accuracy (or any quantity to rank by) indexed by ``nb201_index``; higher = better.
        columns: the score columns.
        method: one of :data:`LEARNED_METHODS` (:mod:`robntk.analysis.combine` docstring).
        train_index: keys of the training rows (default all rows of ``scores``; then any τ on
            those rows is in-sample).
        seed: seed of the pair sampling (``pairwise_logistic``).
        ridge: ridge penalty of ``quadratic`` (on standardised features; ``linear`` is plain least squares).
        n_pairs: sampled training pairs of ``pairwise_logistic`` (pairs with equal targets dropped).
        l2: L2 penalty of ``pairwise_logistic``.
        max_columns, tol: ``greedy_mean_rank`` stops after ``max_columns`` columns or when τ
            improves by ≤ ``tol``.

    Returns:
        A :class:`Combination`.

    Raises:
        ValueError: unknown method, bad columns, training rows without scores/target, fewer than
            10 usable training rows.
    """
    if method not in LEARNED_METHODS:
        raise ValueError(f"unknown learned method {method!r}; allowed: {', '.join(LEARNED_METHODS)}")
    cols = _check_columns(scores, columns)
    r_all = normalised_ranks(scores, cols)
    idx = scores.index if train_index is None else pd.Index(np.asarray(train_index, dtype=np.int64))
    missing = idx.difference(scores.index)
    if len(missing):
        raise ValueError(f"training keys not in the scores table, e.g. {list(missing[:3])}")
    r = r_all.loc[idx]
    y = pd.Series(target).reindex(idx).to_numpy(np.float64)
    ok = ~(np.isnan(y) | r.isna().any(axis=1).to_numpy())
    if ok.sum() < 10:
        raise ValueError(
            f"only {int(ok.sum())} of {len(idx)} training rows have all scores and a target; need ≥ 10 "
            "(a larger training part: --train-fraction, or more scored architectures)"
        )
    r, y = r[ok], y[ok]
    x = r.to_numpy()
    yr = pd.Series(y).rank(pct=True).to_numpy()
    info = {"n_train": int(ok.sum()), "seed": seed}
    signs = tuple(1.0 for _ in cols)
    intercept = 0.0
    if method == "linear":
        a = np.column_stack([x, np.ones(len(x))])
        sol, *_ = np.linalg.lstsq(a, yr, rcond=None)
        w, intercept = sol[:-1], float(sol[-1])
    elif method == "quadratic":
        f = _quadratic_features(x)
        mu, sd = f.mean(0), f.std(0)
        sd[sd == 0] = 1.0
        fs = (f - mu) / sd
        a = fs.T @ fs + ridge * len(fs) * np.eye(fs.shape[1])
        ws = np.linalg.solve(a, fs.T @ (yr - yr.mean()))
        w = ws / sd
        intercept = float(yr.mean() - mu @ w)
        info["ridge"] = ridge
    elif method == "pairwise_logistic":
        w = _fit_pairwise_logistic(x, y, np.random.default_rng(seed), n_pairs, l2)
        info.update(n_pairs=n_pairs, l2=l2)
    else:
        chosen, tau = _greedy(r, y, max_columns, tol)
        cols = [c for c, _ in chosen]
        signs = tuple(s for _, s in chosen)
        w = np.ones(len(cols))
        info["train_tau"] = tau
    comb = Combination(method, tuple(cols), tuple(float(v) for v in w), signs, intercept, info)
    if "train_tau" not in info:
        info["train_tau"] = kendall_tau(comb.predict(scores).loc[r.index].to_numpy(), y)
    return comb


# --------------------------------------------------------------------------- evaluation
def evaluate(
    score: pd.Series,
    bench: RobBench,
    targets: Sequence[tuple[str, str]] = EVAL_TARGETS,
    index=None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Kendall τ-b (and bootstrap CI) of one score against benchmark targets.

    Args:
        score: Series indexed by representative ``nb201_index`` (e.g. from
            :func:`robntk.analysis.combine.zero_shot`, :meth:`Combination.predict`, or a table
            column), higher = better.
        bench: the benchmark.
        targets: (dataset, metric) pairs.
        index: keys to evaluate on (default: all of ``score``'s index).
        n_boot, seed, level: see :func:`robntk.analysis.correlation.bootstrap_ci`.

    Returns:
        DataFrame with columns ``dataset, metric, n, kendall_tau, kendall_tau_ci_low,
        kendall_tau_ci_high`` (NaN pairs dropped, ``n`` = pairs used).

    Raises:
        ValueError: unknown dataset/metric, keys outside the score's index.
    """
    keys = score.index if index is None else pd.Index(np.asarray(index, dtype=np.int64))
    missing = keys.difference(score.index)
    if len(missing):
        raise ValueError(f"evaluation keys not in the score's index, e.g. {list(missing[:3])}")
    x = score.reindex(keys).to_numpy(np.float64)
    rows = []
    for d, m in targets:
        y = bench.values(keys.to_numpy(np.int64), d, m)
        ok = ~(np.isnan(x) | np.isnan(y))
        lo, hi = bootstrap_ci(x[ok], y[ok], "kendall_tau", n_boot, seed, level)
        rows.append((d, m, int(ok.sum()), kendall_tau(x[ok], y[ok]), lo, hi))
    return pd.DataFrame(
        rows, columns=["dataset", "metric", "n", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]
    )


def report(
    scores: pd.DataFrame,
    bench: RobBench,
    singles: Sequence[str] = (),
    zero_shot_specs: Sequence[str] = (),
    learned: Sequence[tuple[str, Sequence[str]]] = (),
    fixed: Mapping[str, tuple[str, pd.Series]] | None = None,
    target: tuple[str, str] = TARGET,
    targets: Sequence[tuple[str, str]] = EVAL_TARGETS,
    split_seed: int = 0,
    train_fraction: float = 0.5,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    fit_kwargs: Mapping | None = None,
    progress: bool = True,
):
    """Evaluate single columns, zero-shot and learned combinations on one seeded split.

    Singles and zero-shot specs are evaluated on all rows (``eval_set='all'``) and on the
    held-out part (``'test'``); learned methods are fitted on the training part with ``target``
    and evaluated on ``'test'`` only.

    Args:
        scores: deduplicated score table indexed by ``nb201_index``
            (:func:`robntk.analysis.combine.score_table`).
        bench: the benchmark.
        singles: bare column specs (``'params'``, ``'-plain'``) → ``kind='single'``.
        zero_shot_specs: specs like ``'mean_rank(nwot,synflow)'`` → ``kind='zero_shot'``.
        learned: (method, columns) pairs → ``kind='learned'``.
        fixed: extra precomputed scores {label: (kind, Series)} (e.g. a combination tuned on
            another benchmark), evaluated like zero-shot ones under the given kind.
        target: (dataset, metric) fitted by the learned methods (on the training part only).
        targets: (dataset, metric) pairs evaluated.
        split_seed, train_fraction: the split (:func:`split`) over rows with every used column.
        n_boot, seed, level: bootstrap CIs.
        fit_kwargs: extra keyword arguments of :func:`fit`.
        progress: show a tqdm bar.

    Returns:
        (table with columns :data:`REPORT_COLUMNS`, {label: Combination} of the fitted models).
        ``table.attrs``: ``n_rows``, ``n_train``, ``n_test``, ``split_seed``, ``train_fraction``,
        ``target``, ``n_boot``, ``level``, ``train_index`` (the training keys).

    Raises:
        ValueError: bad specs/columns/targets (see the functions used).
    """
    from tqdm.auto import tqdm

    used = set()
    for s in list(singles) + list(zero_shot_specs):
        used.update(parse_spec(s)[1])
    for _, cols in learned:
        used.update(cols)
    _check_columns(scores, sorted(used)) if used else None
    complete = scores.index[scores[sorted(used)].notna().all(axis=1)] if used else scores.index
    train, test = split(complete, split_seed, train_fraction)
    jobs: list[tuple[str, str, object]] = [(s, "single", s) for s in singles]
    jobs += [(s, "zero_shot", s) for s in zero_shot_specs]
    jobs += [(lab, kind, ser) for lab, (kind, ser) in (fixed or {}).items()]
    jobs += [(f"{m}", "learned", (m, tuple(c))) for m, c in learned]
    rows, models = [], {}
    y_fit = pd.Series(bench.values(scores.index.to_numpy(np.int64), *target), index=scores.index)
    for label, kind, what in tqdm(jobs, desc="combine", disable=not progress):
        if kind == "learned":
            m, cols = what
            comb = fit(scores, y_fit, cols, m, train_index=train, seed=seed, **dict(fit_kwargs or {}))
            label = comb.name if m == "greedy_mean_rank" else f"{m}({len(cols)} cols)"
            models[label] = comb
            ser, sets = comb.predict(scores), (("test", test),)
        else:
            ser = from_spec(scores, what) if isinstance(what, str) else what
            sets = (("all", complete), ("test", test))
        for eval_set, keys in sets:
            ev = evaluate(ser, bench, targets, index=keys, n_boot=n_boot, seed=seed, level=level)
            for r in ev.itertuples(index=False):
                rows.append(
                    (
                        label,
                        kind,
                        eval_set,
                        r.dataset,
                        r.metric,
                        r.n,
                        r.kendall_tau,
                        r.kendall_tau_ci_low,
                        r.kendall_tau_ci_high,
                    )
                )
    table = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    table.attrs.update(
        n_rows=len(complete),
        n_train=len(train),
        n_test=len(test),
        split_seed=split_seed,
        train_fraction=train_fraction,
        target=list(target),
        n_boot=n_boot,
        level=level,
        train_index=[int(i) for i in train],
    )
    return table, models
