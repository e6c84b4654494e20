"""``robntk search``: architecture search on the NAS-RobBench-201 table (see :mod:`robntk.analysis.search`).

Runs the chosen methods for every search criterion (``clean``: CIFAR-10 clean accuracy,
``robust``: PGD-8 accuracy, or any benchmark metric name) over ``--seeds`` seeds and writes, to
``--out``:

* ``curves.csv``: mean / Student-t CI / median over seeds of the incumbent's clean and PGD-8
  accuracy vs the number of queries (:func:`robntk.analysis.search_curves.curves`);
* ``reach.csv``: queries needed until the incumbent's PGD-8 accuracy reaches each ``--threshold``
  (:func:`robntk.analysis.search_curves.queries_to_reach`);
* ``queried.npz``: the queried representatives of every run (int16 (seeds, budget) per run, -1 = none);
* ``config.json``: the exact settings; ``curves.png``: the figure (unless ``--no-figure``).

Flags: :class:`robntk.analysis.search.SearchConfig` (the search settings) and
:class:`SearchOptions` (what to run and where to write). Training-free search (``tf``) ranks
architectures by each ``--score`` spec (a column of the ``--scores`` table, e.g. ``params``, or a
:mod:`robntk.analysis.combine` zero-shot spec such as ``'vote(synflow,jacov,snip)'``);
``--scores suite_zero`` (default) reads the NAS-Bench-Suite-Zero CIFAR-10 proxies
(:func:`robntk.data.suite_zero.load_suite_zero`, per class: smallest NB201 index).

Predictor-guided search (``--methods predictor``, not run by default) starts from the
``--warm-start`` spec's order (default: the first ``--score``) and refits an extra-trees
predictor on the queried labels (:func:`robntk.analysis.search.predictor_search`); its features
are the ``--features`` columns of ``--scores`` (default: every proxy column) as percentile ranks,
plus the one-hot and GRAF encodings (:func:`robntk.analysis.cell_features.feature_table`). Only
classes with every feature are candidates. Never give it a column fitted on benchmark labels.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis import cell_features as CF
from robntk.analysis import predictors as P
from robntk.analysis import search as S
from robntk.analysis import search_curves as SC
from robntk.analysis.combine import from_spec
from robntk.commands._common import load_scores
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.paths import atomic_save
from robntk.core.tables import check_writable, write_json, write_table
from robntk.data.benchmark import RobBench

#: The files written into ``--out`` (``curves.png`` last: skipped with ``--no-figure``).
OUTPUTS: tuple[str, ...] = ("curves.csv", "reach.csv", "queried.npz", "config.json", "curves.png")


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """The options of ``robntk search`` besides :class:`~robntk.analysis.search.SearchConfig`.

    Attributes:
        methods: search methods (:data:`robntk.analysis.search.METHODS`).
        criteria: search criteria: ``clean``, ``robust`` or benchmark metric names.
        scores: training-free scores for ``tf``: a table with ``nb201_index`` or ``'suite_zero[:dataset]'``.
        score_specs: score columns or combination specs for ``tf`` (flag ``--score``).
        warm_start: score spec whose order starts ``predictor`` (None: the first of ``score_specs``).
        features: proxy columns of ``scores`` used as ``predictor`` features (None: every one).
        threshold: PGD-8 accuracies for ``reach.csv``, in [0, 1].
        out: output directory. no_figure: skip ``curves.png``. no_progress: hide progress bars.

    Raises:
        ValueError: an unknown method, a threshold outside [0, 1] (NaN included), a value listed
            twice.
    """

    methods: tuple[str, ...] = field(default=S.DEFAULT_METHODS, metadata=flag("search methods", choices=S.METHODS))
    criteria: tuple[str, ...] = field(
        default=("clean", "robust"), metadata=flag("search criteria: clean, robust, or benchmark metric names")
    )
    scores: str = field(
        default="suite_zero",
        metadata=flag("training-free scores: a CSV/TSV/parquet with nb201_index, or 'suite_zero[:dataset]'"),
    )
    score_specs: tuple[str, ...] = field(
        default=("params",),
        metadata=flag(
            "score columns or combination specs for tf, e.g. params 'vote(synflow,jacov,snip)'", flag="--score"
        ),
    )
    warm_start: str | None = field(
        default=None, metadata=flag("predictor: zero-shot score spec of the warm start (default: the first --score)")
    )
    features: tuple[str, ...] | None = field(
        default=None,
        metadata=flag("predictor: proxy columns of --scores used as features (default: every proxy column)"),
    )
    threshold: tuple[float, ...] = field(default=(0.478,), metadata=flag("PGD-8 accuracy thresholds for reach.csv"))
    out: str = field(default="search_results", metadata=flag("output directory"))
    no_figure: bool = field(default=False, metadata=flag("do not draw curves.png"))
    no_progress: bool = field(default=False, metadata=flag("hide progress bars"))

    def __post_init__(self):
        bad = [m for m in self.methods if m not in S.METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown search method(s) {bad or list(self.methods)}; allowed: {', '.join(S.METHODS)}")
        for t in self.threshold:
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"--threshold values must be accuracies in [0, 1], got {t!r}")
        for name, vals in (
            ("--methods", self.methods),
            ("--criteria", self.criteria),
            ("--score", self.score_specs),
            ("--features", self.features or ()),
            ("--threshold", self.threshold),
        ):
            dup = sorted({v for v in vals if list(vals).count(v) > 1}, key=str)
            if dup:
                raise ValueError(f"{name} lists {', '.join(map(str, dup))} more than once")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``robntk search`` (``--data-dir`` is added by :mod:`robntk.cli`)."""
    add_dataclass_flags(parser, SearchOptions, include=("methods", "criteria"))
    add_dataclass_flags(parser, S.SearchConfig)
    add_dataclass_flags(parser, SearchOptions, exclude=("methods", "criteria"))


def run(args: argparse.Namespace) -> int:
    """Run the searches and write the outputs (module docstring).

    Raises:
        FileNotFoundError: benchmark or scores file missing.
        ValueError: bad settings (named).
    """
    opts = config_from_args(SearchOptions, args)
    cfg = config_from_args(S.SearchConfig, args)
    data_dir = getattr(args, "data_dir", None)
    out = check_writable(Path(opts.out), "--out", kind="dir")
    for name in OUTPUTS[:-1] if opts.no_figure else OUTPUTS:
        check_writable(out / name, "--out", kind="file")
    if "predictor" in opts.methods:
        P.require_sklearn()
    bench = RobBench.load(data_dir)
    land = S.Landscape(bench, cfg.dataset)
    for c in opts.criteria:
        land.metric(c)  # validates
    scores, warm, features = {}, None, None
    if "tf" in opts.methods or "predictor" in opts.methods:
        table = load_scores(opts.scores, bench, data_dir)
        scores = {s: from_spec(table, s) for s in opts.score_specs} if "tf" in opts.methods else {}
    if "predictor" in opts.methods:
        warm = from_spec(table, opts.warm_start or opts.score_specs[0])
        cols = (
            list(opts.features)
            if opts.features
            else CF.proxy_columns_of(table.drop(columns=["arch_str"], errors="ignore"))
        )
        features = CF.feature_table(table.index, [bench.space.arch_strs[i] for i in table.index], table, cols)
    t0 = time.perf_counter()
    results = []
    for m in opts.methods:
        for c in opts.criteria:
            if m == "predictor":
                kw = {"score": warm, "features": features}
                results.append(S.run_search(m, land, c, cfg, progress=not opts.no_progress, **kw))
                continue
            for sc in scores.values() if m == "tf" else [None]:
                results.append(S.run_search(m, land, c, cfg, score=sc, progress=not opts.no_progress))
    wall = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    curves = SC.curves(results, land, report=("clean", "robust"))
    write_table(curves, out / "curves.csv")
    reach = pd.DataFrame([SC.queries_to_reach(r, land, t, "robust") for r in results for t in opts.threshold])
    write_table(reach, out / "reach.csv")
    arrays = {f"{r.label}|{r.criterion}": r.queried.astype(np.int16) for r in results}  # indices < 2**15
    atomic_save(out / "queried.npz", lambda p: np.savez_compressed(p, **arrays))
    write_json(
        {
            "config": S.config_dict(cfg),
            "methods": list(opts.methods),
            "criteria": list(opts.criteria),
            "scores": opts.scores if scores or features is not None else None,
            "score_specs": list(scores),
            "warm_start": None if warm is None else str(warm.name),
            "features": None if features is None else list(features.columns),
            "n_feature_rows": None if features is None else len(features),
            "thresholds": list(opts.threshold),
            "benchmark_source": bench.source,
            "search_wall_s": round(wall, 2),
            "optimum": {
                c: {
                    "nb201_index": int(land.representatives[np.nanargmax(land.metric(c)[land.representatives])]),
                    "value": float(np.nanmax(land.metric(c))),
                }
                for c in ("clean", "robust")
            },
        },
        out / "config.json",
    )
    if not opts.no_figure:
        SC.plot_curves(
            curves,
            land,
            out / "curves.png",
            title=f"NAS-RobBench-201 {cfg.dataset}: mean and 95% CI over {cfg.n_seeds} seeds",
        )
    _print_summary(curves, reach, results, cfg, wall)
    print(f"wrote {out}/curves.csv, reach.csv, queried.npz, config.json" + ("" if opts.no_figure else ", curves.png"))
    return 0


def _print_summary(curves: pd.DataFrame, reach: pd.DataFrame, results, cfg, wall: float) -> None:
    final = curves[curves["queries"] == curves.groupby(["method", "criterion"])["queries"].transform("max")]
    print(f"search: {len(results)} runs × {cfg.n_seeds} seeds, budget {cfg.budget}, {wall:.1f} s")
    for r in final.itertuples(index=False):
        print(f"  {r.method:<28} by {r.criterion:<7} → {r.report:<7} {r.mean:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]")
    for r in reach.itertuples(index=False):
        print(
            f"  {r.method:<28} by {r.criterion:<7}: PGD-8 ≥ {r.threshold} in {100 * r.fraction:.0f}% of seeds"
            + (f", mean {r.mean_reached:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}] queries" if r.n_reached else "")
        )
