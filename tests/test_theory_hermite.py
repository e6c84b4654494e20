"""Hermite coefficients and dual kernels of robntk.theory.hermite (theory.md's table)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from robntk.theory import hermite as H
from robntk.theory.activations import ACTIVATIONS, LEAKY_SLOPE, np_activation, np_activation_derivative

# theory.md, "Ingredients of the λ_min lower bound": μ0..μ6 (4 decimals; LeakyReLU row 3 decimals).
TABLE = {
    "relu": [0.3989, 0.5, 0.2821, 0, -0.0814, 0, 0.0446],
    "tanh": [0, 0.6057, 0, -0.1484, 0, 0.0625, 0],
    "sigmoid": [0.5, 0.2066, 0, -0.0255, 0, 0.0059, 0],
    "swish": [0.2066, 0.5, 0.2481, 0, -0.0378, 0, 0.0098],
    "gelu": [0.2821, 0.5, 0.2992, 0, -0.0720, 0, 0.0276],
    # 3-decimal row, not correctly rounded: theory.md lists μ0 = .396 and μ4 = −.080, the exact
    # values are (1 − a)/√(2π) = .39495 and (1 − a)μ4(relu) = −.08062 (checked exactly below).
    "leaky_relu": [0.396, 0.505, 0.279, 0, -0.080, 0, 0.044],
}


@pytest.mark.parametrize("act", sorted(TABLE))
def test_table_of_theory_md(act):
    mu = H.hermite_coefficients(act, 6)
    tol = 1.2e-3 if act == "leaky_relu" else 6e-5
    np.testing.assert_allclose(mu, TABLE[act], atol=tol)


def test_relu_closed_forms_exact_values():
    mu = H.hermite_coefficients("relu", 8)
    assert mu[0] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-15)
    assert mu[1] == 0.5
    assert mu[2] == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-15)
    assert mu[4] == pytest.approx(-1 / math.sqrt(48 * math.pi), abs=1e-15)
    assert mu[6] == pytest.approx(3 / math.sqrt(1440 * math.pi), abs=1e-15)
    assert mu[8] == pytest.approx(-15 / math.sqrt(2 * math.pi * math.factorial(8)), abs=1e-15)
    assert np.all(mu[3::2] == 0)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_relu_type_against_adaptive_integration(act):
    """Closed forms vs ∫ σ(z) He_r(z) φ(z) dz by adaptive quadrature split at the kink."""
    mu = H.hermite_coefficients(act, 8)
    for r in range(9):
        he = special.hermitenorm(r)
        f = lambda z: np_activation(act, z) * he(z) * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        val = integrate.quad(f, -np.inf, 0)[0] + integrate.quad(f, 0, np.inf)[0]
        assert mu[r] == pytest.approx(val / math.sqrt(math.factorial(r)), abs=1e-10), r


def test_leaky_relu_by_linearity():
    mu_r = H.hermite_coefficients("relu", 10)
    mu_l = H.hermite_coefficients("leaky_relu", 10)
    signs = np.array([(-1) ** r for r in range(11)])
    np.testing.assert_allclose(mu_l, (1 - LEAKY_SLOPE * signs) * mu_r, rtol=0, atol=1e-16)
    assert mu_l[0] == pytest.approx((1 - LEAKY_SLOPE) / math.sqrt(2 * math.pi), abs=1e-15)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "swish", "gelu"])
def test_parseval_and_quadrature_convergence(act):
    mu = H.hermite_coefficients(act, 300)
    assert np.sum(mu**2) == pytest.approx(H.gaussian_moments(act)[1], abs=1e-12)
    assert abs(H.series_tail(act)) < 1e-12 and abs(H.series_tail(act, derivative=True)) < 1e-12
    # doubling the nodes changes nothing
    np.testing.assert_allclose(H.quadrature_hermite(act, 60, 300), H.quadrature_hermite(act, 60, 900), atol=1e-13)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "swish", "gelu"])
def test_stein_identity_derivative_coefficients(act):
    """μ_r(σ') = √(r+1) μ_{r+1}(σ), against direct quadrature of σ'."""
    z, w = H._gh_rule(400)
    direct = [
        float(np.sum(w * np_activation_derivative(act, z) * special.eval_hermitenorm(r, z)))
        / math.sqrt(math.factorial(r))
        for r in range(8)
    ]
    np.testing.assert_allclose(H.derivative_hermite(act, 7), direct, atol=1e-12)


def test_known_symmetries():
    assert np.allclose(H.hermite_coefficients("tanh", 20)[0::2], 0, atol=1e-15)  # odd function
    sg = H.hermite_coefficients("sigmoid", 20)
    assert sg[0] == pytest.approx(0.5, abs=1e-14) and np.allclose(sg[2::2], 0, atol=1e-14)
    sw, gl = H.hermite_coefficients("swish", 3), H.hermite_coefficients("gelu", 3)
    assert sw[0] == pytest.approx(sg[1], abs=1e-14)  # E[z s(z)] = E[s'(z)] (Stein)
    assert gl[0] == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-14)  # E[z Φ(z)] = E φ(z)
    assert sw[1] == pytest.approx(0.5, abs=1e-14) and gl[1] == pytest.approx(0.5, abs=1e-14)


def test_relu_duals_closed_form_values():
    assert H.dual("relu", 0.0) == pytest.approx(1 / (2 * math.pi))
    assert H.dual("relu", 1.0) == pytest.approx(0.5)
    assert H.dual("relu", -1.0) == pytest.approx(0.0, abs=1e-16)
    assert H.dual_derivative("relu", 0.0) == pytest.approx(0.25)
    assert H.dual_derivative("relu", 1.0) == pytest.approx(0.5)
    a = LEAKY_SLOPE
    assert H.dual("leaky_relu", 1.0) == pytest.approx((1 + a * a) / 2)
    assert H.dual_derivative("leaky_relu", 1.0) == pytest.approx((1 + a * a) / 2)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_duals_match_mehler_series(act):
    """Closed forms / 2-D Gauss–Hermite vs Mehler's series Σ μ_r² ρ^r (independent)."""
    rho = np.linspace(-0.9, 0.9, 13) if act in ("relu", "leaky_relu") else np.linspace(-1, 1, 13)
    n = 400
    method = "series" if act in ("relu", "leaky_relu") else "quadrature"
    np.testing.assert_allclose(H.dual(act, rho, method), H.dual_series(act, rho, n), atol=1e-8)
    np.testing.assert_allclose(H.dual_derivative(act, rho, method), H.dual_series(act, rho, n, True), atol=1e-8)


def test_smooth_duals_against_monte_carlo():
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, 400_000))
    for act in ("tanh", "gelu"):
        for rho in (-0.5, 0.3, 0.95):
            v = rho * z1 + math.sqrt(1 - rho * rho) * z2
            mc = np.mean(np_activation(act, z1) * np_activation(act, v))
            assert H.dual(act, rho) == pytest.approx(mc, abs=5e-3)


def test_errors_name_bad_values():
    with pytest.raises(ValueError, match="unknown activation 'softplus'.*allowed: relu"):
        H.hermite_coefficients("softplus", 3)
    with pytest.raises(ValueError, match="order must be an integer >= 0, got -1"):
        H.hermite_coefficients("relu", -1)
    with pytest.raises(ValueError, match="unknown dual method 'mc'"):
        H.dual("tanh", 0.1, method="mc")
