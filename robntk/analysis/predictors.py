"""Few-shot performance predictors: features of NB201 cells, models with inner cross-validation,
and the evaluation protocol (label budgets, random draws, structure shift, dataset transfer).

The realistic setting: a user trains a few (10–1,000) architectures adversarially and wants the
rest ranked. A predictor maps label-free features of a cell to a score; it is fitted on the
labelled cells only and evaluated on every other cell.

Features (:func:`feature_table`; every one computed without any accuracy):

* ``proxies``: zero-cost proxy columns (e.g. the 13 NAS-Bench-Suite-Zero NASLib proxies,
  :func:`robntk.data.suite_zero.load_suite_zero`) as percentile ranks over the rows of the table
  (:func:`robntk.analysis.combine.normalised_ranks`; label-free, so ranking over all cells leaks
  nothing); columns ``zc_<name>``.
* ``onehot``: the op of each of the 6 edges, one-hot (:func:`onehot_features`, 30 columns).
* ``graf``: graph features in the spirit of GRAF (Kadlecová, Lukasik, Pilát, Vidnerová, Safari,
  Neruda, Hutter, "Surprisingly strong performance prediction with neural graph features",
  ICML 2024): op counts, number / shortest / longest input→output paths using only a given op
  set, op counts on the edges that lie on a live input→output path, node in/out degrees
  (:func:`graf_features`, :data:`GRAF_OP_SETS`).

Models (:data:`MODELS`, scikit-learn): ``extra_trees`` (Geurts, Ernst, Wehenkel, Mach. Learn.
2006), ``random_forest`` (Breiman 2001), ``ridge`` (standardised features). The regression target
is the percentile rank of the training labels (scale-free: only the order matters for τ). Every
hyper-parameter in :data:`DEFAULT_GRIDS` is chosen by inner K-fold cross-validation on the
training labels only (:func:`inner_cv`): the candidate with the highest Kendall τ between the
pooled out-of-fold predictions and the training labels wins (first on ties), then it is refitted
on all training labels. :func:`fit_predictor` receives only the training rows, so test labels
cannot reach the selection by construction.

Evaluation (:func:`few_shot_draws`): for each label budget and draw, a seeded random training set
of ``budget`` cells is drawn from a pool, a predictor is fitted on their labels, and Kendall τ-b
(:func:`robntk.analysis.correlation.kendall_tau`) is computed on every cell outside the training
set: overall and within the top ``top_fraction`` of the test cells by the target
(:func:`tau_top`, the region a search cares about). :func:`summarise_draws` gives the mean and a
Student-t CI over draws. Structure shift (:func:`conv3x3_split`) and dataset transfer (evaluate
the same predictions against another dataset's labels) use the same driver.

Same seed → same bits (scikit-learn models with ``random_state`` and ``n_jobs=1``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from robntk.analysis.combine import normalised_ranks
from robntk.analysis.correlation import kendall_tau
from robntk.core.config import flag
from robntk.core.registry import check_seed
from robntk.nb201.searchspace import EDGES, NUM_EDGES, OP_ID, OPS, check_ops, parse_arch_str

#: Encodings of :func:`feature_table` besides proxies.
ENCODINGS: tuple[str, ...] = ("onehot", "graf")
#: Op-id sets of the GRAF path features (ids of :data:`robntk.nb201.searchspace.OPS`).
GRAF_OP_SETS: dict[str, tuple[int, ...]] = {
    "skip": (1,),
    "conv1x1": (2,),
    "conv3x3": (3,),
    "pool": (4,),
    "conv": (2, 3),
    "param_free": (1, 4),
    "any": (1, 2, 3, 4),
}
#: The 4 input→output paths of the NB201 cell, as edge indices into :data:`EDGES`.
IO_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
MODELS: tuple[str, ...] = ("extra_trees", "random_forest", "ridge")
#: Hyper-parameter candidates searched by :func:`inner_cv` (full grid per model).
DEFAULT_GRIDS: dict[str, dict[str, tuple]] = {
    "extra_trees": {"max_features": (0.33, 1.0), "min_samples_leaf": (1, 3)},
    "random_forest": {"max_features": (0.33, 1.0), "min_samples_leaf": (1, 3)},
    "ridge": {"alpha": (0.1, 1.0, 10.0, 100.0)},
}
#: Fewest training labels :func:`fit_predictor` accepts.
MIN_LABELS = 5
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


# --------------------------------------------------------------------------- encodings
def arch_ops(archs: Sequence) -> np.ndarray:
    """Op ids of cells given as arch strings or 6-op tuples.

    Args:
        archs: sequence of NB201 arch strings (``'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'``) or
            sequences of 6 op names.

    Returns:
        int8 array (n, 6) of op ids (:data:`robntk.nb201.searchspace.OP_ID`), edges in
        :data:`robntk.nb201.searchspace.EDGES` order.

    Raises:
        ValueError: a malformed arch string or unknown op (names it).
    """
    out = np.empty((len(archs), NUM_EDGES), dtype=np.int8)
    for i, a in enumerate(archs):
        ops = parse_arch_str(a) if isinstance(a, str) else check_ops(a)
        out[i] = [OP_ID[o] for o in ops]
    return out


def _check_ops_array(ops) -> np.ndarray:
    x = np.asarray(ops)
    if x.ndim != 2 or x.shape[1] != NUM_EDGES or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"ops must be an integer (n, {NUM_EDGES}) array of op ids, got {x.dtype} {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= len(OPS)):
        raise ValueError(f"op ids must be in 0..{len(OPS) - 1}, got values in {int(x.min())}..{int(x.max())}")
    return x.astype(np.int64)


def onehot_features(ops) -> pd.DataFrame:
    """One-hot encoding of the op on each edge.

    Args:
        ops: integer (n, 6) op ids (:func:`arch_ops`).

    Returns:
        float64 DataFrame (n, 30), columns ``e<edge>_<op>`` (edge-major, op order of
        :data:`robntk.nb201.searchspace.OPS`); each row has exactly six ones.

    Raises:
        ValueError: not an integer (n, 6) array of ids in 0..4.
    """
    x = _check_ops_array(ops)
    cols = {f"e{e}_{op}": (x[:, e] == k).astype(np.float64) for e in range(NUM_EDGES) for k, op in enumerate(OPS)}
    return pd.DataFrame(cols)


def graf_features(ops) -> pd.DataFrame:
    """GRAF-style graph features of NB201 cells (Kadlecová et al., ICML 2024).

    Columns (all float64, n rows):

    * ``count_<op>`` (5): how many edges carry each op;
    * for each op set S of :data:`GRAF_OP_SETS`: ``paths_<S>`` the number of the 4 input→output
      paths (:data:`IO_PATHS`) whose edges all carry ops in S, ``minpath_<S>`` / ``maxpath_<S>``
      the shortest / longest such path in edges (0 when there is none);
    * ``live_<op>`` (4 non-zero ops): edges with that op that lie on an input→output path of
      non-``none`` edges (ops that can influence the output);
    * ``indeg_<node>`` (nodes 1–3) and ``outdeg_<node>`` (nodes 0–2): non-``none`` edges into /
      out of each intermediate node.

    Args:
        ops: integer (n, 6) op ids (:func:`arch_ops`).

    Returns:
        float64 DataFrame (n, 36).

    Raises:
        ValueError: not an integer (n, 6) array of ids in 0..4.
    """
    x = _check_ops_array(ops)
    cols: dict[str, np.ndarray] = {f"count_{op}": (x == k).sum(1) for k, op in enumerate(OPS)}
    lengths = np.array([len(p) for p in IO_PATHS])
    for name, allowed in GRAF_OP_SETS.items():
        ok = np.stack([np.isin(x[:, list(p)], allowed).all(1) for p in IO_PATHS], axis=1)  # (n, 4)
        cols[f"paths_{name}"] = ok.sum(1)
        cols[f"minpath_{name}"] = np.where(ok.any(1), np.where(ok, lengths, 99).min(1), 0)
        cols[f"maxpath_{name}"] = np.where(ok, lengths, 0).max(1)
    alive = np.stack([(x[:, list(p)] != 0).all(1) for p in IO_PATHS], axis=1)  # (n, 4)
    live_edge = np.zeros(x.shape, dtype=bool)
    for j, p in enumerate(IO_PATHS):
        for e in p:
            live_edge[:, e] |= alive[:, j]
    for k, op in enumerate(OPS[1:], start=1):
        cols[f"live_{op}"] = ((x == k) & live_edge).sum(1)
    nz = x != 0
    for v in (1, 2, 3):
        cols[f"indeg_{v}"] = nz[:, [e for e, (_, d) in enumerate(EDGES) if d == v]].sum(1)
    for v in (0, 1, 2):
        cols[f"outdeg_{v}"] = nz[:, [e for e, (s, _) in enumerate(EDGES) if s == v]].sum(1)
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in cols.items()})


def feature_table(
    index,
    arch_strs: Sequence[str],
    proxies: pd.DataFrame | None = None,
    proxy_columns: Sequence[str] | None = None,
    encodings: Sequence[str] = ENCODINGS,
) -> pd.DataFrame:
    """Label-free features of a set of cells, one row per cell.

    Args:
        index: int NB201 indices of the rows (e.g. the 6,466 representatives), unique.
        arch_strs: the arch string of each row (same length as ``index``).
        proxies: optional DataFrame indexed by ``nb201_index`` with proxy columns; rows of
            ``index`` missing there, or with a NaN in a used column, are dropped.
        proxy_columns: the proxy columns used (default: every numeric column of ``proxies``
            except ``nb201_cell`` and ``*_undefined`` flags).
        encodings: any of :data:`ENCODINGS`.

    Returns:
        float64 DataFrame indexed by ``nb201_index``: ``zc_<proxy>`` percentile ranks (over the
        rows kept), then the one-hot and GRAF columns. ``attrs['n_dropped']``: rows dropped for
        missing proxies.

    Raises:
        ValueError: unknown encoding, repeated index, lengths differ, no feature at all, a
            missing or non-numeric proxy column.
    """
    keys = np.asarray(index, dtype=np.int64)
    if keys.ndim != 1 or keys.size != len(arch_strs):
        raise ValueError(f"index and arch_strs must be 1-D of equal length, got {keys.shape} and {len(arch_strs)}")
    if np.unique(keys).size != keys.size:
        raise ValueError("index repeats NB201 indices; deduplicate isomorphs first")
    bad = [e for e in encodings if e not in ENCODINGS]
    if bad:
        raise ValueError(f"unknown encoding(s) {bad}; allowed: {', '.join(ENCODINGS)}")
    if proxies is None and not encodings:
        raise ValueError("no features: give proxies or at least one encoding")
    parts = []
    keep = np.ones(keys.size, dtype=bool)
    if proxies is not None:
        cols = list(proxy_columns) if proxy_columns is not None else proxy_columns_of(proxies)
        z = normalised_ranks(proxies.reindex(keys), cols)  # NaN for missing rows
        keep = ~z.isna().any(axis=1).to_numpy()
        z = normalised_ranks(proxies.reindex(keys[keep]), cols)  # ranks over the kept rows only
        parts.append(z.add_prefix("zc_").to_numpy())
        names = [f"zc_{c}" for c in cols]
    else:
        names = []
    ops = arch_ops([arch_strs[i] for i in np.flatnonzero(keep)])
    for enc in encodings:
        f = onehot_features(ops) if enc == "onehot" else graf_features(ops)
        parts.append(f.to_numpy())
        names += list(f.columns)
    out = pd.DataFrame(np.column_stack(parts), index=pd.Index(keys[keep], name="nb201_index"), columns=names)
    out.attrs["n_dropped"] = int((~keep).sum())
    return out


def proxy_columns_of(table: pd.DataFrame) -> list[str]:
    """Numeric, non-boolean columns of a scores table that are proxies (not ``nb201_cell``,
    ``nb201_representative`` or ``*_undefined`` flags), in table order.

    Args:
        table: a scores DataFrame (e.g. :func:`robntk.data.suite_zero.load_suite_zero`).

    Returns:
        list of column names (empty when there is none).
    """
    return [
        c
        for c in table.columns
        if c not in ("nb201_cell", "nb201_representative", "nb201_index")
        and not str(c).endswith("_undefined")
        and pd.api.types.is_numeric_dtype(table[c].dtype)
        and not pd.api.types.is_bool_dtype(table[c].dtype)
    ]


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class PredictorConfig:
    """Settings of a few-shot predictor.

    Attributes:
        model: one of :data:`MODELS`.
        n_estimators: trees of the forest models.
        cv_folds: inner cross-validation folds (fewer when there are fewer labels).
        seed: seed of the inner folds and of the model.
        grid: hyper-parameter candidates (None: :data:`DEFAULT_GRIDS` of the model).

    Raises:
        ValueError: unknown model, n_estimators < 1, cv_folds < 2, a bad seed, a grid key the
            model does not take.
    """

    model: str = field(default="extra_trees", metadata=flag("predictor model", choices=MODELS))
    n_estimators: int = field(default=100, metadata=flag("trees of the forest models"))
    cv_folds: int = field(default=5, metadata=flag("inner cross-validation folds"))
    seed: int = field(default=0, metadata=flag("seed of the inner folds and of the model"))
    grid: Mapping[str, tuple] | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown predictor model {self.model!r}; allowed: {', '.join(MODELS)}")
        for name, lo in (("n_estimators", 1), ("cv_folds", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an int ≥ {lo}, got {v!r}")
        check_seed(self.seed, "seed")
        if self.grid is not None:
            allowed = set(DEFAULT_GRIDS[self.model])
            bad = [k for k in self.grid if k not in allowed]
            if bad or any(len(v) == 0 for v in self.grid.values()):
                raise ValueError(
                    f"grid keys for {self.model} must be among {sorted(allowed)} with values, got {self.grid}"
                )

    def candidates(self) -> list[dict]:
        """Every hyper-parameter combination of the grid, in grid order."""
        g = dict(self.grid if self.grid is not None else DEFAULT_GRIDS[self.model])
        return [dict(zip(g, vals)) for vals in itertools.product(*g.values())]


def require_sklearn() -> None:
    """Check that scikit-learn is importable (the predictors' one optional dependency).

    Raises:
        ValueError: it is not installed; the message says ``pip install scikit-learn`` (a
            ValueError so that the CLI reports it as one line).
    """
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ValueError(
            "few-shot predictors need scikit-learn, which is not installed: pip install scikit-learn"
        ) from None


def make_model(model: str, params: Mapping, n_estimators: int = 100, seed: int = 0):
    """A scikit-learn regressor (single-threaded, seeded).

    Args:
        model: one of :data:`MODELS`.
        params: its hyper-parameters (keys of :data:`DEFAULT_GRIDS`).
        n_estimators: trees of the forest models. seed: ``random_state``.

    Raises:
        ValueError: unknown model; scikit-learn missing (:func:`require_sklearn`).
    """
    require_sklearn()
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if model == "extra_trees":
        return ExtraTreesRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1, **params)
    if model == "random_forest":
        return RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1, **params)
    if model == "ridge":
        return make_pipeline(StandardScaler(), Ridge(**params))
    raise ValueError(f"unknown predictor model {model!r}; allowed: {', '.join(MODELS)}")


def _rank_target(y: np.ndarray) -> np.ndarray:
    return pd.Series(y).rank(method="average", pct=True).to_numpy()


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"features must be (n, k) with n = len(labels); got {x.shape} and {y.size} labels")
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or inf; drop those rows first (feature_table drops missing proxies)")
    if not np.isfinite(y).all():
        bad = [int(i) for i in np.flatnonzero(~np.isfinite(y))[:3]]
        raise ValueError(f"labels must be finite; rows {bad} are not")
    if y.size < MIN_LABELS:
        raise ValueError(f"need at least {MIN_LABELS} labelled architectures, got {y.size}")
    if np.unique(y).size < 2:
        raise ValueError("all labels are equal; nothing to rank")
    return x, y


def inner_cv(x, y, config: PredictorConfig = PredictorConfig()) -> tuple[dict, list[float]]:
    """Choose hyper-parameters by K-fold cross-validation on the training labels only.

    For each candidate of ``config.candidates()`` the out-of-fold predictions of K seeded shuffled
    folds (K = min(cv_folds, n)) are pooled and scored by Kendall τ-b against ``y``; the best
    (first on ties; NaN counts as −∞) wins.

    Args:
        x: float64 (n, k) training features. y: float64 (n,) training labels (higher = better).
        config: the settings.

    Returns:
        (best parameters, τ of every candidate in candidate order).

    Raises:
        ValueError: shapes differ, non-finite values, fewer than :data:`MIN_LABELS` labels, all
            labels equal.
    """
    require_sklearn()
    from sklearn.model_selection import KFold

    x, y = _check_xy(x, y)
    folds = list(KFold(n_splits=min(config.cv_folds, y.size), shuffle=True, random_state=config.seed).split(x))
    cands = config.candidates()
    taus = []
    for params in cands:
        oof = np.empty(y.size)
        for tr, te in folds:
            m = make_model(config.model, params, config.n_estimators, config.seed).fit(x[tr], _rank_target(y[tr]))
            oof[te] = m.predict(x[te])
        taus.append(kendall_tau(oof, y))
    best = int(np.argmax([-np.inf if math.isnan(t) else t for t in taus]))
    return cands[best], taus


@dataclass
class FittedPredictor:
    """A predictor fitted by :func:`fit_predictor`.

    Attributes:
        config: the settings. params: the hyper-parameters chosen by inner CV.
        cv_tau: the inner-CV τ of every candidate. n_train: labels used. estimator: the
        scikit-learn model refitted on all training labels. feature_names: column names (or None).
    """

    config: PredictorConfig
    params: dict
    cv_tau: list[float]
    n_train: int
    estimator: object
    feature_names: list[str] | None = None

    def predict(self, x) -> np.ndarray:
        """float64 (m,) predicted scores (higher = predicted better; the scale is the percentile
        rank of the training labels).

        Raises:
            ValueError: wrong number of feature columns, non-finite features.
        """
        x = np.asarray(x, dtype=np.float64)
        nf = self.estimator.n_features_in_
        if x.ndim != 2 or x.shape[1] != nf:
            raise ValueError(f"features must be (m, {nf}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features hold NaN or inf")
        return np.asarray(self.estimator.predict(x), dtype=np.float64)

    def describe(self) -> dict:
        """JSON-ready summary (model, chosen parameters, inner-CV τ, labels used)."""
        return {
            "model": self.config.model,
            "n_estimators": self.config.n_estimators,
            "cv_folds": self.config.cv_folds,
            "seed": self.config.seed,
            "candidates": self.config.candidates(),
            "cv_tau": self.cv_tau,
            "params": self.params,
            "n_train": self.n_train,
        }


def fit_predictor(x, y, config: PredictorConfig = PredictorConfig(), feature_names=None) -> FittedPredictor:
    """Fit a few-shot predictor: hyper-parameters by :func:`inner_cv`, then a refit on all labels.

    Only ``x``/``y`` (the training rows) are seen, so no test label can influence the fit.

    Args:
        x: float64 (n, k) features of the labelled architectures. y: float64 (n,) labels
            (e.g. PGD-8 accuracy; only their order is used: the regression target is their
            percentile rank). config: the settings. feature_names: optional column names.

    Returns:
        A :class:`FittedPredictor`. Same inputs and config → same bits.

    Raises:
        ValueError: see :func:`inner_cv`.
    """
    x, y = _check_xy(x, y)
    params, taus = inner_cv(x, y, config)
    est = make_model(config.model, params, config.n_estimators, config.seed).fit(x, _rank_target(y))
    return FittedPredictor(
        config, params, taus, int(y.size), est, None if feature_names is None else list(feature_names)
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
        features: float DataFrame (n, k) indexed by ``nb201_index`` (:func:`feature_table`).
        config: the predictor settings (its seed is replaced by the draw's).

    Returns:
        ``fn(train_keys int64 (b,), y_train float64 (b,), seed) -> float64 (n,)``; it raises
        KeyError for a training key not in ``features`` and ValueError as :func:`fit_predictor`.
    """
    x_all = features.to_numpy(np.float64)
    pos = pd.Series(np.arange(len(features)), index=features.index)

    def fn(train_keys: np.ndarray, y_train: np.ndarray, seed: int) -> np.ndarray:
        cfg = PredictorConfig(config.model, config.n_estimators, config.cv_folds, seed, config.grid)
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

    from robntk.analysis.search import PALETTE
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
