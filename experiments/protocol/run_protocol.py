"""Protocol study (issue 10): vary one scoring factor at a time from the default, score a fixed
uniform random sample of NB201 representatives into one resumable store per factor level, then
correlate every score with NAS-RobBench-201 (``analyse.py``).

Sample: the first K of ``numpy.random.default_rng(0).permutation(SearchSpace.representatives)``
(any prefix is a uniform random sample, so levels are compared on their common prefix). The
base level is the main job's default protocol (``robntk reproduce``: B=16, ε = 8/255, PGD-5,
batch-statistics BN — the reference practice of TE-NAS / NASLib / zero-cost-nas) with the β grid
0, 0.1, …, 1 (β only mixes blocks of the same Gram: no extra NTK); every other level changes
one field. ``seed1``/``seed2`` change the init seed (weights, batch and attack starts);
``attack1``/``attack2`` only the attack seed (same weights and batch); ``float64`` recomputes
the same weights (drawn in float32, cast) and batch in float64, a rounding check (run it alone:
it needs ``jax_enable_x64``). The full ``ScoreConfig()`` (B=32, two radii, PGD-10) costs ≈ 5× more per arch in
train mode on a CPU (S·B² Jacobian work) and is left to a GPU. Nothing here is chosen by looking
at benchmark accuracies.

Usage (resumable: rerun the same command to continue; ``--minutes`` bounds this run)::

    python experiments/protocol/run_protocol.py --data-dir ../shared/data --minutes 60

Writes ``experiments/protocol/stores/<level>.store`` and ``scores_<level>.csv`` (+ sidecar).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.scoring.config import ScoreConfig  # noqa: E402
from robntk.scoring.engine import EngineOptions  # noqa: E402
from robntk.scoring.runner import run_engine  # noqa: E402

OUT = Path(__file__).resolve().parent
#: β ∈ {0, 0.1, …, 1} for the mixed-kernel claim (β only mixes blocks of the same Gram: no extra NTK).
BETAS = tuple(round(0.1 * k, 1) for k in range(11))
BASE = dataclasses.replace(ScoreConfig(), bn_mode="train", betas=BETAS)  # the reproduce protocol
#: level name → (overrides of BASE, sample size). One factor at a time; the BN-mode pair shares the
#: first 200; the base level extends to 1,000 as the large sample in the default protocol (issue 10,
#: item 6; the claims are tested on every base arch scored).
#: The trace read-out has B·O = 160 coupled cotangents per batch: chunked to bound memory.
LEVELS: dict[str, tuple[dict, int]] = {
    "base": ({}, 1000),
    "bn_eval": ({"bn_mode": "eval"}, 200),
    "batch32": ({"batch_size": 32}, 100),
    "batch64": ({"batch_size": 64, "chunk_size": 16}, 100),
    "readout_label": ({"output_mode": "label"}, 100),
    "readout_trace": ({"output_mode": "trace", "chunk_size": 16}, 100),
    "init_kaiming": ({"init_scheme": "kaiming"}, 100),
    "seed1": ({"seed": 1}, 100),
    "seed2": ({"seed": 2}, 100),
    "attack1": ({"attack_seed": 1}, 100),
    "attack2": ({"attack_seed": 2}, 100),
    "float64": ({"dtype": "float64"}, 50),
    "steps1": ({"pgd_steps": 1}, 100),
    "steps10": ({"pgd_steps": 10}, 100),
    "eps3": ({"eps": (3 / 255,)}, 100),
}


def level_config(name: str) -> ScoreConfig:
    """The :class:`ScoreConfig` of a level (raises KeyError for an unknown name)."""
    return dataclasses.replace(BASE, **LEVELS[name][0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--minutes", type=float, default=60.0, help="time budget of this run (all levels)")
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    ap.add_argument("--max-archs", type=int, default=None, help="cap every level's sample (a smaller first pass)")
    args = ap.parse_args(argv)
    if "float64" in args.levels:
        if set(args.levels) != {"float64"}:
            ap.error("run the float64 level alone (it needs jax_enable_x64 for the whole process)")
        import jax

        jax.config.update("jax_enable_x64", True)
    space = SearchSpace.load(args.data_dir)
    perm = [int(i) for i in np.random.default_rng(0).permutation(np.asarray(space.representatives))]
    deadline = time.time() + 60 * args.minutes
    for name in args.levels:
        n = LEVELS[name][1] if args.max_archs is None else min(args.max_archs, LEVELS[name][1])
        left = deadline - time.time()
        if left <= 0:
            break
        rep = run_engine(
            perm[:n],
            level_config(name),
            OUT / "stores" / f"{name}.store",
            data_dir=args.data_dir,
            space=space,
            keep_order=True,
            time_budget_s=left,
            out=OUT / f"scores_{name}.csv",
            options=EngineOptions(flush_seconds=30),
            extra_provenance={"study": "protocol", "level": name},
        )
        print(
            f"{name}: {rep.n_scored} scored, {rep.n_skipped} stored before, {rep.n_remaining} left; "
            f"compile {rep.compile_s:.0f} s, {rep.archs_per_s:.3f} archs/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
