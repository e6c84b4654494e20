"""Exact empirical NTK of the NB201 network from per-layer parameter gradients (both BN modes).

The NTK is ``K = Σ_ℓ G_ℓ G_ℓᵀ`` over the network's layers ℓ, where the rows of ``G_ℓ`` are the
gradients of the read-out w.r.t. the parameters of layer ℓ. One batched backward pass w.r.t.
zero *taps* added to every layer output (before and after each BN; flax ``perturb``-style, see
:meth:`robntk.nb201.network.TinyNetwork.forward`) gives the cotangent ``δ`` of every layer output, and
the parameter gradients follow from the recorded layer inputs: for a conv layer
``Σ_hw patches(a)[hw] ⊗ δ[hw]`` (one batched matmul per kernel offset over shifted input slices,
:func:`_conv_grad`), for BN ``Σ_hw δ·x̂`` and ``Σ_hw δ``, for the classifier
``features ⊗ δ_logits`` and ``δ_logits``. The full Jacobian of all layers is never stored in
eval mode.

Two regimes (``train``):

* **eval-mode BN (independent rows).** The cotangent of example i only reaches example i, so
  ONE backward pass of the batch with an all-ones cotangent gives every example's δ and the
  per-example gradients (no sum over the batch). Cost ≈ one forward + backward of the batch
  plus the weight-gradient FLOPs and the Gram contraction N²·O'·P (Novak et al., ICML 2022,
  §3; per-example gradients: Goodfellow 2015). ``trace`` sums O one-hot-class cotangents
  (chunked), ``full`` vmaps over them.
* **train-mode BN (rows coupled through batch statistics).** Every output depends on every
  example, so the Jacobian row of read-out i is the VJP of the *batch function* with cotangent
  e_i: B·O' backward passes of the whole batch, batched with :func:`jax.vmap` over the basis
  (chunked to ``chunk_size`` cotangents, a Python loop over chunks:
  :func:`robntk.ntk.empirical.unrolled_map`), each layer's gradient summed over the batch. This is
  inherently O(B²·[FP]) against O(B·[FP]) with independent rows. The δ at a conv output
  includes the path through the batch mean and variance (it is the cotangent of the pre-BN
  tap), so the result is the exact NTK of the function a PyTorch model in ``train()`` mode
  computes (TE-NAS's ``get_ntk_n`` with
  ``train_mode=True``).

Cells: for a cell given as data each edge's gradients are computed inside a ``lax.switch`` on
its op id (only the chosen op's FLOPs; unused parameters contribute nothing); for a fixed cell
only the cell's layers are traced. Equal to :func:`robntk.ntk.empirical.empirical_ntk` of the same network
function (tests: ≤1e-8 relative in float64, both BN modes, every output mode) and to finite
differences.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3, edge_module_name, static_cell
from robntk.nb201.layers import BN_EPS
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import NUM_EDGES
from robntk.ntk import empirical as ntk

HIGHEST = jax.lax.Precision.HIGHEST


def patches(a: jax.Array, k: int, stride: int) -> jax.Array:
    """im2col: (n, H, W, C) → (n, H', W', k·k·C) (feature order (kh, kw, C)) with the padding
    of :func:`robntk.nb201.network.conv`, built from k² strided slices of the padded input (used in
    tests to check :func:`_conv_grad`)."""
    if k == 1 and stride == 1:
        return a
    p = (k - 1) // 2
    n, H, W, C = a.shape
    Ho, Wo = (H + 2 * p - k) // stride + 1, (W + 2 * p - k) // stride + 1
    ap = jnp.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = [
        ap[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :]
        for i in range(k)
        for j in range(k)
    ]
    return jnp.concatenate(cols, axis=-1)


def _conv_grad(a, delta, k, stride, coupled):
    """Conv-weight gradient flattened in HWIO order: a (n,H,W,Ci), delta (C',n,H',W',Co) →
    per example (C', n, k·k·Ci·Co), or summed over the batch (C', k·k·Ci·Co) when ``coupled``.
    One ``einsum`` per kernel offset over the matching strided slice of the padded input."""
    spec = "nhwc,onhwd->ocd" if coupled else "nhwc,onhwd->oncd"
    lead = delta.shape[:1] if coupled else delta.shape[:2]
    if k == 1 and stride == 1:
        return jnp.einsum(spec, a, delta, precision=HIGHEST).reshape(lead + (-1,))
    p = (k - 1) // 2
    Ho, Wo = delta.shape[2], delta.shape[3]
    ap = jnp.pad(a, ((0, 0), (p, p), (p, p), (0, 0)))
    blocks = [
        jnp.einsum(
            spec,
            ap[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :],
            delta,
            precision=HIGHEST,
        )
        for i in range(k)
        for j in range(k)
    ]
    return jnp.stack(blocks, axis=len(lead)).reshape(lead + (-1,))


def _bn_grads(conv_out, delta, s, train, coupled):
    """BN (scale, bias) gradients from the BN input ``conv_out`` (n,H,W,C) and the cotangent of
    the BN output ``delta`` (C',n,H,W,C): per example (C',n,C) each, or summed (C',C)."""
    if train:
        mean = jnp.mean(conv_out, axis=(0, 1, 2))
        var = jnp.maximum(0.0, jnp.mean(jnp.square(conv_out), axis=(0, 1, 2)) - jnp.square(mean))
    else:
        mean, var = s["mean"], s["var"]
    xhat = (conv_out - mean) * jax.lax.rsqrt(var + BN_EPS)
    axes = (1, 2, 3) if coupled else (2, 3)
    return jnp.sum(delta * xhat, axis=axes), jnp.sum(delta, axis=axes)


def _gram(parts, full: bool):
    """Σ over parts of G Gᵀ: each part (O', n, P) → (n, n) (summed over O') or (n, n, O, O)."""
    g = jnp.concatenate(parts, axis=-1)
    if full:
        return jnp.einsum("anp,bmp->nmab", g, g, precision=HIGHEST)
    return jnp.einsum("anp,amp->nm", g, g, precision=HIGHEST)


def _backward(net: TinyNetwork, params, stats, cell, x, labels, output_mode, train, cts):
    """Forward with taps, then the tap cotangents for each read-out cotangent in ``cts``
    (C', n, O''): returns (records, dict tap → (C', ...))."""
    shapes = net.tap_shapes(x.shape)
    taps = {k: jnp.zeros(v, x.dtype) for k, v in shapes.items()}
    taps["logits"] = jnp.zeros((x.shape[0], net.num_classes), x.dtype)

    def fun(t):
        logits, rec = net.forward(params, stats, x, cell, train, taps=t)
        return ntk.readout(logits + t["logits"], output_mode, labels), rec

    _, vjp_fn, rec = jax.vjp(fun, taps, has_aux=True)
    if cts.shape[0] == 1:  # one cotangent: no vmap (its extra axis costs layout copies on CPU)
        d = jax.tree_util.tree_map(lambda a: a[None], vjp_fn(cts[0])[0])
    else:
        d = jax.vmap(lambda c: vjp_fn(c)[0])(cts)
    return rec, d


def _layers(net: TinyNetwork, stats, cell, rec, d, train, coupled):
    """Per-layer gradient parts. Yields ``('fixed', parts)`` for layers present for every cell
    and ``('edge', (op_id, operands))`` for the conv modules of a cell-as-data edge, where
    ``operands`` = (edge input (pre-ReLU), conv output, cotangent after BN, cotangent before BN,
    running statistics of the 1×1 module, of the 3×3 module) are the arguments of the shared
    ``lax.switch`` branches (:func:`_edge_parts`, :func:`_edge_row_branches`,
    :func:`_edge_gram_branches`)."""
    ops = static_cell(cell)
    get = lambda tree, *path: _get(tree, path)

    def rcb(prefix, s, k, stride, a=None):
        a = jax.nn.relu(rec[f"{prefix}/in"]) if a is None else a
        gs, gb = _bn_grads(rec[f"{prefix}/conv_out"], d[prefix], s, train, coupled)
        return [_conv_grad(a, d[f"{prefix}/pre"], k, stride, coupled), gs, gb]

    yield "fixed", rcb("stem", get(stats, "stem_bn"), 3, 1, a=rec["stem/in"])
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            for sub, stride in (("conv_a", 2), ("conv_b", 1)):
                yield "fixed", rcb(f"{name}/{sub}", get(stats, name, sub, "bn"), 3, stride)
            yield "fixed", [_conv_grad(rec[f"{name}/downsample/in"], d[f"{name}/downsample"], 1, 1, coupled)]
            continue
        for e in range(NUM_EDGES):
            pre = f"{name}/e{e}"
            if ops is not None:
                if ops[e] in ("nor_conv_1x1", "nor_conv_3x3"):
                    ks = 1 if ops[e] == "nor_conv_1x1" else 3
                    yield "fixed", rcb(pre, get(stats, name, edge_module_name(e, ops[e]), "bn"), ks, 1)
                continue
            sts = (
                (None, None)
                if train
                else tuple(get(stats, name, edge_module_name(e, op), "bn") for op in ("nor_conv_1x1", "nor_conv_3x3"))
            )
            yield "edge", (cell[e], (rec[f"{pre}/in"], rec[f"{pre}/conv_out"], d[pre], d[f"{pre}/pre"], *sts))
    gs, gb = _bn_grads(rec["lastact/conv_out"], d["lastact"], get(stats, "lastact_bn"), train, coupled)
    feats, dl = rec["features"], d["logits"]  # (n, F), (C', n, O)
    spec = "nf,onc->ofc" if coupled else "nf,onc->onfc"
    gw = jnp.einsum(spec, feats, dl, precision=HIGHEST)
    gw = gw.reshape(gw.shape[:1] + (-1,)) if coupled else gw.reshape(gw.shape[:2] + (-1,))
    yield "fixed", [gs, gb, gw, jnp.sum(dl, axis=1) if coupled else dl]


@functools.cache
def _edge_parts(k: int, train: bool, coupled: bool):
    """Gradient parts of an edge's k×k conv module, ``f(h, conv_out, d_post, d_pre, s) ->
    [conv kernel, BN scale, BN bias]`` (shapes of :func:`_part_shapes`). One shared function per
    static setting, so that JAX traces it once per shape, not once per edge."""

    def parts(h, conv_out, d_post, d_pre, s):
        a = jax.nn.relu(h)
        gs, gb = _bn_grads(conv_out, d_post, s, train, coupled)
        return [_conv_grad(a, d_pre, k, 1, coupled), gs, gb]

    return parts


def _part_shapes(h, d_pre, k: int, coupled: bool) -> list[tuple[int, ...]]:
    """Shapes of :func:`_edge_parts`' outputs: lead (C',) coupled or (C', n) per example, then
    k·k·Ci·Co for the kernel and C for each BN vector."""
    lead = d_pre.shape[:1] if coupled else d_pre.shape[:2]
    return [lead + (k * k * h.shape[-1] * d_pre.shape[-1],), lead + d_pre.shape[-1:], lead + d_pre.shape[-1:]]


@functools.cache
def _edge_row_branches(train: bool, coupled: bool):
    """The 5 ``lax.switch`` branches (op order) of an edge's Jacobian rows: each takes the
    ``operands`` of :func:`_layers` and returns (1×1 parts, 3×3 parts), zeros for the module the
    op does not use."""
    p1, p3 = _edge_parts(1, train, coupled), _edge_parts(3, train, coupled)

    def zeros(h, d_pre, k):
        return [jnp.zeros(s, d_pre.dtype) for s in _part_shapes(h, d_pre, k, coupled)]

    def none(h, conv_out, d_post, d_pre, s1, s3):
        return zeros(h, d_pre, 1), zeros(h, d_pre, 3)

    def conv1(h, conv_out, d_post, d_pre, s1, s3):
        return p1(h, conv_out, d_post, d_pre, s1), zeros(h, d_pre, 3)

    def conv3(h, conv_out, d_post, d_pre, s1, s3):
        return zeros(h, d_pre, 1), p3(h, conv_out, d_post, d_pre, s3)

    branches = [none] * 5
    branches[CONV1], branches[CONV3] = conv1, conv3
    return tuple(branches)


@functools.cache
def _edge_gram_branches(full: bool):
    """The 5 ``lax.switch`` branches of an edge's contribution to the independent-rows NTK
    (eval-mode BN): (n, n) or (n, n, C', C') from the ``operands`` of :func:`_layers`."""
    p1, p3 = _edge_parts(1, False, False), _edge_parts(3, False, False)

    def none(h, conv_out, d_post, d_pre, s1, s3):
        n, c = h.shape[0], d_pre.shape[0]
        return jnp.zeros((n, n, c, c) if full else (n, n), h.dtype)

    def conv1(h, conv_out, d_post, d_pre, s1, s3):
        return _gram(p1(h, conv_out, d_post, d_pre, s1), full)

    def conv3(h, conv_out, d_post, d_pre, s1, s3):
        return _gram(p3(h, conv_out, d_post, d_pre, s3), full)

    branches = [none] * 5
    branches[CONV1], branches[CONV3] = conv1, conv3
    return tuple(branches)


def _get(tree, path):
    for k in path:
        if tree is None:
            return None
        tree = tree.get(k)
    return tree


def _basis(n: int, Op: int, dtype):
    """The B·O' one-hot read-out cotangents, (B·O', n, O')."""
    return jnp.eye(n * Op, dtype=dtype).reshape(n * Op, n, Op)


def _independent_ntk(net, params, stats, cell, x, labels, output_mode, cts, full):
    """Σ_ℓ G_ℓ G_ℓᵀ for independent rows and read-out cotangents ``cts`` (C', n, O'')."""
    rec, d = _backward(net, params, stats, cell, x, labels, output_mode, False, cts)
    n = x.shape[0]
    shape = (n, n, cts.shape[0], cts.shape[0]) if full else (n, n)
    K = jnp.zeros(shape, x.dtype)
    for kind, item in _layers(net, stats, cell, rec, d, False, False):
        if kind == "fixed":
            K = K + _gram(item, full)
            continue
        op_id, operands = item
        K = K + jax.lax.switch(op_id, _edge_gram_branches(full), *operands)
    return K


def jacobian_rows(
    net: TinyNetwork,
    params,
    stats,
    cell,
    x: jax.Array,
    labels: jax.Array | None = None,
    output_mode: str = "sum",
    train: bool = True,
    chunk_size: int | None = None,
) -> jax.Array:
    """The Jacobian of the read-out as one (B, O', P_eff) array of per-layer gradient rows.

    For a cell as data, ``P_eff`` includes both conv modules of every edge (zeros for the
    unchosen op), so it is the same for every cell; contractions of these rows equal those of
    the network's true Jacobian.

    Args:
        net, params, stats, cell: the network, its parameters and running statistics, the cell.
        x: (B, H, W, 3) in [0, 1]. labels: int (B,), needed for ``'label'``.
        output_mode: ``'sum'`` | ``'label'`` (O' = 1) | ``'trace'`` | ``'full'`` (O' = O).
        train: BN with batch statistics (rows coupled: B·O' backward passes of the batch) or
            running statistics (independent rows: per-example gradients of one backward pass
            per read-out logit).
        chunk_size: cotangents per vmapped backward (coupled rows; memory bound); None = all.

    Returns:
        (B, O', P_eff) array, dtype of x.

    Raises:
        ValueError: unknown output mode, missing labels, bad chunk size.
    """
    ntk.check_output_mode(output_mode, labels)
    n = x.shape[0]
    Op = 1 if output_mode in ("sum", "label") else net.num_classes

    def rows(cts, coupled):
        rec, d = _backward(net, params, stats, cell, x, labels, output_mode, train, cts)
        out = []
        for kind, item in _layers(net, stats, cell, rec, d, train, coupled):
            if kind == "fixed":
                out += item
                continue
            op_id, operands = item
            r1, r3 = jax.lax.switch(op_id, _edge_row_branches(train, coupled), *operands)
            out += r1 + r3
        return jnp.concatenate(out, axis=-1)

    if not train:
        cts = (
            jnp.broadcast_to(jnp.eye(Op, dtype=x.dtype)[:, None, :], (Op, n, Op))
            if Op > 1
            else jnp.ones((1, n, 1), x.dtype)
        )
        return jnp.swapaxes(rows(cts, False), 0, 1)  # (n, O', P)
    basis = _basis(n, Op, x.dtype)
    c = basis.shape[0] if chunk_size is None else _check_chunk(chunk_size)
    if c >= basis.shape[0]:
        J = rows(basis, True)
    else:
        pad = -basis.shape[0] % c
        b = jnp.concatenate([basis, jnp.zeros((pad,) + basis.shape[1:], basis.dtype)]) if pad else basis
        J = ntk.unrolled_map(lambda cc: rows(cc, True), b.reshape((-1, c) + basis.shape[1:]))
        J = J.reshape((-1,) + J.shape[2:])[: basis.shape[0]]
    return J.reshape(n, Op, -1)


def _check_chunk(chunk_size) -> int:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    return chunk_size


def layerwise_ntk(
    net: TinyNetwork,
    params,
    stats,
    cell,
    x: jax.Array,
    labels: jax.Array | None = None,
    output_mode: str = "sum",
    train: bool = False,
    chunk_size: int | None = None,
) -> jax.Array:
    """Exact empirical NTK K(X, X) of the network with ``cell``.

    Args:
        net: the :class:`~robntk.nb201.network.TinyNetwork`. params, stats: its ``params`` and
            ``batch_stats``. cell: fixed (arch string / op names) or int (6,) op ids (traced
            or concrete).
        x: (n, H, W, 3) inputs in [0, 1]. labels: int (n,), needed for ``'label'``.
        output_mode: ``'sum'`` | ``'label'`` | ``'trace'`` (sum over logits) | ``'full'``.
        train: BN with batch statistics (rows coupled; module docstring) or running statistics.
        chunk_size: cotangents per vmapped backward (coupled rows, or ``trace`` with
            independent rows); None = all at once.

    Returns:
        (n, n), or (n, n, O, O) for ``'full'`` — equal to
        ``robntk.ntk.empirical.empirical_ntk(f, params, x, output_mode=...)`` of
        ``f = net.make_apply(variables, cell, 'train' if train else 'eval')[0]``.

    Raises:
        ValueError: unknown output mode, missing labels, bad chunk size.
    """
    ntk.check_output_mode(output_mode, labels)
    if train:
        J = jacobian_rows(net, params, stats, cell, x, labels, output_mode, True, chunk_size)
        return ntk.gram(J, J, output_mode)
    n, O = x.shape[0], net.num_classes
    if output_mode in ("sum", "label"):
        return _independent_ntk(net, params, stats, cell, x, labels, output_mode, jnp.ones((1, n, 1), x.dtype), False)
    eye = jnp.eye(O, dtype=x.dtype)
    if output_mode == "full":
        cts = jnp.broadcast_to(eye[:, None, :], (O, n, O))
        return _independent_ntk(net, params, stats, cell, x, labels, output_mode, cts, True)
    c = O if chunk_size is None else min(_check_chunk(chunk_size), O)
    pad = -O % c
    classes = jnp.concatenate([eye, jnp.zeros((pad, O), x.dtype)]) if pad else eye

    def chunk(rows):  # rows (c, O): c one-hot classes, summed
        cts = jnp.broadcast_to(rows[:, None, :], (rows.shape[0], n, O))
        return _independent_ntk(net, params, stats, cell, x, labels, output_mode, cts, False)

    return jnp.sum(ntk.unrolled_map(chunk, classes.reshape(-1, c, O)), axis=0)
