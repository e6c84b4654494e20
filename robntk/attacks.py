"""White-box attacks in JAX on any ``f(params, x) -> logits``: FGSM and PGD (L∞, L2).

All attacks work in pixel space: ``x`` has values in [0, 1], ``eps`` and ``alpha`` (step size)
are in the same units (8/255 = 0.0314 is the benchmark's L∞ radius), and every iterate is
projected onto the ε-ball around ``center`` and clipped to [0, 1]. Everything is jit-compatible
(``lax.fori_loop``) and the returned examples carry ``stop_gradient``.

Sources: FGSM (Goodfellow et al., ICLR 2015); PGD with random start (Madry et al., ICLR 2018)
as in torchattacks 3.4.0 ``PGD``/``PGDL2`` used by NAS-RobBench-201; the twice-perturbed example
x̃̃ = A_ε(x̃) of the NAS-RobBench-201 paper §4 (attack restarted from x̃ and projected onto the
ε-ball around x̃, so ‖x̃̃ − x‖ ≤ 2ε).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

NORMS = ("linf", "l2")
Fn = Callable[[Any, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; logits (B, O), integer labels (B,)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))


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
    """Uniform random point of the ε-ball around ``center`` (L∞: per-pixel U(−ε, ε); L2: radius
    ε·U(0,1) along a Gaussian direction, as torchattacks' PGDL2), clipped to [0, 1]."""
    if norm == "linf":
        d = jax.random.uniform(key, center.shape, center.dtype, -1.0, 1.0) * eps
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
) -> jax.Array:
    """Projected gradient ascent on ``loss_fn(f(params, x'), y)`` over the ε-ball.

    Args:
        f: ``f(params, x) -> (B, O)`` logits.
        x: starting point (B, ...) in [0, 1].
        y: int labels (B,).
        eps: radius (pixel units).
        steps: iterations (≥ 1).
        alpha: step size; default 2.5·eps/steps (Madry et al.; the benchmark's PGD-20 uses it).
        norm: ``'linf'`` or ``'l2'``.
        random_init: start from a uniform point of the ball (needs ``key``).
        key: PRNG key for the random start.
        center: centre of the ball (default ``x``). The twice-perturbed example is
            ``pgd(..., x=x_adv, center=x_adv)``; see :func:`twice_perturbed`.
        unroll: passed to :func:`jax.lax.fori_loop` (``True``: all steps unrolled). The same
            iterations, only compiled differently: on XLA:CPU unrolling 10 steps runs ~1.4×
            faster but compiles ~2.5× longer, so it pays off when one compilation serves many
            calls (the supernet engine). Results can differ from the rolled loop in float
            rounding, which may flip ``sign`` of near-zero gradient entries.

    Returns:
        Adversarial examples (shape/dtype of x), with ``stop_gradient``.

    Raises:
        ValueError: bad eps/steps/alpha/norm, or ``random_init`` without ``key``.
    """
    check_attack_args(eps, steps, alpha, norm)
    if random_init and key is None:
        raise ValueError("pgd(random_init=True) needs a PRNG key")
    center = x if center is None else center
    alpha = 2.5 * eps / steps if alpha is None else alpha
    x0 = random_start(key, center, eps, norm) if random_init else project(x, center, eps, norm)

    def body(_, xa):
        g = input_grad(f, params, xa, y, loss_fn)
        return project(xa + _step(g, alpha, norm), center, eps, norm)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x0, unroll=unroll))


def twice_perturbed(f: Fn, params, x_adv, y, eps, **pgd_kwargs) -> jax.Array:
    """x̃̃ = A_ε(x̃): PGD restarted from x̃ and projected onto the ε-ball around x̃ (paper §4).

    Same arguments as :func:`pgd` (``x_adv`` = x̃); ‖x̃̃ − x‖ ≤ 2ε for the original x.
    """
    return pgd(f, params, x_adv, y, eps, center=x_adv, **pgd_kwargs)
