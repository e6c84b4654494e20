"""robntk's AZ-NAS, VKDNW, MeCo and SWAP vs the authors' algorithms (PyTorch, the test-side
reference of ``tests/test_proxies_modern.py``) on the full NB201 network, per arch, same weights
and batch, in one process.

    nice -n 19 python benchmarks/bench_proxies_modern.py [--archs 3] [--batch 64] [--out benchmarks/proxies_modern.json]

robntk: one ``jax.jit`` per proxy with the cell as data (compile time reported apart, from the
first call); per-arch time = the median over the archs of a call after compilation. Reference:
the PyTorch NB201 TinyNetwork (xautodl's module tree) built per arch with robntk's weights (build
time excluded), the authors' scoring code as ported in the tests. float32 on both sides, CPU,
default thread settings of each library. Also writes the max relative difference of the values
(float32: expect ~1e-5 … 1e-3; the float64 agreement is asserted by the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from robntk.nb201.cell import op_ids  # noqa: E402
from robntk.nb201.network import TinyNetwork  # noqa: E402
from robntk.proxies import az_nas as AZ  # noqa: E402
from robntk.proxies import meco_swap as MS  # noqa: E402
from robntk.proxies import vkdnw as VK  # noqa: E402

ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
)


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/proxies_modern.json")
    ap.add_argument("--skip", nargs="*", default=[], help="proxies to leave out")
    a = ap.parse_args(argv)
    import test_proxies_modern as T
    import torch

    net = TinyNetwork(C=16, N=5, num_classes=10, dataset=None, init_scheme="kaiming")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (a.batch, 32, 32, 3))
    y = jax.random.randint(jax.random.PRNGKey(2), (a.batch,), 0, 10)
    g = AZ.az_nas_cotangents(net, x.shape, jax.random.PRNGKey(5))
    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
    gt = [torch.tensor(np.asarray(c).transpose(0, 3, 1, 2).copy()) for c in g]
    # weights, batch and cotangents are jit arguments (closed over, XLA would constant-fold them)
    ours = {
        "az_nas": lambda c, v, x, y, g: AZ.az_nas_proxies(net, v, c, x, y, cotangents=g),
        "vkdnw": lambda c, v, x, y, g: VK.vkdnw(net, v, c, x, y),
        "meco": lambda c, v, x, y, g: MS.meco(net, v, c, x, y),
        "swap": lambda c, v, x, y, g: MS.swap(net, v, c, x, y),
    }
    theirs = {
        "az_nas": lambda m: T.ref_az_nas(m, xt, gt),
        "vkdnw": lambda m: T.ref_vkdnw(m, xt),
        "meco": lambda m: T.ref_meco(m, xt),
        "swap": lambda m: T.ref_swap(m, xt[: MS.SWAP_SAMPLES]),
    }
    archs = ARCHS[: a.archs]
    res = {}
    for name, fn in ours.items():
        if name in a.skip:
            continue
        f = jax.jit(fn)
        f = (lambda jf: lambda c: jf(c, v, x, y, g))(f)
        _, compile_s = _timed(lambda: jax.block_until_ready(f(jnp.asarray(op_ids(archs[0])))))
        rows = []
        for arch in archs:
            mine, t_ours = _timed(lambda: jax.block_until_ready(f(jnp.asarray(op_ids(arch)))))
            model = T.torch_net(net, v, arch).float()
            ref, t_ref = _timed(lambda: theirs[name](model))
            mine = {k: float(val) for k, val in mine.items()} if isinstance(mine, dict) else {name: float(mine)}
            ref = ref if isinstance(ref, dict) else {name: float(ref)}
            rel = max(abs(mine[k] - ref[k]) / max(abs(ref[k]), 1e-12) for k in ref if np.isfinite(ref[k]))
            rows.append(
                {
                    "arch": arch,
                    "robntk_s": t_ours,
                    "reference_s": t_ref,
                    "max_rel_diff": rel,
                    "robntk": mine,
                    "reference": ref,
                }
            )
            print(f"{name:7s} {t_ours:7.3f} s vs {t_ref:7.3f} s  rel {rel:.2e}  {arch}", flush=True)
        med_o = statistics.median(r["robntk_s"] for r in rows)
        med_r = statistics.median(r["reference_s"] for r in rows)
        res[name] = {
            "compile_s": compile_s,
            "robntk_median_s": med_o,
            "reference_median_s": med_r,
            "speedup": med_r / med_o,
            "max_rel_diff": max(r["max_rel_diff"] for r in rows),
            "archs": rows,
        }
    out = {
        "what": "robntk (JAX, cell as data, after compile) vs the authors' algorithms (PyTorch port), per arch",
        "network": f"NB201 TinyNetwork C=16 N=5, kaiming init, float32, N(0,1) inputs, batch {a.batch}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
        "results": res,
    }
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(
        json.dumps({k: {kk: round(vv, 4) for kk, vv in r.items() if kk != "archs"} for k, r in res.items()}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
