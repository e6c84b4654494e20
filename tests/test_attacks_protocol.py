"""The one attack protocol (robntk.attacks.IterativeAttack, run_attack): FGSM, PGD, APGD-CE,
APGD-T and Square through one init / step / finish interface and one driver.

Cross-checks: the protocol form against the convenience functions, the host loop over jitted
pieces (the evaluator's) against the in-trace loop, early stopping against the full budget,
APGD-T one target at a time on the survivors against the masked all-targets form, and the
outputs against numbers recorded from the pre-protocol implementation (commit d8e9014) with the
seeds of tests/test_evaluation.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import attacks

EPS = 8 / 255


def linear(params, x):
    W, b = params
    return x.reshape(x.shape[0], -1) @ W + b


@pytest.fixture(scope="module")
def binary():
    """The 2-class linear model of tests/test_evaluation.py (same seed)."""
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(48, 2)), jnp.float32)
    b = jnp.asarray([0.1, -0.1], jnp.float32)
    x = jnp.asarray(rng.uniform(0.2, 0.8, (64, 4, 4, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, 64), jnp.int32)
    return (W, b), x, y


@pytest.fixture(scope="module")
def multiclass():
    """The 10-class linear model of tests/test_evaluation.py (same seed); ``gap`` > 0 iff the
    example is provably robust at ε: min_t [z_y − z_t − ε‖w_y − w_t‖₁]."""
    rng = np.random.default_rng(1)
    K = 10
    W = jnp.asarray(rng.normal(size=(48, K)) * 0.3, jnp.float32)
    b = jnp.zeros(K, jnp.float32)
    x = jnp.asarray(rng.uniform(0.2, 0.8, (64, 4, 4, 3)), jnp.float32)
    z = linear((W, b), x)
    y = jnp.argmax(z, -1).astype(jnp.int32)
    zy = jnp.take_along_axis(z, y[:, None], 1)
    l1 = jnp.abs(W.T[y][:, None, :] - W.T[None]).sum(-1)
    gap = jnp.where(jax.nn.one_hot(y, K, dtype=bool), jnp.inf, zy - z - EPS * l1).min(-1)
    return (W, b), x, y, gap


def jitted(atk: attacks.IterativeAttack) -> attacks.IterativeAttack:
    """The evaluator's form: every piece compiled on its own, driven from the host."""
    done = None if atk.done is None else jax.jit(atk.done)
    return atk._replace(init=jax.jit(atk.init), step=jax.jit(atk.step), finish=jax.jit(atk.finish), done=done)


def bits(v) -> str:
    return np.packbits(np.asarray(v)).tobytes().hex()


# ---------------------------------------------------------------------------- reference outputs

#: Σx_adv and Σx_adv² (float64 sums of the float32 images) and the verdicts, recorded from the
#: pre-protocol code (commit d8e9014) on XLA:CPU. rtol 1e-7: float32 rounding differences of
#: another XLA build move the sums by ~1e-9 relative, while a single pixel moved by 1/255
#: (1/8 of a step) moves Σx² by ≥ 2e-6 relative.
REFERENCE = {
    "fgsm": (1529.4595057219267, 856.6078715069092, None),
    "pgd": (1529.4595057219267, 856.6078715069092, None),
    "apgd-ce": (1527.7026412934065, 851.5160717616867, "322a9f5919385065"),
    "apgd-t": (1532.022801488638, 859.0672333950357, "e7d44ab6e1637687"),
    "square": (1530.4553580284119, 856.7848181557686, "eff54ebef763778f"),
    "apgd-dlr": (1533.9475197046995, 861.0809594254961, "e7d44ab6e1637687"),
}


def test_outputs_match_the_pre_protocol_reference(binary, multiclass):
    pb, xb, yb = binary
    pm, xm, ym, _ = multiclass
    out = {
        "fgsm": (jax.jit(lambda p: attacks.fgsm(linear, p, xb, yb, EPS))(pb), None),
        "pgd": (jax.jit(lambda p: attacks.pgd(linear, p, xb, yb, EPS, steps=10, key=jax.random.key(1)))(pb), None),
        "apgd-ce": jax.jit(lambda p: attacks.apgd(linear, p, xb, yb, EPS, key=jax.random.key(3), steps=10))(pb),
        "apgd-t": jax.jit(
            lambda p: attacks.apgd_targeted(linear, p, xm, ym, EPS, key=jax.random.key(0), steps=20, n_target_classes=9)
        )(pm),
        "square": jax.jit(lambda p: attacks.square(linear, p, xm, ym, EPS, key=jax.random.key(0), n_queries=300))(pm),
        "apgd-dlr": jax.jit(lambda p: attacks.apgd(linear, p, xm, ym, EPS, key=jax.random.key(5), steps=4, loss="dlr"))(
            pm
        ),
    }
    for name, (xa, rob) in out.items():
        s, s2, ref_bits = REFERENCE[name]
        xa = np.asarray(xa, np.float64)
        np.testing.assert_allclose([xa.sum(), (xa * xa).sum()], [s, s2], rtol=1e-7, err_msg=name)
        if ref_bits is not None:
            assert bits(rob) == ref_bits, name


# ---------------------------------------------------------------------------- protocol vs functions


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_attack_is_fgsm_bit_for_bit(binary, norm):
    params, x, y = binary
    eps = EPS if norm == "linf" else 0.5
    ref = jax.jit(lambda p: attacks.fgsm(linear, p, x, y, eps, norm=norm))(params)
    atk = attacks.fgsm_attack(linear, norm=norm)
    in_trace = jax.jit(lambda p: attacks.run_attack(atk, p, x, y, eps, None))(params)
    on_host = attacks.run_attack(jitted(atk), params, x, y, jnp.float32(eps), None, loop="host")
    assert atk.steps == 1
    assert np.array_equal(np.asarray(in_trace), np.asarray(ref))
    if norm == "linf":  # the evaluator's case: sign steps, bit for bit
        assert np.array_equal(np.asarray(on_host), np.asarray(ref))
    else:  # separately compiled pieces may round g/‖g‖₂ differently: 1 ulp of x (6e-8)
        np.testing.assert_allclose(np.asarray(on_host), np.asarray(ref), rtol=0, atol=6e-8)


def test_pgd_on_host_equals_pgd_in_trace(binary):
    """The evaluator's PGD (host loop, per-example keys) is :func:`pgd` with those keys."""
    params, x, y = binary
    keys = attacks.example_keys(jax.random.key(4), x.shape[0])
    ref = jax.jit(lambda p: attacks.pgd(linear, p, x, y, 3 / 255, steps=5, key=keys))(params)
    atk = attacks.pgd_attack(linear, steps=5)
    out = attacks.run_attack(jitted(atk), params, x, y, jnp.float32(3 / 255), keys, loop="host")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))


def test_apgd_protocol_on_host_equals_apgd(multiclass):
    """Host loop over jitted pieces vs :func:`apgd`'s in-trace loop: the same verdicts; the
    images to 1e-6 (as fori vs unroll in tests/test_evaluation.py: each piece is compiled on its
    own, and XLA may round a fused expression differently — measured: 1 of 3072 pixels, 1 ulp)."""
    params, x, y, _ = multiclass
    for loss in ("ce", "dlr"):
        xa, rob = jax.jit(lambda p: attacks.apgd(linear, p, x, y, EPS, key=jax.random.key(5), steps=6, loss=loss))(
            params
        )
        atk = jitted(attacks.apgd_attack(linear, steps=6, loss=loss))
        c = attacks.run_attack_carry(atk, params, x, y, jnp.float32(EPS), jax.random.key(5), loop="host")
        np.testing.assert_allclose(np.asarray(atk.finish(x, c)), np.asarray(xa), rtol=0, atol=1e-6, err_msg=loss)
        assert np.array_equal(np.asarray(attacks.apgd_robust(c)), np.asarray(rob)), loss
        assert isinstance(c, attacks.APGDState) and c.loss_steps.shape == (6, 64)


def test_apgd_t_one_target_at_a_time_on_the_survivors(multiclass):
    """The evaluator's APGD-T (one ``target_rank`` run per target, only on the points still
    robust, per-example keys) gives the verdicts of the masked all-targets :func:`apgd_targeted`,
    and both are the closed-form truth."""
    params, x, y, gap = multiclass
    steps, n_targets = 20, 9
    _, rob = jax.jit(
        lambda p: attacks.apgd_targeted(
            linear, p, x, y, EPS, key=jax.random.key(0), steps=steps, n_target_classes=n_targets
        )
    )(params)
    keys = attacks.example_keys(jax.random.key(0), x.shape[0])
    proto = attacks.apgd_attack(linear, steps=steps, loss="dlr-targeted", target_rank=2)
    init = jax.jit(
        lambda p, xx, yy, e, k, r: attacks.apgd_attack(linear, steps=steps, loss="dlr-targeted", target_rank=r).init(
            p, xx, yy, e, k
        )
    )
    step, finish = jax.jit(proto.step), jax.jit(proto.finish)
    alive = np.ones(x.shape[0], bool)
    for rank in range(2, n_targets + 2):
        idx = np.flatnonzero(alive)
        r = jnp.int32(rank)
        atk = attacks.IterativeAttack(lambda p, xx, yy, e, k: init(p, xx, yy, e, k, r), step, finish, steps)
        c = attacks.run_attack_carry(atk, params, x[idx], y[idx], jnp.float32(EPS), keys[idx], loop="host")
        alive[idx[~np.asarray(attacks.apgd_robust(c))]] = False
    assert np.array_equal(alive, np.asarray(rob))
    assert np.array_equal(alive, np.asarray(gap > 0))
    assert 0 < alive.sum() < len(alive)


def test_square_early_stop_changes_nothing(multiclass):
    """``done`` (every point fooled) ends Square early without changing x_adv: the in-trace
    while loop, the host loop checking after every query, and all ``n_queries`` steps agree."""
    params, x, y, _ = multiclass
    nq = 300
    _, rob = jax.jit(lambda p: attacks.square(linear, p, x, y, EPS, key=jax.random.key(0), n_queries=nq))(params)
    keys = attacks.example_keys(jax.random.key(0), x.shape[0])
    idx = np.flatnonzero(~np.asarray(rob))  # points Square fools within the budget
    xs, ys, ks = x[idx], y[idx], keys[idx]
    atk = attacks.square_attack(linear, n_queries=nq)
    while_loop, rob_w = jax.jit(lambda p: attacks.square(linear, p, xs, ys, EPS, key=ks, n_queries=nq))(params)
    full = jax.jit(lambda p: attacks.run_attack(atk._replace(done=None), p, xs, ys, EPS, ks))(params)
    calls = []
    host = jitted(atk)
    host = host._replace(step=lambda *a, _step=host.step: calls.append(1) or _step(*a))
    on_host = attacks.run_attack(host, params, xs, ys, jnp.float32(EPS), ks, loop="host", check_every=1)
    assert not np.asarray(rob_w).any()
    assert 0 < len(calls) < nq  # stopped early
    np.testing.assert_array_equal(np.asarray(full), np.asarray(while_loop))
    np.testing.assert_array_equal(np.asarray(on_host), np.asarray(while_loop))
    assert np.all(np.asarray(jnp.argmax(linear(params, while_loop), -1)) != np.asarray(ys))


def test_run_loop_modes_run_the_same_iterations():
    body = lambda i, c: c * 3 + i
    ref = 0
    for i in range(2, 7):
        ref = ref * 3 + i
    for loop in ("fori", "unroll", "host"):
        assert int(attacks.run_loop(body, jnp.int32(0), 2, 7, loop)) == ref, loop
    assert ref == 300  # carries 2, 9, 31, 98, 300
    # done stops the while loop before the next step, the host loop after every k-th step; the
    # unrolled loop ignores it
    done = lambda c: c >= 30
    assert int(attacks.run_loop(body, jnp.int32(0), 2, 7, "fori", done=done)) == 31
    assert int(jax.jit(lambda c: attacks.run_loop(body, c, 2, 7, "fori", done=done))(jnp.int32(0))) == 31
    assert int(attacks.run_loop(body, jnp.int32(0), 2, 7, "host", done=done, check_every=1)) == 31
    assert int(attacks.run_loop(body, jnp.int32(0), 2, 7, "host", done=done, check_every=2)) == 98
    assert int(attacks.run_loop(body, jnp.int32(0), 2, 7, "unroll", done=done)) == 300


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "build, word",
    [
        (lambda: attacks.apgd_attack(linear, steps=0), "steps must be an integer >= 1"),
        (lambda: attacks.apgd_attack(linear, loss="hinge"), "unknown APGD loss 'hinge'"),
        (lambda: attacks.apgd_attack(linear, rho=0.0), "rho must be in"),
        (lambda: attacks.apgd_attack(linear, loss="dlr-targeted"), "needs y_target or target_rank"),
        (
            lambda: attacks.apgd_attack(linear, loss="dlr-targeted", target_rank=2, y_target=jnp.zeros(3, int)),
            "exactly one",
        ),
        (lambda: attacks.apgd_attack(linear, loss="ce", target_rank=2), "for loss 'dlr-targeted' only"),
        (lambda: attacks.apgd_attack(linear, loss="dlr-targeted", target_rank=1), "target_rank must be >= 2"),
        (lambda: attacks.square_attack(linear, n_queries=0), "n_queries must be an integer >= 1"),
        (lambda: attacks.square_attack(linear, p_init=1.5), "p_init must be in"),
        (lambda: attacks.run_loop(lambda i, c: c, 0, 0, 1, loop="host", check_every=0), "check_every"),
        (lambda: attacks.run_loop(lambda i, c: c, 0, 0, 1, loop="scan"), "unknown loop mode 'scan'"),
    ],
)
def test_protocol_rejects_bad_arguments(build, word):
    with pytest.raises(ValueError, match=word):
        build()


def test_init_checks_eps_and_classes(binary):
    params, x, y = binary
    with pytest.raises(ValueError, match="eps must be in"):
        attacks.apgd_attack(linear, steps=2).init(params, x, y, 8.0, jax.random.key(0))
    with pytest.raises(ValueError, match="eps must be in"):
        attacks.square_attack(linear, n_queries=2).init(params, x, y, 8.0, jax.random.key(0))
    with pytest.raises(ValueError, match="at least 3 classes"):
        attacks.apgd_attack(linear, steps=2, loss="dlr").init(params, x, y, EPS, jax.random.key(0))
    with pytest.raises(ValueError, match="target_rank must be <= the number of classes 2"):
        attacks.apgd_attack(linear, steps=2, loss="dlr-targeted", target_rank=3).init(
            params, x, y, EPS, jax.random.key(0)
        )
