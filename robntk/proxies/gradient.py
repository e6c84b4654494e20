"""Proxies from one loss backward at initialisation (NASLib ``grad_norm``, ``snip``, ``plain``,
``fisher``, ``grasp``) and the data-free ``synflow`` and ``l2_norm``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3
from robntk.nb201.layers import BN_EPS, conv, normalize
from robntk.nb201.searchspace import NUM_EDGES
from robntk.proxies._common import _ce, _ids, _plain_net, _weight_leaves


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
        treedef,
        [
            jnp.ones((), l.dtype) if jax.tree_util.keystr(p).endswith("['kernel']") else jnp.zeros((), l.dtype)
            for p, l in flat
        ],
    )


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
