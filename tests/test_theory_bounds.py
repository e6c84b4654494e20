"""λ_min lower bounds (robntk.theory.bounds): true inequalities for the infinite-width kernel."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.theory import (
    ACTIVATIONS,
    ResCNN,
    ResFCN,
    analytic_family,
    analytic_ntk,
    apriori_bound,
    bound_coefficients,
    gram_lower_bounds,
    hermite_coefficients,
    kernel_bounds,
    lambda_min_bound,
    power_grams,
    random_cap_points,
    separation,
    skip_pattern,
    sphere_points,
)

lam_min = lambda K: float(np.linalg.eigvalsh(0.5 * (K + K.T))[0])


def _perturbed(X, rho, seed):
    """Random points within chordal distance ρ of X (and again of those): a stand-in adversary."""
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        th = 2 * np.arcsin(rho / 2)
        xa = np.asarray(random_cap_points(k1, jnp.asarray(X), th))
        xaa = np.asarray(random_cap_points(k2, jnp.asarray(xa), th))
    return xa, xaa


def _archs():
    out = []
    for act in ACTIVATIONS:
        for depth, pat in ((1, "none"), (2, "all"), (3, "none"), (3, "alternate")):
            out.append(ResFCN((act,) * depth, skip_pattern(pat, depth), in_dim=12))
    out.append(ResFCN(("relu", "sigmoid", "tanh"), (1, 0), in_dim=12))
    out.append(ResFCN(("gelu", "leaky_relu", "swish"), (1, 1), in_dim=12))
    return out


@pytest.mark.parametrize("arch", _archs(), ids=lambda a: a.name)
def test_bounds_hold_for_the_analytic_kernel(arch):
    X, _ = sphere_points(10, 12, seed=1)
    xa, xaa = _perturbed(X, 0.5, seed=2)
    fam = analytic_family(arch, X, xa, xaa)
    cs, cp = bound_coefficients(arch, "series", 48), bound_coefficients(arch, "path", 48)
    for beta in (0.0, 0.3, 0.5, 1.0):
        for kname, (A, B), K in (
            ("K_all", (X, xa), fam.k_all(beta)),
            ("K_tilde_all", (xa, xaa), fam.k_tilde_all(beta)),
        ):
            lam = lam_min(K)
            vals = {}
            for (co, c), me in itertools.product((("series", cs), ("path", cp)), ("separation", "gershgorin", "eig")):
                vals[co, me] = lambda_min_bound(arch, A, B, beta, method=me, coeffs=c).value
                assert vals[co, me] <= lam * (1 + 1e-9), (kname, beta, co, me, vals[co, me], lam)
            # orderings implied by the derivation
            for co in ("series", "path"):
                assert vals[co, "separation"] <= vals[co, "gershgorin"] * (1 + 1e-12) + 1e-15
                assert vals[co, "gershgorin"] <= vals[co, "eig"] * (1 + 1e-12) + 1e-15
            for me in ("separation", "gershgorin", "eig"):
                assert vals["path", me] <= vals["series", me] * (1 + 1e-12) + 1e-15
            ap = apriori_bound(arch, separation(X), len(X), 0.5, beta, kernel=kname, coeffs=cs).value
            assert ap <= vals["series", "separation"] * (1 + 1e-12) + 1e-15
    assert vals["series", "eig"] > 0  # informative: not vacuous on these points


def test_separation_form_is_theory_md_formula():
    """β = 0: g_r = max(0, 1 − (N−1) δ^r) exactly, and the bound is Σ_r c_r g_r."""
    arch = ResFCN(("relu", "tanh"), (1,), in_dim=12)
    X, _ = sphere_points(10, 12, seed=5)
    d = separation(X)
    g = gram_lower_bounds(arch, X, order=30)
    r = np.arange(31)
    np.testing.assert_allclose(g, np.maximum(0, 1 - 9 * d**r), atol=1e-14)
    c = bound_coefficients(arch, "series", 30)
    b = lambda_min_bound(arch, X, order=30)
    assert b.value == pytest.approx(float(np.sum(c * np.maximum(0, 1 - 9 * d**r))), rel=1e-13)
    assert b.best_r == int(np.argmax(b.terms)) and b.value > 0


def test_two_layer_relu_worked_example():
    """L = 1 ReLU, one separated pair: Θ ⪰ Σ (r+1) μ_r² G^{∘r}; the bound is explicit."""
    arch = ResFCN(("relu",), in_dim=2)
    t = 0.5
    X = np.array([[1.0, 0.0], [t, np.sqrt(1 - t * t)]])
    mu = hermite_coefficients("relu", 40)
    r = np.arange(41)
    expected = float(np.sum((r + 1) * mu**2 * np.maximum(0, 1 - t**r)))
    assert lambda_min_bound(arch, X, order=40).value == pytest.approx(expected, rel=1e-12)
    # exact: λ_min = Θ(1) − Θ(t) for a 2×2 kernel with equal diagonal
    K = analytic_ntk(arch, X)
    assert lam_min(K) == pytest.approx(K[0, 0] - K[0, 1], rel=1e-12)
    assert expected <= lam_min(K)


def test_mixing_endpoints():
    arch = ResFCN(("gelu", "gelu"), (1,), in_dim=12)
    X, _ = sphere_points(8, 12, seed=3)
    xa, _ = _perturbed(X, 0.3, seed=4)
    for me in ("separation", "gershgorin", "eig"):
        assert lambda_min_bound(arch, X, xa, 0.0, method=me).value == pytest.approx(
            lambda_min_bound(arch, X, method=me).value, rel=1e-12
        )
        assert lambda_min_bound(arch, X, xa, 1.0, method=me).value == pytest.approx(
            lambda_min_bound(arch, xa, method=me).value, rel=1e-12
        )


@pytest.mark.parametrize("k", [1, 3, 5])
def test_cnn_path_bound_holds(k):
    arch = ResCNN(("relu", "tanh"), (1,), filter_sizes=k, in_channels=3, length=6)
    X, _ = sphere_points(6, (6, 3), seed=k)
    with jax.enable_x64(True):
        xa = np.asarray(random_cap_points(jax.random.PRNGKey(0), jnp.asarray(X), 0.2))
    K0 = analytic_ntk(arch, X)
    assert np.allclose(power_grams(arch, X, order=0)[0], 1.0)
    for beta in (0.0, 0.5, 1.0):
        K = analytic_family(arch, X, xa, xa).k_all(beta)
        for me in ("separation", "gershgorin", "eig"):
            b = lambda_min_bound(arch, X, xa, beta, coefficients="path", method=me).value
            assert 0 <= b <= lam_min(K) * (1 + 1e-9)
    assert lambda_min_bound(arch, X, coefficients="path", method="eig").value > 0
    assert lam_min(K0) > 0


def test_kernel_bounds_and_errors():
    arch = ResFCN(("tanh", "tanh"), (0,), in_dim=12)
    X, _ = sphere_points(6, 12)
    xa, xaa = _perturbed(X, 0.2, seed=0)
    kb = kernel_bounds(arch, X, xa, xaa, 0.5)
    assert set(kb) == {"K_all", "K_tilde_all"}
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\], got 1.5"):
        lambda_min_bound(arch, X, xa, 1.5)
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\], got -0.1"):
        apriori_bound(arch, 0.5, 6, 0.1, -0.1)
    with pytest.raises(ValueError, match="rho must be >= 0"):
        apriori_bound(arch, 0.5, 6, -0.2, 0.5)
    with pytest.raises(ValueError, match="unknown method 'lanczos'"):
        lambda_min_bound(arch, X, method="lanczos")
    with pytest.raises(ValueError, match="coefficients='series' needs a ResFCN"):
        bound_coefficients(ResCNN(("relu",), filter_sizes=3), "series")
    with pytest.raises(ValueError, match="same points"):
        lambda_min_bound(arch, X, xa[:3], 0.5)
