"""The robust NTK family of the NAS-RobBench-201 paper (Wu et al., ICLR 2024, §4, Eq. 4–5).

With x̃ = A_ε(x) (PGD at initialisation) and the twice-perturbed x̃̃ = A_ε(x̃) (PGD restarted
from x̃, projected onto the ε-ball around x̃), and Jacobians J, J̃, J̃̃ of the read-out at X, X̃, X̃̃:

* clean             K      = J Jᵀ
* robust            K̃_ε    = J̃ J̃ᵀ
* cross             K̄_ε    = J J̃ᵀ        (not symmetric)
* twice-perturbed   K̃_2ε   = J̃̃ J̃̃ᵀ,   K̄_2ε = J̃ J̃̃ᵀ
* mixed (Eq. 4)     K_all(β)  = (1−β)² K   + β(1−β)(K̄_ε  + K̄_εᵀ)  + β² K̃_ε
* mixed (Eq. 5)     K̃_all(β) = (1−β)² K̃_ε + β(1−β)(K̄_2ε + K̄_2εᵀ) + β² K̃_2ε

Identity (exact for empirical kernels): K_all(β) = J_β J_βᵀ with J_β = (1−β)J + βJ̃, the NTK of
g(x) = (1−β) f(x) + β f(A(x)) with A frozen; K̃_all likewise with (1−β)J̃ + βJ̃̃. β ∈ [0, 1]:
β = 0 is standard training, β = 1 pure adversarial training (the benchmark's protocol).
In train-mode BN each of X, X̃, X̃̃ is its own batch (as in a training step on that batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from . import attacks, ntk


def check_beta(beta) -> float:
    """Validate β ∈ [0, 1].

    Raises:
        ValueError: β outside [0, 1] or not a number.
    """
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a number in [0, 1], got {beta!r}") from None
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return b


def transpose_kernel(K: jax.Array) -> jax.Array:
    """Kᵀ for (B1, B2) or full (B1, B2, O, O) kernels (swaps example and output indices)."""
    if K.ndim == 4:
        return jnp.transpose(K, (1, 0, 3, 2))
    return K.T


def mixed_kernel(K_clean: jax.Array, K_cross: jax.Array, K_adv: jax.Array, beta) -> jax.Array:
    """(1−β)² K_clean + β(1−β)(K_cross + K_crossᵀ) + β² K_adv (paper Eq. 4/5).

    ``mixed_kernel(K, K̄_ε, K̃_ε, β)`` = K_all(β); ``mixed_kernel(K̃_ε, K̄_2ε, K̃_2ε, β)`` = K̃_all(β).
    Shapes (B, B) or (B, B, O, O).

    Raises:
        ValueError: β outside [0, 1].
    """
    b = check_beta(beta)
    return (1 - b) ** 2 * K_clean + b * (1 - b) * (K_cross + transpose_kernel(K_cross)) + b**2 * K_adv


@dataclass
class KernelFamily:
    """All kernels for one batch and one ε.

    Attributes (each (B, B) or (B, B, O, O)):
        clean, robust, cross, twice, twice_cross: K, K̃_ε, K̄_ε, K̃_2ε, K̄_2ε.
        x_adv, x_adv2: the perturbed batches X̃ and X̃̃ (B, H, W, C).
    """

    clean: jax.Array
    robust: jax.Array
    cross: jax.Array
    twice: jax.Array
    twice_cross: jax.Array
    x_adv: jax.Array = field(repr=False)
    x_adv2: jax.Array = field(repr=False)

    def k_all(self, beta) -> jax.Array:
        """K_all(β) (paper Eq. 4)."""
        return mixed_kernel(self.clean, self.cross, self.robust, beta)

    def k_tilde_all(self, beta) -> jax.Array:
        """K̃_all(β) (paper Eq. 5)."""
        return mixed_kernel(self.robust, self.twice_cross, self.twice, beta)


def perturb(
    f: ntk.Fn, params, x, y, eps, *, key, steps: int = 10, alpha=None, norm: str = "linf",
    random_init: bool = True, unroll: int | bool = 1,
) -> tuple[jax.Array, jax.Array]:
    """(X̃, X̃̃): PGD at initialisation and the twice-perturbed batch (see :mod:`robntk.attacks`).

    Args: as :func:`robntk.attacks.pgd`; ``key`` is split for the two attacks.
    """
    k1, k2 = jax.random.split(key)
    kw = dict(steps=steps, alpha=alpha, norm=norm, random_init=random_init, unroll=unroll)
    x_adv = attacks.pgd(f, params, x, y, eps, key=k1, **kw)
    x_adv2 = attacks.twice_perturbed(f, params, x_adv, y, eps, key=k2, **kw)
    return x_adv, x_adv2


def kernel_family(
    f: ntk.Fn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    key: jax.Array,
    steps: int = 10,
    alpha=None,
    norm: str = "linf",
    output_mode: str = "sum",
    independent_rows: bool = False,
    chunk_size: int | None = None,
    attack_f: ntk.Fn | None = None,
    jac_clean: Any = None,
) -> KernelFamily:
    """Compute K, K̃_ε, K̄_ε, K̃_2ε, K̄_2ε for one batch by Jacobian contraction.

    Args:
        f: ``f(params, X) -> (B, O)`` logits (the function whose NTK is taken).
        params: parameter pytree.
        x: clean batch (B, H, W, C) in [0, 1]; y: int labels (B,).
        eps: attack radius in [0, 1] pixel units (e.g. 8/255).
        key: PRNG key for the attacks' random starts.
        steps, alpha, norm: PGD settings (alpha defaults to 2.5·eps/steps).
        output_mode, independent_rows, chunk_size: see :func:`robntk.ntk.empirical_ntk`.
        attack_f: function the attack differentiates (default ``f``), e.g. an eval-mode-BN
            version as the benchmark crafts its training attacks.
        jac_clean: a precomputed Jacobian at ``x`` to reuse across several ε.

    Returns:
        :class:`KernelFamily`.

    Raises:
        ValueError: bad eps/steps/output mode/labels.
    """
    attack_f = f if attack_f is None else attack_f
    x_adv, x_adv2 = perturb(attack_f, params, x, y, eps, key=key, steps=steps, alpha=alpha, norm=norm)
    jk = dict(output_mode=output_mode, labels=y, independent_rows=independent_rows, chunk_size=chunk_size)
    J = ntk.jacobian(f, params, x, **jk) if jac_clean is None else jac_clean
    Jt = ntk.jacobian(f, params, x_adv, **jk)
    Jtt = ntk.jacobian(f, params, x_adv2, **jk)
    g = lambda a, b: ntk.gram(a, b, output_mode)
    return KernelFamily(g(J, J), g(Jt, Jt), g(J, Jt), g(Jtt, Jtt), g(Jt, Jtt), x_adv, x_adv2)


def mixed_jacobian(jac_a: Any, jac_b: Any, beta) -> Any:
    """J_β = (1−β) J_a + β J_b (for the identity K_all(β) = J_β J_βᵀ)."""
    b = check_beta(beta)
    return jax.tree_util.tree_map(lambda a, c: (1 - b) * a + b * c, jac_a, jac_b)
