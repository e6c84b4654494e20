"""Step-by-step parity of robntk's PGD-AT training step with NAS-RobBench-201's PyTorch step.

Runs :func:`robntk.parity.train_parity.run_train_parity` (50 optimizer steps, batch 8, C=16, the
whole OneCycle cycle over the 50 steps) on NB201 arch 2581 and arch 930 (avg_pool_3x3, skip_connect
and none edges), in float64 and float32, with the reference's BN running variance in PyTorch's
convention (unbiased, as robntk's) and, once, in flax's (biased), and writes ``train_parity.json`` here.

    ROBNTK_DATA=../shared/data nice -n 19 python experiments/parity/train_parity.py [--quick]

``--quick`` runs only N=1 (the N=5 float64 run takes several minutes on 2 CPU cores). float32
runs also run the reference in float64 on the same draws, the exact trajectory both float32 runs
are measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

from robntk.data.datasets import load_split
from robntk.nb201.searchspace import SearchSpace
from robntk.parity.train_parity import run_train_parity

OUT = Path(__file__).resolve().parent / "train_parity.json"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--n5-only", action="store_true", help="only the N=5 float64 run, into train_parity_n5.json")
    args = ap.parse_args()
    out = OUT.with_name("train_parity_n5.json") if args.n5_only else OUT
    data_dir = os.environ.get("ROBNTK_DATA", "../shared/data")
    space = SearchSpace.load(data_dir)
    x, y = load_split("cifar10", "train", data_dir, 256, seed=0)
    runs = [  # (arch index, N, dtype, reference BN running variance biased: flax's convention, not PyTorch's)
        (2581, 1, "float64", False),
        (930, 1, "float64", False),
        (2581, 1, "float64", True),
        (2581, 1, "float32", False),
        (930, 1, "float32", False),
    ]
    if not args.quick:
        runs += [(2581, 5, "float64", False)]
    if args.n5_only:
        runs = [(2581, 5, "float64", False)]
    record = {
        "what": "max relative difference robntk vs reference after each optimizer step (see robntk.parity)",
        "metric": "per leaf ||a-b||_inf / max(||b||_inf, 1e-6 * max_leaf ||b||_inf), max over leaves",
        "float32_runs": "also compared with the reference run in float64 on the same draws (per_step_vs_float64)",
        "jax": jax.__version__,
        "torch": __import__("torch").__version__,
        "runs": [],
    }
    for idx, N, dtype, biased in runs:
        t = time.perf_counter()
        kw = dict(steps=args.steps, batch_size=8, C=16, N=N, dtype=dtype, biased_running_var=biased)
        if dtype == "float64":
            with jax.enable_x64(True):
                r = run_train_parity(space.arch_str(idx), x, y, **kw)
        else:
            r = run_train_parity(space.arch_str(idx), x, y, shadow_float64=True, **kw)
        r["config"]["arch_index"] = idx
        r["wall_s"] = time.perf_counter() - t
        record["runs"].append(r)
        print(idx, N, dtype, biased, {k: f"{v:.2e}" for k, v in r["max"].items()}, f"{r['wall_s']:.0f}s", flush=True)
        if "max_vs_float64" in r:
            for w, d in r["max_vs_float64"].items():
                print("   vs float64:", w, {k: f"{v:.2e}" for k, v in d.items()}, flush=True)
        tmp = out.with_suffix(".json.tmp")  # rewritten after every run: a kill keeps the finished ones
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
