"""``robntk combine``: zero-shot and learned combinations of score columns, τ vs NAS-RobBench-201.

Reads a scores table (CSV/TSV/parquet with ``nb201_index``; isomorphs deduplicated by
:func:`robntk.analysis.combine.score_table`) or ``suite_zero[:dataset]`` (the NAS-Bench-Suite-Zero NASLib
proxies), evaluates every ``--single`` column and ``--zero-shot`` spec on all rows and on the
held-out part, fits every ``--learned`` method on the training part of a seeded split
(:func:`robntk.analysis.combine.split`) with ``--target`` and evaluates it on the held-out part only
(:func:`robntk.analysis.combine.report`). Writes ``--out`` (the long τ table with bootstrap CIs), a JSON
sidecar with the split and the fitted weights, and, with ``--write-scores``, a table of the
combined scores keyed by ``nb201_index`` (usable as ``robntk search --scores``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from robntk.analysis import combine as K
from robntk.data.benchmark import RobBench
from robntk.analysis.correlation import DEFAULT_N_BOOT, score_columns
from robntk.core.paths import atomic_save, atomic_write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``robntk combine`` (``--data-dir`` is added by :mod:`robntk.cli`)."""
    parser.add_argument("--scores", required=True, help="CSV/TSV/parquet with nb201_index, or 'suite_zero[:dataset]'")
    parser.add_argument("--columns", nargs="+", default=None,
                        help="score columns to combine (default: every score column of the table)")
    parser.add_argument("--single", nargs="*", default=None, help="columns reported alone (default: --columns)")
    parser.add_argument("--zero-shot", nargs="*", default=None, dest="zero_shot",
                        help="zero-shot specs, e.g. 'vote(a,b,c)' (default: mean_rank, geometric_rank, "
                             "harmonic_rank and vote of --columns)")
    parser.add_argument("--learned", nargs="*", default=list(K.LEARNED_METHODS[:3]), choices=list(K.LEARNED_METHODS),
                        help="learned methods fitted on --columns (default: linear quadratic pairwise_logistic)")
    parser.add_argument("--target", nargs=2, default=list(K.TARGET), metavar=("DATASET", "METRIC"),
                        help="benchmark target of the learned fits (default cifar10 val_pgd_8.0_acc)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--train-fraction", type=float, default=0.5, help="share of archs in the training part")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples for CIs")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap and pair-sampling seed")
    parser.add_argument("--out", required=True, help="output table (.csv)")
    parser.add_argument("--write-scores", default=None, help="also write the combined scores table here (.csv)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the combinations and write the outputs (module docstring).

    Raises:
        FileNotFoundError: scores or benchmark file missing.
        ValueError: bad columns, specs or targets (named).
    """
    from robntk.commands.search import load_scores

    data_dir = getattr(args, "data_dir", None)
    bench = RobBench.load(data_dir)
    table = load_scores(args.scores, bench, data_dir)
    cols = list(args.columns) if args.columns else score_columns(table.drop(columns=["nb201_cell"], errors="ignore"))
    singles = cols if args.single is None else list(args.single)
    zs = ([f"{m}({','.join(cols)})" for m in K.ZERO_SHOT_METHODS] if args.zero_shot is None and len(cols) > 1
          else list(args.zero_shot or []))
    res, models = K.report(table, bench, singles=singles, zero_shot_specs=zs,
                           learned=[(m, cols) for m in args.learned], target=tuple(args.target),
                           split_seed=args.split_seed, train_fraction=args.train_fraction, n_boot=args.n_boot,
                           seed=args.seed, progress=not args.no_progress)
    out = Path(args.out)
    atomic_save(out, lambda p: res.to_csv(p, index=False, float_format="%.6g"))
    side = {"scores": args.scores, "columns": cols, **res.attrs,
            "models": {k: {"method": c.method, "columns": list(c.columns), "weights": list(c.weights),
                           "signs": list(c.signs), "intercept": c.intercept, "info": c.info}
                       for k, c in models.items()}}
    with atomic_write(out.with_name(out.name + ".json")) as fh:
        json.dump(side, fh, indent=2)
    if args.write_scores:
        comb = pd.DataFrame({s: K.from_spec(table, s) for s in singles + zs}, index=table.index)
        for k, c in models.items():
            comb[k] = c.predict(table)
        comb["is_train"] = comb.index.isin(res.attrs["train_index"]).astype(int)
        comb = comb.reset_index()
        atomic_save(Path(args.write_scores), lambda p: comb.to_csv(p, index=False, float_format="%.8g"))
    main = res[(res["dataset"] == args.target[0]) & (res["metric"] == args.target[1])]
    print(f"combine: {res.attrs['n_rows']} archs, split seed {args.split_seed} "
          f"({res.attrs['n_train']} train / {res.attrs['n_test']} test), τ vs {' '.join(args.target)}:")
    for r in main.itertuples(index=False):
        print(f"  {r.kind:<10} {r.eval_set:<5} {r.kendall_tau:+.3f} [{r.kendall_tau_ci_low:+.3f}, "
              f"{r.kendall_tau_ci_high:+.3f}]  {r.score}")
    print(f"wrote {out}" + (f", {args.write_scores}" if args.write_scores else ""))
    return 0
