"""White-box attacks in JAX on any ``f(params, x) -> logits``: FGSM and PGD (L∞, L2), written once.

All attacks work in pixel space: ``x`` has values in [0, 1], ``eps`` and ``alpha`` (step size)
are in the same units (8/255 = 0.0314 is the benchmark's L∞ radius), and every iterate is
projected onto the ε-ball around ``center`` and clipped to [0, 1]. Everything is jit-compatible
and the returned examples carry ``stop_gradient``.

One attack protocol for every attack the evaluator runs (FGSM and PGD here, APGD-CE, APGD-T
in :mod:`robntk.attacks.autoattack`, Square in :mod:`robntk.attacks.score_based`): an
:class:`~robntk.attacks.protocol.IterativeAttack` is ``init`` / ``step`` / ``finish`` with one
signature each, a step count and an optional early-stop test, and one driver runs it —
:func:`~robntk.attacks.protocol.run_attack` over :func:`~robntk.attacks.protocol.run_loop`
(:mod:`robntk.attacks.protocol`), inside a trace (a rolled ``lax.fori_loop`` / ``while_loop``, or
unrolled) or on the host over the jitted pieces (``loop='host'``, :mod:`robntk.train.evaluation`). PGD serves the NTK scoring
(:mod:`robntk.ntk.kernels`), the adversarial training (PGD-AT, FGSM-AT as one step from a random
start, and TRADES' inner maximisation via ``start='normal'`` and a KL ``loss_fn``,
:mod:`robntk.train.loop`) and the evaluation (PGD-20 with per-example keys). MI-FGSM and DeepFool
(used by :mod:`robntk.robnets`) are plain functions.

Sources: FGSM (Goodfellow et al., ICLR 2015); PGD with random start (Madry et al., ICLR 2018)
as in torchattacks 3.4.0 ``PGD``/``PGDL2`` used by NAS-RobBench-201; TRADES' inner
maximisation (Zhang et al., ICML 2019, reference ``yaodongyu/TRADES`` ``trades.py``: start
x + 0.001·N(0, I), signed steps on KL(f(x) ‖ f(x'))); the twice-perturbed example
x̃̃ = A_ε(x̃) of the NAS-RobBench-201 paper §4 (attack restarted from x̃ and projected onto the
ε-ball around x̃, so ‖x̃̃ − x‖ ≤ 2ε).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from robntk.attacks.protocol import IterativeAttack, is_key_batch, run_attack

NORMS = ("linf", "l2")
#: PGD starting points: uniform in the ε-ball, x + σ·N(0, I) (TRADES), or x itself (projected).
STARTS = ("uniform", "normal", "none")
Fn = Callable[[Any, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; logits (B, O), integer labels (B,)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))


def kl_divergence(logits: jax.Array, p_ref: jax.Array) -> jax.Array:
    """Σ_batch KL(p_ref ‖ softmax(logits)), logits and probabilities (B, O) — TRADES' robust loss
    (``nn.KLDivLoss(size_average=False)(log_softmax(f(x')), softmax(f(x)))`` of ``trades.py``).
    As a PGD ``loss_fn`` the "labels" are ``p_ref``."""
    logq = jax.nn.log_softmax(logits)
    return jnp.sum(jax.scipy.special.xlogy(p_ref, p_ref) - p_ref * logq)


def check_attack_args(eps, steps: int | None = None, alpha=None, norm: str = "linf") -> None:
    """Validate attack hyper-parameters (Python numbers; traced values are not checked).

    Raises:
        ValueError: eps outside [0, 1], steps < 1, alpha ≤ 0, unknown norm.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; allowed: {', '.join(NORMS)}")
    if isinstance(eps, (int, float)) and not 0.0 <= float(eps) <= 1.0 and norm == "linf":
        raise ValueError(f"eps must be in [0, 1] pixel units (e.g. 8/255), got {eps!r}")
    if isinstance(eps, (int, float)) and float(eps) < 0:
        raise ValueError(f"eps must be non-negative, got {eps!r}")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if alpha is not None and isinstance(alpha, (int, float)) and not float(alpha) > 0:
        raise ValueError(f"alpha (step size) must be > 0, got {alpha!r}")


def _l2_norm(v: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))


def project(x: jax.Array, center: jax.Array, eps, norm: str = "linf") -> jax.Array:
    """Project ``x`` onto the ``norm``-ball of radius eps around ``center`` (per example), then
    clip to [0, 1]."""
    d = x - center
    if norm == "linf":
        d = jnp.clip(d, -eps, eps)
    else:
        n = _l2_norm(d)
        d = d * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
    return jnp.clip(center + d, 0.0, 1.0)


def _step(g: jax.Array, alpha, norm: str) -> jax.Array:
    if norm == "linf":
        return alpha * jnp.sign(g)
    return alpha * g / jnp.maximum(_l2_norm(g), 1e-12)


def random_start(key: jax.Array, center: jax.Array, eps, norm: str = "linf") -> jax.Array:
    """Uniform random point of the ε-ball around ``center``, clipped to [0, 1].

    L∞ with one key: per-pixel U(−1, 1)·ε drawn for the whole batch at once; L∞ with B keys
    (one per example, typed ``(B,)`` or raw ``(B, 2)``): example i draws U(−ε, ε) from key i
    (torchattacks' ``uniform_(-eps, eps)``), so its start does not depend on the rest of the batch
    (the evaluator's form). L2 (one key): radius ε·U(0,1) along a Gaussian direction, as
    torchattacks' PGDL2. The L∞ starts are drawn in float32 and cast to the input's dtype (the
    same start in float32 and float64).

    Raises:
        ValueError: a key batch of the wrong length, or B keys with the L2 norm.
    """
    if is_key_batch(key, center.shape[0]):
        if norm != "linf":
            raise ValueError("per-example keys are supported for the linf random start only")
        d = jax.vmap(lambda k: jax.random.uniform(k, center.shape[1:], jnp.float32, -eps, eps))(key)
        d = d.astype(center.dtype)
        return jnp.clip(center + d, 0.0, 1.0)
    if norm == "linf":
        d = jax.random.uniform(key, center.shape, jnp.float32, -1.0, 1.0).astype(center.dtype) * eps
    else:
        k1, k2 = jax.random.split(key)
        d = jax.random.normal(k1, center.shape, center.dtype)
        d = d / jnp.maximum(_l2_norm(d), 1e-12)
        r = jax.random.uniform(k2, (center.shape[0],) + (1,) * (center.ndim - 1), center.dtype)
        d = d * r * eps
    return jnp.clip(center + d, 0.0, 1.0)


def input_grad(f: Fn, params, x, y, loss_fn=cross_entropy) -> jax.Array:
    """∇_x loss(f(params, x), y), same shape as x."""
    return jax.grad(lambda z: loss_fn(f(params, z), y))(x)


def fgsm(f: Fn, params, x, y, eps, *, norm: str = "linf", loss_fn=cross_entropy) -> jax.Array:
    """Fast gradient (sign) method: x + eps·sign(∇ₓ loss) (L∞) or x + eps·∇/‖∇‖₂ (L2), clipped
    to [0, 1].

    Args:
        f: ``f(params, x) -> (B, O)`` logits. x: (B, ...) in [0, 1]. y: int labels (B,).
        eps: radius in pixel units.

    Returns:
        Adversarial examples, shape/dtype of x.

    Raises:
        ValueError: bad eps or norm.
    """
    check_attack_args(eps, norm=norm)
    g = input_grad(f, params, x, y, loss_fn)
    return jax.lax.stop_gradient(project(x + _step(g, eps, norm), x, eps, norm))


# --------------------------------------------------------------------------------------------
# PGD


def pgd_start(key, x, eps, *, start: str = "uniform", norm: str = "linf", center=None, sigma: float = 1e-3):
    """PGD's first iterate: ``'uniform'`` — :func:`random_start` around ``center`` (``key``: one
    key or B per-example keys); ``'normal'`` — ``center + sigma·N(0, I)``, not clipped (TRADES:
    x + 0.001·N(0, I)); ``'none'`` — ``x`` projected onto the ball around ``center`` (no key).

    Raises:
        ValueError: unknown start, or a random start without a key.
    """
    if start not in STARTS:
        raise ValueError(f"unknown PGD start {start!r}; allowed: {', '.join(STARTS)}")
    center = x if center is None else center
    if start == "none":
        return project(x, center, eps, norm)
    if key is None:
        raise ValueError(f"pgd(start={start!r}) needs a PRNG key")
    if start == "uniform":
        return random_start(key, center, eps, norm)
    return center + sigma * jax.random.normal(key, center.shape, center.dtype)


def pgd_step(f: Fn, params, xa, y, center, eps, alpha, *, norm: str = "linf", loss_fn=cross_entropy) -> jax.Array:
    """One PGD iteration: ``project(xa + alpha·sign(∇ loss), center, eps)`` (L∞; L2: normalised
    gradient). ``y`` is whatever ``loss_fn(logits, y)`` takes (labels, or TRADES' reference
    probabilities)."""
    g = input_grad(f, params, xa, y, loss_fn)
    return project(xa + _step(g, alpha, norm), center, eps, norm)


def pgd_attack(
    f: Fn,
    *,
    steps: int,
    alpha=None,
    alpha_factor: float = 2.5,
    norm: str = "linf",
    start: str = "uniform",
    sigma: float = 1e-3,
    loss_fn=cross_entropy,
    center_fn: Callable | None = None,
) -> IterativeAttack:
    """PGD as an :class:`IterativeAttack` (carry = the iterate).

    Args:
        f: ``f(params, x) -> logits``. steps: iterations (≥ 1).
        alpha: step size (pixel units), or None for ``alpha_factor·eps/steps`` computed from the
            (possibly traced) eps at each step.
        norm, start, sigma, loss_fn: as :func:`pgd`.
        center_fn: ``center_fn(x) -> centre of the ball`` (default: ``x``).

    Raises:
        ValueError: bad steps/alpha/norm/start.
    """
    check_attack_args(0.0, steps, alpha, norm)
    if start not in STARTS:
        raise ValueError(f"unknown PGD start {start!r}; allowed: {', '.join(STARTS)}")
    cen = (lambda x: x) if center_fn is None else center_fn

    def init(params, x, y, eps, key):
        return pgd_start(key, x, eps, start=start, norm=norm, center=cen(x), sigma=sigma)

    def step(params, x, y, eps, xa, i):
        a = alpha_factor * eps / steps if alpha is None else alpha
        return pgd_step(f, params, xa, y, cen(x), eps, a, norm=norm, loss_fn=loss_fn)

    return IterativeAttack(init, step, lambda x, xa: xa, steps)


def fgsm_attack(f: Fn, *, norm: str = "linf", loss_fn=cross_entropy) -> IterativeAttack:
    """FGSM as an :class:`IterativeAttack`: one PGD step of size ε from x itself
    (``pgd_attack(f, steps=1, alpha_factor=1, start='none')``). Run by :func:`run_attack` it
    computes :func:`fgsm`'s examples with the same arithmetic: the start ``project(x, x, ε)`` is x
    for x in [0, 1] and the step is ``project(x + ε·sign(∇), x, ε)`` (L2: the normalised
    gradient) — bit for bit in one trace and, for L∞, with init and step compiled separately;
    separately compiled L2 pieces may round g/‖g‖₂ differently (1 ulp).

    Args: as :func:`fgsm` (the radius is the protocol's ``eps``; ``key`` is ignored).

    Raises:
        ValueError: unknown norm.
    """
    return pgd_attack(f, steps=1, alpha_factor=1.0, norm=norm, start="none", loss_fn=loss_fn)


def pgd(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    steps: int = 10,
    alpha=None,
    norm: str = "linf",
    random_init: bool = True,
    key: jax.Array | None = None,
    center: jax.Array | None = None,
    loss_fn=cross_entropy,
    unroll: int | bool = 1,
    start: str | None = None,
    sigma: float = 1e-3,
    loop: str = "fori",
) -> jax.Array:
    """Projected gradient ascent on ``loss_fn(f(params, x'), y)`` over the ε-ball.

    Args:
        f: ``f(params, x) -> (B, O)`` logits.
        x: starting point (B, ...) in [0, 1].
        y: int labels (B,) — or anything ``loss_fn`` takes as its second argument (TRADES:
            the reference probabilities with ``loss_fn=kl_divergence``).
        eps: radius (pixel units).
        steps: iterations (≥ 1).
        alpha: step size; default 2.5·eps/steps (Madry et al.; the benchmark's PGD-20 uses it).
        norm: ``'linf'`` or ``'l2'``.
        random_init: start from a uniform point of the ball (needs ``key``); ignored when
            ``start`` is given.
        key: PRNG key of the random start: one key, or B per-example keys (L∞ only, see
            :func:`random_start`).
        center: centre of the ball (default ``x``). The twice-perturbed example is
            ``pgd(..., x=x_adv, center=x_adv)``; see :func:`twice_perturbed`.
        loss_fn: ``loss_fn(logits, y) -> scalar`` to maximise (mean cross-entropy).
        unroll: passed to :func:`jax.lax.fori_loop` (``True``: all steps unrolled). The same
            iterations, only compiled differently: on XLA:CPU unrolling 10 steps runs ~1.4×
            faster but compiles ~2.5× longer, so it pays off when one compilation serves many
            calls (the supernet engine) or when the loop is short (training). Results can differ
            from the rolled loop in float rounding, which may flip ``sign`` of near-zero gradient
            entries.
        start: ``'uniform'``, ``'normal'`` (center + sigma·N(0, I), TRADES) or ``'none'``; None
            = ``'uniform'`` if ``random_init`` else ``'none'``.
        sigma: standard deviation of the ``'normal'`` start (TRADES: 0.001).
        loop: ``'fori'`` or ``'unroll'`` (or ``'host'`` outside a trace;
            :func:`~robntk.attacks.protocol.run_loop`).

    Returns:
        Adversarial examples (shape/dtype of x), with ``stop_gradient``.

    Raises:
        ValueError: bad eps/steps/alpha/norm/start/loop, or a random start without ``key``.
    """
    check_attack_args(eps, steps, alpha, norm)
    start = ("uniform" if random_init else "none") if start is None else start
    if start != "none" and key is None:
        raise ValueError(f"pgd(start={start!r}) needs a PRNG key (random_init=True needs one)")
    atk = pgd_attack(
        f,
        steps=steps,
        alpha=alpha,
        norm=norm,
        start=start,
        sigma=sigma,
        loss_fn=loss_fn,
        center_fn=None if center is None else (lambda _: center),
    )
    return run_attack(atk, params, x, y, eps, key, loop=loop, unroll=unroll)


def twice_perturbed(f: Fn, params, x_adv, y, eps, **pgd_kwargs) -> jax.Array:
    """x̃̃ = A_ε(x̃): PGD restarted from x̃ and projected onto the ε-ball around x̃ (paper §4).

    Same arguments as :func:`pgd` (``x_adv`` = x̃); ‖x̃̃ − x‖ ≤ 2ε for the original x.
    """
    return pgd(f, params, x_adv, y, eps, center=x_adv, **pgd_kwargs)


def mifgsm(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    steps: int = 10,
    alpha=None,
    decay: float = 1.0,
    norm: str = "linf",
    loss_fn=cross_entropy,
) -> jax.Array:
    """Momentum iterative FGSM (MI-FGSM; Dong et al., "Boosting Adversarial Attacks with
    Momentum", CVPR 2018, Algorithm 1, eqs. 6–7 (L∞) and 8 (L2)).

    With g₀ = 0 and x₀ = x, for t = 0..steps−1::

        g_{t+1} = decay · g_t + ∇ₓ loss(x_t) / ‖∇ₓ loss(x_t)‖₁      (L1 norm per example)
        x_{t+1} = Π_ε(x_t + alpha · sign(g_{t+1}))                 (L∞)
        x_{t+1} = Π_ε(x_t + alpha · g_{t+1} / ‖g_{t+1}‖₂)          (L2)

    Π_ε projects onto the ε-ball around x and clips to [0, 1] (the paper's algorithm has no
    projection because alpha·steps = ε; the clip to the image box is what torchattacks'
    ``MIFGSM`` does). No random start. ``decay = 0`` gives I-FGSM (BIM).

    Args:
        f: ``f(params, x) -> (B, O)`` logits.
        x: clean inputs (B, ...) in [0, 1]. y: int labels (B,).
        eps: radius in pixel units.
        steps: iterations T (≥ 1; paper: 10).
        alpha: step size; default eps / steps (paper).
        decay: momentum factor μ ≥ 0 (paper: 1.0).
        norm: ``'linf'`` or ``'l2'``.
        loss_fn: loss maximised, ``loss_fn(logits, y)``.

    Returns:
        Adversarial examples (shape/dtype of x), with ``stop_gradient``.

    Raises:
        ValueError: bad eps/steps/alpha/norm, negative decay.
    """
    check_attack_args(eps, steps, alpha, norm)
    if isinstance(decay, (int, float)) and not float(decay) >= 0.0:
        raise ValueError(f"decay (momentum) must be >= 0, got {decay!r}")
    alpha = eps / steps if alpha is None else alpha
    axes = tuple(range(1, x.ndim))

    def body(_, carry):
        xa, g = carry
        grad = input_grad(f, params, xa, y, loss_fn)
        l1 = jnp.sum(jnp.abs(grad), axis=axes, keepdims=True)
        g = decay * g + grad / jnp.maximum(l1, 1e-12)
        return project(xa + _step(g, alpha, norm), x, eps, norm), g

    xa, _ = jax.lax.fori_loop(0, steps, body, (x, jnp.zeros_like(x)))
    return jax.lax.stop_gradient(xa)


def _logit_jacobian(f: Fn, params, x: jax.Array, num_classes: int) -> tuple[jax.Array, jax.Array]:
    """Logits (B, K) and per-example input gradients of every logit, (K, B, ...) (one VJP per
    class; assumes the examples of the batch do not interact, e.g. eval-mode BN)."""
    logits, vjp = jax.vjp(lambda z: f(params, z), x)
    basis = jnp.broadcast_to(jnp.eye(num_classes, dtype=logits.dtype)[:, None, :], (num_classes,) + logits.shape)
    (jac,) = jax.vmap(vjp)(basis)
    return logits, jac


def deepfool(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    num_classes: int,
    steps: int = 50,
    overshoot: float = 0.02,
    norm: str = "l2",
    eps=None,
) -> jax.Array:
    """DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016; Algorithm 2 for L2, §3.2 eqs.
    for general Lp, here L∞ with q = 1).

    Per example, while the predicted label still equals ``y`` (and at most ``steps`` times),
    linearise the logits at the current point x_i: for every class k ≠ y, w_k = ∇f_k − ∇f_y and
    f'_k = f_k − f_y; pick l = argmin_k |f'_k| / ‖w_k‖_q and step to that linearised boundary::

        r_i = (|f'_l| + 1e-4) / ‖w_l‖₂² · w_l            (L2, q = 2)
        r_i = (|f'_l| + 1e-4) / ‖w_l‖₁ · sign(w_l)       (L∞, q = 1)

    The total perturbation r = Σ r_i is applied with overshoot:
    x_adv = clip(x + (1 + overshoot)·r, 0, 1) (as the authors' reference implementation and
    torchattacks' ``DeepFool``). For an affine classifier the first step is exactly the minimal
    perturbation (the distance to the nearest decision boundary, ‖·‖₂ or ‖·‖∞), times
    1 + overshoot. DeepFool is a minimal-perturbation attack; for a robust accuracy at radius
    ε pass ``eps``: the final perturbation is then projected onto the ε-ball (norm ``norm``).

    Args:
        f: ``f(params, x) -> (B, num_classes)`` logits; examples must not interact (eval-mode BN).
        x: clean inputs (B, ...) in [0, 1]. y: int labels (B,) — the attack starts from the true
            label; an example already misclassified is returned unchanged.
        num_classes: K (static; the number of logits).
        steps: maximum iterations (≥ 1; reference: 50).
        overshoot: η ≥ 0 (reference: 0.02).
        norm: ``'l2'`` or ``'linf'``.
        eps: optional radius (pixel units) to project the final perturbation onto.

    Returns:
        Adversarial examples (shape/dtype of x), with ``stop_gradient``.

    Raises:
        ValueError: bad steps/norm/eps, num_classes < 2, negative overshoot.
    """
    check_attack_args(0.0 if eps is None else eps, steps, None, norm)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(overshoot, (int, float)) and not float(overshoot) >= 0.0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot!r}")
    y = y.astype(jnp.int32)
    onehot = jax.nn.one_hot(y, num_classes, dtype=bool)

    def apply(r):
        xa = jnp.clip(x + (1.0 + overshoot) * r, 0.0, 1.0)
        return project(xa, x, eps, norm) if eps is not None else xa

    def body(_, r):
        xa = apply(r)
        logits, jac = _logit_jacobian(f, params, xa, num_classes)  # (B, K), (K, B, ...)
        active = jnp.argmax(logits, axis=-1) == y
        fy = jnp.take_along_axis(logits, y[:, None], axis=1)  # (B, 1)
        gy = jnp.take_along_axis(jac, y[None, :].reshape((1, -1) + (1,) * (x.ndim - 1)), axis=0)
        w = jac - gy  # (K, B, ...)
        fk = (logits - fy).T  # (K, B)
        wn = (
            jnp.sqrt(jnp.sum(w * w, axis=tuple(range(2, w.ndim))))
            if norm == "l2"
            else jnp.sum(jnp.abs(w), axis=tuple(range(2, w.ndim)))
        )  # (K, B)
        dist = jnp.abs(fk) / jnp.maximum(wn, 1e-12)
        dist = jnp.where(onehot.T, jnp.inf, dist)
        l = jnp.argmin(dist, axis=0)  # (B,)
        sel = (slice(None),) + (None,) * (x.ndim - 1)
        wl = jnp.take_along_axis(w, l[None, :].reshape((1, -1) + (1,) * (x.ndim - 1)), axis=0)[0]
        fl = jnp.take_along_axis(fk, l[None, :], axis=0)[0]
        wln = jnp.take_along_axis(wn, l[None, :], axis=0)[0]
        if norm == "l2":
            ri = ((jnp.abs(fl) + 1e-4) / jnp.maximum(wln * wln, 1e-24))[sel] * wl
        else:
            ri = ((jnp.abs(fl) + 1e-4) / jnp.maximum(wln, 1e-12))[sel] * jnp.sign(wl)
        return r + jnp.where(active[sel], ri, 0.0)

    r = jax.lax.fori_loop(0, steps, body, jnp.zeros_like(x))
    return jax.lax.stop_gradient(apply(r))
