"""Scoring NB201 indices into a resumable store: :func:`run_engine` drives an
:class:`~robntk.scoring.engine.Engine` over a list of indices through the one job driver
(:func:`robntk.jobs.driver.run_job`: shards, resume, time budget, tqdm progress with rate and
ETA), keyed by :func:`store_key`, then exports what the store holds as CSV/parquet + JSON
sidecar; :class:`RunReport` summarises a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from robntk.jobs.driver import config_key, run_job
from robntk.jobs.store import ResultStore
from robntk.nb201.searchspace import SearchSpace
from robntk.scoring import config as scoring
from robntk.scoring.config import ScoreConfig
from robntk.scoring.engine import Engine, EngineOptions

#: Identifies the parameter definition that goes into the store key (bump when init changes).
PARAM_DEFINITION = "supernet-foldin-crc32-v1"


def store_key(cfg: ScoreConfig, batch_digest: str) -> str:
    """Hash of everything that determines a row: config digest, input batch, parameter definition."""
    return config_key({"config_digest": cfg.digest(), "batch": batch_digest, "params": PARAM_DEFINITION})


@dataclass
class RunReport:
    """Summary of :func:`run_engine`.

    Attributes:
        n_selected: archs in this (shard's) selection. n_skipped: already in the store.
        n_scored: scored now. compile_s: compile seconds. run_s: wall seconds (incl. compile).
        archs_per_s: n_scored / (run_s − compile_s). store: the store directory. out: exported
        table or None. n_remaining: left unscored (time budget reached). compile_cache: how the
        compiled program was obtained (:meth:`Engine.compile_report`; also in the table's sidecar).
    """

    n_selected: int
    n_skipped: int
    n_scored: int
    compile_s: float
    run_s: float
    archs_per_s: float
    store: Path
    out: Path | None = None
    implementation: str = ""
    batching: str = ""
    archs_per_call: int = 0
    n_devices: int = 1
    n_remaining: int = 0
    compile_cache: dict = field(default_factory=dict)


def run_engine(
    indices: Sequence[int],
    cfg: ScoreConfig,
    store: str | os.PathLike,
    *,
    x=None,
    y=None,
    batch_digest: str | None = None,
    data_dir=None,
    space: SearchSpace | None = None,
    arch_strs: dict[int, str] | None = None,
    shard: tuple[int, int] | None = None,
    options: EngineOptions = EngineOptions(),
    out: str | os.PathLike | None = None,
    progress: bool = True,
    devices=None,
    extra_provenance: dict | None = None,
    engine: Engine | None = None,
    keep_order: bool = False,
    time_budget_s: float | None = None,
) -> RunReport:
    """Score NB201 indices with one compiled function into a resumable store.

    Args:
        indices: NB201 indices (the whole job; ``shard`` selects this process's part).
        cfg: configuration. store: store directory (created; resumed if it exists with the same
            store key).
        x, y, batch_digest: the fixed batch (default :func:`robntk.scoring.config.load_batch` of cfg).
        data_dir, space: where the search space comes from (loaded if ``arch_strs`` is None).
        arch_strs: index → arch string, instead of a loaded search space (tests, custom lists).
        shard: (K, N) from :func:`robntk.jobs.parse_shard`. options: :class:`EngineOptions`.
        out: optional ``.csv``/``.parquet`` export after the run of every row the store holds
            (this selection first, in scoring order, then other stored archs by index), so a
            rerun with a smaller selection never drops rows from the export.
        progress: tqdm bar with rate and ETA. devices: local devices (default all).
        extra_provenance: extra fields for the header's provenance.
        keep_order: score in the order of ``indices`` (e.g. a random permutation, so that any
            prefix is a uniform random sample) instead of ascending index.
        time_budget_s: stop starting new calls after this many seconds (flush and return;
            rerun to continue) — e.g. a little below a SLURM time limit.
        engine: an existing :class:`Engine` for ``cfg`` to reuse (its compiled functions are
            kept; ``devices`` and all ``options`` but ``flush_seconds`` are then ignored).

    Returns:
        :class:`RunReport`.

    Raises:
        ValueError: bad configuration/indices; :class:`robntk.jobs.store.StoreMismatchError` when the
            store holds another configuration; :class:`robntk.jobs.store.StoreError` for a foreign or
            corrupt store.
    """
    if x is None:
        x, y, batch_digest = scoring.load_batch(cfg, data_dir)
    if batch_digest is None:
        batch_digest = scoring.batch_digest(x, y)
    if arch_strs is None:
        space = space or SearchSpace.load(data_dir)
        indices = [space.check_index(i) for i in indices]
        lookup = space.arch_str
    else:
        lookup = arch_strs.__getitem__
    selection = sorted(set(int(i) for i in indices))
    if engine is None:
        engine = Engine(cfg, options, devices)
    elif engine.cfg != cfg:
        raise ValueError("run_engine: the engine was built for another configuration")
    prov = scoring.provenance(
        cfg,
        batch_digest,
        {
            "engine": {
                "implementation": engine.implementation,
                "batching": engine.batching,
                "pgd_unroll": engine.options.pgd_unroll,
                "param_definition": PARAM_DEFINITION,
                "n_devices": len(engine.devices),
            },
            **(extra_provenance or {}),
        },
    )
    st = ResultStore.open(
        store,
        store_key(cfg, batch_digest),
        {
            "config": cfg.as_dict(),
            "config_digest": cfg.digest(),
            "batch_sha256_16": batch_digest,
            "param_definition": PARAM_DEFINITION,
            "provenance": prov,
            "selection": selection,
            "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        },
    )
    engine.set_batch(x, y)
    job = run_job(
        indices,
        lambda blk: engine.score_block(blk, [lookup(i) for i in blk]),
        st,
        block=lambda: engine.choose_archs_per_call() * len(engine.devices),
        shard=shard,
        keep_order=keep_order,
        time_budget_s=time_budget_s,
        flush_s=options.flush_seconds,
        desc="score[supernet]",
        progress=progress,
        postfix=lambda: {"compile_s": f"{engine.compile_s:.1f}"},
    )
    n, mine = job.n_done, job.keys
    rep = RunReport(
        job.n_selected,
        job.n_skipped,
        n,
        engine.compile_s,
        job.run_s,
        n / max(job.run_s - engine.compile_s, 1e-9) if n else 0.0,
        Path(store),
        implementation=engine.implementation,
        batching=engine.batching,
        archs_per_call=engine.archs_per_call or 0,
        n_devices=len(engine.devices),
        n_remaining=job.n_remaining,
        compile_cache=engine.compile_report(),
    )
    if out is not None:
        st.header["compile_cache"] = rep.compile_cache  # the sidecar records this run's cache use
        first = mine if keep_order else selection
        rep.out = st.export(out, order=list(first) + sorted(st.done() - set(first)))
    return rep
