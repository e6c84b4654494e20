"""``robntk proxies``: zero-cost proxies (NASLib's definitions, :mod:`robntk.proxies`) of NB201
archs on one fixed batch and one initialisation, one compile per proxy for all cells.

Writes ``--out`` (CSV/TSV/parquet: ``nb201_index``, ``arch_str``, one column per proxy and a
``{name}_undefined`` flag column — NaN, never a silent number, where a proxy is undefined) and
its JSON sidecar (configuration, batch hash, BN mode, versions). Same batch definition and
"init seed s" as ``robntk score`` (the same :class:`~robntk.scoring.config.ScoreConfig` flags and
defaults, except NASLib's batch of :data:`DEFAULT_BATCH` images); the network runs with
batch-statistics BN, as NASLib's ``find_measures`` does (``synflow`` is BN-free by definition).

Resumable: values go to the store ``--store`` (default ``OUT.store``, one sub-store per proxy,
keyed by the configuration and the batch digest) as they are computed; rerunning the same
command skips what is stored, ``--minutes`` bounds one run, and adding a proxy to ``--proxies``
later computes only that proxy. The table holds the archs with every requested proxy.

On a cluster (``--executor slurm --shards N``, or ``--executor local`` on this machine): one
submitit job array of N tasks, task K computing shard K/N (:class:`ProxiesShardWork`) into
``STORE.shards/shard-K-of-N`` (one sub-store per proxy there too); incomplete shards are
resubmitted (``--max-retries``) and resume; then each proxy's shard stores are merged into
``STORE/<proxy>`` and the table is written from them as by a one-process run
(:func:`robntk.jobs.submit.run_sharded`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import jax

from robntk import proxies as P
from robntk.commands._common import (
    Selection,
    add_score_flags,
    add_selection_flags,
    add_submit_flags,
    check_export_target,
    score_config,
    submit_options,
)
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.paths import data_dir as resolve_data_dir
from robntk.core.tables import check_table_path, check_writable, write_table
from robntk.jobs.driver import shard_indices
from robntk.jobs.submit import run_sharded
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import SearchSpace
from robntk.scoring.config import ScoreConfig, load_batch, provenance

#: NASLib's batch size for the NB201 proxies (NAS-Bench-Suite-Zero: 64 images).
DEFAULT_BATCH = 64
#: The score configuration of the proxies: :class:`ScoreConfig`'s defaults with NASLib's batch.
DEFAULTS = dataclasses.replace(ScoreConfig(), batch_size=DEFAULT_BATCH)
#: The ``job`` of the table's sidecar.
JOB = "proxies"
#: The :class:`ScoreConfig` fields that define a proxy computation (the NTK fields do not apply).
CONFIG_FIELDS: tuple[str, ...] = ("dataset", "batch_size", "seed", "C", "N")
#: The default selection: NAS-Bench-Suite-Zero's NB201 proxies that robntk defines, one
#: forward/backward each (the others — zen, epe_nas, zico, tenas_ntk_cond, linear_regions, croze,
#: l2_norm, plain — are chosen with --proxies).
DEFAULT_PROXIES = ("params", "flops", "synflow", "nwot", "jacov", "snip", "grad_norm", "fisher", "grasp")


@dataclass(frozen=True, kw_only=True)
class ProxiesOptions:
    """The options of ``robntk proxies`` besides the selection and the score configuration.

    Attributes:
        proxies: names of :data:`robntk.proxies.PROXIES` to compute.
        out: the table (.csv/.tsv/.parquet; configuration in ``OUT.json``).
        store: resumable store directory (None: ``OUT.store``).
        minutes: start no new arch after this many minutes (None: no limit).
        no_progress: hide the progress bar.

    Raises:
        ValueError: an unknown or repeated proxy name (lists the allowed ones), ``--minutes``
            negative, NaN or infinite.
    """

    proxies: tuple[str, ...] = field(
        default=DEFAULT_PROXIES, metadata=flag(f"proxies to compute (allowed: {', '.join(P.PROXIES)})", metavar="NAME")
    )
    out: str = field(metadata=flag("output .csv/.tsv/.parquet (configuration in OUT.json)"))
    store: str | None = field(default=None, metadata=flag("resumable store directory (default: OUT.store)"))
    minutes: float | None = field(
        default=None, metadata=flag("start no new arch after this many minutes (rerun to continue)")
    )
    no_progress: bool = field(default=False, metadata=flag("no progress bar"))

    def __post_init__(self):
        object.__setattr__(self, "proxies", tuple(P.check_proxy_names(self.proxies)))
        dup = sorted({n for n in self.proxies if self.proxies.count(n) > 1})
        if dup:
            raise ValueError(f"--proxies lists {', '.join(dup)} more than once")
        if self.minutes is not None and not self.minutes >= 0:
            raise ValueError(f"--minutes must be a number >= 0 (0: export what is stored), got {self.minutes!r}")
        if self.minutes is not None and self.minutes == float("inf"):
            raise ValueError("--minutes must be a finite number >= 0 (leave it out for no limit), got inf")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk proxies``."""
    add_selection_flags(p)
    add_score_flags(
        p, DEFAULTS, include=CONFIG_FIELDS, helps={"seed": "init seed (also batch, sample and proxy key seed)"}
    )
    add_dataclass_flags(p, ProxiesOptions)
    add_submit_flags(p)


def _proxy_table(
    names: list[str],
    indices,
    cfg: ScoreConfig,
    data_dir,
    space: SearchSpace,
    store,
    progress: bool,
    time_budget_s: float | None,
):
    """:func:`robntk.proxies.proxy_table` of ``indices`` on the batch and init of ``cfg`` with the
    store ``store`` (one sub-store per proxy). Returns (table, the stores' configuration, batch
    digest)."""
    x, y, digest = load_batch(cfg, data_dir)
    net = TinyNetwork.for_dataset(cfg.dataset, cfg.C, cfg.N, cfg.init_scheme)
    variables = net.init(jax.random.PRNGKey(cfg.seed))
    # only the fields that define this computation (the NTK fields of ScoreConfig do not apply)
    config = {
        k: getattr(cfg, k) for k in ("dataset", "batch_size", "seed", "C", "N", "init_scheme", "dtype", "data_split")
    }
    config.update(
        bn_mode="train (batch statistics; synflow BN-free)",
        proxy_key=f"PRNGKey({cfg.seed + 1})",
        batch_sha256_16=digest,
    )
    table = P.proxy_table(
        names,
        indices,
        net,
        variables,
        x,
        y,
        space,
        key=jax.random.PRNGKey(cfg.seed + 1),
        progress=progress,
        store=store,
        store_config=config,
        time_budget_s=time_budget_s,
    )
    return table, config, digest


@dataclass(frozen=True)
class ProxiesShardWork:
    """The work of one task of ``robntk proxies --executor``: shard k of n of the selection into
    the shard's store (one sub-store per proxy; picklable: submitit sends it to the task).

    Attributes:
        names: proxies. indices: the whole selection (NB201 indices). cfg: the score
        configuration (batch, init). data_dir: absolute data directory. time_budget_s:
        ``--minutes`` × 60 of one task (None: no limit; a task stopped by it is resubmitted).
    """

    names: tuple[str, ...]
    indices: tuple[int, ...]
    cfg: ScoreConfig
    data_dir: str
    time_budget_s: float | None = None

    def __call__(self, k: int, n: int, store: str) -> int:
        """Compute shard ``k`` of ``n`` (:func:`robntk.jobs.driver.shard_indices`) into ``store``.
        Returns the number of archs of the shard with every proxy."""
        if self.cfg.dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        mine = shard_indices(self.indices, (k, n))
        table, _, _ = _proxy_table(
            list(self.names),
            mine,
            self.cfg,
            self.data_dir,
            SearchSpace.load(self.data_dir),
            store,
            False,
            self.time_budget_s,
        )
        print(f"shard {k}/{n}: {len(table)} of {len(mine)} archs with every proxy in {store}", flush=True)
        return len(table)


def run(args: argparse.Namespace) -> int:
    """Compute the proxies of the selection and write the table. Returns 0."""
    opts = config_from_args(ProxiesOptions, args)
    cfg = score_config(args, DEFAULTS)
    sel = config_from_args(Selection, args)
    sub = submit_options(args)
    out = check_table_path(opts.out)
    store = check_writable(opts.store or f"{out}.store", "--store", kind="dir")
    check_export_target(out, store, job=JOB)
    space = SearchSpace.load(args.data_dir)
    indices = sel.indices(space, cfg.seed)
    names = list(opts.proxies)
    budget = None if opts.minutes is None else 60 * opts.minutes
    if sub.executor is not None:  # every shard as a task, merged into the store; the table below computes nothing
        work = ProxiesShardWork(
            tuple(names), tuple(indices), cfg, str(resolve_data_dir(args.data_dir).resolve()), budget
        )
        run_sharded(indices, work, store, sub, substores=names, name="robntk-proxies")
    table, config, digest = _proxy_table(names, indices, cfg, args.data_dir, space, store, not opts.no_progress, budget)
    meta = provenance(
        cfg,
        digest,
        {"job": JOB, "proxies": names, "n_archs": len(table), "n_selected": len(indices), "store": str(store)},
    )
    meta["config"] = config
    for k in ("config_digest", "bn_mode_note"):
        meta.pop(k, None)
    write_table(table.reset_index(), out, meta)
    print(table.drop(columns=["arch_str"]).describe().T[["count", "mean", "min", "max"]].to_string())
    left = len(set(indices)) - len(table)
    print(
        f"wrote {out} ({len(table)} archs, {len(names)} proxies)"
        + (f"; {left} left: rerun to continue" if left else "")
    )
    return 0
