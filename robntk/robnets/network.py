"""RobNet networks in flax (linen), mirroring the reference PyTorch skeleton.

Reference: gmh14/RobNets ``models/basic_operations.py`` (ops), ``models/basic_model.py``
(``Cell``, ``Network``), ``models/robnet.py``. Inputs are NHWC images in [0, 1]; the reference
applies no input normalisation. Layout (CIFAR, ``ImgNetBB=False``)::

    stem: Conv3×3(3 → stem_multiplier·C, no bias) → BN (affine)
    cells 0..layers−1: cell i takes (s0, s1) = outputs of cells i−2, i−1 (the stem for both at
        the start); cells layers//3 and 2·layers//3 are reduction cells (width doubles,
        stride 2 on the edges leaving the two input nodes)
    head: AdaptiveAvgPool(ad_pool_size) → flatten → Linear(multiplier·C_last·ad_pool_size² → K)

Cell: preprocess0 = FactorizedReduce if the previous cell reduced else ReLU-Conv1×1-BN;
preprocess1 = ReLU-Conv1×1-BN; node i = Σ_j op_(j,i)(node j); output = concat of the last
``multiplier`` nodes (channels). All BNs inside cells have no affine parameters (reference
``affine=False``); BN eps 1e-5, PyTorch momentum 0.1 (flax 0.9).

Init: PyTorch defaults — conv/linear weights U(−1/√fan_in, 1/√fan_in), linear bias likewise
(fan_in of a depthwise kernel is 9).

Parameter names (``stem_conv``, ``stem_bn``, ``cells_{i}/pre0|pre1``, ``cells_{i}/e{k}_sep``,
``cells_{i}/e{k}_fr``, ``classifier``) follow the reference module tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from robntk.nb201.layers import BN_EPS, BN_MOMENTUM
from robntk.robnets.space import CONFIGS, GENOTYPES, RobNetConfig, cell_codes, cell_edges


def torch_uniform_init(fan_in_axes: Sequence[int]) -> Callable:
    """PyTorch's default init U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a=√5) as a flax
    initializer; ``fan_in_axes``: kernel axes whose product is fan_in (conv HWIO: (0, 1, 2))."""

    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(math.prod(shape[a] for a in fan_in_axes))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv(features: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1, name: str | None = None) -> nn.Conv:
    return nn.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=False,
        kernel_init=torch_uniform_init((0, 1, 2)),
        name=name,
    )


def _bn(train: bool, affine: bool = False, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPS,
        use_scale=affine,
        use_bias=affine,
        name=name,
    )


class ReLUConvBN(nn.Module):
    """ReLU → Conv k×k (no bias) → BN (no affine). x (B, H, W, I) → (B, H', W', C_out)."""

    C_out: int
    k: int = 1
    stride: int = 1
    pad: int = 0

    @nn.compact
    def __call__(self, x, train: bool):
        x = _conv(self.C_out, self.k, self.stride, self.pad, name="conv")(jax.nn.relu(x))
        return _bn(train, name="bn")(x)


class FactorizedReduce(nn.Module):
    """ReLU → concat(Conv1×1/2 (x), Conv1×1/2 (x[1:, 1:])) → BN (no affine); halves H, W."""

    C_out: int

    @nn.compact
    def __call__(self, x, train: bool):
        x = jax.nn.relu(x)
        a = _conv(self.C_out // 2, 1, 2, name="conv_1")(x)
        b = _conv(self.C_out // 2, 1, 2, name="conv_2")(x[:, 1:, 1:, :])
        return _bn(train, name="bn")(jnp.concatenate([a, b], axis=-1))


class SepConv(nn.Module):
    """Reference ``SepConv(C, C, 3, stride, 1)``: ReLU-dw3×3(stride)-pw1×1-BN-ReLU-dw3×3-pw1×1-BN."""

    C: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        C = self.C
        x = _conv(C, 3, self.stride, 1, groups=C, name="dw1")(jax.nn.relu(x))
        x = _bn(train, name="bn1")(_conv(C, 1, name="pw1")(x))
        x = _conv(C, 3, 1, 1, groups=C, name="dw2")(jax.nn.relu(x))
        return _bn(train, name="bn2")(_conv(C, 1, name="pw2")(x))


class Cell(nn.Module):
    """One RobNets cell (reference ``Cell``); see the module docstring."""

    code: tuple[str, ...]
    C: int
    reduction: bool
    reduction_prev: bool
    steps: int = 4
    multiplier: int = 4

    @nn.compact
    def __call__(self, s0, s1, train: bool):
        s0 = (FactorizedReduce(self.C, name="pre0") if self.reduction_prev else ReLUConvBN(self.C, name="pre0"))(
            s0, train
        )
        s1 = ReLUConvBN(self.C, name="pre1")(s1, train)
        states = [s0, s1]
        edges = cell_edges(self.steps)
        for dst in range(2, self.steps + 2):
            acc = 0.0
            for k, (src, d) in enumerate(edges):
                if d != dst:
                    continue
                acc = acc + self._edge(k, self.code[k], states[src], src < 2 and self.reduction, train)
            states.append(acc)
        return jnp.concatenate(states[-self.multiplier :], axis=-1)

    def _edge(self, k: int, code: str, h, stride2: bool, train: bool):
        stride = 2 if stride2 else 1
        out = h[:, ::2, ::2, :] * 0.0 if stride2 else h * 0.0  # '00' (Zero keeps the shape)
        if code[1] == "1":
            out = SepConv(self.C, stride, name=f"e{k}_sep")(h, train)
        if code[0] == "1":
            skip = FactorizedReduce(self.C, name=f"e{k}_fr")(h, train) if stride2 else h
            out = skip if code[1] == "0" else out + skip
        return out


class RobNet(nn.Module):
    """The RobNets network (reference ``Network``, CIFAR stem).

    Attributes:
        genotypes: cell codes: one (``cfg.share``) or ``cfg.layers`` tuples of 14 2-bit strings.
        cfg: :class:`~robntk.robnets.space.RobNetConfig`.

    Call: ``model.apply(variables, x, train)`` with x (B, H, W, 3) float in [0, 1] (H, W even at
    each reduction) → logits (B, num_classes); ``train=True`` uses batch statistics and needs
    ``mutable=['batch_stats']``.

    Raises (at trace time):
        ValueError: bad codes or config (:func:`~robntk.robnets.space.cell_codes`).
    """

    genotypes: tuple[tuple[str, ...], ...]
    cfg: RobNetConfig = RobNetConfig()

    @nn.compact
    def __call__(self, x, train: bool = False):
        cfg = self.cfg
        codes = cell_codes(self.genotypes, cfg)
        c_stem = cfg.stem_multiplier * cfg.C
        s = _conv(c_stem, 3, 1, 1, name="stem_conv")(x)
        s0 = s1 = _bn(train, affine=True, name="stem_bn")(s)
        c, red_prev = cfg.C, False
        for i, code in enumerate(codes):
            red = i in cfg.reduction_cells()
            if red:
                c *= 2
            cell = Cell(code, c, red, red_prev, cfg.steps, cfg.multiplier, name=f"cells_{i}")
            s0, s1 = s1, cell(s0, s1, train)
            red_prev = red
        out = _adaptive_avg_pool(s1, cfg.ad_pool_size)
        fan_in = out.shape[-1]
        bound = 1.0 / fan_in**0.5
        dense = nn.Dense(
            cfg.num_classes,
            kernel_init=torch_uniform_init((0,)),
            bias_init=lambda k, sh, dt=jnp.float32: jax.random.uniform(k, sh, dt, -bound, bound),
            name="classifier",
        )
        return dense(out)


def _adaptive_avg_pool(x, size: int):
    """AdaptiveAvgPool2d(size) for H, W divisible by size, flattened in PyTorch's (C, h, w) order."""
    B, H, W, C = x.shape
    if H % size or W % size:
        raise ValueError(f"ad_pool_size {size} must divide the final feature map {H}×{W}")
    y = x.reshape(B, size, H // size, size, W // size, C).mean(axis=(2, 4))
    return y.transpose(0, 3, 1, 2).reshape(B, -1)


def robnet(name: str, num_classes: int | None = None, **overrides: Any) -> RobNet:
    """A released RobNet by name (``robnet_large_v1``, ``robnet_large_v2``, ``robnet_free``).

    Args:
        name: model name (reference ``experiments/*/config.py``).
        num_classes: classifier size (default: the config's, 10).
        overrides: other :class:`RobNetConfig` fields (e.g. ``C=12, layers=5`` for a small copy).

    Raises:
        ValueError: unknown name or bad overrides.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown RobNet {name!r}; allowed: {', '.join(CONFIGS)}")
    d = CONFIGS[name].to_dict()
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    unknown = set(overrides) - set(d)
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; allowed: {', '.join(d)}")
    return RobNet(GENOTYPES[name], RobNetConfig(**{**d, **overrides}))


def param_shapes(model: RobNet, image_size: int = 32) -> dict:
    """Shapes of the model's variables (no FLOPs: :func:`jax.eval_shape`)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype), train=False))


def count_params(model: RobNet, image_size: int = 32) -> int:
    """Number of entries in the model's ``params`` collection (batch statistics excluded)."""
    shapes = param_shapes(model, image_size)
    return int(sum(a.size for a in jax.tree_util.tree_leaves(shapes["params"])))
