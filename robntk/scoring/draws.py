"""Several draws of a score and their aggregate.

One draw of a robust score is fragile: another init seed (weights, batch, attack starts) or
another attack seed (PGD random starts only) moves λ_min by tens of percent. ``robntk score
--init-seeds S ... --attack-seeds A ...`` scores every (S, A) pair as its own engine run
(:func:`draw_configs`; store ``STORE/s{S}_a{A}``, table ``OUT`` with ``.s{S}_a{A}`` before its suffix,
:func:`draw_path`) and writes their aggregate (:func:`aggregate_draws`), which ranks more stably
than one draw. Cost: one compile and one full engine run per draw.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.scoring.config import ScoreConfig

#: Columns of positive spectral quantities, aggregated over draws by their geometric mean.
GEOMETRIC_PREFIXES: tuple[str, ...] = ("lambda_min_", "lambda_max_", "cond_", "trace_")
#: How :func:`aggregate_draws` aggregates (written into the aggregate table's sidecar).
AGGREGATE_NOTE = (
    "geometric mean over draws of lambda_min_*/lambda_max_*/cond_*/trace_* (NaN if a draw is <= 0), "
    "arithmetic mean of logdet_clean, degenerate if any draw is, run_s summed"
)


def draw_configs(
    cfg: ScoreConfig, init_seeds: Sequence[int] | None = None, attack_seeds: Sequence[int | None] | None = None
) -> list[tuple[str, ScoreConfig]]:
    """The draws of ``cfg``: one configuration per (init seed, attack seed) pair, in
    ``itertools.product`` order.

    Args:
        cfg: the base configuration (its ``seed`` is the init seed when ``init_seeds`` is None).
        init_seeds: init seeds (weights, batch and, by default, attack starts).
        attack_seeds: attack seeds (PGD random starts only); None: each draw's init seed.

    Returns:
        ``[(tag, config), ...]`` with tag ``'s{S}_a{A}'`` (A = the attack key seed, which is S
        for the default attack seed).

    Raises:
        ValueError: a seed ScoreConfig rejects (negative, not an integer).
    """
    out = []
    for s, a in itertools.product(init_seeds or [cfg.seed], attack_seeds or [None]):
        c = dataclasses.replace(cfg, seed=s, attack_seed=a)
        out.append((f"s{s}_a{c.attack_key_seed}", c))
    return out


def draw_path(out: str | Path, tag: str) -> Path:
    """The table of draw ``tag`` next to the aggregate ``out``: ``scores.csv`` → ``scores.s0_a1.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{tag}{out.suffix}")


def aggregate_draws(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Aggregate score tables of several draws (same archs) into one table.

    Args:
        tables: ``robntk score`` tables (``nb201_index`` column), one per draw.

    Returns:
        One row per arch (in the first table's order): ``nb201_index``, ``arch_str``,
        ``disconnected``; every ``lambda_min_*``, ``lambda_max_*``, ``cond_*``, ``trace_*``
        column (float64) as the geometric mean over draws (the mean of log values: these span
        orders of magnitude; a draw ≤ 0 or NaN makes it NaN), ``logdet_clean`` as the arithmetic
        mean, ``degenerate`` if any draw is, ``run_s`` summed (seconds), and ``n_draws``.

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
