"""``robntk train``: adversarially train one NB201 architecture as NAS-RobBench-201 did.

Flags are generated from :class:`robntk.train.config.TrainConfig` (one source of defaults; ε and
the attack step in [0, 1] pixel units, e.g. ``--eps 8/255``) and :class:`TrainOptions`. ``--out``
is the run directory (:mod:`robntk.train.rundir`); rerunning the same command resumes from its
last checkpoint. Outputs, the stored configuration and the data are checked before any training
starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_writable
from robntk.data.datasets import load_split
from robntk.nb201.cell import to_ops
from robntk.nb201.searchspace import SearchSpace, format_arch_str
from robntk.train import rundir
from robntk.train.loop import NonFiniteLossError, TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """The options of ``robntk train`` besides :class:`~robntk.train.config.TrainConfig`.

    Attributes:
        arch: NB201 index or arch string (resolved by :func:`resolve_arch`).
        out: the run directory (resumes if it holds a checkpoint).
        stop_after_epochs: stop once this many epochs are done (None: train to the end).
        no_progress: hide the progress bars.

    Raises:
        ValueError: ``--stop-after-epochs`` < 1.
    """

    arch: str = field(metadata=flag("NB201 index (e.g. 2581) or arch string"))
    out: str = field(metadata=flag("run directory (resumes if it holds a checkpoint)"))
    stop_after_epochs: int | None = field(
        default=None, metadata=flag("stop once this many epochs are done (resume later with the same command)")
    )
    no_progress: bool = field(default=False, metadata=flag("no progress bars"))

    def __post_init__(self):
        v = self.stop_after_epochs
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"--stop-after-epochs must be an integer >= 1, got {v}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk train``."""
    add_dataclass_flags(p, TrainOptions, include=("arch", "out"))
    add_dataclass_flags(p.add_argument_group("training configuration"), TrainConfig)
    add_dataclass_flags(p, TrainOptions, exclude=("arch", "out"))


def resolve_arch(arch: str, data_dir=None) -> tuple[str, int | None]:
    """``--arch`` → ``(arch string, NB201 index or None)`` through
    :meth:`robntk.nb201.searchspace.SearchSpace.resolve`; without the search-space file an arch
    string is still accepted (index None).

    Raises:
        ValueError: malformed arch or index out of range. FileNotFoundError: an index without
            the search-space file.
    """
    try:
        space = SearchSpace.load(data_dir)
    except FileNotFoundError:
        if str(arch).strip().lstrip("-").isdigit():
            raise
        return format_arch_str(to_ops(str(arch).strip())), None
    idx = space.resolve(arch)
    return space.arch_str(idx), idx


def run(args: argparse.Namespace) -> int:
    """Check the outputs, load the data, train/resume, print the summary. Returns 0, or 3 if
    the loss became non-finite."""
    opts = config_from_args(TrainOptions, args)
    arch, idx = resolve_arch(opts.arch, args.data_dir)
    cfg = config_from_args(TrainConfig, args, arch=arch, arch_index=idx)
    check_writable(opts.out, "--out", kind="dir")
    check_writable(rundir.checkpoint_dir(opts.out), "checkpoint directory of --out", kind="dir")
    out = rundir.check_run_dir(opts.out, "--out")
    rundir.check_config(out, cfg.to_dict())
    x, y = load_split(cfg.dataset, "train", args.data_dir, cfg.train_limit, seed=0)
    if cfg.train_limit is not None and cfg.train_limit > len(y):  # load_split takes them all: say so
        raise ValueError(
            f"--train-limit must be at most the {len(y)} training images of {cfg.dataset}, got {cfg.train_limit}"
        )
    try:
        summary = train(cfg, x, y, out, progress=not opts.no_progress, stop_after_epochs=opts.stop_after_epochs)
    except NonFiniteLossError as exc:
        print(f"robntk train: error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0
