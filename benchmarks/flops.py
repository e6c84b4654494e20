"""FLOP floor of NB201 scoring: analytic forward FLOPs per arch, checked against XLA's cost
analysis, the per-arch cost of the default score configuration, and projections.

Conventions: a multiply-add is 2 FLOPs; elementwise ops (ReLU, BN, adds, pooling) count 1 per
output element and op (as XLA's cost analysis does); images 32×32, C=16, N=5, 10 classes.

Per-arch cost of the default :class:`robntk.scoring.config.ScoreConfig` with the ``fast`` engine
implementation (B=32, E=2 radii, 10 PGD steps, ``sum`` read-out), F = forward FLOPs per image,
P = parameters:

* PGD: 2 attacks per radius × E × steps × B × (forward + input-gradient backward ≈ 2F);
* NTK: one forward + backward + per-example weight gradients on the stacked batch of
  n = (1+2E)·B images ≈ 3F·n, plus the Gram contraction 2·n²·P.

so ≈ 2·2·E·steps·B·F + 3·n·F + 2·n²·P = 3,040·F + 51,200·P for the default.

Usage::

    python benchmarks/flops.py --data-dir ../shared/data [--xla-check] [--peak] [--sample-scores FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robntk.nb201.network import TinyNetwork  # noqa: E402
from robntk.nb201.searchspace import EDGES, SearchSpace  # noqa: E402

H200_FP32_PEAK = 67e12  # FLOP/s, FP32 non-tensor-core (H100/H200 SXM datasheet); HIGHEST precision


def forward_flops(ops, C=16, N=5, num_classes=10, H=32) -> float:
    """Analytic forward FLOPs of TinyNetwork(ops) for one image."""
    f = 0.0
    hw = H * H
    f += 2 * 27 * C * hw + 4 * C * hw + 6 * 3 * hw  # stem conv + BN (+ input normalisation)
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            cin = c // 2
            hw //= 4
            f += cin * hw * 4 + 2 * 9 * cin * c * hw + 5 * c * hw  # relu (on input), conv_a, BN
            f += c * hw + 2 * 9 * c * c * hw + 4 * c * hw  # relu, conv_b, BN
            f += cin * hw * 4 + 2 * cin * c * hw + c * hw  # avg-pool 2x2, 1x1 shortcut, add
        cell = 0.0
        for dst in (1, 2, 3):
            n_in = 0
            for e, (_s, d) in enumerate(EDGES):
                if d != dst:
                    continue
                n_in += 1
                op = ops[e]
                if op == "nor_conv_3x3":
                    cell += c * hw + 2 * 9 * c * c * hw + 4 * c * hw
                elif op == "nor_conv_1x1":
                    cell += c * hw + 2 * c * c * hw + 4 * c * hw
                elif op == "avg_pool_3x3":
                    cell += 10 * c * hw
            cell += (n_in - 1) * c * hw
        f += N * cell
    f += 4 * 4 * C * hw + 4 * C * hw + 2 * 4 * C * num_classes + num_classes  # lastact BN, relu, GAP, linear
    return f


def all_ops_flops(C=16, N=5, num_classes=10) -> float:
    """Forward FLOPs of the supernet under vmap (switch → select: every op on every edge)."""
    conv3 = forward_flops(("nor_conv_3x3",) * 6, C, N, num_classes)
    conv1 = forward_flops(("nor_conv_1x1",) * 6, C, N, num_classes)
    pool = forward_flops(("avg_pool_3x3",) * 6, C, N, num_classes)
    base = forward_flops(("none",) * 6, C, N, num_classes)
    return conv3 + (conv1 - base) + (pool - base)


def arch_cost(F: float, P: float, B=32, E=2, steps=10) -> float:
    """FLOPs of scoring one arch with the default configuration (module docstring)."""
    n = (1 + 2 * E) * B
    return 2 * 2 * E * steps * B * F + 3 * n * F + 2 * n * n * P


def matmul_peak(n=2048, reps=5) -> float:
    """Measured float32 matmul FLOP/s of this machine through XLA (a practical peak)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / min(ts)


def xla_check(space, indices, B=8):
    """Analytic vs XLA cost-analysis forward FLOPs for a few archs."""
    import jax
    import jax.numpy as jnp

    from robntk.nb201.network import TinyNetwork

    net = TinyNetwork()
    out = []
    for i in indices:
        ops = space.ops(i)
        v = net.init(jax.random.PRNGKey(0), arch=ops)
        f, p = net.make_apply(v, ops, "eval")
        c = jax.jit(f).lower(p, jnp.zeros((B, 32, 32, 3))).compile()
        xf = c.cost_analysis()["flops"] / B
        out.append({"index": i, "analytic": forward_flops(ops), "xla": xf, "ratio": forward_flops(ops) / xf})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--xla-check", action="store_true")
    ap.add_argument("--peak", action="store_true", help="measure the float32 matmul FLOP/s of this machine")
    ap.add_argument("--sample-scores", default=None, help="scores CSV of a run (for achieved FLOP/s)")
    ap.add_argument("--sample-seconds-per-arch", type=float, default=None)
    args = ap.parse_args(argv)

    space = SearchSpace.load(args.data_dir)
    num_params_closed_form = TinyNetwork.for_dataset("cifar10").num_params  # reference PyTorch count
    reps = space.representatives
    F = np.array([forward_flops(space.ops(i)) for i in reps])
    P = np.array([num_params_closed_form(space.ops(i)) for i in reps], float)
    cost = arch_cost(F, P)
    Fall = all_ops_flops()
    P_super = float(num_params_closed_form(("nor_conv_3x3",) * 6) + 15 * 6 * 0) + sum(
        5 * 6 * (c * c + 2 * c) for c in (16, 32, 64)
    )
    res = {
        "forward_gflop_per_image": {
            "mean": F.mean() / 1e9,
            "min": F.min() / 1e9,
            "max": F.max() / 1e9,
            "arch_2581": forward_flops(space.ops(2581)) / 1e9,
            "all_ops_supernet": Fall / 1e9,
        },
        "params": {"mean": P.mean(), "max": P.max(), "supernet": P_super},
        "score_tflop_per_arch": {
            "mean": cost.mean() / 1e12,
            "max": cost.max() / 1e12,
            "arch_2581": arch_cost(forward_flops(space.ops(2581)), num_params_closed_form(space.ops(2581))) / 1e12,
            "vmap_all_ops": arch_cost(Fall, P_super) / 1e12,
        },
        "all_6466": {"pflop_map": cost.sum() / 1e15, "pflop_vmap": 6466 * arch_cost(Fall, P_super) / 1e15},
    }
    res["h200_projection_s"] = {
        f"{mode}@{int(eff * 100)}%": (res["all_6466"][f"pflop_{mode}"] * 1e15) / (eff * H200_FP32_PEAK)
        for mode in ("map", "vmap")
        for eff in (1.0, 0.5, 0.25)
    }
    if args.xla_check:
        res["xla_check"] = xla_check(space, [2581, 0, 100, 5000])
    if args.peak:
        res["cpu_matmul_peak_gflops"] = matmul_peak() / 1e9
    if args.sample_scores:
        import pandas as pd

        df = pd.read_csv(args.sample_scores)
        Fs = np.array([forward_flops(space.ops(int(i))) for i in df["nb201_index"]])
        Ps = np.array([num_params_closed_form(space.ops(int(i))) for i in df["nb201_index"]], float)
        cs = arch_cost(Fs, Ps)
        res["sample"] = {
            "n": len(df),
            "mean_tflop_per_arch": cs.mean() / 1e12,
            "mean_run_s": float(df["run_s"].mean()) if "run_s" in df else None,
        }
        if "run_s" in df:
            res["sample"]["achieved_gflops_from_run_s"] = float(cs.sum() / df["run_s"].sum() / 1e9)
        if args.sample_seconds_per_arch:
            res["sample"]["achieved_gflops_wall"] = cs.mean() / args.sample_seconds_per_arch / 1e9
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
