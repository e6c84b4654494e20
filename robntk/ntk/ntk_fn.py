"""One NTK entry point with neural-tangents' interface: ``empirical_ntk_fn(f, trace_axes, ...)``.

``empirical_ntk_fn(f, trace_axes=(-1,), diagonal_axes=(), vmap_axes=None, implementation=...)``
returns ``ntk_fn(x1, x2, params, **apply_fn_kwargs)``, with the signature, argument meanings,
output layout and normalisation of neural-tangents 0.6.5 ``nt.empirical_ntk_fn`` (Novak, Sohl-
Dickstein, Schoenholz, "Fast Finite Width Neural Tangent Kernel", ICML 2022; public API docs of
``neural_tangents/_src/empirical.py``), so code written for neural-tangents switches by changing
the import::

    from robntk.ntk import empirical_ntk_fn          # was: from neural_tangents import empirical_ntk_fn
    ntk_fn = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation=1)
    K = ntk_fn(x_test, x_train, params)              # (N1, N2)

The kernel. For ``f(params, x)`` with output of shape ``S = (S_0, ..., S_{n-1})`` (the batch is
one of these axes, usually 0), the full empirical NTK is
``Θ[a, b] = Σ_p ∂f(x1)[a]/∂θ_p · ∂f(x2)[b]/∂θ_p`` over output multi-indices ``a``, ``b``. Then,
for every output axis ``k`` in order:

* ``k`` in ``trace_axes``: summed over the pair ``a_k = b_k`` and divided by ``S_k`` — the
  **mean** over the axis (robntk's ``output_mode='trace'`` is the sum, O times larger);
* ``k`` in ``diagonal_axes``: only ``a_k = b_k`` kept, one axis of size ``S_k``;
* otherwise the pair ``(a_k, b_k)`` is kept as two adjacent axes (NT's "zipped" layout).

So an ``(N, O)`` output gives ``(N1, N2)`` for ``trace_axes=(-1,)``, ``(N1, N2, O, O)`` for
``trace_axes=()``, ``(N,)`` for ``trace_axes=(-1,), diagonal_axes=(0,)`` and ``(N, O, O)`` for
``trace_axes=(), diagonal_axes=(0,)``.

Implementations (``implementation``: a name of :data:`robntk.ntk.empirical.IMPLEMENTATIONS` or
neural-tangents' integer code, :data:`robntk.ntk.empirical.NT_IMPLEMENTATION_CODES`):

==========  ==============================  ===============================================
NT code     robntk name                     what runs
==========  ==============================  ===============================================
0 AUTO      ``'auto'`` (default)            ``'layerwise'`` for a NetworkFn, else ``'jacobian'``
1 JACOBIAN  ``'jacobian'``                  :func:`robntk.ntk.empirical.empirical_ntk`, Jacobian contraction
2 NTK_VP    ``'ntvp'``                      :func:`robntk.ntk.empirical.empirical_ntk`, NTK-vector products
3 STRUCT.   ``'layerwise'``                 :mod:`robntk.ntk.layerwise` per-layer NTK (NetworkFn only)
==========  ==============================  ===============================================

neural-tangents' default is code 1; robntk's default ``'auto'`` runs code 1's algorithm for every
``f`` that is not a robntk NetworkFn, so the two defaults give the same computation there.
Every implementation gives the same kernel up to float rounding (``tests/test_ntk_entry.py``).

Batch axis and ``vmap_axes``. As in neural-tangents, ``vmap_axes=None`` (the default) makes no
assumption (always exact: the Jacobian of the whole batch function, e.g. BatchNorm with batch
statistics), while an int (or a triple ``(in_axes, out_axes, kwargs_axes)``) certifies that
output slice ``i`` along ``out_axes`` depends only on input slice ``i`` along ``in_axes``, which
lets the Jacobian contraction use per-example Jacobians. A wrong certificate gives a wrong
kernel, silently in neural-tangents; robntk refuses it for a train-mode NetworkFn.

Cost. The kernel is computed on rows = the output's batch axis (``out_axes``, else axis 0): the
"trace" kernel (R1, R2) when every other axis is traced, else the full (R1, R2, M, M) kernel
(M = product of the other axes), from which the traces and diagonals are then taken. A diagonal
along the batch axis therefore costs as much as the full (R1, R2) block here (neural-tangents
saves it for some implementations). ``'ntvp'`` ignores ``vmap_axes`` (its products run on whole
batches, exact either way; slower than neural-tangents' per-example products when the
certificate holds). ``'layerwise'`` with ``x2`` given contracts the two batches' per-layer
Jacobian rows (memory B·O·P); with ``x2=None`` it never stores them in eval mode. A scalar output
gives a scalar kernel (the axes arguments are then ignored).

Differences from neural-tangents (each raises ``ValueError`` rather than differing silently):
pytree *outputs* of ``f`` (NT: one kernel per output leaf) and an ``rng`` keyword argument (NT
splits it between x1 and x2) are not supported, nor a pytree of ``in_axes``. Extra keyword:
``chunk_size`` (bound on cotangents/examples per batch of derivative passes, memory).
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk.nb201.network import NetworkFn
from robntk.ntk import empirical as ntk
from robntk.ntk import layerwise as layer_ntk

Axes = int | tuple[int, ...] | list[int]


def resolve_implementation(f: Callable, implementation: str | int) -> str:
    """A robntk name or neural-tangents code → ``'layerwise'``, ``'jacobian'`` or ``'ntvp'``.

    Args:
        f: the function whose NTK is taken (a :class:`~robntk.nb201.network.NetworkFn` or any
            ``f(params, x)``).
        implementation: a name of :data:`robntk.ntk.empirical.IMPLEMENTATIONS` or an int code
            0..3 (neural-tangents' ``NtkImplementation``, an ``IntEnum``, is accepted as its int).

    Returns:
        the implementation that runs (``'auto'`` resolved).

    Raises:
        ValueError: unknown name or code, or ``'layerwise'`` (code 3) for a plain callable.
    """
    name = implementation
    if isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool):
        name = ntk.NT_IMPLEMENTATION_CODES.get(int(implementation))
        if name is None:
            raise ValueError(
                f"unknown implementation code {implementation!r}; allowed: "
                f"{', '.join(f'{k} ({v})' for k, v in ntk.NT_IMPLEMENTATION_CODES.items())}"
            )
    elif implementation not in ntk.IMPLEMENTATIONS:
        raise ValueError(
            f"unknown implementation {implementation!r}; allowed: {', '.join(ntk.IMPLEMENTATIONS)} "
            f"or neural-tangents' codes {sorted(ntk.NT_IMPLEMENTATION_CODES)}"
        )
    if name == "auto":
        return "layerwise" if isinstance(f, NetworkFn) else "jacobian"
    if name == "layerwise" and not isinstance(f, NetworkFn):
        raise ValueError(
            f"implementation {implementation!r} (robntk 'layerwise', the structured per-layer NTK) "
            "needs a robntk.nb201.network.NetworkFn (TinyNetwork.make_apply); for any other f use "
            "1 / 'jacobian' or 2 / 'ntvp'"
        )
    return name


def _axes_tuple(axes: Axes, what: str) -> tuple[int, ...]:
    """int or sequence of ints → tuple (duplicates are checked once the output rank is known)."""
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        return (int(axes),)
    try:
        out = tuple(axes)
    except TypeError:
        out = None
    if out is None or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in out):
        raise ValueError(f"{what} must be an int or a sequence of ints, got {axes!r}")
    return tuple(int(a) for a in out)


def _vmap_triple(vmap_axes) -> tuple[int | None, int | None, dict[str, int]]:
    """NT's ``vmap_axes`` → ``(in_axis, out_axis, kwargs_axes)``: None, an int, or a triple."""
    if vmap_axes is None or (isinstance(vmap_axes, (int, np.integer)) and not isinstance(vmap_axes, bool)):
        ax = None if vmap_axes is None else int(vmap_axes)
        return ax, ax, {}
    if isinstance(vmap_axes, tuple) and len(vmap_axes) == 3:
        i, o, kw = vmap_axes
        kw = {} if kw is None else kw
        ok = lambda a: a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool))
        if (
            ok(i)
            and ok(o)
            and (i is None) == (o is None)
            and isinstance(kw, dict)
            and all(isinstance(v, (int, np.integer)) for v in kw.values())
            and (i is not None or not kw)
        ):
            return (None if i is None else int(i)), (None if o is None else int(o)), {k: int(v) for k, v in kw.items()}
    raise ValueError(
        f"vmap_axes must be None, an int, or a triple (in_axes: int, out_axes: int, kwargs_axes: "
        f"dict of ints) with both axes None or both ints, got {vmap_axes!r}"
    )


def _canon(axes: tuple[int, ...], ndim: int, what: str) -> tuple[int, ...]:
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{what} {axes} out of range for an output of rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what} {axes} name an output axis twice (rank {ndim})")
    return tuple(out)


def contract_output_axes(
    K: jax.Array,
    shape1: tuple[int, ...],
    shape2: tuple[int, ...],
    row: int,
    trace: tuple[int, ...],
    diagonal: tuple[int, ...],
    full: bool,
) -> jax.Array:
    """The NT layout of a row-major kernel: traces (means), diagonals, zipped pairs.

    Args:
        K: the kernel on the rows (output axis ``row``): (R1, R2, M1, M2) when ``full`` (M = the
            product of the other output axes, in order), else (R1, R2) summed over every other
            axis (then every other axis must be in ``trace``).
        shape1, shape2: output shapes of ``f(params, x1)`` and ``f(params, x2)`` (rank n).
        row: the row axis, in 0..n-1. trace, diagonal: canonical, disjoint output axes.
        full: layout of ``K``.

    Returns:
        the module docstring's layout, divided by the product of the traced axes' sizes.

    Raises:
        ValueError: a traced or diagonal axis of different size in the two outputs.
    """
    n = len(shape1)
    for a in trace + diagonal:
        if shape1[a] != shape2[a]:
            raise ValueError(
                f"output axis {a} is in trace_axes/diagonal_axes but has size {shape1[a]} for x1 and {shape2[a]} for x2"
            )
    letters = iter(string.ascii_letters)
    p = [next(letters) for _ in range(n)]
    q = [p[a] if a in trace or a in diagonal else next(letters) for a in range(n)]
    rest = [a for a in range(n) if a != row]
    if full:
        K = K.reshape(K.shape[:2] + tuple(shape1[a] for a in rest) + tuple(shape2[a] for a in rest))
        spec = p[row] + q[row] + "".join(p[a] for a in rest) + "".join(q[a] for a in rest)
    else:
        spec = p[row] + q[row]
    out = "".join(p[a] if a in diagonal else p[a] + q[a] for a in range(n) if a not in trace)
    K = jnp.einsum(f"{spec}->{out}", K)
    size = math.prod(shape1[a] for a in trace)
    return K / size if size != 1 else K


def empirical_ntk_fn(
    f: Callable,
    trace_axes: Axes = (-1,),
    diagonal_axes: Axes = (),
    vmap_axes=None,
    implementation: str | int = "auto",
    *,
    chunk_size: int | None = None,
) -> Callable:
    """neural-tangents' ``empirical_ntk_fn`` on robntk's implementations (module docstring).

    Args:
        f: ``f(params, x, **kwargs) -> array`` (any output rank; the batch is one of its axes), e.g.
            a :class:`~robntk.nb201.network.NetworkFn` (logits (B, O); BN mode carried by ``f``).
        trace_axes: output axes (int or ints, negative allowed) whose pairs are traced and
            averaged (NT: divided by the axis size). Default ``(-1,)``: mean over logits.
        diagonal_axes: output axes of which only the diagonal pair is kept. Default ``()``.
        vmap_axes: None (no assumption, exact for coupled batches such as train-mode BN), an
            int (input and output batch axis, examples independent), or
            ``(in_axes, out_axes, kwargs_axes)`` with ``kwargs_axes`` a dict name → axis of
            keyword arguments batched with ``x``.
        implementation: ``'auto'`` (default), ``'jacobian'``, ``'ntvp'``, ``'layerwise'``, or
            neural-tangents' code 0, 1, 2, 3 (mapping in the module docstring).
        chunk_size: cotangents/examples per batch of derivative passes (memory); None = all.

    Returns:
        ``ntk_fn(x1, x2, params, **apply_fn_kwargs)``: ``x1``, ``x2`` inputs (an array or a pytree
        of arrays; ``x2=None`` means x1), ``params`` the pytree the NTK differentiates, keyword
        arguments passed to both calls of ``f``. It returns the kernel in ``params``' float dtype,
        shaped as in the module docstring; jittable.

    Raises:
        ValueError (at construction): unknown implementation, ``'layerwise'`` for a plain
        callable or with ``vmap_axes`` other than None/0, a train-mode NetworkFn with
        ``vmap_axes`` set, malformed axes, bad ``chunk_size``. (At call time): an axis out of
        range or named twice or in both trace and diagonal axes, a pytree output, an ``rng``
        keyword, keyword arguments for a NetworkFn's layerwise path, trace/diagonal axes of
        different size for x1 and x2, inputs without one batch size.
    """
    impl = resolve_implementation(f, implementation)
    trace_t = _axes_tuple(trace_axes, "trace_axes")
    diag_t = _axes_tuple(diagonal_axes, "diagonal_axes")
    in_ax, out_ax, kw_axes = _vmap_triple(vmap_axes)
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if isinstance(f, NetworkFn) and f.train and out_ax is not None:
        raise ValueError(
            f"vmap_axes={vmap_axes!r} certifies independent examples, but this NetworkFn normalises "
            "with batch statistics (train-mode BN): pass vmap_axes=None"
        )
    if impl == "layerwise" and not (in_ax in (None, 0) and out_ax in (None, 0) and not kw_axes):
        raise ValueError(f"implementation 'layerwise' takes vmap_axes None or 0 (batch axis 0), got {vmap_axes!r}")

    def ntk_fn(x1: Any, x2: Any, params: Any, **apply_fn_kwargs) -> jax.Array:
        """Empirical NTK of ``f`` between x1 and x2 (x2=None: x1) at ``params``; see
        :func:`empirical_ntk_fn`."""
        if "rng" in apply_fn_kwargs:
            raise ValueError(
                "an 'rng' keyword argument is not supported (neural-tangents splits it between x1 and "
                "x2); close over the key or pass it under another name"
            )
        same = x2 is None
        shape1 = _out_shape(f, params, x1, apply_fn_kwargs)
        shape2 = shape1 if same else _out_shape(f, params, x2, apply_fn_kwargs)
        if len(shape1) != len(shape2):
            raise ValueError(f"f(params, x1) and f(params, x2) have different ranks: {shape1} vs {shape2}")
        scalar = len(shape1) == 0
        if scalar and out_ax is not None:
            raise ValueError(f"vmap_axes={vmap_axes!r} needs an output batch axis, but f returns a scalar")
        if scalar:  # a size-1 row axis, traced away at the end
            shape1 = shape2 = (1,)
        n = len(shape1)
        trace = _canon(trace_t, n, "trace_axes") if not scalar else (0,)
        diag = _canon(diag_t, n, "diagonal_axes") if not scalar else ()
        if set(trace) & set(diag):
            raise ValueError(f"trace_axes {trace_t} and diagonal_axes {diag_t} share an axis (rank {n})")
        row = 0 if out_ax is None else _canon((out_ax,), n, "vmap_axes (out_axes)")[0]
        full = not all(a in trace for a in range(n) if a != row)
        mode = "full" if full else "trace"
        if impl == "layerwise":
            K = _layerwise(f, params, x1, None if same else x2, mode, chunk_size, apply_fn_kwargs)
        else:
            g, b1 = _row_function(f, x1, row, scalar, in_ax, kw_axes, apply_fn_kwargs)
            b2 = None if same else _row_function(f, x2, row, scalar, in_ax, kw_axes, apply_fn_kwargs)[1]
            K = ntk.empirical_ntk(
                g,
                params,
                b1,
                b2,
                output_mode=mode,
                independent_rows=in_ax is not None,
                implementation=impl,
                chunk_size=chunk_size,
            )
        return contract_output_axes(K, shape1, shape2, row, trace, diag, full)

    return ntk_fn


def _out_shape(f, params, x, kwargs) -> tuple[int, ...]:
    out = jax.eval_shape(lambda p, z: f(p, z, **kwargs), params, x)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"f must return one array; pytree outputs are not supported, got {out!r}")
    return tuple(out.shape)


def _row_function(f, x, row, scalar, in_ax, kw_axes, kwargs):
    """``g(params, bundle) -> (R, M)``: ``f`` with its row axis first and the rest flattened, and
    the bundle ``(x, batched kwargs)`` with the batch axes first (so that robntk's per-example path
    maps over axis 0)."""
    fixed = {k: v for k, v in kwargs.items() if k not in kw_axes}
    batched = {k: kwargs[k] for k in kw_axes if k in kwargs}
    missing = set(kw_axes) - set(kwargs)
    if missing:
        raise ValueError(f"vmap_axes names keyword arguments {sorted(missing)} that were not passed")
    move = (
        (lambda t, src, dst: t)
        if in_ax is None
        else (lambda t, src, dst: jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, src, dst), t))
    )
    bundle = (move(x, in_ax, 0), {k: move(v, kw_axes[k], 0) for k, v in batched.items()})

    def g(params, b):
        xb, kb = b
        kb = {k: move(v, 0, kw_axes[k]) for k, v in kb.items()}
        out = f(params, move(xb, 0, in_ax), **kb, **fixed)
        if scalar:
            return jnp.reshape(out, (1, 1))
        out = jnp.moveaxis(out, row, 0)
        return out.reshape(out.shape[0], -1)

    return g, bundle


def _layerwise(f: NetworkFn, params, x1, x2, mode: str, chunk_size, kwargs) -> jax.Array:
    """The NB201 network's exact per-layer NTK, (B1, B2) for ``'trace'`` or (B1, B2, O, O)."""
    if kwargs:
        raise ValueError(f"a NetworkFn takes no keyword arguments, got {sorted(kwargs)}")
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    net, stats, cell = f.net, f.stats, f.cell
    x1 = jnp.asarray(x1, dtype)
    if x2 is None:
        return layer_ntk.layerwise_ntk(net, params, stats, cell, x1, None, mode, f.train, chunk_size)
    rows = lambda x: layer_ntk.jacobian_rows(
        net, params, stats, cell, jnp.asarray(x, dtype), None, mode, f.train, chunk_size
    )
    return ntk.gram(rows(x1), rows(x2), mode)
