"""Zero-cost proxies of NB201 networks computed by robntk in JAX (NASLib's definitions).

Every proxy is a pure function ``proxy(net, variables, cell, x, y, key) -> scalar`` of

* ``net``: a :class:`robntk.network.TinyNetwork` (its ``dataset`` normalisation is applied to
  ``x`` first; the proxies then act on the *normalised* input, as NASLib's networks do, which see
  normalised tensors);
* ``variables``: the full-tree ``{'params', 'batch_stats'}`` of ``net.init`` (every op of every
  edge), so that a cell given as data selects its ops inside one compiled function;
* ``cell``: an arch string / 6 op names (fixed) or int (6,) op ids (data; may be traced: one
  ``jax.jit`` serves all 15,625 cells);
* ``x``: (B, H, W, 3) float images in [0, 1]; ``y``: (B,) int labels; ``key``: PRNG key (used by
  ``zen`` alone, for its Gaussian inputs and weights; every other proxy is deterministic given
  the weights and the batch — kept for the one signature).

BN mode: batch statistics (``train=True``), as NASLib's ``find_measures`` runs the network in
``train()`` mode; ``synflow`` alone is BN-free (NASLib's ``bn=False``). Undefined values: the
proxies added after NASLib's set (``epe_nas``, ``zen``, ``zico``, ``tenas_ntk_cond``,
``linear_regions``, ``croze``) return NaN for a cell without an input→output path
(:func:`connected`), ``jacov`` is NaN there by its definition; :func:`proxy_table` flags every
such cell for every proxy that needs a forward pass. Layers summed over
("every prunable layer" in NASLib: ``nn.Conv2d`` and ``nn.Linear`` weights): the stem conv, the
conv of every *chosen* conv edge, the reduction blocks' ``conv_a``, ``conv_b`` and shortcut
conv, and the classifier. Parameters of ops a cell does not use never count (they receive zero
gradients; ``l2_norm`` masks them explicitly).

References: NASLib ``naslib/predictors/pruners/measures/*.py`` (automl/NASLib) and
SamsungLabs/zero-cost-nas ``foresight/pruners/measures/*.py`` (Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021); NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS
2022 D&B) for the released values (:mod:`robntk.suite_zero`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import attacks, layer_ntk
from .network import (BN_EPS, BN_MOMENTUM, CONV1, CONV3, NONE, POOL, TinyNetwork, batch_norm, check_op_ids, conv,
                      normalize, op_ids)
from .searchspace import EDGES, NUM_EDGES, is_connected
from .store import KEY, ResultStore

Proxy = Callable[..., jax.Array]


# --------------------------------------------------------------------------- helpers
def _ids(cell) -> jax.Array:
    """int32 (6,) op ids of a cell given as arch string, op names or (possibly traced) ids."""
    if isinstance(cell, jax.core.Tracer):
        return cell.astype(jnp.int32)
    return jnp.asarray(op_ids(cell))


def connected(cell) -> jax.Array:
    """Whether the cell has an input→output path through ops other than ``none`` (bool scalar,
    traceable: the cell may be int ids inside ``jit``; the traced form of
    :func:`robntk.searchspace.is_connected`)."""
    live = _ids(cell) != NONE
    reach = [jnp.asarray(True)]
    for dst in (1, 2, 3):
        r = jnp.asarray(False)
        for e, (src, d) in enumerate(EDGES):
            if d == dst:
                r = r | (reach[src] & live[e])
        reach.append(r)
    return reach[3]


def _nan_unless_connected(value: jax.Array, cell) -> jax.Array:
    """``value``, or NaN where the cell has no input→output path (the proxy is undefined)."""
    return jnp.where(connected(cell), value, jnp.nan)


def _count_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _plain_net(net: TinyNetwork) -> TinyNetwork:
    """The same network without the input normalisation (inputs are normalised by the caller)."""
    return dataclasses.replace(net, dataset=None)


def _ce(logits, y):
    """Mean cross-entropy (PyTorch ``CrossEntropyLoss``), logits (B, K), y (B,) int."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1))


def _weight_leaves(net: TinyNetwork, tree, ids: jax.Array) -> list[tuple[str, jax.Array, jax.Array]]:
    """``(path, leaf, active)`` for every Conv/Linear *weight* of ``tree`` (a params-shaped tree):
    ``active`` is 1.0 when the layer is part of the network of ``ids`` and 0.0 otherwise."""
    out = []
    p = tree
    out.append(("stem_conv", p["stem_conv"]["kernel"], jnp.ones(())))
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            for sub in ("conv_a", "conv_b"):
                out.append((f"{name}/{sub}", p[name][sub]["conv"]["kernel"], jnp.ones(())))
            out.append((f"{name}/downsample", p[name]["downsample"]["kernel"], jnp.ones(())))
            continue
        for e in range(NUM_EDGES):
            for op, oid in (("nor_conv_1x1", CONV1), ("nor_conv_3x3", CONV3)):
                mod = f"e{e}_{op}"
                if name in p and mod in p[name]:
                    out.append((f"{name}/{mod}", p[name][mod]["conv"]["kernel"], (ids[e] == oid).astype(jnp.float32)))
    out.append(("classifier", p["classifier"]["kernel"], jnp.ones(())))
    return out


# --------------------------------------------------------------------------- closed-form proxies
def params(net: TinyNetwork, variables=None, cell=None, x=None, y=None, key=None) -> jax.Array:
    """``params``: trainable parameters of the network of ``cell``, in **millions** (NASLib /
    NAS-Bench-Suite-Zero units: 1.073466 for NB201 index 2581 on CIFAR-10).

    Closed form: stem conv 27C + BN 2C; per stage s of width w = 2^s·C, N cells with, per
    1×1 edge, w² + 2w and, per 3×3 edge, 9w² + 2w; the two reduction blocks (3×3 conv_a,
    BN, 3×3 conv_b, BN, 1×1 shortcut conv); lastact BN 2·4C; classifier 4C·K + K. Equals
    :meth:`TinyNetwork.num_params` (the PyTorch count) for every cell.

    Args:
        net: the network (C, N, num_classes). cell: fixed or int (6,) ids (may be traced).
        variables, x, y, key: unused (uniform signature).

    Returns:
        float64 scalar under x64, else float32 (exact in float64 only).
    """
    return jnp.asarray(param_count(net, cell), _count_dtype()) / 1e6


def param_count(net: TinyNetwork, cell) -> jax.Array:
    """Integer (int32) parameter count behind :func:`params` (exact in any precision)."""
    ids = _ids(cell)
    n1 = jnp.sum(ids == CONV1)
    n3 = jnp.sum(ids == CONV3)
    C, N, K = net.C, net.N, net.num_classes
    const = 27 * C + 2 * C
    per1 = per3 = 0
    for s in range(3):
        w = C * 2 ** s
        per1 += N * (w * w + 2 * w)
        per3 += N * (9 * w * w + 2 * w)
        if s:
            cin = w // 2
            const += 9 * cin * w + 2 * w + 9 * w * w + 2 * w + cin * w
    const += 2 * 4 * C + 4 * C * K + K
    return (const + n1 * per1 + n3 * per3).astype(jnp.int32)


def flops(net: TinyNetwork, variables=None, cell=None, x=None, y=None, key=None) -> jax.Array:
    """``flops``: NAS-Bench-Suite-Zero's flop count of one forward pass of one image, in
    **millions** (155.584192 for NB201 index 2581 on CIFAR-10).

    The released values are reproduced exactly (all 9,445 cells of both datasets, tests) by

        MACs of every conv and the classifier (k²·C_in·C_out·H_out·W_out; 4C·K)
        + 3 per output element of every chosen conv edge (ReLU on its input + BN)
        + 9 per output element of every ``avg_pool_3x3`` edge (k² per output)
        + the network's non-cell elementwise overhead ``_flops_overhead`` (BN, ReLU, pools of the
          stem, reduction blocks, lastact and global pooling; a dataset-resolution constant),

    i.e. the counting of NASLib's ``find_measures`` (``tensorwatch.ModelStats(...).Flops / 1e6``
    for one image, ``naslib/predictors/pruners/predictive.py``), a module-hook counter, rather
    than pure MACs: ``skip_connect`` and ``none`` cost 0.

    Args:
        net: the network. cell: fixed or ids (may be traced). x: (B, H, W, 3) — only its
            resolution H = W is used (None: the dataset's image size).

    Returns:
        float32 scalar (float64 under x64).
    """
    return jnp.asarray(flop_count(net, cell, x), _count_dtype()) / 1e6


def flop_count(net: TinyNetwork, cell, x=None) -> jax.Array:
    """Integer (int32) flop count behind :func:`flops` (exact in any precision)."""
    from .registry import DATASETS

    ids = _ids(cell)
    if x is not None:
        H = int(x.shape[1])
    elif net.dataset is not None:
        H = DATASETS[net.dataset].image_size
    else:
        raise ValueError("flops needs x or a network with a dataset to know the resolution")
    C, N, K = net.C, net.N, net.num_classes
    n1 = jnp.sum(ids == CONV1)
    n3 = jnp.sum(ids == CONV3)
    npool = jnp.sum(ids == POOL)
    macs = 27 * C * H * H + 4 * C * K
    e1 = e3 = ep = 0
    for s in range(3):
        w, h = C * 2 ** s, H // 2 ** s
        el = N * w * h * h
        e1 += el * (w + 3)
        e3 += el * (9 * w + 3)
        ep += el * 9
        if s:
            cin = w // 2
            macs += (9 * cin * w + 9 * w * w + cin * w) * h * h
    return (macs + _flops_overhead(C, H) + n1 * e1 + n3 * e3 + npool * ep).astype(jnp.int32)


def _flops_overhead(C: int, H: int) -> int:
    """Non-cell elementwise flops of the released counts (BN 2 per element, ReLU 1, pool k² per
    output, on the stem, reduction blocks, lastact and global pool), plus a residual
    ``64·(2·H/4 + 1)`` for C=16 that the decomposition does not explain (1,088 at 32×32, 576 at
    16×16; 0.0007 % of the total)."""
    tot = 2 * C * H * H  # stem BN
    h = H
    for s in (1, 2):
        cin, w, h2 = C * 2 ** (s - 1), C * 2 ** s, h // 2
        tot += cin * h * h + 2 * w * h2 * h2 + w * h2 * h2 + 2 * w * h2 * h2 + 4 * cin * h2 * h2
        h = h2
    W = 4 * C
    tot += 2 * W * h * h + W * h * h + W * h * h  # lastact BN, ReLU, global average pool
    tot += W * (2 * h + 1)  # unexplained residual (see docstring)
    return tot


# --------------------------------------------------------------------------- gradient proxies
def _loss_backward(net, variables, cell, x, y):
    """ONE forward + backward of the mean cross-entropy (train-mode BN, normalised input) w.r.t.
    the parameters, zero taps at every layer output and the logits: (params, ∂L/∂params,
    ∂L/∂taps, ∂L/∂logits (B, K), records, logits (B, K))."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    p = variables["params"]
    taps = {k: jnp.zeros(s, xn.dtype) for k, s in pn.tap_shapes(x.shape).items()}
    zl = jnp.zeros((x.shape[0], net.num_classes), xn.dtype)

    def loss(q, t, z):
        logits, rec = pn.forward(q, None, xn, cell, True, taps=t)
        return _ce(logits + z, y), (rec, logits)

    (g, gt, gl), (rec, logits) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(p, taps, zl)
    return p, g, gt, gl, rec, logits


def _fisher_sum(net, p, ids, rec, gt, gl, logits):
    """The :func:`fisher` sum from the records and tap cotangents of :func:`_loss_backward`."""
    def term(a, g, m):
        g_nk = jnp.sum(a * g, axis=tuple(range(1, a.ndim - 1))) if a.ndim > 2 else a * g
        return m * jnp.sum(0.5 * jnp.mean(jnp.square(g_nk), axis=0))

    tot = term(rec["stem/conv_out"], gt["stem/pre"], 27)
    for k, kind, w in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            cin = w // 2
            tot += term(rec[f"{n}/conv_a/conv_out"], gt[f"{n}/conv_a/pre"], 9 * cin)
            tot += term(rec[f"{n}/conv_b/conv_out"], gt[f"{n}/conv_b/pre"], 9 * w)
            ds = conv(rec[f"{n}/downsample/in"], p[n]["downsample"]["kernel"])
            tot += term(ds, gt[f"{n}/downsample"], cin)
            continue
        for e in range(NUM_EDGES):
            if f"{n}/e{e}/conv_out" in rec:
                m = jnp.where(ids[e] == CONV3, 9 * w, jnp.where(ids[e] == CONV1, w, 0))
                tot += term(rec[f"{n}/e{e}/conv_out"], gt[f"{n}/e{e}/pre"], m)
    return tot + term(logits, gl, 4 * net.C)


def loss_gradient_proxies(net, variables, cell, x, y, key=None) -> dict[str, jax.Array]:
    """``grad_norm``, ``snip``, ``plain`` and ``fisher`` from ONE forward + backward pass of the
    mean cross-entropy (train-mode BN): the parameter gradient gives the first three, the
    cotangents of the layer outputs in the same pass give fisher. :func:`proxy_table` calls
    this once per arch for all four (:data:`GROUPS`); each proxy function is its entry.

    Args: see module docstring; x (B, H, W, 3) in [0, 1], y (B,) int labels in [0, K).
    Returns: dict name → scalar (params dtype); raises nothing of its own.
    Sources: NASLib ``measures/grad_norm.py``, ``snip.py``, ``plain.py``, ``fisher.py``."""
    p, g, gt, gl, rec, logits = _loss_backward(net, variables, cell, x, y)
    ids = _ids(cell)
    pw, gw = _weight_leaves(net, p, ids), _weight_leaves(net, g, ids)
    return {
        "grad_norm": sum(a * jnp.sqrt(jnp.sum(jnp.square(gg))) for (_, gg, a) in gw),
        "snip": sum(jnp.sum(jnp.abs(w * gg)) for (_, w, _), (_, gg, _) in zip(pw, gw)),
        "plain": sum(jnp.sum(w * gg) for (_, w, _), (_, gg, _) in zip(pw, gw)),
        "fisher": _fisher_sum(net, p, ids, rec, gt, gl, logits),
    }


def grad_norm(net, variables, cell, x, y, key=None) -> jax.Array:
    """``grad_norm``: Σ_layers ‖∂L/∂W_l‖₂ over Conv/Linear weights, L = mean cross-entropy of
    the batch, train-mode BN (Abdelfattah et al. 2021; NASLib ``measures/grad_norm.py``).

    Args: see module docstring; x (B, H, W, 3), y (B,) int. Returns: scalar (params dtype).
    """
    return loss_gradient_proxies(net, variables, cell, x, y)["grad_norm"]


def snip(net, variables, cell, x, y, key=None) -> jax.Array:
    """``snip``: Σ |W ⊙ ∂L/∂W| over Conv/Linear weights (Lee et al., ICLR 2019, connection
    sensitivity; NASLib ``measures/snip.py``: the gradient w.r.t. an all-ones weight mask equals
    W ⊙ ∂L/∂W), L = mean cross-entropy, train-mode BN. Returns: scalar."""
    return loss_gradient_proxies(net, variables, cell, x, y)["snip"]


def plain(net, variables, cell, x, y, key=None) -> jax.Array:
    """``plain``: Σ W ⊙ ∂L/∂W (signed) over Conv/Linear weights, L = mean cross-entropy,
    train-mode BN (NASLib ``measures/plain.py``). Returns: scalar."""
    return loss_gradient_proxies(net, variables, cell, x, y)["plain"]


def l2_norm(net, variables, cell, x=None, y=None, key=None) -> jax.Array:
    """``l2_norm``: Σ_layers ‖W_l‖₂ over the Conv/Linear weights of the network of ``cell``
    (NASLib ``measures/l2_norm.py``; unused ops masked out). Returns: scalar."""
    ids = _ids(cell)
    return sum(a * jnp.sqrt(jnp.sum(jnp.square(w))) for _, w, a in _weight_leaves(net, variables["params"], ids))


def synflow(net, variables, cell, x, y=None, key=None, log: bool = True) -> jax.Array:
    """``synflow``: log Σ |θ ⊙ ∂R/∂θ| over Conv/Linear weights, R = Σ f_|θ|(𝟙) (Tanaka et al.,
    NeurIPS 2020; NASLib ``measures/synflow.py`` with ``bn=False``; the log is NASLib's
    ``ZeroCost`` post-processing, the form NAS-Bench-Suite-Zero reports).

    The network is made linear-positive: every parameter replaced by its absolute value, BN
    removed (here: eval-mode BN with mean 0, variance 1 − eps, scale 1, bias 0 — the identity),
    input one all-ones image (1, H, W, 3) fed to the stem un-normalised. Computed in the params'
    dtype. NASLib computes it in float64 (``net.double()``); in float32 the sum overflows (near
    1e38, log ≈ 88.7) for about one NB201 cell in nine at C=16, N=5, so :func:`proxy_table`
    runs it in float64 on the same weights (:data:`FLOAT64_PROXIES`).

    Args: see module docstring (x only gives the shape). log: return log(score) (NASLib) or the
        raw sum.

    Measured (C=16, N=5, CIFAR-10 head, init seed 0, float64, fixed cell, jit): NB201 2581 →
    113.659 (NAS-Bench-Suite-Zero 113.775), 2631 → 44.377 (44.485), 10975 → 85.370 (85.295):
    the same log scale, differences from the random init only.

    Returns: scalar; log of 0 is −inf (no input→output path). NASLib's
        ``ZeroCost.query`` returns 0 for a zero sum and −1e8 for NaN/inf; here such values stay
        non-finite and :func:`proxy_table` turns them into NaN with a flag.
    """
    pn = _plain_net(net)
    params_ = jax.tree_util.tree_map(jnp.abs, variables["params"])
    dtype = jax.tree_util.tree_leaves(params_)[0].dtype

    def fix_bn(tree):
        if isinstance(tree, dict):
            if "scale" in tree and "bias" in tree and len(tree) == 2:
                return {"scale": jnp.ones_like(tree["scale"]), "bias": jnp.zeros_like(tree["bias"])}
            return {k: fix_bn(v) for k, v in tree.items()}
        return tree

    params_ = fix_bn(params_)
    def stat_fix(tree):
        if "mean" in tree and "var" in tree:
            return {"mean": jnp.zeros_like(tree["mean"]), "var": jnp.full_like(tree["var"], 1.0 - BN_EPS)}
        return {k: stat_fix(v) for k, v in tree.items()}

    stats = stat_fix(variables["batch_stats"])
    ones = jnp.ones((1, *x.shape[1:]), dtype)

    def R(p):
        return jnp.sum(pn.forward(p, stats, ones, cell, False)[0])

    g = jax.grad(R)(params_)
    ids = _ids(cell)
    pw, gw = _weight_leaves(net, params_, ids), _weight_leaves(net, g, ids)
    s = sum(jnp.sum(jnp.abs(w * gg)) for (_, w, _), (_, gg, _) in zip(pw, gw))
    return jnp.log(s) if log else s


# --------------------------------------------------------------------------- activation proxies
def relu_inputs(net, variables, cell, x) -> list[tuple[jax.Array, jax.Array]]:
    """Pre-activation inputs of every ReLU module of the network of ``cell``, train-mode BN:
    ``(z, active)`` with z (B, ...) and ``active`` 1.0 when the ReLU runs for this cell.

    These are the ReLUs NASLib's nwot hooks (every ``nn.ReLU``): the ReLU of each chosen conv
    edge (``ReLUConvBN``), of ``conv_a`` and ``conv_b`` of both reduction blocks, and
    ``lastact``'s ReLU (after its BN)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    shapes = pn.tap_shapes(x.shape)
    taps = {k: jnp.zeros(s, xn.dtype) for k, s in shapes.items()}
    _, rec = pn.forward(variables["params"], None, xn, cell, True, taps=taps)
    ids = _ids(cell)
    out = []
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            out += [(rec[f"{name}/conv_a/in"], jnp.ones(())), (rec[f"{name}/conv_b/in"], jnp.ones(()))]
            continue
        for e in range(NUM_EDGES):
            if f"{name}/e{e}/in" in rec:
                out.append((rec[f"{name}/e{e}/in"], ((ids[e] == CONV1) | (ids[e] == CONV3)).astype(xn.dtype)))
    last, _ = batch_norm(rec["lastact/conv_out"], variables["params"]["lastact_bn"], None, True)
    out.append((last, jnp.ones(())))
    return out


def _code_agreement(net, variables, cell, x) -> tuple[jax.Array, jax.Array]:
    """(A, D): A (B, B) the number of ReLU units on which examples i and j have the same binary
    code 1[z > 0] (Σ over the ReLUs of :func:`relu_inputs` of c·cᵀ + (1 − c)(1 − c)ᵀ, c (B, D_r)
    the flattened codes), and D the number of units of the ReLUs that run for the cell; the
    Hamming distance of the codes is D − A. Integer-valued in the input's float dtype (exact
    below 2²⁴ units in float32)."""
    A, D = 0.0, 0.0
    for z, a in relu_inputs(net, variables, cell, x):
        c = (z.reshape(z.shape[0], -1) > 0).astype(z.dtype)
        A = A + a * (c @ c.T + (1 - c) @ (1 - c).T)
        D = D + a * c.shape[1]
    return A, D


def nwot(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``nwot``: log|K_H| (Mellor et al., "Neural Architecture Search without Training", ICML
    2021; NASLib ``measures/nwot.py``), K_H = Σ_ReLUs c·cᵀ + (1 − c)(1 − c)ᵀ with c (B, D) the
    binary codes 1[z > 0] of each ReLU's input z (flattened per example), over the ReLUs of
    :func:`relu_inputs`; train-mode BN. Returns: the log-determinant (``slogdet``'s second
    value, sign ignored as NASLib does), float64 under x64. Shapes: x (B, H, W, 3) → K (B, B)."""
    return jnp.linalg.slogdet(_code_agreement(net, variables, cell, x)[0])[1]


def linear_regions(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``linear_regions``: number of distinct ReLU activation patterns of the batch (Chen et al.,
    "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically Inspired
    Perspective" (TE-NAS), ICLR 2021; reference VITA-Group/TENAS
    ``lib/procedures/linear_region_counter.py``, ``LinearRegionCount.calc_LR``).

    Counting rule: the pattern of example b is the concatenation over every ReLU of
    :func:`relu_inputs` (the ``nn.ReLU`` modules TE-NAS hooks) of the binary codes 1[z > 0]
    (= sign of the ReLU output) of all its units; two examples are in the same region iff
    their patterns are equal (Hamming distance 0); the count is Σ_b 1 / #{b' : pattern(b') =
    pattern(b)}, i.e. exactly the number of distinct patterns (TE-NAS's ``calc_LR``; here
    counted exactly, TE-NAS compares in float16). Train-mode BN (patterns depend on the whole
    batch). TE-NAS's own protocol (3×3-pixel inputs, 1,000 samples, a thin C=3/N=1 copy of the
    network, kaiming init, 3 repeats) is not mirrored: this counts over the batch ``x`` on the
    network as given.

    Args: see module docstring; x (B, H, W, 3) in [0, 1]. Returns: float scalar in [1, B]
        (params dtype); NaN for a cell without an input→output path (the network is then
        constant in its input and has one linear region whatever the hidden patterns).
    """
    A, D = _code_agreement(net, variables, cell, x)
    same = (A == D).astype(A.dtype)
    return _nan_unless_connected(jnp.sum(1.0 / jnp.sum(same, axis=1)), cell)


def _input_jacobian(net, variables, cell, x) -> jax.Array:
    """(B, H·W·3) rows of ∂(Σ_{b,k} f(x)_{bk})/∂x̂ on the normalised input x̂, train-mode BN (the
    ``y.backward(ones)`` input Jacobian of NASLib's jacov and epe_nas)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    J = jax.grad(lambda z: jnp.sum(pn.forward(variables["params"], None, z, cell, True)[0]))(xn)
    return J.reshape(J.shape[0], -1)


def _corrcoef(J: jax.Array) -> jax.Array:
    """Row correlation matrix (B, B) of J (B, D) (``numpy.corrcoef``); NaN rows for constant rows."""
    Jc = J - J.mean(axis=1, keepdims=True)
    cov = Jc @ Jc.T
    d = jnp.sqrt(jnp.diag(cov))
    return cov / (d[:, None] * d[None, :])


def jacov(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``jacov``: Jacobian covariance (Mellor et al. 2020, v1 of arXiv 2006.04647; NASLib
    ``measures/jacov.py``): J = ∂(Σ_{b,k} f(x)_{bk})/∂x on the normalised input (train-mode BN,
    so rows couple through the batch), rows flattened (B, H·W·3), Σ = corrcoef(J) (B, B),
    score = −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over the eigenvalues λ of Σ. Returns:
    scalar; NaN when a row of J is constant (correlation undefined), in particular for a cell
    without an input→output path (J = 0)."""
    return input_jacobian_proxies(net, variables, cell, x, y)["jacov"]


def epe_nas(net, variables, cell, x, y, key=None) -> jax.Array:
    """``epe_nas``: per-class correlation of input Jacobians (Lopes, Alirezazadeh, Alexandre,
    "EPE-NAS: Efficient Performance Estimation Without Training for Neural Architecture
    Search", ICANN 2021; NASLib ``measures/epe_nas.py``, from VascoLopes/EPE-NAS ``search.py``).

    J (B, H·W·3): the input Jacobian of :func:`jacov` (Σ of all logits, normalised input,
    train-mode BN). For every class c present in ``y``: R_c = corrcoef of the rows of J with
    label c (a (1, 1) matrix [1] for a single row, as ``numpy.corrcoef`` of one vector), and
    s_c = Σ_{ij} log(|R_c,ij| + 1e-5). With K = ``net.num_classes``:

    * K ≤ 100: score = Σ_c |s_c|;
    * K > 100: s_c is divided by n_c (the class's row count); classes with one row are skipped
      (NASLib's ``len`` of a scalar raises and the class is dropped); score =
      Σ_{c, c'} |s_c − s_c'| / #classes kept (NaN when none is kept: NASLib's division by zero
      is caught and returns NaN).

    Computed from the full (B, B) correlation matrix (a class block of it equals the
    correlation matrix of that class's rows). Args: see module docstring; y (B,) int labels in
    [0, K). Returns: scalar (params dtype); NaN when a row of J is constant (e.g. a cell without
    an input→output path).
    """
    return input_jacobian_proxies(net, variables, cell, x, y)["epe_nas"]


def input_jacobian_proxies(net, variables, cell, x, y, key=None) -> dict[str, jax.Array]:
    """``jacov`` and ``epe_nas`` from ONE input Jacobian (:func:`_input_jacobian`, one backward
    pass) and its row correlation matrix; :func:`proxy_table` calls this once per arch for both
    (:data:`GROUPS`). Args: see module docstring; x (B, H, W, 3) in [0, 1], y (B,) int labels
    in [0, K). Returns: dict name → scalar (params dtype), NaN as the two proxies define it;
    raises nothing of its own. Sources: NASLib ``measures/jacov.py`` and ``epe_nas.py``."""
    R = _corrcoef(_input_jacobian(net, variables, cell, x))
    v = jnp.linalg.eigvalsh(R)
    k = 1e-5
    L = jnp.log(jnp.abs(R) + 1e-5)
    onehot = jax.nn.one_hot(y, net.num_classes, dtype=L.dtype)  # (B, K)
    s = jnp.einsum("ic,ij,jc->c", onehot, L, onehot)
    n = onehot.sum(axis=0)
    if net.num_classes <= 100:
        epe = jnp.sum(jnp.where(n > 0, jnp.abs(s), 0.0))
    else:
        keep = (n > 1).astype(L.dtype)
        sc = s / jnp.maximum(n, 1.0)
        pair = jnp.abs(sc[:, None] - sc[None, :]) * keep[:, None] * keep[None, :]
        epe = jnp.sum(pair) / jnp.sum(keep)
    return {"jacov": -jnp.sum(jnp.log(v + k) + 1.0 / (v + k)), "epe_nas": epe}


def fisher(net, variables, cell, x, y, key=None) -> jax.Array:
    """``fisher``: Σ_layers Σ_channels m_l · ½·mean_b (Σ_{h,w} a_{bkhw} · ∂L/∂a_{bkhw})²
    (Theis et al. 2018, Turner et al. 2020; NASLib ``measures/fisher.py``), a = output of each
    Conv/Linear layer (conv output before BN; logits for the classifier), L = mean cross-entropy,
    train-mode BN. m_l = prod(W_l.shape[1:]) in PyTorch layout (C_in·k² for a conv, 4C for the
    classifier): NASLib broadcasts each channel's value to all the weights of that channel
    before summing, so it counts m_l times. Returns: scalar (params dtype)."""
    return loss_gradient_proxies(net, variables, cell, x, y)["fisher"]


def _kernel_mask(tree):
    """1.0 for Conv/Linear weight leaves (``kernel``), 0.0 for BN scale/bias and biases."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.ones((), l.dtype) if jax.tree_util.keystr(p).endswith("['kernel']") else jnp.zeros((), l.dtype)
                  for p, l in flat])


def grasp(net, variables, cell, x, y, key=None) -> jax.Array:
    """``grasp``: Σ −θ ⊙ (H g) over Conv/Linear weights (Wang et al., "Picking Winning Tickets
    Before Training by Preserving Gradient Flow", ICLR 2020; NASLib ``measures/grasp.py``, T = 1,
    one iteration): g = ∂L/∂W (weights only, held constant), H g = ∂/∂θ (gᵀ ∂L/∂W), computed
    here as a forward-over-reverse Hessian-vector product with the vector g on the weights and
    0 on BN parameters and biases. L = mean cross-entropy, train-mode BN. Returns: scalar."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    p = variables["params"]

    def loss(q):
        return _ce(pn.forward(q, None, xn, cell, True)[0], y)

    gl = jax.grad(loss)
    g = gl(p)
    mask = _kernel_mask(p)
    v = jax.tree_util.tree_map(lambda a, m: a * m, g, mask)
    _, hv = jax.jvp(gl, (p,), (v,))
    ids = _ids(cell)
    pw, hw = _weight_leaves(net, p, ids), _weight_leaves(net, hv, ids)
    return sum(-jnp.sum(w * h) for (_, w, _), (_, h, _) in zip(pw, hw))


# --------------------------------------------------------------------------- zen, TE-NAS, ZiCo
def _params_dtype(variables):
    return variables["params"]["stem_conv"]["kernel"].dtype


def _bn_layers(net: TinyNetwork, variables, cell, rec) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    """``(z, r0, active)`` for every BatchNorm of the network of ``cell`` (PyTorch's
    ``nn.BatchNorm2d`` modules): z its input (B, H, W, C) from the records of a tapped forward,
    r0 (C,) its running variance in ``variables['batch_stats']`` and ``active`` 1.0 when it
    runs for this cell. Order: stem, each cell's chosen conv edges, each reduction block's
    conv_a and conv_b, lastact."""
    st, ids, one = variables["batch_stats"], _ids(cell), jnp.ones(())
    out = [(rec["stem/conv_out"], st["stem_bn"]["var"], one)]
    for k, kind, _ in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            out += [(rec[f"{n}/{sub}/conv_out"], st[n][sub]["bn"]["var"], one) for sub in ("conv_a", "conv_b")]
            continue
        for e in range(NUM_EDGES):
            if f"{n}/e{e}/conv_out" in rec:
                r1, r3 = st[n][f"e{e}_nor_conv_1x1"]["bn"]["var"], st[n][f"e{e}_nor_conv_3x3"]["bn"]["var"]
                out.append((rec[f"{n}/e{e}/conv_out"], jnp.where(ids[e] == CONV3, r3, r1),
                            ((ids[e] == CONV1) | (ids[e] == CONV3)).astype(r1.dtype)))
    out.append((rec["lastact/conv_out"], st["lastact_bn"]["var"], one))
    return out


def _batch_var(z: jax.Array, unbiased: bool) -> jax.Array:
    """Per-channel variance over (B, H, W) of z (B, H, W, C); ×n/(n−1) when ``unbiased``."""
    n = z.shape[0] * z.shape[1] * z.shape[2]
    v = jnp.var(z, axis=(0, 1, 2))
    return v * (n / (n - 1)) if unbiased else v


def _gaussian_params(params, key: jax.Array):
    """Zen-NAS's re-initialisation: every Conv/Linear weight (``kernel``) i.i.d. N(0, 1), Linear
    bias 0, BN scale 1 and bias 0. The weights are consecutive slices, in the full tree's
    flatten order, of ONE draw ``normal(key, (Σ sizes,))`` (one RNG kernel: drawing leaf by
    leaf costs ~20 s of compilation), so a leaf's value does not depend on the cell."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    is_k = [jax.tree_util.keystr(p).endswith("['kernel']") for p, _ in flat]
    total = sum(l.size for (_, l), k in zip(flat, is_k) if k)
    z = jax.random.normal(key, (total,), flat[0][1].dtype)
    leaves, o = [], 0
    for (path, leaf), k in zip(flat, is_k):
        if k:
            leaves.append(z[o:o + leaf.size].reshape(leaf.shape))
            o += leaf.size
        elif jax.tree_util.keystr(path).endswith("['scale']"):
            leaves.append(jnp.ones_like(leaf))
        else:  # BN bias, classifier bias
            leaves.append(jnp.zeros_like(leaf))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _zen_draws(net, variables, x, key, gaussian_init: bool, mixup_gamma: float):
    """(params, x1, x_mix) of :func:`zen`: key → (k_init, k1, k2); x1, x2 ~ N(0, I) of x's shape
    in the params' dtype; x_mix = x1 + mixup_gamma·x2."""
    if key is None:
        raise ValueError("zen needs a PRNG key (Gaussian inputs and weights)")
    k_init, k1, k2 = jax.random.split(key, 3)
    dtype = _params_dtype(variables)
    p = _gaussian_params(variables["params"], k_init) if gaussian_init else variables["params"]
    x1 = jax.random.normal(k1, x.shape, dtype)
    x2 = jax.random.normal(k2, x.shape, dtype)
    return p, x1, x1 + mixup_gamma * x2


def zen(net, variables, cell, x, y=None, key=None, mixup_gamma: float = 1e-2, gaussian_init: bool = True,
        bn_var: str = "running") -> jax.Array:
    """``zen``: Zen-score (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image
    Recognition", ICCV 2021; NASLib ``measures/zen.py``, from idstcv/ZenNAS
    ``ZeroShotProxy/compute_zen_score.py``).

        zen = log( mean_b Σ_{h,w,c} |F(x1)_b − F(x1 + γ·x2)_b| ) + Σ_BN log sqrt(mean_c σ²_BN)

    with F the pre-global-average-pool feature map (B, H/4, W/4, 4C) (the output of lastact's
    BN → ReLU, the input of NASLib's ``AdaptiveAvgPool2d`` hook), x1, x2 ~ N(0, I) of x's shape
    (they replace the normalised input: fed to the stem directly), γ = ``mixup_gamma``, every
    forward in train-mode BN, and the sum over every BatchNorm of the network of ``cell``
    (stem, chosen conv edges, reduction blocks' conv_a/conv_b, lastact; :func:`_bn_layers`).

    NASLib choices mirrored: ``mixup_gamma=1e-2``; ``repeat=1``; the Gaussian weight
    re-initialisation ``network_weight_gaussian_init`` (``gaussian_init=True``: Conv/Linear
    weights N(0, 1), biases 0, BN scale 1 and bias 0; False keeps ``variables``); the forward of
    x1 first, then of the mixup input, both in ``train()`` mode; σ²_BN = the BN's
    ``running_var`` after those two forwards (``bn_var='running'``: PyTorch momentum 0.1 and the
    *unbiased* batch variance, r = 0.81·r0 + 0.09·v(x1) + 0.1·v(x_mix), r0 the running variance
    in ``variables['batch_stats']``, 1 at init); log of the batch mean of the per-example
    L1 difference. Not mirrored: float16 (``fp16``) option; the draws use JAX's PRNG, so values
    equal NASLib's only in distribution. ``bn_var='batch'``: σ² = the biased batch variance of
    the x1 forward (the Zen-NAS paper's definition) instead.

    Args: see module docstring (x only gives the shape; y unused). key: PRNG key, split into
        (weights, x1, x2) (required). mixup_gamma: γ > 0. gaussian_init: as above. bn_var:
        ``'running'`` or ``'batch'``.

    Returns: scalar (params dtype); NaN for a cell without an input→output path (F does not
        depend on the input: log 0).

    Raises: ValueError: key None, unknown ``bn_var``.
    """
    if bn_var not in ("running", "batch"):
        raise ValueError(f"unknown bn_var {bn_var!r}; allowed: running, batch")
    p, x1, xm = _zen_draws(net, variables, x, key, gaussian_init, mixup_gamma)
    pn = _plain_net(net)
    taps = {k: jnp.zeros(s, x1.dtype) for k, s in pn.tap_shapes(x.shape).items()}

    def feats(z):
        _, rec = pn.forward(p, None, z, cell, True, taps=taps)
        return jax.nn.relu(batch_norm(rec["lastact/conv_out"], p["lastact_bn"], None, True)[0]), rec

    f1, rec1 = feats(x1)
    f2, rec2 = feats(xm)
    delta = jnp.mean(jnp.sum(jnp.abs(f1 - f2), axis=(1, 2, 3)))
    m = BN_MOMENTUM  # flax convention: PyTorch's 0.1 is 1 − m
    log_bn = 0.0
    for (z1, r0, a), (z2, _, _) in zip(_bn_layers(net, variables, cell, rec1), _bn_layers(net, variables, cell, rec2)):
        if bn_var == "running":
            var = m * m * r0 + m * (1 - m) * _batch_var(z1, True) + (1 - m) * _batch_var(z2, True)
        else:
            var = _batch_var(z1, False)
        log_bn = log_bn + a * 0.5 * jnp.log(jnp.mean(var))
    return _nan_unless_connected(jnp.log(delta) + log_bn, cell)


def tenas_ntk_cond(net, variables, cell, x, y=None, key=None, chunk_size: int | None = None) -> jax.Array:
    """``tenas_ntk_cond``: minus the condition number of the train-mode NTK of the batch (Chen,
    Gong, Wang, "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically
    Inspired Perspective" (TE-NAS), ICLR 2021; reference VITA-Group/TENAS
    ``lib/procedures/ntk.py``, ``get_ntk_n`` with ``train_mode=True``).

    K = :func:`robntk.layer_ntk.empirical_ntk` ``(..., output_mode='sum', train=True)`` (B, B):
    the NTK of the sum of each example's logits (TE-NAS back-propagates ``ones`` per example),
    batch-statistics BN, on the normalised input; κ = λ_max(K) / λ_min(K) (``eigvalsh``).

    **Sign**: TE-NAS ranks a lower κ as better (better trainability); this returns **−κ**, so
    that higher is better as for every other proxy here. Not mirrored: TE-NAS takes the
    gradients of parameters named ``weight`` only (Conv, BN scale, Linear weight); robntk's NTK
    uses every parameter (also the BN and classifier biases); TE-NAS's search script
    (``prune_tenas.py``) repeats the measurement over several batches on re-initialised
    (kaiming-normal) networks — here one batch on the weights given.

    Args: see module docstring; x (B, H, W, 3) in [0, 1], B ≥ 2. chunk_size: cotangents per
        vmapped backward of the NTK (None: all B at once).

    Returns: scalar −κ ≤ −1 (params dtype); NaN when λ_min ≤ 0 (K numerically singular, κ
        undefined; TE-NAS returns −1 for a NaN κ) or for a cell without an input→output path.
    """
    K = layer_ntk.empirical_ntk(net, variables["params"], variables["batch_stats"], cell, x,
                                output_mode="sum", train=True, chunk_size=chunk_size)
    v = jnp.linalg.eigvalsh(K)
    return _nan_unless_connected(jnp.where(v[0] > 0, -v[-1] / v[0], jnp.nan), cell)


def zico(net, variables, cell, x, y, key=None, splits: int = 2) -> jax.Array:
    """``zico``: Σ_layers log Σ_θ mean_m|g_m(θ)| / std_m(g_m(θ)) (Li, Yang, Wang, Xu, Liu,
    "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients", ICLR 2023;
    reference SLDGroup/ZiCo ``ZeroShotProxy/compute_zico.py``; upstream NASLib has no zico).

    The batch is split into ``splits`` contiguous mini-batches of B / splits examples
    (``torch.chunk`` order: examples [0, B/s), [B/s, 2B/s), ...); g_m = ∂L_m/∂W for every
    Conv/Linear weight W (the layers of :func:`_weight_leaves`), L_m the mean cross-entropy of
    mini-batch m with train-mode BN on that mini-batch alone. Per layer, over the M = splits
    gradients: mean|g| and the population std (``numpy.std``, ddof 0) of every weight entry;
    the sum of mean|g|/std over entries with std ≠ 0; log of it, and the layer is skipped when
    that sum is 0 (as the reference; unused ops have zero gradients and drop out).

    Args: see module docstring; y (B,) int. splits: M ≥ 2 mini-batches; B must be divisible
        by it.

    Returns: scalar (params dtype); NaN for a cell without an input→output path.

    Raises: ValueError: splits < 2 or B not divisible by splits.
    """
    B = x.shape[0]
    if not isinstance(splits, int) or splits < 2 or B % splits:
        raise ValueError(f"zico needs an integer splits >= 2 dividing the batch size {B}, got {splits!r}")
    ids, b = _ids(cell), B // splits
    G = [_weight_leaves(net, _loss_backward(net, variables, cell, x[m * b:(m + 1) * b], y[m * b:(m + 1) * b])[1], ids)
         for m in range(splits)]
    tot = 0.0
    for layer in zip(*G):
        g = jnp.stack([gg for _, gg, _ in layer])  # (M, ...)
        sd = jnp.std(g, axis=0)
        ratio = jnp.where(sd > 0, jnp.mean(jnp.abs(g), axis=0) / jnp.where(sd > 0, sd, 1.0), 0.0)
        ssum = jnp.sum(ratio)
        tot = tot + layer[0][2] * jnp.where(ssum > 0, jnp.log(jnp.where(ssum > 0, ssum, 1.0)), 0.0)
    return _nan_unless_connected(tot, cell)


# --------------------------------------------------------------------------- robustness-aware
def _cos(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
    """Cosine similarity along ``axis`` as ``torch.nn.CosineSimilarity(eps=1e-8)`` (PyTorch ≥ 1.12:
    a·b / (max(‖a‖, 1e-8)·max(‖b‖, 1e-8)); 0 for a zero vector)."""
    na = jnp.maximum(jnp.sqrt(jnp.sum(a * a, axis=axis)), 1e-8)
    nb = jnp.maximum(jnp.sqrt(jnp.sum(b * b, axis=axis)), 1e-8)
    return jnp.sum(a * b, axis=axis) / (na * nb)


def _stage_features(net: TinyNetwork, params, rec) -> list[jax.Array]:
    """CRoZe's "activated features": [stem output, output of reduction block 1, of reduction
    block 2, output of the last stage, global-pooled features (B, 4C)], from a tapped forward's
    records (train-mode BN)."""
    out = [batch_norm(rec["stem/conv_out"], params["stem_bn"], None, True)[0]]
    for k, kind, _ in net.cell_positions():
        if kind == "reduce":
            n = f"cells_{k}"
            yb = batch_norm(rec[f"{n}/conv_b/conv_out"], params[n]["conv_b"]["bn"], None, True)[0]
            out.append(yb + conv(rec[f"{n}/downsample/in"], params[n]["downsample"]["kernel"]))
    return out + [rec["lastact/conv_out"], rec["features"]]


def _feature_index(net: TinyNetwork, path: str) -> int:
    """CRoZe's layer → feature pairing: ⌊(cells up to and including the layer's block) / N⌋,
    the classifier the pooled features (index 4); the stem conv 0."""
    if path == "stem_conv":
        return 0
    if path == "classifier":
        return 4
    k = int(path.split("/")[0].split("_")[1])
    cells = sum(1 for kk, kind, _ in net.cell_positions() if kind == "cell" and kk <= k)
    return cells // net.N


def croze(net, variables, cell, x, y, key=None, weight_step: float = 2.0, eps: float = 0.01) -> jax.Array:
    """``croze``: consistency-based robust zero-cost proxy (Ha, Kim, Hwang, "Generalizable
    Lightweight Proxy for Robust NAS against Diverse Perturbations", NeurIPS 2023; reference
    HyeonjeongHa/CRoZe ``zero_cost_methods/pruners/measures/croze.py`` and ``p_utils.py``
    ``adj_weights``).

    With θ = |params| (every parameter replaced by its absolute value, as the reference's
    ``linearize``), g = ∂CE(f_θ(x), y)/∂θ:

    1. robust surrogate θ_r: for every Conv/Linear weight W_l, W_l + w·‖W_l‖/‖g_l‖·g_l (one
       normalised gradient-*ascent* step on the clean loss, w = ``weight_step`` = 2.0); other
       parameters unchanged;
    2. x_adv = :func:`robntk.attacks.fgsm` on the surrogate (one L∞ sign step of size ``eps``
       in [0, 1] pixel units, clipped to [0, 1]); g_r = ∂CE(f_θr(x_adv), y)/∂θ_r;
    3. per Conv/Linear layer l (the layers of :func:`_weight_leaves`) with its paired feature
       map z (:func:`_feature_index`: the stage feature of :func:`_stage_features`, z of f_θ at
       x, z_r of f_θr at x_adv):
       s_l = |Σ(1 + cos(W_r, W)) · Σ|cos(g_r, g)| · Σ(1 + cos(z_r, z))|, the weight and
       gradient cosines along the output-channel axis (PyTorch ``dim=0`` of an (O, I, k, k)
       weight), the feature cosine along the batch axis, each summed over the remaining
       entries;
    4. score = Σ_l s_l (higher = predicted more robust).

    Mirrored: the three consistency factors and their product per layer, the |θ| linearisation,
    the normalised weight step (w = 2, weights of ndim > 1 only), the FGSM input from the
    surrogate, the loss on the clean net at x and on the surrogate at x_adv, the layer →
    feature pairing (the reference's ``layer_cnt // 5`` written for N cells per stage), the
    cosine eps 1e-8. A layer with a zero gradient (an op on a dead-end node) scores 0. **Not mirrored**: the reference runs its own NB201 model with BN removed
    (``bn=False``) except in the reduction blocks and with biased cell convs; here the
    NB201 TinyNetwork keeps every BN in train mode (batch statistics) and has no conv biases.
    Its FGSM *subtracts* ε·sign(∇) on the normalised tensor (ε = 0.01 in normalised units) and
    clamps that tensor to [0, 1]; here the attack ascends the loss in pixel space (robntk's one
    attack convention), ε = ``eps`` in pixel units. Float64 as the reference only under x64
    (the params' dtype is used).

    Args: see module docstring; x (B, H, W, 3) in [0, 1], y (B,) int. weight_step: w ≥ 0.
        eps: FGSM radius in [0, 1].

    Returns: scalar ≥ 0 (params dtype); NaN for a cell without an input→output path.

    Raises: ValueError: N < 1, or a bad eps (:func:`robntk.attacks.check_attack_args`).
    """
    if net.N < 1:
        raise ValueError(f"croze pairs layers with stage features and needs N >= 1, got N={net.N}")
    ids = _ids(cell)
    theta = jax.tree_util.tree_map(jnp.abs, variables["params"])
    taps = {k: jnp.zeros(s, theta["stem_conv"]["kernel"].dtype) for k, s in net.tap_shapes(x.shape).items()}

    def f(q, z):
        return net.forward(q, None, z, cell, True)[0]

    def loss(q, z):
        return _ce(f(q, z), y)

    g = jax.grad(loss)(theta, x)
    mask = _kernel_mask(theta)

    def step(w, gg, m):
        n = jnp.sqrt(jnp.sum(jnp.square(w))) / (jnp.sqrt(jnp.sum(jnp.square(gg))) + 1e-30)
        return w + m * weight_step * n * gg

    theta_r = jax.tree_util.tree_map(step, theta, g, mask)
    x_adv = attacks.fgsm(f, theta_r, x, y, eps)
    g_r = jax.grad(loss)(theta_r, x_adv)
    z = _stage_features(net, theta, net.forward(theta, None, x, cell, True, taps=taps)[1])
    z_r = _stage_features(net, theta_r, net.forward(theta_r, None, x_adv, cell, True, taps=taps)[1])
    tot = 0.0
    for (path, w, a), (_, wr, _), (_, gg, _), (_, gr, _) in zip(
            _weight_leaves(net, theta, ids), _weight_leaves(net, theta_r, ids),
            _weight_leaves(net, g, ids), _weight_leaves(net, g_r, ids)):
        i = _feature_index(net, path)
        w_sim = jnp.sum(1 + _cos(wr, w, -1))
        g_sim = jnp.sum(jnp.abs(_cos(gr, gg, -1)))
        f_sim = jnp.sum(1 + _cos(z_r[i], z[i], 0))
        tot = tot + a * jnp.abs(w_sim * g_sim * f_sim)
    return _nan_unless_connected(tot, cell)


#: Proxy name → function (NASLib names).
PROXIES: dict[str, Proxy] = {
    "params": params, "flops": flops, "synflow": synflow, "grad_norm": grad_norm, "snip": snip,
    "plain": plain, "l2_norm": l2_norm, "fisher": fisher, "grasp": grasp, "nwot": nwot, "jacov": jacov,
    "epe_nas": epe_nas, "zen": zen, "zico": zico, "tenas_ntk_cond": tenas_ntk_cond, "linear_regions": linear_regions,
    "croze": croze,
}
#: Proxies that need no forward pass (closed form in the cell): their integer counts, which
#: :func:`proxy_table` divides by 1e6 on the host (the exact decimal NAS-Bench-Suite-Zero prints).
CLOSED_FORM = {"params": lambda net, cell, x: param_count(net, cell), "flops": flop_count}
#: Proxies :func:`proxy_table` computes in float64 (weights and batch cast, x64 enabled for the
#: call), as NASLib does: ``synflow`` overflows float32 for large cells.
FLOAT64_PROXIES = ("synflow",)
#: Proxies that share one forward/backward pass: group function → its members. :func:`proxy_table`
#: computes the members an arch still needs in one call of the group function (one compile).
GROUPS: dict[Callable[..., dict], tuple[str, ...]] = {
    loss_gradient_proxies: ("grad_norm", "snip", "plain", "fisher"),
    input_jacobian_proxies: ("jacov", "epe_nas"),
}


def check_proxy_names(names: Sequence[str]) -> list[str]:
    """Validate proxy names. Raises: ValueError naming the unknown ones and the allowed ones."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in PROXIES]
    if bad or not names:
        raise ValueError(f"unknown proxy name(s) {bad or names!r}; allowed: {', '.join(PROXIES)}")
    return names


def proxy_table(names: Sequence[str], arch_indices: Sequence[int], net: TinyNetwork, variables,
                x: jax.Array, y: jax.Array, space, key: jax.Array | None = None,
                progress: bool = True, store=None, store_config: Mapping | None = None,
                time_budget_s: float | None = None, flush_s: float = 30.0) -> pd.DataFrame:
    """Several proxies for many archs, one compile per proxy (the cell as data), optionally
    resumable through :class:`robntk.store.ResultStore`. Requested members of a :data:`GROUPS`
    group share one call (one forward/backward pass per arch for all of them).

    Archs are visited in the given order and every proxy of an arch is computed before the next
    arch, so a run cut short leaves complete rows.

    Args:
        names: proxy names (:data:`PROXIES`). arch_indices: NB201 indices. net, variables: the
            network and its full-tree variables. x (B, H, W, 3) in [0, 1], y (B,) int: the batch
            (the same for all archs). space: :class:`robntk.searchspace.SearchSpace`.
        key: PRNG key passed to every proxy (default PRNGKey(0)). progress: show tqdm.
        store: directory of a resumable store, one sub-store per proxy (``STORE/<name>``, keyed
            by the proxy name, its compute dtype and ``store_config``): values already stored are read, not
            recomputed; new ones are appended (atomically) every ``flush_s`` seconds and at the
            end, so a killed run loses at most ``flush_s`` seconds. None: nothing on disk.
        store_config: JSON-able dict of everything besides the name that determines a value
            (network, init seed, batch digest, key); required with ``store``.
        time_budget_s: start no new arch after this many seconds (None: no limit).

    Returns:
        DataFrame indexed by ``nb201_index`` (the archs with every proxy computed, in the given
        order) with ``arch_str``, one float64 column per proxy, and ``{name}_undefined`` (bool):
        True where the value is not finite or the cell has no input→output path (for those the
        value is NaN, never a silent number).

    Raises:
        ValueError: unknown proxy names (lists the allowed ones), bad indices, ``store`` without
            ``store_config``. robntk.store.StoreMismatchError: ``store`` holds another config.
    """
    from tqdm.auto import tqdm

    names = check_proxy_names(names)
    idx = list(dict.fromkeys(space.check_index(int(i)) for i in arch_indices))
    key = jax.random.PRNGKey(0) if key is None else key
    stores: dict[str, ResultStore] = {}
    have: dict[str, dict[int, dict]] = {n: {} for n in names}
    if store is not None:
        if store_config is None:
            raise ValueError("proxy_table(store=...) needs store_config (what determines the values)")
        for n in names:
            cfg = {"proxy": n, **dict(store_config)}
            if n in FLOAT64_PROXIES:
                cfg["compute_dtype"] = "float64"
            elif n in CLOSED_FORM:
                cfg["compute"] = "integer count / 1e6 on the host"
            k = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
            stores[n] = ResultStore.open(Path(store) / n, k, {"config": cfg})
            have[n] = stores[n].read().rows
    todo = [i for i in idx if any(i not in have[n] for n in names)]
    # Each requested proxy is computed by a "unit": its GROUPS function (shared by the requested
    # members of the group) or the proxy alone; one jit per unit.
    unit_of = {n: next((g for g, ms in GROUPS.items() if n in ms), PROXIES[n]) for n in names}
    members = {u: [n for n in names if unit_of[n] is u] for u in dict.fromkeys(unit_of.values())}
    fns = {u: jax.jit(lambda v, c, xx, yy, kk, fn=u, ms=tuple(ms): (
               fn(net, v, c, xx, yy, kk) if fn in GROUPS else {ms[0]: fn(net, v, c, xx, yy, kk)}))
           for u, ms in members.items() if ms[0] not in CLOSED_FORM}
    counts = {n: jax.jit(lambda c, fn=CLOSED_FORM[n]: fn(net, c, x)) for n in names if n in CLOSED_FORM}
    pending: dict[str, list[dict]] = {n: [] for n in names}
    if any(n in FLOAT64_PROXIES for n in names):
        with jax.enable_x64(True):  # the float64 copies of FLOAT64_PROXIES (the same weights and batch)
            v64, x64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (variables, x))

    def values(u, ms, c) -> dict[str, float]:
        if ms[0] in CLOSED_FORM:
            return {ms[0]: int(counts[ms[0]](c)) / 1e6}
        if ms[0] not in FLOAT64_PROXIES:
            out = fns[u](variables, c, x, y, key)
        else:
            with jax.enable_x64(True):
                out = fns[u](v64, c, x64, y, key)
        return {n: float(out[n]) for n in ms}

    def flush():
        for n, rows in pending.items():
            if rows and n in stores:
                stores[n].append(rows)
            rows.clear()

    start = last = time.time()
    try:
        for i in tqdm(todo, desc="proxies", unit="arch", disable=not progress):
            if time_budget_s is not None and time.time() - start > time_budget_s:
                break
            c = jnp.asarray(check_op_ids(op_ids(space.ops(i))))
            for u, ms in members.items():
                if all(i in have[n] for n in ms):
                    continue
                t0 = time.time()
                vals = values(u, ms, c)
                dt = time.time() - t0
                for n in ms:
                    if i not in have[n]:
                        row = {KEY: i, n: vals[n], f"{n}_s": dt}
                        have[n][i] = row
                        pending[n].append(row)
            if time.time() - last > flush_s:
                flush()
                last = time.time()
    finally:
        flush()  # also on KeyboardInterrupt / errors: keep what was computed
    done = [i for i in idx if all(i in have[n] for n in names)]
    out = pd.DataFrame(index=pd.Index(done, name="nb201_index"))
    out["arch_str"] = [space.arch_str(i) for i in done]
    connected = np.array([is_connected(space.ops(i)) for i in done], bool)
    for n in names:
        vals = np.array([have[n][i][n] for i in done], np.float64)
        bad = ~np.isfinite(vals) | (~connected if n not in CLOSED_FORM else np.zeros(len(done), bool))
        vals[bad] = np.nan
        out[n] = vals
        out[f"{n}_undefined"] = bad
    return out
