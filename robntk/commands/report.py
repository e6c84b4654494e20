"""``robntk report``: the benchmark's own analyses (NAS-RobBench-201 §3) as figures and tables.

Writes into ``--out-dir`` every PNG with the CSV behind it, the top tables (CSV + Markdown) and
``report.json`` (configuration, files, key numbers, wall time); see :func:`robntk.analysis.report_writer.write_report`.
"""

from __future__ import annotations

import argparse
import sys

from robntk.data.benchmark import SOURCES, RobBench
from robntk.analysis.report import DEFAULT_OP_K, DEFAULT_OVERLAP_K, DEFAULT_SEARCH_K, DEFAULT_TOP
from robntk.analysis.report_writer import write_report


def _positive(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return i


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk report``."""
    parser.add_argument("--out-dir", required=True, help="output directory for the PNGs, CSVs and report.json")
    parser.add_argument("--source", choices=SOURCES, default="auto",
                        help="benchmark file layout to read (default auto: official, then html, then csv)")
    parser.add_argument("--op-k", type=_positive, default=DEFAULT_OP_K,
                        help=f"top-k of the operator-frequency heatmap (default {DEFAULT_OP_K})")
    parser.add_argument("--overlap-k", type=_positive, nargs="+", default=list(DEFAULT_OVERLAP_K),
                        help="top-k sizes of the overlap with standard training (default 10 50 100)")
    parser.add_argument("--top", type=_positive, default=DEFAULT_TOP,
                        help=f"length of the top tables per dataset and criterion (default {DEFAULT_TOP})")
    parser.add_argument("--search-k", type=_positive, nargs="+", default=list(DEFAULT_SEARCH_K),
                        help="random-search budgets (default 1 2 5 ... 1000)")
    parser.add_argument("--no-standard", action="store_true",
                        help="skip the comparison with standard training (NB201, Jung et al.)")
    parser.add_argument("--dpi", type=_positive, default=150, help="PNG resolution (default 150)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``robntk report``; returns 0.

    Raises:
        FileNotFoundError: the benchmark file is missing. ValueError: bad values.
    """
    bench = RobBench.load(args.data_dir, source=args.source)
    man = write_report(bench, args.out_dir, data_dir=args.data_dir, op_k=args.op_k, overlap_ks=args.overlap_k,
                       top=args.top, search_ks=args.search_k, references=False if args.no_standard else None,
                       dpi=args.dpi, progress=not args.no_progress)
    for what, why in man["skipped"].items():
        print(f"robntk report: skipped {what}: {why}", file=sys.stderr)
    key = man["key_numbers"]
    tau = ", ".join(f"{d} {v:.3f}" for d, v in key.get("kendall_tau_clean_vs_pgd8", {}).items())
    print(f"robntk report: {len(man['files'])} files in {args.out_dir} ({man['elapsed_s']:.1f} s; "
          f"{key['n_architectures']} archs from {bench.source}); τ clean vs PGD-8: {tau}")
    return 0
