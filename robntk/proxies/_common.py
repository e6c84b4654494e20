"""Shared helpers of the proxy modules: op ids of a cell, the connectivity mask, the BN-free
network, the cross-entropy and the prunable weight leaves of a cell (NASLib's "every prunable layer").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3, NONE, op_ids
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import EDGES, NUM_EDGES

#: A proxy: ``proxy(net, variables, cell, x, y, key) -> scalar`` (see :mod:`robntk.proxies`).
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
    :func:`robntk.nb201.searchspace.is_connected`)."""
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
