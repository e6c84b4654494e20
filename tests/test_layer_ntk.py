"""The per-layer-gradient NTK (robntk.ntk.layerwise) ≡ the generic Jacobian contraction ≡ finite
differences, in float64, for both BN modes (coupled and independent rows), every output mode,
a fixed cell and a cell as data, and chunked cotangents."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.nb201 import cell as nc
from robntk.nb201 import network as nw
from robntk.ntk import empirical as ntk
from robntk.ntk import layerwise as layer_ntk

ARCHS = [(3, 2, 4, 1, 3, 0), (1, 3, 3, 2, 4, 3), (0, 0, 0, 0, 0, 0)]
MODES = ("sum", "label", "trace", "full")


pytestmark = pytest.mark.usefixtures("x64")  # float64 for this module (tests/conftest.py)


@pytest.fixture(scope="module")
def env(x64):
    net = nw.TinyNetwork(C=2, N=1, num_classes=4)
    v = net.init(jax.random.PRNGKey(0), jnp.float64)
    rng = np.random.default_rng(0)
    v = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.uniform(size=a.shape), v)  # BN stats ≠ identity
    x = jnp.asarray(rng.uniform(size=(4, 8, 8, 3)))
    y = jnp.asarray(rng.integers(0, 4, 4), jnp.int32)
    return net, v, x, y


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_layerwise_equals_jacobian_contraction(env, bn_mode):
    """Every output mode, a fixed cell and the cell as data (one compile for all archs), chunked
    cotangents (train: the 16 trace cotangents in chunks of 6, a remainder included — each
    unrolled chunk of the cell-as-data function costs ≈ 15 s of compile, so the other modes run
    unchunked; eval: chunks of 2), against the generic Jacobian contraction of the same network
    function."""
    net, v, x, y = env
    train = bn_mode == "train"
    chunk = {m: (6 if m == "trace" else None) if train else 2 for m in MODES}
    data = jax.jit(lambda p, s, i: {m: layer_ntk.layerwise_ntk(net, p, s, i, x, y, m, train, chunk[m]) for m in MODES})
    for ids in (ARCHS[0], ARCHS[2]):  # every op kind; the all-none cell (constant kernel)
        ops, sub = nc.ids_to_ops(ids), net.extract(v, ids)
        f, p = net.make_apply(sub, ops, bn_mode)
        want, fixed = jax.jit(
            lambda q: (
                {m: ntk.empirical_ntk(f, q, x, output_mode=m, labels1=y, independent_rows=not train) for m in MODES},
                {m: layer_ntk.layerwise_ntk(net, q, sub["batch_stats"], ops, x, y, m, train) for m in MODES},
            )
        )(p)
        got = data(v["params"], v["batch_stats"], jnp.asarray(ids))
        for m in MODES:
            assert got[m].shape == fixed[m].shape == want[m].shape
            assert np.max(np.abs(np.asarray(want[m]))) > 0  # the classifier alone makes K nonzero
            assert _rel(got[m], want[m]) <= 1e-8, (ids, m)
            assert _rel(fixed[m], want[m]) <= 1e-8, (ids, m)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_layerwise_equals_finite_differences(env, bn_mode):
    net, v, x, y = env
    ops = nc.ids_to_ops(ARCHS[0])
    sub = net.extract(v, ARCHS[0])
    f, p = net.make_apply(sub, ops, bn_mode)
    K = jax.jit(lambda q: layer_ntk.layerwise_ntk(net, q, sub["batch_stats"], ops, x, y, "full", bn_mode == "train"))(p)
    Kfd = ntk.finite_difference_ntk(f, p, x, output_mode="full", labels1=y, h=1e-5)
    assert _rel(K, Kfd) <= 1e-7


def test_train_mode_is_the_batch_function_ntk(env):
    """Coupled rows: the NTK of the batch differs from per-example gradients, and from the NTK
    of a sub-batch (the statistics change)."""
    net, v, x, y = env
    ops = nc.ids_to_ops(ARCHS[1])
    sub = net.extract(v, ops)

    def run(p, s):
        K = layer_ntk.layerwise_ntk(net, p, s, ops, x, y, "sum", True)
        Kind = layer_ntk.layerwise_ntk(net, p, s, ops, x, y, "sum", False)
        K2 = layer_ntk.layerwise_ntk(net, p, s, ops, x[:2], y[:2], "sum", True)
        J = layer_ntk.jacobian_rows(net, p, s, ops, x, y, "trace", True, chunk_size=5)
        return K, Kind, K2, J, layer_ntk.layerwise_ntk(net, p, s, ops, x, y, "trace", True)

    K, Kind, K2, J, Kt = jax.jit(run)(sub["params"], sub["batch_stats"])
    assert _rel(Kind, K) > 0.05 and _rel(K2, K[:2, :2]) > 1e-3
    assert J.shape[:2] == (4, 4)
    np.testing.assert_allclose(ntk.gram(J, J, "trace"), Kt, rtol=1e-10)


def test_patches_and_conv_grad(env):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 7, 7, 3)))
    for k, s in ((3, 1), (3, 2), (1, 1)):
        w = jnp.asarray(rng.normal(size=(k, k, 3, 5)))
        pa = layer_ntk.patches(x, k, s)
        assert _rel(jnp.einsum("nhwk,kc->nhwc", pa, w.reshape(-1, 5)), nw.conv(x, w, s)) <= 1e-12
        d = jnp.asarray(rng.normal(size=(1,) + nw.conv(x, w, s).shape))
        g = jax.grad(lambda ww: jnp.sum(nw.conv(x, ww, s) * d[0]))(w).reshape(-1)
        assert _rel(layer_ntk._conv_grad(x, d, k, s, True)[0], g) <= 1e-12
        assert _rel(layer_ntk._conv_grad(x, d, k, s, False)[0].sum(0), g) <= 1e-12


def test_bad_arguments(env):
    net, v, x, y = env
    with pytest.raises(ValueError, match="labels"):
        layer_ntk.layerwise_ntk(net, v["params"], v["batch_stats"], jnp.asarray(ARCHS[0]), x, None, "label")
    with pytest.raises(ValueError, match="output_mode"):
        layer_ntk.layerwise_ntk(net, v["params"], v["batch_stats"], jnp.asarray(ARCHS[0]), x, y, "diag")
    with pytest.raises(ValueError, match="chunk_size"):
        layer_ntk.layerwise_ntk(net, v["params"], v["batch_stats"], jnp.asarray(ARCHS[0]), x, y, "sum", True, 0)
