"""Seconds per architecture of `robntk score` (dedicated network: one compile per arch, all
kernels: K, K̃ε, K̃2ε, K_all, K̃_all at ε ∈ {3/255, 8/255}, β = 0.5) for B = 32 and 64, compile vs
run time and peak memory (max RSS of a fresh process per B).

Usage: ROBNTK_DATA=../shared/data python benchmarks/score_dedicated_cpu.py [--archs 2581 1000 3]
Writes benchmarks/score_dedicated_cpu.json (config, machine, rows) atomically.
"""

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import jax
from robntk import scoring
from robntk.searchspace import SearchSpace
B, archs = int(sys.argv[1]), [int(a) for a in sys.argv[2:]]
cfg = scoring.ScoreConfig(batch_size=B)
space = SearchSpace.load()
x, y, _ = scoring.load_batch(cfg)
rows = []
for i in archs:
    r = scoring.score_arch(i, space.arch_str(i), x, y, cfg)
    rows.append({k: r[k] for k in ("nb201_index", "compile_s", "run_s", "spectra_s", "lambda_min_clean")})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"B": B, "rows": rows, "peak_rss_mib": rss, "config": cfg.as_dict()}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", default=["2581", "1000", "3"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64])
    args = ap.parse_args()
    results = []
    for B in args.batch_sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(B), *args.archs], check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(results[-1])
    import jax

    from robntk.paths import atomic_write
    meta = {"machine": platform.processor() or platform.machine(), "cpus": __import__("os").cpu_count(),
            "jax": jax.__version__, "results": results}
    with atomic_write(Path(__file__).with_suffix(".json")) as fh:
        json.dump(meta, fh, indent=2)


if __name__ == "__main__":
    main()
