"""The one NB201 network: fixed cell ≡ cell as data ≡ an independent flax-module port of the
reference (tests/support/reference_flax.py); parameter counts, none-paths, pooling, init, BN.

Tiny networks (C=2..4, N=1, 8×8 images) in float64, so equalities are checked to ≤1e-10 where
the arithmetic is identical and ≤1e-6 relative where only the summation order differs.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support import reference_flax as ref

from robntk.nb201 import cell as nc
from robntk.nb201 import layers
from robntk.nb201 import network as nw
from robntk.nb201 import searchspace as ss
from robntk.ntk import empirical as ntk
from robntk.ntk import spectra

A2581 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ARCHS = [(3, 2, 4, 1, 3, 0), (0, 0, 0, 0, 0, 0), (1, 3, 3, 2, 4, 3), (4, 1, 0, 2, 1, 4), (3, 3, 3, 3, 3, 3)]


pytestmark = pytest.mark.usefixtures("x64")  # float64 for this module (tests/conftest.py)


def _jiggle(tree, rng, scale=0.3, positive=False):
    """Random perturbation so that eval-mode BN is not the identity (statistics ≠ 0/1)."""

    def f(a):
        d = scale * rng.uniform(size=a.shape)
        return a + d if positive else a + d - scale / 2

    return jax.tree_util.tree_map(f, tree)


@pytest.fixture(scope="module")
def env(x64):
    """(net, full-tree variables with BN statistics ≠ identity, x (4, 8, 8, 3), y)."""
    net = nw.TinyNetwork(C=2, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0), jnp.float64)
    rng = np.random.default_rng(0)
    v = {"params": _jiggle(v["params"], rng), "batch_stats": _jiggle(v["batch_stats"], rng, positive=True)}
    x = jnp.asarray(rng.uniform(size=(4, 8, 8, 3)))
    y = jnp.asarray(rng.integers(0, 10, 4), jnp.int32)
    return net, v, x, y


@pytest.fixture(scope="module")
def data_fn(env):
    """Jitted cell-as-data logits (compiled once for all archs)."""
    net, v, _, _ = env
    return jax.jit(lambda p, xx, ids, train: net.forward(p, v["batch_stats"], xx, ids, train)[0], static_argnums=3)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --------------------------------------------------------------------------- cells and op ids
def test_op_ids_parsing_and_validation():
    s = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    assert nc.op_ids(s).tolist() == [3, 2, 4, 1, 3, 0]
    assert nc.op_ids(("nor_conv_3x3", "none", "none", "none", "none", "none")).tolist() == [3, 0, 0, 0, 0, 0]
    assert nc.ids_to_ops([3, 2, 4, 1, 3, 0]) == (
        "nor_conv_3x3",
        "nor_conv_1x1",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "none",
    )
    assert nc.check_op_ids(np.zeros((7, 6))).dtype == np.int32
    assert nc.static_cell(s) == nc.ids_to_ops([3, 2, 4, 1, 3, 0]) and nc.static_cell(jnp.zeros(6, int)) is None
    for bad, msg in (
        ([1, 2, 3], "shape"),
        ([0, 1, 2, 3, 4, 5], "0..4"),
        ([0, -1, 2, 3, 4, 1], "0..4"),
        ([0.5, 1, 2, 3, 4, 1], "integers"),
    ):
        with pytest.raises(ValueError, match=msg):
            nc.check_op_ids(bad)
    with pytest.raises(ValueError):
        nc.op_ids("|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|")


# --------------------------------------------------------------------------- parameters
def _shape_count(module, x_shape):
    shapes = jax.eval_shape(lambda k: module.init(k, jnp.zeros(x_shape), train=False), jax.random.PRNGKey(0))
    return ref.count_params(shapes.get("params", {}))


def test_param_counts_all_15625_cells():
    """Every one of the 5^6 cells: robntk's count == the closed form; the flax reference's
    shapes agree for a seeded random 600 cells' InferCells (plus every cell below) and one whole
    network per (#3×3, #1×1) combination. (The flax shape count costs 20 ms a cell: all 15,625
    took 5 min of CI for what 600 random cells already cover — an edge's count depends on its
    op alone.)"""
    net = nw.TinyNetwork()
    seen = {}
    cells = list(ss.all_archs_lexicographic())
    for ops in cells:
        assert net.num_params(ops) == ref.num_params_closed_form(ops), ops
        seen.setdefault((ops.count("nor_conv_3x3"), ops.count("nor_conv_1x1")), ops)
    sample = [cells[i] for i in np.random.default_rng(0).choice(len(cells), 600, replace=False)] + list(seen.values())
    for ops in sample:
        assert _shape_count(ref.InferCell(ops, 16), (1, 2, 2, 16)) == ss.num_cell_params(ops, 16), ops
    assert len(seen) == 28
    for ops in seen.values():
        assert _shape_count(ref.TinyNetwork(ops), (1, 32, 32, 3)) == net.num_params(ops)
    for C, N, k in [(4, 1, 100), (8, 2, 120)]:
        assert nw.TinyNetwork(C=C, N=N, num_classes=k).num_params(A2581) == ref.num_params_closed_form(A2581, C, N, k)
    assert net.num_params(A2581) == 1_073_466  # measured with the PyTorch reference (ecosystem.md)
    assert net.num_params() == net.num_params(("nor_conv_3x3",) * 6) + sum(
        5 * 6 * (c * c + 2 * c) for c in (16, 32, 64)
    )


def test_init_definition_and_bounds():
    net = nw.TinyNetwork(C=2, N=1)
    v = net.init(jax.random.PRNGKey(7))
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), v, net.init(jax.random.PRNGKey(7)))
    )
    k = v["params"]["cells_0"]["e2_nor_conv_3x3"]["conv"]["kernel"]
    # the documented definition: fold_in(key, crc32(path)), U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    key = jax.random.fold_in(jax.random.PRNGKey(7), zlib.crc32(b"cells_0/e2_nor_conv_3x3/conv/kernel"))
    bound = 1 / math.sqrt(9 * 2)
    block = jax.random.uniform(jax.random.fold_in(key, 0), (4096,), jnp.float32, -1.0, 1.0)
    np.testing.assert_array_equal(k, (block[:36] * bound).reshape(3, 3, 2, 2))
    assert float(jnp.max(jnp.abs(v["params"]["classifier"]["bias"]))) <= 1 / math.sqrt(8)
    assert bool(jnp.all(v["params"]["stem_bn"]["scale"] == 1)) and bool(jnp.all(v["params"]["stem_bn"]["bias"] == 0))
    assert bool(jnp.all(v["batch_stats"]["cells_0"]["e5_nor_conv_1x1"]["bn"]["var"] == 1))
    assert not bool(
        jnp.all(net.init(jax.random.PRNGKey(8))["params"]["cells_0"]["e2_nor_conv_3x3"]["conv"]["kernel"] == k)
    )
    # float64 is the same network: the same float32 draws, scaled in float64 (≤ 1 float32 ulp apart)
    with jax.enable_x64(True):
        v64 = net.init(jax.random.PRNGKey(7), jnp.float64)
    for a, b in zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(v64)):
        assert b.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-7, atol=0)
    # one definition: a fixed cell's init is exactly the sub-tree of the full init
    for ids in ARCHS:
        sub = net.init(jax.random.PRNGKey(7), arch=ids)
        ext = net.extract(v, ids)
        assert jax.tree_util.tree_structure(sub) == jax.tree_util.tree_structure(ext)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), sub, ext))
    fl = nw.TinyNetwork(C=2, N=1, init_scheme="flax").init(jax.random.PRNGKey(0))
    assert bool(jnp.all(fl["params"]["classifier"]["bias"] == 0))
    big = nw.TinyNetwork(C=16, N=1, init_scheme="flax").init(jax.random.PRNGKey(0), arch=A2581)["params"]["cells_4"]
    w = np.asarray(big["e0_nor_conv_3x3"]["conv"]["kernel"])  # 9*64*64 values, fan_in 576
    assert abs(w.std() * math.sqrt(576) - 1) < 0.03 and np.abs(w).max() <= 2 / 0.87962566 / math.sqrt(576) + 1e-7
    u = np.asarray(
        nw.TinyNetwork(C=16, N=1).init(jax.random.PRNGKey(0), arch=A2581)["params"]["cells_4"]["e0_nor_conv_3x3"][
            "conv"
        ]["kernel"]
    )
    assert abs(u.std() * math.sqrt(3 * 576) - 1) < 0.03  # U(-b, b) has std b/sqrt(3)
    kv = nw.TinyNetwork(C=16, N=1, init_scheme="kaiming").init(jax.random.PRNGKey(0), arch=A2581)["params"]
    kw = np.asarray(kv["cells_4"]["e0_nor_conv_3x3"]["conv"]["kernel"])
    assert abs(kw.std() * math.sqrt(576 / 2) - 1) < 0.03 and np.abs(kw).max() > 2.5 * math.sqrt(2 / 576)  # untruncated
    assert np.all(np.asarray(kv["classifier"]["bias"]) == 0)


def test_extract_embed_roundtrip(env):
    net, v, _, _ = env
    for ids in ARCHS:
        sub = jax.tree_util.tree_map(lambda a: a + 1.0, net.extract(v, ids))
        full = net.embed(v, sub, ids)
        back = net.extract(full, ids)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), back, sub))
        for e in (e for e, o in enumerate(ids) if o != 3):  # values outside the sub-tree are untouched
            np.testing.assert_array_equal(
                full["params"]["cells_0"][f"e{e}_nor_conv_3x3"]["conv"]["kernel"],
                v["params"]["cells_0"][f"e{e}_nor_conv_3x3"]["conv"]["kernel"],
            )
    with pytest.raises(ValueError, match="do not match"):
        net.embed(v, net.extract(v, ARCHS[0]), ARCHS[2])
    with pytest.raises(ValueError, match="do not match"):
        net.extract(net.extract(v, ARCHS[0]), ARCHS[0])  # a sub-tree is not a full tree


# --------------------------------------------------------------------------- forward
def test_none_paths_are_exactly_zero():
    ops10 = ss.parse_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    net = nw.TinyNetwork(C=4, N=1)
    v = net.init(jax.random.PRNGKey(0), jnp.float64, arch=ops10)
    xs = jax.random.uniform(jax.random.PRNGKey(2), (3, 16, 16, 3), jnp.float64)
    for cell in (ops10, jnp.asarray(nc.op_ids(ops10))):
        vv = v if nc.static_cell(cell) else net.init(jax.random.PRNGKey(0), jnp.float64)
        for mode in ("eval", "train"):
            f, p = net.make_apply(vv, cell, mode)
            y1, y2 = f(p, xs), f(p, jnp.flip(xs, 0) * 0.3)
            np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
            assert jnp.allclose(y1, y1[0])


def test_avg_pool_count_include_pad_false():
    x = jnp.ones((1, 4, 4, 2))
    np.testing.assert_array_equal(np.asarray(layers.avg_pool_3x3(x)), np.ones((1, 4, 4, 2)))
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    # corner (0,0): mean of the 4 valid entries 0,1,4,5 (PyTorch count_include_pad=False)
    assert float(layers.avg_pool_3x3(x)[0, 0, 0, 0]) == pytest.approx(2.5)
    assert float(layers.avg_pool_3x3(x)[0, 1, 1, 0]) == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


@pytest.mark.parametrize("train", [False, True])
def test_fixed_cell_data_cell_and_reference_agree(env, data_fn, train):
    net, v, x, _ = env
    mode = "train" if train else "eval"
    for ids in ARCHS:
        ops = nc.ids_to_ops(ids)
        sub = net.extract(v, ids)
        fr, pr = ref.make_apply(ref.TinyNetwork(ops, C=2, N=1), sub, mode)  # independent flax port
        want = fr(pr, x)
        fixed, pf = net.make_apply(sub, ops, mode)
        assert _rel(fixed(pf, x), want) <= 1e-12, ids
        got = data_fn(v["params"], x, jnp.asarray(ids), train)
        assert got.shape == (4, 10) and got.dtype == jnp.float64
        assert _rel(got, want) <= 1e-10, ids


def test_bn_train_mode_updates_running_statistics_like_pytorch(env):
    net, v, x, _ = env
    for ids in ARCHS[:3]:
        ops = nc.ids_to_ops(ids)
        sub = net.extract(v, ids)
        out, upd = ref.TinyNetwork(ops, C=2, N=1).apply(sub, x, train=True, mutable=["batch_stats"])
        logits, new = net.apply_train(sub, x, ops)
        assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(upd["batch_stats"])
        flax_new = dict(jax.tree_util.tree_flatten_with_path(upd["batch_stats"])[0])
        old = dict(jax.tree_util.tree_flatten_with_path(sub["batch_stats"])[0])
        sizes = {x.shape[0] * (x.shape[1] // 2**s) ** 2 for s in range(3)}  # B·H·W per stage
        checked = 0
        for path, a in jax.tree_util.tree_flatten_with_path(new)[0]:
            if path[-1].key == "mean":
                assert _rel(a, flax_new[path]) <= 1e-12, path
                continue
            # PyTorch's running variance: the batch part times n/(n − 1); flax keeps it biased
            ours, theirs = np.asarray(a - 0.9 * old[path]), np.asarray(flax_new[path] - 0.9 * old[path])
            keep = np.abs(theirs) > 1e-8
            n = 1 + 1 / (ours[keep] / theirs[keep] - 1)  # ratio n/(n − 1)
            assert np.allclose(n, np.round(n), rtol=0, atol=1e-3) and set(np.round(n)) <= sizes, path
            checked += int(keep.sum())
        assert checked >= 10  # channels with a measurable batch variance
        assert _rel(logits, out) <= 1e-12
        # cell as data: the chosen modules are updated, the others keep their statistics
        _, new_full = jax.jit(lambda vv, i: net.apply_train(vv, x, i))(v, jnp.asarray(ids))
        got = net.extract({"params": v["params"], "batch_stats": new_full}, ids)["batch_stats"]
        assert max(_rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(new))) <= 1e-10
        for e in (e for e, o in enumerate(ids) if o != 3):
            assert new_full["cells_0"][f"e{e}_nor_conv_3x3"] is not None
            np.testing.assert_array_equal(
                new_full["cells_0"][f"e{e}_nor_conv_3x3"]["bn"]["mean"],
                v["batch_stats"]["cells_0"][f"e{e}_nor_conv_3x3"]["bn"]["mean"],
            )


def test_bn_modes_and_normalisation(env):
    net, v, x, _ = env
    fe, p = net.make_apply(v, A2581, "eval")
    ft, _ = net.make_apply(v, A2581, "train")
    # eval mode: rows independent; train mode: an example's logits depend on the rest of the batch
    np.testing.assert_allclose(fe(p, x)[:2], fe(p, x[:2]), rtol=1e-10)
    assert not np.allclose(ft(p, x)[:2], ft(p, x[:2]), atol=1e-4)
    z = nw.normalize(jnp.full((1, 1, 1, 3), 0.5), "cifar10")
    info = nw.DATASETS["cifar10"]
    np.testing.assert_allclose(
        np.asarray(z).ravel(), (0.5 - np.array(info.mean) / 255) / (np.array(info.std) / 255), rtol=1e-10
    )


def test_vmap_over_archs_and_one_compile(env, data_fn):
    net, v, x, _ = env
    many = jax.jit(jax.vmap(lambda i: net.apply(v, x, i)))(jnp.asarray(ARCHS))
    assert many.shape == (len(ARCHS), 4, 10)
    for a, i in enumerate(ARCHS):
        assert _rel(many[a], data_fn(v["params"], x, jnp.asarray(i), False)) <= 1e-12
    traces = []

    def f(variables, x, ids):
        traces.append(1)  # Python side effect: runs at trace time only
        return net.apply(variables, x, ids)

    jf = jax.jit(f)
    for ids in ARCHS:
        jf(v, x, jnp.asarray(ids, jnp.int32)).block_until_ready()
    assert len(traces) == 1 and jf._cache_size() == 1


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_ntk_and_lambda_min_equal_between_forms(env, bn_mode):
    """NTK of the fixed cell, of the cell as data and of the flax reference (generic Jacobian
    contraction each): ≤1e-10 relative; λ_min ≤1e-6 relative."""
    net, v, x, y = env
    train = bn_mode == "train"
    for ids in (ARCHS[0], ARCHS[2]):
        ops, sub = nc.ids_to_ops(ids), net.extract(v, ids)
        fr, pr = ref.make_apply(ref.TinyNetwork(ops, C=2, N=1), sub, bn_mode)
        fs, ps = net.make_apply(sub, ops, bn_mode)
        fd, pd = net.make_apply(v, jnp.asarray(ids), bn_mode)
        for mode in ("sum", "full"):
            kw = dict(output_mode=mode, labels1=y, independent_rows=not train)
            Kr = jax.jit(lambda q: ntk.empirical_ntk(fr, q, x, **kw))(pr)
            for f, p in ((fs, ps), (fd, pd)):
                K = jax.jit(lambda q: ntk.empirical_ntk(f, q, x, **kw))(p)
                assert K.shape == Kr.shape and _rel(K, Kr) <= 1e-10, (ids, mode)
            if mode == "sum":
                sr, sd = spectra.spectrum(Kr, np.float64), spectra.spectrum(K, np.float64)
                # at this init ARCHS[0]'s eval-mode 4×4 kernel has rank 2 (two eigenvalues ~1e-18,
                # below the floor: λ_min = 0 in every form); every other case is positive definite
                assert (sr.lambda_min > 0) == (train or ids == ARCHS[2])
                assert abs(sd.lambda_min - sr.lambda_min) <= 1e-6 * max(sr.lambda_min, sr.floor)


@pytest.mark.parametrize("batched", [False, True])
def test_unused_parameters_get_exactly_zero_gradient(env, batched):
    net, v, x, _ = env
    grad = jax.jit(jax.grad(lambda p, ids: jnp.sum(net.forward(p, v["batch_stats"], x, ids, False)[0] ** 2)))
    if batched:  # vmap over archs: switch → select
        g_all = jax.jit(jax.vmap(lambda i: grad(v["params"], i)))(jnp.asarray(ARCHS))
        grads = [jax.tree_util.tree_map(lambda a, k=k: a[k], g_all) for k in range(len(ARCHS))]
    else:
        grads = [grad(v["params"], jnp.asarray(ids)) for ids in ARCHS]
    for ids, g in zip(ARCHS, grads):
        used = {
            jax.tree_util.keystr(p)
            for p, _ in jax.tree_util.tree_flatten_with_path(net.extract({"params": g}, ids)["params"])[0]
        }
        for path, leaf in jax.tree_util.tree_flatten_with_path(g)[0]:
            if jax.tree_util.keystr(path) not in used:
                assert bool(jnp.all(leaf == 0.0)), (ids, path)
    # the used leaves are exactly the fixed cell's gradient
    for ids, g in list(zip(ARCHS, grads))[:2]:
        sub = net.extract(v, ids)
        fs, ps = net.make_apply(sub, nc.ids_to_ops(ids), "eval")
        gd = jax.grad(lambda p: jnp.sum(fs(p, x) ** 2))(ps)
        gs = net.extract({"params": g}, ids)["params"]
        assert (
            max(
                _rel(a, b)
                for a, b in zip(jax.tree_util.tree_leaves(gs), jax.tree_util.tree_leaves(gd))
                if float(jnp.max(jnp.abs(b))) > 0
            )
            <= 1e-10
        )


def test_cell_conv_vjp_equals_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)))
    for k in (1, 3):
        w = jnp.asarray(rng.normal(size=(k, k, 3, 4)))
        g = jnp.asarray(rng.normal(size=(2, 6, 6, 4)))
        for u, t in zip(jax.vjp(layers.cell_conv, x, w)[1](g), jax.vjp(nw.conv, x, w)[1](g)):
            assert _rel(u, t) <= 1e-12


def test_float32_network_under_x64():
    """With x64 on (this module), a float32 network stays float32 — the count_include_pad=False
    pooling used to promote to float64 and break ``lax.switch`` (branch dtypes must match)."""
    net = nw.TinyNetwork(C=2, N=1)
    v = net.init(jax.random.PRNGKey(0), jnp.float32)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 3), jnp.float32)
    logits = net.forward(v["params"], v["batch_stats"], x, jnp.asarray((4, 4, 1, 3, 4, 2)), False)[0]
    assert logits.dtype == jnp.float32


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(C=0), "C must be"),
        (dict(N=-1), "N must be"),
        (dict(num_classes=0), "num_classes"),
        (dict(dataset="mnist"), "unknown dataset"),
        (dict(init_scheme="xavier"), "unknown init"),
    ],
)
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg):
        nw.TinyNetwork(**kw)


def test_bad_arch_and_bn_mode():
    net = nw.TinyNetwork(C=2, N=1)
    with pytest.raises(ValueError, match="unknown op"):
        net.init(jax.random.PRNGKey(0), arch=("conv",) * 6)
    with pytest.raises(ValueError, match="bn_mode"):
        net.make_apply({"params": {}}, A2581, "test")
    with pytest.raises(ValueError, match="unknown dataset"):
        nw.TinyNetwork.for_dataset("mnist")
