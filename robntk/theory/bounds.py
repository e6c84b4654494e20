"""Rigorous lower bounds on λ_min of the (mixed, perturbed) infinite-width NTK.

Everything here is a *true inequality for the analytic (infinite-width) kernel* of
:mod:`robntk.theory.infinite`, for the given points; for the empirical kernel at width m it
holds only up to the O(1/√m) fluctuation of K around Θ. Derivations: docs/theory-bounds.md.

Structure (Hermite/Gershgorin, theory.md "Ingredients"; Nguyen, Mondelli, Montúfar 2021 for
the Hermite–Gershgorin argument, Zhu et al. 2022 for activation/skip search spaces):

1. **Coefficients.** Θ ⪰ Σ_r c_r A_r with c_r ≥ 0, where A_r(X, Y) = (XYᵀ)^{∘r} (FCN) or the
   pooled patch kernel (1/P²) Σ_{p,p'} ⟨z_p(x), z_{p'}(y)⟩^r (CNN, z_p = first-layer patch,
   :func:`power_grams`). ``coefficients='series'``: the Taylor coefficients of the FCN's NTK
   (:func:`robntk.theory.infinite.fcn_taylor_coefficients`, exact up to truncation from below);
   ``'path'``: the closed residual-path form (:func:`robntk.theory.infinite.path_coefficients`,
   FCN and CNN).
2. **Mixing (β) and perturbation (ρ).** K_all(β) is the NTK of g(x) = (1−β)f(x) + βf(x̃) with x̃
   frozen: with feature maps φ_r (A_r(x, y) = ⟨φ_r(x), φ_r(y)⟩),

       K_all(β) ⪰ Σ_r c_r M_r(β),   M_r(β) = Gram of (1−β)φ_r(x_i) + βφ_r(x̃_i)
              = (1−β)² A_r(X,X) + β(1−β)(A_r(X,X̃) + A_r(X̃,X)) + β² A_r(X̃,X̃)   (PSD),

   so λ_min(K_all(β)) ≥ Σ_r c_r λ_min(M_r(β)); K̃_all(β) likewise with (X̃, X̃̃).
3. **λ_min(M_r)** from below, clipped at 0 (M_r is PSD):
   ``'separation'`` (theory.md's form, the default)
       min_i M_r,ii − (N−1)[(1−β)² s(A_r(X,X)) + β(1−β)(s(A_r(X,X̃)) + s(A_r(X̃,X))) + β² s(A_r(X̃,X̃))]
   with s(A) = max_{i≠j}|A_ij|; for the FCN s(A_r(X,Y)) = δ_{XY}^r, δ_{XY} = max_{i≠j}|⟨x_i,y_j⟩|,
   and at β = 0 this is exactly 1 − (N−1)δ^r. ``'gershgorin'``: min_i (M_ii − Σ_{j≠i}|M_ij|).
   ``'eig'``: the exact λ_min(M_r) (numerical eigensolver; tightest, rigorous up to rounding).

:func:`apriori_bound` replaces the measured separations by worst cases over *every* adversary
of chordal radius ρ (FCN), from the clean separation δ alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robntk.ntk.kernels import check_beta
from robntk.theory.adversary import angular_radius, check_rho
from robntk.theory.arch import Arch, ResCNN, ResFCN
from robntk.theory.infinite import check_inputs, conv_smooth, fcn_taylor_coefficients, path_coefficients

COEFFICIENTS = ("series", "path")
GRAM_METHODS = ("separation", "gershgorin", "eig")
KERNELS = ("K_all", "K_tilde_all")
DEFAULT_ORDER = 64


def _check_choice(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def bound_coefficients(arch: Arch, coefficients: str = "series", order: int = DEFAULT_ORDER) -> np.ndarray:
    """c_0..c_R with Θ ⪰ Σ_r c_r A_r (float64 (R+1,)).

    Raises:
        ValueError: unknown ``coefficients``; ``'series'`` for a CNN (not a dot-product kernel).
    """
    _check_choice(coefficients, COEFFICIENTS, "coefficients")
    if coefficients == "series":
        if not isinstance(arch, ResFCN):
            raise ValueError("coefficients='series' needs a ResFCN (dot-product kernel); use 'path' for a ResCNN")
        return fcn_taylor_coefficients(arch, order)
    return path_coefficients(arch, order)


def power_grams(arch: Arch, X, Y=None, order: int = DEFAULT_ORDER) -> np.ndarray:
    """A_r(X, Y) for r = 0..order, float64 (R+1, N1, N2).

    FCN: (XYᵀ)^{∘r}. CNN: (1/P²) Σ_{p,p'} Σ¹_{pp'}(x, y)^r, Σ¹ = T_{k₁}(⟨x_p, y_{p'}⟩) (the
    first layer's patch correlations). A_0 is the all-ones matrix.

    Raises:
        ValueError: wrong shapes, inputs not normalised, negative order.
    """
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    X = check_inputs(arch, X)
    Y = X if Y is None else check_inputs(arch, Y)
    if isinstance(arch, ResCNN):
        S = np.clip(conv_smooth(np.einsum("ipc,jqc->ijpq", X, Y), arch.filter_sizes[0]), -1.0, 1.0)
    else:
        S = np.clip(X @ Y.T, -1.0, 1.0)
    out = np.empty((order + 1,) + S.shape[:2])
    Sk = np.ones_like(S)
    for k in range(order + 1):
        out[k] = Sk.mean(axis=(-2, -1)) if S.ndim == 4 else Sk
        Sk = Sk * S
    return out


@dataclass(frozen=True)
class PairGrams:
    """A_r blocks of a point-set pair (Xa, Xb), each (R+1, N, N): A_r(Xa,Xa), A_r(Xb,Xb), A_r(Xa,Xb)."""

    aa: np.ndarray
    bb: np.ndarray
    ab: np.ndarray

    @property
    def order(self) -> int:
        """R."""
        return self.aa.shape[0] - 1


def pair_grams(arch: Arch, Xa, Xb=None, order: int = DEFAULT_ORDER) -> PairGrams:
    """Precompute the :func:`power_grams` blocks of (Xa, Xb) (``Xb=None`` → Xa), to reuse across
    β and methods.

    Raises:
        ValueError: different numbers of points, bad shapes or non-unit inputs.
    """
    Xb = Xa if Xb is None else Xb
    if len(Xa) != len(Xb):
        raise ValueError(f"Xa and Xb must hold the same points perturbed: {len(Xa)} vs {len(Xb)}")
    aa = power_grams(arch, Xa, None, order)
    bb = aa if Xb is Xa else power_grams(arch, Xb, None, order)
    ab = aa if Xb is Xa else power_grams(arch, Xa, Xb, order)
    return PairGrams(aa, bb, ab)


def _offdiag_max(A):
    """s(A) = max_{i≠j} |A_ij| for a stack (R, N, N) → (R,)."""
    A = np.abs(A).copy()
    n = A.shape[-1]
    if n < 2:
        return np.zeros(A.shape[0])
    idx = np.arange(n)
    A[:, idx, idx] = -np.inf
    return A.reshape(A.shape[0], -1).max(axis=1)


def gram_lower_bounds(
    arch: Arch,
    Xa=None,
    Xb=None,
    beta=0.0,
    *,
    method: str = "separation",
    order: int = DEFAULT_ORDER,
    grams: PairGrams | None = None,
) -> np.ndarray:
    """Lower bounds g_r ≤ λ_min(M_r(β)), r = 0..R (float64, all ≥ 0).

    Args:
        arch: architecture (fixes A_r).
        Xa: clean-side points (X for K_all, X̃ for K̃_all).
        Xb: perturbed-side points (X̃, resp. X̃̃); ``None`` = Xa (then β is irrelevant).
        beta: mixing weight β ∈ [0, 1].
        method: ``'separation'``, ``'gershgorin'`` or ``'eig'`` (module docstring).
        order: R (ignored when ``grams`` is given).
        grams: precomputed :func:`pair_grams` (then Xa, Xb are not needed).

    Raises:
        ValueError: β outside [0, 1], unknown method, mismatched point counts.
    """
    b = check_beta(beta)
    _check_choice(method, GRAM_METHODS, "method")
    G = pair_grams(arch, Xa, Xb, order) if grams is None else grams
    w_aa, w_x, w_bb = (1 - b) ** 2, b * (1 - b), b * b
    abT = np.swapaxes(G.ab, 1, 2)
    M = w_aa * G.aa + w_x * (G.ab + abT) + w_bb * G.bb
    n = M.shape[-1]
    diag = np.diagonal(M, axis1=1, axis2=2)
    if method == "separation":
        s = w_aa * _offdiag_max(G.aa) + w_x * (_offdiag_max(G.ab) + _offdiag_max(abT)) + w_bb * _offdiag_max(G.bb)
        g = diag.min(axis=1) - (n - 1) * s
    elif method == "gershgorin":
        off = np.abs(M).sum(axis=2) - np.abs(diag)
        g = (diag - off).min(axis=1)
    else:
        g = np.linalg.eigvalsh(0.5 * (M + np.swapaxes(M, 1, 2)))[:, 0]
    return np.maximum(g, 0.0)


@dataclass(frozen=True)
class Bound:
    """A λ_min lower bound and its decomposition.

    Attributes:
        value: Σ_r c_r g_r (float, ≥ 0; 0 means vacuous).
        terms: c_r g_r (R+1,).
        best_r: r of the largest term (−1 when vacuous).
        coefficients: c_r (R+1,).
        gram: g_r (R+1,).
    """

    value: float
    terms: np.ndarray
    best_r: int
    coefficients: np.ndarray
    gram: np.ndarray


def _combine(c, g) -> Bound:
    terms = c * g
    value = float(terms.sum())
    best = int(np.argmax(terms)) if value > 0 else -1
    return Bound(value, terms, best, c, g)


def lambda_min_bound(
    arch: Arch,
    Xa=None,
    Xb=None,
    beta=0.0,
    *,
    coefficients: str = "series",
    method: str = "separation",
    order: int = DEFAULT_ORDER,
    coeffs=None,
    grams: PairGrams | None = None,
) -> Bound:
    """Lower bound on λ_min of the infinite-width mixed kernel (1−β)²Θ(Xa,Xa) + β(1−β)(Θ(Xa,Xb) +
    Θ(Xb,Xa)) + β²Θ(Xb,Xb): K_all(β) for (Xa, Xb) = (X, X̃), K̃_all(β) for (X̃, X̃̃), Θ(X, X) for
    ``Xb=None`` or β = 0.

    The bound is Σ_{r=0}^{R} c_r g_r (module docstring): rigorous for the analytic kernel at these
    points (assumptions: unit-norm inputs, infinite width, every layer trained, the NTK
    parametrisation of :mod:`robntk.theory.arch`, frozen perturbed points).

    Args:
        arch: :class:`ResFCN` or :class:`ResCNN`.
        Xa, Xb: point sets (unit vectors), same N.
        beta: β ∈ [0, 1].
        coefficients: ``'series'`` (FCN, tight) or ``'path'`` (FCN/CNN, closed form).
        method: ``'separation'`` | ``'gershgorin'`` | ``'eig'``.
        order: highest Hermite/Taylor order R.
        coeffs: precomputed c_r (skips ``coefficients``).
        grams: precomputed :func:`pair_grams` of (Xa, Xb) with the same R as the coefficients.

    Returns:
        :class:`Bound`.

    Raises:
        ValueError: bad β, method, coefficients, shapes or non-unit inputs.
    """
    c = bound_coefficients(arch, coefficients, order) if coeffs is None else np.asarray(coeffs, np.float64)
    if grams is not None and grams.order != len(c) - 1:
        raise ValueError(f"grams have order {grams.order} but {len(c)} coefficients were given")
    g = gram_lower_bounds(arch, Xa, Xb, beta, method=method, order=len(c) - 1, grams=grams)
    return _combine(c, g)


def _low_power(c, r):
    """min_{t ∈ [c, 1]} t^r for each r (array), c ∈ [−1, 1]."""
    r = np.asarray(r)
    if c >= 0:
        return c**r
    return np.where(r % 2 == 0, 0.0, c**r)


def apriori_bound(
    arch: ResFCN,
    delta: float,
    n_points: int,
    rho,
    beta=0.0,
    *,
    kernel: str = "K_all",
    coefficients: str = "series",
    order: int = DEFAULT_ORDER,
    coeffs=None,
) -> Bound:
    """Worst-case bound over *every* adversary of chordal radius ρ (FCN, separation form).

    Only the clean separation δ = max_{i≠j}|⟨x_i, x_j⟩| and N are used. With φ = arccos δ,
    θ = 2 arcsin(ρ/2), and u(a) = cos(max(0, φ − a)) (the largest |cos| of two points whose clean
    angle lies in [φ, π − φ] after moving by a total angle a):

    * K_all (pairs x, x̃):  s_aa = δ^r, s_ab = u(θ)^r, s_bb = u(2θ)^r
    * K̃_all (pairs x̃, x̃̃): s_aa = u(2θ)^r, s_ab = u(3θ)^r, s_bb = u(4θ)^r
    * diagonal ≥ (1−β)² + β² + 2β(1−β)·min_{t∈[cos θ, 1]} t^r   (⟨x_i, x̃_i⟩ ≥ cos θ)

    g_r = max(0, diag − (N−1)[(1−β)² s_aa + 2β(1−β) s_ab + β² s_bb]) and the bound is Σ c_r g_r.
    It is ≤ the measured-separation bound of :func:`lambda_min_bound` whenever the points obey
    the radius constraints (tested).

    Raises:
        ValueError: not a ResFCN, δ ∉ [0, 1], N < 1, ρ ∉ [0, 2], β ∉ [0, 1], unknown kernel.
    """
    if not isinstance(arch, ResFCN):
        raise ValueError("apriori_bound needs a ResFCN")
    _check_choice(kernel, KERNELS, "kernel")
    b = check_beta(beta)
    theta = angular_radius(check_rho(rho))
    if not 0.0 <= float(delta) <= 1.0:
        raise ValueError(f"delta (separation) must be in [0, 1], got {delta!r}")
    if not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be an integer >= 1, got {n_points!r}")
    c = bound_coefficients(arch, coefficients, order) if coeffs is None else np.asarray(coeffs, np.float64)
    r = np.arange(len(c))
    phi = float(np.arccos(np.clip(delta, 0.0, 1.0)))
    u = lambda a: float(np.cos(max(0.0, phi - a)))
    sa, sb, sc = (u(0.0), u(theta), u(2 * theta)) if kernel == "K_all" else (u(2 * theta), u(3 * theta), u(4 * theta))
    w_aa, w_x, w_bb = (1 - b) ** 2, b * (1 - b), b * b
    diag = w_aa + w_bb + 2 * w_x * _low_power(float(np.cos(theta)), r)
    g = np.maximum(diag - (n_points - 1) * (w_aa * sa**r + 2 * w_x * sb**r + w_bb * sc**r), 0.0)
    if n_points == 1:
        g = np.maximum(diag, 0.0)
    return _combine(c, g)


def kernel_bounds(
    arch: Arch,
    x,
    x_adv,
    x_adv2,
    beta,
    *,
    coefficients: str = "series",
    method: str = "separation",
    order: int = DEFAULT_ORDER,
    coeffs=None,
) -> dict[str, Bound]:
    """``{'K_all': Bound, 'K_tilde_all': Bound}`` at one β (pairs (X, X̃) and (X̃, X̃̃))."""
    kw = dict(coefficients=coefficients, method=method, order=order, coeffs=coeffs)
    return {
        "K_all": lambda_min_bound(arch, x, x_adv, beta, **kw),
        "K_tilde_all": lambda_min_bound(arch, x_adv, x_adv2, beta, **kw),
    }
