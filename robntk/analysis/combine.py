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
* **learned** (:mod:`robntk.analysis.combine_fit`:
  :data:`~robntk.analysis.combine_fit.LEARNED_METHODS`, :func:`~robntk.analysis.combine_fit.fit`):
  weights fitted on the benchmark accuracies of a training subset of architectures
  (:func:`~robntk.analysis.combine_fit.split`, seeded): ``linear`` (least squares of the
  target's percentile rank on the columns' percentile ranks), ``quadratic`` (ridge regression on
  ranks, squared ranks and pairwise rank products), ``pairwise_logistic`` (logistic regression
  on rank differences of sampled pairs: a linear RankNet, Burges et al. ICML 2005) and
  ``greedy_mean_rank`` (forward selection of columns and signs for ``mean_rank``, maximising
  Kendall τ on the training subset). Their τ is only meaningful on architectures left out of
  the fit (:func:`~robntk.analysis.combine_fit.report` evaluates them on the held-out half only).

Rank features. A column's percentile rank is its average rank divided by the number of non-NaN
values (``pandas.Series.rank(pct=True)``), in (0, 1], computed over the rows of the table passed
(score values only: no accuracy is used, so ranking over all architectures leaks no label). A row
with NaN in any used column gets a NaN combined score.

Evaluation: :func:`robntk.analysis.combine_fit.evaluate` gives Kendall τ-b with a
percentile-bootstrap CI over architectures (:func:`robntk.analysis.correlation.kendall_tau`,
:func:`robntk.analysis.correlation.bootstrap_ci`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from robntk.analysis.correlation import deduplicate
from robntk.data.benchmark import RobBench

ZERO_SHOT_METHODS: tuple[str, ...] = ("mean_rank", "geometric_rank", "harmonic_rank", "vote")


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
