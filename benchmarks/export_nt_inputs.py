"""Export the inputs of ``bench_nt.py`` (neural-tangents benchmark) from the MAIN environment.

``neural-tangents`` 0.6.5 does not import on the JAX robntk needs, so ``bench_nt.py`` runs in a
separate environment (see ``benchmarks/NT_ENV.md``) and cannot import robntk. This script builds
exactly the network / weights / batch of ``bench_ntk.py`` —
``TinyNetwork(C, N).init(PRNGKey(0))``, ``net.extract(v, ops)`` for ``--arch`` (default 2581),
``fixed_batch('cifar10', Bmax, seed=0)`` — and saves to one ``.npz``:

* ``param/<path>`` and ``stat/<path>``: the dedicated TinyNetwork's ``params`` and
  ``batch_stats`` leaves (flax layout, ``/``-joined paths, conv kernels HWIO);
* ``x`` (B, 32, 32, 3) float32 in [0, 1] (NHWC), ``y`` int32 (B,);
* ``ops`` (6 op names, EDGES order), ``arch``, ``C``, ``N``, ``num_classes``;
* ``norm_mean``, ``norm_std``: per-channel pixel statistics (units of 1/255,
  :data:`robntk.core.registry.DATASETS`);
* ``logits``: robntk's dedicated eval-mode forward on ``x``;
* ``ref/<mode>/<B>``: robntk's legacy reference kernels, :func:`robntk.ntk.layerwise.layerwise_ntk`
  (eval BN, float32, robntk output modes: ``trace`` is the SUM over logits) for modes
  sum/label/trace at ``--batch`` sizes and full at ``--full-batch``;
* ``robntk/<mode>/<B>/<impl>``: robntk's kernel of THE SAME CALL that ``bench_nt.py`` makes through
  neural-tangents — ``robntk.ntk.empirical_ntk_fn(g, **bench_nt.CALLS[mode], vmap_axes=0,
  implementation=impl)(inputs, None, params)`` with ``(g, inputs)`` from ``bench_nt.make_call`` on
  ``bench_nt.build_f`` (the same ``jax.lax`` network function NT differentiates) for impl 1 and 2;
  for impl 3 (robntk's structured path = the per-layer NTK, which needs a
  :class:`robntk.nb201.network.NetworkFn`) ``g`` is robntk's NetworkFn of the same weights, so
  only the modes where ``g = f`` (trace, full, diag). ``.../what`` describes the call,
  ``.../time`` holds [compile_s, run_s] (one timed call after the compile and a warm-up).

Usage (main environment; heavy → under the CPU lock on the shared machine)::

    flock /tmp/cpu.lock python benchmarks/export_nt_inputs.py --data-dir ../shared/data \\
        --out /tmp/nt_inputs.npz

The ``.npz`` is a build artefact: do not commit it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_nt  # noqa: E402  (the call specification shared with the neural-tangents side)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from robntk.core.registry import DATASETS  # noqa: E402
from robntk.nb201.cell import op_ids  # noqa: E402
from robntk.nb201.network import TinyNetwork  # noqa: E402
from robntk.ntk import empirical_ntk_fn  # noqa: E402
from robntk.ntk import layerwise as layer_ntk  # noqa: E402

LEGACY_MODES = ("sum", "label", "trace", "full")


def flatten(tree, prefix: str) -> dict[str, np.ndarray]:
    """Nested dict → {prefix/a/b/leaf: array}."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[prefix + "/" + "/".join(str(k.key) for k in path)] = np.asarray(leaf)
    return out


def timed(fn, *args):
    """(result, compile_s, run_s): jit compile, one warm-up, one timed call."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return np.asarray(out), t1 - t0, time.perf_counter() - t2


def same_call_kernels(args, net_f, lax_f, params, xb, yb, O) -> dict[str, np.ndarray]:
    """robntk's kernels of bench_nt's calls: ``robntk/<mode>/<B>/<impl>`` (+ ``/what``, ``/time``)."""
    data = {}
    for mode in args.modes:
        for B in [args.full_batch] if mode == "full" else args.batch:  # bench_nt.py's rule
            for impl in args.impls:
                structured = impl == 3
                if structured and mode in ("sum", "label"):
                    continue  # g wraps f: not a NetworkFn, no per-layer path
                g, inp, kw = bench_nt.make_call(mode, net_f if structured else lax_f, jnp.asarray(xb[:B]), yb[:B], O)
                ntk_fn = empirical_ntk_fn(g, **kw, implementation=impl)
                K, tc, tr = timed(lambda p, xx: ntk_fn(xx, None, p), params, inp)
                key = bench_nt.same_call_key(mode, B, impl)
                data[key] = K
                data[key + "/time"] = np.array([tc, tr])
                data[key + "/what"] = np.array(
                    f"robntk.ntk.empirical_ntk_fn(g, trace_axes={kw['trace_axes']}, diagonal_axes="
                    f"{kw['diagonal_axes']}, vmap_axes=0, implementation={impl}) on "
                    + ("robntk's NetworkFn (per-layer NTK)" if structured else "bench_nt.build_f (jax.lax network)")
                )
                print(
                    f"robntk same call {mode} B={B} impl={impl} shape={K.shape} compile {tc:.1f}s run {tr:.2f}s",
                    flush=True,
                )
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--arch", type=int, default=2581)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--modes", nargs="+", default=["sum", "label", "trace", "full"], choices=list(bench_nt.CALLS))
    ap.add_argument("--full-batch", type=int, default=16)
    ap.add_argument(
        "--impls",
        type=int,
        nargs="*",
        default=[1, 2, 3],
        choices=(1, 2, 3),
        help="implementations of the robntk same-call kernels (none: legacy references only)",
    )
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--out", default="/tmp/nt_inputs.npz")
    args = ap.parse_args(argv)

    from robntk.data.datasets import fixed_batch
    from robntk.nb201.searchspace import SearchSpace

    space = SearchSpace.load(args.data_dir)
    ops = space.ops(args.arch)
    net = TinyNetwork(C=args.C, N=args.N)
    v = net.init(jax.random.PRNGKey(0), jnp.float32)
    ded = net.extract(v, ops)
    f, p = net.make_apply(ded, ops, "eval")
    ids = jnp.asarray(op_ids(ops))

    bmax = max(args.batch + [args.full_batch])
    xb, yb = fixed_batch("cifar10", bmax, seed=0, data_dir=args.data_dir)
    info = DATASETS["cifar10"]
    data = {
        "x": np.asarray(xb, np.float32),
        "y": np.asarray(yb, np.int32),
        "ops": np.array(ops),
        "arch": np.int64(args.arch),
        "arch_str": np.array(space.arch_str(args.arch)),
        "C": np.int64(args.C),
        "N": np.int64(args.N),
        "num_classes": np.int64(net.num_classes),
        "norm_mean": np.array(info.mean, np.float64),
        "norm_std": np.array(info.std, np.float64),
        "logits": np.asarray(jax.jit(f)(p, jnp.asarray(xb))),
        "jax_main": np.array(jax.__version__),
    }
    data.update(flatten(ded["params"], "param"))
    data.update(flatten(ded["batch_stats"], "stat"))

    ntk_fn = jax.jit(
        lambda P_, S_, ii, xx, yy, mode: layer_ntk.layerwise_ntk(net, P_, S_, ii, xx, yy, mode, False), static_argnums=5
    )
    for mode in (m for m in args.modes if m in LEGACY_MODES):
        for B in [args.full_batch] if mode == "full" else args.batch:
            t = time.perf_counter()
            K = ntk_fn(v["params"], v["batch_stats"], ids, jnp.asarray(xb[:B]), jnp.asarray(yb[:B]), mode)
            data[f"ref/{mode}/{B}"] = np.asarray(jax.block_until_ready(K))
            print(
                f"ref {mode} B={B} shape={data[f'ref/{mode}/{B}'].shape} ({time.perf_counter() - t:.1f}s)", flush=True
            )

    # the same call through robntk, on the network function bench_nt.py builds from these arrays
    _, params_np, stats_np = bench_nt.load_inputs_from(data)
    lax_f = bench_nt.build_f(list(ops), args.C, args.N, info.mean, info.std, stats_np)
    params = jax.tree_util.tree_map(jnp.asarray, params_np)
    data.update(same_call_kernels(args, f, lax_f, params, xb, yb, net.num_classes))

    np.savez(args.out, **data)
    print(
        f"wrote {args.out}: {len(data)} arrays, P={sum(a.size for k, a in data.items() if k.startswith('param/'))}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
