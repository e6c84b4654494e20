"""Empirical neural tangent kernels of ``f(params, x)`` with respect to all trainable parameters.

For a batch function ``f(params, X) -> (B, O)`` logits, the empirical NTK is

    K(X1, X2)[i, j] = ⟨∂g(params, X1)_i / ∂params, ∂g(params, X2)_j / ∂params⟩

where ``g`` is the read-out selected by ``output_mode``:

* ``'sum'``   — g_i = Σ_k f_ik (scalar per example; TE-NAS convention). K: (B1, B2).
* ``'label'`` — g_i = f_{i, y_i}, the true-class logit (needs labels). K: (B1, B2).
* ``'trace'`` — Σ_k ⟨∇f_ik, ∇f_jk⟩, the trace over logits (a *sum*; neural-tangents'
  ``trace_axes`` returns the *mean*, i.e. this divided by O). K: (B1, B2).
* ``'full'``  — every logit pair, K: (B1, B2, O, O) (neural-tangents' ``trace_axes=()`` layout).

Batch coupling. A network with BatchNorm in train mode normalises with the batch's statistics,
so every output depends on every example: the Jacobian of example i is the Jacobian of the
*batch function* (a vector-Jacobian product with cotangent e_i through the whole batch). That is
what ``independent_rows=False`` (the default, always correct) computes. When the rows are
independent (BN in eval mode, no BN), ``independent_rows=True`` uses per-example Jacobians,
which is B times cheaper; it is wrong for coupled functions.

Two independent implementations (Novak et al., "Fast Finite Width Neural Tangent Kernel",
ICML 2022, §3):

* :func:`jacobian` + :func:`gram` (``implementation='jacobian'``): Jacobian contraction.
  Cost N·O·[FP] (N²·O·[FP] when coupled) for the Jacobians plus N²·O·P for the contraction;
  memory N·O·P.
* ``implementation='ntvp'``: NTK-vector products, column chunk by column chunk: a VJP of the
  X2 batch then a JVP of the X1 batch. Memory O(chunk·P), no Jacobian stored.

Both chunk over examples/cotangents (``chunk_size``) with :func:`jax.lax.map`, so peak memory
grows with the chunk, not with B. The inputs ``x`` may be an array or a pytree of arrays that share
their leading (batch) size, e.g. ``(images, one_hot_labels)``.

Implementations. :data:`IMPLEMENTATIONS` is robntk's one table of NTK implementations (the
engine's ``--implementation`` choices and :func:`robntk.ntk.ntk_fn.empirical_ntk_fn` read it):
``'auto'`` (``'layerwise'`` for a :class:`~robntk.nb201.network.NetworkFn`, else ``'jacobian'``),
``'layerwise'`` (:mod:`robntk.ntk.layerwise`, the NB201 network only), ``'jacobian'`` and
``'ntvp'`` (this module, any ``f``: :data:`GENERIC_IMPLEMENTATIONS`). neural-tangents' integer
codes map onto them through :data:`NT_IMPLEMENTATION_CODES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

OUTPUT_MODES = ("sum", "trace", "label", "full")
#: robntk's NTK implementations, defined once (kernels, engine and CLI import this tuple).
IMPLEMENTATIONS = ("auto", "layerwise", "jacobian", "ntvp")
#: The implementations of this module, valid for any ``f(params, x)``.
GENERIC_IMPLEMENTATIONS = ("jacobian", "ntvp")
#: neural-tangents' ``NtkImplementation`` codes (0.6.5) → robntk's names: 0 AUTO, 1
#: JACOBIAN_CONTRACTION, 2 NTK_VECTOR_PRODUCTS, 3 STRUCTURED_DERIVATIVES (robntk's structured
#: path is the per-layer NTK of the NB201 network, :mod:`robntk.ntk.layerwise`).
NT_IMPLEMENTATION_CODES = {0: "auto", 1: "jacobian", 2: "ntvp", 3: "layerwise"}
HIGHEST = jax.lax.Precision.HIGHEST

Fn = Callable[[Any, jax.Array], jax.Array]


def unrolled_map(f: Callable, xs: Any) -> Any:
    """``jax.lax.map(f, xs)`` as a Python loop in the trace: ``f`` applied to every slice of the
    leading axis of the pytree ``xs``, outputs stacked on a new leading axis.

    Used on the hot paths of the kernels (chunks of cotangents, stacked batches, attack radii)
    instead of :func:`jax.lax.map`: XLA:CPU runs gradient convolutions inside a ``while`` loop
    several times slower than the same ops outside one (measured on the 2-core CPU, jax 0.10.2:
    8 gradients of a 6-conv stack 4.0 s in ``lax.map`` vs 0.69 s unrolled; the train-mode NTK of
    arch 2581 at B=32 in chunks of 8, 130 s vs 14 s). The price is compile time, which grows at
    least linearly with the number of slices, so keep the leading axis short (prefer
    :func:`jax.vmap` where memory allows).

    Raises:
        ValueError: ``xs`` has no leaves or leaves with different leading sizes.
    """
    leaves = jax.tree_util.tree_leaves(xs)
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"unrolled_map needs leaves with one common leading size, got {sorted(sizes)}")
    n = sizes.pop()
    outs = [f(jax.tree_util.tree_map(lambda a, i=i: a[i], xs)) for i in range(n)]
    return jax.tree_util.tree_map(lambda *o: jnp.stack(o), *outs)


def check_output_mode(output_mode: str, labels=None) -> None:
    """Raise ValueError for an unknown output mode or missing labels in ``'label'`` mode."""
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"unknown output_mode {output_mode!r}; allowed: {', '.join(OUTPUT_MODES)}")
    if output_mode == "label" and labels is None:
        raise ValueError("output_mode='label' needs labels (int array of shape (B,))")


def readout(out: jax.Array, output_mode: str, labels: jax.Array | None = None) -> jax.Array:
    """Map logits (B, O) to the read-out whose NTK is taken: (B, 1) for sum/label, (B, O) else."""
    if output_mode == "sum":
        return jnp.sum(out, axis=-1, keepdims=True)
    if output_mode == "label":
        return jnp.take_along_axis(out, labels[:, None].astype(jnp.int32), axis=-1)
    return out


def batch_size(x: Any) -> int:
    """Leading (batch) size of the inputs ``x``: an array, or a pytree of arrays sharing it.

    Raises:
        ValueError: ``x`` has no array leaves, a 0-d leaf, or leaves with different leading sizes.
    """
    leaves = jax.tree_util.tree_leaves(x)
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if not leaves or None in sizes or len(sizes) != 1:
        raise ValueError(
            f"inputs must be an array or a pytree of arrays with one common leading (batch) size, "
            f"got leaf shapes {[np.shape(a) for a in leaves]}"
        )
    return sizes.pop()


def _flatten_leaf(j: jax.Array, batch_dims: int) -> jax.Array:
    return j.reshape(j.shape[:batch_dims] + (-1,))


def jacobian(
    f: Fn,
    params: Any,
    x: jax.Array,
    *,
    output_mode: str = "sum",
    labels: jax.Array | None = None,
    independent_rows: bool = False,
    chunk_size: int | None = None,
) -> Any:
    """Jacobian of the read-out w.r.t. the parameters.

    Args:
        f: ``f(params, X) -> (B, O)``, a pure batch function.
        params: pytree of arrays.
        x: inputs (B, ...), e.g. images (B, H, W, 3) in [0, 1], or a pytree of such arrays.
        output_mode: see module docstring (``'trace'`` and ``'full'`` give the same Jacobian).
        labels: int (B,), needed for ``'label'``.
        independent_rows: rows of ``f`` are independent (no train-mode BN): per-example Jacobians.
        chunk_size: examples (independent) or cotangents (coupled) processed at once; ``None``
            = all at once.

    Returns:
        Pytree like ``params`` with leaves of shape (B, O', *leaf.shape), O' = 1 for
        ``'sum'``/``'label'`` and O otherwise; dtype of the parameters.

    Raises:
        ValueError: unknown output mode, missing labels, inputs without one batch size (per-example
            path).
    """
    check_output_mode(output_mode, labels)
    if independent_rows:
        B = batch_size(x)

        def one(xi, yi):
            yb = None if yi is None else yi[None]
            xb = jax.tree_util.tree_map(lambda a: a[None], xi)
            return jax.jacrev(lambda p: readout(f(p, xb), output_mode, yb)[0])(params)

        if labels is None:
            return jax.lax.map(lambda xi: one(xi, None), x, batch_size=chunk_size or B)
        return jax.lax.map(lambda a: one(*a), (x, labels), batch_size=chunk_size or B)

    g = lambda p: readout(f(p, x), output_mode, labels)
    out, vjp_fn = jax.vjp(g, params)
    B, Op = out.shape  # rows of the batch function (= the batch size for a per-example output)
    basis = jnp.eye(B * Op, dtype=out.dtype).reshape(B * Op, B, Op)
    # vmapped VJPs over the basis, chunk by chunk (lax.map's batch_size vmaps inside a chunk)
    jac = jax.lax.map(lambda c: vjp_fn(c)[0], basis, batch_size=chunk_size or B * Op)
    return jax.tree_util.tree_map(lambda j: j.reshape((B, Op) + j.shape[1:]), jac)


def gram(jac1: Any, jac2: Any, output_mode: str = "sum") -> jax.Array:
    """Contract two Jacobians (from :func:`jacobian`) into the NTK.

    Args:
        jac1, jac2: pytrees with leaves (B1, O', ...) and (B2, O', ...).

    Returns:
        (B1, B2) for sum/label/trace, (B1, B2, O, O) for full; float accumulation at
        ``Precision.HIGHEST`` (no TF32 on GPUs).
    """
    check_output_mode(output_mode, labels=0)
    l1 = jax.tree_util.tree_leaves(jac1)
    l2 = jax.tree_util.tree_leaves(jac2)
    spec = "iap,jbp->ijab" if output_mode == "full" else "iap,jap->ij"
    terms = [jnp.einsum(spec, _flatten_leaf(a, 2), _flatten_leaf(b, 2), precision=HIGHEST) for a, b in zip(l1, l2)]
    return sum(terms[1:], terms[0])


def _ntvp(f, params, x1, x2, output_mode, labels1, labels2, chunk_size):
    """NTK by NTK-vector products: columns K[:, j] = J1 (J2ᵀ e_j)."""
    g1 = lambda p: readout(f(p, x1), output_mode, labels1)
    g2 = lambda p: readout(f(p, x2), output_mode, labels2)
    out2, vjp2 = jax.vjp(g2, params)
    _, jvp1 = jax.linearize(g1, params)
    B2, Op = out2.shape
    basis = jnp.eye(B2 * Op, dtype=out2.dtype).reshape(B2 * Op, B2, Op)

    def column(c):
        return jvp1(vjp2(c)[0])  # (B1, Op)

    cols = jax.lax.map(column, basis, batch_size=chunk_size or B2 * Op)  # (B2*Op, B1, Op)
    cols = cols.reshape(B2, Op, cols.shape[1], Op)  # [j, b, i, a]
    if output_mode == "full":
        return jnp.transpose(cols, (2, 0, 3, 1))  # [i, j, a, b]
    if output_mode == "trace":
        return jnp.einsum("jaia->ij", cols)
    return cols[:, 0, :, 0].T


def empirical_ntk(
    f: Fn,
    params: Any,
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    output_mode: str = "sum",
    labels1: jax.Array | None = None,
    labels2: jax.Array | None = None,
    independent_rows: bool = False,
    implementation: str = "jacobian",
    chunk_size: int | None = None,
) -> jax.Array:
    """Empirical NTK K(X1, X2) (``x2=None`` → K(X1, X1)).

    Args:
        f: ``f(params, X) -> (B, O)`` logits; in train-mode BN each call normalises with its own
            batch, so K(X1, X2) pairs the Jacobian of the X1 batch with that of the X2 batch.
        params: parameter pytree (all leaves are treated as trainable).
        x1: (B1, ...) inputs. x2: (B2, ...) inputs or None.
        output_mode: ``'sum'``, ``'label'``, ``'trace'`` or ``'full'`` (module docstring).
        labels1, labels2: int labels, needed for ``'label'`` (labels2 defaults to labels1 when
            ``x2`` is None).
        independent_rows: rows of ``f`` independent (BN eval mode): cheaper per-example path.
            Ignored by ``'ntvp'``, which is correct either way.
        implementation: ``'jacobian'`` (contraction) or ``'ntvp'`` (NTK-vector products)
            (:data:`GENERIC_IMPLEMENTATIONS`; the NB201 network's ``'layerwise'`` path and the
            neural-tangents-style interface are :func:`robntk.ntk.ntk_fn.empirical_ntk_fn`).
        chunk_size: bound on examples/cotangents processed at once (memory).

    Returns:
        (B1, B2) array, or (B1, B2, O, O) for ``'full'``.

    Raises:
        ValueError: unknown output mode or implementation, missing labels.
    """
    if implementation not in GENERIC_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown implementation {implementation!r} for a generic f; allowed: "
            f"{', '.join(GENERIC_IMPLEMENTATIONS)} (for 'layerwise' use robntk.ntk.empirical_ntk_fn)"
        )
    same = x2 is None
    if same:
        x2, labels2 = x1, labels1
    check_output_mode(output_mode, labels1)
    check_output_mode(output_mode, labels2)
    if implementation == "ntvp":
        return _ntvp(f, params, x1, x2, output_mode, labels1, labels2, chunk_size)
    kw = dict(output_mode=output_mode, independent_rows=independent_rows, chunk_size=chunk_size)
    j1 = jacobian(f, params, x1, labels=labels1, **kw)
    j2 = j1 if same else jacobian(f, params, x2, labels=labels2, **kw)
    return gram(j1, j2, output_mode)


def finite_difference_ntk(
    f: Fn, params: Any, x1, x2=None, *, output_mode: str = "sum", labels1=None, labels2=None, h: float = 1e-5
) -> np.ndarray:
    """Reference NTK from central finite differences, one parameter at a time (tiny nets only).

    Builds the Jacobian column ∂g/∂θ_p ≈ (g(θ + h e_p) − g(θ − h e_p)) / 2h for every scalar
    parameter, in the dtype of ``params`` (use float64 for accuracy). Cost 2·P forward passes.

    Returns:
        numpy array shaped like :func:`empirical_ntk`'s output.
    """
    check_output_mode(output_mode, labels1)
    if x2 is None:
        x2, labels2 = x1, labels1
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g1 = lambda v: readout(f(unravel(v), x1), output_mode, labels1)
    g2 = lambda v: readout(f(unravel(v), x2), output_mode, labels2)

    def jac(g):
        def col(p):
            e = jnp.zeros_like(flat).at[p].set(h)
            return (g(flat + e) - g(flat - e)) / (2 * h)

        cols = jax.jit(lambda idx: jax.lax.map(col, idx, batch_size=64))(jnp.arange(flat.shape[0]))
        return np.moveaxis(np.asarray(cols), 0, -1)  # (B, O', P)

    j1, j2 = jac(g1), jac(g2)
    if output_mode == "full":
        return np.einsum("iap,jbp->ijab", j1, j2)
    return np.einsum("iap,jap->ij", j1, j2)
