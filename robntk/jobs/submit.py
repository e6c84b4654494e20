"""Run one job's shards as a SLURM job array (or as local processes) through submitit, resubmit the
shards that did not finish, and merge their stores.

A command that runs over many architectures through :func:`robntk.jobs.driver.run_job` can be
split into N shards (``--shard K/N``: :func:`robntk.jobs.driver.shard_indices`, round-robin over
the sorted keys). :func:`run_sharded` does the rest of a cluster run from one process::

    shards with missing keys → one job array (submitit) → wait → shards still incomplete
    (killed, failed, timed out, pre-empted) are resubmitted, up to --max-retries times, and
    resume from their stores → merge_stores(shard stores) into the command's store

after which the command exports ``--out`` from the merged store exactly as a one-process run
does (nothing is left to compute). Shard K of N keeps its rows in its own store,
``STORE.shards/shard-K-of-N`` (:func:`shard_store`), so no two tasks write one store, and
rerunning the same command after an interruption submits only the shards that are still
incomplete.

The per-shard work is passed in as a picklable callable ``work(k, n, store)`` (the commands build
it: :class:`robntk.commands.score.ScoreShardWork`, :class:`robntk.commands.proxies.ProxiesShardWork`);
it must compute shard ``k`` of ``n`` of the keys — :func:`robntk.jobs.driver.shard_indices` —
into the store directory ``store``. This module imports nothing above :mod:`robntk.jobs`.

submitit (https://github.com/facebookincubator/submitit, MIT) is an optional dependency
(``pip install 'robntk[slurm]'``); it is imported when a job is submitted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robntk.core.config import flag
from robntk.jobs.driver import shard_indices
from robntk.jobs.store import HEADER, MergeReport, ResultStore, merge_stores, read_header

#: Values of ``--executor``: a SLURM job array, or processes on this machine (submitit's
#: ``LocalExecutor``: the same submission, pickling and result path, for tests and single hosts).
EXECUTORS: tuple[str, ...] = ("slurm", "local")
#: Seconds between polls of the jobs' states (submitit caches SLURM's ``sacct`` itself).
POLL_SECONDS: dict[str, float] = {"slurm": 15.0, "local": 0.5}
#: Suffix of the directory that holds the shard stores, next to the command's store.
SHARDS_SUFFIX = ".shards"


def _check_int(v: Any, name: str, lo: int) -> None:
    """Raise ValueError unless ``v`` is an integer ≥ ``lo`` (``name`` is the flag)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class SubmitOptions:
    """How a command's selection is split into tasks and submitted (the flags of ``--executor``).

    Attributes:
        executor: ``'slurm'`` (one job array), ``'local'`` (processes on this machine), or None
            (one process, no submission).
        shards: number of shards N = array tasks (required with ``executor``).
        max_retries: resubmissions of a shard whose store is still incomplete after its task
            ended (killed, failed, timed out, or stopped by the command's time budget); each
            resubmission resumes from the shard's store.
        slurm_partition, slurm_account: ``sbatch --partition / --account`` (None: the
            cluster's default).
        slurm_time: wall time of one task in minutes (``sbatch --time``; the local executor's
            limit per task too).
        slurm_cpus: ``--cpus-per-task``. slurm_mem_gb: ``--mem`` in GB (None: the cluster's
            default). slurm_gpus: ``--gpus-per-node`` (0: none requested; the local executor
            gives each task the first ``slurm_gpus`` GPUs and hides the others).
        slurm_array_parallelism: tasks running at once (``--array=0-(N-1)%P``; local: processes
            at once). None: all.
        slurm_log_dir: submitit's folder (sbatch scripts, pickles, one ``.out``/``.err`` log per
            task). None: ``STORE.shards/logs``.
        slurm_setup: shell lines run before each task (e.g. ``module load cuda``, activating
            the environment).

    Raises:
        ValueError: an unknown executor, ``--executor`` without ``--shards`` or ``--shards``
            without ``--executor``, a count or size out of range (names the flag).
    """

    executor: str | None = field(
        default=None,
        metadata=flag(
            "run the selection as --shards N tasks through submitit — 'slurm': one job array, 'local': processes on "
            "this machine — then resubmit incomplete shards, merge the shard stores and export --out",
            choices=EXECUTORS,
        ),
    )
    shards: int | None = field(default=None, metadata=flag("number of shards (tasks) of --executor", metavar="N"))
    max_retries: int = field(
        default=2,
        metadata=flag(
            "resubmissions of a shard whose store is still incomplete (killed, failed, timed out); each resumes"
        ),
    )
    slurm_partition: str | None = field(default=None, metadata=flag("SLURM partition (default: the cluster's)"))
    slurm_account: str | None = field(default=None, metadata=flag("SLURM account (default: the cluster's)"))
    slurm_time: int = field(
        default=240, metadata=flag("wall time of one task in minutes (also the local executor's limit)", metavar="MIN")
    )
    slurm_cpus: int = field(default=8, metadata=flag("CPUs per task"))
    slurm_mem_gb: float | None = field(default=32.0, metadata=flag("memory per task in GB", metavar="GB"))
    slurm_gpus: int = field(default=0, metadata=flag("GPUs per task (local executor: the first G GPUs)"))
    slurm_array_parallelism: int | None = field(
        default=None, metadata=flag("tasks running at once (default: all)", metavar="P")
    )
    slurm_log_dir: str | None = field(
        default=None,
        metadata=flag("submitit folder: sbatch scripts, pickles, one log per task (default: STORE.shards/logs)"),
    )
    slurm_setup: tuple[str, ...] = field(
        default=(),
        metadata=flag("shell line run before each task, e.g. 'module load cuda' (repeatable)", action="append"),
    )

    def __post_init__(self):
        object.__setattr__(self, "slurm_setup", tuple(str(s) for s in (self.slurm_setup or ())))
        if self.executor is not None and self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor is None and self.shards is not None:
            raise ValueError("--shards N needs --executor slurm or --executor local")
        if self.executor is not None:
            if self.shards is None:
                raise ValueError(f"--executor {self.executor} needs --shards N (the number of tasks)")
            _check_int(self.shards, "--shards", 1)
        _check_int(self.max_retries, "--max-retries", 0)
        _check_int(self.slurm_time, "--slurm-time", 1)
        _check_int(self.slurm_cpus, "--slurm-cpus", 1)
        _check_int(self.slurm_gpus, "--slurm-gpus", 0)
        if self.slurm_array_parallelism is not None:
            _check_int(self.slurm_array_parallelism, "--slurm-array-parallelism", 1)
        if self.slurm_mem_gb is not None and not (
            isinstance(self.slurm_mem_gb, (int, float))
            and not isinstance(self.slurm_mem_gb, bool)
            and 0 < self.slurm_mem_gb < float("inf")
        ):
            raise ValueError(f"--slurm-mem-gb must be a positive number of GB, got {self.slurm_mem_gb!r}")

    def executor_parameters(self, name: str = "robntk") -> dict[str, Any]:
        """The parameters of ``submitit.AutoExecutor.update_parameters`` (generic names and
        ``slurm_`` / ``local_`` prefixed ones; submitit ignores the other executor's)."""
        p: dict[str, Any] = {
            "name": name,
            "timeout_min": self.slurm_time,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.slurm_cpus,
        }
        if self.slurm_mem_gb is not None:
            p["mem_gb"] = float(self.slurm_mem_gb)
        if self.slurm_gpus:
            p["gpus_per_node"] = self.slurm_gpus
        if self.slurm_partition:
            p["slurm_partition"] = self.slurm_partition
        if self.slurm_account:
            p["slurm_account"] = self.slurm_account
        if self.slurm_array_parallelism is not None:
            p["slurm_array_parallelism"] = self.slurm_array_parallelism
        if self.slurm_setup:
            p["slurm_setup"] = list(self.slurm_setup)
            p["local_setup"] = list(self.slurm_setup)
        return p


class ShardsFailedError(ChildProcessError):
    """Shards still incomplete after ``1 + max_retries`` attempts (the message names them, their
    last outcome and their logs). What they computed is merged; rerunning resumes."""


def shards_dir(store: str | os.PathLike) -> Path:
    """``STORE.shards``: the directory of the shard stores (and by default of submitit's logs)."""
    store = Path(store)
    return store.with_name(store.name + SHARDS_SUFFIX)


def shard_store(root: str | os.PathLike, k: int, n: int) -> Path:
    """The store of shard ``k`` of ``n`` under ``root`` (:func:`shards_dir`): ``root/shard-K-of-N``."""
    return Path(root) / f"shard-{k}-of-{n}"


def stored_keys(store: str | os.PathLike, substores: Sequence[str] = ("",)) -> set[int]:
    """Keys held by every sub-store ``store/<sub>`` (``''``: ``store`` itself); a sub-store that
    does not exist yet holds none.

    Raises:
        robntk.jobs.store.StoreError: a corrupt store or conflicting rows.
    """
    held: set[int] | None = None
    for sub in substores:
        path = Path(store) / sub if sub else Path(store)
        keys = set(ResultStore(path, read_header(path)).read().rows) if (path / HEADER).is_file() else set()
        held = keys if held is None else held & keys
    return held or set()


@dataclass
class ShardedReport:
    """What :func:`run_sharded` did.

    Attributes:
        n_shards: N. shards_dir: where the shard stores are.
        attempts: shard → tasks submitted for it by this call (0: it was complete already).
        jobs: shard → submitit job ids of those tasks, in order.
        outcomes: shard → outcome of its last task ('ok', or the error / state that ended it).
        merged: one :class:`robntk.jobs.store.MergeReport` per sub-store merged.
        failed: shards still incomplete (empty when the run succeeded).
    """

    n_shards: int
    shards_dir: Path
    attempts: dict[int, int] = field(default_factory=dict)
    jobs: dict[int, list[str]] = field(default_factory=dict)
    outcomes: dict[int, str] = field(default_factory=dict)
    merged: list[MergeReport] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def make_executor(options: SubmitOptions, folder: str | os.PathLike, name: str = "robntk"):
    """A ``submitit.AutoExecutor`` for ``options.executor`` with :meth:`SubmitOptions.executor_parameters`.

    Raises:
        ModuleNotFoundError: submitit is not installed (says how to install it).
        RuntimeError: ``'slurm'`` where submitit finds no ``srun``.
    """
    try:
        import submitit
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "--executor needs the optional dependency submitit: "
            "pip install 'robntk[slurm]' (or pip install 'submitit>=1.5')"
        ) from None
    ex = submitit.AutoExecutor(folder=str(folder), cluster=options.executor)
    ex.update_parameters(**options.executor_parameters(name))
    return ex


def _outcome(job) -> str:
    """'ok', or one line on how a finished submitit job ended (its exception's last line, or its
    state when it left no result, e.g. killed)."""
    if not job.paths.result_pickle.exists():
        return f"no result (state {job.state}): killed or stopped outside Python; log {job.paths.stderr}"
    try:
        job.result()
    except Exception as exc:  # the task's exception, re-raised by submitit
        text = str(exc)
        parts = text.split("-" * 22)  # submitit's FailedJobError: header, the task's traceback, log paths
        lines = [ln for ln in (parts[1] if len(parts) >= 3 else text).strip().splitlines() if ln.strip()]
        return f"failed: {lines[-1] if lines else type(exc).__name__}; log {job.paths.stderr}"
    return "ok"


class _Terminated(KeyboardInterrupt):
    """SIGTERM reached the waiting process (e.g. the driver's own SLURM job hit its limit);
    handled like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_raises():
    """While waiting, SIGTERM raises :class:`_Terminated` (so the jobs are cancelled, not
    orphaned); only in the main thread, the previous handler restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated("SIGTERM")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _run_round(
    ex,
    executor: str,
    work: Callable,
    todo: list[int],
    n: int,
    root: Path,
    parallelism: int | None,
    poll_s: float,
    log: Callable[[str], Any],
) -> dict[int, Any]:
    """Submit the shards ``todo`` (SLURM: one job array; local: at most ``parallelism``
    processes at once) and wait for all of them. Returns shard → its finished job. A
    ``KeyboardInterrupt``, SIGTERM or error while waiting cancels the jobs not yet finished, so
    that a rerun never has two tasks writing one shard store."""
    queue = list(todo)
    running: dict[int, Any] = {}
    finished: dict[int, Any] = {}

    def submit(ks: list[int]) -> None:
        if executor == "slurm":
            with ex.batch():
                jobs = [ex.submit(work, k, n, str(shard_store(root, k, n))) for k in ks]
        else:
            jobs = [ex.submit(work, k, n, str(shard_store(root, k, n))) for k in ks]
        for k, j in zip(ks, jobs):
            running[k] = j
        log(
            f"submitted shard(s) {', '.join(f'{k}/{n}' for k in ks)} as job(s) {', '.join(str(j.job_id) for j in jobs)}"
        )

    try:
        if executor == "slurm":  # the scheduler applies --array=...%P
            submit(queue)
            queue = []
        while queue or running:
            window = parallelism or len(queue) + len(running)
            if queue and len(running) < window:
                take, queue = queue[: window - len(running)], queue[window - len(running) :]
                submit(take)
            for k, j in list(running.items()):
                if j.done():
                    finished[k] = running.pop(k)
            if running:
                time.sleep(poll_s)
    except BaseException:
        for j in running.values():
            try:
                j.cancel(check=False)
            except Exception:  # the job may have ended meanwhile
                pass
        log(
            f"interrupted: cancelled job(s) {', '.join(str(j.job_id) for j in running.values()) or 'none'}; "
            "rerunning the same command resumes"
        )
        raise
    return finished


def run_sharded(
    keys: Sequence[int],
    work: Callable[[int, int, str], Any],
    store: str | os.PathLike,
    options: SubmitOptions,
    *,
    substores: Sequence[str] = ("",),
    name: str = "robntk",
    log: Callable[[str], Any] = print,
    poll_s: float | None = None,
    executor=None,
) -> ShardedReport:
    """Compute ``keys`` as ``options.shards`` tasks through submitit, resubmitting incomplete
    shards, and merge the shard stores into ``store``.

    Args:
        keys: the whole job's keys (NB201 indices; duplicates count once). Shard K of N owns
            ``shard_indices(keys, (K, N))``; a shard that owns none is not submitted.
        work: picklable ``work(k, n, store_dir)`` that computes shard k of n of ``keys`` into the
            store ``store_dir`` (creating or resuming it). Its return value is only logged.
        store: the command's store; the shard stores live in :func:`shards_dir` ``(store)``.
        options: :class:`SubmitOptions` (``executor`` and ``shards`` set).
        substores: the stores of one shard, relative to its directory (``''``: the directory is
            the store; e.g. one per proxy). A shard is complete when each holds all its keys;
            each is merged into ``store/<sub>``.
        name: job name. log: progress messages. poll_s: seconds between polls (default
            :data:`POLL_SECONDS`). executor: a ready submitit executor (default
            :func:`make_executor`; tests).

    Returns:
        :class:`ShardedReport` (``failed`` empty).

    Raises:
        ValueError: ``options`` without an executor. ShardsFailedError: shards still incomplete
            after ``1 + max_retries`` tasks each (their rows are merged first; rerun to resume).
        robntk.jobs.store.StoreMismatchError / StoreConflictError: shard stores of another
            configuration, or rows that differ, in the merge. ModuleNotFoundError: no submitit.
        KeyboardInterrupt: Ctrl-C or SIGTERM while waiting, after cancelling the unfinished jobs
            (rerunning the same call resumes).
    """
    if options.executor is None or options.shards is None:
        raise ValueError("run_sharded needs SubmitOptions with executor and shards set")
    n = options.shards
    root = Path(os.path.abspath(shards_dir(store)))  # tasks may start in another directory
    owned = {k: set(shard_indices(keys, (k, n))) for k in range(n)}
    rep = ShardedReport(n, root, attempts={k: 0 for k in range(n)}, jobs={k: [] for k in range(n)})

    def missing(k: int) -> set[int]:
        return owned[k] - stored_keys(shard_store(root, k, n), substores)

    todo = [k for k in range(n) if owned[k] and missing(k)]
    done_already = [k for k in range(n) if owned[k] and k not in todo]
    if done_already:
        log(f"shard(s) {', '.join(map(str, done_already))} of {n} already complete in {root}")
    if todo:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(options.slurm_log_dir) if options.slurm_log_dir else root / "logs"
        ex = executor if executor is not None else make_executor(options, folder, name)
        poll = POLL_SECONDS[options.executor] if poll_s is None else poll_s
    while todo:
        with _sigterm_raises():
            finished = _run_round(ex, options.executor, work, todo, n, root, options.slurm_array_parallelism, poll, log)
        again = []
        for k in todo:
            job = finished[k]
            rep.attempts[k] += 1
            rep.jobs[k].append(str(job.job_id))
            rep.outcomes[k] = _outcome(job)
            left = missing(k)
            if not left:
                continue
            what = (
                f"shard {k}/{n}: {len(left)} of {len(owned[k])} keys missing after attempt {rep.attempts[k]} "
                f"(job {job.job_id}: {rep.outcomes[k]})"
            )
            if rep.attempts[k] <= options.max_retries:
                log(what + "; resubmitting (resumes from its store)")
                again.append(k)
            else:
                log(what + "; no retries left")
                rep.failed.append(k)
        todo = again
    for sub in substores:
        sources = [
            shard_store(root, k, n) / sub for k in range(n) if (shard_store(root, k, n) / sub / HEADER).is_file()
        ]
        if sources:
            rep.merged.append(merge_stores(sources, Path(store) / sub if sub else Path(store)))
    if rep.failed:
        raise ShardsFailedError(
            f"shard(s) {', '.join(map(str, rep.failed))} of {n} still incomplete after {1 + options.max_retries} "
            f"task(s) each — "
            + "; ".join(f"shard {k}: {rep.outcomes[k]}" for k in rep.failed)
            + f". Their rows so far are merged into {store}; rerun the same command to resume them "
            f"(shard stores in {root})"
        )
    log(f"{n} shard(s) complete; merged {len(rep.merged)} store(s) into {store}")
    return rep
