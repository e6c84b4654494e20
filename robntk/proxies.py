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
  no proxy here — all are deterministic given the weights and the batch — kept for the one
  signature).

BN mode: batch statistics (``train=True``), as NASLib's ``find_measures`` runs the network in
``train()`` mode; ``synflow`` alone is BN-free (NASLib's ``bn=False``). Layers summed over
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
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .network import CONV1, CONV3, POOL, TinyNetwork, batch_norm, check_op_ids, conv, normalize, op_ids
from .searchspace import NUM_EDGES, is_connected

Proxy = Callable[..., jax.Array]


# --------------------------------------------------------------------------- helpers
def _ids(cell) -> jax.Array:
    """int32 (6,) op ids of a cell given as arch string, op names or (possibly traced) ids."""
    if isinstance(cell, jax.core.Tracer):
        return cell.astype(jnp.int32)
    return jnp.asarray(op_ids(cell))


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


def _loss_grads(net, variables, cell, x, y):
    """(params, ∂CE/∂params) in train-BN mode on the normalised batch."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    params = variables["params"]

    def loss(p):
        return _ce(pn.forward(p, None, xn, cell, True)[0], y)

    return params, jax.grad(loss)(params)


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
def grad_norm(net, variables, cell, x, y, key=None) -> jax.Array:
    """``grad_norm``: Σ_layers ‖∂L/∂W_l‖₂ over Conv/Linear weights, L = mean cross-entropy of
    the batch, train-mode BN (Abdelfattah et al. 2021; NASLib ``measures/grad_norm.py``).

    Args: see module docstring; x (B, H, W, 3), y (B,) int. Returns: scalar (params dtype).
    """
    p, g = _loss_grads(net, variables, cell, x, y)
    ids = _ids(cell)
    return sum(a * jnp.sqrt(jnp.sum(jnp.square(w))) for _, w, a in _weight_leaves(net, g, ids))


def snip(net, variables, cell, x, y, key=None) -> jax.Array:
    """``snip``: Σ |W ⊙ ∂L/∂W| over Conv/Linear weights (Lee et al., ICLR 2019, connection
    sensitivity; NASLib ``measures/snip.py``: the gradient w.r.t. an all-ones weight mask equals
    W ⊙ ∂L/∂W), L = mean cross-entropy, train-mode BN. Returns: scalar."""
    p, g = _loss_grads(net, variables, cell, x, y)
    ids = _ids(cell)
    pw, gw = _weight_leaves(net, p, ids), _weight_leaves(net, g, ids)
    return sum(jnp.sum(jnp.abs(w * gg)) for (_, w, _), (_, gg, _) in zip(pw, gw))


def plain(net, variables, cell, x, y, key=None) -> jax.Array:
    """``plain``: Σ W ⊙ ∂L/∂W (signed) over Conv/Linear weights, L = mean cross-entropy,
    train-mode BN (NASLib ``measures/plain.py``). Returns: scalar."""
    p, g = _loss_grads(net, variables, cell, x, y)
    ids = _ids(cell)
    pw, gw = _weight_leaves(net, p, ids), _weight_leaves(net, g, ids)
    return sum(jnp.sum(w * gg) for (_, w, _), (_, gg, _) in zip(pw, gw))


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
    dtype (NASLib: float64; use x64 for large networks, float32 overflows near 1e38).

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
    from .network import BN_EPS

    def fix_bn(tree):
        if isinstance(tree, dict):
            if "scale" in tree and "bias" in tree and len(tree) == 2:
                return {"scale": jnp.ones_like(tree["scale"]), "bias": jnp.zeros_like(tree["bias"])}
            return {k: fix_bn(v) for k, v in tree.items()}
        return tree

    params_ = fix_bn(params_)
    stats = jax.tree_util.tree_map(lambda a: a, variables["batch_stats"])
    stats = jax.tree_util.tree_map(lambda a: a, stats)

    def stat_fix(tree):
        if "mean" in tree and "var" in tree:
            return {"mean": jnp.zeros_like(tree["mean"]), "var": jnp.full_like(tree["var"], 1.0 - BN_EPS)}
        return {k: stat_fix(v) for k, v in tree.items()}

    stats = stat_fix(stats)
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


def nwot(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``nwot``: log|K_H| (Mellor et al., "Neural Architecture Search without Training", ICML
    2021; NASLib ``measures/nwot.py``), K_H = Σ_ReLUs c·cᵀ + (1 − c)(1 − c)ᵀ with c (B, D) the
    binary codes 1[z > 0] of each ReLU's input z (flattened per example), over the ReLUs of
    :func:`relu_inputs`; train-mode BN. Returns: the log-determinant (``slogdet``'s second
    value, sign ignored as NASLib does), float64 under x64. Shapes: x (B, H, W, 3) → K (B, B)."""
    K = 0.0
    for z, a in relu_inputs(net, variables, cell, x):
        c = (z.reshape(z.shape[0], -1) > 0).astype(z.dtype)
        K = K + a * (c @ c.T + (1 - c) @ (1 - c).T)
    return jnp.linalg.slogdet(K)[1]


def jacov(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``jacov``: Jacobian covariance (Mellor et al. 2020, v1 of arXiv 2006.04647; NASLib
    ``measures/jacov.py``): J = ∂(Σ_{b,k} f(x)_{bk})/∂x on the normalised input (train-mode BN,
    so rows couple through the batch), rows flattened (B, H·W·3), Σ = corrcoef(J) (B, B),
    score = −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over the eigenvalues λ of Σ. Returns:
    scalar; NaN when a row of J is constant (correlation undefined)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    J = jax.grad(lambda z: jnp.sum(pn.forward(variables["params"], None, z, cell, True)[0]))(xn)
    J = J.reshape(J.shape[0], -1)
    Jc = J - J.mean(axis=1, keepdims=True)
    cov = Jc @ Jc.T
    d = jnp.sqrt(jnp.diag(cov))
    corr = cov / (d[:, None] * d[None, :])
    v = jnp.linalg.eigvalsh(corr)
    k = 1e-5
    return -jnp.sum(jnp.log(v + k) + 1.0 / (v + k))


def fisher(net, variables, cell, x, y, key=None) -> jax.Array:
    """``fisher``: Σ_layers Σ_channels m_l · ½·mean_b (Σ_{h,w} a_{bkhw} · ∂L/∂a_{bkhw})²
    (Theis et al. 2018, Turner et al. 2020; NASLib ``measures/fisher.py``), a = output of each
    Conv/Linear layer (conv output before BN; logits for the classifier), L = mean cross-entropy,
    train-mode BN. m_l = prod(W_l.shape[1:]) in PyTorch layout (C_in·k² for a conv, 4C for the
    classifier): NASLib broadcasts each channel's value to all the weights of that channel
    before summing, so it counts m_l times. Returns: scalar (params dtype)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    p = variables["params"]
    taps = {k: jnp.zeros(s, xn.dtype) for k, s in pn.tap_shapes(x.shape).items()}

    def loss(t, zl):
        logits, rec = pn.forward(p, None, xn, cell, True, taps=t)
        return _ce(logits + zl, y), (rec, logits)

    zl = jnp.zeros((x.shape[0], net.num_classes), xn.dtype)
    (gt, gl), (rec, logits) = jax.grad(loss, argnums=(0, 1), has_aux=True)(taps, zl)
    ids = _ids(cell)

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


#: Proxy name → function (NASLib names).
PROXIES: dict[str, Proxy] = {
    "params": params, "flops": flops, "synflow": synflow, "grad_norm": grad_norm, "snip": snip,
    "plain": plain, "l2_norm": l2_norm, "fisher": fisher, "grasp": grasp, "nwot": nwot, "jacov": jacov,
}
#: Proxies that need no forward pass (closed form in the cell).
CLOSED_FORM = ("params", "flops")


def check_proxy_names(names: Sequence[str]) -> list[str]:
    """Validate proxy names. Raises: ValueError naming the unknown ones and the allowed ones."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in PROXIES]
    if bad or not names:
        raise ValueError(f"unknown proxy name(s) {bad or names!r}; allowed: {', '.join(PROXIES)}")
    return names


def proxy_table(names: Sequence[str], arch_indices: Sequence[int], net: TinyNetwork, variables,
                x: jax.Array, y: jax.Array, space, key: jax.Array | None = None,
                progress: bool = True) -> pd.DataFrame:
    """Several proxies for many archs, one compile per proxy (the cell as data).

    Args:
        names: proxy names (:data:`PROXIES`). arch_indices: NB201 indices. net, variables: the
            network and its full-tree variables. x (B, H, W, 3) in [0, 1], y (B,) int: the batch
            (the same for all archs). space: :class:`robntk.searchspace.SearchSpace`.
        key: PRNG key passed to every proxy (default PRNGKey(0)). progress: show tqdm.

    Returns:
        DataFrame indexed by ``nb201_index`` with ``arch_str``, one float64 column per proxy,
        and ``{name}_undefined`` (bool): True where the value is not finite or the cell has no
        input→output path (for those the value is NaN, never a silent number).

    Raises:
        ValueError: unknown proxy names (lists the allowed ones), bad indices.
    """
    from tqdm.auto import tqdm

    names = check_proxy_names(names)
    idx = [space.check_index(int(i)) for i in arch_indices]
    key = jax.random.PRNGKey(0) if key is None else key
    ids = check_op_ids(np.stack([op_ids(space.ops(i)) for i in idx]))
    connected = np.array([is_connected(space.ops(i)) for i in idx])
    out = pd.DataFrame(index=pd.Index(idx, name="nb201_index"))
    out["arch_str"] = [space.arch_str(i) for i in idx]
    for n in names:
        fn = PROXIES[n]
        f = jax.jit(lambda v, c, xx, yy, kk, fn=fn: fn(net, v, c, xx, yy, kk))
        vals = np.empty(len(idx))
        for j in tqdm(range(len(idx)), desc=n, disable=not progress):
            vals[j] = float(f(variables, jnp.asarray(ids[j]), x, y, key))
        bad = ~np.isfinite(vals) | (~connected if n not in CLOSED_FORM else np.zeros(len(idx), bool))
        vals[bad] = np.nan
        out[n] = vals
        out[f"{n}_undefined"] = bad
    return out
