"""Pieces shared by several commands: architecture selection, the score configuration, and
output checks made before any work starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

from robntk.core.registry import DTYPES
from robntk.scoring.config import ScoreConfig
from robntk.nb201.searchspace import SearchSpace, sample_indices
from robntk.commands.flags import add_dataclass_flags, config_from_args


def add_selection_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--arch`` (repeatable), ``--archs-file``, ``--sample N``, ``--all``."""
    sel = p.add_argument_group("architectures (choose one)")
    sel.add_argument("--arch", action="append", help="NB201 index or arch string (repeatable)")
    sel.add_argument("--archs-file", help="file with one index or arch string per line (# comments)")
    sel.add_argument("--sample", type=int, help="random sample of N isomorphism-class representatives (--seed)")
    sel.add_argument("--all", action="store_true", help="all 6,466 isomorphism-class representatives")


def select_indices(args: argparse.Namespace, space: SearchSpace, seed: int) -> list[int]:
    """NB201 indices of the selection flags (:func:`add_selection_flags`), resolved by
    :meth:`robntk.nb201.searchspace.SearchSpace.resolve`.

    Raises:
        ValueError: none or several selectors, bad entries. FileNotFoundError: ``--archs-file``.
    """
    chosen = [bool(args.arch), bool(args.archs_file), args.sample is not None, bool(args.all)]
    if sum(chosen) != 1:
        raise ValueError("choose exactly one of --arch, --archs-file, --sample N, --all")
    if args.all:
        return list(space.representatives)
    if args.sample is not None:
        return sample_indices(space, args.sample, seed)
    items = list(args.arch or [])
    if args.archs_file:
        path = Path(args.archs_file)
        if not path.is_file():
            raise FileNotFoundError(f"--archs-file {path} not found")
        items = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if not items:
            raise ValueError(f"--archs-file {path} lists no architectures")
    return [space.resolve(a) for a in items]


def add_score_flags(p: argparse.ArgumentParser, defaults: ScoreConfig | None = None) -> None:
    """The flags of :class:`robntk.scoring.config.ScoreConfig` (one source of defaults)."""
    add_dataclass_flags(p.add_argument_group("score configuration"), ScoreConfig, defaults)


def score_config(args: argparse.Namespace, defaults: ScoreConfig | None = None) -> ScoreConfig:
    """The :class:`ScoreConfig` of the flags; ``--dtype float64`` turns on ``jax_enable_x64``
    for this process (before any array is made).

    Raises:
        ValueError: a value ScoreConfig rejects.
    """
    dtype = getattr(args, "dtype", defaults.dtype if defaults else "float32")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return config_from_args(ScoreConfig, args, defaults)
