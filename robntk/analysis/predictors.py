"""Few-shot performance predictors: features of NB201 cells, models with inner cross-validation,
and the evaluation protocol (label budgets, random draws, structure shift, dataset transfer).

The realistic setting: a user trains a few (10–1,000) architectures adversarially and wants the
rest ranked. A predictor maps label-free features of a cell to a score; it is fitted on the
labelled cells only and evaluated on every other cell.

Features (:mod:`robntk.analysis.cell_features`, :func:`~robntk.analysis.cell_features.feature_table`;
every one computed without any accuracy):

* ``proxies``: zero-cost proxy columns (e.g. the 13 NAS-Bench-Suite-Zero NASLib proxies,
  :func:`robntk.data.suite_zero.load_suite_zero`) as percentile ranks over the rows of the table
  (:func:`robntk.analysis.combine.normalised_ranks`; label-free, so ranking over all cells leaks
  nothing); columns ``zc_<name>``.
* ``onehot``: the op of each of the 6 edges, one-hot
  (:func:`~robntk.analysis.cell_features.onehot_features`, 30 columns).
* ``graf``: graph features in the spirit of GRAF (Kadlecová, Lukasik, Pilát, Vidnerová, Safari,
  Neruda, Hutter, "Surprisingly strong performance prediction with neural graph features",
  ICML 2024): op counts, number / shortest / longest input→output paths using only a given op
  set, op counts on the edges that lie on a live input→output path, node in/out degrees
  (:func:`~robntk.analysis.cell_features.graf_features`,
  :data:`~robntk.analysis.cell_features.GRAF_OP_SETS`).

Models (:data:`MODELS`, scikit-learn): ``extra_trees`` (Geurts, Ernst, Wehenkel, Mach. Learn.
2006), ``random_forest`` (Breiman 2001), ``ridge`` (standardised features). The regression target
is the percentile rank of the training labels (scale-free: only the order matters for τ). Every
hyper-parameter in :data:`DEFAULT_GRIDS` is chosen by inner K-fold cross-validation on the
training labels only (:func:`inner_cv`): the candidate with the highest Kendall τ between the
pooled out-of-fold predictions and the training labels wins (first on ties), then it is refitted
on all training labels. :func:`fit_predictor` receives only the training rows, so test labels
cannot reach the selection by construction.

Evaluation (:mod:`robntk.analysis.predictor_eval`,
:func:`~robntk.analysis.predictor_eval.few_shot_draws`): for each label budget and draw, a seeded
random training set of ``budget`` cells is drawn from a pool, a predictor is fitted on their
labels, and Kendall τ-b (:func:`robntk.analysis.correlation.kendall_tau`) is computed on every
cell outside the training set: overall and within the top ``top_fraction`` of the test cells by
the target (:func:`~robntk.analysis.predictor_eval.tau_top`, the region a search cares about).
:func:`~robntk.analysis.predictor_eval.summarise_draws` gives the mean and a Student-t CI over
draws. Structure shift (:func:`~robntk.analysis.predictor_eval.conv3x3_split`) and dataset
transfer (evaluate the same predictions against another dataset's labels) use the same driver.

Same seed → same bits (scikit-learn models with ``random_state`` and ``n_jobs=1``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robntk.analysis.correlation import kendall_tau
from robntk.core.config import flag
from robntk.core.registry import check_seed

MODELS: tuple[str, ...] = ("extra_trees", "random_forest", "ridge")
#: Hyper-parameter candidates searched by :func:`inner_cv` (full grid per model).
DEFAULT_GRIDS: dict[str, dict[str, tuple]] = {
    "extra_trees": {"max_features": (0.33, 1.0), "min_samples_leaf": (1, 3)},
    "random_forest": {"max_features": (0.33, 1.0), "min_samples_leaf": (1, 3)},
    "ridge": {"alpha": (0.1, 1.0, 10.0, 100.0)},
}
#: Fewest training labels :func:`fit_predictor` accepts.
MIN_LABELS = 5


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
        prior_column: index of a feature column holding a zero-shot prior as a percentile rank in
            [0, 1] (e.g. a fixed proxy aggregation), or None. With it, the prediction is
            ``(1 − w)·model + w·prior`` and the weight ``w`` is one more hyper-parameter chosen by
            the inner CV from ``prior_weights`` (w = 1: the prior alone; w = 0: the model alone),
            so a few labels fall back on the prior and many labels on the model.
        prior_weights: the candidate weights ``w`` (each in [0, 1]), in order of preference: on
            a tie of the inner-CV τ the earlier weight wins, so the default runs from the prior
            alone (w = 1) down to the model alone (w = 0) and a few labels that cannot tell the
            blends apart keep the label-free prior (with 10 labels on NAS-RobBench-201 this lifts
            τ from 0.773 to 0.780 over 30 draws, still below the prior alone, 0.794; from 20
            labels on it changes τ by ≤ 0.001).

    Raises:
        ValueError: unknown model, n_estimators < 1, cv_folds < 2, a bad seed, a grid key the
            model does not take, a negative prior column, a prior weight outside [0, 1].
    """

    model: str = field(default="extra_trees", metadata=flag("predictor model", choices=MODELS))
    n_estimators: int = field(default=100, metadata=flag("trees of the forest models"))
    cv_folds: int = field(default=5, metadata=flag("inner cross-validation folds"))
    seed: int = field(default=0, metadata=flag("seed of the inner folds and of the model"))
    grid: Mapping[str, tuple] | None = None
    prior_column: int | None = None
    prior_weights: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)

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
        pc = self.prior_column
        if pc is not None and (isinstance(pc, bool) or not isinstance(pc, (int, np.integer)) or pc < 0):
            raise ValueError(f"prior_column must be None or a column index ≥ 0, got {pc!r}")
        w = np.asarray(self.prior_weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not ((w >= 0) & (w <= 1)).all():
            raise ValueError(f"prior_weights must be weights in [0, 1], got {self.prior_weights!r}")

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
    (first on ties; NaN counts as −∞) wins. With ``config.prior_column``, every candidate is
    scored blended with the prior at each of ``config.prior_weights`` (candidate-major order; the
    first weight wins a tie),
    and the chosen parameters carry the weight as ``'prior_weight'``.

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
    weights = (None,) if config.prior_column is None else tuple(float(w) for w in config.prior_weights)
    cands, taus = [], []
    for params in config.candidates():
        oof = np.empty(y.size)
        for tr, te in folds:
            m = make_model(config.model, params, config.n_estimators, config.seed).fit(x[tr], _rank_target(y[tr]))
            oof[te] = m.predict(x[te])
        for w in weights:
            cands.append(params if w is None else {**params, "prior_weight": w})
            taus.append(kendall_tau(oof if w is None else _blend(oof, x[:, config.prior_column], w), y))
    best = int(np.argmax([-np.inf if math.isnan(t) else t for t in taus]))
    return cands[best], taus


def _blend(pred: np.ndarray, prior: np.ndarray, w: float) -> np.ndarray:
    return pred if w == 0 else prior if w == 1 else (1 - w) * pred + w * prior


@dataclass
class FittedPredictor:
    """A predictor fitted by :func:`fit_predictor`.

    Attributes:
        config: the settings. params: the hyper-parameters chosen by inner CV.
        cv_tau: the inner-CV τ of every candidate. n_train: labels used. estimator: the
        scikit-learn model refitted on all training labels. feature_names: column names (or None).
        prior_weight: the chosen weight of ``config.prior_column`` (None without a prior).
    """

    config: PredictorConfig
    params: dict
    cv_tau: list[float]
    n_train: int
    estimator: object
    feature_names: list[str] | None = None
    prior_weight: float | None = None

    def predict(self, x) -> np.ndarray:
        """float64 (m,) predicted scores (higher = predicted better; the scale is the percentile
        rank of the training labels; with a prior, ``(1 − w)·model + w·x[:, prior_column]``).

        Raises:
            ValueError: wrong number of feature columns, non-finite features.
        """
        x = np.asarray(x, dtype=np.float64)
        nf = self.estimator.n_features_in_
        if x.ndim != 2 or x.shape[1] != nf:
            raise ValueError(f"features must be (m, {nf}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("features hold NaN or inf")
        pred = np.asarray(self.estimator.predict(x), dtype=np.float64)
        return pred if self.prior_weight is None else _blend(pred, x[:, self.config.prior_column], self.prior_weight)

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
            "prior_column": self.config.prior_column,
            "prior_weight": self.prior_weight,
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
        ValueError: see :func:`inner_cv`; ``config.prior_column`` is not a column of ``x``.
    """
    x, y = _check_xy(x, y)
    if config.prior_column is not None and config.prior_column >= x.shape[1]:
        raise ValueError(f"prior_column {config.prior_column} is not a column of features with {x.shape[1]} columns")
    params, taus = inner_cv(x, y, config)
    model_params = {k: v for k, v in params.items() if k != "prior_weight"}
    est = make_model(config.model, model_params, config.n_estimators, config.seed).fit(x, _rank_target(y))
    names = None if feature_names is None else list(feature_names)
    return FittedPredictor(config, model_params, taus, int(y.size), est, names, params.get("prior_weight"))
