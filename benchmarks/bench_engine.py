"""Benchmark: the engine (cell as data) on the default score configuration — compile once, then time
each architecture (all kernels: PGD at init for both radii, Jacobians, Gram, spectra).

Compares the engine's NTK providers (``layerwise`` per-layer gradients, ``jacobian`` = the
generic Jacobian contraction of :func:`robntk.ntk.kernels.stacked_gram`) on the archs the removed
dedicated per-arch timing used (``benchmarks/score_dedicated_cpu.json``: 2581, 1000, 3), and checks that
the rows agree.

Usage::

    python benchmarks/bench_engine.py --data-dir ../shared/data --archs 2581 1000 3 \\
        --implementations layerwise jacobian --out benchmarks/engine_results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.scoring.config import ScoreConfig, load_batch  # noqa: E402
from robntk.scoring.engine import Engine, EngineOptions  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--archs", type=int, nargs="+", default=[2581, 1000, 3])
    ap.add_argument("--implementations", nargs="+", default=["layerwise", "jacobian"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    space = SearchSpace.load(args.data_dir)
    cfg = ScoreConfig(batch_size=args.batch_size)
    x, y, digest = load_batch(cfg, args.data_dir)
    res = {"jax": jax.__version__, "python": platform.python_version(), "config": cfg.as_dict(), "runs": []}
    rows_by_impl = {}
    for impl in args.implementations:
        eng = Engine(cfg, EngineOptions(implementation=impl))
        eng.set_batch(x, y)
        t0 = time.perf_counter()
        eng._function(1)
        comp = time.perf_counter() - t0
        rows = []
        for i in args.archs:
            t = time.perf_counter()
            r = eng.score_block([i], [space.arch_str(i)])[0]
            r["wall_s"] = time.perf_counter() - t
            rows.append(r)
            print(
                json.dumps(
                    {
                        "impl": impl,
                        "index": i,
                        "wall_s": r["wall_s"],
                        "run_s": r["run_s"],
                        "lambda_min_clean": r["lambda_min_clean"],
                    }
                ),
                flush=True,
            )
        rows_by_impl[impl] = rows
        res["runs"].append(
            {
                "implementation": impl,
                "compile_s": comp,
                "traces": eng.trace_count,
                "rows": [
                    {
                        k: r[k]
                        for k in (
                            "nb201_index",
                            "wall_s",
                            "run_s",
                            "spectra_s",
                            "lambda_min_clean",
                            "lambda_min_robust_eps8",
                            "cond_clean",
                        )
                    }
                    for r in rows
                ],
            }
        )
    if len(rows_by_impl) > 1:
        a, b = list(rows_by_impl.values())[:2]
        rel = 0.0
        for ra, rb in zip(a, b):
            for k, v in rb.items():
                if k.startswith("lambda_min") and isinstance(v, float) and v > 0:
                    rel = max(rel, abs(ra[k] - v) / abs(v))
        res["max_rel_diff_lambda_min_between_implementations"] = rel
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
