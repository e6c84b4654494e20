"""Test support: an independent flax-module port of the NB201 TinyNetwork (the reference PyTorch
definition), used only to cross-check :mod:`robntk.nb201.network` (parameter counts, logits, NTK).

NAS-Bench-201 TinyNetwork in flax (linen), faithful to the reference PyTorch definition.

Reference: D-X-Y/AutoDL-Projects, ``xautodl/models/cell_operations.py`` (ops),
``cell_infers/cells.py`` (``InferCell``), ``cell_infers/tiny_network.py`` (``TinyNetwork``), as
copied into the NAS-RobBench-201 code. The benchmark wraps the network as
``Sequential(Normalize(mean, std), TinyNetwork)``; here the normalisation is inside the model, so
inputs are NHWC images with pixel values in [0, 1].

Layout::

    stem: Conv3x3(3→C, no bias) → BN
    N cells (C) → ResNetBasicblock(C→2C, stride 2) → N cells (2C)
                → ResNetBasicblock(2C→4C, stride 2) → N cells (4C)
    lastact: BN → ReLU → global average pool → Linear(4C → num_classes)

Parameter names mirror the reference module tree (``cells_3/e2_nor_conv_3x3/conv``: cell 3,
edge 2 in :data:`robntk.nb201.searchspace.EDGES` order, op name); the arch-as-data supernet uses the
same names, so a dedicated network's parameters are a sub-tree of the supernet's.

Init schemes (``init``):

* ``'pytorch'`` (default): PyTorch's defaults, as the reference (which has no custom init) —
  Conv/Linear weights kaiming_uniform(a=√5) = U(−1/√fan_in, 1/√fan_in), Linear bias
  U(−1/√fan_in, 1/√fan_in), BN scale 1, bias 0.
* ``'flax'``: flax defaults (lecun_normal weights, zero Linear bias), for comparison.

BN: ``train=True`` uses batch statistics (what a PyTorch model in ``train()`` mode does at
initialisation; examples are coupled through the batch), ``train=False`` uses running statistics
(identity at initialisation). BN eps 1e-5, momentum 0.1 in PyTorch's convention (flax 0.9).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from robntk.core.registry import DATASETS
from robntk.nb201.network import check_config  # input validation only (not arithmetic)
from robntk.nb201.searchspace import EDGES, check_ops, parse_arch_str

#: Per-channel normalisation (pixel units / 255) of NAS-RobBench-201 (the facts are robntk's registry).
NORMALIZATION = {k: (v.mean, v.std) for k, v in DATASETS.items()}
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # flax convention; = PyTorch momentum 0.1


def torch_uniform_init(fan_in_axes: Sequence[int]) -> Callable:
    """PyTorch default init U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a=√5 for weights).

    Args:
        fan_in_axes: axes of the kernel whose product is fan_in (for a flax conv kernel
            ``(kh, kw, I, O)``: ``(0, 1, 2)``; for a Dense kernel ``(I, O)``: ``(0,)``).
    """

    def init(key, shape, dtype=jnp.float32):
        fan_in = math.prod(shape[a] for a in fan_in_axes)
        bound = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _conv(features: int, k: int, stride: int, pad: int, init: str, name: str | None = None) -> nn.Conv:
    kinit = torch_uniform_init((0, 1, 2)) if init == "pytorch" else nn.initializers.lecun_normal()
    return nn.Conv(
        features,
        (k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=kinit,
        name=name,
    )


def _bn(train: bool, name: str | None = None) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name)


class ReLUConvBN(nn.Module):
    """ReLU → Conv(k×k, no bias) → BN (reference ``ReLUConvBN``). Input/output NHWC."""

    features: int
    kernel: int
    stride: int = 1
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(x)
        x = _conv(self.features, self.kernel, self.stride, (self.kernel - 1) // 2, self.init_scheme, "conv")(x)
        return _bn(train, "bn")(x)


def avg_pool_3x3(x):
    """AvgPool2d(3, stride 1, padding 1, count_include_pad=False). x: (B, H, W, C), same dtype out
    (flax counts the window in the default float dtype, float64 under x64: cast back)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False).astype(x.dtype)


def apply_op(op: str, x, module: nn.Module | None, train: bool):
    """Apply a cell op to ``x`` (NHWC); ``module`` is the ReLUConvBN of conv ops, else None."""
    if op == "none":
        return jnp.zeros_like(x)
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return avg_pool_3x3(x)
    return module(x, train)


def edge_module_name(edge: int, op: str) -> str:
    """Parameter-tree name of the module of ``op`` on ``edge`` (e.g. ``'e2_nor_conv_3x3'``)."""
    return f"e{edge}_{op}"


def make_edge_module(edge: int, op: str, C: int, init: str) -> nn.Module | None:
    """The parametric module of an op (None for parameter-free ops). Must be called inside a
    compact method so that flax registers it under :func:`edge_module_name`."""
    if op == "nor_conv_3x3":
        return ReLUConvBN(C, 3, 1, init, name=edge_module_name(edge, op))
    if op == "nor_conv_1x1":
        return ReLUConvBN(C, 1, 1, init, name=edge_module_name(edge, op))
    return None


class InferCell(nn.Module):
    """NB201 cell (reference ``InferCell``): node i = Σ_j op_{j→i}(node j); output node 3.

    Attributes:
        ops: 6 op names in :data:`robntk.nb201.searchspace.EDGES` order.
        C: channels (cells keep C and the spatial size).
    """

    ops: tuple[str, ...]
    C: int
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x, train: bool):
        nodes = [x]
        for dst in (1, 2, 3):
            acc = None
            for e, (src, d) in enumerate(EDGES):
                if d != dst:
                    continue
                mod = make_edge_module(e, self.ops[e], self.C, self.init_scheme)
                y = apply_op(self.ops[e], nodes[src], mod, train)
                acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[3]


class ResNetBasicblock(nn.Module):
    """Reduction block (reference ``ResNetBasicblock``, stride 2): conv_a = ReLUConvBN 3×3 s2,
    conv_b = ReLUConvBN 3×3, shortcut = AvgPool2d(2, 2) → Conv1×1 (no bias, no BN); out =
    shortcut(x) + conv_b(conv_a(x)), no final ReLU."""

    features: int
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x, train: bool):
        y = ReLUConvBN(self.features, 3, 2, self.init_scheme, name="conv_a")(x, train)
        y = ReLUConvBN(self.features, 3, 1, self.init_scheme, name="conv_b")(y, train)
        s = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        s = _conv(self.features, 1, 1, 0, self.init_scheme, "downsample")(s)
        return s + y


class TinyNetwork(nn.Module):
    """NAS-Bench-201 TinyNetwork (reference ``TinyNetwork``), returning logits.

    Attributes:
        arch: arch string or 6 ops.
        C: stem width (16 in NB201). N: cells per stage (5 in NB201).
        num_classes: 10 / 100 / 120.
        dataset: selects the input normalisation (:data:`NORMALIZATION`); ``None`` disables it.
        init: ``'pytorch'`` (default) or ``'flax'``.

    Call: ``model.apply(variables, x, train=...)`` with ``x`` float (B, H, W, 3) in [0, 1];
    returns logits (B, num_classes). With ``train=True`` pass ``mutable=['batch_stats']``.

    Raises:
        ValueError: bad arch, C < 1, N < 0, num_classes < 1, unknown dataset or init.
    """

    arch: str | tuple[str, ...]
    C: int = 16
    N: int = 5
    num_classes: int = 10
    dataset: str | None = "cifar10"
    init_scheme: str = "pytorch"

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_config(self.C, self.N, self.num_classes, self.dataset, self.init_scheme)
        ops = to_ops(self.arch)
        x = normalize(x, self.dataset)
        x = _conv(self.C, 3, 1, 1, self.init_scheme, "stem_conv")(x)
        x = _bn(train, "stem_bn")(x)
        k = 0
        for stage, width in enumerate((self.C, 2 * self.C, 4 * self.C)):
            if stage > 0:
                x = ResNetBasicblock(width, self.init_scheme, name=f"cells_{k}")(x, train)
                k += 1
            for _ in range(self.N):
                x = InferCell(ops, width, self.init_scheme, name=f"cells_{k}")(x, train)
                k += 1
        x = _bn(train, "lastact_bn")(x)
        x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        kinit = torch_uniform_init((0,)) if self.init_scheme == "pytorch" else nn.initializers.lecun_normal()
        binit = _torch_bias_init(4 * self.C) if self.init_scheme == "pytorch" else nn.initializers.zeros
        return nn.Dense(self.num_classes, kernel_init=kinit, bias_init=binit, name="classifier")(x)


def to_ops(arch) -> tuple[str, ...]:
    """Arch string or op sequence → validated 6-tuple of ops (raises ValueError)."""
    return parse_arch_str(arch) if isinstance(arch, str) else check_ops(arch)


def _torch_bias_init(fan_in: int) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        b = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -b, b)

    return init


def normalize(x, dataset: str | None):
    """(x − mean) / std per channel with the benchmark's statistics; x (..., 3) in [0, 1]."""
    if dataset is None:
        return x
    mean, std = NORMALIZATION[dataset]
    mean = jnp.asarray(mean, x.dtype) / 255.0
    std = jnp.asarray(std, x.dtype) / 255.0
    return (x - mean) / std


def num_params_closed_form(arch, C: int = 16, N: int = 5, num_classes: int = 10) -> int:
    """Closed-form trainable-parameter count of TinyNetwork(C, N, arch, num_classes).

    stem 27C + 2C; cells: 3×3 edge 9c²+2c, 1×1 edge c²+2c at c ∈ {C, 2C, 4C}, N cells each;
    reduction c→2c: conv_a 9c·2c + 4c, conv_b 9·(2c)² + 4c, shortcut c·2c;
    lastact 2·4C + Linear 4C·num_classes + num_classes.
    """
    from robntk.nb201.searchspace import num_cell_params

    total = 27 * C + 2 * C
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            cin = c // 2
            total += 9 * cin * c + 2 * c + 9 * c * c + 2 * c + cin * c
        total += N * num_cell_params(arch, c)
    total += 2 * 4 * C + 4 * C * num_classes + num_classes
    return total


def init_variables(model: TinyNetwork, key, x_shape=(1, 32, 32, 3), dtype=jnp.float32) -> dict[str, Any]:
    """Initialise ``{'params', 'batch_stats'}`` for an input shape (B, H, W, 3)."""
    return model.init(key, jnp.zeros(x_shape, dtype), train=False)


def make_apply(model: nn.Module, variables: dict[str, Any], bn_mode: str = "train") -> tuple[Callable, Any]:
    """Pure ``f(params, x) -> logits`` for the NTK and attacks, and the params pytree.

    Args:
        model: a flax module taking ``(x, train)``.
        variables: ``{'params', 'batch_stats'}``.
        bn_mode: ``'train'`` (batch statistics; statistic updates are discarded, so ``f`` is a
            pure function of the batch) or ``'eval'`` (running statistics).

    Raises:
        ValueError: unknown bn_mode.
    """
    if bn_mode not in ("train", "eval"):
        raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
    rest = {k: v for k, v in variables.items() if k != "params"}

    if bn_mode == "train":

        def f(params, x):
            out, _ = model.apply({"params": params, **rest}, x, train=True, mutable=["batch_stats"])
            return out
    else:

        def f(params, x):
            return model.apply({"params": params, **rest}, x, train=False)

    return f, variables["params"]


def count_params(params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
