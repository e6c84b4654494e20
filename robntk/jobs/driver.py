"""The one resumable per-architecture job driver.

Every long robntk job — NTK scores (:func:`robntk.scoring.runner.run_engine`), zero-cost proxies
(:func:`robntk.proxies.proxy_table`), the RobNets FSP study and the one-shot candidate evaluation
(:mod:`robntk.robnets`) — is the same loop, written once here::

    selection → shard → skip what the store holds → compute a block → flush on time and size
    → progress bar (rate, ETA) → export with its JSON sidecar

Rows go to a :class:`robntk.jobs.store.ResultStore` (append-only JSON-lines chunks, each written
to a temporary file and renamed), so a job killed at any point (``kill -9`` included) loses at
most the rows of one flush interval, and the rerun computes only what is missing: the same
command gives the same rows whether it ran once or was killed and resumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

#: Default seconds between flushes of buffered rows to the store.
FLUSH_SECONDS = 30.0
#: Default number of buffered rows that forces a flush.
FLUSH_ROWS = 1000


class Sink(Protocol):
    """Where a job's rows go: a :class:`~robntk.jobs.store.ResultStore` or anything with the
    same two methods (e.g. one store per proxy)."""

    def done(self) -> set[int]:
        """Keys that already have a complete row."""

    def append(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """Persist ``rows`` atomically."""


def config_key(config: Mapping[str, Any]) -> str:
    """16-hex-digit SHA-256 of a JSON-able configuration (sorted keys; non-JSON values by
    ``str``): the store key that decides whether a store may be resumed by a job."""
    return hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``'K/N'`` → (K, N) with 0 ≤ K < N (SLURM: ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``
    with ``--array=0-(N-1)``). None → None.

    Raises:
        ValueError: malformed spec or K outside 0..N-1.
    """
    if spec is None:
        return None
    try:
        k, n = (int(v) for v in str(spec).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N with integers 0 <= K < N (e.g. 3/8), got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard K/N needs 0 <= K < N, got {spec!r}")
    return k, n


def shard_indices(indices: Sequence[int], shard: tuple[int, int] | None) -> list[int]:
    """Deterministic partition: the sorted unique indices at positions p with p % N == K
    (round-robin, so every shard gets a similar mix of cheap and expensive cells). The N shards
    are disjoint and cover the list."""
    uniq = sorted(set(int(i) for i in indices))
    if shard is None:
        return uniq
    k, n = shard
    return uniq[k::n]


def check_time_budget(seconds: float | None, what: str = "time budget") -> float | None:
    """``seconds`` if None or a finite number >= 0 (0: start nothing, e.g. only export what is
    stored). Raises: ValueError naming ``what``."""
    if seconds is None:
        return None
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds >= 0, got {seconds!r}") from None
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")
    return s


@dataclass
class JobReport:
    """What :func:`run_job` did.

    Attributes:
        n_selected: keys in this (shard's) selection. n_skipped: already in the store.
        n_done: computed now. n_remaining: left for a rerun (time budget reached).
        run_s: wall seconds of the loop. keys: this shard's keys in computing order.
        out: the exported table, when the caller exports one.
    """

    n_selected: int
    n_skipped: int
    n_done: int
    n_remaining: int
    run_s: float
    keys: list[int] = field(default_factory=list)
    out: Path | None = None


def run_job(
    keys: Sequence[int],
    compute: Callable[[list[int]], list[dict]],
    sink: Sink | None,
    *,
    block: int | Callable[[], int] = 1,
    shard: tuple[int, int] | None = None,
    keep_order: bool = True,
    time_budget_s: float | None = None,
    flush_s: float = FLUSH_SECONDS,
    flush_rows: int = FLUSH_ROWS,
    desc: str = "job",
    unit: str = "arch",
    progress: bool = True,
    postfix: Callable[[], Mapping[str, Any]] | None = None,
) -> JobReport:
    """Run ``compute`` over the keys that ``sink`` does not hold yet, block by block.

    Args:
        keys: the whole job's keys (NB201 indices); duplicates count once.
        compute: block of keys → rows (dicts with the integer key ``nb201_index``); may return
            fewer rows than keys (e.g. keys it skips), never rows for other keys.
        sink: the store (None: nothing on disk; every key is computed).
        block: keys per ``compute`` call, or a function giving it before each call (e.g. the
            engine's archs per call, which can shrink after an out-of-memory retry).
        shard: (K, N) from :func:`parse_shard`: this process's part of the sorted keys.
        keep_order: compute in the order of ``keys`` (e.g. a random permutation, so that any
            prefix is a uniform sample) instead of ascending key.
        time_budget_s: start no new block after this many seconds (flush and return; rerun to
            continue).
        flush_s, flush_rows: flush the buffered rows after this many seconds or rows, and always
            at the end — also on an exception or ``KeyboardInterrupt``, so nothing computed is lost.
        desc, unit, progress: the tqdm bar (rate and ETA). postfix: extra bar fields.

    Returns:
        :class:`JobReport`.

    Raises:
        ValueError: a bad ``block``, ``time_budget_s`` or ``flush_s``; whatever ``compute`` or the
            sink raises (after flushing what was computed).
    """
    from tqdm.auto import tqdm

    time_budget_s = check_time_budget(time_budget_s)
    if not flush_s >= 0:
        raise ValueError(f"flush_s must be >= 0 seconds, got {flush_s!r}")
    ordered = list(dict.fromkeys(int(k) for k in keys))
    mine = shard_indices(ordered, shard)
    if keep_order:
        pos = {k: p for p, k in enumerate(ordered)}
        mine.sort(key=pos.__getitem__)
    done = sink.done() if sink is not None else set()
    todo = [k for k in mine if k not in done]
    buf: list[dict] = []
    t0 = last = time.perf_counter()
    n = 0
    bar = tqdm(total=len(todo), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True)
    try:
        while n < len(todo):
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                break
            size = block() if callable(block) else block
            if not (isinstance(size, int) and size >= 1):
                raise ValueError(f"block must be an integer >= 1, got {size!r}")
            blk = todo[n : n + size]
            rows = compute(blk)
            buf += rows
            n += len(blk)
            bar.update(len(blk))
            if postfix is not None:
                bar.set_postfix(postfix(), refresh=False)
            if sink is not None and (time.perf_counter() - last >= flush_s or len(buf) >= flush_rows):
                sink.append(buf)
                buf, last = [], time.perf_counter()
    finally:
        if sink is not None:
            sink.append(buf)
        bar.close()
    return JobReport(len(mine), len(mine) - len(todo), n, len(todo) - n, time.perf_counter() - t0, mine)
