"""Infinite-width NTK of the residual FCN/CNN of :mod:`robntk.theory.arch`, and its power series.

Recursion (derivation in docs/theory-bounds.md; NTK of Jacot et al. 2018, residual version as in
Yang 2020 "Tensor Programs II", CNTK of Arora et al. 2019). For a pair of inputs, with duals
σ̂, σ̂' of :mod:`robntk.theory.hermite` and the constants M_l, q_l of
:func:`robntk.theory.arch.layer_constants`:

    forward   Σ¹ = ⟨x, x'⟩                        (CNN: T_{k₁}(⟨x_p, x'_{p'}⟩))
              Eˡ = σ̂_l(Σˡ),  Ėˡ = σ̂'_l(Σˡ)
              H¹ = E¹,  Hˡ = α_l² Hˡ⁻¹ + 2 α_l μ₀(σ_l) M_{l−1} + Eˡ
              Σˡ⁺¹ = Hˡ / q_l                     (CNN: T_{k_{l+1}}(Hˡ) / q_l)
    backward  Pᴸ = 1                              (CNN: 1/P² at every position pair)
              Dˡ = Pˡ · Ėˡ
              Pˡ⁻¹ = α_l² Pˡ + Dˡ / q_{l−1}       (CNN: α_l² Pˡ + T_{k_l}(Dˡ) / q_{l−1})
    NTK       Θ = Hᴸ + Σ_l Dˡ · Σˡ                (CNN: Σ_{p,p'} of each term)

where T_k(A)_{pp'} = (1/k) Σ_{|δ|≤(k−1)/2} A_{p+δ, p'+δ} (circular). Every Σˡ has unit
diagonal, so each dual is evaluated at a genuine correlation. Hᴸ is the output layer's (v's)
contribution and Dˡ·Σˡ that of Wˡ.

For the FCN, Θ(x, x') = Φ(⟨x, x'⟩) is a dot-product kernel and Φ(t) = Σ_r c_r t^r has c_r ≥ 0
(every operation above maps power series with non-negative coefficients to such series):
:func:`fcn_taylor_coefficients` computes lower bounds of c_r (truncated series arithmetic, all
dropped terms non-negative). :func:`path_coefficients` gives the cruder closed form obtained by
keeping only the linear part of every layer above the first along each residual path.
"""

from __future__ import annotations

import numpy as np

from robntk.theory.arch import Arch, ResCNN, ResFCN, layer_constants
from robntk.theory.hermite import derivative_hermite, dual, dual_derivative, hermite_coefficients


def _unit_rows(X, what="inputs", axis=-1, tol=1e-6):
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=axis)
    if not np.all(np.abs(n - 1.0) < tol):
        bad = float(np.max(np.abs(n - 1.0)))
        raise ValueError(
            f"{what} must lie on the unit sphere (norm 1 along the last axis); max |‖x‖ − 1| = {bad:.3g}. "
            "Normalise them (robntk.theory.data.normalise)."
        )
    return X


def check_inputs(arch: Arch, X) -> np.ndarray:
    """Validate inputs for ``arch``: (N, d) unit rows (FCN) or (N, P, C) unit positions (CNN).

    Raises:
        ValueError: wrong shape or not normalised.
    """
    X = np.asarray(X, dtype=np.float64)
    if isinstance(arch, ResCNN):
        if X.ndim != 3 or X.shape[1:] != (arch.length, arch.in_channels):
            raise ValueError(f"CNN inputs must have shape (N, {arch.length}, {arch.in_channels}), got {X.shape}")
    elif X.ndim != 2 or X.shape[1] != arch.in_dim:
        raise ValueError(f"FCN inputs must have shape (N, {arch.in_dim}), got {X.shape}")
    return _unit_rows(X)


def conv_smooth(A: np.ndarray, k: int) -> np.ndarray:
    """T_k(A)_{..., p, p'} = (1/k) Σ_{|δ|≤(k−1)/2} A_{..., p+δ, p'+δ} (circular), A (..., P, P)."""
    r = (k - 1) // 2
    out = np.zeros_like(A)
    for d in range(-r, r + 1):
        out += np.roll(A, (-d, -d), axis=(-2, -1))
    return out / k


def _recursion(arch: Arch, sigma1: np.ndarray, return_nngp: bool = False, dual_method: str = "series"):
    """Run the forward/backward recursion on an array of first-layer correlations."""
    c = layer_constants(arch)
    L = arch.depth
    is_cnn = isinstance(arch, ResCNN)
    ks = arch.filter_sizes if is_cnn else (1,) * L
    smooth = (lambda A, k: conv_smooth(A, k)) if is_cnn else (lambda A, k: A)
    total = (lambda A: A.sum(axis=(-2, -1))) if is_cnn else (lambda A: A)
    S, Ed = [], []
    H = None
    sig = np.clip(sigma1, -1.0, 1.0)
    for l, act in enumerate(arch.activations):
        if l > 0:
            sig = np.clip(smooth(H, ks[l]) / c.q[l - 1], -1.0, 1.0)
        S.append(sig)
        E = dual(act, sig, dual_method)
        Ed.append(dual_derivative(act, sig, dual_method))
        if l == 0:
            H = E
        else:
            a = c.alpha[l]
            H = a * a * H + 2.0 * a * c.mu0[l] * c.mean[l - 1] + E
    P = np.full_like(H, 1.0 / (arch.length**2) if is_cnn else 1.0)
    nngp = total(P * H)
    theta = nngp.copy()
    for l in range(L - 1, -1, -1):
        D = P * Ed[l]
        theta = theta + total(D * S[l])
        if l > 0:
            a = c.alpha[l]
            P = a * a * P + smooth(D, ks[l]) / c.q[l - 1]
    return (theta, nngp) if return_nngp else theta


def fcn_ntk_dual(arch: ResFCN, t, dual_method: str = "series") -> np.ndarray:
    """Φ(t): the FCN's infinite-width NTK as a function of t = ⟨x, x'⟩ ∈ [−1, 1] (elementwise).

    ``dual_method``: ``'series'`` or ``'quadrature'`` (:func:`robntk.theory.hermite.dual`).

    Returns:
        float64, shape of ``t``.
    """
    if not isinstance(arch, ResFCN):
        raise ValueError(f"fcn_ntk_dual needs a ResFCN, got {type(arch).__name__}")
    return _recursion(arch, np.asarray(t, dtype=np.float64), dual_method=dual_method)


def analytic_ntk(arch: Arch, X1, X2=None, *, return_nngp: bool = False, dual_method: str = "series"):
    """Infinite-width NTK Θ(X1, X2) of ``arch`` (module docstring), float64 (N1, N2).

    Args:
        arch: :class:`ResFCN` (X: (N, d) unit rows) or :class:`ResCNN` (X: (N, P, C), unit
            vectors at every position).
        X1, X2: inputs; ``X2=None`` → Θ(X1, X1) (then ⟨x, x⟩ is set to exactly 1: the
            arc-cosine duals have infinite slope at 1, so a rounding error of 1e-16 in ⟨x, x⟩
            would perturb the ReLU kernel's diagonal by ~1e-8).
        return_nngp: also return the output layer's term Hᴸ (the NNGP kernel of f).
        dual_method: how the duals of the smooth activations are evaluated: ``'series'``
            (Mehler, default, fast) or ``'quadrature'`` (2-D Gauss–Hermite, 96² nodes per
            entry); they agree to ≲ 1e-9 (:mod:`robntk.theory.hermite`). ReLU-type activations
            always use the arc-cosine closed forms.

    Cost: O(N1·N2·L) dual evaluations (FCN) or O(N1·N2·P²·L) (CNN).

    Raises:
        ValueError: wrong shapes, inputs not normalised.
    """
    X1 = check_inputs(arch, X1)
    same = X2 is None
    X2 = X1 if same else check_inputs(arch, X2)
    if isinstance(arch, ResCNN):
        G = np.einsum("ipc,jqc->ijpq", X1, X2)
        if same:  # ⟨x_p, x_p⟩ = 1 exactly (arc-cosine duals have infinite slope at 1)
            i, p = np.arange(len(X1)), np.arange(arch.length)
            G[i[:, None], i[:, None], p[None, :], p[None, :]] = 1.0
        sigma1 = conv_smooth(G, arch.filter_sizes[0])
    else:
        sigma1 = X1 @ X2.T
        if same:  # ⟨x, x⟩ = 1 exactly: rounding 1 − 1e-16 would move arccos by ~1e-8
            np.fill_diagonal(sigma1, 1.0)
    return _recursion(arch, sigma1, return_nngp, dual_method)


def analytic_family(arch: Arch, x, x_adv, x_adv2, dual_method: str = "series"):
    """Infinite-width kernel family at given points, as a :class:`robntk.ntk.kernels.KernelFamily`
    holding float64 NumPy arrays: Θ(X,X), Θ(X̃,X̃), Θ(X,X̃), Θ(X̃̃,X̃̃), Θ(X̃,X̃̃).

    ``.k_all(β)`` / ``.k_tilde_all(β)`` then give the mixed kernels of paper Eq. 4–5.
    """
    from robntk.ntk.kernels import KernelFamily

    kw = dict(dual_method=dual_method)
    K = analytic_ntk(arch, x, **kw)
    Kt = analytic_ntk(arch, x_adv, **kw)
    Kc = analytic_ntk(arch, x, x_adv, **kw)
    Ktt = analytic_ntk(arch, x_adv2, **kw)
    Ktc = analytic_ntk(arch, x_adv, x_adv2, **kw)
    return KernelFamily(K, Kt, Kc, Ktt, Ktc, np.asarray(x_adv), np.asarray(x_adv2))


# ---------------------------------------------------------------------------------------------
# Power series (FCN): Θ(x, x') = Σ_r c_r ⟨x, x'⟩^r
# ---------------------------------------------------------------------------------------------


def _mul(a, b, R):
    return np.convolve(a, b)[: R + 1]


def _compose(e, S, R):
    """Σ_k e_k S(t)^k truncated to degree R (Horner); exact lower bound when e, S ≥ 0."""
    out = np.zeros(R + 1)
    out[0] = e[-1]
    for ek in e[-2::-1]:
        out = _mul(out, S, R)
        out[0] += ek
    return out


def fcn_taylor_coefficients(arch: ResFCN, order: int = 64, terms: int | None = None) -> np.ndarray:
    """Lower bounds 0 ≤ ĉ_r ≤ c_r of the Taylor coefficients of Φ (Θ = Σ_r c_r ⟨x,x'⟩^r).

    The recursion of the module docstring run on truncated power series in t = ⟨x, x'⟩, with the
    duals replaced by Mehler's series σ̂_l(s) = Σ_{k≤terms} μ_k(σ_l)² s^k and
    σ̂'_l(s) = Σ_{k≤terms} (k+1) μ_{k+1}(σ_l)² s^k. All series involved have non-negative
    coefficients (μ₀(σ) ≥ 0 for every searchable σ, α_l ∈ {0, 1}), so truncating the duals and
    the products only *drops non-negative terms*: ĉ_r ≤ c_r in exact arithmetic (rounding aside,
    relative error ~1e-13 from the quadrature of μ_k).

    Args:
        arch: :class:`ResFCN`.
        order: R, highest power kept (≥ 0).
        terms: K, Hermite terms per dual (default R + 128).

    Returns:
        float64 (R+1,), ĉ_0..ĉ_R.

    Raises:
        ValueError: not a ResFCN, negative order, or a negative coefficient (impossible for the
            searchable activations; guards against future activations with μ₀ < 0).
    """
    if not isinstance(arch, ResFCN):
        raise ValueError(f"Taylor coefficients exist for dot-product kernels (ResFCN), got {type(arch).__name__}")
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    R = int(order)
    K = R + 128 if terms is None else int(terms)
    c = layer_constants(arch)
    sig = np.zeros(R + 1)
    if R >= 1:
        sig[1] = 1.0
    S, Ed = [], []
    H = None
    for l, act in enumerate(arch.activations):
        if l > 0:
            sig = H / c.q[l - 1]
        S.append(sig)
        e = hermite_coefficients(act, K) ** 2
        ed = derivative_hermite(act, K) ** 2
        E = _compose(e, sig, R)
        Ed.append(_compose(ed, sig, R))
        if l == 0:
            H = E
        else:
            a = c.alpha[l]
            H = a * a * H + E
            H[0] += 2.0 * a * c.mu0[l] * c.mean[l - 1]
    theta = H.copy()
    P = np.zeros(R + 1)
    P[0] = 1.0
    for l in range(arch.depth - 1, -1, -1):
        D = _mul(P, Ed[l], R)
        theta += _mul(D, S[l], R)
        if l > 0:
            a = c.alpha[l]
            P = a * a * P + D / c.q[l - 1]
    if np.any(theta < -1e-12 * max(theta.max(), 1e-300)):
        raise ValueError(f"negative Taylor coefficient for {arch.name}: min {theta.min():.3g}")
    return np.maximum(theta, 0.0)


def path_coefficients(arch: Arch, order: int = 64) -> np.ndarray:
    """Closed-form residual-path coefficients C_r with Θ ⪰ Σ_r C_r A_r (FCN and CNN).

    Keeping, above layer 1, only the linear Hermite term of each activation and the skips:
    with β_l = μ₁(σ_l)²/q_{l−1}, a_l = α_l² + β_l (l ≥ 2), γ_l = Π_{k=2}^{l} a_k, π_l = Π_{k=l+1}^{L} a_k,

        C_r = μ_r(σ₁)² · [ γ_L  +  r·π₁  +  Σ_{l=2}^{L} π_l β_l γ_{l−1} ]

    (output layer, first weight layer, weight layers 2..L). Expanding the products, every term is
    a residual path choosing at each layer either the skip (α_l²) or the activation's linear
    part (β_l). A_r = (XXᵀ)^{∘r} for the FCN; for the CNN A_r is the pooled patch kernel of
    :func:`robntk.theory.bounds.power_grams`. C_r ≤ c_r of :func:`fcn_taylor_coefficients`
    (tested).

    Returns:
        float64 (order+1,).
    """
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be an integer >= 0, got {order!r}")
    c = layer_constants(arch)
    L = arch.depth
    beta = np.zeros(L)
    a = np.ones(L)
    for l in range(1, L):
        mu1 = hermite_coefficients(arch.activations[l], 1)[1]
        beta[l] = mu1**2 / c.q[l - 1]
        a[l] = c.alpha[l] ** 2 + beta[l]
    gamma = lambda l: float(np.prod(a[1 : l + 1]))  # layers 2..l+1 in 1-based terms (l = 0-based)
    pi = lambda l: float(np.prod(a[l + 1 :]))
    weight = gamma(L - 1) + sum(pi(l) * beta[l] * gamma(l - 1) for l in range(1, L))
    mu = hermite_coefficients(arch.activations[0], order)
    r = np.arange(order + 1)
    return mu**2 * (weight + r * pi(0))
