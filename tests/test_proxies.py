"""Tests of robntk.proxies: exact params/flops vs NAS-Bench-Suite-Zero, gradient proxies vs a
plain jax.grad on the fixed cell's sub-tree, nwot vs an explicit numpy kernel, cell-as-data
parity, proxy_table flags."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import proxies as P
from robntk.network import TinyNetwork, op_ids

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
DISC = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def setup():
    net = TinyNetwork(C=3, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    y = jnp.array([0, 3, 7, 3])
    return net, v, x, y


def test_params_flops_match_suite_zero(data_dir):
    from robntk.suite_zero import load_suite_zero

    for ds in ("cifar10", "ImageNet16-120"):
        df = load_suite_zero(ds, data_dir)
        net = TinyNetwork.for_dataset(ds)
        ids = np.stack([op_ids(a) for a in df.arch_str])
        fp = np.asarray(jax.jit(jax.vmap(lambda c: P.param_count(net, c)))(ids))
        ff = np.asarray(jax.jit(jax.vmap(lambda c: P.flop_count(net, c)))(ids))
        # the file's values are integer counts / 1e6 printed in decimal: exact integer equality
        np.testing.assert_array_equal(fp, np.rint(df.params.to_numpy() * 1e6).astype(np.int64))
        np.testing.assert_array_equal(ff, np.rint(df.flops.to_numpy() * 1e6).astype(np.int64))
        assert np.abs(fp / 1e6 - df.params.to_numpy()).max() < 1e-12
        # params also equals the PyTorch-module count
        assert fp[0] == net.num_params(df.arch_str.iloc[0])
    assert P.flop_count(TinyNetwork.for_dataset("cifar10"), "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|") > 0


def _sub_grads(net, v, x, y, arch):
    sub = net.extract(v, arch)

    def loss(p):
        logits = net.apply({"params": p}, x, arch, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    g = jax.grad(loss)(sub["params"])
    kern = lambda t: [l for path, l in jax.tree_util.tree_flatten_with_path(t)[0]
                      if jax.tree_util.keystr(path).endswith("['kernel']")]
    return kern(sub["params"]), kern(g)


def test_gradient_proxies_vs_plain_grad(setup):
    net, v, x, y = setup
    W, G = _sub_grads(net, v, x, y, ARCH)
    ids = jnp.asarray(op_ids(ARCH))
    want = {"snip": sum(float(jnp.sum(jnp.abs(w * g))) for w, g in zip(W, G)),
            "plain": sum(float(jnp.sum(w * g)) for w, g in zip(W, G)),
            "grad_norm": sum(float(jnp.linalg.norm(g.ravel())) for g in G),
            "l2_norm": sum(float(jnp.linalg.norm(w.ravel())) for w in W)}
    names = list(want)
    # one compile for the four proxies (cell as data)
    f = jax.jit(lambda c: [P.PROXIES[n](net, v, c, x, y, None) for n in names])
    for name, got in zip(names, f(ids)):
        assert float(got) == pytest.approx(want[name], rel=1e-4), name


def test_nwot_vs_numpy_codes(setup):
    net, v, x, y = setup
    zs = [np.asarray(z).reshape(4, -1) for z, a in P.relu_inputs(net, v, ARCH, x) if float(a) == 1.0]
    # 3 cells x 3 conv edges + 2 reductions x 2 ReLUs + lastact
    assert len(zs) == 3 * 3 + 4 + 1
    K = np.zeros((4, 4))
    for z in zs:
        c = z > 0
        K += (c[:, None, :] == c[None, :, :]).sum(-1)  # D - Hamming distance
    want = np.linalg.slogdet(K)[1]
    got = jax.jit(lambda c: P.nwot(net, v, c, x, y, None))(jnp.asarray(op_ids(ARCH)))
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_cell_as_data_parity_and_disconnected(setup):
    net, v, x, y = setup
    for name in ("synflow", "fisher"):
        f = jax.jit(lambda c, fn=P.PROXIES[name]: fn(net, v, c, x, y, None))
        a = float(f(jnp.asarray(op_ids(ARCH))))
        b = float(jax.jit(lambda fn=P.PROXIES[name]: fn(net, v, ARCH, x, y, None))())
        assert np.isfinite(a) and a == pytest.approx(b, rel=1e-4), name
    # no input→output path: synflow's sum is exactly 0 (log −inf)
    assert float(P.synflow(net, v, DISC, x, y, None, log=False)) == 0.0


def test_proxy_table_and_errors(space, setup):
    net, v, x, y = setup
    with pytest.raises(ValueError, match="allowed: params"):
        P.proxy_table(["nope"], [0], net, v, x, y, space)
    idx = [space.index_of(ARCH), space.index_of(DISC)]
    t = P.proxy_table(["params", "synflow"], idx, net, v, x, y, space, progress=False)
    assert list(t.index) == idx
    assert not t.loc[idx[0], "synflow_undefined"] and np.isfinite(t.loc[idx[0], "synflow"])
    assert t.loc[idx[1], "synflow_undefined"] and np.isnan(t.loc[idx[1], "synflow"])
    assert not t["params_undefined"].any()
    assert t.loc[idx[0], "params"] == pytest.approx(net.num_params(ARCH) / 1e6, rel=1e-6)


def test_grasp_vs_dense_hessian():
    # −θᵀ H g with the dense Hessian of the fixed cell's sub-tree (jax.hessian of a plain
    # loss over the raveled parameters; g on the conv/linear weights only), float64
    from jax.flatten_util import ravel_pytree

    with jax.enable_x64(True):
        net = TinyNetwork(C=1, N=1, num_classes=4, dataset="cifar10")
        v = net.init(jax.random.PRNGKey(0), jnp.float64)
        x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float64)
        y = jnp.array([0, 3, 2, 3])
        sub = net.extract(v, ARCH)["params"]
        flat, unravel = ravel_pytree(sub)

        def loss(f):
            logits = net.apply({"params": unravel(f)}, x, ARCH, train=True)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

        is_k = lambda path: jax.tree_util.keystr(path).endswith("['kernel']")
        kmask, _ = ravel_pytree(jax.tree_util.tree_map_with_path(
            lambda path, a: jnp.full_like(a, 1.0 if is_k(path) else 0.0), sub))
        g = jax.jit(jax.grad(loss))(flat)
        H = jax.jit(jax.hessian(loss))(flat)
        want = float(-jnp.sum(kmask * flat * (H @ (kmask * g))))
        got = float(jax.jit(lambda: P.grasp(net, v, ARCH, x, y, None))())
    assert got == pytest.approx(want, rel=1e-6)
    assert abs(want) > 1e-3
