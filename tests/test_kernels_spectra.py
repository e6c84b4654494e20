"""Robust kernel family (paper Eq. 4–5) and spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.nb201 import network as nw
from robntk.ntk import empirical as ntk
from robntk.ntk import kernels, spectra

pytestmark = pytest.mark.usefixtures("x64")  # float64 for this module (tests/conftest.py)


A = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def setup():
    net = nw.TinyNetwork(C=2, N=1, num_classes=3)
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 1, 2, 0, 1])
    v = net.init(jax.random.PRNGKey(0), jnp.float64, arch=A)
    f, p = net.make_apply(v, A, "train")
    return f, p, x, y


@pytest.mark.parametrize("mode", ["sum", "full"])
def test_blockwise_formula_equals_mixed_jacobian_identity(setup, mode):
    f, p, x, y = setup
    fam = jax.jit(
        lambda q: kernels.kernel_family(f, q, x, y, 8 / 255, key=jax.random.PRNGKey(3), steps=3, output_mode=mode)
    )(p)
    jac = jax.jit(lambda q, z: ntk.jacobian(f, q, z, output_mode=mode, labels=y))
    J, Jt, Jtt = (jac(p, z) for z in (x, fam.x_adv, fam.x_adv2))
    for beta in (0.0, 0.3, 0.5, 1.0):
        Jb = kernels.mixed_jacobian(J, Jt, beta)
        np.testing.assert_allclose(fam.k_all(beta), ntk.gram(Jb, Jb, mode), rtol=1e-10, atol=1e-12)
        Jb2 = kernels.mixed_jacobian(Jt, Jtt, beta)
        np.testing.assert_allclose(fam.k_tilde_all(beta), ntk.gram(Jb2, Jb2, mode), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fam.k_all(0.0), fam.clean)
    np.testing.assert_allclose(fam.k_all(1.0), fam.robust)
    np.testing.assert_allclose(fam.k_tilde_all(0.0), fam.robust)
    np.testing.assert_allclose(fam.k_tilde_all(1.0), fam.twice)
    # the perturbed batches differ from the clean one and stay in their balls
    assert float(jnp.max(jnp.abs(fam.x_adv - x))) <= 8 / 255 + 1e-12
    assert float(jnp.max(jnp.abs(fam.x_adv2 - x))) <= 16 / 255 + 1e-12
    assert float(jnp.max(jnp.abs(fam.robust - fam.clean))) > 0


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_every_provider_gives_the_same_family(setup, bn_mode):
    """One stacked Gram per provider (layerwise, jacobian, ntvp): the same kernels; the
    multi-ε call equals one call per ε with the same attack keys; names as the score rows."""
    f, p, x, y = setup
    f = f.with_bn_mode(bn_mode)
    impls = ("layerwise", "jacobian") + (("ntvp",) if bn_mode == "eval" else ())  # ntvp train: ntk tests
    eps = (3 / 255, 8 / 255)
    key = jax.random.PRNGKey(7)
    fams = {
        impl: jax.jit(
            lambda q, impl=impl: kernels.kernel_families(f, q, x, y, eps, key=key, steps=3, implementation=impl)
        )(p)
        for impl in impls
    }
    for impl in impls[1:]:
        for a, b in zip(fams[impl], fams["layerwise"]):
            for name in ("clean", "robust", "cross", "twice", "twice_cross"):
                np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
    # ε number k uses fold_in(key, k): the first ε alone (kernel_family) reproduces its family
    one = jax.jit(lambda q: kernels.kernel_family(f, q, x, y, 3 / 255, key=key, steps=3))(p)
    for name in ("clean", "robust", "cross", "twice", "twice_cross", "x_adv", "x_adv2"):
        np.testing.assert_allclose(getattr(one, name), getattr(fams["layerwise"][0], name), rtol=1e-10)
    assert float(jnp.max(jnp.abs(fams["layerwise"][1].robust - one.robust))) > 0
    named = kernels.named_kernels(fams["layerwise"], eps, (0.25, 0.5))
    assert list(named) == kernels.kernel_names(eps, (0.25, 0.5))
    np.testing.assert_allclose(named["robust_all_eps8_beta0.25"], fams["layerwise"][1].k_tilde_all(0.25))
    with pytest.raises(ValueError, match="layerwise"):
        kernels.stacked_gram(lambda q, z: f(q, z), p, x[None], y, implementation="layerwise")
    with pytest.raises(ValueError, match="unknown implementation"):
        kernels.stacked_gram(f, p, x[None], y, implementation="fast")


def test_beta_validation():
    K = jnp.eye(2)
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ValueError, match="beta must be"):
            kernels.mixed_kernel(K, K, K, bad)


def test_spectrum_known_values():
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
    lam = np.array([0.5, 1.0, 2.0, 8.0])
    s = spectra.spectrum((Q * lam) @ Q.T, np.float64)
    assert s.lambda_min == pytest.approx(0.5) and s.lambda_max == pytest.approx(8.0)
    assert s.cond == pytest.approx(16.0) and s.trace == pytest.approx(11.5)
    assert s.logdet == pytest.approx(np.log(8.0)) and not s.degenerate
    # full (B, B, O, O) kernels are analysed as (B·O, B·O)
    Kf = np.einsum("ij,ab->ijab", np.diag([1.0, 3.0]), np.diag([2.0, 5.0]))
    assert spectra.spectrum(Kf).lambda_min == pytest.approx(2.0)
    assert spectra.spectrum(Kf).lambda_max == pytest.approx(15.0)


def test_degenerate_kernels_report_zero_not_nan():
    for K in (np.zeros((4, 4)), np.full((4, 4), 3.0), np.full((4, 4), 3.0) + 1e-9 * np.eye(4)):
        s = spectra.spectrum(K)
        assert s.lambda_min == 0.0 and s.degenerate and s.cond == np.inf and s.logdet == -np.inf
        assert not np.isnan([s.lambda_max, s.trace]).any()
    with pytest.raises(ValueError, match="non-finite"):
        spectra.spectrum(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        spectra.spectrum(np.ones((2, 3)))


def test_disconnected_arch_is_flagged():
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    net = nw.TinyNetwork(C=2, N=1)
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 3), jnp.float64)
    v = net.init(jax.random.PRNGKey(0), jnp.float64, arch=arch)
    for bn in ("train", "eval"):
        f, p = net.make_apply(v, arch, bn)
        s = spectra.spectrum(ntk.empirical_ntk(f, p, x, independent_rows=bn == "eval"))
        assert s.lambda_min == 0.0 and s.degenerate and s.lambda_max > 0
