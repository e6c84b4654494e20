"""The evaluation protocol of the few-shot predictors (:mod:`robntk.analysis.predictors`).

:func:`few_shot_draws`: for each label budget and draw, a seeded random training set of
``budget`` cells is drawn from a pool, a predictor is fitted on their labels, and Kendall τ-b
(:func:`robntk.analysis.correlation.kendall_tau`) is computed on every cell outside the training
set: overall and within the top ``top_fraction`` of the test cells by the target
(:func:`tau_top`). :func:`summarise_draws` gives the mean and a Student-t CI over draws;
:func:`conv3x3_split` is the structure-shift split; :func:`model_predict_fn` wraps
:func:`robntk.analysis.predictors.fit_predictor` for the driver; :func:`plot_budgets` draws τ vs
the label budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from robntk.analysis.cell_features import _check_ops_array
from robntk.analysis.correlation import kendall_tau
from robntk.analysis.predictors import MIN_LABELS, PredictorConfig, fit_predictor
from robntk.nb201.searchspace import OP_ID

DRAW_COLUMNS: tuple[str, ...] = ("predictor", "kind", "budget", "draw", "eval", "n_train", "n_test", "tau", "tau_top")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "predictor",
    "kind",
    "budget",
    "eval",
    "n_draws",
    "n_test",
    "tau_mean",
    "tau_ci_low",
    "tau_ci_high",
    "tau_sd",
    "tau_top_mean",
    "tau_top_ci_low",
    "tau_top_ci_high",
    "tau_top_sd",
)


# --------------------------------------------------------------------------- evaluation
def tau_top(pred, y, fraction: float = 0.2) -> float:
    """Kendall τ-b within the top ``fraction`` of the rows by the true target ``y``.

    Args:
        pred, y: float (n,) predicted and true values (NaN pairs dropped).
        fraction: share of rows kept, in (0, 1]: those with ``y`` ≥ its (1 − fraction) quantile.

    Returns:
        τ over the kept rows (NaN if fewer than 3).

    Raises:
        ValueError: fraction outside (0, 1], different lengths.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"top fraction must be in (0, 1], got {fraction!r}")
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and y must have the same length, got {p.size} and {t.size}")
    ok = ~(np.isnan(p) | np.isnan(t))
    p, t = p[ok], t[ok]
    if t.size == 0:
        return math.nan
    keep = t >= np.quantile(t, 1.0 - fraction)
    return kendall_tau(p[keep], t[keep])


#: A few-shot method for :func:`few_shot_draws`: (training keys, their labels, seed) → predictions
#: for every key of the evaluation table (float64 (n,), aligned with ``keys``).
PredictFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def model_predict_fn(features: pd.DataFrame, config: PredictorConfig = PredictorConfig()) -> PredictFn:
    """A :data:`PredictFn` fitting :func:`fit_predictor` on the rows of ``features`` named by the
    training keys (model seed = the draw's seed) and predicting every row of ``features``.

    Args:
        features: float DataFrame (n, k) indexed by ``nb201_index``
            (:func:`robntk.analysis.cell_features.feature_table`).
        config: the predictor settings (its seed is replaced by the draw's).

    Returns:
        ``fn(train_keys int64 (b,), y_train float64 (b,), seed) -> float64 (n,)``; it raises
        KeyError for a training key not in ``features`` and ValueError as :func:`fit_predictor`.
    """
    x_all = features.to_numpy(np.float64)
    pos = pd.Series(np.arange(len(features)), index=features.index)

    def fn(train_keys: np.ndarray, y_train: np.ndarray, seed: int) -> np.ndarray:
        cfg = dataclasses.replace(config, seed=seed)
        fp = fit_predictor(x_all[pos.loc[train_keys].to_numpy()], y_train, cfg)
        return fp.predict(x_all)

    return fn


def few_shot_draws(
    predict_fns: Mapping[str, tuple[str, PredictFn]],
    keys,
    target: np.ndarray,
    budgets: Sequence[int],
    n_draws: int,
    seed: int = 0,
    pool=None,
    test=None,
    evals: Mapping[str, np.ndarray] | None = None,
    top_fraction: float = 0.2,
    progress: bool = False,
) -> pd.DataFrame:
    """Kendall τ of few-shot predictors over label budgets and random draws.

    For budget b and draw d the training keys are ``default_rng([seed, b, d]).choice(pool, b,
    replace=False)`` (the same for every predictor); the predictor gets their ``target`` labels
    only; τ is computed on the test keys (``test`` minus the training keys; default every key
    not in training) against ``target`` and each array of ``evals``.

    Args:
        predict_fns: {name: (kind, fn)}; kind is a label such as ``'few_shot'`` or
            ``'zero_shot'`` (a zero-shot fn ignores the labels).
        keys: int64 (n,) the keys (NB201 indices) of the rows every fn predicts.
        target: float64 (n,) labels used for fitting (aligned with ``keys``).
        budgets: label budgets (each ≤ the pool size).
        n_draws: draws per budget, ≥ 1.
        seed: seed of the draws (model seeds derive from it).
        pool: keys the training sets are drawn from (default all).
        test: keys evaluated (default all); training keys are always removed.
        evals: {name: float64 (n,) values} evaluated besides ``target`` (named ``'target'``),
            e.g. other datasets' labels for transfer.
        top_fraction: share of test keys kept by :func:`tau_top`.
        progress: tqdm bar.

    Returns:
        Long DataFrame with columns :data:`DRAW_COLUMNS`.

    Raises:
        ValueError: a budget larger than the pool or < :data:`MIN_LABELS`, lengths differ,
            n_draws < 1, keys outside ``keys``.
    """
    from tqdm.auto import tqdm

    keys = np.asarray(keys, dtype=np.int64)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != keys.shape:
        raise ValueError(f"target must align with keys: {target.shape} vs {keys.shape}")
    pool = keys if pool is None else np.asarray(pool, dtype=np.int64)
    test = keys if test is None else np.asarray(test, dtype=np.int64)
    for name, k in (("pool", pool), ("test", test)):
        if not np.isin(k, keys).all():
            raise ValueError(
                f"{name} keys must be among keys, e.g. {[int(i) for i in k[~np.isin(k, keys)][:3]]} are not"
            )
    pool = pool[np.isfinite(_values_at(keys, target, pool))]  # only labelled keys can be drawn
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws must be an int ≥ 1, got {n_draws!r}")
    for b in budgets:
        if not MIN_LABELS <= b <= pool.size:
            raise ValueError(f"budget {b} must be in {MIN_LABELS}..{pool.size} (the labelled pool)")
    all_evals = {"target": target, **dict(evals or {})}
    for name, v in all_evals.items():
        if np.asarray(v).shape != keys.shape:
            raise ValueError(f"eval {name!r} must align with keys: {np.asarray(v).shape} vs {keys.shape}")
    pos = pd.Series(np.arange(keys.size), index=keys)
    rows = []
    jobs = [(b, d) for b in budgets for d in range(n_draws)]
    for b, d in tqdm(jobs, desc="few-shot", disable=not progress):
        rng = np.random.default_rng([seed, int(b), d])
        train = np.sort(rng.choice(pool, size=int(b), replace=False))
        model_seed = int(rng.integers(2**31 - 1))
        tr_pos = pos.loc[train].to_numpy()
        te_pos = pos.loc[np.setdiff1d(test, train)].to_numpy()
        for name, (kind, fn) in predict_fns.items():
            pred = np.asarray(fn(train, target[tr_pos].copy(), model_seed), dtype=np.float64)
            for ev, vals in all_evals.items():
                v = np.asarray(vals, dtype=np.float64)[te_pos]
                p = pred[te_pos]
                ok = ~np.isnan(v)
                rows.append(
                    (name, kind, int(b), d, ev, int(b), int(ok.sum()), kendall_tau(p[ok], v[ok]),
                     tau_top(p[ok], v[ok], top_fraction))
                )  # fmt: skip
    return pd.DataFrame(rows, columns=list(DRAW_COLUMNS))


def _values_at(keys: np.ndarray, values: np.ndarray, which: np.ndarray) -> np.ndarray:
    return pd.Series(values, index=keys).loc[which].to_numpy(np.float64)


def summarise_draws(draws: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean, Student-t CI of the mean and SD over draws of :func:`few_shot_draws`' τ columns.

    Returns:
        DataFrame with :data:`SUMMARY_COLUMNS`, one row per (predictor, kind, budget, eval), in
        first-appearance order.

    Raises:
        ValueError: missing columns, level outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    missing = [c for c in DRAW_COLUMNS if c not in draws.columns]
    if missing:
        raise ValueError(f"draw table lacks columns {missing}")
    out = []
    for key, g in draws.groupby(["predictor", "kind", "budget", "eval"], sort=False):
        row = dict(zip(("predictor", "kind", "budget", "eval"), key))
        row.update(n_draws=len(g), n_test=int(g["n_test"].median()))
        for col in ("tau", "tau_top"):
            x = g[col].to_numpy(np.float64)
            x = x[~np.isnan(x)]
            m = float(x.mean()) if x.size else math.nan
            sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
            half = stats.t.ppf(0.5 + level / 2, x.size - 1) * sd / math.sqrt(x.size) if x.size > 1 else math.nan
            row.update({f"{col}_mean": m, f"{col}_ci_low": m - half, f"{col}_ci_high": m + half, f"{col}_sd": sd})
        out.append(row)
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def conv3x3_split(features: pd.DataFrame, ops: np.ndarray, at_most: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Structure-shift split by the number of 3×3 convolutions of a cell.

    Args:
        features: a table indexed by ``nb201_index`` (row order = ``ops`` order).
        ops: integer (n, 6) op ids of its rows.
        at_most: cells with ≤ ``at_most`` ``nor_conv_3x3`` edges go to the first part.

    Returns:
        (keys with ≤ at_most, keys with > at_most), each int64 sorted.

    Raises:
        ValueError: ``ops`` does not have one row per feature row.
    """
    x = _check_ops_array(ops)
    if x.shape[0] != len(features):
        raise ValueError(f"ops must have one row per feature row: {x.shape[0]} vs {len(features)}")
    n3 = (x == OP_ID["nor_conv_3x3"]).sum(1)
    keys = features.index.to_numpy(np.int64)
    return np.sort(keys[n3 <= at_most]), np.sort(keys[n3 > at_most])


# --------------------------------------------------------------------------- figure
def plot_budgets(summary: pd.DataFrame, path, eval_name: str = "target", title: str | None = None, dpi: int = 150):
    """τ vs label budget (overall and within the top fraction), mean and CI band over draws.

    Args:
        summary: output of :func:`summarise_draws`.
        path: output image, written atomically.
        eval_name: the ``eval`` rows drawn (``'target'`` or a transfer target).
        title: figure title. dpi: resolution.

    Returns:
        The written path.

    Raises:
        ValueError: no rows for ``eval_name`` or missing columns.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from robntk.analysis.search_curves import PALETTE
    from robntk.core.paths import atomic_save

    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    d = summary[summary["eval"] == eval_name] if not missing else summary.iloc[:0]
    if missing or d.empty:
        raise ValueError(f"summary has no rows for eval {eval_name!r} (or lacks columns {missing})")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    names = list(dict.fromkeys(d["predictor"]))
    for ax, col, lab in zip(axes, ("tau", "tau_top"), ("all test archs", "top 20 % of test archs by the target")):
        for i, name in enumerate(names):
            g = d[d["predictor"] == name].sort_values("budget")
            kind = g["kind"].iloc[0]
            style = "--" if kind == "zero_shot" else "-"
            c = PALETTE[i % len(PALETTE)]
            ax.plot(g["budget"], g[f"{col}_mean"], style, color=c, marker="o" if kind != "zero_shot" else None,
                    ms=3, lw=1.5, label=f"{name} [{kind}]")  # fmt: skip
            ax.fill_between(g["budget"], g[f"{col}_ci_low"], g[f"{col}_ci_high"], color=c, alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("labels (adversarially trained archs)")
        ax.set_ylabel("Kendall τ on the other archs")
        ax.set_title(lab, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    return atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
