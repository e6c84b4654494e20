"""Pieces shared by several commands (internal): the architecture selection, the score and engine
flags of ``score`` and ``reproduce``, and the ``--scores`` table of ``search`` and ``combine``.

Every piece is a frozen dataclass whose fields are flags (:mod:`robntk.commands._flags`) and whose
``__post_init__`` validates them (ValueError naming the flag and what is allowed), plus the
function that adds its flags and the one that builds it from the parsed flags.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import pandas as pd

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_table_path, read_sidecar
from robntk.jobs.driver import parse_shard
from robntk.jobs.store import HEADER, StoreError, read_header
from robntk.jobs.submit import SubmitOptions
from robntk.nb201.searchspace import SearchSpace, sample_indices
from robntk.scoring.config import ScoreConfig
from robntk.scoring.engine import EngineOptions


def _check_int(v, name: str, lo: int) -> None:
    """Raise ValueError unless ``v`` is an integer ≥ ``lo`` (``name`` is the flag)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


# --------------------------------------------------------------------------- architectures
@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which NB201 architectures a command works on: exactly one of the four selectors.

    Attributes:
        arch: NB201 indices or arch strings (``--arch``, repeatable).
        archs_file: a file with one index or arch string per line (``#`` comments).
        sample: a random sample of N isomorphism-class representatives (seeded by the command's
            ``--seed``).
        all: all 6,466 isomorphism-class representatives.

    Raises:
        ValueError: none or several selectors, ``--sample`` < 1.
    """

    arch: tuple[str, ...] = field(default=(), metadata=flag("NB201 index or arch string (repeatable)", action="append"))
    archs_file: str | None = field(
        default=None, metadata=flag("file with one index or arch string per line (# comments)")
    )
    sample: int | None = field(
        default=None, metadata=flag("random sample of N isomorphism-class representatives (--seed)")
    )
    all: bool = field(default=False, metadata=flag("all 6,466 isomorphism-class representatives"))

    def __post_init__(self):
        object.__setattr__(self, "arch", tuple(str(a) for a in (self.arch or ())))
        if self.archs_file is not None:
            object.__setattr__(self, "archs_file", os.fspath(self.archs_file))
        chosen = [bool(self.arch), bool(self.archs_file), self.sample is not None, bool(self.all)]
        if sum(chosen) != 1:
            raise ValueError("choose exactly one of --arch, --archs-file, --sample N, --all")
        if self.sample is not None:
            _check_int(self.sample, "--sample", 1)

    def indices(self, space: SearchSpace, seed: int) -> list[int]:
        """NB201 indices of the selection, resolved by :meth:`robntk.nb201.searchspace.SearchSpace.resolve`.

        Raises:
            ValueError: a bad entry, or a sample larger than the space. FileNotFoundError:
                ``--archs-file`` missing.
        """
        if self.all:
            return list(space.representatives)
        if self.sample is not None:
            return sample_indices(space, self.sample, seed)
        items = list(self.arch)
        if self.archs_file:
            path = Path(self.archs_file)
            if not path.is_file():
                raise FileNotFoundError(f"--archs-file {path} not found")
            items = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            if not items:
                raise ValueError(f"--archs-file {path} lists no architectures")
        return [space.resolve(a) for a in items]


def add_selection_flags(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`Selection` (group "architectures (choose one)")."""
    add_dataclass_flags(p.add_argument_group("architectures (choose one)"), Selection)


def select_indices(args: argparse.Namespace, space: SearchSpace, seed: int) -> list[int]:
    """NB201 indices of the selection flags in ``args`` (:meth:`Selection.indices`).

    Raises:
        ValueError: none or several selectors, bad entries. FileNotFoundError: ``--archs-file``.
    """
    return config_from_args(Selection, args).indices(space, seed)


# --------------------------------------------------------------------------- score configuration
#: Most PGD steps at initialisation the commands take (``--pgd-steps``): each step is unrolled
#: into the compiled function.
MAX_PGD_STEPS = 1000


def add_score_flags(p: argparse.ArgumentParser, defaults: ScoreConfig | None = None, include=None, helps=None) -> None:
    """The flags of :class:`robntk.scoring.config.ScoreConfig` (one source of defaults), in the
    group "score configuration"; ``include``/``helps`` as :func:`robntk.commands._flags.add_dataclass_flags`."""
    add_dataclass_flags(
        p.add_argument_group("score configuration"), ScoreConfig, defaults, include=include, helps=helps
    )


def score_config(args: argparse.Namespace, defaults: ScoreConfig | None = None) -> ScoreConfig:
    """The :class:`ScoreConfig` of the flags; ``--dtype float64`` turns on ``jax_enable_x64``
    for this process (before any array is made).

    Raises:
        ValueError: a value ScoreConfig rejects, ``--pgd-steps`` above :data:`MAX_PGD_STEPS`.
    """
    cfg = config_from_args(ScoreConfig, args, defaults)
    if cfg.pgd_steps > MAX_PGD_STEPS:
        raise ValueError(
            f"--pgd-steps must be at most {MAX_PGD_STEPS} (the steps are unrolled into the compiled "
            f"function unless --no-pgd-unroll), got {cfg.pgd_steps}"
        )
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return cfg


# --------------------------------------------------------------------------- engine
@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """Where an engine job keeps its rows and how long one run may take.

    Attributes:
        store: result store directory (None: ``OUT.store`` next to the exported table).
        time_budget: seconds after which no new engine call starts (None: no limit).

    Raises:
        ValueError: ``--time-budget`` not a positive number.
    """

    store: str | None = field(default=None, metadata=flag("result store directory (default OUT.store); resumable"))
    time_budget: float | None = field(
        default=None, metadata=flag("seconds after which no new call starts (clean exit; rerun to resume)")
    )

    def __post_init__(self):
        if self.time_budget is not None and not (self.time_budget > 0):
            raise ValueError(f"--time-budget must be a positive number of seconds, got {self.time_budget!r}")

    def store_path(self, out: Path) -> Path:
        """``--store``, else ``OUT.store`` next to the table ``out``."""
        return Path(self.store) if self.store else out.with_name(out.name + ".store")


@dataclass(frozen=True, kw_only=True)
class Shard:
    """One shard of a selection (``--shard K/N``, :func:`robntk.jobs.driver.parse_shard`).

    Raises:
        ValueError: malformed spec or K outside 0..N-1.
    """

    shard: str | None = field(default=None, metadata=flag("K/N: score only shard K (0-based) of N of the selection"))

    def __post_init__(self):
        parse_shard(self.shard)

    @property
    def parsed(self) -> tuple[int, int] | None:
        """(K, N), or None for the whole selection."""
        return parse_shard(self.shard)


def add_engine_flags(p: argparse.ArgumentParser, shard: bool = False) -> None:
    """Group "engine": the flags of :class:`robntk.scoring.engine.EngineOptions` and
    :class:`JobOptions` (and :class:`Shard` when ``shard``)."""
    g = p.add_argument_group("engine")
    add_dataclass_flags(g, EngineOptions)
    add_dataclass_flags(g, JobOptions, include=("store",))
    if shard:
        add_dataclass_flags(g, Shard)
    add_dataclass_flags(g, JobOptions, include=("time_budget",))


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """:class:`EngineOptions` of the flags (raises ValueError for bad values)."""
    return config_from_args(EngineOptions, args)


# --------------------------------------------------------------------------- submission
def add_submit_flags(p: argparse.ArgumentParser) -> None:
    """Group "submission (SLURM / local, through submitit)": the flags of
    :class:`robntk.jobs.submit.SubmitOptions` (``--executor``, ``--shards``, ``--max-retries``,
    ``--slurm-*``)."""
    add_dataclass_flags(p.add_argument_group("submission (SLURM / local, through submitit)"), SubmitOptions)


def submit_options(args: argparse.Namespace, shard: str | None = None) -> SubmitOptions:
    """:class:`robntk.jobs.submit.SubmitOptions` of the flags; with ``--executor``, checks that
    submitit can be imported (before any work).

    Args:
        shard: the command's ``--shard K/N`` if it has one (it excludes ``--executor``).

    Raises:
        ValueError: a value SubmitOptions rejects; ``--executor`` with ``--shard``; ``--executor``
            without submitit installed (says how to install it).
    """
    opts = config_from_args(SubmitOptions, args)
    if opts.executor is not None:
        if shard is not None:
            raise ValueError(
                f"--shard {shard} and --executor exclude each other: --executor {opts.executor} "
                f"--shards N runs every shard K/N itself"
            )
        try:
            import submitit  # noqa: F401
        except ModuleNotFoundError:
            raise ValueError(
                f"--executor {opts.executor} needs the optional dependency submitit: "
                "pip install 'robntk[slurm]' (or pip install 'submitit>=1.5')"
            ) from None
    return opts


# --------------------------------------------------------------------------- exports
#: Suffixes :meth:`robntk.jobs.store.ResultStore.export` writes.
EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")


def check_export_path(out: str | os.PathLike, what: str = "--out") -> Path:
    """A table path a result store can be exported to (:data:`EXPORT_SUFFIXES`, checked with
    :func:`robntk.core.tables.check_table_path` first), before any work.

    Raises:
        ValueError: another suffix. OSError: as :func:`robntk.core.tables.check_table_path`.
    """
    out = check_table_path(out, what)
    if out.suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"{what} must end in {' or '.join(EXPORT_SUFFIXES)} (a result-store export), got {str(out)!r}")
    return out


def _same_place(recorded: str, store: Path, out: Path) -> bool:
    """Whether the store path ``recorded`` in ``out``'s sidecar is ``store``: the same path
    resolved from here, or (a relative path recorded from another working directory) the same
    name next to ``out``."""
    rec = Path(recorded)
    if rec.resolve() == store.resolve():
        return True
    return not rec.is_absolute() and rec.name == store.name and (out.parent / rec.name).resolve() == store.resolve()


def check_export_target(
    out: Path, store: Path, what: str = "--out", job: str | None = None, store_flag: str = "--store"
) -> None:
    """Refuse (before any work) to overwrite an existing table ``out`` that is not an export of
    ``store``: its rows would be replaced by the store's without a word.

    ``out`` may be overwritten when it does not exist, or when its sidecar (``OUT.json``) says
    it came from this store: for a :class:`robntk.jobs.store.ResultStore` export, the sidecar's
    ``store_key`` and ``created`` equal the store header's (the very store, wherever it is
    reached from); for a table a command wrote from a store of sub-stores (``job`` given, e.g.
    ``'proxies'``), the sidecar's ``job`` is ``job`` and its ``store`` is ``store``.

    Args:
        out: the table. store: the store it is exported from. what: the table's flag.
        job: the sidecar's ``job`` of a table of sub-stores (None: a store export).
        store_flag: the flag that chooses the store (named in the message).

    Raises:
        ValueError: ``out`` holds another table (says how to proceed: another ``what``, or
            ``store_flag`` pointing at the store that made it); its sidecar is not valid JSON.
    """
    if not out.exists():
        return
    try:
        side = read_sidecar(out)
    except ValueError as exc:
        raise ValueError(
            f"{what} {out} already exists and its sidecar is unreadable ({exc}); refusing to overwrite "
            f"it: choose another {what}, or move {out} away"
        ) from None
    if not isinstance(side, dict):
        side = {"sidecar": side}
    owner = side.get("store")
    here = isinstance(owner, str) and _same_place(owner, store, out)
    header = None
    if job is None and (store / HEADER).is_file():
        try:
            header = read_header(store)
        except StoreError:
            return  # the store's own error comes when it is opened
    if job is not None and side.get("job") == job and here:
        return
    if (
        header is not None
        and isinstance(owner, str)
        and side.get("store_key") == header["store_key"]
        and side.get("created", header.get("created")) == header.get("created")
    ):
        return
    if not isinstance(owner, str):
        why = "it has no sidecar naming the store that wrote it" if not side else "its sidecar names no store"
    elif not here:
        why = f"it was written from the store {owner}"
    elif job is not None:
        why = (
            f"it was written by {side['job']!r}, not by {job!r}"
            if side.get("job")
            else f"it was not written by {job!r}"
        )
    elif header is None:
        why = f"the store {store} that wrote it no longer exists"
    else:
        why = f"it was written from an earlier store at {store} (store key {side.get('store_key')})"
    raise ValueError(
        f"{what} {out} already exists and is not an export of the store {store} ({why}); refusing to "
        f"overwrite its rows: choose another {what}, or pass {store_flag} pointing at the store that "
        "made it"
    )


# --------------------------------------------------------------------------- score tables
def is_suite_zero(spec: str) -> bool:
    """Whether a ``--scores`` spec names the NAS-Bench-Suite-Zero proxies (``'suite_zero[:dataset]'``)
    rather than a file."""
    return spec == "suite_zero" or spec.startswith("suite_zero:")


def load_scores(spec: str, bench, data_dir=None) -> pd.DataFrame:
    """The training-free scores of ``--scores`` (``search``, ``combine``), one row per
    isomorphism class.

    Args:
        spec: a CSV/TSV/parquet path with ``nb201_index`` (deduplicated by
            :func:`robntk.analysis.combine.score_table`), or ``'suite_zero[:dataset]'`` (the
            NAS-Bench-Suite-Zero NASLib proxies, :func:`robntk.data.suite_zero.load_suite_zero`,
            per class: smallest NB201 index).
        bench: the :class:`robntk.data.benchmark.RobBench` (isomorphism map).
        data_dir: data directory.

    Raises:
        FileNotFoundError: missing file. ValueError: unreadable table, bad dataset.
    """
    from robntk.analysis.combine import score_table
    from robntk.analysis.correlation import read_scores
    from robntk.data.suite_zero import load_suite_zero

    if is_suite_zero(spec):
        return load_suite_zero(spec.partition(":")[2] or "cifar10", data_dir, per_class="smallest")
    return score_table(read_scores(spec), bench)
