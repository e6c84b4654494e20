"""Architecture as data: one NB201 network whose cell ops are an input array.

:class:`SuperNet` holds the parameters of *every* op on every edge of every cell, under the
same names as the dedicated :class:`robntk.network.TinyNetwork` (``cells_{k}/e{edge}_{op}/conv``,
``.../bn``; ``stem_conv``, ``stem_bn``, ``cells_{k}/conv_a|conv_b|downsample``, ``lastact_bn``,
``classifier``), so the parameters of the dedicated network of an arch are a *sub-tree*
(:meth:`SuperNet.extract`, :meth:`SuperNet.embed`). The cell is given as ``op_ids``, an int32
array of shape (6,) in :data:`robntk.searchspace.EDGES` order with the op ids of
:data:`robntk.searchspace.OPS` (0 none, 1 skip, 2 1×1, 3 3×3, 4 avg-pool); the same cell is
used in all 3·N cell positions, as in NB201. Because ``op_ids`` is traced data, one compiled
function serves all 15,625 cells::

    net = SuperNet(C=16, N=5, num_classes=10, dataset="cifar10")
    variables = net.init(jax.random.PRNGKey(0))           # {'params', 'batch_stats'}
    f = jax.jit(lambda v, x, ids: net.apply(v, x, ids))   # compiled once
    logits = f(variables, x, op_ids("|nor_conv_3x3~0|+|...|"))         # (B, num_classes)
    many = jax.vmap(lambda ids: net.apply(variables, x, ids))(ids_A6)  # (A, B, num_classes)

Execution model (the trade-off). Every edge is a :func:`jax.lax.switch` on its op id:

* un-vmapped over archs (one arch per call, or several archs through :func:`jax.lax.map`,
  whose body sees an un-batched id) it is a real conditional: only the chosen op's FLOPs run.
  Best on CPU, where FLOPs are the bottleneck.
* under :func:`jax.vmap` over archs the index is batched and XLA turns the switch into a
  *select*: every op of every edge is computed for every arch (≈ the cost of an all-ops cell,
  ~1.15× an all-3×3 network, ~3.8× the average cell's FLOPs) and the unchosen results are
  discarded. Parallelism across archs usually wins on accelerators; on CPU it multiplies the
  work.

The convolutions inside the switch use :func:`cell_conv`, whose hand-written VJP avoids an
XLA:CPU slow path for convolution gradients inside conditionals (10–30× slower backward).

Exactness. For every arch, ``apply(variables, x, ids)`` equals the dedicated
``TinyNetwork(arch).apply(extract(variables, arch), x)`` (same ops in the same order; tests
check logits, NTK and λ_min to ≤1e-5 relative in float64, train- and eval-mode BN). The
parameters an arch does not use receive an exactly zero gradient (an untaken switch branch has a
zero cotangent; a discarded select branch is multiplied by an exact 0), so they contribute
nothing to its NTK.

Initialisation ("init seed s"). The supernet draws every parameter leaf independently from
``k = jax.random.fold_in(PRNGKey(s), crc32(path))`` (``path`` like
``'cells_3/e2_nor_conv_3x3/conv/kernel'``) with the scheme's distribution (``'pytorch'``:
U(−1/√fan_in, 1/√fan_in) for Conv/Linear weights and the Linear bias, BN scale 1, bias 0;
``'flax'``: lecun_normal = truncated normal with std 1/√fan_in, zero bias); the values are
drawn in blocks of 4096 with ``fold_in(k, j)`` (see :func:`_draw`). For an arch, "the network
initialised with seed s" in the engine means the sub-tree :meth:`SuperNet.extract` of
``init(PRNGKey(s))``. This is *not*
what ``TinyNetwork(arch).init(PRNGKey(s))`` draws (flax folds keys by module structure, which
depends on the arch) but it has the same distribution, and a leaf's value does not depend on
the other ops of the cell. The per-arch dedicated path (:func:`robntk.scoring.score_arch`) stays
available; scores of the two paths agree exactly when given the same parameter values.

Sources: the NB201 reference (D-X-Y/AutoDL-Projects ``cell_operations.py``, ``cells.py``,
``tiny_network.py``) as ported in :mod:`robntk.network`; BN arithmetic as flax
``nn.BatchNorm`` (fast variance E[x²]−E[x]², clipped at 0; eps 1e-5).
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .network import BN_EPS, NUM_CLASSES, TinyNetwork, avg_pool_3x3, check_config, edge_module_name, normalize, to_ops
from .searchspace import EDGES, NUM_EDGES, OPS, ops_to_ids

#: Op ids (index into :data:`robntk.searchspace.OPS`).
NONE, SKIP, CONV1, CONV3, POOL = range(5)
#: Parametric ops and their kernel size.
CONV_OPS: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}

Params = dict[str, Any]


# --------------------------------------------------------------------------- op ids
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


# --------------------------------------------------------------------------- pure layers
def conv(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """NHWC convolution with an HWIO kernel, 'same'-style padding (k−1)/2, no bias (= flax
    ``nn.Conv(padding=((p, p), (p, p)), use_bias=False)``). x (B, H, W, I) → (B, H', W', O)."""
    k = kernel.shape[0]
    p = (k - 1) // 2
    return jax.lax.conv_general_dilated(
        x, kernel, (stride, stride), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def cell_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 :func:`conv` with a hand-written VJP, for convs inside ``lax.switch`` branches.

    Values are those of :func:`conv`. The VJP computes the input gradient as a forward
    convolution with the flipped, in/out-swapped kernel and the kernel gradient as k² shifted
    ``einsum`` contractions. Reason: XLA:CPU runs the convolutions that autodiff emits for the
    transposed conditional (input-gradient and filter-gradient convolutions) 10–30× slower than
    the same ops outside a conditional (measured: backward of the NB201 supernet 3.3 s vs
    0.33 s for the dedicated net, B=32); forward-style convolutions and dots are unaffected.
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
    dk = jnp.stack([jnp.stack([jnp.einsum("nhwc,nhwd->cd", xp[:, i:i + H, j:j + W, :], g)
                               for j in range(k)]) for i in range(k)])
    return dx, dk.astype(kernel.dtype)


cell_conv.defvjp(_cell_conv_fwd, _cell_conv_bwd)


def batch_norm(x: jax.Array, p: Params, s: Params | None, train: bool) -> jax.Array:
    """BatchNorm over (B, H, W) exactly as flax ``nn.BatchNorm`` (eps 1e-5).

    Args:
        x: (B, H, W, C). p: ``{'scale', 'bias'}`` (C,). s: ``{'mean', 'var'}`` (C,) running
            statistics, used when ``train`` is False.
        train: batch statistics (fast variance E[x²]−E[x]², clipped at 0) instead of running ones.
    """
    if train:
        mean = jnp.mean(x, axis=(0, 1, 2))
        var = jnp.maximum(0.0, jnp.mean(jnp.square(x), axis=(0, 1, 2)) - jnp.square(mean))
    else:
        mean, var = s["mean"], s["var"]
    return (x - mean) * (jax.lax.rsqrt(var + BN_EPS) * p["scale"]) + p["bias"]


def bn_affine(p: Params, s: Params) -> tuple[jax.Array, jax.Array]:
    """Eval-mode BN as y = x·a + b: returns (a, b), each (C,)."""
    a = jax.lax.rsqrt(s["var"] + BN_EPS) * p["scale"]
    return a, p["bias"] - s["mean"] * a


def relu_conv_bn(x, p: Params, s: Params | None, stride: int, train: bool, rec: dict | None = None,
                 name: str = "") -> jax.Array:
    """ReLU → Conv (no bias) → BN (reference ``ReLUConvBN``); records the conv output in
    ``rec[name + '/conv_out']`` when ``rec`` is a dict."""
    y = conv(jax.nn.relu(x), p["conv"]["kernel"], stride)
    if rec is not None:
        rec[name + "/conv_out"] = y
    return batch_norm(y, p["bn"], None if s is None else s["bn"], train)


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """AvgPool2d(2, 2) of the reduction shortcut, x (B, H, W, C) → (B, H/2, W/2, C)."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


# --------------------------------------------------------------------------- the network
#: Random leaves are drawn in blocks of this many values (one compiled RNG kernel for all shapes).
DRAW_BLOCK = 4096
#: Standard deviation of a standard normal truncated to [-2, 2] (flax's variance_scaling constant).
_TRUNC_STD = 0.87962566103423978


def _draw(key, shape, dtype, kind: str) -> jax.Array:
    """Leaf of ``shape``: the first prod(shape) values of the concatenation over j = 0, 1, ... of
    ``U(-1, 1)`` (``kind='uniform'``) or standard normals truncated to [-2, 2]
    (``'truncated_normal'``) of shape (:data:`DRAW_BLOCK`,) drawn with ``fold_in(key, j)``,
    reshaped row-major. Drawing fixed-size blocks keeps eager init to one compiled kernel
    instead of one per leaf shape."""
    size = math.prod(shape)
    blocks = []
    for j in range(-(-size // DRAW_BLOCK)):
        kj = jax.random.fold_in(key, j)
        if kind == "uniform":
            blocks.append(jax.random.uniform(kj, (DRAW_BLOCK,), dtype, -1.0, 1.0))
        else:
            blocks.append(jax.random.truncated_normal(kj, -2.0, 2.0, (DRAW_BLOCK,), dtype))
    return jnp.concatenate(blocks)[:size].reshape(shape)


@dataclass(frozen=True)
class SuperNet:
    """NB201 TinyNetwork with the cell as data (see the module docstring).

    Attributes:
        C: stem width (NB201: 16). N: cells per stage (NB201: 5).
        num_classes: 10 / 100 / 120.
        dataset: input normalisation (:data:`robntk.network.NORMALIZATION`) or None.
        init_scheme: ``'pytorch'`` (default) or ``'flax'``.

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
    def for_config(cls, cfg) -> "SuperNet":
        """The supernet of a :class:`robntk.scoring.ScoreConfig` (C, N, dataset, init scheme)."""
        return cls(C=cfg.C, N=cfg.N, num_classes=NUM_CLASSES[cfg.dataset], dataset=cfg.dataset,
                   init_scheme=cfg.init_scheme)

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

    def dedicated(self, arch) -> TinyNetwork:
        """The dedicated :class:`~robntk.network.TinyNetwork` of ``arch`` with this config."""
        ops = to_ops(arch) if not _is_ids(arch) else ids_to_ops(arch)
        return TinyNetwork(ops, C=self.C, N=self.N, num_classes=self.num_classes, dataset=self.dataset,
                           init_scheme=self.init_scheme)

    def param_spec(self) -> dict[str, Any]:
        """Nested dict of the supernet's parameter leaves: ``(shape, kind, fan_in)`` with kind
        ``'conv'``, ``'dense'``, ``'dense_bias'``, ``'ones'``, ``'zeros'``."""
        C = self.C

        def rcb(cin, cout, k):
            return {"conv": {"kernel": ((k, k, cin, cout), "conv", k * k * cin)},
                    "bn": {"scale": ((cout,), "ones", 0), "bias": ((cout,), "zeros", 0)}}

        spec: dict[str, Any] = {"stem_conv": {"kernel": ((3, 3, 3, C), "conv", 27)},
                                "stem_bn": {"scale": ((C,), "ones", 0), "bias": ((C,), "zeros", 0)}}
        for k, kind, w in self.cell_positions():
            if kind == "reduce":
                cin = w // 2
                spec[f"cells_{k}"] = {"conv_a": rcb(cin, w, 3), "conv_b": rcb(w, w, 3),
                                      "downsample": {"kernel": ((1, 1, cin, w), "conv", cin)}}
            else:
                spec[f"cells_{k}"] = {edge_module_name(e, op): rcb(w, w, ks)
                                      for e in range(NUM_EDGES) for op, ks in CONV_OPS.items()}
        W = 4 * C
        spec["lastact_bn"] = {"scale": ((W,), "ones", 0), "bias": ((W,), "zeros", 0)}
        spec["classifier"] = {"kernel": ((W, self.num_classes), "dense", W),
                              "bias": ((self.num_classes,), "dense_bias", W)}
        return spec

    def init(self, key: jax.Array, dtype=jnp.float32) -> dict[str, Params]:
        """Supernet variables ``{'params', 'batch_stats'}`` ("init seed s" = ``PRNGKey(s)``).

        Every leaf at path ``a/b/c`` is drawn from ``fold_in(key, crc32('a/b/c'))`` (module
        docstring); batch statistics are mean 0, var 1 (PyTorch/flax init).

        Args:
            key: PRNG key. dtype: float dtype of all leaves (float64 needs ``jax_enable_x64``).

        Returns:
            ``{'params': ..., 'batch_stats': ...}``, nested dicts of arrays.
        """
        pytorch = self.init_scheme == "pytorch"

        def leaf(path, shape, kind, fan_in):
            k = jax.random.fold_in(key, zlib.crc32(path.encode()))
            if kind == "ones":
                return jnp.ones(shape, dtype)
            if kind == "zeros":
                return jnp.zeros(shape, dtype)
            if kind == "dense_bias" and not pytorch:
                return jnp.zeros(shape, dtype)
            if pytorch:  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                return _draw(k, shape, dtype, "uniform") * (1 / math.sqrt(fan_in))
            # flax lecun_normal: truncated normal on [-2, 2] with std sqrt(1/fan_in)
            return _draw(k, shape, dtype, "truncated_normal") * (math.sqrt(1 / fan_in) / _TRUNC_STD)

        def walk(node, prefix):
            if isinstance(node, tuple):
                return leaf(prefix, *node)
            return {n: walk(v, f"{prefix}/{n}" if prefix else n) for n, v in node.items()}

        params = walk(self.param_spec(), "")
        return {"params": params, "batch_stats": _stats_like(params, dtype)}

    # ------------------------------------------------------------------ forward
    def apply(self, variables: dict[str, Params], x: jax.Array, op_ids, train: bool = False) -> jax.Array:
        """Logits of the network with cell ``op_ids``.

        Args:
            variables: ``{'params', 'batch_stats'}`` of :meth:`init` (``batch_stats`` is only read
                when ``train`` is False).
            x: (B, H, W, 3) float images in [0, 1] (normalised inside when ``dataset`` is set).
            op_ids: int (6,) op ids (traced or concrete; NOT validated here — use
                :func:`check_op_ids` on the host; out-of-range ids are clamped by ``lax.switch``).
            train: BN with batch statistics (rows coupled) instead of running statistics.

        Returns:
            logits (B, num_classes), dtype of x/params.
        """
        return self.forward(variables["params"], variables.get("batch_stats"), x, op_ids, train)[0]

    def make_apply(self, variables: dict[str, Params], bn_mode: str = "eval") -> tuple[Callable, Params]:
        """Pure ``f(params, x, op_ids) -> logits`` and the params pytree (cf.
        :func:`robntk.network.make_apply`).

        Raises:
            ValueError: bn_mode not 'train' or 'eval'.
        """
        if bn_mode not in ("train", "eval"):
            raise ValueError(f"bn_mode must be 'train' or 'eval', got {bn_mode!r}")
        stats = variables.get("batch_stats")
        train = bn_mode == "train"

        def f(params, x, ids):
            return self.forward(params, stats, x, ids, train)[0]

        return f, variables["params"]

    def forward(self, params: Params, stats: Params | None, x: jax.Array, op_ids, train: bool,
                taps: dict[str, jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Forward pass with optional *taps* (used by :mod:`robntk.fastjac`).

        Args:
            params, stats: supernet parameters and batch statistics.
            x: (B, H, W, 3); op_ids: int (6,); train: BN mode.
            taps: None, or a dict of arrays (from :meth:`tap_shapes`) added to intermediate
                outputs — the cotangent of a tap is the gradient w.r.t. that output (flax
                ``perturb``-style). With taps the intermediates needed for per-example parameter
                gradients are recorded and returned.

        Returns:
            (logits (B, num_classes), record dict; empty when ``taps`` is None). Record keys:
            ``stem/in`` (normalised input), ``stem/conv_out``, ``cells_k/e{e}/in`` (edge input,
            pre-ReLU), ``cells_k/e{e}/conv_out`` (conv output of the chosen conv op, zeros for
            other ops), ``cells_k/conv_a/in``, ``.../conv_a/conv_out``, ``conv_b`` likewise,
            ``cells_k/downsample/in`` (pooled input), ``lastact/in``, ``features`` (B, 4C).
        """
        rec: dict | None = {} if taps is not None else None

        def tap(name, y):
            return y + taps[name] if taps is not None else y

        sget = (lambda d, n: None) if stats is None else (lambda d, n: d[n])
        x = normalize(x, self.dataset)
        if rec is not None:
            rec["stem/in"] = x
        h = conv(x, params["stem_conv"]["kernel"])
        if rec is not None:
            rec["stem/conv_out"] = h
        h = tap("stem", batch_norm(h, params["stem_bn"], sget(stats, "stem_bn"), train))
        for k, kind, _ in self.cell_positions():
            name = f"cells_{k}"
            p, s = params[name], sget(stats, name)
            if kind == "reduce":
                y = h
                for sub, stride in (("conv_a", 2), ("conv_b", 1)):
                    if rec is not None:
                        rec[f"{name}/{sub}/in"] = y
                    y = tap(f"{name}/{sub}", relu_conv_bn(y, p[sub], None if s is None else s[sub], stride,
                                                          train, rec, f"{name}/{sub}"))
                sc = avg_pool_2x2(h)
                if rec is not None:
                    rec[f"{name}/downsample/in"] = sc
                h = tap(f"{name}/downsample", conv(sc, p["downsample"]["kernel"])) + y
            else:
                h = self._cell(p, s, h, op_ids, train, rec, name, tap)
        if rec is not None:
            rec["lastact/in"] = h
        h = tap("lastact", batch_norm(h, params["lastact_bn"], sget(stats, "lastact_bn"), train))
        feats = jnp.mean(jax.nn.relu(h), axis=(1, 2))
        if rec is not None:
            rec["features"] = feats
        logits = feats @ params["classifier"]["kernel"] + params["classifier"]["bias"]
        return logits, (rec if rec is not None else {})

    def _cell(self, p, s, x, ids, train, rec, name, tap):
        nodes = [x]
        for dst in (1, 2, 3):
            acc = None
            for e, (src, d) in enumerate(EDGES):
                if d != dst:
                    continue
                h = nodes[src]
                y = self._edge(p, s, e, h, ids[e], train, rec, f"{name}/e{e}")
                y = tap(f"{name}/e{e}", y)
                acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[3]

    @staticmethod
    def _edge(p, s, e, h, op_id, train, rec, name):
        """One edge: ``lax.switch`` over the 5 ops (records in/conv_out when ``rec`` is given)."""
        want = rec is not None
        m1, m3 = edge_module_name(e, "nor_conv_1x1"), edge_module_name(e, "nor_conv_3x3")

        def conv_branch(mod):
            def br(h):
                y = cell_conv(jax.nn.relu(h), p[mod]["conv"]["kernel"])
                out = batch_norm(y, p[mod]["bn"], None if s is None else s[mod]["bn"], train)
                return (out, y) if want else out
            return br

        def plain(fn):
            def br(h):
                out = fn(h)
                return (out, jnp.zeros_like(h)) if want else out
            return br

        branches = [plain(jnp.zeros_like), plain(lambda h: h), conv_branch(m1), conv_branch(m3),
                    plain(avg_pool_3x3)]
        res = jax.lax.switch(op_id, branches, h)
        if not want:
            return res
        rec[name + "/in"] = h
        rec[name + "/conv_out"] = res[1]
        return res[0]

    def tap_shapes(self, x_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Shapes of the taps of :meth:`forward` for inputs of shape (B, H, W, 3)."""
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
        return out

    # ------------------------------------------------------------------ sub-trees
    def extract(self, variables: dict[str, Params], arch) -> dict[str, Params]:
        """Variables of the dedicated TinyNetwork of ``arch``: the sub-tree of ``variables``
        (same leaf objects; cells without parametric ops are omitted, as flax does).

        Raises:
            ValueError: malformed arch; ``variables`` not a supernet tree of this config.
        """
        ops = ids_to_ops(arch) if _is_ids(arch) else to_ops(arch)
        keep = {edge_module_name(e, op) for e, op in enumerate(ops) if op in CONV_OPS}
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
        _check_structure(out, self.dedicated(ops), "extracted")
        return out

    def embed(self, variables: dict[str, Params], dedicated: dict[str, Params], arch) -> dict[str, Params]:
        """Supernet variables with the dedicated network's values written into their sub-tree.

        Args:
            variables: supernet variables (not modified; a new tree is returned).
            dedicated: ``{'params', 'batch_stats'}`` of ``TinyNetwork(arch)`` with this config.
            arch: the arch of ``dedicated``.

        Raises:
            ValueError: a dedicated leaf has no counterpart of the same shape in the supernet.
        """
        _check_structure(dedicated, self.dedicated(arch), "dedicated")
        out = jax.tree_util.tree_map(lambda a: a, variables)

        def put(dst, src, path):
            for n, v in src.items():
                if n not in dst:
                    raise ValueError(f"dedicated leaf {path}/{n} has no counterpart in the supernet")
                if isinstance(v, dict):
                    put(dst[n], v, f"{path}/{n}")
                else:
                    if tuple(dst[n].shape) != tuple(v.shape):
                        raise ValueError(f"shape mismatch at {path}/{n}: supernet {dst[n].shape}, dedicated {v.shape}")
                    dst[n] = jnp.asarray(v, dst[n].dtype)

        for coll, tree in dedicated.items():
            if coll not in out:
                raise ValueError(f"collection {coll!r} not in the supernet variables")
            put(out[coll], tree, coll)
        return out

    def used_mask(self, arch) -> Params:
        """Pytree of Python bools shaped like the supernet params: True where ``arch`` uses the leaf."""
        ops = ids_to_ops(arch) if _is_ids(arch) else to_ops(arch)
        keep = {edge_module_name(e, op) for e, op in enumerate(ops) if op in CONV_OPS}

        def walk(node, used):
            if isinstance(node, tuple):
                return used
            return {n: walk(v, used and (not self._is_cell_module(n) or n in keep)) for n, v in node.items()}

        return walk(self.param_spec(), True)

    def num_params(self, arch=None) -> int:
        """Parameter count of the supernet (``arch=None``) or of the dedicated net of ``arch``."""
        spec = self.param_spec()
        mask = None if arch is None else self.used_mask(arch)
        leaves = jax.tree_util.tree_leaves(spec, is_leaf=lambda t: isinstance(t, tuple) and isinstance(t[1], str))
        used = [True] * len(leaves) if mask is None else jax.tree_util.tree_leaves(mask)
        return int(sum(math.prod(l[0]) for l, u in zip(leaves, used) if u))

    def _is_cell(self, name: str) -> bool:
        if not name.startswith("cells_"):
            return False
        k = int(name.split("_")[1])
        return any(kk == k and kind == "cell" for kk, kind, _ in self.cell_positions())

    @staticmethod
    def _is_cell_module(name: str) -> bool:
        return name.startswith("e") and name[1:2].isdigit() and name[2:3] == "_"


def _is_ids(arch) -> bool:
    if isinstance(arch, str):
        return False
    a = np.asarray(arch)
    return a.ndim == 1 and a.size == NUM_EDGES and np.issubdtype(a.dtype, np.number)


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


@functools.lru_cache(maxsize=64)
def _dedicated_shapes(ops, C, N, num_classes, dataset, init_scheme):
    model = TinyNetwork(ops, C=C, N=N, num_classes=num_classes, dataset=dataset, init_scheme=init_scheme)
    ref = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), dict(ref))


def _check_structure(variables: dict[str, Params], model: TinyNetwork, what: str) -> None:
    """Raise ValueError if ``variables`` does not have the tree structure/shapes of ``model``."""
    want = _dedicated_shapes(tuple(model.arch), model.C, model.N, model.num_classes, model.dataset,
                             model.init_scheme)
    got = jax.tree_util.tree_map(lambda a: tuple(a.shape), variables)
    if got != want:
        a = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(got)[0]}
        b = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(want)[0]}
        raise ValueError(f"{what} variables do not match TinyNetwork({model.arch}) (C={model.C}, N={model.N}): "
                         f"missing {sorted(b - a)[:5]}, unexpected {sorted(a - b)[:5]}, or shapes differ")
