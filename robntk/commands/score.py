"""``robntk score``: NTK scores (the spectra of the robust kernel family) of NB201 archs.

Every selection — one arch or all 6,466 — goes through the one engine (:mod:`robntk.scoring.engine`):
one compile per configuration, a resumable crash-safe store (``--store``, default
``OUT.store``), then an export of every row the store holds to ``--out`` (+ ``OUT.json``).

Several draws (``--init-seeds`` and/or ``--attack-seeds``): one engine run per (init seed,
attack seed) into ``STORE/s{s}_a{a}``, each exported to ``OUT`` with ``.s{s}_a{a}`` before its
suffix, and ``OUT`` holds their aggregate (:mod:`robntk.scoring.draws`), which ranks more stably
than one draw. Cost: one compile and one full run per draw.

On a cluster (``--executor slurm --shards N``, or ``--executor local`` on this machine): one
submitit job array of N tasks, task K scoring shard K/N (:class:`ScoreShardWork`) into
``STORE.shards/shard-K-of-N``; incomplete shards are resubmitted (``--max-retries``) and resume
from their stores; then the shard stores are merged into ``STORE`` and ``--out`` is exported
from it as by a one-process run (:func:`robntk.jobs.submit.run_sharded`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from robntk.commands._common import (
    JobOptions,
    Selection,
    Shard,
    add_engine_flags,
    add_score_flags,
    add_selection_flags,
    add_submit_flags,
    check_export_path,
    check_export_target,
    engine_options,
    score_config,
    submit_options,
)
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.paths import data_dir as resolve_data_dir
from robntk.core.registry import check_seed
from robntk.core.tables import check_table_path, check_writable, read_table, write_table
from robntk.jobs.submit import run_sharded
from robntk.nb201.searchspace import SearchSpace
from robntk.scoring.config import ScoreConfig
from robntk.scoring.draws import AGGREGATE_NOTE, aggregate_draws, draw_configs, draw_path
from robntk.scoring.engine import EngineOptions
from robntk.scoring.runner import run_engine

#: Job name of the aggregate table's sidecar (``score`` with several draws).
DRAWS_JOB = "score (several draws)"


def _check_seeds(seeds, name: str) -> None:
    if seeds is None:
        return
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"{name} must list integers >= 0, got {list(seeds)}")
    for s in seeds:
        check_seed(s, name)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} lists a seed twice: {list(seeds)}")


@dataclass(frozen=True, kw_only=True)
class ScoreOptions:
    """The options of ``robntk score`` besides the selection, :class:`~robntk.scoring.config.ScoreConfig`
    and the engine.

    Attributes:
        out: the exported table (.csv/.tsv/.parquet; configuration in ``OUT.json``).
        init_seeds, attack_seeds: draws to score and aggregate (:mod:`robntk.scoring.draws`).
        no_progress: hide the progress bar.

    Raises:
        ValueError: a seed outside [0, 2**32 − 1] or repeated (names the flag).
    """

    out: str = field(metadata=flag("output .csv or .parquet (configuration in OUT.json)"))
    init_seeds: tuple[int, ...] | None = field(
        default=None,
        metadata=flag("score with each init seed (overrides --seed; also the batch seed) and aggregate", metavar="S"),
    )
    attack_seeds: tuple[int, ...] | None = field(
        default=None, metadata=flag("score with each attack seed (same weights and batch) and aggregate", metavar="A")
    )
    no_progress: bool = field(default=False, metadata=flag("no progress bar"))

    def __post_init__(self):
        _check_seeds(self.init_seeds, "--init-seeds")
        _check_seeds(self.attack_seeds, "--attack-seeds")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk score``."""
    add_selection_flags(p)
    add_score_flags(p)
    add_dataclass_flags(p, ScoreOptions)
    add_engine_flags(p, shard=True)
    add_submit_flags(p)


@dataclass(frozen=True)
class ScoreShardWork:
    """The work of one task of ``robntk score --executor``: shard k of n of the selection, every
    draw, into the shard's store (picklable: submitit sends it to the task).

    Attributes:
        indices: the whole selection (NB201 indices; the engine keeps shard k/n of them).
        draws: (tag, configuration) per draw; tag ``''`` for a single run (the store itself),
            else the draw's sub-store ``STORE/<tag>`` as in a one-process run.
        data_dir: absolute data directory (tasks may start elsewhere).
        options: engine options. time_budget_s: ``--time-budget`` of one task and draw (None:
            no limit; a task stopped by it is incomplete and resubmitted).
    """

    indices: tuple[int, ...]
    draws: tuple[tuple[str, ScoreConfig], ...]
    data_dir: str
    options: EngineOptions
    time_budget_s: float | None = None

    def __call__(self, k: int, n: int, store: str) -> list[dict]:
        """Score shard ``k`` of ``n`` into ``store`` (creating or resuming it). Returns one
        summary dict per draw (scored, skipped, remaining, compile and run seconds)."""
        import jax

        space = SearchSpace.load(self.data_dir)
        done = []
        for tag, c in self.draws:
            if c.dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            rep = run_engine(
                list(self.indices),
                c,
                Path(store) / tag if tag else Path(store),
                data_dir=self.data_dir,
                space=space,
                shard=(k, n),
                options=self.options,
                progress=False,
                time_budget_s=self.time_budget_s,
            )
            done.append(
                {
                    "draw": tag,
                    "scored": rep.n_scored,
                    "skipped": rep.n_skipped,
                    "remaining": rep.n_remaining,
                    "compile_s": rep.compile_s,
                    "run_s": rep.run_s,
                }
            )
            print(
                f"shard {k}/{n} {tag or 'score'}: {rep.n_scored} scored, {rep.n_skipped} already stored, "
                f"{rep.n_remaining} left",
                flush=True,
            )
        return done


def run(args: argparse.Namespace) -> int:
    """Score the selection into the store and export it; print a summary. Returns 0."""
    opts = config_from_args(ScoreOptions, args)
    cfg = score_config(args)
    sel = config_from_args(Selection, args)
    job = config_from_args(JobOptions, args)
    shard_flag = config_from_args(Shard, args)
    shard = shard_flag.parsed
    sub = submit_options(args, shard_flag.shard)
    engine = engine_options(args)
    out = check_export_path(opts.out)
    store = check_writable(job.store_path(out), "--store", kind="dir")
    draws = draw_configs(cfg, opts.init_seeds, opts.attack_seeds) if opts.init_seeds or opts.attack_seeds else None
    if draws is None:
        check_export_target(out, store)
    else:  # every draw's table and the aggregate, before any work
        for tag, _ in draws:
            check_table_path(draw_path(out, tag))
            check_writable(store / tag, "--store", kind="dir")
            check_export_target(draw_path(out, tag), store / tag)
        check_export_target(out, store, job=DRAWS_JOB)
    space = SearchSpace.load(args.data_dir)
    indices = sel.indices(space, cfg.seed)
    kw = dict(
        data_dir=args.data_dir,
        space=space,
        shard=shard,
        options=engine,
        progress=not opts.no_progress,
        time_budget_s=job.time_budget,
    )
    if sub.executor is not None:  # every shard as a task, merged into the store; the export below computes nothing
        work = ScoreShardWork(
            tuple(indices),
            tuple(draws) if draws is not None else (("", cfg),),
            str(resolve_data_dir(args.data_dir).resolve()),
            engine,
            job.time_budget,
        )
        run_sharded(
            indices,
            work,
            store,
            sub,
            substores=[t for t, _ in draws] if draws is not None else [""],
            name="robntk-score",
        )
    if draws is not None:
        return _run_draws(draws, out, store, indices, kw)
    rep = run_engine(indices, cfg, store, out=out, **kw)
    print(
        f"engine: {rep.n_scored} scored, {rep.n_skipped} already in {rep.store}, {rep.n_remaining} left "
        f"(time budget), compile {rep.compile_s:.1f} s, {rep.archs_per_s:.3f} archs/s ({rep.implementation}, "
        f"{rep.batching}, {rep.archs_per_call} archs/call/device, {rep.n_devices} device(s)); "
        f"wrote {rep.out} (config {rep.out}.json)"
    )
    return 0


def _run_draws(draws, out: Path, store: Path, indices, kw: dict) -> int:
    """One engine run per draw (``draws`` from :func:`robntk.scoring.draws.draw_configs`), then their aggregate."""
    tables, meta = [], []
    for tag, c in draws:
        rep = run_engine(indices, c, store / tag, out=draw_path(out, tag), **kw)
        print(
            f"draw {tag}: {rep.n_scored} scored, {rep.n_skipped} stored, {rep.n_remaining} left, "
            f"compile {rep.compile_s:.1f} s, run {rep.run_s:.1f} s"
        )
        if rep.n_remaining:
            print("time budget reached: rerun to continue; no aggregate written")
            return 0
        t = read_table(rep.out)
        tables.append(t[t.nb201_index.isin(set(indices))])
        meta.append(
            {
                "tag": tag,
                "seed": c.seed,
                "attack_seed": c.attack_key_seed,
                "table": str(rep.out),
                "config": c.as_dict(),
                "compile_s": rep.compile_s,
                "run_s": rep.run_s,
            }
        )
    agg = aggregate_draws(tables)
    write_table(
        agg,
        out,
        {
            "job": DRAWS_JOB,
            "store": str(store),
            "draws": meta,
            "aggregate": AGGREGATE_NOTE,
            "cost": "one compile and one full engine run per draw",
        },
    )
    print(f"wrote {out} (aggregate of {len(draws)} draws, {len(agg)} archs)")
    return 0
