"""Benchmark: neural-tangents' empirical NTK on the NB201 network of ``bench_ntk.py``.

Runs in the SEPARATE neural-tangents environment (``benchmarks/NT_ENV.md``: NT 0.6.5 on
jax/jaxlib 0.4.23), so it must not import robntk (which needs jax>=0.10). Its inputs come from
``benchmarks/export_nt_inputs.py`` (main environment): the dedicated TinyNetwork's weights of
arch 2581 (``TinyNetwork(16, 5).init(PRNGKey(0))`` → ``extract``), the fixed CIFAR-10 batch, and
robntk's reference kernels (:func:`robntk.ntk.layerwise.layerwise_ntk`, eval-mode BN, float32) and
robntk's kernels from THE SAME CALL, ``robntk.ntk.empirical_ntk_fn(g, **CALLS[mode], vmap_axes=0,
implementation=impl)(inputs, None, params)`` with the same ``g`` (:func:`make_call`, imported by the
export script) — robntk's entry point has neural-tangents' signature and semantics, so the two
kernels are compared as they are, without rescaling.

The network is re-implemented here in plain ``jax.lax`` as ``f(params, x)`` (NHWC, normalisation
inside, eval-mode BN with the exported running statistics closed over as constants; the same op
semantics as ``robntk/network.py``); its logits are checked against robntk's.

Timed: ``nt.empirical_ntk_fn(g, **CALLS[mode], vmap_axes=0, implementation=impl)`` for
impl ∈ {1 JACOBIAN_CONTRACTION, 2 NTK_VECTOR_PRODUCTS, 3 STRUCTURED_DERIVATIVES} and the modes
(:data:`CALLS`, :func:`make_call`)

* ``sum``: ``g = Σ_o f(params, x)[:, o]`` (B,), ``trace_axes=()``;
* ``label``: ``g = f(params, x)[:, y]`` (one-hot product; x is passed as the pytree (x, onehot),
  both batched on axis 0), ``trace_axes=()``;
* ``trace``: ``g = f``, ``trace_axes=(-1,)`` → (B, B), the MEAN over logits (NT and
  ``robntk.ntk.empirical_ntk_fn``); robntk's legacy ``output_mode='trace'`` reference is the SUM,
  so for ``max_rel_diff_vs_robntk`` alone NT's kernel is multiplied by O;
* ``full``: ``g = f``, ``trace_axes=()`` → (B, B, O, O);
* ``diag``: ``g = f``, ``trace_axes=(-1,)``, ``diagonal_axes=(0,)`` → (B,), the per-example NTK.

Two comparisons per record: ``max_rel_diff_vs_robntk_same_call`` against robntk's kernel of the
same call (npz key ``robntk/<mode>/<B>/<impl>``; for impl 3 robntk's structured path, the per-layer
NTK, runs on its own NetworkFn of the same weights, so only ``trace``/``full``/``diag``, where
``g = f``) and ``max_rel_diff_vs_robntk`` against the legacy layerwise reference (``ref/<mode>/<B>``).

Timing as in ``bench_ntk.py``: ``jax.jit(...).lower(...).compile()`` timed as ``compile_s``
(``lower_s`` / ``xla_compile_s`` split also recorded), one untimed warm-up call, then ``--reps``
timed calls with ``block_until_ready``; ``run_s`` is the median, ``min_s`` the minimum.

Each (mode, B, implementation) runs in its own subprocess under an address-space limit
(``--mem-limit-gb``), so an out-of-memory case becomes a recorded error instead of the kernel's
OOM killer taking the whole run (or a neighbour) down. A calibration line times one plain
forward + backward (``jax.grad`` of the summed logits w.r.t. the params) at ``--calib-batch``.

Usage (NT environment; heavy → under the CPU lock on the shared machine)::

    flock /tmp/cpu.lock /work/nt-env/bin/python benchmarks/bench_nt.py --inputs /tmp/nt_inputs.npz \\
        --out benchmarks/nt_results.jsonl

Prints one JSON line per measurement (also appended to ``--out``); the first is the env line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import types

import numpy as np

IMPLS = {1: "JACOBIAN_CONTRACTION", 2: "NTK_VECTOR_PRODUCTS", 3: "STRUCTURED_DERIVATIVES"}
#: The ``empirical_ntk_fn`` arguments of each mode (with ``vmap_axes=0``), shared by both libraries.
CALLS = {
    "sum": {"trace_axes": (), "diagonal_axes": ()},
    "label": {"trace_axes": (), "diagonal_axes": ()},
    "trace": {"trace_axes": (-1,), "diagonal_axes": ()},
    "full": {"trace_axes": (), "diagonal_axes": ()},
    "diag": {"trace_axes": (-1,), "diagonal_axes": (0,)},
}
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # robntk.nb201.searchspace.EDGES
BN_EPS = 1e-5


def import_nt():
    """Import neural_tangents without TensorFlow.

    ``neural_tangents/__init__.py`` does ``from . import experimental``, whose only content is the
    TF interop (``empirical_ntk_fn_tf``: imports ``jax.experimental.jax2tf``, ``tensorflow``,
    ``tf2jax``). TensorFlow is deliberately not installed, so an empty placeholder module is
    registered under that name in ``sys.modules`` (this process only) before the import. Nothing
    used here lives in ``neural_tangents.experimental``.
    """
    sys.modules.setdefault("neural_tangents.experimental", types.ModuleType("neural_tangents.experimental"))
    import neural_tangents as nt

    return nt


# --------------------------------------------------------------------------- network in jax.lax
def load_inputs(path):
    """(npz, params, stats) of the ``.npz`` written by ``export_nt_inputs.py``."""
    return load_inputs_from(np.load(path))


def load_inputs_from(d):
    """(d, params, stats): the nested ``param/...`` and ``stat/...`` trees of a mapping of arrays."""
    params, stats = {}, {}
    for k in d.keys():
        for prefix, tree in (("param/", params), ("stat/", stats)):
            if k.startswith(prefix):
                node = tree
                parts = k[len(prefix) :].split("/")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                node[parts[-1]] = d[k]
    return d, params, stats


def build_f(ops, C, N, mean, std, stats):
    """``f(params, x) -> logits`` of NB201 TinyNetwork (eval BN; ``stats`` closed over)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    stats = jax.tree_util.tree_map(jnp.asarray, stats)
    # float32 statistics divided in float32, as robntk.nb201.network.normalize does
    mean = jnp.asarray(mean, jnp.float32) / 255.0
    std = jnp.asarray(std, jnp.float32) / 255.0

    def conv(x, k, stride):
        p = (k.shape[0] - 1) // 2
        return lax.conv_general_dilated(
            x, k, (stride, stride), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def bn(x, p, s):
        mul = lax.rsqrt(s["var"] + BN_EPS) * p["scale"]
        return (x - s["mean"]) * mul + p["bias"]

    def rcb(x, p, s, stride):
        return bn(conv(jax.nn.relu(x), p["conv"]["kernel"], stride), p["bn"], s["bn"])

    def pool3(x):  # AvgPool2d(3, 1, 1, count_include_pad=False)
        pad = ((0, 0), (1, 1), (1, 1), (0, 0))
        tot = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
        cnt = lax.reduce_window(
            jnp.ones(x.shape[1:3], x.dtype)[None, :, :, None], 0.0, lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad
        )
        return tot / cnt

    def pool2(x):  # AvgPool2d(2, 2)
        return lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0

    def edge(op, x, p, s):
        if op == "none":
            return jnp.zeros_like(x)
        if op == "skip_connect":
            return x
        if op == "avg_pool_3x3":
            return pool3(x)
        return rcb(x, p, s, 1)

    def f(params, x):
        x = (x - mean) / std
        x = bn(conv(x, params["stem_conv"]["kernel"], 1), params["stem_bn"], stats["stem_bn"])
        k = 0
        for stage in range(3):
            if stage > 0:
                name = f"cells_{k}"
                P, S = params[name], stats[name]
                y = rcb(rcb(x, P["conv_a"], S["conv_a"], 2), P["conv_b"], S["conv_b"], 1)
                x = conv(pool2(x), P["downsample"]["kernel"], 1) + y
                k += 1
            for _ in range(N):
                name = f"cells_{k}"
                P, S = params.get(name, {}), stats.get(name, {})
                nodes = [x]
                for dst in (1, 2, 3):
                    acc = None
                    for e, (src, d) in enumerate(EDGES):
                        if d != dst:
                            continue
                        m = f"e{e}_{ops[e]}"
                        y = edge(ops[e], nodes[src], P.get(m), S.get(m))
                        acc = y if acc is None else acc + y
                    nodes.append(acc)
                x = nodes[3]
                k += 1
        x = jax.nn.relu(bn(x, params["lastact_bn"], stats["lastact_bn"]))
        x = jnp.mean(x, axis=(1, 2))
        return x @ params["classifier"]["kernel"] + params["classifier"]["bias"]

    return f


def make_call(mode, f, x, y, num_classes):
    """``(g, inputs, kwargs)`` of mode ``mode``: the function, the ``x1`` argument and the
    ``empirical_ntk_fn`` keyword arguments, identical for neural-tangents and robntk
    (``ntk_fn = empirical_ntk_fn(g, **kwargs, implementation=impl)``; ``ntk_fn(inputs, None, params)``).

    Args:
        mode: a key of :data:`CALLS`. f: ``f(params, x) -> (B, O)`` logits. x: (B, H, W, 3)
            images. y: int (B,) labels (used by ``label``). num_classes: O.

    Raises:
        ValueError: unknown mode.
    """
    import jax
    import jax.numpy as jnp

    if mode not in CALLS:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(CALLS)}")
    kwargs = dict(CALLS[mode], vmap_axes=0)
    if mode == "sum":
        return (lambda p, xx: jnp.sum(f(p, xx), axis=-1)), x, kwargs
    if mode == "label":
        onehot = jax.nn.one_hot(jnp.asarray(y), num_classes, dtype=x.dtype)
        return (lambda p, xy: jnp.sum(f(p, xy[0]) * xy[1], axis=-1)), (x, onehot), kwargs
    return f, x, kwargs


def same_call_key(mode, B, impl) -> str:
    """npz key of robntk's kernel of the same call (written by ``export_nt_inputs.py``)."""
    return f"robntk/{mode}/{B}/{impl}"


# --------------------------------------------------------------------------- timing
def timed_compile_and_run(fn, args, reps):
    import jax

    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(*args))  # warm-up, not timed
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        ts.append(time.perf_counter() - t)
    return np.asarray(out), {
        "run_s": statistics.median(ts),
        "min_s": min(ts),
        "compile_s": t2 - t0,
        "lower_s": t1 - t0,
        "xla_compile_s": t2 - t1,
        "runs": ts,
    }


def setup(inputs):
    """(npz, f, params) from the exported inputs."""
    import jax
    import jax.numpy as jnp

    d, params, stats = load_inputs(inputs)
    ops = [str(o) for o in d["ops"]]
    f = build_f(ops, int(d["C"]), int(d["N"]), d["norm_mean"], d["norm_std"], stats)
    return d, f, jax.tree_util.tree_map(jnp.asarray, params)


def run_case(a) -> dict:
    """One measurement (in a subprocess): NT kernel of mode a.mode, batch a.B, impl a.impl."""
    import jax
    import jax.numpy as jnp

    nt = import_nt()
    d, f, params = setup(a.inputs)
    B, mode = a.B, a.mode
    x = jnp.asarray(d["x"][:B])
    O = int(d["num_classes"])
    rec = {"mode": mode, "B": B, "contender": "neural-tangents", "dtype": "float32", "arch": int(d["arch"])}
    if mode == "calib":
        rec = {
            "check": "calibration: jax.grad of sum(logits) w.r.t. params (one forward+backward)",
            "B": B,
            "dtype": "float32",
            "arch": int(d["arch"]),
        }
        g = jax.grad(lambda p, xx: jnp.sum(f(p, xx)))
        _, t = timed_compile_and_run(g, (params, x), a.reps)
        rec.update(t)
        return rec
    rec.update(implementation=IMPLS[a.impl], implementation_id=a.impl)
    g, inp, kwargs = make_call(mode, f, x, d["y"][:B], O)
    rec["call"] = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    kfn = nt.empirical_ntk_fn(g, **kwargs, implementation=a.impl)
    K, t = timed_compile_and_run(lambda p, xx: kfn(xx, None, p), (params, inp), a.reps)
    rec.update(t)
    rec["shape"] = list(K.shape)
    K = np.asarray(K, np.float64)
    key = same_call_key(mode, B, a.impl)
    if key in d.files:  # robntk.ntk.empirical_ntk_fn, same call: compared as is
        rk = np.asarray(d[key], np.float64)
        rec["robntk_same_call"] = str(d[key + "/what"])
        if K.shape != rk.shape:
            rec["error"] = f"shape {K.shape} != robntk same-call shape {rk.shape}"
        else:
            rec["max_rel_diff_vs_robntk_same_call"] = float(np.max(np.abs(K - rk)) / np.max(np.abs(rk)))
        if key + "/time" in d.files:
            rec["robntk_compile_s"], rec["robntk_run_s"] = (float(v) for v in d[key + "/time"])
    if f"ref/{mode}/{B}" in d.files:  # legacy reference: robntk.ntk.layerwise.layerwise_ntk (trace = SUM)
        ref = np.asarray(d[f"ref/{mode}/{B}"], np.float64)
        if mode == "trace":
            K = K * O  # NT returns the mean over the traced logit axis; the legacy reference the sum
            rec["scaled_by_O_for_comparison"] = O
        if K.shape == ref.shape:
            rec["max_rel_diff_vs_robntk"] = float(np.max(np.abs(K - ref)) / np.max(np.abs(ref)))
        else:
            rec.setdefault("error", f"shape {K.shape} != reference {ref.shape}")
    return rec


def env_info() -> dict:
    import jax
    import jaxlib

    nt = import_nt()
    return {
        "contender": "neural-tangents",
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "bn_mode": "eval",
        "dtype": "float32",
        "nt_import": "neural_tangents.experimental (TF interop) replaced by an empty module in sys.modules; "
        "tensorflow/tf2jax not installed",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", default="/tmp/nt_inputs.npz", help=".npz from export_nt_inputs.py")
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--modes", nargs="+", default=["sum", "label", "trace", "full"], choices=list(CALLS))
    ap.add_argument("--full-batch", type=int, default=16)
    ap.add_argument("--impls", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calib-batch", type=int, default=32, help="0: no calibration line")
    ap.add_argument("--mem-limit-gb", type=float, default=16.0, help="address-space limit per case")
    ap.add_argument("--case-timeout", type=float, default=1800.0, help="seconds per case subprocess")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    # internal: run one case in this process and print its JSON record
    ap.add_argument("--case", nargs=3, metavar=("MODE", "B", "IMPL"), default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.case is not None:
        a.mode, a.B, a.impl = a.case[0], int(a.case[1]), int(a.case[2])
        print("RESULT " + json.dumps(run_case(a)), flush=True)
        return 0

    def emit(rec):
        print(json.dumps(rec), flush=True)
        if a.out:
            with open(a.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    import jax
    import jax.numpy as jnp

    d, f, params = setup(a.inputs)
    env = env_info()
    env.update(
        mem_limit_gb=a.mem_limit_gb,
        C=int(d["C"]),
        N=int(d["N"]),
        robntk_same_call=sorted(k for k in d.files if k.startswith("robntk/") and not k.endswith(("/time", "/what"))),
    )
    emit({"env": env})

    # logits check (in process, small)
    lj = np.asarray(jax.jit(f)(params, jnp.asarray(d["x"])))
    lr = np.asarray(d["logits"])
    emit(
        {
            "check": "logits jax.lax re-implementation (NT env) vs robntk",
            "arch": int(d["arch"]),
            "B": int(lr.shape[0]),
            "max_rel": float(np.max(np.abs(lj - lr)) / np.max(np.abs(lr))),
            "P": int(sum(v.size for v in jax.tree_util.tree_leaves(params))),
        }
    )

    limit = int(a.mem_limit_gb * 2**30)

    def child_limits():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def case(mode, B, impl):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--inputs",
            a.inputs,
            "--reps",
            str(a.reps),
            "--case",
            mode,
            str(B),
            str(impl),
        ]
        base = {"mode": mode, "B": B, "contender": "neural-tangents", "dtype": "float32", "arch": int(d["arch"])}
        if mode != "calib":
            base.update(implementation=IMPLS[impl], implementation_id=impl)
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.case_timeout, preexec_fn=child_limits)
        except subprocess.TimeoutExpired:
            emit({**base, "error": f"timeout after {a.case_timeout:.0f}s (case killed)"})
            return
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode == 0 and lines:
            rec = json.loads(lines[-1][len("RESULT ") :])
        else:
            err = p.stderr.strip().splitlines() or ["(no stderr)"]
            last = [ln for ln in err if "Error" in ln or "error" in ln] or err
            rec = {**base, "error": f"exit {p.returncode}: {last[-1][:300]}"}
        rec["wall_s"] = time.perf_counter() - t
        emit(rec)

    if a.calib_batch:
        case("calib", a.calib_batch, 0)
    for mode in a.modes:
        for B in [a.full_batch] if mode == "full" else a.batch:  # export_nt_inputs.py uses the same rule
            for impl in a.impls:
                case(mode, B, impl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
