"""``robntk predict``: fit a few-shot predictor on your own labelled NB201 cells and rank all the others.

Reads ``--labels`` (CSV/TSV/parquet with an ``arch_str`` or ``nb201_index`` column and the
``--target`` column, higher = better, e.g. the PGD accuracy of networks you trained
adversarially), maps every row to its isomorphism-class representative (several rows of one class
are averaged), builds label-free features for every class that has all of them
(:func:`robntk.analysis.cell_features.feature_table`: the ``--features`` proxy columns of
``--scores`` as percentile ranks, default every proxy of the NAS-Bench-Suite-Zero CIFAR-10 table,
plus the ``--encodings``), fits :func:`robntk.analysis.predictors.fit_predictor` (every
hyper-parameter chosen by inner cross-validation on your labels only) and writes ``--out``: every
class ranked by the predicted score (``rank``, ``nb201_index``, ``arch_str``, ``predicted``,
``labelled``, ``label``), best first, with a JSON sidecar holding the configuration, the chosen
hyper-parameters, the inner-CV τ of every candidate and the number of labels used.

``--prior SPEC`` adds a zero-shot prior (a :func:`robntk.analysis.combine.from_spec` spec over the
columns of ``--scores``, e.g. ``'geometric_rank(jacov,params)'``) as a feature and blends it with
the model, ``(1 − w)·model + w·prior``, at the weight the inner CV chooses
(:class:`~robntk.analysis.predictors.PredictorConfig` ``prior_column``): with few labels the
ranking falls back on the prior (``experiments/predictors/README.md``, part ``modern``).

Example::

    robntk predict --labels my_pgd.csv --target pgd_acc --out ranked.csv
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robntk.analysis import cell_features as CF
from robntk.analysis import combine as K
from robntk.analysis import predictors as P
from robntk.commands._common import is_suite_zero, load_scores
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_distinct, check_table_path, read_table, write_table
from robntk.data.benchmark import RobBench


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """The options of ``robntk predict`` besides :class:`~robntk.analysis.predictors.PredictorConfig`.

    Attributes:
        labels: the labelled architectures (``arch_str`` or ``nb201_index`` column + ``target``).
        target: the label column (higher = better).
        scores: proxies: a table with ``nb201_index`` or ``'suite_zero[:dataset]'``.
        features: proxy columns used (None: every proxy column of ``scores``).
        encodings: architecture encodings added (:data:`robntk.analysis.cell_features.ENCODINGS`).
        out: the ranked table. unlabelled_only: leave the labelled classes out of ``out``.
        prior: a zero-shot spec over ``scores`` columns blended with the model (None: no prior).

    Raises:
        ValueError: an unknown encoding, a value listed twice.
    """

    labels: str = field(metadata=flag("CSV/TSV/parquet of labelled archs: arch_str or nb201_index, and --target"))
    target: str = field(metadata=flag("label column (higher = better, e.g. PGD accuracy)"))
    scores: str = field(
        default="suite_zero", metadata=flag("proxies: CSV/TSV/parquet with nb201_index, or 'suite_zero[:dataset]'")
    )
    features: tuple[str, ...] | None = field(
        default=None, metadata=flag("proxy columns of --scores used as features (default: every proxy column)")
    )
    encodings: tuple[str, ...] = field(
        default=CF.ENCODINGS, metadata=flag("architecture encodings added", nargs="*", choices=CF.ENCODINGS)
    )
    out: str = field(metadata=flag("ranked output table (.csv/.tsv/.parquet)"))
    unlabelled_only: bool = field(default=False, metadata=flag("leave the labelled archs out of --out"))
    prior: str | None = field(
        default=None,
        metadata=flag(
            "zero-shot prior over --scores columns, e.g. 'geometric_rank(jacov,params)', blended with the model "
            "at a weight chosen by inner CV"
        ),
    )

    def __post_init__(self):
        bad = [e for e in self.encodings if e not in CF.ENCODINGS]
        if bad:
            raise ValueError(f"unknown encoding(s) {bad}; allowed: {', '.join(CF.ENCODINGS)}")
        for name, vals in (("--features", self.features or ()), ("--encodings", self.encodings)):
            dup = sorted({v for v in vals if list(vals).count(v) > 1})
            if dup:
                raise ValueError(f"{name} lists {', '.join(dup)} more than once")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``robntk predict`` (``--data-dir`` is added by :mod:`robntk.cli`)."""
    add_dataclass_flags(parser, PredictOptions)
    add_dataclass_flags(parser, P.PredictorConfig)


def read_labels(path: str, target: str, space) -> tuple[pd.Series, dict]:
    """The labels of a user's table, one per isomorphism class.

    Args:
        path: CSV/TSV/parquet with ``arch_str`` or ``nb201_index`` and ``target``.
        target: the label column. space: :class:`robntk.nb201.searchspace.SearchSpace`.

    Returns:
        (float64 Series of labels indexed by representative ``nb201_index``, sorted, rows of one
        class averaged; info dict with ``n_rows`` and ``n_merged``).

    Raises:
        FileNotFoundError: missing file. ValueError: no arch column, a missing/non-numeric target
        column, a bad arch (names the row), a NaN/infinite label (names the row).
    """
    df = read_table(path, (target,), what="labels file")
    col = "arch_str" if "arch_str" in df.columns else "nb201_index" if "nb201_index" in df.columns else None
    if col is None:
        raise ValueError(
            f"labels file {path} needs an 'arch_str' or 'nb201_index' column; columns are {list(df.columns)}"
        )
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(
            f"labels file {path}: column {target!r} must hold finite numbers; row {int(bad[0])} has {df[target].iloc[bad[0]]!r}"
        )
    reps = []
    for i, a in enumerate(df[col].tolist()):
        try:
            reps.append(space.representative(space.resolve(a if col == "arch_str" else str(a))))
        except ValueError as exc:
            raise ValueError(f"labels file {path}, row {i}: {exc}") from None
    s = pd.Series(y, index=pd.Index(reps, name="nb201_index")).groupby(level=0).mean().sort_index()
    return s, {"n_rows": len(df), "n_merged": len(df) - len(s)}


def run(args: argparse.Namespace) -> int:
    """Fit the predictor on ``--labels`` and write the ranking (module docstring).

    Raises:
        FileNotFoundError: labels, scores or benchmark file missing.
        ValueError: bad labels, columns or settings (named); fewer than 5 labelled classes with features.
    """
    opts = config_from_args(PredictOptions, args)
    cfg = config_from_args(P.PredictorConfig, args)
    out = check_table_path(opts.out)
    P.require_sklearn()
    check_distinct(
        {"--labels": opts.labels, "--scores": None if is_suite_zero(opts.scores) else opts.scores, "--out": out}
    )
    data_dir = getattr(args, "data_dir", None)
    bench = RobBench.load(data_dir)
    space = bench.space
    labels, info = read_labels(opts.labels, opts.target, space)
    table = load_scores(opts.scores, bench, data_dir)
    cols = (
        list(opts.features) if opts.features else CF.proxy_columns_of(table.drop(columns=["arch_str"], errors="ignore"))
    )
    keys = np.asarray(space.representatives, dtype=np.int64)
    feats = CF.feature_table(
        keys, [space.arch_strs[i] for i in keys], table if cols else None, cols or None, opts.encodings
    )
    if opts.prior:
        numeric = table.drop(columns=["arch_str"], errors="ignore")
        prior = K.from_spec(numeric.set_index("nb201_index") if "nb201_index" in numeric else numeric, opts.prior)
        prior = prior.reindex(feats.index)
        if prior.isna().any():
            print(
                f"predict: {int(prior.isna().sum())} classes have no value of --prior {opts.prior!r} and are left out"
            )
        feats = feats.assign(prior=prior).dropna()
        feats["prior"] = feats["prior"].rank(pct=True)
        cfg = dataclasses.replace(cfg, prior_column=feats.columns.get_loc("prior"))
    have = labels.index.isin(feats.index)
    if (~have).any():
        info["n_without_features"] = int((~have).sum())
        print(f"predict: {int((~have).sum())} labelled classes have no proxy values in {opts.scores} and are left out")
    labels = labels[have]
    fp = P.fit_predictor(feats.loc[labels.index].to_numpy(), labels.to_numpy(), cfg, list(feats.columns))
    pred = fp.predict(feats.to_numpy())
    res = pd.DataFrame(
        {
            "nb201_index": feats.index.to_numpy(),
            "arch_str": [space.arch_strs[i] for i in feats.index],
            "predicted": pred,
            "labelled": feats.index.isin(labels.index).astype(int),
            "label": labels.reindex(feats.index).to_numpy(),
        }
    )
    res = res.iloc[np.lexsort((res["nb201_index"].to_numpy(), -pred))].reset_index(drop=True)
    if opts.unlabelled_only:
        res = res[res["labelled"] == 0].reset_index(drop=True)
    res.insert(0, "rank", np.arange(1, len(res) + 1))
    side = {
        "labels": opts.labels,
        "target": opts.target,
        "scores": opts.scores,
        "proxy_columns": cols,
        "encodings": list(opts.encodings),
        "prior": opts.prior,
        "features": list(feats.columns),
        "n_classes_ranked": len(feats),
        "kind": f"few_shot ({fp.n_train} labels)",
        **info,
        "predictor": fp.describe(),
    }
    write_table(res, out, side)
    best = max(-np.inf if np.isnan(t) else t for t in fp.cv_tau)
    blend = "" if fp.prior_weight is None else f", prior weight {fp.prior_weight:g}"
    print(
        f"predict: fitted {cfg.model} on {fp.n_train} labelled classes ({info['n_merged']} duplicate rows merged), "
        f"inner-CV τ {best:.3f} with {fp.params}{blend}; ranked {len(feats)} classes"
    )
    print(f"wrote {out}")
    return 0
