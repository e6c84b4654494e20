"""Combining training-free score columns into one score, and evaluating combinations honestly.

Input everywhere: a DataFrame of score columns keyed by ``nb201_index`` (column or index), one row
per architecture, higher = predicted better (pass ``signs`` to flip a column). Use
:func:`score_table` to deduplicate isomorphs (the rule of :func:`robntk.analysis.correlation.deduplicate`:
the smallest NB201 index of a class is kept, re-keyed by its representative).

Two families, reported apart:

* **zero-shot** (:data:`ZERO_SHOT_METHODS`, :func:`zero_shot`): fixed rules with fixed, stated
  weights (equal unless given) that look at no accuracy: the weighted arithmetic
  (``mean_rank``, the Borda count), geometric (``geometric_rank``) or harmonic
  (``harmonic_rank``) mean of the columns' percentile ranks, and ``vote``, the Copeland score of
  the pairwise majority vote (Abdelfattah et al., "Zero-cost proxies for lightweight NAS",
  ICLR 2021: the vote of synflow, jacob_cov and snip).
* **learned** (:data:`LEARNED_METHODS`, :func:`fit`): weights fitted on the benchmark accuracies
  of a training subset of architectures (:func:`split`, seeded): ``linear`` (least squares of the
  target's percentile rank on the columns' percentile ranks), ``quadratic`` (ridge regression on
  ranks, squared ranks and pairwise rank products), ``pairwise_logistic`` (logistic regression
  on rank differences of sampled pairs: a linear RankNet, Burges et al. ICML 2005) and
  ``greedy_mean_rank`` (forward selection of columns and signs for ``mean_rank``, maximising
  Kendall τ on the training subset). Their τ is only meaningful on architectures left out of
  the fit (:func:`report` evaluates them on the held-out half only).

Rank features. A column's percentile rank is its average rank divided by the number of non-NaN
values (``pandas.Series.rank(pct=True)``), in (0, 1], computed over the rows of the table passed
(score values only: no accuracy is used, so ranking over all architectures leaks no label). A row
with NaN in any used column gets a NaN combined score.

Evaluation: :func:`evaluate` gives Kendall τ-b with a percentile-bootstrap CI over architectures
(:func:`robntk.analysis.correlation.kendall_tau`, :func:`robntk.analysis.correlation.bootstrap_ci`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize

from robntk.analysis.correlation import DEFAULT_N_BOOT, bootstrap_ci, deduplicate, kendall_tau
from robntk.data.benchmark import RobBench

ZERO_SHOT_METHODS: tuple[str, ...] = ("mean_rank", "geometric_rank", "harmonic_rank", "vote")
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


# --------------------------------------------------------------------------- inputs
def score_table(scores: pd.DataFrame, bench: RobBench) -> pd.DataFrame:
    """One row per isomorphism class, indexed by the representative ``nb201_index``.

    Args:
        scores: DataFrame with an ``nb201_index`` column or index (one row per cell).
        bench: benchmark providing the isomorphism map.

    Returns:
        The deduplicated table (:func:`robntk.analysis.correlation.deduplicate`: smallest NB201 index of a
        class kept), sorted by index.

    Raises:
        ValueError: missing/invalid/repeated ``nb201_index``.
    """
    return deduplicate(scores, bench)[0]


def _check_columns(scores: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")  # noqa: TRY004 (project: bad input → ValueError)
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols:
        raise ValueError("at least one numeric score column is needed (--columns); the table has none")
    for c in cols:
        if c not in scores.columns:
            raise ValueError(f"score column {c!r} not found; columns are {list(scores.columns)}")
        if pd.api.types.is_bool_dtype(scores[c].dtype) or not pd.api.types.is_numeric_dtype(scores[c].dtype):
            raise ValueError(f"score column {c!r} is not numeric (dtype {scores[c].dtype})")
    if len(set(cols)) != len(cols):
        raise ValueError(f"score columns repeat: {cols}")
    return cols


def _vector(values, k: int, name: str, default: float) -> np.ndarray:
    if values is None:
        return np.full(k, default, dtype=np.float64)
    v = np.asarray(list(values.values()) if isinstance(values, Mapping) else values, dtype=np.float64).ravel()
    if v.size != k or not np.isfinite(v).all():
        raise ValueError(f"{name} must be {k} finite numbers (one per column), got {values!r}")
    return v


def normalised_ranks(scores: pd.DataFrame, columns: Sequence[str], signs=None) -> pd.DataFrame:
    """Percentile ranks of score columns (average rank / number of non-NaN values, in (0, 1]).

    Args:
        scores: DataFrame of score columns (any index; kept).
        columns: the columns to rank.
        signs: optional ±1 per column (sequence or {column: sign}); -1 ranks the negated column
            (for scores where lower is better). Default +1.

    Returns:
        float64 DataFrame (n_rows, len(columns)); NaN where the score is NaN; 1.0 is the best row.

    Raises:
        ValueError: unknown/non-numeric column, signs not ±1 or of the wrong length.
    """
    cols = _check_columns(scores, columns)
    s = _vector(signs if not isinstance(signs, Mapping) else [signs.get(c, 1.0) for c in cols], len(cols), "signs", 1.0)
    if not np.isin(s, (-1.0, 1.0)).all():
        raise ValueError(f"signs must be +1 or -1, got {list(s)}")
    out = pd.DataFrame(index=scores.index)
    for c, sg in zip(cols, s):
        x = scores[c].astype(np.float64)
        out[c] = (sg * x).rank(method="average", pct=True)
    return out


# --------------------------------------------------------------------------- zero-shot
def vote_score(ranks: np.ndarray, weights: np.ndarray | None = None, block: int = 512) -> np.ndarray:
    """Copeland score of the weighted pairwise majority vote of k rankings.

    For rows i ≠ j, column c votes ``sign(r_ic - r_jc)`` (0 on ties) with weight ``w_c``; i beats
    j iff the weighted sum is > 0. The score is (wins - losses) / (n - 1) in [-1, 1]. With one
    column it orders rows exactly as that column. Rows with any NaN get NaN and take no part.
    Cost O(n² k), computed in row blocks (n = 6,466, k = 13: a few seconds).

    Args:
        ranks: float (n, k) array (ranks or raw scores; only their order per column matters).
        weights: (k,) non-negative weights (default equal).
        block: rows per block (memory ~ block·n·k·8 bytes).

    Returns:
        float64 (n,) array.

    Source: Abdelfattah et al., ICLR 2021 (majority vote between proxies), ranked
    with the Copeland rule.
    """
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"ranks must be a 2-D (n, k) array, got shape {r.shape}")
    w = _vector(weights, r.shape[1], "weights", 1.0)
    out = np.full(r.shape[0], np.nan)
    ok = ~np.isnan(r).any(axis=1)
    x = r[ok]
    n = x.shape[0]
    if n == 0:
        return out
    res = np.empty(n)
    for s in range(0, n, block):
        d = np.sign(x[s : s + block, None, :] - x[None, :, :])  # (b, n, k)
        v = d @ w  # (b, n)
        res[s : s + block] = (v > 0).sum(1) - (v < 0).sum(1)
    out[ok] = res / max(n - 1, 1)
    return out


def zero_shot(
    scores: pd.DataFrame, columns: Sequence[str], method: str = "mean_rank", weights=None, signs=None
) -> pd.Series:
    """A fixed (accuracy-free) combination of score columns.

    Args:
        scores: DataFrame of score columns, one row per architecture (index kept, e.g. ``nb201_index``).
        columns: the columns to combine (one column: its percentile rank, or its vote order).
        method: one of :data:`ZERO_SHOT_METHODS`: ``mean_rank`` Σ wᵢ rᵢ / Σ wᵢ; ``geometric_rank``
            exp(Σ wᵢ log rᵢ / Σ wᵢ); ``harmonic_rank`` Σ wᵢ / Σ (wᵢ / rᵢ); ``vote``
            (:func:`vote_score`), with rᵢ the percentile ranks (:func:`normalised_ranks`).
        weights: non-negative weight per column (sequence or {column: weight}); default equal.
        signs: ±1 per column (see :func:`normalised_ranks`).

    Returns:
        float64 Series indexed like ``scores``, named by :func:`spec_string`; higher = better;
        NaN where any used column is NaN.

    Raises:
        ValueError: unknown method (lists the allowed ones), bad columns/weights/signs.
    """
    if method not in ZERO_SHOT_METHODS:
        raise ValueError(f"unknown zero-shot method {method!r}; allowed: {', '.join(ZERO_SHOT_METHODS)}")
    cols = _check_columns(scores, columns)
    w = _vector(
        weights if not isinstance(weights, Mapping) else [weights.get(c, 1.0) for c in cols], len(cols), "weights", 1.0
    )
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(w)}")
    r = normalised_ranks(scores, cols, signs).to_numpy()
    with np.errstate(all="ignore"):
        if method == "mean_rank":
            v = r @ w / w.sum()
        elif method == "geometric_rank":
            v = np.exp(np.log(r) @ w / w.sum())
        elif method == "harmonic_rank":
            v = w.sum() / ((1.0 / r) @ w)
        else:
            v = vote_score(r, w)
    sg = signs if not isinstance(signs, Mapping) else [signs.get(c, 1.0) for c in cols]
    return pd.Series(v, index=scores.index, name=spec_string(method, cols, weights=w, signs=sg))


def spec_string(method: str | None, columns: Sequence[str], weights=None, signs=None) -> str:
    """Canonical text of a combination, e.g. ``mean_rank(nwot,synflow,-plain)`` or
    ``mean_rank(nwot:2,params:1)``; parsed back by :func:`parse_spec`. ``method=None`` with one
    column gives the column itself (``params`` or ``-plain``)."""
    cols = list(columns)
    s = [1.0] * len(cols) if signs is None else [float(x) for x in signs]
    w = None if weights is None else [float(x) for x in weights]
    equal = w is None or all(math.isclose(x, w[0]) for x in w)
    parts = []
    for i, c in enumerate(cols):
        p = ("-" if s[i] < 0 else "") + str(c)
        if not equal:
            p += f":{w[i]:g}"
        parts.append(p)
    if method is None:
        if len(parts) != 1:
            raise ValueError("a bare column spec holds exactly one column")
        return parts[0]
    return f"{method}({','.join(parts)})"


_SPEC = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$")


def parse_spec(spec: str) -> tuple[str | None, list[str], list[float] | None, list[float]]:
    """Parse a combination spec: ``'col'``, ``'-col'`` or ``'method(col[:weight], -col, ...)'``.

    Returns:
        (method or None for a bare column, columns, weights or None (equal), signs).

    Raises:
        ValueError: malformed spec, unknown method, bad weight.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"score spec must be a non-empty string, got {spec!r}")
    m = _SPEC.match(spec)
    if m is None:
        name = spec.strip()
        sign = -1.0 if name.startswith("-") else 1.0
        return None, [name.lstrip("-").strip()], None, [sign]
    method, body = m.group(1), m.group(2)
    if method not in ZERO_SHOT_METHODS:
        raise ValueError(f"unknown combination {method!r} in spec {spec!r}; allowed: {', '.join(ZERO_SHOT_METHODS)}")
    cols, weights, signs = [], [], []
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty column in spec {spec!r}")
        name, _, wt = part.partition(":")
        name = name.strip()
        signs.append(-1.0 if name.startswith("-") else 1.0)
        cols.append(name.lstrip("-").strip())
        try:
            weights.append(float(wt) if wt else 1.0)
        except ValueError:
            raise ValueError(f"bad weight {wt!r} in spec {spec!r}; expected a number") from None
    return method, cols, (None if all(x == 1.0 for x in weights) else weights), signs


def from_spec(scores: pd.DataFrame, spec: str) -> pd.Series:
    """Evaluate a spec (:func:`parse_spec`) on a scores table.

    A column whose name is exactly the spec is returned as is (so a table may store combinations
    under their spec names); a bare column returns the column itself (times its sign), unranked;
    a method applies :func:`zero_shot`. The Series is named ``spec`` (as given, stripped).

    Raises:
        ValueError: malformed spec, unknown column or method.
    """
    if isinstance(spec, str) and spec.strip() in scores.columns:
        name = _check_columns(scores, [spec.strip()])[0]
        return scores[name].astype(np.float64).rename(name)
    method, cols, weights, signs = parse_spec(spec)
    if method is None:
        c = _check_columns(scores, cols)[0]
        out = signs[0] * scores[c].astype(np.float64)
    else:
        out = zero_shot(scores, cols, method, weights=weights, signs=signs)
    return out.rename(spec.strip())


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
        method: one of :data:`LEARNED_METHODS` (module docstring).
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
        score: Series indexed by representative ``nb201_index`` (e.g. from :func:`zero_shot`,
            :meth:`Combination.predict`, or a table column), higher = better.
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
        scores: deduplicated score table indexed by ``nb201_index`` (:func:`score_table`).
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
