"""``robntk correlate``: Kendall τ-b / Spearman ρ of score columns vs every benchmark metric."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from robntk.analysis.correlation import DEFAULT_N_BOOT, check_n_boot, correlation_table, read_scores, summary
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.figures import tau_heatmap
from robntk.core.registry import check_seed
from robntk.core.tables import check_distinct, check_figure_path, check_table_path, write_table
from robntk.data.benchmark import DATASETS, METRICS, RobBench


@dataclass(frozen=True, kw_only=True)
class CorrelateOptions:
    """The options of ``robntk correlate`` (see :func:`robntk.analysis.correlation.correlation_table`).

    Attributes:
        scores: the scores table (one row per arch, column ``nb201_index``).
        out: the output table (None: ``<scores>_correlation.csv``).
        figure: the heatmap (None: ``<scores>_tau.png``); no_figure: draw none.
        datasets, metrics: benchmark values to correlate with.
        columns: score columns (None: every numeric non-id column).
        n_boot: bootstrap resamples for the CIs (0: none). seed: bootstrap seed.
        level: CI level in (0, 1). no_baselines: omit the #params / #3x3 baselines.

    Raises:
        ValueError: ``--n-boot`` outside 0..100,000, ``--level`` outside (0, 1), ``--seed`` outside
            [0, 2**32 − 1], a dataset, metric or column listed twice.
    """

    scores: str = field(metadata=flag("CSV/TSV/parquet with one row per arch and column nb201_index"))
    out: str | None = field(
        default=None, metadata=flag("output table (.csv or .parquet; default <scores>_correlation.csv)")
    )
    figure: str | None = field(default=None, metadata=flag("heatmap image (default <scores>_tau.png)"))
    no_figure: bool = field(default=False, metadata=flag("do not draw the heatmap"))
    datasets: tuple[str, ...] = field(default=tuple(DATASETS), metadata=flag("benchmark datasets"))
    metrics: tuple[str, ...] = field(default=tuple(METRICS), metadata=flag("benchmark metrics"))
    columns: tuple[str, ...] | None = field(
        default=None, metadata=flag("score columns (default: every numeric non-id column)")
    )
    n_boot: int = field(default=DEFAULT_N_BOOT, metadata=flag("bootstrap resamples for CIs (0: none)"))
    seed: int = field(default=0, metadata=flag("bootstrap seed"))
    level: float = field(default=0.95, metadata=flag("CI level"))
    no_baselines: bool = field(default=False, metadata=flag("omit the #params / #3x3 baselines"))

    def __post_init__(self):
        check_n_boot(self.n_boot)
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"--level must be in (0, 1), got {self.level!r}")
        check_seed(self.seed, "--seed")
        for name, vals in (("--datasets", self.datasets), ("--metrics", self.metrics), ("--columns", self.columns)):
            dup = sorted({v for v in vals or () if list(vals).count(v) > 1})
            if dup:
                raise ValueError(f"{name} lists {', '.join(dup)} more than once")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk correlate``."""
    add_dataclass_flags(parser, CorrelateOptions)


def run(args: argparse.Namespace) -> int:
    """Read scores, correlate with NAS-RobBench-201, write table (+ sidecar) and heatmap."""
    opts = config_from_args(CorrelateOptions, args)
    scores_path = Path(opts.scores)
    out = check_table_path(opts.out or scores_path.with_name(scores_path.stem + "_correlation.csv"))
    fig = None if opts.no_figure else Path(opts.figure or scores_path.with_name(scores_path.stem + "_tau.png"))
    if fig is not None:
        check_figure_path(fig, "--figure")
    check_distinct({"--scores": scores_path, "--out": out, "--figure": fig})
    scores = read_scores(scores_path)
    bench = RobBench.load(args.data_dir)
    table = correlation_table(
        scores,
        bench,
        datasets=list(opts.datasets),
        metrics=list(opts.metrics),
        n_boot=opts.n_boot,
        seed=opts.seed,
        include_baselines=not opts.no_baselines,
        columns=None if opts.columns is None else list(opts.columns),
        level=opts.level,
    )
    a = table.attrs
    write_table(table, out, {"scores": str(scores_path), "benchmark_source": bench.source, **a})
    written = [str(out)]
    if fig is not None:
        tau_heatmap(table, fig, title=f"Kendall τ-b vs NAS-RobBench-201 ({a['n_archs']} archs)")
        written.append(str(fig))
    print(
        f"correlate: {a['n_archs']} archs ({a['n_isomorphs_dropped']} isomorphs dropped), "
        f"{table['score'].nunique()} score rows, {len(table) // max(1, table['score'].nunique())} benchmark "
        f"columns, benchmark source {bench.source}, n_boot={a['n_boot']}"
    )
    print(summary(table, list(opts.metrics)))
    print("wrote " + ", ".join(written))
    return 0
