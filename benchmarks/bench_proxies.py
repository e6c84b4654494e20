"""Benchmark: zero-cost proxies of a shared pass (``robntk.proxies.GROUPS``) computed together vs
one by one, on the ``robntk proxies`` defaults (CIFAR-10 batch of 64, seed 0, C=16, N=5, the
cell as data: one compile per unit), in one process on the same archs.

For each arch and each group the grouped call (one forward/backward for all members) is timed
against the members' one-by-one calls (what ``proxy_table`` did before groups: one jitted
function per proxy); the values must agree. Compile is timed apart; each timing is the minimum
of ``--repeats`` calls after a warm-up.

Usage::

    python benchmarks/bench_proxies.py --data-dir ../shared/data --n-archs 8 \\
        --out benchmarks/proxies_results.json
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from robntk import proxies as P  # noqa: E402
from robntk.commands._common import select_indices  # noqa: E402
from robntk.commands.proxies import DEFAULT_BATCH  # noqa: E402
from robntk.nb201.cell import op_ids  # noqa: E402
from robntk.nb201.network import TinyNetwork  # noqa: E402
from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.scoring.config import ScoreConfig, load_batch  # noqa: E402


def _time(f, repeats):
    jax.block_until_ready(f())
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f())
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n-archs", type=int, default=8, help="the first N of experiments/proxies/sample_archs.txt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    space = SearchSpace.load(args.data_dir)
    sel = argparse.Namespace(
        arch=None, archs_file=ROOT / "experiments/proxies/sample_archs.txt", sample=None, all=False
    )
    archs = select_indices(sel, space, 0)[: args.n_archs]
    cfg = ScoreConfig(batch_size=DEFAULT_BATCH)
    x, y, digest = load_batch(cfg, args.data_dir)
    net = TinyNetwork.for_dataset(cfg.dataset, cfg.C, cfg.N)
    v = net.init(jax.random.PRNGKey(cfg.seed))
    key = jax.random.PRNGKey(cfg.seed + 1)
    res = {
        "jax": jax.__version__,
        "python": platform.python_version(),
        "batch_sha256_16": digest,
        "archs": archs,
        "repeats": args.repeats,
        "groups": [],
    }
    for group, members in P.GROUPS.items():
        fg = jax.jit(lambda c, fn=group: fn(net, v, c, x, y, key))
        fs = {n: jax.jit(lambda c, fn=P.PROXIES[n]: fn(net, v, c, x, y, key)) for n in members}
        c0 = jnp.asarray(op_ids(space.ops(archs[0])))
        t = time.perf_counter()
        jax.block_until_ready(fg(c0))
        comp_g = time.perf_counter() - t
        t = time.perf_counter()
        jax.block_until_ready([f(c0) for f in fs.values()])
        comp_s = time.perf_counter() - t
        rows = []
        for i in archs:
            c = jnp.asarray(op_ids(space.ops(i)))
            tg = _time(lambda: fg(c), args.repeats)
            ts = _time(lambda: [f(c) for f in fs.values()], args.repeats)
            g, s = fg(c), {n: f(c) for n, f in fs.items()}
            rel = max(abs(float(g[n]) - float(s[n])) / max(abs(float(s[n])), 1e-30) for n in members)
            rows.append({"index": i, "grouped_s": tg, "separate_s": ts, "max_rel_diff": rel})
            print(json.dumps({"group": group.__name__, **rows[-1]}), flush=True)
        tg, ts = np.array([r["grouped_s"] for r in rows]), np.array([r["separate_s"] for r in rows])
        res["groups"].append(
            {
                "group": group.__name__,
                "members": list(members),
                "compile_grouped_s": comp_g,
                "compile_separate_s": comp_s,
                "rows": rows,
                "grouped_over_separate_median": float(np.median(tg / ts)),
                "grouped_s_median": float(np.median(tg)),
                "separate_s_median": float(np.median(ts)),
                "max_rel_diff": max(r["max_rel_diff"] for r in rows),
            }
        )
        print(json.dumps({k: w for k, w in res["groups"][-1].items() if k != "rows"}), flush=True)
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
