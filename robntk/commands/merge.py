"""``robntk merge``: combine the shard stores of ``robntk score --shard K/N``."""

from __future__ import annotations

import argparse
import math

from robntk.jobs.store import ResultStore, merge_stores
from robntk.core.tables import check_table_path, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk merge``."""
    parser.add_argument("stores", nargs="+", help="shard store directories written by `robntk score --store`")
    parser.add_argument("--into", required=True, help="merged store directory (created or extended)")
    parser.add_argument("--out", default=None, help="also export the merged rows to .csv/.parquet (+ .json sidecar)")
    parser.add_argument("--rtol", type=float, default=0.0,
                        help="relative tolerance when the same arch appears twice (default 0: exact)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even when archs of the job's selection have no row")


def run(args: argparse.Namespace) -> int:
    """Merge; exit 1 when rows of the selection are missing (unless ``--allow-missing``)."""
    if not (isinstance(args.rtol, float) and math.isfinite(args.rtol) and args.rtol >= 0):
        raise ValueError(f"--rtol must be a finite number >= 0, got {args.rtol!r}")
    check_writable(args.into, "--into")
    if args.out:
        check_table_path(args.out)
    rep = merge_stores(args.stores, args.into, rtol=args.rtol)
    msg = (f"merged {rep.n_sources} store(s) into {rep.out}: {rep.n_rows} rows, {rep.n_duplicates} duplicate "
           f"rows dropped, {len(rep.missing)} of the selection missing")
    if rep.missing:
        msg += f" (first: {rep.missing[:10]})"
    print(msg)
    if args.out:
        ResultStore.open(args.into, create=False).export(args.out)
        print(f"wrote {args.out} (config {args.out}.json)")
    return 1 if rep.missing and not args.allow_missing else 0
