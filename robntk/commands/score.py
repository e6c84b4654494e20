"""``robntk score``: NTK scores (the spectra of the robust kernel family) of NB201 archs.

Every selection — one arch or all 6,466 — goes through the one engine (:mod:`robntk.scoring.engine`):
one compile per configuration, a resumable crash-safe store (``--store``, default
``OUT.store``), then an export of every row the store holds to ``--out`` (+ ``OUT.json``).

Several draws (``--init-seeds`` and/or ``--attack-seeds``): one engine run per (init seed,
attack seed) into ``STORE/s{s}_a{a}``, each exported to ``OUT`` with ``.s{s}_a{a}`` before its
suffix, and ``OUT`` holds their aggregate (:func:`aggregate_draws`), which ranks more stably
than one draw. Cost: one compile and one full run per draw.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.jobs.driver import parse_shard
from robntk.scoring.engine import EngineOptions, run_engine
from robntk.nb201.searchspace import SearchSpace
from robntk.core.tables import check_table_path, check_writable, read_table, write_table
from robntk.commands.common import add_score_flags, add_selection_flags, score_config, select_indices
from robntk.commands.flags import add_dataclass_flags, config_from_args


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """Flags of :class:`robntk.scoring.engine.EngineOptions` plus ``--store``, ``--shard``, ``--time-budget``."""
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
    p.add_argument("--init-seeds", type=int, nargs="+", default=None, metavar="S",
                   help="score with each init seed (overrides --seed; also the batch seed) and aggregate")
    p.add_argument("--attack-seeds", type=int, nargs="+", default=None, metavar="A",
                   help="score with each attack seed (same weights and batch) and aggregate")
    p.add_argument("--no-progress", action="store_true")
    add_engine_flags(p)


#: Columns of positive spectral quantities, aggregated over draws by their geometric mean.
GEOMETRIC_PREFIXES = ("lambda_min_", "lambda_max_", "cond_", "trace_")


def aggregate_draws(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Aggregate score tables of several draws (same archs) into one table.

    Args:
        tables: ``robntk score`` tables (``nb201_index`` column), one per draw.

    Returns:
        One row per arch (in the first table's order): ``nb201_index``, ``arch_str``,
        ``disconnected``; every ``lambda_min_*``, ``lambda_max_*``, ``cond_*``, ``trace_*``
        column as the geometric mean over draws (the mean of log values: these span orders of
        magnitude; a draw ≤ 0 or NaN makes it NaN), ``logdet_clean`` as the arithmetic mean,
        ``degenerate`` if any draw is, ``run_s`` summed, and ``n_draws``.

    Raises:
        ValueError: no tables, or tables over different archs.
    """
    if not tables:
        raise ValueError("aggregate_draws needs at least one table")
    idx = [t.set_index("nb201_index") for t in tables]
    keys = idx[0].index
    for t in idx[1:]:
        if set(t.index) != set(keys):
            raise ValueError("draw tables cover different archs; rerun the unfinished draws first")
    idx = [t.loc[keys] for t in idx]
    out = idx[0][[c for c in ("arch_str", "disconnected") if c in idx[0].columns]].copy()
    for c in idx[0].columns:
        if not (c.startswith(GEOMETRIC_PREFIXES) or c in ("logdet_clean", "run_s")):
            continue
        v = np.stack([t[c].to_numpy(np.float64) for t in idx])
        if c == "logdet_clean":
            out[c] = v.mean(0)
        elif c == "run_s":
            out[c] = v.sum(0)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[c] = np.where((v > 0).all(0), np.exp(np.log(np.where(v > 0, v, 1.0)).mean(0)), np.nan)
    if "degenerate" in idx[0].columns:
        out["degenerate"] = np.any([t["degenerate"].astype(bool).to_numpy() for t in idx], axis=0)
    out["n_draws"] = len(idx)
    return out.reset_index()


def _draw_path(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}.{tag}{out.suffix}")


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
    if args.init_seeds or args.attack_seeds:
        return _run_draws(args, cfg, out, store, indices, space, opts, shard, budget)
    rep = run_engine(indices, cfg, store, data_dir=args.data_dir, space=space, shard=shard, options=opts, out=out,
                     progress=not args.no_progress, time_budget_s=budget)
    print(f"engine: {rep.n_scored} scored, {rep.n_skipped} already in {rep.store}, {rep.n_remaining} left "
          f"(time budget), compile {rep.compile_s:.1f} s, {rep.archs_per_s:.3f} archs/s ({rep.implementation}, "
          f"{rep.batching}, {rep.archs_per_call} archs/call/device, {rep.n_devices} device(s)); "
          f"wrote {rep.out} (config {rep.out}.json)")
    return 0


def _run_draws(args, cfg, out: Path, store: Path, indices, space, opts, shard, budget) -> int:
    """One engine run per (init seed, attack seed), then the aggregate table (:func:`aggregate_draws`)."""
    draws = list(itertools.product(args.init_seeds or [cfg.seed], args.attack_seeds or [None]))
    tables, meta = [], []
    for s, a in draws:
        c = dataclasses.replace(cfg, seed=s, attack_seed=a)
        tag = f"s{s}_a{c.attack_key_seed}"  # attack seed = init seed is the single-draw default
        rep = run_engine(indices, c, store / tag, data_dir=args.data_dir, space=space, shard=shard, options=opts,
                         out=_draw_path(out, tag), progress=not args.no_progress, time_budget_s=budget)
        print(f"draw {tag}: {rep.n_scored} scored, {rep.n_skipped} stored, {rep.n_remaining} left, "
              f"compile {rep.compile_s:.1f} s, run {rep.run_s:.1f} s")
        if rep.n_remaining:
            print("time budget reached: rerun to continue; no aggregate written")
            return 0
        t = read_table(rep.out)
        tables.append(t[t.nb201_index.isin(set(indices))])
        meta.append({"tag": tag, "seed": s, "attack_seed": c.attack_key_seed, "table": str(rep.out),
                     "config": c.as_dict(),
                     "compile_s": rep.compile_s, "run_s": rep.run_s})
    agg = aggregate_draws(tables)
    write_table(agg, out, {"job": "score (several draws)", "draws": meta, "aggregate": (
        "geometric mean over draws of lambda_min_*/lambda_max_*/cond_*/trace_* (NaN if a draw is <= 0), "
        "arithmetic mean of logdet_clean, degenerate if any draw is, run_s summed"),
        "cost": "one compile and one full engine run per draw"})
    print(f"wrote {out} (aggregate of {len(draws)} draws, {len(agg)} archs)")
    return 0
