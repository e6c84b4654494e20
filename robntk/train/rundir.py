"""A training run's directory, shared by ``robntk train`` (writes it) and ``robntk evaluate``
(reads it): the configuration, orbax checkpoints, the per-epoch metrics log and the summary.

Layout (``run_dir``)::

    config.json           the run's configuration (checked on resume: a different one is an error)
    checkpoints/<epoch>/  orbax checkpoints (``state`` pytree + JSON ``meta``; the last 2 kept);
                          step-count runs (:mod:`robntk.train.step`) label them by optimizer step
    metrics.jsonl         one JSON line per epoch (step-count runs: per logged step)
    training.png          loss / accuracy / lr curves (written at the end)
    summary.json          final summary (written at the end)

Every file is written atomically (:mod:`robntk.core.paths`; orbax renames a finished checkpoint into
place), so a killed run leaves the previous complete state. Errors name the file or directory:
a missing run directory or config is a :class:`FileNotFoundError`; a corrupt config, a
corrupt or incomplete checkpoint, or a configuration that differs from the stored one is a
:class:`ValueError`. This module knows nothing about what the configuration holds
(:mod:`robntk.train.loop` does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from robntk.core.paths import atomic_write
from robntk.core.tables import check_writable, write_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
#: Checkpoints kept (older ones are deleted by orbax).
MAX_TO_KEEP = 2


def check_run_dir(run_dir: str | os.PathLike, what: str = "--out") -> Path:
    """Raise PermissionError (naming it) unless ``run_dir`` and its checkpoint directory can be
    created or written — checked before any work starts."""
    run_dir = Path(run_dir)
    check_writable(run_dir, what)
    if (run_dir / CHECKPOINT_DIR).exists():
        check_writable(run_dir / CHECKPOINT_DIR, f"checkpoint directory of {what}")
    return run_dir


# --------------------------------------------------------------------------------------------
# configuration


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The stored configuration dict of a run.

    Raises:
        FileNotFoundError: no ``config.json`` (``run_dir`` is not a run directory).
        ValueError: ``config.json`` is not a JSON object (names the file).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a robntk training run directory")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt run configuration {path}: {exc}") from None
    if not isinstance(d, dict):
        raise ValueError(f"corrupt run configuration {path}: expected a JSON object, got {type(d).__name__}")
    return d


def check_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    """Raise ValueError if ``run_dir`` holds a run whose stored configuration differs from
    ``config`` (nothing is written; a directory without ``config.json`` passes).

    Raises:
        ValueError: the stored configuration differs (lists the differing keys, stored and
            requested values) or is corrupt (names the file).
    """
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return
    old = read_config(run_dir)
    diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
    if diff:
        raise ValueError(
            f"{run_dir} holds a run with a different configuration ({diff}; stored, requested); "
            "use a new --out directory or the same settings to resume"
        )


def init_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    """Write ``config`` to a new run directory, or check it against the stored one (resume).

    Raises:
        ValueError: as :func:`check_config`.
    """
    run_dir = Path(run_dir)
    check_config(run_dir, config)
    if (run_dir / CONFIG_FILE).is_file():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, run_dir / CONFIG_FILE)


def write_summary(run_dir: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically; returns its path."""
    return write_json(summary, Path(run_dir) / SUMMARY_FILE)


# --------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """``run_dir/checkpoints``."""
    return Path(run_dir) / CHECKPOINT_DIR


def _manager(run_dir: Path, create: bool = True):
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=MAX_TO_KEEP, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(checkpoint_dir(run_dir).absolute(), options=opts)


def latest_checkpoint_epoch(run_dir: str | os.PathLike) -> int | None:
    """Epoch of the newest finished checkpoint in ``run_dir`` (None if there is none)."""
    if not checkpoint_dir(run_dir).is_dir():
        return None
    mngr = _manager(Path(run_dir), create=False)
    try:
        return mngr.latest_step()
    finally:
        mngr.close()


def save_checkpoint(run_dir: str | os.PathLike, epoch: int, state: Any, meta: dict[str, Any]) -> None:
    """Save the ``state`` pytree and the JSON ``meta`` as checkpoint ``epoch`` (orbax; finished
    checkpoints are renamed into place, so a kill leaves the previous one)."""
    import orbax.checkpoint as ocp

    mngr = _manager(Path(run_dir))
    mngr.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
    mngr.close()


def restore_checkpoint(run_dir: str | os.PathLike, target: Any = None, epoch: int | None = None):
    """Restore ``(state, meta)`` from ``run_dir`` (latest epoch unless given).

    Args:
        run_dir: run directory. target: a state pytree with the right structure (restores the
            optimizer state's namedtuples; shapes must match); ``None`` restores plain nested
            dicts/lists.
        epoch: checkpoint to restore (default: latest).

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir``.
        ValueError: the checkpoint directory is incomplete or corrupt, or does not match
            ``target`` (names the directory).
    """
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir)
    ep = latest_checkpoint_epoch(run_dir) if epoch is None else epoch
    if ep is None:
        raise FileNotFoundError(f"no checkpoint found in {checkpoint_dir(run_dir)}")
    where = checkpoint_dir(run_dir) / str(ep)
    abstract = None if target is None else _abstract(target)
    mngr = _manager(run_dir, create=False)
    try:
        out = mngr.restore(
            ep, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
    except Exception as exc:  # orbax/tensorstore raise KeyError, FileNotFoundError, ValueError, ...
        raise ValueError(
            f"checkpoint {where} is incomplete or corrupt ({type(exc).__name__}: {str(exc)[:300]}); "
            f"delete {where} to resume from the previous checkpoint, or retrain"
        ) from None
    finally:
        mngr.close()
    if not isinstance(out.get("meta"), dict) or out.get("state") is None:
        raise ValueError(f"checkpoint {where} is incomplete: it lacks its state or its meta data")
    return out["state"], out["meta"]


def _abstract(target):
    import jax
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, target)


# --------------------------------------------------------------------------------------------
# the metrics log


def read_metrics(run_dir: str | os.PathLike, key: str = "epoch") -> list[dict]:
    """Records of ``metrics.jsonl`` (empty list if absent): one per epoch (``key='epoch'``, the
    benchmark's training) or per logged optimizer step (``key='step'``, step-count runs of
    :mod:`robntk.train.step`).

    Raises:
        ValueError: a line that is not a JSON object with ``key`` (names the file and line).
    """
    p = Path(run_dir) / METRICS_FILE
    if not p.is_file():
        return []
    out = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"corrupt metrics log {p}, line {i}: {exc}") from None
        if not isinstance(rec, dict) or key not in rec:
            raise ValueError(f"corrupt metrics log {p}, line {i}: expected a JSON object with an {key!r}")
        out.append(rec)
    return out


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one record as a JSON line (one write of a whole line, flushed and fsynced)."""
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(Path(run_dir) / METRICS_FILE, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def truncate_metrics(run_dir: str | os.PathLike, last_epoch: int, key: str = "epoch") -> None:
    """Keep the records whose ``key`` (epoch, or step) is ≤ ``last_epoch`` (a resume drops the
    log lines written after the last checkpoint; that work is then redone identically)."""
    recs = [r for r in read_metrics(run_dir, key) if r[key] <= last_epoch]
    with atomic_write(Path(run_dir) / METRICS_FILE) as fh:
        for r in recs:
            fh.write(json.dumps(r, sort_keys=True) + "\n")
