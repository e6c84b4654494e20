"""Attacks against a linear model whose optimal attack is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.attacks import iterative as attacks

pytestmark = pytest.mark.usefixtures("x64")


def linear_setup(seed=0, B=6, D=20):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    W = jax.random.normal(k1, (D, 2), jnp.float64)
    x = jax.random.uniform(k2, (B, D), jnp.float64, 0.3, 0.7)  # interior: small eps never clips
    y = jax.random.randint(k3, (B,), 0, 2)
    f = lambda p, z: z @ p
    return f, W, x, y


def optimal_linf(W, x, y, eps):
    """For 2 classes the CE loss is monotone in the margin (w_y − w_o)·x: the optimum moves every
    coordinate by −eps·sign(w_y − w_o) (then clipped to [0, 1])."""
    d = W[:, y] - W[:, 1 - y]  # (D, B)
    return jnp.clip(x - eps * jnp.sign(d.T), 0, 1)


def test_fgsm_and_pgd_reach_linf_optimum():
    f, W, x, y = linear_setup()
    eps = 8 / 255
    opt = optimal_linf(W, x, y, eps)
    np.testing.assert_allclose(attacks.fgsm(f, W, x, y, eps), opt, atol=1e-12)
    adv = attacks.pgd(f, W, x, y, eps, steps=20, key=jax.random.PRNGKey(1))
    np.testing.assert_allclose(adv, opt, atol=1e-12)
    ce = lambda z: float(attacks.cross_entropy(f(W, z), y))
    assert ce(adv) > ce(x)


def test_linf_optimum_with_clipping():
    f, W, x, y = linear_setup(1)
    x = x.at[:, :5].set(0.0).at[:, 5:10].set(1.0)  # pixels at the border of [0, 1]
    eps = 0.1
    adv = attacks.pgd(f, W, x, y, eps, steps=30, key=jax.random.PRNGKey(2))
    np.testing.assert_allclose(adv, optimal_linf(W, x, y, eps), atol=1e-12)
    assert float(jnp.max(jnp.abs(adv - x))) <= eps + 1e-12 and adv.min() >= 0 and adv.max() <= 1


def test_pgd_l2_reaches_optimum():
    f, W, x, y = linear_setup(2)
    eps = 0.05
    d = (W[:, y] - W[:, 1 - y]).T
    opt = x - eps * d / jnp.linalg.norm(d, axis=1, keepdims=True)
    adv = attacks.pgd(f, W, x, y, eps, steps=50, norm="l2", random_init=False)
    np.testing.assert_allclose(adv, opt, atol=1e-12)
    # from a random start the radial projection removes the tangential error geometrically
    adv = attacks.pgd(f, W, x, y, eps, steps=60, alpha=eps, norm="l2", key=jax.random.PRNGKey(3))
    np.testing.assert_allclose(adv, opt, atol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(adv - x, axis=1), eps, rtol=1e-9)


def test_twice_perturbed_geometry():
    f, W, x, y = linear_setup(3)
    eps = 8 / 255
    xa = attacks.pgd(f, W, x, y, eps, steps=10, key=jax.random.PRNGKey(4))
    xaa = attacks.twice_perturbed(f, W, xa, y, eps, steps=10, key=jax.random.PRNGKey(5))
    assert float(jnp.max(jnp.abs(xaa - xa))) <= eps + 1e-12
    assert float(jnp.max(jnp.abs(xaa - x))) <= 2 * eps + 1e-12
    # for a linear model the second attack keeps going in the same direction: distance 2 eps
    np.testing.assert_allclose(jnp.max(jnp.abs(xaa - x), axis=1), 2 * eps, rtol=1e-9)


def test_unrolled_pgd_equals_rolled_loop():
    """``unroll`` only changes compilation: a nonlinear model (not at its optimum after 7 steps)
    gives the same iterate rolled, fully unrolled and partially unrolled (7 = 2·3 + 1)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(7))
    f0, W, x, y = linear_setup(5)
    V = jax.random.normal(k1, (2, 2), jnp.float64)
    f = lambda p, z: jnp.tanh(3.0 * z @ p) @ V
    kw = dict(steps=7, alpha=0.1 * 8 / 255, key=k2)  # small steps: the iterate is path-dependent
    rolled = attacks.pgd(f, W, x, y, 8 / 255, **kw)
    one_step = attacks.pgd(f, W, x, y, 8 / 255, **dict(kw, steps=1))
    assert float(jnp.max(jnp.abs(rolled - one_step))) > 1e-3
    for unroll in (True, 3):
        out = jax.jit(lambda w, z: attacks.pgd(f, w, z, y, 8 / 255, unroll=unroll, **kw))(W, x)
        np.testing.assert_allclose(out, rolled, atol=1e-12)


def test_random_start_in_ball_and_jit():
    f, W, x, y = linear_setup(4)
    eps = 0.03
    s = attacks.random_start(jax.random.PRNGKey(0), x, eps)
    assert float(jnp.max(jnp.abs(s - x))) <= eps and float(jnp.std(s - x)) > eps / 4
    s2 = attacks.random_start(jax.random.PRNGKey(0), x, eps, norm="l2")
    assert float(jnp.max(jnp.linalg.norm(s2 - x, axis=1))) <= eps + 1e-12
    jitted = jax.jit(lambda W, x, y, e: attacks.pgd(f, W, x, y, e, steps=5, key=jax.random.PRNGKey(0)))
    np.testing.assert_allclose(jitted(W, x, y, eps), attacks.pgd(f, W, x, y, eps, steps=5, key=jax.random.PRNGKey(0)))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(eps=-0.1), "eps must be"),
        (dict(eps=8.0), "eps must be in"),
        (dict(eps=0.1, steps=0), "steps"),
        (dict(eps=0.1, alpha=0.0), "alpha"),
        (dict(eps=0.1, norm="l1"), "unknown norm"),
    ],
)
def test_bad_arguments(kw, msg):
    f, W, x, y = linear_setup()
    with pytest.raises(ValueError, match=msg):
        attacks.pgd(f, W, x, y, key=jax.random.PRNGKey(0), **kw)
    with pytest.raises(ValueError, match="PRNG key"):
        attacks.pgd(f, W, x, y, 0.1)
