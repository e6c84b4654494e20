"""RobNets' evaluation attacks (FGSM, PGD-20/100, MI-FGSM, DeepFool) on affine classifiers,
where the optimal attack is analytic.

For an affine classifier f(x) = W·x + b with true class y, the points classified as k lie in the
half-space f_k − f_y > 0 at distance |f_k − f_y| / ‖w_k − w_y‖_q from x (q the dual norm:
q = 2 for L2, q = 1 for L∞). The minimal perturbation is the smallest of these distances, and
an ε-ball contains a misclassified point iff that minimum is < ε (ignoring the [0, 1] box,
which the test points stay far from). For two classes the L∞-optimal attack is
x + ε·sign(w_other − w_y), which every sign-gradient attack (FGSM, PGD, MI-FGSM) takes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.attacks.iterative import deepfool, fgsm, mifgsm, pgd


@pytest.fixture(autouse=True)
def _float64():
    """Float64 for these tests only (analytic comparisons at 1e-9), without changing the global flag."""
    with jax.enable_x64(True):
        yield


def linear(params, x):
    W, b = params
    return x.reshape(x.shape[0], -1) @ W + b


def make_problem(K, seed=0, B=32, D=(4, 4, 3), scale=1.0):
    rng = np.random.default_rng(seed)
    d = int(np.prod(D))
    W = rng.normal(size=(d, K)) * scale
    b = rng.normal(size=(K,))
    x = rng.uniform(0.35, 0.65, size=(B,) + D)
    y = np.argmax(x.reshape(B, -1) @ W + b, axis=1)  # correctly classified by construction
    return (jnp.asarray(W), jnp.asarray(b)), jnp.asarray(x), jnp.asarray(y)


def min_distance(params, x, y, q):
    """Distance to the nearest decision boundary, its class, and the normals (B,), (B,), (B, D)."""
    W, b = (np.asarray(p) for p in params)
    xf = np.asarray(x).reshape(x.shape[0], -1)
    f = xf @ W + b
    y = np.asarray(y)
    dists = np.full(f.shape, np.inf)
    for k in range(W.shape[1]):
        w = W[:, k][None, :] - W[:, y].T
        n = np.linalg.norm(w, ord=q, axis=1)
        with np.errstate(invalid="ignore"):  # k == y: 0/0, masked below
            dk = np.abs(f[:, k] - f[np.arange(len(y)), y]) / n
        dists[:, k] = np.where(k == y, np.inf, dk)
    l = np.argmin(dists, axis=1)
    wl = W[:, l].T - W[:, y].T
    fl = f[np.arange(len(y)), l] - f[np.arange(len(y)), y]
    return dists.min(axis=1), l, wl, fl


def accuracy(params, x, y):
    return float(np.mean(np.argmax(np.asarray(linear(params, x)), axis=1) == np.asarray(y)))


# --------------------------------------------------------------------------- DeepFool
@pytest.mark.parametrize("norm,q", [("l2", 2), ("linf", 1)])
def test_deepfool_finds_the_analytic_minimal_perturbation(norm, q):
    params, x, y = make_problem(K=4)
    d, _, wl, fl = min_distance(params, x, y, q)
    os_ = 0.02
    xa = jax.jit(functools.partial(deepfool, linear, num_classes=4, overshoot=os_, norm=norm))(params, x, y)
    r = np.asarray(xa - x).reshape(x.shape[0], -1)
    assert 0.0 < float(jnp.min(xa)) and float(jnp.max(xa)) < 1.0  # the box is not active
    # one linearisation step lands exactly on the analytic point (times 1 + overshoot)
    if norm == "l2":
        want = ((np.abs(fl) + 1e-4) / np.sum(wl * wl, axis=1))[:, None] * wl
        got_norm = np.linalg.norm(r, axis=1)
    else:
        want = ((np.abs(fl) + 1e-4) / np.sum(np.abs(wl), axis=1))[:, None] * np.sign(wl)
        got_norm = np.max(np.abs(r), axis=1)
    np.testing.assert_allclose(r, (1 + os_) * want, rtol=1e-9, atol=1e-12)
    # its size is the minimal distance d (plus the 1e-4 logit margin), and the label flips
    w_n = np.linalg.norm(wl, ord=q, axis=1)
    np.testing.assert_allclose(got_norm, (1 + os_) * (d + 1e-4 / w_n), rtol=1e-9)
    assert accuracy(params, xa, y) == 0.0


@pytest.mark.parametrize("norm,q", [("l2", 2), ("linf", 1)])
def test_deepfool_eps_accuracy_equals_the_certified_one(norm, q):
    params, x, y = make_problem(K=3, B=64, seed=1)
    d, *_ = min_distance(params, x, y, q)
    eps = float(np.median(d))  # half the points are attackable within eps
    xa = deepfool(linear, params, x, y, num_classes=3, norm=norm, eps=eps)
    r = np.asarray(xa - x).reshape(x.shape[0], -1)
    size = np.linalg.norm(r, axis=1) if norm == "l2" else np.max(np.abs(r), axis=1)
    assert np.all(size <= eps * (1 + 1e-9))
    assert accuracy(params, xa, y) == pytest.approx(float(np.mean(d >= eps)))
    assert 0.3 < float(np.mean(d >= eps)) < 0.7


def test_deepfool_leaves_misclassified_points_alone():
    params, x, y = make_problem(K=3, seed=2)
    wrong = (y + 1) % 3
    xa = deepfool(linear, params, x, wrong, num_classes=3)
    np.testing.assert_array_equal(np.asarray(xa), np.asarray(x))


def test_deepfool_bad_arguments():
    params, x, y = make_problem(K=3, B=4)
    with pytest.raises(ValueError, match="num_classes"):
        deepfool(linear, params, x, y, num_classes=1)
    with pytest.raises(ValueError, match="norm"):
        deepfool(linear, params, x, y, num_classes=3, norm="l1")
    with pytest.raises(ValueError, match="steps"):
        deepfool(linear, params, x, y, num_classes=3, steps=0)
    with pytest.raises(ValueError, match="overshoot"):
        deepfool(linear, params, x, y, num_classes=3, overshoot=-0.1)
    with pytest.raises(ValueError, match="eps"):
        deepfool(linear, params, x, y, num_classes=3, eps=2.0, norm="linf")


# --------------------------------------------------------------------------- sign-gradient attacks
def test_sign_attacks_take_the_optimal_linf_step_on_a_binary_affine_model():
    params, x, y = make_problem(K=2, B=64, seed=3, scale=0.3)
    eps = 8 / 255
    W = np.asarray(params[0])
    yn = np.asarray(y)
    best = np.asarray(x) + eps * np.sign(W[:, 1 - yn] - W[:, yn]).T.reshape(x.shape)
    d, *_ = min_distance(params, x, y, 1)
    certified = float(np.mean(d >= eps))
    assert 0.05 < certified < 0.95
    key = jax.random.PRNGKey(0)
    attacks = {
        "fgsm": fgsm(linear, params, x, y, eps),
        "pgd20": pgd(linear, params, x, y, eps, steps=20, alpha=2 / 255, key=key),
        "pgd100": pgd(linear, params, x, y, eps, steps=100, alpha=2 / 255, key=key),
        "mifgsm": mifgsm(linear, params, x, y, eps),
    }
    for name, xa in attacks.items():
        np.testing.assert_allclose(np.asarray(xa), best, atol=1e-12, err_msg=name)
        assert accuracy(params, xa, y) == pytest.approx(certified), name


def _mifgsm_numpy(params, x, y, eps, steps, decay, norm):
    """Independent NumPy MI-FGSM with the analytic gradient of the mean cross-entropy of an
    affine model: ∇ₓ = (softmax(f) − onehot(y)) Wᵀ / B."""
    W, b = (np.asarray(p) for p in params)
    x = np.asarray(x)
    B = x.shape[0]
    xf0 = x.reshape(B, -1)
    xf, g = xf0.copy(), np.zeros_like(xf0)
    alpha = eps / steps
    for _ in range(steps):
        z = xf @ W + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(B), y] -= 1.0
        grad = p @ W.T / B
        g = decay * g + grad / np.abs(grad).sum(axis=1, keepdims=True)
        if norm == "linf":
            xf = np.clip(np.clip(xf + alpha * np.sign(g), xf0 - eps, xf0 + eps), 0, 1)
        else:
            xf = xf + alpha * g / np.linalg.norm(g, axis=1, keepdims=True)
            dd = xf - xf0
            n = np.linalg.norm(dd, axis=1, keepdims=True)
            xf = np.clip(xf0 + dd * np.minimum(1.0, eps / n), 0, 1)
    return xf.reshape(x.shape)


@pytest.mark.parametrize("norm,eps", [("linf", 16 / 255), ("l2", 0.5)])
def test_mifgsm_matches_an_independent_numpy_recurrence(norm, eps):
    params, x, y = make_problem(K=5, B=16, seed=4)
    for decay in (0.0, 1.0):
        f = jax.jit(functools.partial(mifgsm, linear, steps=7, decay=decay, norm=norm))
        got = np.asarray(f(params, x, y, eps))
        np.testing.assert_allclose(got, _mifgsm_numpy(params, x, y, eps, 7, decay, norm), atol=1e-10)
    # momentum changes the path on a multi-class model (the test is not vacuous)
    a = mifgsm(linear, params, x, y, eps, steps=7, decay=0.0, norm=norm)
    b = mifgsm(linear, params, x, y, eps, steps=7, decay=1.0, norm=norm)
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3


def test_mifgsm_bad_arguments():
    params, x, y = make_problem(K=3, B=4)
    with pytest.raises(ValueError, match="decay"):
        mifgsm(linear, params, x, y, 0.03, decay=-1.0)
    with pytest.raises(ValueError, match="eps"):
        mifgsm(linear, params, x, y, 1.5)
    with pytest.raises(ValueError, match="steps"):
        mifgsm(linear, params, x, y, 0.03, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        mifgsm(linear, params, x, y, 0.03, alpha=0.0)
