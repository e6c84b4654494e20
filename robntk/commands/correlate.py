"""``robntk correlate``: Kendall τ-b / Spearman ρ of score columns vs every benchmark metric."""

from __future__ import annotations

import argparse
from pathlib import Path

from robntk.data.benchmark import DATASETS, METRICS, RobBench
from robntk.analysis.correlation import DEFAULT_N_BOOT, correlation_table, read_scores, summary
from robntk.core.figures import tau_heatmap
from robntk.core.tables import check_table_path, check_writable, write_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk correlate``."""
    parser.add_argument("--scores", required=True, help="CSV/TSV/parquet with one row per arch and column nb201_index")
    parser.add_argument("--out", default=None, help="output table (.csv or .parquet; default <scores>_correlation.csv)")
    parser.add_argument("--figure", default=None, help="heatmap image (default <scores>_tau.png)")
    parser.add_argument("--no-figure", action="store_true", help="do not draw the heatmap")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help=f"default: {' '.join(DATASETS)}")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), help=f"default: {' '.join(METRICS)}")
    parser.add_argument("--columns", nargs="+", default=None, help="score columns (default: every numeric non-id column)")
    parser.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, help="bootstrap resamples for CIs (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--level", type=float, default=0.95, help="CI level")
    parser.add_argument("--no-baselines", action="store_true", help="omit the #params / #3x3 baselines")


def run(args: argparse.Namespace) -> int:
    """Read scores, correlate with NAS-RobBench-201, write table (+ sidecar) and heatmap."""
    scores_path = Path(args.scores)
    out = check_table_path(args.out or scores_path.with_name(scores_path.stem + "_correlation.csv"))
    fig = None if args.no_figure else Path(args.figure or scores_path.with_name(scores_path.stem + "_tau.png"))
    if fig is not None:
        check_writable(fig, "--figure")
    scores = read_scores(scores_path)
    bench = RobBench.load(args.data_dir)
    table = correlation_table(scores, bench, datasets=args.datasets, metrics=args.metrics, n_boot=args.n_boot,
                              seed=args.seed, include_baselines=not args.no_baselines, columns=args.columns,
                              level=args.level)
    a = table.attrs
    write_table(table, out, {"scores": str(scores_path), "benchmark_source": bench.source, **a})
    written = [str(out)]
    if fig is not None:
        tau_heatmap(table, fig, title=f"Kendall τ-b vs NAS-RobBench-201 ({a['n_archs']} archs)")
        written.append(str(fig))
    print(f"correlate: {a['n_archs']} archs ({a['n_isomorphs_dropped']} isomorphs dropped), "
          f"{table['score'].nunique()} score rows, {len(table) // max(1, table['score'].nunique())} benchmark "
          f"columns, benchmark source {bench.source}, n_boot={a['n_boot']}")
    print(summary(table, args.metrics))
    print("wrote " + ", ".join(written))
    return 0
