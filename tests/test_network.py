"""TinyNetwork: parameter counts (shape evaluation), none-paths, pooling, init, BN modes."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import network as nw
from robntk import searchspace as ss

A2581 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def _shape_count(module, x_shape):
    shapes = jax.eval_shape(lambda k: module.init(k, jnp.zeros(x_shape), train=False), jax.random.PRNGKey(0))
    return nw.count_params(shapes.get("params", {}))


def test_cell_param_count_all_15625_cells():
    """Every one of the 5^6 cells: shape-evaluated parameter count == closed form (C=16)."""
    x = (1, 2, 2, 16)
    for ops in ss.all_archs_lexicographic():
        assert _shape_count(nw.InferCell(ops, 16), x) == ss.num_cell_params(ops, 16), ops


def test_network_param_count_closed_form():
    """Whole network, one arch per (#3x3, #1x1) combination (28) and other (C, N, classes)."""
    seen = {}
    for ops in ss.all_archs_lexicographic():
        seen.setdefault((ops.count("nor_conv_3x3"), ops.count("nor_conv_1x1")), ops)
    assert len(seen) == 28
    for ops in seen.values():
        assert _shape_count(nw.TinyNetwork(ops), (1, 32, 32, 3)) == nw.num_params_closed_form(ops)
    for C, N, k in [(4, 1, 100), (8, 2, 120)]:
        assert _shape_count(nw.TinyNetwork(A2581, C=C, N=N, num_classes=k), (1, 16, 16, 3)) == \
            nw.num_params_closed_form(A2581, C, N, k)
    assert nw.num_params_closed_form(A2581) == 1_073_466  # measured with the PyTorch reference (ecosystem.md)


def test_none_paths_are_exactly_zero():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
    cell = nw.InferCell(("none",) * 6, 4)
    v = cell.init(jax.random.PRNGKey(1), x, train=False)
    assert not jax.tree_util.tree_leaves(v)
    assert jnp.all(cell.apply(v, x, train=False) == 0.0)
    # arch 10: node 3 only has none inputs -> cell output exactly zero, network output input-independent
    ops10 = ss.parse_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    cell = nw.InferCell(ops10, 4)
    v = cell.init(jax.random.PRNGKey(1), x, train=False)
    out, _ = cell.apply(v, x, train=True, mutable=["batch_stats"])
    assert jnp.all(out == 0.0)
    net = nw.TinyNetwork(ops10, C=4, N=1)
    v = nw.init_variables(net, jax.random.PRNGKey(0), (3, 16, 16, 3))
    xs = jax.random.uniform(jax.random.PRNGKey(2), (3, 16, 16, 3))
    for mode in ("eval", "train"):
        f, p = nw.make_apply(net, v, mode)
        y1, y2 = f(p, xs), f(p, jnp.flip(xs, 0) * 0.3)
        np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
        assert jnp.allclose(y1, y1[0])


def test_avg_pool_count_include_pad_false():
    x = jnp.ones((1, 4, 4, 2))
    np.testing.assert_array_equal(np.asarray(nw.avg_pool_3x3(x)), np.ones((1, 4, 4, 2)))
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    # corner (0,0): mean of the 4 valid entries 0,1,4,5 (PyTorch count_include_pad=False)
    assert float(nw.avg_pool_3x3(x)[0, 0, 0, 0]) == pytest.approx(2.5)
    assert float(nw.avg_pool_3x3(x)[0, 1, 1, 0]) == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


def test_pytorch_init_distribution():
    net = nw.TinyNetwork(A2581)
    v = nw.init_variables(net, jax.random.PRNGKey(0))
    p = v["params"]
    w = np.asarray(p["cells_1"]["e0_nor_conv_3x3"]["conv"]["kernel"])  # (3,3,16,16), fan_in 144
    b = 1 / math.sqrt(144)
    assert w.shape == (3, 3, 16, 16) and np.abs(w).max() <= b
    assert np.std(w) == pytest.approx(b / math.sqrt(3), rel=0.05)  # U(-b, b)
    fc = p["classifier"]
    assert np.abs(np.asarray(fc["bias"])).max() <= 1 / 8 and np.abs(np.asarray(fc["kernel"])).max() <= 1 / 8
    bn = p["cells_1"]["e0_nor_conv_3x3"]["bn"]
    assert np.all(np.asarray(bn["scale"]) == 1) and np.all(np.asarray(bn["bias"]) == 0)
    stem = np.asarray(p["stem_conv"]["kernel"])
    assert stem.shape == (3, 3, 3, 16) and np.abs(stem).max() <= 1 / math.sqrt(27)
    vf = nw.init_variables(nw.TinyNetwork(A2581, init_scheme="flax"), jax.random.PRNGKey(0))
    assert np.all(np.asarray(vf["params"]["classifier"]["bias"]) == 0)


def test_bn_modes_and_normalisation():
    net = nw.TinyNetwork(A2581, C=4, N=1)
    v = nw.init_variables(net, jax.random.PRNGKey(0), (4, 16, 16, 3))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 16, 16, 3))
    fe, p = nw.make_apply(net, v, "eval")
    ft, _ = nw.make_apply(net, v, "train")
    # eval mode: rows independent; train mode: an example's logits depend on the rest of the batch
    np.testing.assert_allclose(fe(p, x)[:2], fe(p, x[:2]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ft(p, x)[:2], ft(p, x[:2]), atol=1e-4)
    # eval at init: BN is y = x / sqrt(1 + 1e-5); normalisation uses the benchmark statistics
    mean, std = nw.NORMALIZATION["cifar10"]
    z = nw.normalize(jnp.full((1, 1, 1, 3), 0.5), "cifar10")
    np.testing.assert_allclose(np.asarray(z).ravel(), (0.5 - np.array(mean) / 255) / (np.array(std) / 255), rtol=1e-5)


@pytest.mark.parametrize("kw, msg", [
    (dict(C=0), "C must be"), (dict(N=-1), "N must be"), (dict(num_classes=0), "num_classes"),
    (dict(dataset="mnist"), "unknown dataset"), (dict(init_scheme="xavier"), "unknown init"),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        nw.init_variables(nw.TinyNetwork(A2581, **kw), jax.random.PRNGKey(0), (1, 8, 8, 3))


def test_bad_arch():
    with pytest.raises(ValueError, match="unknown op"):
        nw.init_variables(nw.TinyNetwork(("conv",) * 6, C=2, N=1), jax.random.PRNGKey(0), (1, 8, 8, 3))
    with pytest.raises(ValueError, match="bn_mode"):
        nw.make_apply(nw.TinyNetwork(A2581), {"params": {}}, "test")
