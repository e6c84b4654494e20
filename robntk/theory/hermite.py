"""Hermite coefficients and dual kernels ("dual activations") of the searchable activations.

Hermite coefficients (probabilists' Hermite polynomials He_r, orthonormalised):

    μ_r(σ) = E_{z~N(0,1)}[σ(z) He_r(z)] / √(r!)          (theory.md, "Ingredients")

Dual kernels, for a pair of standard Gaussians (u, v) with correlation ρ ∈ [−1, 1]:

    σ̂(ρ)  = E[σ(u) σ(v)]   = Σ_r μ_r(σ)² ρ^r            (Mehler's formula)
    σ̂'(ρ) = E[σ'(u) σ'(v)] = Σ_r μ_r(σ')² ρ^r = Σ_r (r+1) μ_{r+1}(σ)² ρ^r

(the last step is Stein's identity E[σ'(z) He_r(z)] = E[σ(z) He_{r+1}(z)], i.e.
μ_r(σ') = √(r+1) μ_{r+1}(σ)). Every coefficient of both series is ≥ 0: this is what makes the
λ_min bounds of :mod:`robntk.theory.bounds` possible.

How each quantity is computed:

* ReLU: closed forms. μ_0 = 1/√(2π), μ_1 = 1/2, odd r ≥ 3: 0, even r ≥ 2:
  μ_r = (−1)^{r/2−1} (r−3)!! / √(2π r!) (theory.md; Daniely, Frostig, Singer 2016).
  Duals are the arc-cosine kernels of degree 1 and 0 (Cho & Saul, NeurIPS 2009):
  σ̂(ρ) = (√(1−ρ²) + (π − arccos ρ) ρ) / (2π),  σ̂'(ρ) = (π − arccos ρ) / (2π).
* LeakyReLU(a): σ(z) = relu(z) − a·relu(−z) and relu(−z) has coefficients (−1)^r μ_r(relu), so
  μ_r = (1 − a(−1)^r) μ_r(relu); σ̂(ρ) = (1 + a²) k₁(ρ) − 2a k₁(−ρ), σ̂'(ρ) = a + (1 − a)² k₀(ρ).
* tanh, sigmoid, Swish, GELU: Gauss–Hermite quadrature. 1-D for μ_r (≥ 300 nodes, via a
  weighted three-term recurrence of the normalised Hermite functions so nothing overflows).
  Duals two ways: ``method='series'`` (default) sums Mehler's series to r = 300 from these
  coefficients (Parseval-certified tail ≤ 1e-13, :func:`series_tail`); ``method='quadrature'``
  is the direct 2-D Gaussian expectation by a tensor-product Gauss–Hermite rule (u = z₁,
  v = ρ z₁ + √(1−ρ²) z₂; 96² nodes, error ≲ 1e-9 for tanh, 1e-15 for the others), ~100× slower.
  The two are independent implementations and agree to ≤ 1e-9 (tested); the infinite-width
  kernels use ``'series'`` by default for speed. Quadrature is inaccurate at kinks, which is why
  the ReLU-type activations use closed forms (theory.md).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special

from robntk.theory.activations import (
    LEAKY_SLOPE,
    RELU_TYPE,
    check_activation,
    np_activation,
    np_activation_derivative,
)

#: Gauss–Hermite nodes used for the 1-D coefficient integrals and for the 2-D duals.
N_NODES_1D = 300
N_NODES_2D = 96  # 2-D rule error < 1e-9 for tanh (the slowest), ~1e-15 for the others
#: Terms of Mehler's series used by the default dual method (tail ≤ 1e-13, see series_tail).
DUAL_ORDER = 300
DUAL_METHODS = ("series", "quadrature")


def _check_order(order) -> int:
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    return int(order)


@functools.cache
def _gh_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and *probability* weights (sum 1) of the n-point rule for N(0, 1)."""
    z, w = special.roots_hermitenorm(n)  # stable for large n (numpy's hermegauss overflows)
    return z, w / w.sum()


def relu_hermite(order: int) -> np.ndarray:
    """Closed-form μ_0..μ_order of ReLU (float64, shape (order+1,)).

    Source: theory.md; Daniely et al. 2016. Raises ValueError for a negative order.
    """
    order = _check_order(order)
    mu = np.zeros(order + 1)
    mu[0] = 1.0 / math.sqrt(2.0 * math.pi)
    if order >= 1:
        mu[1] = 0.5
    # even r >= 2: (-1)^{r/2-1} (r-3)!! / sqrt(2π r!), computed in log space (no overflow).
    for r in range(2, order + 1, 2):
        log_df = sum(math.log(k) for k in range(r - 3, 0, -2))  # (r-3)!!, (-1)!! = 1
        log_mag = log_df - 0.5 * (math.log(2.0 * math.pi) + math.lgamma(r + 1))
        mu[r] = (-1) ** (r // 2 - 1) * math.exp(log_mag)
    return mu


def quadrature_hermite(activation: str, order: int, n_nodes: int = N_NODES_1D) -> np.ndarray:
    """μ_0..μ_order of any activation by ``n_nodes``-point Gauss–Hermite quadrature.

    The normalised Hermite functions u_r(z_i) = He_r(z_i)/√(r!)·√w_i are built by the stable
    recurrence u_{r+1} = (z u_r − √r u_{r−1})/√(r+1) and μ_r = Σ_i √w_i σ(z_i) u_r(z_i).
    Accurate to ~1e-14 for the smooth activations when n_nodes ≳ order + 100; use the closed
    forms (:func:`hermite_coefficients`) for ReLU-type activations.

    Returns:
        float64 (order+1,).

    Raises:
        ValueError: unknown activation, negative order, n_nodes < 2.
    """
    check_activation(activation)
    order = _check_order(order)
    if n_nodes < 2:
        raise ValueError(f"n_nodes must be >= 2, got {n_nodes!r}")
    z, w = _gh_rule(int(n_nodes))
    sw = np.sqrt(w)
    f = np_activation(activation, z) * sw
    mu = np.empty(order + 1)
    u_prev, u = np.zeros_like(z), sw.copy()
    for r in range(order + 1):
        mu[r] = float(np.dot(f, u))
        u_prev, u = u, (z * u - math.sqrt(r) * u_prev) / math.sqrt(r + 1)
    return mu


@functools.lru_cache(maxsize=64)
def _hermite_cached(activation: str, order: int) -> np.ndarray:
    if activation == "relu":
        return relu_hermite(order)
    if activation == "leaky_relu":
        mu = relu_hermite(order)
        sign = np.array([(-1.0) ** r for r in range(order + 1)])
        return (1.0 - LEAKY_SLOPE * sign) * mu
    return quadrature_hermite(activation, order, max(N_NODES_1D, order + 150))


def hermite_coefficients(activation: str, order: int) -> np.ndarray:
    """μ_r(σ) = E[σ(z) He_r(z)]/√(r!) for r = 0..order (float64, shape (order+1,)).

    Closed forms for ``relu`` and ``leaky_relu`` (LeakyReLU from ReLU by linearity); quadrature
    (:func:`quadrature_hermite`, ≥ 300 nodes) for ``tanh``, ``sigmoid``, ``swish``, ``gelu``.
    Values match theory.md's table (tested). Cached; the returned array is a copy.

    Raises:
        ValueError: unknown activation or negative order.
    """
    check_activation(activation)
    order = _check_order(order)
    return _hermite_cached(activation, order).copy()


def derivative_hermite(activation: str, order: int) -> np.ndarray:
    """μ_r(σ') = √(r+1) μ_{r+1}(σ), r = 0..order (Stein's identity), float64 (order+1,)."""
    mu = hermite_coefficients(activation, order + 1)
    return np.sqrt(np.arange(1, order + 2)) * mu[1:]


def _relu_k1(rho):
    rho = np.clip(rho, -1.0, 1.0)
    return (np.sqrt(np.maximum(1.0 - rho * rho, 0.0)) + (np.pi - np.arccos(rho)) * rho) / (2.0 * np.pi)


def _relu_k0(rho):
    rho = np.clip(rho, -1.0, 1.0)
    return (np.pi - np.arccos(rho)) / (2.0 * np.pi)


def _gh2(fn_u, fn_v, rho, n_nodes, chunk=1 << 14):
    """E[fn_u(u) fn_v(v)] for unit-variance (u, v) with correlation rho (array), 2-D GH."""
    z, w = _gh_rule(int(n_nodes))
    fu = fn_u(z) * w  # (n,)
    rho = np.clip(np.asarray(rho, dtype=np.float64), -1.0, 1.0)
    flat = rho.reshape(-1)
    out = np.empty_like(flat)
    for s in range(0, flat.size, chunk):
        r = flat[s : s + chunk, None, None]
        v = r * z[None, :, None] + np.sqrt(1.0 - r * r) * z[None, None, :]  # (c, n_u, n_v)
        out[s : s + chunk] = np.einsum("cij,i,j->c", fn_v(v), fu, w)
    return out.reshape(rho.shape)


def _check_method(method):
    if method not in DUAL_METHODS:
        raise ValueError(f"unknown dual method {method!r}; allowed: {', '.join(DUAL_METHODS)}")


def dual(activation: str, rho, method: str = "series", n_nodes: int = N_NODES_2D) -> np.ndarray:
    """σ̂(ρ) = E[σ(u)σ(v)], (u, v) standard Gaussians with correlation ρ (elementwise).

    Args:
        activation: one of :data:`robntk.theory.activations.ACTIVATIONS`.
        rho: array of correlations; values are clipped to [−1, 1] (rounding).
        method: for the smooth activations, ``'series'`` (Mehler's series with
            :data:`DUAL_ORDER` + 1 terms from the quadrature coefficients; the dropped tail is
            ≤ 1e-13 for every searchable activation, see :func:`series_tail`) or
            ``'quadrature'`` (2-D Gauss–Hermite with ``n_nodes``² nodes, error ≲ 1e-9 at
            n_nodes = 96; ~100× slower). ReLU-type activations always use the closed form.
        n_nodes: nodes per dimension for ``'quadrature'``.

    Returns:
        float64 array shaped like ``rho``. Closed form (arc-cosine, Cho & Saul 2009) for
        ReLU-type activations.

    Raises:
        ValueError: unknown activation or method.
    """
    check_activation(activation)
    _check_method(method)
    rho = np.asarray(rho, dtype=np.float64)
    if activation == "relu":
        return _relu_k1(rho)
    if activation == "leaky_relu":
        a = LEAKY_SLOPE
        return (1.0 + a * a) * _relu_k1(rho) - 2.0 * a * _relu_k1(-rho)
    if method == "series":
        return dual_series(activation, rho, DUAL_ORDER)
    f = functools.partial(np_activation, activation)
    return _gh2(f, f, rho, n_nodes)


def dual_derivative(activation: str, rho, method: str = "series", n_nodes: int = N_NODES_2D) -> np.ndarray:
    """σ̂'(ρ) = E[σ'(u)σ'(v)] (elementwise; same conventions as :func:`dual`).

    Closed form (arc-cosine of degree 0) for ReLU-type activations; Mehler's series
    Σ_r (r+1) μ_{r+1}² ρ^r or 2-D Gauss–Hermite otherwise.
    """
    check_activation(activation)
    _check_method(method)
    rho = np.asarray(rho, dtype=np.float64)
    if activation == "relu":
        return _relu_k0(rho)
    if activation == "leaky_relu":
        a = LEAKY_SLOPE
        return a + (1.0 - a) ** 2 * _relu_k0(rho)
    if method == "series":
        return dual_series(activation, rho, DUAL_ORDER, derivative=True)
    f = functools.partial(np_activation_derivative, activation)
    return _gh2(f, f, rho, n_nodes)


@functools.cache
def gaussian_moments(activation: str) -> tuple[float, float]:
    """(E σ(z), E σ(z)²) for z ~ N(0, 1): μ₀ and σ̂(1), used by the layer constants.

    Closed forms for ReLU-type activations (1/√(2π), 1/2; LeakyReLU (1−a)/√(2π), (1+a²)/2);
    1-D Gauss–Hermite with 1500 nodes otherwise.
    """
    check_activation(activation)
    if activation in RELU_TYPE:
        a = 0.0 if activation == "relu" else LEAKY_SLOPE
        return (1.0 - a) / math.sqrt(2.0 * math.pi), (1.0 + a * a) / 2.0
    z, w = _gh_rule(1500)
    return float(np.dot(w, np_activation(activation, z))), float(np.dot(w, np_activation(activation, z) ** 2))


def series_tail(activation: str, order: int = DUAL_ORDER, derivative: bool = False) -> float:
    """Parseval bound on the truncation error of Mehler's series at |ρ| ≤ 1:
    E σ² − Σ_{r≤order} μ_r² (or E σ'² − Σ_{r≤order} (r+1)μ_{r+1}²), by 1-D quadrature (1500 nodes).

    ReLU-type activations have slowly decaying tails (μ_r² ~ r^{−5/2}); their duals use closed forms.
    """
    check_activation(activation)
    z, w = _gh_rule(1500)
    if derivative:
        total = float(np.dot(w, np_activation_derivative(activation, z) ** 2))
        kept = float(np.sum(derivative_hermite(activation, order) ** 2))
    else:
        total = gaussian_moments(activation)[1]
        kept = float(np.sum(hermite_coefficients(activation, order) ** 2))
    return total - kept


def dual_series(activation: str, rho, order: int = 200, derivative: bool = False) -> np.ndarray:
    """Mehler's series Σ_{r≤order} μ_r² ρ^r (or Σ (r+1) μ_{r+1}² ρ^r for ``derivative=True``).

    An independent implementation of :func:`dual` / :func:`dual_derivative` (accurate for the
    smooth activations, whose coefficients decay fast; slow at |ρ| → 1 for ReLU-type ones).
    """
    coeffs = derivative_hermite(activation, order) if derivative else hermite_coefficients(activation, order)
    return np.polynomial.polynomial.polyval(np.clip(np.asarray(rho, np.float64), -1, 1), coeffs**2)
