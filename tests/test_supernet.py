"""Supernet (architecture as data) ≡ dedicated TinyNetwork; fast per-example-gradient NTK ≡ robntk.ntk.

Tiny networks (C=2..3, N=1, 8×8 images) in float64 so that equalities are checked to ≤1e-10
where the arithmetic is identical and ≤1e-5 relative where only the summation order differs.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import fastjac, ntk, spectra
from robntk.network import init_variables, make_apply, num_params_closed_form
from robntk.searchspace import OPS, format_arch_str
from robntk.supernet import SuperNet, cell_conv, check_op_ids, conv, ids_to_ops, op_ids

ARCHS = [(3, 2, 4, 1, 3, 0), (0, 0, 0, 0, 0, 0), (1, 3, 3, 2, 4, 3), (4, 1, 0, 2, 1, 4), (3, 3, 3, 3, 3, 3)]


@pytest.fixture(autouse=True, scope="module")
def x64():
    with jax.enable_x64(True):
        yield


MODES = ("sum", "label", "trace", "full")


@pytest.fixture(scope="module")
def env(x64):
    """(net, variables, x, y) with C=2, N=1, B=4, 8×8 images, BN statistics ≠ identity."""
    return _setup()


@pytest.fixture(scope="module")
def sup(env):
    """Jitted supernet functions (each compiled once for all archs)."""
    net, v, x, y = env
    S = v["batch_stats"]

    def f(p, xx, ids, train):
        return net.forward(p, S, xx, ids, train)[0]

    logits = jax.jit(f, static_argnums=3)
    ntks = jax.jit(lambda p, xx, yy, ids, train: {
        m: ntk.empirical_ntk(lambda q, z: f(q, z, ids, train), p, xx, output_mode=m, labels1=yy,
                             independent_rows=not train) for m in ("sum", "full")}, static_argnums=4)
    grad = jax.jit(jax.grad(lambda p, ids: jnp.sum(f(p, x, ids, False) ** 2)))
    fast = jax.jit(lambda p, s, xx, yy, ids: {m: fastjac.empirical_ntk(net, p, s, ids, xx, yy, m) for m in MODES})
    return dict(logits=logits, ntks=ntks, grad=grad, fast=fast)


def _jiggle(tree, rng, scale=0.3, positive=False):
    """Random perturbation so that eval-mode BN is not the identity (statistics ≠ 0/1)."""
    def f(a):
        d = scale * rng.uniform(size=a.shape)
        return a + d if positive else a + d - scale / 2
    return jax.tree_util.tree_map(f, tree)


def _setup(C=2, N=1, seed=0, B=4, hw=8):
    net = SuperNet(C=C, N=N, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(seed), jnp.float64)
    rng = np.random.default_rng(seed)
    v = {"params": _jiggle(v["params"], rng), "batch_stats": _jiggle(v["batch_stats"], rng, positive=True)}
    x = jnp.asarray(rng.uniform(size=(B, hw, hw, 3)))
    y = jnp.asarray(rng.integers(0, 10, B), jnp.int32)
    return net, v, x, y


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --------------------------------------------------------------------------- op ids
def test_op_ids_parsing_and_validation():
    s = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
    assert op_ids(s).tolist() == [3, 2, 4, 1, 3, 0]
    assert op_ids(("nor_conv_3x3", "none", "none", "none", "none", "none")).tolist() == [3, 0, 0, 0, 0, 0]
    assert ids_to_ops([3, 2, 4, 1, 3, 0]) == ("nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3", "skip_connect",
                                            "nor_conv_3x3", "none")
    assert check_op_ids(np.zeros((7, 6))).dtype == np.int32
    with pytest.raises(ValueError, match="shape"):
        check_op_ids([1, 2, 3])
    with pytest.raises(ValueError, match="0..4"):
        check_op_ids([0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="0..4"):
        check_op_ids([0, -1, 2, 3, 4, 1])
    with pytest.raises(ValueError, match="integers"):
        check_op_ids([0.5, 1, 2, 3, 4, 1])
    with pytest.raises(ValueError):
        op_ids("|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|")


# --------------------------------------------------------------------------- parameters
def test_init_definition_and_bounds():
    net = SuperNet(C=2, N=1)
    v = net.init(jax.random.PRNGKey(7))
    v2 = net.init(jax.random.PRNGKey(7))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), v, v2))
    k = v["params"]["cells_0"]["e2_nor_conv_3x3"]["conv"]["kernel"]
    # the documented definition: fold_in(key, crc32(path)), U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    key = jax.random.fold_in(jax.random.PRNGKey(7), zlib.crc32(b"cells_0/e2_nor_conv_3x3/conv/kernel"))
    bound = 1 / math.sqrt(9 * 2)
    block = jax.random.uniform(jax.random.fold_in(key, 0), (4096,), jnp.float32, -1.0, 1.0)
    np.testing.assert_array_equal(k, (block[:36] * bound).reshape(3, 3, 2, 2))
    assert float(jnp.max(jnp.abs(k))) <= bound
    assert float(jnp.max(jnp.abs(v["params"]["classifier"]["bias"]))) <= 1 / math.sqrt(8)
    assert bool(jnp.all(v["params"]["stem_bn"]["scale"] == 1)) and bool(jnp.all(v["params"]["stem_bn"]["bias"] == 0))
    assert bool(jnp.all(v["batch_stats"]["cells_0"]["e5_nor_conv_1x1"]["bn"]["var"] == 1))
    other = net.init(jax.random.PRNGKey(8))["params"]["cells_0"]["e2_nor_conv_3x3"]["conv"]["kernel"]
    assert not bool(jnp.all(other == k))
    fl = SuperNet(C=2, N=1, init_scheme="flax").init(jax.random.PRNGKey(0))
    assert bool(jnp.all(fl["params"]["classifier"]["bias"] == 0))
    big = SuperNet(C=16, N=1, init_scheme="flax").init(jax.random.PRNGKey(0))["params"]["cells_4"]
    w = np.asarray(big["e0_nor_conv_3x3"]["conv"]["kernel"])  # 9*64*64 values, fan_in 576
    assert abs(w.std() * math.sqrt(576) - 1) < 0.03 and np.abs(w).max() <= 2 / 0.87962566 / math.sqrt(576) + 1e-7
    u = np.asarray(SuperNet(C=16, N=1).init(jax.random.PRNGKey(0))["params"]["cells_4"]["e0_nor_conv_3x3"]["conv"]["kernel"])
    assert abs(u.std() * math.sqrt(3 * 576) - 1) < 0.03  # U(-b, b) has std b/sqrt(3)


def test_dedicated_params_are_a_subtree(env):
    net, v, _, _ = env
    for ids in ARCHS:
        model = net.dedicated(ids)
        ded = init_variables(model, jax.random.PRNGKey(3), (1, 8, 8, 3), jnp.float64)
        sv = net.embed(v, ded, ids)
        back = net.extract(sv, ids)  # raises if the structure differs from TinyNetwork's
        assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(ded)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), back, ded))
        # values outside the arch's sub-tree are untouched
        unused = [e for e, o in enumerate(ids) if o != 3]
        for e in unused:
            np.testing.assert_array_equal(sv["params"]["cells_0"][f"e{e}_nor_conv_3x3"]["conv"]["kernel"],
                                          v["params"]["cells_0"][f"e{e}_nor_conv_3x3"]["conv"]["kernel"])
    with pytest.raises(ValueError, match="do not match"):
        net.embed(v, init_variables(net.dedicated(ARCHS[0]), jax.random.PRNGKey(0), (1, 8, 8, 3)), ARCHS[2])


def test_num_params_matches_closed_form():
    net = SuperNet()
    rng = np.random.default_rng(0)
    for ids in list(rng.integers(0, 5, (100, 6))) + [np.zeros(6, int), np.full(6, 3)]:
        assert net.num_params(ids) == num_params_closed_form(ids_to_ops(ids), 16, 5, 10)
    assert net.num_params() == num_params_closed_form(("nor_conv_3x3",) * 6) + 15 * 0 + sum(
        5 * 6 * (c * c + 2 * c) for c in (16, 32, 64))


# --------------------------------------------------------------------------- forward equivalence
@pytest.mark.parametrize("train", [False, True])
def test_logits_equal_dedicated(env, sup, train):
    net, v, x, _ = env
    for ids in ARCHS:
        model = net.dedicated(ids)
        ded = net.extract(v, ids)
        f, p = make_apply(model, ded, "train" if train else "eval")
        want = f(p, x)  # eager flax: op kernels are shared across archs, no per-arch compile
        got = sup["logits"](v["params"], x, jnp.asarray(ids), train)
        assert got.shape == (4, 10) and got.dtype == jnp.float64
        assert _rel(got, want) <= 1e-12, ids


def test_vmap_over_archs_equals_single_calls(env, sup):
    net, v, x, _ = env
    ids = jnp.asarray(ARCHS)
    many = jax.jit(jax.vmap(lambda i: net.apply(v, x, i)))(ids)
    assert many.shape == (len(ARCHS), 4, 10)
    for a, i in enumerate(ARCHS):
        assert _rel(many[a], sup["logits"](v["params"], x, jnp.asarray(i), False)) <= 1e-12


def test_one_compile_for_all_archs(env):
    net, v, x, _ = env
    traces = []

    def f(variables, x, ids):
        traces.append(1)  # Python side effect: runs at trace time only
        return net.apply(variables, x, ids)

    jf = jax.jit(f)
    for ids in ARCHS:
        jf(v, x, jnp.asarray(ids, jnp.int32)).block_until_ready()
    assert len(traces) == 1
    assert jf._cache_size() == 1


# --------------------------------------------------------------------------- NTK equivalence
@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_ntk_and_lambda_min_equal_dedicated(env, sup, bn_mode):
    net, v, x, y = env
    train = bn_mode == "train"
    for ids in ((ARCHS[0], ARCHS[2]) if not train else (ARCHS[0],)):
        ded = net.extract(v, ids)
        fd, pd = make_apply(net.dedicated(ids), ded, bn_mode)
        want = jax.jit(lambda p: {m: ntk.empirical_ntk(fd, p, x, output_mode=m, labels1=y, independent_rows=not train)
                                  for m in ("sum", "full")})(pd)
        got = sup["ntks"](v["params"], x, y, jnp.asarray(ids), train)
        for mode in ("sum", "full"):
            Kd, Ks = want[mode], got[mode]
            assert Ks.shape == Kd.shape
            assert _rel(Ks, Kd) <= 1e-10, (ids, mode)
            sd, ss = spectra.spectrum(Kd, np.float64), spectra.spectrum(Ks, np.float64)
            assert ss.degenerate == sd.degenerate
            if not sd.degenerate:
                assert abs(ss.lambda_min - sd.lambda_min) <= 1e-5 * abs(sd.lambda_min)
                assert sd.lambda_min > 0


@pytest.mark.parametrize("batched", [False, True])
def test_unused_parameters_get_exactly_zero_gradient(env, sup, batched):
    net, v, x, _ = env
    if batched:  # vmap over archs: switch → select
        g_all = jax.jit(jax.vmap(lambda i: sup["grad"](v["params"], i)))(jnp.asarray(ARCHS))
        grads = [jax.tree_util.tree_map(lambda a, k=k: a[k], g_all) for k in range(len(ARCHS))]
    else:
        grads = [sup["grad"](v["params"], jnp.asarray(ids)) for ids in ARCHS]
    for ids, g in zip(ARCHS, grads):
        mask = jax.tree_util.tree_leaves(net.used_mask(ids))
        leaves = jax.tree_util.tree_leaves(g)
        assert len(mask) == len(leaves)
        for used, leaf in zip(mask, leaves):
            if not used:
                assert bool(jnp.all(leaf == 0.0)), ids
        assert sum(mask) > 0
    # the used leaves are exactly the dedicated network's gradient
    for ids, g in list(zip(ARCHS, grads))[:2]:
        ded = net.extract(v, ids)
        fd, pd = make_apply(net.dedicated(ids), ded, "eval")
        gd = jax.grad(lambda p: jnp.sum(fd(p, x) ** 2))(pd)
        gs = net.extract({"params": g, "batch_stats": v["batch_stats"]}, ids)["params"]
        assert max(_rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(gs), jax.tree_util.tree_leaves(gd))
                   if float(jnp.max(jnp.abs(b))) > 0) <= 1e-10


def test_cell_conv_vjp_equals_autodiff():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 3)))
    for k in (1, 3):
        w = jnp.asarray(rng.normal(size=(k, k, 3, 4)))
        g = jnp.asarray(rng.normal(size=(2, 6, 6, 4)))
        a = jax.vjp(cell_conv, x, w)[1](g)
        b = jax.vjp(conv, x, w)[1](g)
        for u, t in zip(a, b):
            assert _rel(u, t) <= 1e-12


# --------------------------------------------------------------------------- fast per-example NTK
def test_fastjac_equals_jacobian_contraction(env, sup):
    net, v, x, y = env
    for ids, modes in ((ARCHS[0], MODES), (ARCHS[3], ("sum",))):  # ARCHS[0] has every op kind
        ded = net.extract(v, ids)
        fd, pd = make_apply(net.dedicated(ids), ded, "eval")
        want = jax.jit(lambda p: {m: ntk.empirical_ntk(fd, p, x, output_mode=m, labels1=y, independent_rows=True)
                                  for m in modes})(pd)
        got = sup["fast"](v["params"], v["batch_stats"], x, y, jnp.asarray(ids))
        for mode in modes:
            assert got[mode].shape == want[mode].shape
            assert _rel(got[mode], want[mode]) <= 1e-10, (ids, mode)


def test_fastjac_kernel_matrices_equal_scoring(env):
    from robntk.scoring import ScoreConfig, kernel_matrices

    cfg = ScoreConfig(batch_size=4, C=2, N=1, pgd_steps=2, eps=(8 / 255,), betas=(0.5,), dtype="float64")
    net, v, x, y = env
    key = jax.random.PRNGKey(1)
    ids = ARCHS[2]
    ded = net.extract(v, ids)
    fd, pd = make_apply(net.dedicated(ids), ded, "eval")
    want = jax.jit(lambda p, xx, yy, k: kernel_matrices(fd, p, xx, yy, cfg, k))(pd, x, y, key)
    got = jax.jit(lambda p, s, xx, yy, k, i: fastjac.kernel_matrices(net, p, s, i, xx, yy, cfg, k))(
        v["params"], v["batch_stats"], x, y, key, jnp.asarray(ids))
    assert set(got) == set(want) == set(cfg.kernel_names())
    for name in want:
        assert _rel(got[name], want[name]) <= 1e-10, name
    with pytest.raises(ValueError, match="eval"):
        fastjac.kernel_matrices(net, v["params"], v["batch_stats"], jnp.asarray(ids), x, y,
                                ScoreConfig(batch_size=4, C=2, N=1, bn_mode="train"), key)


def test_patches_match_convolution():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 7, 7, 3)))
    for k, s in ((3, 1), (3, 2), (1, 1)):
        w = jnp.asarray(rng.normal(size=(k, k, 3, 5)))
        pa = fastjac.patches(x, k, s)
        got = jnp.einsum("nhwk,kc->nhwc", pa, w.reshape(-1, 5))
        assert _rel(got, conv(x, w, s)) <= 1e-12


def test_supernet_rejects_bad_config():
    with pytest.raises(ValueError, match="C must"):
        SuperNet(C=0)
    with pytest.raises(ValueError, match="dataset"):
        SuperNet(dataset="mnist")
    assert format_arch_str(ids_to_ops([1] * 6)).count("skip_connect") == 6 and len(OPS) == 5


def test_float32_network_under_x64():
    """With x64 on (this module), a float32 supernet stays float32 — the count_include_pad=False
    pooling used to promote to float64 and break ``lax.switch`` (branch dtypes must match)."""
    net = SuperNet(C=2, N=1)
    v = net.init(jax.random.PRNGKey(0), jnp.float32)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 8, 8, 3), jnp.float32)
    ids = jnp.asarray((4, 4, 1, 3, 4, 2))
    logits = net.forward(v["params"], v["batch_stats"], x, ids, False)[0]
    assert logits.dtype == jnp.float32
    K = fastjac.empirical_ntk(net, v["params"], v["batch_stats"], ids, x)
    assert K.dtype == jnp.float32 and K.shape == (3, 3)
    K64 = fastjac.empirical_ntk(net, *(jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v[k])
                                       for k in ("params", "batch_stats")), ids, x.astype(jnp.float64))
    np.testing.assert_allclose(K, K64, rtol=2e-5)  # same weights: float32 rounding only
