"""Adversary on the unit sphere: spherical-cap PGD, and the twice-perturbed points.

:mod:`robntk.attacks.iterative` works in [0, 1] pixel space (it clips). Theory inputs live on the unit
sphere S^{d−1} (FCN) or on a product of spheres (S^{C−1})^P (CNN, one unit vector per position),
so robntk.theory uses its own adversary:

    A_ρ(c) ∈ argmax_{x' ∈ S, ‖x' − c‖₂ ≤ ρ} ℓ(y f(x'))          ℓ(u) = log(1 + e^{−u}),

with ρ the *chordal* radius (ρ ∈ [0, 2]; angular radius θ_ρ = 2 arcsin(ρ/2)). For the CNN the
constraint holds at every position separately (each x'_p within ρ of c_p). PGD (Madry et al.
2018) adapted to the sphere:

1. start at a uniform-angle random point of the cap (or at c);
2. repeat ``steps`` times: step of length η along the normalised input gradient of
   Σ_i ℓ(y_i f(x_i)) (L2 step, per example), renormalise every unit vector (last axis), then
   project onto the cap: a point at angle θ > θ_ρ from c is moved along the great circle
   through c to angle θ_ρ (the exact geodesic projection);
3. return the result with ``stop_gradient`` (the adversarial point is frozen, as in the
   analysis of the NAS-RobBench-201 paper §4).

The default step is η = 2.5 ρ / steps (Madry et al.). ‖A_ρ(x) − x‖ ≤ ρ holds exactly (up to
rounding), and the twice-perturbed point x̃̃ = A_ρ(x̃) (restarted from x̃, cap around x̃)
satisfies ‖x̃̃ − x‖ ≤ 2ρ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Fn = Callable[[Any, jax.Array], jax.Array]


def check_rho(rho) -> float:
    """Validate the chordal radius ρ ∈ [0, 2].

    Raises:
        ValueError: ρ < 0, ρ > 2 (the cap would be the whole sphere), or not a number.
    """
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise ValueError(f"rho must be a number in [0, 2] (chordal radius on the unit sphere), got {rho!r}") from None
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"rho must be >= 0 (chordal radius on the unit sphere), got {rho!r}")
    if r > 2:
        raise ValueError(f"rho must be <= 2 (the diameter of the unit sphere), got {rho!r}")
    return r


def angular_radius(rho) -> float:
    """θ_ρ = 2 arcsin(ρ/2): the angle subtended by chordal radius ρ. Raises ValueError for bad ρ."""
    return float(2.0 * np.arcsin(check_rho(rho) / 2.0))


def _normalise(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-30)


def project_cap(x: jax.Array, center: jax.Array, theta) -> jax.Array:
    """Geodesic projection of unit vectors ``x`` onto the caps {angle(·, center) ≤ θ} (last axis).

    Args:
        x, center: (..., d) unit vectors (same shape).
        theta: angular radius in radians (scalar).

    Returns:
        (..., d) unit vectors.
    """
    cos = jnp.clip(jnp.sum(x * center, axis=-1, keepdims=True), -1.0, 1.0)
    tang = x - cos * center
    tnorm = jnp.linalg.norm(tang, axis=-1, keepdims=True)
    u = tang / jnp.maximum(tnorm, 1e-30)
    on_boundary = jnp.cos(theta) * center + jnp.sin(theta) * u
    inside = jnp.arccos(cos) <= theta
    return jnp.where(inside, x, _normalise(on_boundary))


def random_cap_points(key: jax.Array, center: jax.Array, theta) -> jax.Array:
    """Random unit vectors at a uniform angle in [0, θ] from each ``center`` (last axis), in a
    uniform random tangent direction: PGD's random start, or a random (non-adversarial)
    perturbation of chordal radius ≤ 2 sin(θ/2).

    Args:
        key: PRNG key. center: (..., d) unit vectors. theta: angular radius (radians).

    Returns:
        (..., d) unit vectors, dtype of ``center``.
    """
    k1, k2 = jax.random.split(key)
    g = jax.random.normal(k1, center.shape, center.dtype)
    tang = g - jnp.sum(g * center, axis=-1, keepdims=True) * center
    u = _normalise(tang)
    ang = theta * jax.random.uniform(k2, center.shape[:-1] + (1,), center.dtype)
    return _normalise(jnp.cos(ang) * center + jnp.sin(ang) * u)


def logistic_loss(out: jax.Array, y: jax.Array) -> jax.Array:
    """Σ_i log(1 + exp(−y_i f_i)) for f (B, 1) or (B,) and labels y ∈ {−1, +1} (B,)."""
    return jnp.sum(jax.nn.softplus(-y * out.reshape(y.shape)))


def sphere_pgd(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    rho,
    *,
    steps: int = 10,
    step_size=None,
    key: jax.Array | None = None,
    random_init: bool = True,
    center: jax.Array | None = None,
) -> jax.Array:
    """Spherical-cap PGD (module docstring). jit-compatible when ``rho`` is traced.

    Args:
        f: ``f(params, x) -> (B, 1)`` scalar-output network.
        params: its parameters.
        x: starting points, (B, d) or (B, P, C), unit vectors along the last axis.
        y: labels in {−1, +1}, (B,).
        rho: chordal radius (Python float in [0, 2], or a traced scalar — then not validated).
        steps: iterations ≥ 1.
        step_size: η; default 2.5·ρ/steps.
        key: PRNG key (needed when ``random_init``).
        random_init: start from a random point of the cap.
        center: centre of the caps (default ``x``).

    Returns:
        Perturbed points, shape/dtype of ``x``, with ``stop_gradient``.

    Raises:
        ValueError: ρ outside [0, 2], steps < 1, step_size ≤ 0, random_init without a key.
    """
    if isinstance(rho, (int, float, np.floating, np.integer)):
        check_rho(rho)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if step_size is not None and isinstance(step_size, (int, float)) and not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if random_init and key is None:
        raise ValueError("sphere_pgd(random_init=True) needs a PRNG key")
    center = x if center is None else center
    theta = 2.0 * jnp.arcsin(jnp.asarray(rho, x.dtype) / 2.0)
    eta = 2.5 * jnp.asarray(rho, x.dtype) / steps if step_size is None else jnp.asarray(step_size, x.dtype)
    x0 = random_cap_points(key, center, theta) if random_init else project_cap(x, center, theta)
    axes = tuple(range(1, x.ndim))

    def body(_, xa):
        g = jax.grad(lambda z: logistic_loss(f(params, z), y))(xa)
        gn = jnp.sqrt(jnp.sum(g * g, axis=axes, keepdims=True))
        xa = _normalise(xa + eta * g / jnp.maximum(gn, 1e-30))
        return project_cap(xa, center, theta)

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x0))


def perturb_sphere(f: Fn, params, x, y, rho, *, key: jax.Array, steps: int = 10, step_size=None):
    """(X̃, X̃̃) = (A_ρ(X), A_ρ(X̃)) with the cap of the second attack centred at X̃.

    Args: as :func:`sphere_pgd`; ``key`` is split between the two attacks.

    Returns:
        (x_adv, x_adv2), each shaped like ``x``: ‖x̃ − x‖ ≤ ρ, ‖x̃̃ − x̃‖ ≤ ρ, ‖x̃̃ − x‖ ≤ 2ρ
        (per unit vector).
    """
    k1, k2 = jax.random.split(key)
    xa = sphere_pgd(f, params, x, y, rho, steps=steps, step_size=step_size, key=k1)
    xaa = sphere_pgd(f, params, xa, y, rho, steps=steps, step_size=step_size, key=k2, center=xa)
    return xa, xaa
