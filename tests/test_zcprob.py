"""Tests of ZCPRob (robntk.proxies.robust.zcprob_terms): the NTK factor against an explicit
Gram matrix of per-image gradients on the fixed cell's sub-tree, the curvature factor against a
forward-over-reverse Hessian-vector product, Eq. 4's log form against R itself, the suite's
NaN and error conventions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from robntk import proxies as P
from robntk.nb201.network import TinyNetwork
from robntk.proxies import robust as PR

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
DISC = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def setup64():
    with jax.enable_x64(True):
        net = TinyNetwork(C=2, N=1, num_classes=5, dataset="cifar10")
        v = net.init(jax.random.PRNGKey(0), jnp.float64)
        x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 3), jnp.float64)
        y = jnp.array([0, 3, 2, 4, 1, 3])
    return net, v, x, y


def test_ntk_factor_vs_explicit_gram(setup64):
    # Θ̄ = mean of the N×N Gram matrix of per-image loss gradients / M, the gradients taken one
    # image at a time (batch of one, train-mode BN) on the fixed cell's own sub-tree, M its size
    net, v, x, y = setup64
    with jax.enable_x64(True):
        plain = TinyNetwork(C=2, N=1, num_classes=5, dataset=None)
        sub = net.extract(v, ARCH)
        flat, unravel = ravel_pytree(sub["params"])

        def loss(f, xi, yi):
            logits = plain.apply({"params": unravel(f)}, xi[None], ARCH, train=True)
            return -jax.nn.log_softmax(logits)[0, yi]

        G = np.stack([np.asarray(jax.grad(loss)(flat, x[i], y[i])) for i in range(5)])
        want = (G @ G.T).mean() / flat.size
        got = jax.jit(lambda: PR.zcprob_terms(net, v, ARCH, x, y, n_ntk=5, n_curv=4)["zcprob_ntk"])()
        assert flat.size == int(P.param_count(net, ARCH))
    assert float(got) == pytest.approx(want, rel=1e-10)
    assert want > 0


def test_curvature_factor_is_a_hessian_vector_product(setup64):
    # as h → 0 the finite difference (l(x + h z*) − l(x))/h is H z*, H the input Hessian of the
    # mean CE (eval-mode BN); H z* by forward-over-reverse on the sub-tree; O(h) truncation
    net, v, x, y = setup64
    with jax.enable_x64(True):
        plain = TinyNetwork(C=2, N=1, num_classes=5, dataset=None)
        sub = net.extract(v, ARCH)
        n = 4

        def L(z):
            logits = plain.apply(sub, z, ARCH, train=False)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(n), y[:n]])

        g = jax.grad(L)(x[:n])
        s = np.sign(np.asarray(g))
        z = s / np.linalg.norm(s.reshape(n, -1), axis=1)[:, None, None, None]
        hz = jax.jvp(jax.grad(L), (x[:n],), (jnp.asarray(z),))[1]
        want = np.mean(np.sum(np.asarray(hz) ** 2, axis=(1, 2, 3)))
        got = jax.jit(lambda: PR.zcprob_terms(net, v, ARCH, x, y, n_ntk=2, n_curv=n, h=1e-6)["zcprob_curv"])()
        big = jax.jit(lambda: PR.zcprob_terms(net, v, ARCH, x, y, n_ntk=2, n_curv=n, h=3.0)["zcprob_curv"])()
    assert float(got) == pytest.approx(want, rel=1e-4)
    assert abs(float(big) - want) > 1e-3 * want  # at h = 3 the difference quotient is not H z*


def test_log_form_ranks_as_eq4():
    rng = np.random.default_rng(0)
    ntk, curv = rng.uniform(0, 2, 50), rng.lognormal(0, 1, 50)
    for t in (0.0, 0.5, 3.0):
        r = -np.exp(t * ntk) * curv
        lf = PR.zcprob_from_terms(ntk, curv, t)
        assert np.allclose(lf, -np.log(-r)) and (np.argsort(lf) == np.argsort(r)).all()
    assert np.allclose(PR.zcprob_from_terms(ntk, curv, 0.0), -np.log(curv))


def test_suite_conventions(setup64):
    net, v, x, y = setup64
    with jax.enable_x64(True):
        dis = jax.jit(lambda: PR.zcprob_terms(net, v, DISC, x, y, n_ntk=2, n_curv=2))()
        assert all(np.isnan(float(a)) for a in dis.values())
        one = float(jax.jit(lambda: P.PROXIES["zcprob"](net, v, ARCH, x, y, None))())
        r = jax.jit(lambda: PR.zcprob_terms(net, v, ARCH, x, y))()  # defaults: min(50, B), min(32, B)
        r6 = jax.jit(lambda: PR.zcprob_terms(net, v, ARCH, x, y, n_ntk=6, n_curv=6))()
        want = -(PR.ZCPROB_T * float(r["zcprob_ntk"]) + np.log(float(r["zcprob_curv"])))
        assert one == pytest.approx(want, rel=1e-12)
        assert all(float(r[k]) == float(r6[k]) for k in r)
    assert np.isfinite(one)
    for kw, pat in ((dict(n_ntk=0), "n_ntk"), (dict(n_curv=7), "n_curv"), (dict(h=0.0), "h > 0")):
        with pytest.raises(ValueError, match=pat):
            PR.zcprob_terms(net, v, ARCH, x, y, **{"n_ntk": 2, "n_curv": 2, **kw})
