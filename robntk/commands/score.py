"""``robntk score``: NTK scores (the spectra of the robust kernel family) of NB201 archs.

Every selection — one arch or all 6,466 — goes through the one engine (:mod:`robntk.engine`):
one compile per configuration, a resumable crash-safe store (``--store``, default
``OUT.store``), then an export of every row the store holds to ``--out`` (+ ``OUT.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine import EngineOptions, parse_shard, run_engine
from ..searchspace import SearchSpace
from ..tables import check_table_path, check_writable
from .common import add_score_flags, add_selection_flags, score_config, select_indices
from .flags import add_dataclass_flags, config_from_args


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """Flags of :class:`robntk.engine.EngineOptions` plus ``--store``, ``--shard``, ``--time-budget``."""
    g = p.add_argument_group("engine")
    add_dataclass_flags(g, EngineOptions)
    g.add_argument("--store", default=None, help="result store directory (default OUT.store); resumable")
    g.add_argument("--shard", default=None, help="K/N: score only shard K (0-based) of N of the selection")
    g.add_argument("--time-budget", type=float, default=None,
                   help="seconds after which no new call starts (clean exit; rerun to resume)")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """:class:`EngineOptions` of the flags (raises ValueError for bad values)."""
    return config_from_args(EngineOptions, args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk score``."""
    add_selection_flags(p)
    add_score_flags(p)
    p.add_argument("--out", required=True, help="output .csv or .parquet (configuration in OUT.json)")
    p.add_argument("--no-progress", action="store_true")
    add_engine_flags(p)


def check_time_budget(v) -> float | None:
    """Raise ValueError unless ``v`` is None or a positive number of seconds."""
    if v is not None and not (v > 0):
        raise ValueError(f"--time-budget must be a positive number of seconds, got {v!r}")
    return v


def run(args: argparse.Namespace) -> int:
    """Score the selection into the store and export it; print a summary. Returns 0."""
    cfg = score_config(args)
    out = check_table_path(args.out)
    store = Path(args.store) if args.store else out.with_name(out.name + ".store")
    check_writable(store, "--store")
    opts = engine_options(args)
    shard = parse_shard(args.shard)
    budget = check_time_budget(args.time_budget)
    space = SearchSpace.load(args.data_dir)
    indices = select_indices(args, space, cfg.seed)
    rep = run_engine(indices, cfg, store, data_dir=args.data_dir, space=space, shard=shard, options=opts, out=out,
                     progress=not args.no_progress, time_budget_s=budget)
    print(f"engine: {rep.n_scored} scored, {rep.n_skipped} already in {rep.store}, {rep.n_remaining} left "
          f"(time budget), compile {rep.compile_s:.1f} s, {rep.archs_per_s:.3f} archs/s ({rep.implementation}, "
          f"{rep.batching}, {rep.archs_per_call} archs/call/device, {rep.n_devices} device(s)); "
          f"wrote {rep.out} (config {rep.out}.json)")
    return 0
