"""``robntk merge``: combine the shard stores of ``robntk score --shard K/N``."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

from robntk.commands._common import check_export_path, check_export_target
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_writable
from robntk.jobs.store import ResultStore, merge_stores


@dataclass(frozen=True, kw_only=True)
class MergeOptions:
    """The options of ``robntk merge``.

    Attributes:
        stores: shard store directories (positional). into: the merged store (created or extended).
        out: also export the merged rows to this table (None: no export).
        rtol: relative tolerance when the same arch appears in two stores (0: exact).
        allow_missing: exit 0 even when archs of the job's selection have no row.

    Raises:
        ValueError: ``--rtol`` not a finite number ≥ 0.
    """

    stores: tuple[str, ...] = field(
        metadata=flag("shard store directories written by `robntk score --store`", flag="stores")
    )
    into: str = field(metadata=flag("merged store directory (created or extended)"))
    out: str | None = field(
        default=None, metadata=flag("also export the merged rows to .csv/.parquet (+ .json sidecar)")
    )
    rtol: float = field(default=0.0, metadata=flag("relative tolerance when the same arch appears twice (0: exact)"))
    allow_missing: bool = field(
        default=False, metadata=flag("exit 0 even when archs of the job's selection have no row")
    )

    def __post_init__(self):
        if (
            isinstance(self.rtol, bool)
            or not isinstance(self.rtol, (int, float))
            or not (math.isfinite(self.rtol) and self.rtol >= 0)
        ):
            raise ValueError(f"--rtol must be a finite number >= 0, got {self.rtol!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``robntk merge``."""
    add_dataclass_flags(parser, MergeOptions)


def run(args: argparse.Namespace) -> int:
    """Merge; exit 1 when rows of the selection are missing (unless ``--allow-missing``)."""
    opts = config_from_args(MergeOptions, args)
    into = check_writable(opts.into, "--into", kind="dir")
    if opts.out:
        check_export_target(check_export_path(opts.out), into, store_flag="--into")
    for s in opts.stores:
        if not Path(s).is_dir():
            raise FileNotFoundError(
                f"shard store {s} not found"
                if not Path(s).exists()
                else f"shard store {s} is a file, not a robntk result store directory"
            )
    rep = merge_stores(list(opts.stores), opts.into, rtol=float(opts.rtol))
    msg = (
        f"merged {rep.n_sources} store(s) into {rep.out}: {rep.n_rows} rows, {rep.n_duplicates} duplicate "
        f"rows dropped, {len(rep.missing)} of the selection missing"
    )
    if rep.missing:
        msg += f" (first: {rep.missing[:10]})"
    print(msg)
    if opts.out:
        ResultStore.open(opts.into, create=False).export(opts.out)
        print(f"wrote {opts.out} (config {opts.out}.json)")
    return 1 if rep.missing and not opts.allow_missing else 0
