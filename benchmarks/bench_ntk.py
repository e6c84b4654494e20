"""Benchmark: empirical NTK of one full NB201 network, robntk vs peers, same net / batch / run.

Contenders (all on the same TinyNetwork weights and the same CIFAR-10 batch, float32, BN mode
``--bn-mode``: ``train`` = batch statistics, rows coupled — robntk's default protocol — or
``eval`` = running statistics, independent rows):

* ``robntk-layerwise``: :func:`robntk.ntk.layerwise.layerwise_ntk` on the cell as data (what the
  engine runs; compiled once for all archs — compile time reported separately).
* ``robntk-layerwise-fixed``: the same function with the cell fixed at trace time (only the
  cell's layers are traced, no ``lax.switch``; one compile per cell — what a user scoring one
  arch gets).
* ``robntk-jacobian``: :func:`robntk.ntk.empirical.empirical_ntk` (generic Jacobian contraction) of the
  fixed-cell network function.
* ``jax.jacrev``: a plain :func:`jax.jacrev` of the batch read-out (train mode: of the whole
  batch function; eval mode: ``vmap`` of per-example ``jacrev``) + contraction — the recipe a
  JAX user would write.
* ``torch.func``: the PyTorch "Neural Tangent Kernels" tutorial recipe on the same network
  re-implemented in PyTorch below with the weights copied over (logits and kernels checked).
  Eval mode: ``vmap(jacrev)`` of ``functional_call`` per example; train mode: ``jacrev`` of the
  train-mode batch function (BatchNorm2d in ``train()`` with ``track_running_stats=False``, as
  NASLib's NB201 cells), then an ``einsum`` contraction.

Output modes: ``sum`` (Σ logits), ``label`` (true-class logit), ``trace`` (Σ over logits),
``full`` (B·O × B·O).

Usage::

    python benchmarks/bench_ntk.py --data-dir ../shared/data --arch 2581 --batch 32 --bn-mode train \
        --modes sum --out benchmarks/ntk_results.jsonl

Timing: every contender is compiled (compile time recorded separately) and warmed up first, then
timed in ``--reps`` interleaved rounds (each round calls every contender once, the starting
contender rotated round by round), so slow phases of a shared or throttled VM hit all contenders
alike. Each record has min and median seconds and, for every contender after the first, the
ratio first / this one as the median over rounds and as the ratio of the minima.

Prints one JSON line per measurement (also appended to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from robntk.nb201.cell import op_ids  # noqa: E402
from robntk.nb201.network import TinyNetwork  # noqa: E402
from robntk.ntk import empirical as ntk  # noqa: E402
from robntk.ntk import layerwise as layer_ntk  # noqa: E402


# --------------------------------------------------------------------------- PyTorch TinyNetwork
def build_torch_net(arch_ops, C, N, num_classes, mean, std, train=False):
    """NB201 TinyNetwork in PyTorch (reference layout, NCHW), normalisation inside; ``train``:
    BatchNorm2d in train mode without running statistics (NASLib's NB201 cells), else eval."""
    import torch
    from torch import nn

    class ReLUConvBN(nn.Module):
        def __init__(self, cin, cout, k, stride):
            super().__init__()
            self.op = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False),
                nn.BatchNorm2d(cout, affine=True, track_running_stats=not train),
            )

        def forward(self, x):
            return self.op(x)

    class Pool(nn.Module):
        def forward(self, x):
            return nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    class Zero(nn.Module):
        def forward(self, x):
            return x.mul(0.0)

    class Identity(nn.Module):
        def forward(self, x):
            return x

    EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))

    class Cell(nn.Module):
        def __init__(self, c):
            super().__init__()
            mods = []
            for op in arch_ops:
                mods.append(
                    {"none": Zero, "skip_connect": Identity, "avg_pool_3x3": Pool}[op]()
                    if op not in ("nor_conv_3x3", "nor_conv_1x1")
                    else ReLUConvBN(c, c, 3 if op == "nor_conv_3x3" else 1, 1)
                )
            self.edges = nn.ModuleList(mods)

        def forward(self, x):
            nodes = [x]
            for dst in (1, 2, 3):
                acc = None
                for e, (s, d) in enumerate(EDGES):
                    if d == dst:
                        y = self.edges[e](nodes[s])
                        acc = y if acc is None else acc + y
                nodes.append(acc)
            return nodes[3]

    class Reduce(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv_a = ReLUConvBN(cin, cout, 3, 2)
            self.conv_b = ReLUConvBN(cout, cout, 3, 1)
            self.down = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, 1, 0, bias=False))

        def forward(self, x):
            return self.down(x) + self.conv_b(self.conv_a(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            # float32 pixel statistics divided in float32, as robntk.nb201.network.normalize does for
            # float32 inputs (cast to float64 with .double() for the float64 check)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / 255.0)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) / 255.0)
            self.stem = nn.Sequential(
                nn.Conv2d(3, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C, track_running_stats=not train)
            )
            cells = []
            for stage, w in enumerate((C, 2 * C, 4 * C)):
                if stage > 0:
                    cells.append(Reduce(w // 2, w))
                cells += [Cell(w) for _ in range(N)]
            self.cells = nn.ModuleList(cells)
            self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C, track_running_stats=not train), nn.ReLU(inplace=False))
            self.classifier = nn.Linear(4 * C, num_classes)

        def forward(self, x):
            x = (x - self.mean) / self.std
            x = self.stem(x)
            for c in self.cells:
                x = c(x)
            x = self.lastact(x)
            return self.classifier(x.mean(dim=(2, 3)))

    return Net().train() if train else Net().eval()


def copy_weights(tnet, variables, arch_ops, N):
    """Copy flax variables (dedicated TinyNetwork) into the PyTorch net (HWIO → OIHW)."""
    import torch

    P, S = variables["params"], variables["batch_stats"]
    t = lambda a: torch.tensor(np.array(a))  # keeps the dtype (float32 or float64)
    conv_w = lambda k: t(np.transpose(np.asarray(k), (3, 2, 0, 1)))

    def set_bn(bn, p, s):
        bn.weight.data, bn.bias.data = t(p["scale"]), t(p["bias"])
        if bn.track_running_stats:
            bn.running_mean.data, bn.running_var.data = t(s["mean"]), t(s["var"])

    def set_rcb(m, p, s):
        m.op[1].weight.data = conv_w(p["conv"]["kernel"])
        set_bn(m.op[2], p["bn"], s["bn"])

    tnet.stem[0].weight.data = conv_w(P["stem_conv"]["kernel"])
    set_bn(tnet.stem[1], P["stem_bn"], S["stem_bn"])
    for k, cell in enumerate(tnet.cells):
        name = f"cells_{k}"
        if hasattr(cell, "conv_a"):
            set_rcb(cell.conv_a, P[name]["conv_a"], S[name]["conv_a"])
            set_rcb(cell.conv_b, P[name]["conv_b"], S[name]["conv_b"])
            cell.down[1].weight.data = conv_w(P[name]["downsample"]["kernel"])
        else:
            for e, op in enumerate(arch_ops):
                if op in ("nor_conv_3x3", "nor_conv_1x1"):
                    m = f"e{e}_{op}"
                    set_rcb(cell.edges[e], P[name][m], S[name][m])
    set_bn(tnet.lastact[0], P["lastact_bn"], S["lastact_bn"])
    tnet.classifier.weight.data = t(np.asarray(P["classifier"]["kernel"]).T)
    tnet.classifier.bias.data = t(P["classifier"]["bias"])


def torch_ntk(tnet, x_nhwc, y, mode):
    """The torch.func tutorial recipe (Jacobian contraction), per output mode; a network in
    ``train()`` mode is differentiated as a batch function (rows coupled)."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    params = {k: v.detach() for k, v in tnet.named_parameters()}
    dtype = next(tnet.parameters()).dtype
    x = torch.tensor(np.transpose(x_nhwc, (0, 3, 1, 2)).copy()).to(dtype)
    yt = torch.tensor(np.asarray(y), dtype=torch.long)
    if tnet.training:

        def g(p):
            out = functional_call(tnet, p, (x,))
            if mode == "sum":
                return out.sum(-1)
            if mode == "label":
                return out.gather(1, yt[:, None])[:, 0]
            return out

        jac = [j.flatten(2 if mode in ("trace", "full") else 1) for j in jacrev(g)(params).values()]
        if mode in ("sum", "label"):
            return sum(torch.einsum("Nf,Mf->NM", j, j) for j in jac)
        if mode == "trace":
            return sum(torch.einsum("Naf,Maf->NM", j, j) for j in jac)
        return sum(torch.einsum("Naf,Mbf->NMab", j, j) for j in jac)

    if mode in ("sum", "label"):

        def f(p, xi, yi):
            out = functional_call(tnet, p, (xi.unsqueeze(0),))[0]
            if mode == "sum":
                return out.sum()
            return (out * (torch.arange(out.shape[-1]) == yi).to(out.dtype)).sum()  # out[y], vmap-safe

        jac = vmap(jacrev(f), (None, 0, 0))(params, x, yt)
        jac = [j.flatten(1) for j in jac.values()]
        return sum(torch.einsum("Nf,Mf->NM", j, j) for j in jac)

    def f(p, xi):
        return functional_call(tnet, p, (xi.unsqueeze(0),))[0]

    jac = vmap(jacrev(f), (None, 0))(params, x)
    jac = [j.flatten(2) for j in jac.values()]
    if mode == "trace":
        return sum(torch.einsum("Naf,Maf->NM", j, j) for j in jac)
    return sum(torch.einsum("Naf,Mbf->NMab", j, j) for j in jac)


def plain_jacrev_ntk(f, params, x, y, mode, coupled):
    """What a JAX user writes: ``jax.jacrev`` of the read-out (the batch function when
    ``coupled``, else ``vmap`` of per-example ``jacrev``), then a contraction."""

    def readout(out):
        if mode == "sum":
            return out.sum(-1)
        if mode == "label":
            return jnp.take_along_axis(out, y[:, None], 1)[:, 0]
        return out

    def readout_one(o, yi):
        return o.sum() if mode == "sum" else (o[yi] if mode == "label" else o)

    if coupled:
        jac = jax.jacrev(lambda p: readout(f(p, x)))(params)
    else:
        jac = jax.vmap(lambda xi, yi: jax.jacrev(lambda p: readout_one(f(p, xi[None])[0], yi))(params))(x, y)

    lead = 1 if mode in ("sum", "label") else 2
    leaves = [j.reshape(j.shape[:lead] + (-1,)) for j in jax.tree_util.tree_leaves(jac)]
    hi = jax.lax.Precision.HIGHEST
    if mode in ("sum", "label"):
        return sum(jnp.einsum("nf,mf->nm", j, j, precision=hi) for j in leaves)
    if mode == "trace":
        return sum(jnp.einsum("naf,maf->nm", j, j, precision=hi) for j in leaves)
    return sum(jnp.einsum("naf,mbf->nmab", j, j, precision=hi) for j in leaves)


#: Contenders this script times (neural-tangents runs in its own venv: ``bench_nt.py``).
CONTENDERS = ("robntk-layerwise", "robntk-layerwise-fixed", "robntk-jacobian", "jax.jacrev", "torch.func")


# --------------------------------------------------------------------------- timing helpers
def jax_call(fn, args):
    """Compile ``fn`` for ``args``; returns (a call returning the blocked result, compile seconds)."""
    t = time.perf_counter()
    c = jax.jit(fn).lower(*args).compile()
    return (lambda: jax.block_until_ready(c(*args))), time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--arch", type=int, default=2581)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--modes", nargs="+", default=["sum", "label", "trace", "full"])
    ap.add_argument("--full-batch", type=int, default=16, help="batch size used for output mode 'full'")
    ap.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS,
        default=["robntk-layerwise", "robntk-jacobian", "jax.jacrev", "torch.func"],
    )
    ap.add_argument("--bn-mode", default="train", choices=("train", "eval"))
    ap.add_argument("--chunk-size", type=int, default=None, help="robntk-layerwise cotangent chunk")
    ap.add_argument(
        "--reps",
        type=int,
        default=7,
        help="timed rounds after one untimed warm-up call; each round runs every contender once",
    )
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float64"),
        help="float64: numerical agreement check (torch double, jax x64)",
    )
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error(f"--reps must be >= 1, got {args.reps}")
    f64 = args.dtype == "float64"
    if f64:
        jax.config.update("jax_enable_x64", True)

    from robntk.core.registry import DATASETS
    from robntk.data.datasets import fixed_batch
    from robntk.nb201.searchspace import SearchSpace

    space = SearchSpace.load(args.data_dir)
    arch = space.arch_str(args.arch)
    ops = space.ops(args.arch)
    net = TinyNetwork(C=args.C, N=args.N)
    v = net.init(jax.random.PRNGKey(0), jnp.float64 if f64 else jnp.float32)
    ded = net.extract(v, ops)
    train = args.bn_mode == "train"
    f, p = net.make_apply(ded, ops, args.bn_mode)
    ids = jnp.asarray(op_ids(ops))
    env = {
        "arch": args.arch,
        "arch_str": arch,
        "P": int(sum(a.size for a in jax.tree_util.tree_leaves(p))),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "bn_mode": args.bn_mode,
        "dtype": args.dtype,
        "chunk_size": args.chunk_size,
    }
    try:
        import torch

        torch.manual_seed(0)
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        torch = None
    try:
        import neural_tangents  # noqa: F401

        env["neural_tangents"] = "imported"
    except Exception as exc:  # noqa: BLE001
        env["neural_tangents"] = f"import failed: {type(exc).__name__}: {str(exc)[:160]}"
    print(json.dumps({"env": env}), flush=True)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(json.dumps({"env": env}) + "\n")
    results = []

    def emit(rec):
        rec.update(arch=args.arch)
        print(json.dumps(rec), flush=True)
        results.append(rec)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")

    bmax = max(args.batch + [args.full_batch])
    xb, yb = fixed_batch("cifar10", bmax, seed=0, data_dir=args.data_dir)
    if f64:
        xb = xb.astype(np.float64)
    tnet = None
    if torch is not None and "torch.func" in args.contenders:
        mean, std = DATASETS["cifar10"].mean, DATASETS["cifar10"].std
        tnet = build_torch_net(ops, args.C, args.N, 10, mean, std, train=train)
        if f64:
            tnet = tnet.double()
            tnet.mean.copy_(torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1) / 255.0)
            tnet.std.copy_(torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1) / 255.0)
        copy_weights(tnet, ded, ops, args.N)
        with torch.no_grad():
            lt = tnet(torch.tensor(np.transpose(xb[:8], (0, 3, 1, 2)).copy()).to(next(tnet.parameters()).dtype)).numpy()
        lj = np.asarray(f(p, jnp.asarray(xb[:8])))
        emit({"check": "logits torch vs flax", "max_rel": float(np.max(np.abs(lt - lj)) / np.max(np.abs(lj)))})

    def prepare(who, mode, x, y, B):
        """(call, compile seconds) of one contender on this batch."""
        if who == "robntk-layerwise":
            return jax_call(
                lambda P_, S_, xx, yy, ii: layer_ntk.layerwise_ntk(
                    net, P_, S_, ii, xx, yy, mode, train, args.chunk_size
                ),
                (v["params"], v["batch_stats"], x, y, ids),
            )
        if who == "robntk-layerwise-fixed":
            return jax_call(
                lambda P_, S_, xx, yy: layer_ntk.layerwise_ntk(net, P_, S_, ops, xx, yy, mode, train, args.chunk_size),
                (v["params"], v["batch_stats"], x, y),
            )
        if who == "robntk-jacobian":
            return jax_call(
                lambda pp, xx, yy: ntk.empirical_ntk(
                    f, pp, xx, output_mode=mode, labels1=yy, independent_rows=not train
                ),
                (p, x, y),
            )
        if who == "jax.jacrev":
            return jax_call(lambda pp, xx, yy: plain_jacrev_ntk(f, pp, xx, yy, mode, train), (p, x, y))
        if who == "torch.func":
            if tnet is None:
                raise RuntimeError("torch not installed")
            return (lambda: torch_ntk(tnet, xb[:B], yb[:B], mode).numpy()), 0.0
        raise ValueError(f"unknown contender {who!r}")  # argparse choices make this unreachable

    for mode in args.modes:
        for B in [args.full_batch] if mode == "full" else args.batch:
            x, y = jnp.asarray(xb[:B]), jnp.asarray(yb[:B])
            calls, recs = {}, {}
            for who in args.contenders:  # compile + warm up every contender first
                rec = recs[who] = {"mode": mode, "B": B, "contender": who, "dtype": args.dtype}
                try:
                    calls[who], rec["compile_s"] = prepare(who, mode, x, y, B)
                    calls[who]()  # warm-up (first-call allocations), not timed
                except Exception as exc:  # noqa: BLE001 — a failing contender is a result too
                    rec["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    calls.pop(who, None)
            order, runs, outs = list(calls), {w: [] for w in calls}, {}
            for r in range(args.reps if order else 0):  # interleaved rounds, start rotated each round
                for who in order[r % len(order) :] + order[: r % len(order)]:
                    t = time.perf_counter()
                    outs[who] = calls[who]()
                    runs[who].append(time.perf_counter() - t)
            ref = None
            for who in args.contenders:
                rec = recs[who]
                if who in calls:
                    K = np.asarray(outs[who], np.float64)
                    ref = K if ref is None else ref
                    rec.update(
                        run_s=statistics.median(runs[who]),
                        min_s=min(runs[who]),
                        runs=runs[who],
                        max_rel_diff_vs_first=float(np.max(np.abs(K - ref)) / np.max(np.abs(ref))),
                    )
                    if who != order[0]:  # per-round ratio first contender / this one
                        rr = np.asarray(runs[order[0]]) / np.asarray(runs[who])
                        rec[f"ratio_{order[0]}_over_this"] = {
                            "median_of_rounds": float(np.median(rr)),
                            "of_mins": min(runs[order[0]]) / min(runs[who]),
                        }
                emit(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
