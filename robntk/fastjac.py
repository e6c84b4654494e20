"""Exact NTK of the NB201 supernet from per-example gradients of ONE batched backward pass.

For independent rows (eval-mode BN, the default of :class:`robntk.scoring.ScoreConfig`) the
per-example parameter gradient of layer ℓ is ``g_i = Σ_hw patches(a_i)[hw] ⊗ δ_i[hw]`` where
``a_i`` is the layer's input for example i and ``δ_i`` the cotangent of its output. One batched
backward pass w.r.t. zero *taps* added to every layer output (flax ``perturb``-style, see
:meth:`robntk.supernet.SuperNet.forward`) gives every ``δ_i`` at once — the rows are independent,
so the cotangent of example i only reaches example i. The per-example gradients then follow from
explicit im2col contractions (one batched matmul per kernel offset over shifted input slices,
:func:`_conv_grad`; :func:`patches` is the materialised im2col used in tests), and the NTK is
accumulated layer by layer, ``K = Σ_ℓ G_ℓ G_ℓᵀ``; the full Jacobian is never
stored. BN (eval) scale/bias gradients are ``Σ_hw δ·x̂`` and ``Σ_hw δ``; the classifier's are
``features ⊗ δ_logits`` and ``δ_logits``.

Why: ``vmap(jacrev)`` per-example Jacobians make XLA emit per-example weight gradients as
grouped convolutions, which are slow on CPU (3–6 s for arch 2581, B=32), while this costs about
one forward + backward of the batch plus the weight-gradient FLOPs (no batch reduction) and the
Gram contraction N²·O'·P (Novak et al., ICML 2022, "Fast Finite Width NTK", §3 cost model;
the per-example-gradient trick: Goodfellow, 2015, "Efficient per-example gradient
computations").

Cells: each edge's contribution is computed inside a ``lax.switch`` on its op id, so an
un-vmapped call computes only the chosen op's gradients (and unused parameters contribute
nothing, as in the dedicated network).

Output modes: ``sum``/``label`` need one backward pass; ``trace`` loops over the O logits with
``lax.map`` (one backward each, summed); ``full`` vmaps over the O logits (memory ×O: use a
small batch). Equal to :func:`robntk.ntk.empirical_ntk` with ``independent_rows=True`` on the
dedicated network (tests: ≤1e-5 relative in float64). Train-mode BN couples the rows: not
supported here (use the generic implementation).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

from . import ntk
from .network import BN_EPS
from .searchspace import NUM_EDGES
from .supernet import CONV1, CONV3, SuperNet

HIGHEST = jax.lax.Precision.HIGHEST


def patches(a: jax.Array, k: int, stride: int) -> jax.Array:
    """im2col: (n, H, W, C) → (n, H', W', k·k·C) (feature order (kh, kw, C)) with the padding
    of :func:`robntk.supernet.conv`, built from k² strided slices of the padded input (pure data
    movement; :func:`jax.lax.conv_general_dilated_patches` would spend k²·C² FLOPs per pixel
    on a one-hot convolution)."""
    if k == 1 and stride == 1:
        return a
    p = (k - 1) // 2
    n, H, W, C = a.shape
    Ho, Wo = (H + 2 * p - k) // stride + 1, (W + 2 * p - k) // stride + 1
    ap = jnp.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = [ap[:, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :]
            for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, axis=-1)


def _conv_grad(a, delta, k, stride):
    """Per-example conv-weight gradient, flattened in HWIO order:
    a (n,H,W,Ci), delta (O',n,H',W',Co) → (O',n,k·k·Ci·Co).

    One ``einsum`` per kernel offset over the matching strided slice of the padded input (k²
    batched matmuls contracting over H'·W'); ~6× faster on XLA:CPU than one einsum over
    materialised im2col patches (:func:`patches`) at NB201's first-stage shapes."""
    if k == 1 and stride == 1:
        g = jnp.einsum("nhwc,onhwd->oncd", a, delta, precision=HIGHEST)
        return g.reshape(g.shape[:2] + (-1,))
    p = (k - 1) // 2
    Ho, Wo = delta.shape[2], delta.shape[3]
    ap = jnp.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
    blocks = [jnp.einsum("nhwc,onhwd->oncd",
                         ap[:, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :], delta,
                         precision=HIGHEST)
              for i in range(k) for j in range(k)]
    g = jnp.stack(blocks, axis=2)  # (O', n, k·k, Ci, Co)
    return g.reshape(g.shape[:2] + (-1,))


def _bn_grads(pre, delta, p, s):
    """Eval-mode BN: (scale, bias) per-example grads (O',n,C) each and the cotangent at its input."""
    inv = jax.lax.rsqrt(s["var"] + BN_EPS)
    xhat = (pre - s["mean"]) * inv
    g_scale = jnp.sum(delta * xhat, axis=(2, 3))
    g_bias = jnp.sum(delta, axis=(2, 3))
    return g_scale, g_bias, delta * (inv * p["scale"])


def _gram(parts, full: bool):
    """Σ over parts of G Gᵀ: each part (O', n, P) → (n, n) (summed over O') or (n, n, O, O)."""
    g = jnp.concatenate(parts, axis=-1)
    if full:
        return jnp.einsum("anp,bmp->nmab", g, g, precision=HIGHEST)
    return jnp.einsum("anp,amp->nm", g, g, precision=HIGHEST)


def _ntk_from_cotangent(net: SuperNet, params, stats, ids, x, labels, output_mode: str, cts, full: bool):
    """NTK contribution of the read-out cotangents ``cts`` (O', n, O'') (one backward each)."""
    n = x.shape[0]
    shapes = net.tap_shapes(x.shape)
    zeros = {k: jnp.zeros(v, x.dtype) for k, v in shapes.items()}

    def fun(t):
        logits, rec = net.forward(params, stats, x, ids, False, taps={k: t[k] for k in shapes})
        logits = logits + t["logits"]
        return ntk.readout(logits, output_mode, labels), rec

    taps = dict(zeros, logits=jnp.zeros((n, net.num_classes), x.dtype))
    _, vjp_fn, rec = jax.vjp(fun, taps, has_aux=True)
    if cts.shape[0] == 1:  # one cotangent: no vmap (its extra axis costs layout copies on CPU)
        d = jax.tree_util.tree_map(lambda a: a[None], vjp_fn(cts[0])[0])
    else:
        d = jax.vmap(lambda c: vjp_fn(c)[0])(cts)  # tap → (O', ...)

    K = 0.0
    # stem: conv (normalised input, no ReLU) → BN
    gs, gb, dc = _bn_grads(rec["stem/conv_out"], d["stem"], params["stem_bn"], stats["stem_bn"])
    K = K + _gram([_conv_grad(rec["stem/in"], dc, 3, 1), gs, gb], full)
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        p, s = params[name], stats.get(name, {})
        if kind == "reduce":
            for sub, stride in (("conv_a", 2), ("conv_b", 1)):
                gs, gb, dc = _bn_grads(rec[f"{name}/{sub}/conv_out"], d[f"{name}/{sub}"], p[sub]["bn"], s[sub]["bn"])
                a = jax.nn.relu(rec[f"{name}/{sub}/in"])
                K = K + _gram([_conv_grad(a, dc, 3, stride), gs, gb], full)
            K = K + _gram([_conv_grad(rec[f"{name}/downsample/in"], d[f"{name}/downsample"], 1, 1)], full)
            continue
        for e in range(NUM_EDGES):
            K = K + _edge_contribution(p, s, e, ids[e], rec[f"{name}/e{e}/in"], rec[f"{name}/e{e}/conv_out"],
                                       d[f"{name}/e{e}"], full, n, cts.shape[0] if full else None, x.dtype)
    gs, gb, _ = _bn_grads(rec["lastact/in"], d["lastact"], params["lastact_bn"], stats["lastact_bn"])
    K = K + _gram([gs, gb], full)
    feats, dl = rec["features"], d["logits"]  # (n, F), (O', n, O)
    gw = jnp.einsum("nf,onc->onfc", feats, dl, precision=HIGHEST).reshape(dl.shape[:2] + (-1,))
    K = K + _gram([gw, dl], full)
    return K


def _edge_contribution(p, s, e, op_id, h_in, conv_out, delta, full, n, O, dtype):
    """Gram contribution of one cell edge, computed only for the chosen op (``lax.switch``)."""
    shape = (n, n, O, O) if full else (n, n)

    def zero(*_):
        return jnp.zeros(shape, dtype)

    def conv_op(op, k):
        mod = f"e{e}_{op}"

        def br(h_in, conv_out, delta):
            gs, gb, dc = _bn_grads(conv_out, delta, p[mod]["bn"], s[mod]["bn"])
            return _gram([_conv_grad(jax.nn.relu(h_in), dc, k, 1), gs, gb], full)
        return br

    branches = [zero] * 5
    branches[CONV1] = conv_op("nor_conv_1x1", 1)
    branches[CONV3] = conv_op("nor_conv_3x3", 3)
    return jax.lax.switch(op_id, branches, h_in, conv_out, delta)


def empirical_ntk(net: SuperNet, params, stats, ids, x: jax.Array, labels: jax.Array | None = None,
                  output_mode: str = "sum") -> jax.Array:
    """Exact empirical NTK K(X, X) of the supernet with cell ``ids`` in eval-mode BN.

    Args:
        net: the :class:`~robntk.supernet.SuperNet`. params, stats: its variables' ``params`` and
            ``batch_stats``. ids: int (6,) op ids (traced or concrete).
        x: (n, H, W, 3) inputs in [0, 1]. labels: int (n,), needed for ``'label'``.
        output_mode: ``'sum'`` | ``'label'`` | ``'trace'`` (sum over logits) | ``'full'``.

    Returns:
        (n, n), or (n, n, O, O) for ``'full'`` — equal to
        ``robntk.ntk.empirical_ntk(f, extract(params), x, output_mode=..., independent_rows=True)``
        of the dedicated network.

    Raises:
        ValueError: unknown output mode or missing labels.
    """
    ntk.check_output_mode(output_mode, labels)
    n, O = x.shape[0], net.num_classes
    if output_mode in ("sum", "label"):
        return _ntk_from_cotangent(net, params, stats, ids, x, labels, output_mode, jnp.ones((1, n, 1), x.dtype), False)
    eye = jnp.eye(O, dtype=x.dtype)
    if output_mode == "full":
        cts = jnp.broadcast_to(eye[:, None, :], (O, n, O))
        return _ntk_from_cotangent(net, params, stats, ids, x, labels, output_mode, cts, True)

    def one(o):
        ct = jnp.broadcast_to(eye[o][None, None, :], (1, n, O))
        return _ntk_from_cotangent(net, params, stats, ids, x, labels, output_mode, ct, False)

    return jnp.sum(jax.lax.map(one, jnp.arange(O)), axis=0)


def kernel_matrices(net: SuperNet, params, stats, ids, x: jax.Array, y: jax.Array, cfg, key: jax.Array,
                    attack_f=None, unroll: int | bool = 1) -> dict[str, jax.Array]:
    """Same output as :func:`robntk.scoring.kernel_matrices` (eval-mode BN), via
    :func:`empirical_ntk` on the stacked batch [X, X̃_ε1..εE, X̃̃_ε1..εE] (rows are independent,
    so stacking is exact); the attacks are :func:`robntk.scoring.perturbed_batches`.

    Args:
        net, params, stats, ids: supernet, variables, cell op ids (6,).
        x: (B, H, W, 3) in [0, 1]; y: int (B,). cfg: :class:`robntk.scoring.ScoreConfig` with
            ``bn_mode='eval'``. key: attack PRNG key (split per ε as in scoring).
        attack_f: ``f(params, X)`` the attacks differentiate (default: the eval-mode supernet).
        unroll: PGD loop unrolling (:func:`robntk.attacks.pgd`; compilation only).

    Returns:
        dict name → (B, B) or (B, B, O, O), names of ``cfg.kernel_names()``.

    Raises:
        ValueError: ``cfg.bn_mode`` is not ``'eval'``.
    """
    if cfg.bn_mode != "eval":
        raise ValueError("fastjac needs bn_mode='eval' (independent rows); use the generic implementation")
    from .scoring import kernels_from_gram, perturbed_batches

    if attack_f is None:
        attack_f = lambda p, xx: net.forward(p, stats, xx, ids, False)[0]
    B, E = x.shape[0], len(cfg.eps)
    X = jnp.concatenate([x, *perturbed_batches(attack_f, params, x, y, cfg, key, unroll)], axis=0)
    G = empirical_ntk(net, params, stats, ids, X, jnp.tile(y, 1 + 2 * E), cfg.output_mode)
    return kernels_from_gram(G, B, cfg, [(1 + k, 1 + E + k) for k in range(E)])
