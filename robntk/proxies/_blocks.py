"""The NB201 network block by block, shared by the AZ-NAS and MeCo proxies
(:mod:`robntk.proxies.az_nas`, :mod:`robntk.proxies.meco_swap`): the stem and one function per
block (cell or ResNet reduction block), exactly as :meth:`TinyNetwork.forward` computes them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robntk.nb201.cell import static_cell
from robntk.nb201.layers import _Run, avg_pool_2x2, conv, normalize
from robntk.nb201.network import TinyNetwork


def _cell_arg(cell):
    ops = static_cell(cell)
    return (ops, True) if ops is not None else (cell, False)


def _reduce_block(p, h, run: _Run, name: str):
    """A ResNet reduction block exactly as :meth:`TinyNetwork.forward` computes it (the
    ``conv_a`` → ``conv_b`` path plus the pooled 1×1 shortcut), recording into ``run``."""
    y = h
    for sub, stride in (("conv_a", 2), ("conv_b", 1)):
        run.record(f"{name}/{sub}/in", y)
        y = conv(jax.nn.relu(y), p[sub]["conv"]["kernel"], stride)
        y = run.bn(y, p[sub]["bn"], (name, sub, "bn"), f"{name}/{sub}")
    sc = avg_pool_2x2(h)
    run.record(f"{name}/downsample/in", sc)
    return conv(sc, p["downsample"]["kernel"]) + y


def _blocks(net: TinyNetwork, params, cell, run: _Run):
    """``(stem, [block_k])``: the stem (conv → BN, from the normalised input) and one function
    per block ``cells_k`` (cell or reduction block) mapping its input feature map (B, H, W, C)
    to its output, all sharing ``run`` (BN mode, taps, records). Composed they are the
    network's feature extractor up to ``lastact`` (AZ-NAS's ``extract_cell_features``,
    ``NB201/custom/tss_model.py:54``)."""
    c, static = _cell_arg(cell)

    def stem(x):
        h = conv(
            normalize(jnp.asarray(x, params["stem_conv"]["kernel"].dtype), net.dataset), params["stem_conv"]["kernel"]
        )
        return run.tap("stem", run.bn(h, params["stem_bn"], ("stem_bn",), "stem"))

    fns = []
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            fns.append(lambda h, p=params[name], name=name: _reduce_block(p, h, run, name))
        else:
            fns.append(lambda h, name=name: net._cell(run, params.get(name, {}), name, h, c, static))
    return stem, fns
