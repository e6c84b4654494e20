"""The NAS-Bench-201 TinyNetwork, defined once: a functional forward over a flax-style parameter tree.

One definition serves both uses of the network:

* a **fixed cell** (the cell given as an arch string or 6 op names — static Python data): every
  edge is a plain Python branch, so only the chosen ops are traced (training, evaluation,
  single-arch scoring);
* a **cell given as data** (6 int32 op ids, traced): every edge is a :func:`jax.lax.switch` over
  the 5 ops, so ONE compiled function serves all 15,625 cells (the scoring engine).

Why a functional forward and not a flax module: the cell-as-data form needs the parameters of
*every* op of every edge in one tree and an op choice that is data, which a flax module with
submodules created at trace time cannot express without making the parameter tree depend on the
arch; the engine also needs taps and records inside the forward (per-example gradients). A plain
function of ``(params, stats, x, cell)`` keeps ``f(params, x)`` pure, works with ``jit``/``vmap``/
``grad`` and orbax as any pytree, and lets the fixed-cell and cell-as-data forms share every line
of arithmetic. The tree uses flax's names and layout (``{'params', 'batch_stats'}``, HWIO conv
kernels, ``scale``/``bias``, ``mean``/``var``), mirroring the reference module tree
(``cells_3/e2_nor_conv_3x3/conv/kernel``: cell 3, edge 2 in :data:`robntk.nb201.searchspace.EDGES`
order), so a fixed cell's parameters are a *sub-tree* of the full tree (:meth:`TinyNetwork.extract`).

Reference: D-X-Y/AutoDL-Projects ``xautodl/models/cell_operations.py`` (ops),
``cell_infers/cells.py`` (``InferCell``), ``cell_infers/tiny_network.py`` (``TinyNetwork``), as
copied into the NAS-RobBench-201 code (TT2408/nasrobbench201). The benchmark wraps
the network as ``Sequential(Normalize(mean, std), TinyNetwork)``; here the normalisation is
inside, so inputs are NHWC images in [0, 1]::

    stem: Conv3x3(3→C, no bias) → BN
    N cells (C) → ResNetBasicblock(C→2C, stride 2) → N cells (2C)
                → ResNetBasicblock(2C→4C, stride 2) → N cells (4C)
    lastact: BN → ReLU → global average pool → Linear(4C → num_classes)

    net = TinyNetwork(C=16, N=5, num_classes=10, dataset="cifar10")
    variables = net.init(jax.random.PRNGKey(0))                 # {'params', 'batch_stats'}
    logits = net.apply(variables, x, "|nor_conv_3x3~0|+|...|")   # fixed cell
    f = jax.jit(lambda v, x, ids: net.apply(v, x, ids))         # cell as data: compiled once
    logits = f(variables, x, op_ids("|nor_conv_3x3~0|+|...|"))

Initialisation ("init seed s", one definition everywhere). Every parameter leaf at path
``a/b/c`` of the full tree is drawn independently from ``fold_in(PRNGKey(s), crc32('a/b/c'))``
with the scheme's distribution (``'pytorch'``, the reference's defaults: U(−1/√fan_in,
1/√fan_in) for Conv/Linear weights and the Linear bias, BN scale 1, bias 0; ``'kaiming'``:
PyTorch's ``kaiming_normal_`` (fan_in, ReLU gain) N(0, 2/fan_in) weights, zero Linear bias;
``'flax'``: lecun_normal, zero bias), in blocks of 4096 values (:func:`_draw`); running statistics are
mean 0, var 1. The network of an arch for seed ``s`` is ``extract(init(PRNGKey(s)), arch)``: a
leaf's value does not depend on the other ops of the cell, and the same seed gives the same
weights in ``score``, the engine, ``train`` and ``evaluate``.

BatchNorm (:func:`batch_norm`, written once): ``train=True`` normalises with the batch's
statistics (a PyTorch model in ``train()`` mode; examples are coupled through the batch) and, with
``momentum`` given, also returns the updated running statistics (flax's convention: running =
momentum·running + (1 − momentum)·batch, biased batch variance; momentum 0.9 = PyTorch 0.1);
``train=False`` uses the running statistics (the identity at initialisation). eps 1e-5.

Execution model of the cell as data: un-vmapped over archs (one arch per call or
:func:`jax.lax.map` over archs) a switch is a real conditional and only the chosen op's FLOPs
run (best on CPU); under :func:`jax.vmap` over archs XLA turns it into a select and computes
every op (parallel archs on accelerators). The convolutions inside a switch use
:func:`cell_conv`, whose hand-written VJP avoids an XLA:CPU slow path for convolution gradients
inside conditionals. The parameters an arch does not use receive an exactly zero gradient.

The cell itself (op ids, validation, and one edge in each form) is :mod:`robntk.nb201.cell`; the
layers (convolution, pooling, BatchNorm, normalisation, initial draws) :mod:`robntk.nb201.layers`.

Exactness (tests): the fixed-cell and cell-as-data forms agree to ≤1e-10 (logits, NTK) in
float64, and both equal an independent flax-module port of the reference
(``tests/support/reference_flax.py``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk.core.registry import DATASETS, NUM_CLASSES, check_bn_mode
from robntk.nb201.cell import (
    CONV_OPS,
    _cell_ops,
    _data_edge,
    _static_edge,
    edge_module_name,
    static_cell,
)
from robntk.nb201.layers import (
    _TRUNC_STD,
    BN_MOMENTUM,
    Params,
    _draw,
    _Run,
    avg_pool_2x2,
    conv,
    normalize,
)
from robntk.nb201.searchspace import EDGES, NUM_EDGES

INIT_SCHEMES = ("pytorch", "kaiming", "flax")


def check_config(C: int, N: int, num_classes: int, dataset: str | None, init: str) -> None:
    """Validate TinyNetwork hyper-parameters.

    Raises:
        ValueError: naming the bad value and what is allowed.
    """
    if not isinstance(C, int) or C < 1:
        raise ValueError(f"C must be a positive int, got {C!r}")
    if not isinstance(N, int) or N < 0:
        raise ValueError(f"N must be a non-negative int, got {N!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)} or None")
    if init not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {init!r}; allowed: {', '.join(INIT_SCHEMES)}")


@dataclass(frozen=True)
class TinyNetwork:
    """NAS-Bench-201 TinyNetwork for a fixed cell or a cell given as data (module docstring).

    Attributes:
        C: stem width (NB201: 16). N: cells per stage (NB201: 5).
        num_classes: 10 / 100 / 120.
        dataset: input normalisation (:data:`robntk.core.registry.DATASETS`) or None (no normalisation).
        init_scheme: ``'pytorch'`` (default, the reference's) or ``'flax'``.

    A ``cell`` argument is an arch string or 6 op names (fixed cell: Python branches) or an int
    array (6,) of op ids (cell as data: ``lax.switch``; not validated when traced — use
    :func:`robntk.nb201.cell.check_op_ids` on the host).

    Raises:
        ValueError: bad C, N, num_classes, dataset or init scheme.
    """

    C: int = 16
    N: int = 5
    num_classes: int = 10
    dataset: str | None = "cifar10"
    init_scheme: str = "pytorch"

    def __post_init__(self):
        check_config(self.C, self.N, self.num_classes, self.dataset, self.init_scheme)

    @classmethod
    def for_dataset(cls, dataset: str, C: int = 16, N: int = 5, init_scheme: str = "pytorch") -> TinyNetwork:
        """The network of ``dataset`` (its class count and normalisation).

        Raises:
            ValueError: unknown dataset or bad C, N, init scheme.
        """
        if dataset not in NUM_CLASSES:
            raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(NUM_CLASSES)}")
        return cls(C=C, N=N, num_classes=NUM_CLASSES[dataset], dataset=dataset, init_scheme=init_scheme)

    # ------------------------------------------------------------------ structure
    def cell_positions(self) -> list[tuple[int, str, int]]:
        """``(k, kind, width)`` for every block ``cells_k``: kind ``'cell'`` or ``'reduce'``."""
        out, k = [], 0
        for stage, width in enumerate((self.C, 2 * self.C, 4 * self.C)):
            if stage > 0:
                out.append((k, "reduce", width))
                k += 1
            for _ in range(self.N):
                out.append((k, "cell", width))
                k += 1
        return out

    def param_spec(self, arch=None) -> dict[str, Any]:
        """Nested dict of parameter leaves ``(shape, kind, fan_in)`` (kind ``'conv'``,
        ``'dense'``, ``'dense_bias'``, ``'ones'``, ``'zeros'``): the full tree (every op of every
        edge; ``arch=None``) or the sub-tree of ``arch`` (cells without parametric ops omitted)."""
        C = self.C
        keep = (
            None
            if arch is None
            else {edge_module_name(e, op) for e, op in enumerate(_cell_ops(arch)) if op in CONV_OPS}
        )

        def rcb(cin, cout, k):
            return {
                "conv": {"kernel": ((k, k, cin, cout), "conv", k * k * cin)},
                "bn": {"scale": ((cout,), "ones", 0), "bias": ((cout,), "zeros", 0)},
            }

        spec: dict[str, Any] = {
            "stem_conv": {"kernel": ((3, 3, 3, C), "conv", 27)},
            "stem_bn": {"scale": ((C,), "ones", 0), "bias": ((C,), "zeros", 0)},
        }
        for k, kind, w in self.cell_positions():
            if kind == "reduce":
                cin = w // 2
                spec[f"cells_{k}"] = {
                    "conv_a": rcb(cin, w, 3),
                    "conv_b": rcb(w, w, 3),
                    "downsample": {"kernel": ((1, 1, cin, w), "conv", cin)},
                }
                continue
            mods = {edge_module_name(e, op): rcb(w, w, ks) for e in range(NUM_EDGES) for op, ks in CONV_OPS.items()}
            mods = {m: v for m, v in mods.items() if keep is None or m in keep}
            if mods:
                spec[f"cells_{k}"] = mods
        W = 4 * C
        spec["lastact_bn"] = {"scale": ((W,), "ones", 0), "bias": ((W,), "zeros", 0)}
        spec["classifier"] = {
            "kernel": ((W, self.num_classes), "dense", W),
            "bias": ((self.num_classes,), "dense_bias", W),
        }
        return spec

    def init(self, key: jax.Array, dtype=jnp.float32, arch=None) -> dict[str, Params]:
        """Variables ``{'params', 'batch_stats'}`` for "init seed s" = ``key = PRNGKey(s)``.

        Every leaf at path ``a/b/c`` is drawn from ``fold_in(key, crc32('a/b/c'))`` (module
        docstring), so ``init(key, arch=A)`` equals ``extract(init(key), A)`` exactly.

        Args:
            key: PRNG key. dtype: float dtype of all leaves (float64 needs ``jax_enable_x64``).
            arch: None for the full tree (every op of every edge), or an arch (string, op names
                or ids) for its sub-tree only.

        Returns:
            ``{'params': ..., 'batch_stats': ...}``, nested dicts of arrays (batch statistics
            mean 0, var 1).

        Raises:
            ValueError: a malformed arch.
        """
        pytorch = self.init_scheme == "pytorch"

        def leaf(path, shape, kind, fan_in):
            k = jax.random.fold_in(key, zlib.crc32(path.encode()))
            if kind == "ones":
                return jnp.ones(shape, dtype)
            if kind == "zeros" or (kind == "dense_bias" and not pytorch):
                return jnp.zeros(shape, dtype)
            if pytorch:  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                return _draw(k, shape, dtype, "uniform") * (1 / math.sqrt(fan_in))
            if self.init_scheme == "kaiming":  # torch kaiming_normal_(fan_in, relu): N(0, 2/fan_in)
                return _draw(k, shape, dtype, "normal") * math.sqrt(2 / fan_in)
            # flax lecun_normal: truncated normal on [-2, 2] with std sqrt(1/fan_in)
            return _draw(k, shape, dtype, "truncated_normal") * (math.sqrt(1 / fan_in) / _TRUNC_STD)

        def walk(node, prefix):
            if isinstance(node, tuple):
                return leaf(prefix, *node)
            return {n: walk(v, f"{prefix}/{n}" if prefix else n) for n, v in node.items()}

        params = walk(self.param_spec(arch), "")
        return {"params": params, "batch_stats": _stats_like(params, dtype)}

    # ------------------------------------------------------------------ forward
    def apply(self, variables: dict[str, Params], x: jax.Array, cell, train: bool = False) -> jax.Array:
        """Logits of the network with ``cell`` (fixed or as data).

        Args:
            variables: ``{'params', 'batch_stats'}`` (the full tree, or a fixed cell's sub-tree).
            x: (B, H, W, 3) float images in [0, 1] (normalised inside when ``dataset`` is set).
            cell: arch string / 6 op names (fixed) or int (6,) op ids (data).
            train: BN with batch statistics (rows coupled) instead of running statistics.

        Returns:
            logits (B, num_classes), dtype of x/params.
        """
        return self.forward(variables["params"], variables.get("batch_stats"), x, cell, train)[0]

    def apply_train(
        self, variables: dict[str, Params], x: jax.Array, cell, momentum: float = BN_MOMENTUM
    ) -> tuple[jax.Array, Params]:
        """Train-mode forward that also updates the running statistics (a training step).

        Returns:
            (logits (B, num_classes), new ``batch_stats`` with the structure of
            ``variables['batch_stats']``).
        """
        logits, aux = self.forward(variables["params"], variables["batch_stats"], x, cell, True, momentum=momentum)
        return logits, aux["batch_stats"]

    def make_apply(self, variables: dict[str, Params], cell, bn_mode: str) -> tuple[NetworkFn, Params]:
        """Pure ``f(params, x) -> logits`` of ``cell`` for the NTK and the attacks, and the params.

        Args:
            variables: ``{'params', 'batch_stats'}``. cell: fixed or as data (may be traced).
            bn_mode: ``'train'`` (batch statistics; ``f`` is a pure function of the batch, the
                running statistics are not updated) or ``'eval'`` (running statistics).

        Returns:
            (:class:`NetworkFn` ``f``, ``variables['params']``).

        Raises:
            ValueError: bn_mode not 'train' or 'eval'.
        """
        train = check_bn_mode(bn_mode) == "train"
        return NetworkFn(self, cell, variables.get("batch_stats"), train), variables["params"]

    def forward(
        self,
        params: Params,
        stats: Params | None,
        x: jax.Array,
        cell,
        train: bool,
        taps: dict[str, jax.Array] | None = None,
        momentum: float | None = None,
    ) -> tuple[jax.Array, dict[str, Any]]:
        """Forward pass with optional taps, records and running-statistic updates.

        Args:
            params, stats: parameters and running statistics (``stats`` may be None when
                ``train`` is True and ``momentum`` is None).
            x: (B, H, W, 3) in [0, 1], any float dtype: it is cast to the parameters' dtype (the
                network computes in the dtype it was initialised in, whatever
                ``jax_enable_x64`` says). cell: fixed (arch string / op names) or int (6,) op ids.
            train: BN mode (batch statistics when True).
            taps: None, or a dict of arrays shaped as :meth:`tap_shapes` added to intermediate
                outputs — the cotangent of a tap is the gradient w.r.t. that output (flax
                ``perturb``-style); with taps the intermediates needed for per-example parameter
                gradients are recorded.
            momentum: with ``train``, return updated running statistics (:func:`batch_norm`).

        Returns:
            (logits (B, num_classes), aux). ``aux`` holds, with taps, the records ``stem/in``
            (normalised input), ``stem/conv_out``, ``cells_k/e{e}/in`` (edge input, pre-ReLU)
            and ``cells_k/e{e}/conv_out`` (output of the chosen conv op; for a cell as data
            zeros when the op is not a conv; for a fixed cell only conv edges are recorded),
            ``cells_k/conv_a/in``, ``.../conv_a/conv_out``, ``conv_b`` likewise,
            ``cells_k/downsample/in`` (pooled input), ``lastact/conv_out`` (the last BN's input),
            ``features`` (B, 4C);
            and, with ``momentum``, ``batch_stats``: the updated running statistics.
        """
        ops = static_cell(cell)
        run = _Run(stats, train, taps, momentum)
        x = normalize(jnp.asarray(x, params["stem_conv"]["kernel"].dtype), self.dataset)
        run.record("stem/in", x)
        h = conv(x, params["stem_conv"]["kernel"])
        h = run.tap("stem", run.bn(h, params["stem_bn"], ("stem_bn",), "stem"))
        for k, kind, _ in self.cell_positions():
            name = f"cells_{k}"
            if kind == "reduce":
                p, y = params[name], h
                for sub, stride in (("conv_a", 2), ("conv_b", 1)):
                    run.record(f"{name}/{sub}/in", y)
                    y = conv(jax.nn.relu(y), p[sub]["conv"]["kernel"], stride)
                    y = run.tap(f"{name}/{sub}", run.bn(y, p[sub]["bn"], (name, sub, "bn"), f"{name}/{sub}"))
                sc = avg_pool_2x2(h)
                run.record(f"{name}/downsample/in", sc)
                h = run.tap(f"{name}/downsample", conv(sc, p["downsample"]["kernel"])) + y
            else:
                h = self._cell(run, params.get(name, {}), name, h, cell if ops is None else ops, ops is not None)
        h = run.tap("lastact", run.bn(h, params["lastact_bn"], ("lastact_bn",), "lastact"))
        feats = jnp.mean(jax.nn.relu(h), axis=(1, 2))
        run.record("features", feats)
        logits = feats @ params["classifier"]["kernel"] + params["classifier"]["bias"]
        aux = dict(run.rec or {})
        if run.new_stats is not None:
            aux["batch_stats"] = run.new_stats
        return logits, aux

    def _cell(self, run: _Run, p, name, x, cell, static: bool):
        nodes = [x]
        for dst in (1, 2, 3):
            acc = None
            for e, (src, d) in enumerate(EDGES):
                if d != dst:
                    continue
                edge = _static_edge if static else _data_edge
                y = run.tap(f"{name}/e{e}", edge(run, p, name, e, nodes[src], cell[e]))
                acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[3]

    def tap_shapes(self, x_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Shapes of the taps of :meth:`forward` for inputs of shape (B, H, W, 3): ``name`` after
        each BN (or after the shortcut conv ``cells_k/downsample``; for a cell edge, after the
        edge's op) and ``name/pre`` at the conv output before each BN."""
        B, H, W = x_shape[:3]
        out = {"stem": (B, H, W, self.C)}
        for k, kind, w in self.cell_positions():
            if kind == "reduce":
                H, W = H // 2, W // 2
                for sub in ("conv_a", "conv_b", "downsample"):
                    out[f"cells_{k}/{sub}"] = (B, H, W, w)
            else:
                for e in range(NUM_EDGES):
                    out[f"cells_{k}/e{e}"] = (B, H, W, w)
        out["lastact"] = (B, H, W, 4 * self.C)
        # pre-BN taps (conv outputs) of every BN layer, same shapes as the post-BN ones
        out.update({f"{n}/pre": s for n, s in out.items() if not n.endswith("downsample")})
        return out

    # ------------------------------------------------------------------ sub-trees and counts
    def extract(self, variables: dict[str, Params], arch) -> dict[str, Params]:
        """Variables of the fixed cell ``arch``: the sub-tree of full-tree ``variables`` (same
        leaf objects; cells without parametric ops are omitted).

        Raises:
            ValueError: malformed arch; ``variables`` not a full tree of this config.
        """
        keep = {edge_module_name(e, op) for e, op in enumerate(_cell_ops(arch)) if op in CONV_OPS}
        _check_shapes(variables.get("params", {}), self.param_spec(), "full-tree")
        out = {}
        for coll, tree in variables.items():
            sub = {}
            for name, node in tree.items():
                if self._is_cell(name):
                    node = {m: v for m, v in node.items() if m in keep}
                    if not node:
                        continue
                sub[name] = node
            out[coll] = sub
        return out

    def embed(self, variables: dict[str, Params], sub: dict[str, Params], arch) -> dict[str, Params]:
        """Full-tree variables with a fixed cell's values (``sub``, e.g. trained) written in.

        Args:
            variables: full-tree variables (not modified; a new tree is returned).
            sub: ``{'params', 'batch_stats'}`` of the fixed cell ``arch``.

        Raises:
            ValueError: ``sub`` does not have the shapes of ``arch``'s sub-tree.
        """
        _check_shapes(sub.get("params", {}), self.param_spec(arch), f"sub-tree of {arch!r}")
        out = jax.tree_util.tree_map(lambda a: a, variables)

        def put(dst, src, path):
            for n, v in src.items():
                if n not in dst:
                    raise ValueError(f"leaf {path}/{n} has no counterpart in the full tree")
                if isinstance(v, dict):
                    put(dst[n], v, f"{path}/{n}")
                else:
                    dst[n] = jnp.asarray(v, dst[n].dtype)

        for coll, tree in sub.items():
            if coll not in out:
                raise ValueError(f"collection {coll!r} not in the full-tree variables")
            put(out[coll], tree, coll)
        return out

    def num_params(self, arch=None) -> int:
        """Trainable parameters of the full tree (``arch=None``) or of the network of ``arch``
        (= the reference PyTorch count: 1,073,466 for NB201 index 2581 at C=16, N=5)."""
        spec = self.param_spec(arch)
        leaves = jax.tree_util.tree_leaves(spec, is_leaf=lambda t: isinstance(t, tuple) and isinstance(t[1], str))
        return int(sum(math.prod(l[0]) for l in leaves))

    def _is_cell(self, name: str) -> bool:
        if not name.startswith("cells_"):
            return False
        k = int(name.split("_")[1])
        return any(kk == k and kind == "cell" for kk, kind, _ in self.cell_positions())


class NetworkFn:
    """``f(params, x) -> logits`` of a :class:`TinyNetwork` with a cell, running statistics and
    a BN mode: a plain callable for attacks and the generic NTK, which also exposes its
    structure so that :mod:`robntk.ntk.layerwise` can compute its NTK from per-layer gradients.

    Attributes:
        net: the network. cell: fixed or as data (may be traced). stats: running statistics.
        train: BN with batch statistics (rows coupled) instead of running statistics.
    """

    def __init__(self, net: TinyNetwork, cell, stats: Params | None, train: bool):
        self.net, self.cell, self.stats, self.train = net, cell, stats, bool(train)

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        """Logits (B, num_classes) of x (B, H, W, 3) in [0, 1]."""
        return self.net.forward(params, self.stats, x, self.cell, self.train)[0]

    def with_bn_mode(self, bn_mode: str) -> NetworkFn:
        """The same network function in another BN mode (``'train'`` / ``'eval'``)."""
        return NetworkFn(self.net, self.cell, self.stats, check_bn_mode(bn_mode) == "train")


def _stats_like(params: Params, dtype) -> Params:
    """Batch statistics (mean 0, var 1) for every BN of a params tree (modules with scale/bias)."""
    out = {}
    for n, v in params.items():
        if not isinstance(v, dict):
            continue
        if "scale" in v and "bias" in v:
            out[n] = {"mean": jnp.zeros_like(v["scale"], dtype), "var": jnp.ones_like(v["scale"], dtype)}
        else:
            sub = _stats_like(v, dtype)
            if sub:
                out[n] = sub
    return out


def _check_shapes(params: Params, spec: dict, what: str) -> None:
    """Raise ValueError if ``params`` does not have the leaves and shapes of ``spec``."""
    is_leaf = lambda t: isinstance(t, tuple) and len(t) == 3 and isinstance(t[1], str)
    want = {
        jax.tree_util.keystr(p): tuple(v[0]) for p, v in jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_leaf)[0]
    }
    got = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    if got != want:
        missing = sorted(set(want) - set(got))[:5]
        extra = sorted(set(got) - set(want))[:5]
        bad = sorted(k for k in set(want) & set(got) if want[k] != got[k])[:5]
        raise ValueError(
            f"{what} params do not match the network: missing {missing}, unexpected {extra}, shape mismatch at {bad}"
        )
