"""``robntk combine``: zero-shot and learned combinations of score columns, τ vs NAS-RobBench-201.

Reads a scores table (CSV/TSV/parquet with ``nb201_index``; isomorphs deduplicated by
:func:`robntk.analysis.combine.score_table`) or ``suite_zero[:dataset]`` (the NAS-Bench-Suite-Zero NASLib
proxies), evaluates every ``--single`` column and ``--zero-shot`` spec on all rows and on the
held-out part, fits every ``--learned`` method on the training part of a seeded split
(:func:`robntk.analysis.combine_fit.split`) with ``--target`` and evaluates it on the held-out part only
(:func:`robntk.analysis.combine_fit.report`). Writes ``--out`` (the long τ table with bootstrap CIs), a JSON
sidecar with the split and the fitted weights, and, with ``--write-scores``, a table of the
combined scores keyed by ``nb201_index`` (usable as ``robntk search --scores``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pandas as pd

from robntk.analysis import combine as K
from robntk.analysis import combine_fit as KF
from robntk.analysis.correlation import DEFAULT_N_BOOT, check_n_boot, score_columns
from robntk.commands._common import is_suite_zero, load_scores
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.registry import check_seed
from robntk.core.tables import check_distinct, check_table_path, write_table
from robntk.data.benchmark import RobBench


@dataclass(frozen=True, kw_only=True)
class CombineOptions:
    """The options of ``robntk combine`` (the arguments of :func:`robntk.analysis.combine_fit.report`).

    Attributes:
        scores: a scores table with ``nb201_index``, or ``'suite_zero[:dataset]'``.
        columns: columns to combine (None: every score column). single: columns reported alone
            (None: ``columns``). zero_shot: zero-shot specs (None: every
            :data:`~robntk.analysis.combine.ZERO_SHOT_METHODS` of ``columns``).
        learned: learned methods fitted on ``columns``. target: (dataset, metric) they fit.
        split_seed, train_fraction: the train/test split. n_boot, seed: bootstrap CIs.
        out: the τ table. write_scores: also write the combined scores here.
        no_progress: hide the progress bar.

    Raises:
        ValueError: an unknown learned method, ``--train-fraction`` outside (0, 1), ``--n-boot``
            outside 0..100,000, ``--seed`` / ``--split-seed`` outside [0, 2**32 − 1], a value listed
            twice.
    """

    scores: str = field(metadata=flag("CSV/TSV/parquet with nb201_index, or 'suite_zero[:dataset]'"))
    columns: tuple[str, ...] | None = field(
        default=None, metadata=flag("score columns to combine (default: every score column of the table)")
    )
    single: tuple[str, ...] | None = field(
        default=None, metadata=flag("columns reported alone (default: --columns)", nargs="*")
    )
    zero_shot: tuple[str, ...] | None = field(
        default=None,
        metadata=flag(
            "zero-shot specs, e.g. 'vote(a,b,c)' (default: mean_rank, geometric_rank, harmonic_rank and vote of "
            "--columns)",
            nargs="*",
        ),
    )
    learned: tuple[str, ...] = field(
        default=KF.LEARNED_METHODS[:3],
        metadata=flag("learned methods fitted on --columns", nargs="*", choices=KF.LEARNED_METHODS),
    )
    target: tuple[str, ...] = field(
        default=KF.TARGET, metadata=flag("benchmark target of the learned fits", nargs=2, metavar=("DATASET", "METRIC"))
    )
    split_seed: int = field(default=0, metadata=flag("seed of the train/test split"))
    train_fraction: float = field(default=0.5, metadata=flag("share of archs in the training part"))
    n_boot: int = field(default=DEFAULT_N_BOOT, metadata=flag("bootstrap resamples for CIs"))
    seed: int = field(default=0, metadata=flag("bootstrap and pair-sampling seed"))
    out: str = field(metadata=flag("output table (.csv)"))
    write_scores: str | None = field(default=None, metadata=flag("also write the combined scores table here (.csv)"))
    no_progress: bool = field(default=False, metadata=flag("hide the progress bar"))

    def __post_init__(self):
        bad = [m for m in self.learned if m not in KF.LEARNED_METHODS]
        if bad:
            raise ValueError(f"unknown learned method(s) {bad}; allowed: {', '.join(KF.LEARNED_METHODS)}")
        if len(self.target) != 2:
            raise ValueError(f"--target must be DATASET METRIC, got {list(self.target)}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"--train-fraction must be in (0, 1), got {self.train_fraction!r}")
        check_n_boot(self.n_boot)
        check_seed(self.split_seed, "--split-seed")
        check_seed(self.seed, "--seed")
        for name, vals in (
            ("--columns", self.columns),
            ("--single", self.single),
            ("--zero-shot", self.zero_shot),
            ("--learned", self.learned),
        ):
            dup = sorted({v for v in vals or () if list(vals).count(v) > 1})
            if dup:
                raise ValueError(f"{name} lists {', '.join(dup)} more than once")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``robntk combine`` (``--data-dir`` is added by :mod:`robntk.cli`)."""
    add_dataclass_flags(parser, CombineOptions)


def run(args: argparse.Namespace) -> int:
    """Run the combinations and write the outputs (module docstring).

    Raises:
        FileNotFoundError: scores or benchmark file missing.
        ValueError: bad columns, specs or targets (named).
    """
    opts = config_from_args(CombineOptions, args)
    out = check_table_path(opts.out)
    if opts.write_scores:
        check_table_path(opts.write_scores, "--write-scores")
    check_distinct(
        {
            "--scores": None if is_suite_zero(opts.scores) else opts.scores,
            "--out": out,
            "--write-scores": opts.write_scores,
        }
    )
    data_dir = getattr(args, "data_dir", None)
    bench = RobBench.load(data_dir)
    table = load_scores(opts.scores, bench, data_dir)
    cols = list(opts.columns) if opts.columns else score_columns(table.drop(columns=["nb201_cell"], errors="ignore"))
    singles = cols if opts.single is None else list(opts.single)
    zs = (
        [f"{m}({','.join(cols)})" for m in K.ZERO_SHOT_METHODS]
        if opts.zero_shot is None and len(cols) > 1
        else list(opts.zero_shot or [])
    )
    target = tuple(opts.target)
    res, models = KF.report(
        table,
        bench,
        singles=singles,
        zero_shot_specs=zs,
        learned=[(m, cols) for m in opts.learned],
        target=target,
        split_seed=opts.split_seed,
        train_fraction=opts.train_fraction,
        n_boot=opts.n_boot,
        seed=opts.seed,
        progress=not opts.no_progress,
    )
    side = {
        "scores": opts.scores,
        "columns": cols,
        **res.attrs,
        "models": {
            k: {
                "method": c.method,
                "columns": list(c.columns),
                "weights": list(c.weights),
                "signs": list(c.signs),
                "intercept": c.intercept,
                "info": c.info,
            }
            for k, c in models.items()
        },
    }
    write_table(res, out, side)
    if opts.write_scores:
        comb = pd.DataFrame({s: K.from_spec(table, s) for s in singles + zs}, index=table.index)
        for k, c in models.items():
            comb[k] = c.predict(table)
        comb["is_train"] = comb.index.isin(res.attrs["train_index"]).astype(int)
        write_table(comb.reset_index(), opts.write_scores)
    main = res[(res["dataset"] == target[0]) & (res["metric"] == target[1])]
    print(
        f"combine: {res.attrs['n_rows']} archs, split seed {opts.split_seed} "
        f"({res.attrs['n_train']} train / {res.attrs['n_test']} test), τ vs {' '.join(target)}:"
    )
    for r in main.itertuples(index=False):
        print(
            f"  {r.kind:<10} {r.eval_set:<5} {r.kendall_tau:+.3f} [{r.kendall_tau_ci_low:+.3f}, "
            f"{r.kendall_tau_ci_high:+.3f}]  {r.score}"
        )
    print(f"wrote {out}" + (f", {opts.write_scores}" if opts.write_scores else ""))
    return 0
