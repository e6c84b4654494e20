"""The NAS-Bench-201 cell of :class:`robntk.nb201.network.TinyNetwork`: op ids, the two forms a
cell takes (a **fixed cell** — an arch string or 6 op names, static Python data — or a **cell as
data** — 6 int32 op ids, traceable), their validation and conversion, the parameter-tree name of
an edge's module, and one edge in each form (a plain Python branch on the op name, or a
:func:`jax.lax.switch` over the 5 ops whose branches are traced once per shape).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from robntk.nb201.layers import _Run, avg_pool_3x3, batch_norm, cell_conv, conv
from robntk.nb201.searchspace import NUM_EDGES, OPS, check_ops, ops_to_ids, parse_arch_str

#: Op ids (index into :data:`robntk.nb201.searchspace.OPS`).
NONE, SKIP, CONV1, CONV3, POOL = range(5)
#: Parametric ops and their kernel size.
CONV_OPS: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def to_ops(arch) -> tuple[str, ...]:
    """Arch string or 6 op names → validated 6-tuple of op names.

    Raises:
        ValueError: malformed arch string or unknown op.
    """
    return parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)


def op_ids(arch) -> np.ndarray:
    """Arch string or 6 ops or 6 ints → int32 array (6,) of op ids (:data:`OPS` order).

    Raises:
        ValueError: malformed arch string, unknown op, not 6 entries, id outside 0..4.
    """
    if isinstance(arch, str) or (len(arch) and isinstance(arch[0], str)):
        return np.asarray(ops_to_ids(to_ops(arch)), dtype=np.int32)
    return check_op_ids(arch)


def check_op_ids(ids) -> np.ndarray:
    """Validate an op-id array of shape (6,) or (A, 6) with entries in 0..4 (host side).

    ``lax.switch`` clamps out-of-range indices silently, so validation happens before tracing.

    Returns:
        The ids as int32 numpy array.

    Raises:
        ValueError: wrong shape, non-integer values or ids outside 0..4.
    """
    a = np.asarray(ids)
    if a.ndim not in (1, 2) or a.shape[-1] != NUM_EDGES:
        raise ValueError(f"op ids must have shape (6,) or (A, 6), got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"op ids must be integers in 0..{len(OPS) - 1}, got {a!r}")
    if a.size and (a.min() < 0 or a.max() >= len(OPS)):
        raise ValueError(f"op ids must be in 0..{len(OPS) - 1} ({', '.join(OPS)}), got {a!r}")
    return a.astype(np.int32)


def ids_to_ops(ids) -> tuple[str, ...]:
    """int (6,) op ids → 6 op names."""
    return tuple(OPS[int(i)] for i in check_op_ids(ids))


def static_cell(cell) -> tuple[str, ...] | None:
    """The 6 op names of a fixed cell (arch string or op names), or None for a cell given as
    int op ids (data: traced or concrete).

    Raises:
        ValueError: a malformed arch string or unknown op name.
    """
    if isinstance(cell, str):
        return to_ops(cell)
    if isinstance(cell, (tuple, list)) and len(cell) and isinstance(cell[0], str):
        return to_ops(cell)
    return None


def _cell_ops(arch) -> tuple[str, ...]:
    """Op names of an arch given as string, op names or int ids."""
    ops = static_cell(arch)
    return ops if ops is not None else ids_to_ops(arch)


def edge_module_name(edge: int, op: str) -> str:
    """Parameter-tree name of the module of ``op`` on ``edge`` (e.g. ``'e2_nor_conv_3x3'``)."""
    return f"e{edge}_{op}"


def _static_edge(run: _Run, p, name, e, h, op):
    """One edge of a fixed cell: a plain Python branch on the op name."""
    if op == "none":
        return jnp.zeros_like(h)
    if op == "skip_connect":
        return h
    if op == "avg_pool_3x3":
        return avg_pool_3x3(h)
    mod = edge_module_name(e, op)
    run.record(f"{name}/e{e}/in", h)
    y = conv(jax.nn.relu(h), p[mod]["conv"]["kernel"])
    return run.bn(y, p[mod]["bn"], (name, mod, "bn"), f"{name}/e{e}")


def _data_edge(run: _Run, p, name, e, h, op_id):
    """One edge of a cell as data: ``lax.switch`` over the 5 ops, whose shared branches
    (:func:`_edge_branches`) take every array as an operand, so JAX traces them once per shape,
    not once per edge (its trace caches key on the function)."""
    want, upd = run.rec is not None, run.new_stats is not None
    mods = (edge_module_name(e, "nor_conv_1x1"), edge_module_name(e, "nor_conv_3x3"))
    pre = run.taps[f"{name}/e{e}/pre"] if want else jnp.zeros((), h.dtype)
    kernels = [p[m]["conv"]["kernel"] for m in mods]
    bns = [p[m]["bn"] for m in mods]
    stats = [run.s((name, m, "bn")) for m in mods] if (upd or not run.train) else [None, None]
    res = jax.lax.switch(op_id, _edge_branches(want, upd, run.train, run.momentum), h, pre, kernels, bns, stats)
    if want:
        run.record(f"{name}/e{e}/in", h)
        run.record(f"{name}/e{e}/conv_out", res[1])
    if upd:
        for m, st in zip(mods, res[-2:]):
            run.put((name, m, "bn"), st)
    return res[0]


@functools.cache
def _edge_branches(want: bool, upd: bool, train: bool, momentum):
    """The 5 branches of :func:`_data_edge` (:data:`OPS` order) for one static setting: each maps
    ``(h, pre, kernels, bns, stats)`` (both conv modules' kernels, BN parameters, running
    statistics) to (output, [conv output for the record], [new statistics of both modules])."""

    def conv_branch(which):
        def br(h, pre, kernels, bns, stats):
            y = cell_conv(jax.nn.relu(h), kernels[which])
            out, new = batch_norm(y + pre, bns[which], stats[which], train, momentum)
            st = [new if m == which else o for m, o in enumerate(stats)] if upd else []
            return (out, *([y] if want else []), *st)

        return br

    def plain(fn):
        def br(h, pre, kernels, bns, stats):
            return (fn(h), *([jnp.zeros_like(h)] if want else []), *(stats if upd else []))

        return br

    return (plain(jnp.zeros_like), plain(lambda h: h), conv_branch(0), conv_branch(1), plain(avg_pool_3x3))
