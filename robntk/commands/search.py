"""``robntk search``: architecture search on the NAS-RobBench-201 table (see :mod:`robntk.analysis.search`).

Runs the chosen methods for every search criterion (``clean``: CIFAR-10 clean accuracy,
``robust``: PGD-8 accuracy, or any benchmark metric name) over ``--seeds`` seeds and writes, to
``--out``:

* ``curves.csv``: mean / Student-t CI / median over seeds of the incumbent's clean and PGD-8
  accuracy vs the number of queries (:func:`robntk.analysis.search.curves`);
* ``reach.csv``: queries needed until the incumbent's PGD-8 accuracy reaches each ``--threshold``
  (:func:`robntk.analysis.search.queries_to_reach`);
* ``queried.npz``: the queried representatives of every run (int16 (seeds, budget) per run, -1 = none);
* ``config.json``: the exact settings; ``curves.png``: the figure (unless ``--no-figure``).

Training-free search (``tf``) ranks architectures by each ``--score`` spec (a column of the
``--scores`` table, e.g. ``params``, or a :mod:`robntk.analysis.combine` zero-shot spec such as
``'vote(synflow,jacov,snip)'``); ``--scores suite_zero`` (default) reads the NAS-Bench-Suite-Zero
CIFAR-10 proxies (:func:`robntk.data.suite_zero.load_suite_zero`, per class: smallest NB201 index).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.analysis import search as S
from robntk.data.benchmark import RobBench
from robntk.core.paths import atomic_save, atomic_write

DEFAULTS = S.SearchConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``robntk search`` (``--data-dir`` is added by :mod:`robntk.cli`)."""
    parser.add_argument("--methods", nargs="+", default=list(S.METHODS), choices=list(S.METHODS),
                        help="search methods (default: all)")
    parser.add_argument("--criteria", nargs="+", default=["clean", "robust"],
                        help="search criteria: clean, robust, or benchmark metric names (default: clean robust)")
    parser.add_argument("--dataset", default=DEFAULTS.dataset, help="benchmark dataset (default cifar10)")
    parser.add_argument("--budget", type=int, default=DEFAULTS.budget, help="queries per run (distinct architectures)")
    parser.add_argument("--seeds", type=int, default=DEFAULTS.n_seeds, help="runs per method and criterion")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="first seed")
    parser.add_argument("--population", type=int, default=DEFAULTS.population, help="REA population (NB201: 10)")
    parser.add_argument("--sample-size", type=int, default=DEFAULTS.sample_size, help="REA tournament size (NB201: 3)")
    parser.add_argument("--ls-num-init", type=int, default=DEFAULTS.ls_num_init, help="local search: random archs per (re)start")
    parser.add_argument("--ls-first-improvement", action="store_true",
                        help="local search moves at the first better neighbour (default: whole neighbourhood)")
    parser.add_argument("--scores", default="suite_zero",
                        help="training-free scores: a CSV/TSV/parquet with nb201_index, or 'suite_zero[:dataset]' (default)")
    parser.add_argument("--score", nargs="+", default=["params"], dest="score_specs",
                        help="score columns or combination specs for tf, e.g. params 'vote(synflow,jacov,snip)'")
    parser.add_argument("--tf-pool", type=int, default=None, help="tf: random pool size per seed (default: all scored archs)")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.478],
                        help="PGD-8 accuracy thresholds for reach.csv (default 0.478)")
    parser.add_argument("--out", default="search_results", help="output directory")
    parser.add_argument("--no-figure", action="store_true", help="do not draw curves.png")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def load_scores(spec: str, bench: RobBench, data_dir=None) -> pd.DataFrame:
    """Scores table for ``--scores``, deduplicated to representatives.

    Raises:
        FileNotFoundError: missing file. ValueError: unreadable table / bad dataset.
    """
    from robntk.analysis.combine import score_table
    from robntk.analysis.correlation import read_scores
    from robntk.data.suite_zero import load_suite_zero

    if spec == "suite_zero" or spec.startswith("suite_zero:"):
        ds = spec.partition(":")[2] or "cifar10"
        return load_suite_zero(ds, data_dir, per_class="smallest")
    return score_table(read_scores(spec), bench)


def run(args: argparse.Namespace) -> int:
    """Run the searches and write the outputs (module docstring).

    Raises:
        FileNotFoundError: benchmark or scores file missing.
        ValueError: bad settings (named).
    """
    from robntk.analysis.combine import from_spec

    data_dir = getattr(args, "data_dir", None)
    cfg = S.SearchConfig(budget=args.budget, n_seeds=args.seeds, seed=args.seed, dataset=args.dataset,
                         population=args.population, sample_size=args.sample_size, ls_num_init=args.ls_num_init,
                         ls_full_nbhd=not args.ls_first_improvement, tf_pool=args.tf_pool).validate()
    bench = RobBench.load(data_dir)
    land = S.Landscape(bench, args.dataset)
    for c in args.criteria:
        land.metric(c)  # validates
    scores = {}
    if "tf" in args.methods:
        table = load_scores(args.scores, bench, data_dir)
        scores = {s: from_spec(table, s) for s in args.score_specs}
    t0 = time.perf_counter()
    results = []
    for m in args.methods:
        for c in args.criteria:
            for name, sc in (scores.items() if m == "tf" else [(None, None)]):
                results.append(S.run_search(m, land, c, cfg, score=sc, progress=not args.no_progress))
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = S.curves(results, land, report=("clean", "robust"))
    atomic_save(out / "curves.csv", lambda p: curves.to_csv(p, index=False, float_format="%.6g"))
    reach = pd.DataFrame([S.queries_to_reach(r, land, t, "robust") for r in results for t in args.threshold])
    atomic_save(out / "reach.csv", lambda p: reach.to_csv(p, index=False, float_format="%.6g"))
    arrays = {f"{r.label}|{r.criterion}": r.queried.astype(np.int16) for r in results}  # indices < 2**15
    atomic_save(out / "queried.npz", lambda p: np.savez_compressed(p, **arrays))
    config = {"config": S.config_dict(cfg), "methods": args.methods, "criteria": args.criteria,
              "scores": args.scores if scores else None, "score_specs": list(scores), "thresholds": args.threshold,
              "benchmark_source": bench.source, "search_wall_s": round(wall, 2),
              "optimum": {c: {"nb201_index": int(land.representatives[np.nanargmax(land.metric(c)[land.representatives])]),
                              "value": float(np.nanmax(land.metric(c)))} for c in ("clean", "robust")}}
    with atomic_write(out / "config.json") as fh:
        json.dump(config, fh, indent=2)
    if not args.no_figure:
        S.plot_curves(curves, land, out / "curves.png",
                      title=f"NAS-RobBench-201 {args.dataset}: mean and 95% CI over {cfg.n_seeds} seeds")
    final = curves[curves["queries"] == curves.groupby(["method", "criterion"])["queries"].transform("max")]
    print(f"search: {len(results)} runs × {cfg.n_seeds} seeds, budget {cfg.budget}, {wall:.1f} s")
    for r in final.itertuples(index=False):
        print(f"  {r.method:<28} by {r.criterion:<7} → {r.report:<7} {r.mean:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}]")
    for r in reach.itertuples(index=False):
        print(f"  {r.method:<28} by {r.criterion:<7}: PGD-8 ≥ {r.threshold} in {100 * r.fraction:.0f}% of seeds"
              + (f", mean {r.mean_reached:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}] queries" if r.n_reached else ""))
    print(f"wrote {out}/curves.csv, reach.csv, queried.npz, config.json" + ("" if args.no_figure else ", curves.png"))
    return 0
