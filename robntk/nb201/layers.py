"""Pure layers of the NB201 TinyNetwork (input normalisation, conv, BatchNorm, pooling), the
state threaded through one forward pass, and the block-wise random draws behind "init seed s"
(:mod:`robntk.nb201.network` assembles them).

Every function is a pure ``jax.numpy`` function of its arrays (NHWC activations, HWIO kernels),
so the network works under ``jit``, ``vmap`` and ``grad``; the conv/BN conventions are those of
the reference AutoDL ``ReLUConvBN`` and ``ResNetBasicblock`` (PyTorch defaults: BN eps 1e-5,
momentum 0.1), in NHWC layout.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from robntk.core.registry import DATASETS

BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # flax convention; = PyTorch momentum 0.1

Params = dict[str, Any]


def normalize(x, dataset: str | None):
    """(x − mean) / std per channel with the benchmark's statistics; x (..., 3) in [0, 1]."""
    if dataset is None:
        return x
    info = DATASETS[dataset]
    mean = jnp.asarray(info.mean, x.dtype) / 255.0
    std = jnp.asarray(info.std, x.dtype) / 255.0
    return (x - mean) / std


# --------------------------------------------------------------------------- pure layers
def conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """NHWC convolution with an HWIO kernel, 'same'-style padding (k−1)/2, no bias (= flax
    ``nn.Conv(padding=((p, p), (p, p)), use_bias=False)``). x (B, H, W, I) → (B, H', W', O)."""
    k = kernel.shape[0]
    p = (k - 1) // 2
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@jax.custom_vjp
def cell_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 :func:`conv` with a hand-written VJP, for convs inside ``lax.switch`` branches.

    Values are those of :func:`conv`. The VJP computes the input gradient as a forward
    convolution with the flipped, in/out-swapped kernel and the kernel gradient as k² shifted
    ``einsum`` contractions. Reason: XLA:CPU runs the convolutions that autodiff emits for the
    transposed conditional (input-gradient and filter-gradient convolutions) much slower than
    the same ops outside a conditional (measured in ``benchmarks/RESULTS.md`` §5); forward-style
    convolutions and dots are unaffected.
    x (B, H, W, I), kernel (k, k, I, O) → (B, H, W, O).
    """
    return conv(x, kernel)


def _cell_conv_fwd(x, kernel):
    return conv(x, kernel), (x, kernel)


def _cell_conv_bwd(res, g):
    x, kernel = res
    k = kernel.shape[0]
    dx = conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
    p = (k - 1) // 2
    _, H, W, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    dk = jnp.stack(
        [
            jnp.stack([jnp.einsum("nhwc,nhwd->cd", xp[:, i : i + H, j : j + W, :], g) for j in range(k)])
            for i in range(k)
        ]
    )
    return dx, dk.astype(kernel.dtype)


cell_conv.defvjp(_cell_conv_fwd, _cell_conv_bwd)


def batch_norm(
    x: jax.Array, p: Params, s: Params | None, train: bool, momentum: float | None = None
) -> tuple[jax.Array, Params | None]:
    """BatchNorm over (B, H, W) as flax ``nn.BatchNorm`` / PyTorch ``BatchNorm2d`` (eps 1e-5).

    Args:
        x: (B, H, W, C). p: ``{'scale', 'bias'}`` (C,). s: ``{'mean', 'var'}`` (C,) running
            statistics (read when ``train`` is False, updated when ``momentum`` is given).
        train: normalise with batch statistics (fast variance E[x²]−E[x]², clipped at 0).
        momentum: with ``train``, also return running statistics
            ``momentum·s + (1 − momentum)·batch``, the variance unbiased (× n/(n − 1), n = B·H·W)
            as PyTorch's ``BatchNorm2d`` (the benchmark's) updates it; normalisation uses the
            biased one. (flax's ``nn.BatchNorm`` keeps the biased variance; the difference was
            found by the PyTorch parity of :mod:`robntk.parity`.)

    Returns:
        (y of x's shape, updated ``{'mean', 'var'}`` or None).
    """
    new = None
    if train:
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.maximum(0.0, jnp.mean(jnp.square(x), axis=(0, 1, 2)) - jnp.square(mean))
        if momentum is not None:
            n = x.shape[0] * x.shape[1] * x.shape[2]
            new = {
                "mean": momentum * s["mean"] + (1 - momentum) * mean,
                "var": momentum * s["var"] + (1 - momentum) * var * (n / max(n - 1, 1)),
            }
    else:
        mean, var = s["mean"], s["var"]
    return (x - mean) * (jax.lax.rsqrt(var + BN_EPS) * p["scale"]) + p["bias"], new


def avg_pool_3x3(x):
    """AvgPool2d(3, stride 1, padding 1, count_include_pad=False). x: (B, H, W, C), same dtype out
    (flax counts the window in the default float dtype, float64 under x64: cast back)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False).astype(x.dtype)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """AvgPool2d(2, 2) of the reduction shortcut, x (B, H, W, C) → (B, H/2, W/2, C)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class _Run:
    """State threaded through one forward pass: taps to add, records, running-stat updates."""

    def __init__(self, stats, train, taps, momentum):
        self.stats, self.train, self.taps, self.momentum = stats, train, taps, momentum
        self.rec: dict | None = {} if taps is not None else None
        self.new_stats: dict | None = {} if momentum is not None else None

    def tap(self, name, y):
        return y + self.taps[name] if self.taps is not None else y

    def record(self, name, y):
        if self.rec is not None:
            self.rec[name] = y

    def s(self, path: tuple[str, ...]):
        node = self.stats
        for k in path:
            if node is None:
                return None
            node = node.get(k)
        return node

    def bn(self, y, p, path: tuple[str, ...], name: str):
        """Record ``y`` (a conv output) as ``name/conv_out``, add the pre-BN tap ``name/pre``,
        then BN (the post-BN tap ``name`` is added by the caller)."""
        self.record(f"{name}/conv_out", y)
        y = self.tap(f"{name}/pre", y)
        out, new = batch_norm(y, p, self.s(path), self.train, self.momentum)
        if new is not None:
            self.put(path, new)
        return out

    def put(self, path, value):
        node = self.new_stats
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value


#: Random leaves are drawn in blocks of this many values (one compiled RNG kernel for all shapes).
DRAW_BLOCK = 4096
#: Standard deviation of a standard normal truncated to [-2, 2] (flax's variance_scaling constant).
_TRUNC_STD = 0.87962566103423978


def _draw(key, shape, dtype, kind: str) -> jax.Array:
    """Leaf of ``shape``: the first prod(shape) values of the concatenation over j = 0, 1, ... of
    ``U(-1, 1)`` (``kind='uniform'``), standard normals (``'normal'``) or standard normals
    truncated to [-2, 2] (``'truncated_normal'``) of shape (:data:`DRAW_BLOCK`,) drawn with
    ``fold_in(key, j)``,
    reshaped row-major. Drawing fixed-size blocks keeps eager init to one compiled kernel
    instead of one per leaf shape. Values are drawn in float32 and cast to ``dtype``, so "init
    seed s" gives the same weights in float32 and float64 (float64 is then a rounding check of
    the same network)."""
    size = math.prod(shape)
    blocks = []
    for j in range(-(-size // DRAW_BLOCK)):
        kj = jax.random.fold_in(key, j)
        if kind == "uniform":
            blocks.append(jax.random.uniform(kj, (DRAW_BLOCK,), jnp.float32, -1.0, 1.0))
        elif kind == "normal":
            blocks.append(jax.random.normal(kj, (DRAW_BLOCK,), jnp.float32))
        else:
            blocks.append(jax.random.truncated_normal(kj, -2.0, 2.0, (DRAW_BLOCK,), jnp.float32))
    return jnp.concatenate(blocks)[:size].reshape(shape).astype(dtype)
