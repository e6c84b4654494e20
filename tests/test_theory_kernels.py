"""Networks, empirical vs infinite-width kernels, kernel-family identities (robntk.theory)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.ntk import empirical as ntk
from robntk.ntk import kernels
from robntk.theory import (
    ResCNN,
    ResFCN,
    analytic_family,
    analytic_ntk,
    arch_arrays,
    fcn_ntk_dual,
    fcn_taylor_coefficients,
    init_params,
    layer_constants,
    make_network,
    path_coefficients,
    perturb_sphere,
    skip_pattern,
    sphere_points,
)
from robntk.theory.networks import cnn_forward, fcn_forward, fcn_ntk_structured


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


ARCHS = [
    ResFCN(("relu",), in_dim=8),
    ResFCN(("relu", "relu", "relu"), (0, 1), in_dim=8),
    ResFCN(("tanh", "gelu", "sigmoid"), (1, 1), in_dim=8),
    ResFCN(("swish", "leaky_relu"), (1,), in_dim=8),
]


def test_spec_validation_messages():
    with pytest.raises(ValueError, match="unknown activation 'elu'"):
        ResFCN(("relu", "elu"), (1,))
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        ResFCN(())
    with pytest.raises(ValueError, match="skips must have depth-1 = 1 entries"):
        ResFCN(("relu", "relu"), (1, 1))
    with pytest.raises(ValueError, match="skip connections must be 0 or 1, got 0.5"):
        ResFCN(("relu", "relu"), (0.5,))
    with pytest.raises(ValueError, match="filter sizes must be odd"):
        ResCNN(("relu",), filter_sizes=2)
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        make_network(ARCHS[0], 0)
    with pytest.raises(ValueError, match="depth must be an integer >= 1, got 0"):
        skip_pattern("all", 0)
    with pytest.raises(ValueError, match="unknown skip pattern 'dense'"):
        skip_pattern("dense", 3)
    X, _ = sphere_points(3, 8)
    with pytest.raises(ValueError, match="unit sphere"):
        analytic_ntk(ARCHS[0], 2 * X)


def test_layer_constants_relu_and_skips():
    c = layer_constants(ResFCN(("relu",) * 3, (0, 0)))
    np.testing.assert_allclose(c.q, 0.5)  # E relu(z)^2 = 1/2
    c = layer_constants(ResFCN(("relu",) * 3, (1, 1)))
    m0 = 1 / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(c.mean, [m0, 2 * m0, 3 * m0])
    # q_l = α² q_{l−1} + 2α μ₀ M_{l−1} + 1/2
    np.testing.assert_allclose(c.q, [0.5, 1.0 + 2 * m0**2, 1.5 + 6 * m0**2])


def test_preactivations_have_unit_variance_at_large_width(x64):
    """The q-normalisation makes every layer's pre-activation ≈ N(0, 1) (‖hˡ‖²/m → q_l)."""
    arch = ResFCN(("sigmoid", "gelu", "tanh"), (1, 1), in_dim=8)
    X, _ = sphere_points(4, 8)
    p = init_params(arch, 3, 4096, jnp.float64)
    _, (inputs, hL) = fcn_forward(p, jnp.asarray(X), arch_arrays(arch, 4096, jnp.float64), return_hidden=True)
    q = layer_constants(arch).q
    for l, h in enumerate(inputs[1:] + [hL]):
        np.testing.assert_allclose(np.mean(np.asarray(h) ** 2, axis=1), q[l], rtol=0.06)


def test_network_shapes_dtypes(x64):
    init, f = make_network(ARCHS[2], 32, jnp.float64)
    p = init(jax.random.PRNGKey(0))
    X, _ = sphere_points(5, 8)
    out = jax.jit(f)(p, jnp.asarray(X))
    assert out.shape == (5, 1) and out.dtype == jnp.float64
    cnn = ResCNN(("relu", "tanh"), (1,), filter_sizes=(3, 5), in_channels=3, length=6)
    init, g = make_network(cnn, 16, jnp.float64)
    Xc, _ = sphere_points(4, (6, 3))
    assert jax.jit(g)(init(1), jnp.asarray(Xc)).shape == (4, 1)


def test_structured_ntk_equals_core_module(x64):
    """Two independent empirical NTKs: Jacobian contraction (robntk.ntk.empirical) vs layer-wise formula."""
    arch = ResFCN(("relu", "gelu", "sigmoid"), (0, 1), in_dim=8)
    X, _ = sphere_points(6, 8, seed=1)
    Y, _ = sphere_points(4, 8, seed=2)
    p = init_params(arch, 0, 24, jnp.float64)
    arr = arch_arrays(arch, 24, jnp.float64)

    @jax.jit
    def both(p, a, b, arr):
        f = lambda q, z: fcn_forward(q, z, arr)
        return ntk.empirical_ntk(f, p, a, b, independent_rows=True), fcn_ntk_structured(p, a, b, arr)

    core, st = both(p, jnp.asarray(X), jnp.asarray(Y), arr)
    np.testing.assert_allclose(np.asarray(st), np.asarray(core), rtol=1e-12, atol=1e-12)
    st_xx = fcn_ntk_structured(p, jnp.asarray(X), None, arr)
    assert np.allclose(st_xx, st_xx.T, atol=1e-13) and np.linalg.eigvalsh(np.asarray(st_xx))[0] > 0


def test_cnn_with_one_position_is_the_fcn(x64):
    fcn = ResFCN(("relu", "tanh"), (1,), in_dim=4)
    cnn = ResCNN(("relu", "tanh"), (1,), filter_sizes=1, in_channels=4, length=1)
    X, _ = sphere_points(5, 4)
    np.testing.assert_allclose(analytic_ntk(cnn, X[:, None, :]), analytic_ntk(fcn, X), atol=1e-14)
    p = init_params(fcn, 0, 16, jnp.float64)
    a = fcn_forward(p, jnp.asarray(X), arch_arrays(fcn, 16, jnp.float64))
    b = cnn_forward(p, jnp.asarray(X[:, None, :]), arch_arrays(cnn, 16, jnp.float64))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-13)


def test_known_analytic_values():
    """Two-layer ReLU: Θ(t) = κ₁(t) + t κ₀(t) (arc-cosine); Θ(1) = 1; depth-3 plain ReLU: Θ(1) = 2."""
    t = np.linspace(-1, 1, 11)
    k1 = (np.sqrt(1 - t * t) + (np.pi - np.arccos(t)) * t) / (2 * np.pi)
    k0 = (np.pi - np.arccos(t)) / (2 * np.pi)
    np.testing.assert_allclose(fcn_ntk_dual(ResFCN(("relu",)), t), k1 + t * k0, atol=1e-15)
    assert fcn_ntk_dual(ResFCN(("relu",) * 3, (0, 0)), 1.0) == pytest.approx(2.0)
    # L = 1: Taylor coefficients are exactly (r + 1) μ_r²
    from robntk.theory import hermite_coefficients

    for act in ("relu", "tanh"):
        c = fcn_taylor_coefficients(ResFCN((act,)), 20)
        np.testing.assert_allclose(c, (np.arange(21) + 1) * hermite_coefficients(act, 20) ** 2, atol=1e-15)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.name)
def test_taylor_series_reproduces_the_recursion(arch):
    t = np.linspace(-0.5, 0.5, 9)
    c = fcn_taylor_coefficients(arch, 80)
    np.testing.assert_allclose(np.polynomial.polynomial.polyval(t, c), fcn_ntk_dual(arch, t), atol=1e-10)
    assert np.all(c >= 0)
    assert np.all(path_coefficients(arch, 80) <= c * (1 + 1e-12) + 1e-15)


def test_dual_methods_agree():
    arch = ResCNN(("tanh", "gelu"), (1,), filter_sizes=3, in_channels=3, length=4)
    X, _ = sphere_points(3, (4, 3))
    np.testing.assert_allclose(analytic_ntk(arch, X), analytic_ntk(arch, X, dual_method="quadrature"), atol=1e-7)
    X, _ = sphere_points(6, 8)
    a = ARCHS[2]
    np.testing.assert_allclose(analytic_ntk(a, X), analytic_ntk(a, X, dual_method="quadrature"), atol=1e-7)


def _rel_errors(arch, X, widths, seeds, kernel_fn):
    Th = analytic_ntk(arch, X)
    errs = []
    for m in widths:
        e = []
        for s in seeds:
            p = init_params(arch, 1000 * s + m, m, jnp.float64)
            K = np.asarray(kernel_fn(p, jnp.asarray(X), arch_arrays(arch, m, jnp.float64)))
            e.append(np.linalg.norm(K - Th) / np.linalg.norm(Th))
        errs.append(np.mean(e))
    return np.array(errs)


@pytest.mark.parametrize("arch", ARCHS[1:3], ids=lambda a: a.name)
def test_empirical_converges_like_one_over_sqrt_width(x64, arch):
    """Relative Frobenius error ‖K_m − Θ‖/‖Θ‖ (mean over 4 seeds) ∝ m^(−1/2): log-log slope."""
    X, _ = sphere_points(8, 8, seed=0)
    widths = [32, 128, 512, 2048]
    fn = jax.jit(lambda p, x, a: fcn_ntk_structured(p, x, None, a))
    errs = _rel_errors(arch, X, widths, range(4), fn)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.65 < slope < -0.35, (errs, slope)
    assert errs[-1] < 0.1


def test_cnn_empirical_converges(x64):
    arch = ResCNN(("relu", "tanh"), (1,), filter_sizes=3, in_channels=3, length=6)
    X, _ = sphere_points(6, (6, 3))
    fn = jax.jit(lambda p, x, a: ntk.empirical_ntk(lambda q, z: cnn_forward(q, z, a), p, x, independent_rows=True))
    widths = [16, 64, 256]
    errs = _rel_errors(arch, X, widths, range(6), fn)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.7 < slope < -0.3, (errs, slope)


def test_kernel_family_identities(x64):
    """K_all(0) = K, K_all(1) = K̃_ε, K̃_all(1) = K̃_2ε, and K_all(β) = J_β J_βᵀ (empirical, core
    module) — and the same endpoint identities for the infinite-width family."""
    arch = ARCHS[2]
    X, y = sphere_points(6, 8, seed=3)
    init, f = make_network(arch, 32, jnp.float64)
    p = init(0)
    xa, xaa = jax.jit(lambda p, x, y: perturb_sphere(f, p, x, y, 0.4, key=jax.random.PRNGKey(1), steps=3))(
        p, jnp.asarray(X), jnp.asarray(y)
    )
    jac = jax.jit(lambda p, z: ntk.jacobian(f, p, z, output_mode="sum", independent_rows=True))
    J, Jt, Jtt = (jac(p, z) for z in (jnp.asarray(X), xa, xaa))
    g = ntk.gram
    fam = kernels.KernelFamily(g(J, J), g(Jt, Jt), g(J, Jt), g(Jtt, Jtt), g(Jt, Jtt), xa, xaa)
    np.testing.assert_allclose(fam.k_all(0.0), fam.clean, atol=1e-13)
    np.testing.assert_allclose(fam.k_all(1.0), fam.robust, atol=1e-13)
    np.testing.assert_allclose(fam.k_tilde_all(0.0), fam.robust, atol=1e-13)
    np.testing.assert_allclose(fam.k_tilde_all(1.0), fam.twice, atol=1e-13)
    for beta in (0.3, 0.7):
        Jb = kernels.mixed_jacobian(J, Jt, beta)
        np.testing.assert_allclose(fam.k_all(beta), g(Jb, Jb), atol=1e-12)
        Jb2 = kernels.mixed_jacobian(Jt, Jtt, beta)
        np.testing.assert_allclose(fam.k_tilde_all(beta), g(Jb2, Jb2), atol=1e-12)
    ana = analytic_family(arch, X, np.asarray(xa), np.asarray(xaa))
    np.testing.assert_allclose(ana.k_all(0.0), analytic_ntk(arch, X), atol=1e-14)
    np.testing.assert_allclose(ana.k_all(1.0), analytic_ntk(arch, np.asarray(xa)), atol=1e-14)
    np.testing.assert_allclose(ana.k_tilde_all(1.0), analytic_ntk(arch, np.asarray(xaa)), atol=1e-14)
    assert np.linalg.eigvalsh(ana.k_all(0.5))[0] > 0  # PSD Gram of the mixed features
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\], got 1.5"):
        ana.k_all(1.5)


def test_sphere_adversary_constraints_and_effect(x64):
    arch = ARCHS[1]
    X, y = sphere_points(8, 8, seed=4)
    init, f = make_network(arch, 128, jnp.float64)
    p = init(2)
    rho = 0.3
    attack = jax.jit(lambda p, x, y, r: perturb_sphere(f, p, x, y, r, key=jax.random.PRNGKey(0), steps=10))
    xa, xaa = attack(p, jnp.asarray(X), jnp.asarray(y), rho)
    xa, xaa = np.asarray(xa), np.asarray(xaa)
    np.testing.assert_allclose(np.linalg.norm(xa, axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(xaa, axis=1), 1, atol=1e-12)
    assert np.all(np.linalg.norm(xa - X, axis=1) <= rho + 1e-10)
    assert np.all(np.linalg.norm(xaa - xa, axis=1) <= rho + 1e-10)
    assert np.all(np.linalg.norm(xaa - X, axis=1) <= 2 * rho + 1e-10)
    out = np.asarray(jax.jit(f)(p, jnp.asarray(np.concatenate([X, xa])))[:, 0])
    loss = np.log1p(np.exp(-np.concatenate([y, y]) * out))
    assert loss[8:].sum() > loss[:8].sum()  # the attack increases the loss
    x0, _ = attack(p, jnp.asarray(X), jnp.asarray(y), 0.0)
    np.testing.assert_allclose(np.asarray(x0), X, atol=1e-12)
    with pytest.raises(ValueError, match="rho must be >= 0"):
        perturb_sphere(f, p, jnp.asarray(X), jnp.asarray(y), -0.1, key=jax.random.PRNGKey(0))


def test_neural_tangents_stax_cross_check():
    """Optional: plain ReLU FCN vs neural-tangents' stax (skipped where it does not import)."""
    try:
        from neural_tangents import stax
    except Exception as exc:  # ImportError, or AttributeError on current JAX (jax.util removed)
        pytest.skip(f"neural_tangents unavailable: {type(exc).__name__}")
    d = 8
    X, _ = sphere_points(5, d)
    _, _, kfn = stax.serial(
        stax.Dense(512, W_std=np.sqrt(d)),
        stax.Relu(),
        stax.Dense(512, W_std=np.sqrt(2.0)),
        stax.Relu(),
        stax.Dense(1, W_std=1.0),
    )
    ref = np.asarray(kfn(X, None, "ntk"))
    np.testing.assert_allclose(analytic_ntk(ResFCN(("relu", "relu"), (0,), in_dim=d), X), ref, rtol=1e-5)
