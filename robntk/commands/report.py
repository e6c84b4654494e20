"""``robntk report``: the benchmark's own analyses (NAS-RobBench-201 §3) as figures and tables.

Writes into ``--out-dir`` every PNG with the CSV behind it, the top tables (CSV + Markdown) and
``report.json`` (configuration, files, key numbers, wall time); see :func:`robntk.analysis.report_writer.write_report`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from robntk.analysis.report import DEFAULT_OP_K, DEFAULT_OVERLAP_K, DEFAULT_SEARCH_K, DEFAULT_TOP, check_k
from robntk.analysis.report_writer import DPI_RANGE, check_dpi, write_report
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_writable
from robntk.data.benchmark import SOURCES, RobBench


def positive_int(text: str) -> int:
    """Parse a positive integer flag value (``'3'`` → 3).

    Raises:
        ValueError: not an integer, or < 1 (names the value).
    """
    try:
        i = int(text)
    except ValueError:
        raise ValueError(f"expected a positive integer, got {text!r}") from None
    if i < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return i


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    """The options of ``robntk report`` (the arguments of :func:`robntk.analysis.report_writer.write_report`).

    Attributes:
        out_dir: output directory. source: benchmark file layout (:data:`robntk.data.benchmark.SOURCES`).
        op_k: top-k of the operator-frequency heatmap. overlap_k: top-k sizes of the overlap with
            standard training. top: length of the top tables. search_k: random-search budgets.
        no_standard: skip the standard-training comparison. dpi: PNG resolution.
        no_progress: hide the progress bar.

    Raises:
        ValueError: a k or top < 1, a dpi outside 10..1200 (names it), an unknown source. A k
            or top above the benchmark's number of architectures is refused by :func:`run`.
    """

    out_dir: str = field(metadata=flag("output directory for the PNGs, CSVs and report.json"))
    source: str = field(
        default="auto",
        metadata=flag("benchmark file layout to read (auto: official, then html, then csv)", choices=SOURCES),
    )
    op_k: int = field(
        default=DEFAULT_OP_K, metadata=flag("top-k of the operator-frequency heatmap", parse=positive_int)
    )
    overlap_k: tuple[int, ...] = field(
        default=DEFAULT_OVERLAP_K,
        metadata=flag("top-k sizes of the overlap with standard training", parse=positive_int),
    )
    top: int = field(
        default=DEFAULT_TOP, metadata=flag("length of the top tables per dataset and criterion", parse=positive_int)
    )
    search_k: tuple[int, ...] = field(
        default=DEFAULT_SEARCH_K, metadata=flag("random-search budgets", parse=positive_int)
    )
    no_standard: bool = field(
        default=False, metadata=flag("skip the comparison with standard training (NB201, Jung et al.)")
    )
    dpi: int = field(default=150, metadata=flag(f"PNG resolution ({DPI_RANGE[0]}..{DPI_RANGE[1]})", parse=positive_int))
    no_progress: bool = field(default=False, metadata=flag("no progress bar"))

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"unknown benchmark source {self.source!r}; allowed: {', '.join(SOURCES)}")
        for name in ("op_k", "top", "dpi"):
            check_k(getattr(self, name), "--" + name.replace("_", "-"))
        for name in ("overlap_k", "search_k"):
            for k in getattr(self, name):
                check_k(k, "--" + name.replace("_", "-"))
        check_dpi(self.dpi, "--dpi")

    def check_sizes(self, n: int) -> None:
        """Raise ValueError naming the flag when a k or ``--top`` exceeds ``n``, the benchmark's
        number of architectures."""
        for name in ("op_k", "top", "overlap_k", "search_k"):
            v = getattr(self, name)
            for k in v if isinstance(v, tuple) else (v,):
                if k > n:
                    raise ValueError(
                        f"--{name.replace('_', '-')} must be at most {n} (the architectures of the benchmark), got {k}"
                    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk report``."""
    add_dataclass_flags(parser, ReportOptions)


def run(args: argparse.Namespace) -> int:
    """Run ``robntk report``; returns 0.

    Raises:
        FileNotFoundError: the benchmark file is missing. ValueError: bad values.
    """
    opts = config_from_args(ReportOptions, args)
    check_writable(opts.out_dir, "--out-dir", kind="dir")
    bench = RobBench.load(args.data_dir, source=opts.source)
    opts.check_sizes(len(bench.table()))
    man = write_report(
        bench,
        opts.out_dir,
        data_dir=args.data_dir,
        op_k=opts.op_k,
        overlap_ks=opts.overlap_k,
        top=opts.top,
        search_ks=opts.search_k,
        references=False if opts.no_standard else None,
        dpi=opts.dpi,
        progress=not opts.no_progress,
    )
    for what, why in man["skipped"].items():
        print(f"robntk report: skipped {what}: {why}", file=sys.stderr)
    key = man["key_numbers"]
    tau = ", ".join(f"{d} {v:.3f}" for d, v in key.get("kendall_tau_clean_vs_pgd8", {}).items())
    print(
        f"robntk report: {len(man['files'])} files in {opts.out_dir} ({man['elapsed_s']:.1f} s; "
        f"{key['n_architectures']} archs from {bench.source}); τ clean vs PGD-8: {tau}"
    )
    return 0
