"""The robust NTK family of the NAS-RobBench-201 paper (Wu et al., ICLR 2024, §4, Eq. 4–5), built once.

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

The one path (:func:`kernel_families`): search space → network → attacks
(:func:`perturbed_batches`: one compiled PGD loop for all ε) → the Gram matrix of the stacked
batches [X, X̃_ε1..εE, X̃̃_ε1..εE] (:func:`stacked_gram`, one entry point whose
``implementation`` chooses the provider, as neural-tangents' ``empirical_ntk_fn`` does) → the
named kernels, blocks and β-mixes of that one Gram (:class:`KernelFamily`,
:func:`named_kernels`). In train-mode BN each of X, X̃, X̃̃ is normalised with its own batch
statistics, as a PyTorch model in ``train()`` would do when fed that batch.

Providers (``implementation``):

* ``'layerwise'`` — :mod:`robntk.ntk.layerwise`, per-layer gradients of the NB201 network (needs a
  :class:`robntk.nb201.network.NetworkFn`; the fastest, both BN modes);
* ``'jacobian'`` — :func:`robntk.ntk.empirical.jacobian` + :func:`robntk.ntk.empirical.gram` of any ``f``;
* ``'ntvp'`` — NTK-vector products of any ``f`` (:func:`robntk.ntk.empirical.empirical_ntk`);
* ``'auto'`` — ``'layerwise'`` for a ``NetworkFn``, else ``'jacobian'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from robntk.attacks import iterative as attacks
from robntk.core.registry import beta_tag, eps_tag
from robntk.nb201.network import NetworkFn
from robntk.ntk import empirical as ntk
from robntk.ntk import layerwise as layer_ntk
from robntk.ntk.ntk_fn import resolve_implementation


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


def mixed_jacobian(jac_a: Any, jac_b: Any, beta) -> Any:
    """J_β = (1−β) J_a + β J_b (for the identity K_all(β) = J_β J_βᵀ)."""
    b = check_beta(beta)
    return jax.tree_util.tree_map(lambda a, c: (1 - b) * a + b * c, jac_a, jac_b)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["clean", "robust", "cross", "twice", "twice_cross", "x_adv", "x_adv2"],
    meta_fields=[],
)
@dataclass
class KernelFamily:
    """All kernels for one batch and one ε (a pytree: it can leave a jitted function).

    Attributes (each (B, B) or (B, B, O, O)):
        clean, robust, cross, twice, twice_cross: K, K̃_ε, K̄_ε, K̃_2ε, K̄_2ε.
        x_adv, x_adv2: the perturbed batches X̃ and X̃̃ (B, H, W, C), or None.
    """

    clean: jax.Array
    robust: jax.Array
    cross: jax.Array
    twice: jax.Array
    twice_cross: jax.Array
    x_adv: jax.Array | None = field(default=None, repr=False)
    x_adv2: jax.Array | None = field(default=None, repr=False)

    def k_all(self, beta) -> jax.Array:
        """K_all(β) (paper Eq. 4)."""
        return mixed_kernel(self.clean, self.cross, self.robust, beta)

    def k_tilde_all(self, beta) -> jax.Array:
        """K̃_all(β) (paper Eq. 5)."""
        return mixed_kernel(self.robust, self.twice_cross, self.twice, beta)


def kernel_names(eps: Sequence[float], betas: Sequence[float]) -> list[str]:
    """Names of the symmetric kernels whose spectra robntk reports, in column order:
    ``clean``, then per ε ``robust_eps{E}``, ``twice_eps{E}`` and per β ``all_eps{E}_beta{B}``
    (K_all), ``robust_all_eps{E}_beta{B}`` (K̃_all)."""
    names = ["clean"]
    for e in eps:
        t = eps_tag(e)
        names += [f"robust_{t}", f"twice_{t}"]
        for b in betas:
            names += [f"all_{t}_{beta_tag(b)}", f"robust_all_{t}_{beta_tag(b)}"]
    return names


def named_kernels(
    families: Sequence[KernelFamily], eps: Sequence[float], betas: Sequence[float]
) -> dict[str, jax.Array]:
    """dict name (:func:`kernel_names`) → kernel, from one :class:`KernelFamily` per ε."""
    out = {"clean": families[0].clean}
    for fam, e in zip(families, eps):
        t = eps_tag(e)
        out[f"robust_{t}"] = fam.robust
        out[f"twice_{t}"] = fam.twice
        for b in betas:
            out[f"all_{t}_{beta_tag(b)}"] = fam.k_all(b)
            out[f"robust_all_{t}_{beta_tag(b)}"] = fam.k_tilde_all(b)
    return out


def families_from_gram(G: jax.Array, batch_size: int, n_eps: int, x_adv=None, x_adv2=None) -> list[KernelFamily]:
    """One :class:`KernelFamily` per ε from the Gram of the stack [X, X̃_1..E, X̃̃_1..E].

    Args:
        G: ((1+2E)·B, (1+2E)·B) Gram matrix (or the 'full' 4-D analogue on its first two axes).
        batch_size: B. n_eps: E. x_adv, x_adv2: optional (E, B, ...) perturbed batches.
    """
    B, E = batch_size, n_eps
    blk = lambda a, b: G[a * B : (a + 1) * B, b * B : (b + 1) * B]
    return [
        KernelFamily(
            blk(0, 0),
            blk(1 + k, 1 + k),
            blk(0, 1 + k),
            blk(1 + E + k, 1 + E + k),
            blk(1 + k, 1 + E + k),
            None if x_adv is None else x_adv[k],
            None if x_adv2 is None else x_adv2[k],
        )
        for k in range(E)
    ]


def perturbed_batches(
    attack_f: ntk.Fn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    eps: Sequence[float],
    *,
    key: jax.Array,
    steps: int = 10,
    alpha_factor: float = 2.5,
    norm: str = "linf",
    random_init: bool = True,
    unroll: int | bool = 1,
) -> tuple[jax.Array, jax.Array]:
    """(X̃, X̃̃) for every ε, each (E, B, H, W, C), in one program for all ε (vmapped over ε;
    one ε is computed without the vmap, the same arithmetic with less to trace).

    X̃ = PGD-``steps`` from x (step ``alpha_factor·ε/steps``, random start, CE on ``y``) and
    X̃̃ = PGD again from X̃ in the ε-ball around X̃ (:func:`robntk.attacks.iterative.twice_perturbed`).
    The key of ε number k is ``fold_in(key, k)``, split into the keys of the two attacks.

    Raises:
        ValueError: bad eps/steps/norm (:func:`robntk.attacks.iterative.check_attack_args`).
    """
    for e in eps:
        attacks.check_attack_args(float(e), steps, None, norm)
    eps_a = jnp.asarray(eps, x.dtype)
    keys = jnp.stack([jax.random.fold_in(key, k) for k in range(len(eps))])

    def one(a):
        e, k = a
        k1, k2 = jax.random.split(k)
        kw = dict(steps=steps, alpha=alpha_factor * e / steps, norm=norm, random_init=random_init, unroll=unroll)
        xa = attacks.pgd(attack_f, params, x, y, e, key=k1, **kw)
        return xa, attacks.twice_perturbed(attack_f, params, xa, y, e, key=k2, **kw)

    if len(eps) == 1:  # no vmap of size 1: the same arithmetic, traced and compiled without a batch axis
        return jax.tree_util.tree_map(lambda a: a[None], one((eps_a[0], keys[0])))
    return jax.vmap(one)((eps_a, keys))  # one program for all ε


def stacked_gram(
    f: ntk.Fn,
    params: Any,
    batches: jax.Array,
    labels: jax.Array | None,
    *,
    output_mode: str = "sum",
    implementation: str = "auto",
    chunk_size: int | None = None,
    independent_rows: bool | None = None,
) -> jax.Array:
    """Gram matrix of the Jacobians of S stacked batches (the one NTK entry point of the pipeline).

    Each batch is its own call of ``f`` (in train-mode BN normalised with its own statistics;
    the layerwise provider vmaps the coupled Jacobian over the S batches, one loop-free program,
    so peak memory grows with S·B·(B·O' or ``chunk_size``) activations — lower ``chunk_size``
    on a small machine); with independent rows the batches are concatenated into one call
    (exact).

    Args:
        f: ``f(params, X) -> (B, O)`` logits; a :class:`~robntk.nb201.network.NetworkFn` carries its
            BN mode (independent rows iff eval mode).
        params: parameter pytree. batches: (S, B, H, W, C). labels: int (B,) (every batch has
            the clean batch's labels), needed for ``'label'``.
        output_mode: ``'sum'`` | ``'label'`` | ``'trace'`` | ``'full'`` (:mod:`robntk.ntk.empirical`).
        implementation: module docstring. chunk_size: cotangents/examples per vmapped chunk.
        independent_rows: for a plain callable, whether its rows are independent (default
            False: coupled, always exact); ignored for a ``NetworkFn``.

    Returns:
        (S·B, S·B), or (S·B, S·B, O, O) for ``'full'``.

    Raises:
        ValueError: unknown implementation or output mode, missing labels.
    """
    impl = resolve_implementation(f, implementation)
    ntk.check_output_mode(output_mode, labels)
    indep = (not f.train) if isinstance(f, NetworkFn) else bool(independent_rows)
    S, B = batches.shape[:2]
    tiled = None if labels is None else jnp.tile(labels, S)
    flat = batches.reshape((S * B,) + batches.shape[2:])
    if impl == "layerwise":
        if indep:
            return layer_ntk.layerwise_ntk(f.net, params, f.stats, f.cell, flat, tiled, output_mode, False, chunk_size)
        J = jax.vmap(
            lambda b: layer_ntk.jacobian_rows(f.net, params, f.stats, f.cell, b, labels, output_mode, True, chunk_size)
        )(batches)
        J = J.reshape((S * B,) + J.shape[2:])
        return ntk.gram(J, J, output_mode)
    if impl == "ntvp":
        if indep:
            return ntk.empirical_ntk(
                f, params, flat, output_mode=output_mode, labels1=tiled, implementation="ntvp", chunk_size=chunk_size
            )
        rows = [
            jnp.concatenate(
                [
                    ntk.empirical_ntk(
                        f,
                        params,
                        batches[a],
                        batches[b],
                        output_mode=output_mode,
                        labels1=labels,
                        labels2=labels,
                        implementation="ntvp",
                        chunk_size=chunk_size,
                    )
                    for b in range(S)
                ],
                axis=1,
            )
            for a in range(S)
        ]
        return jnp.concatenate(rows, axis=0)
    jk = dict(output_mode=output_mode, chunk_size=chunk_size)
    if indep:
        J = ntk.jacobian(f, params, flat, labels=tiled, independent_rows=True, **jk)
    else:
        J = ntk.unrolled_map(lambda b: ntk.jacobian(f, params, b, labels=labels, **jk), batches)
        J = jax.tree_util.tree_map(lambda j: j.reshape((S * B,) + j.shape[2:]), J)
    return ntk.gram(J, J, output_mode)


def kernel_families(
    f: ntk.Fn,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    eps: Sequence[float],
    *,
    key: jax.Array,
    steps: int = 10,
    alpha_factor: float = 2.5,
    norm: str = "linf",
    output_mode: str = "sum",
    implementation: str = "auto",
    chunk_size: int | None = None,
    attack_f: ntk.Fn | None = None,
    independent_rows: bool | None = None,
    unroll: int | bool = 1,
) -> list[KernelFamily]:
    """K, K̃_ε, K̄_ε, K̃_2ε, K̄_2ε for every ε, from ONE Gram of the stacked batches (jittable).

    Args:
        f: the function whose NTK is taken (``f(params, X) -> (B, O)`` logits), e.g. the
            :class:`~robntk.nb201.network.NetworkFn` of ``TinyNetwork.make_apply``.
        params: parameter pytree. x: clean batch (B, H, W, C) in [0, 1]; y: int labels (B,).
        eps: attack radii in [0, 1] pixel units (e.g. ``(3/255, 8/255)``).
        key: PRNG key of the attacks (:func:`perturbed_batches`).
        steps, alpha_factor, norm: PGD settings (step size ``alpha_factor·ε/steps``).
        output_mode, implementation, chunk_size, independent_rows: :func:`stacked_gram`.
        attack_f: the function the attacks differentiate (default ``f``), e.g. ``f`` in
            another BN mode (:meth:`robntk.nb201.network.NetworkFn.with_bn_mode`).
        unroll: PGD loop unrolling (:func:`robntk.attacks.iterative.pgd`): the same iterations,
            compiled ``steps`` times instead of once; the rounding of the two programs can
            differ, which PGD's ``sign`` can turn into other perturbed batches.

    Returns:
        list of :class:`KernelFamily`, one per ε, with the perturbed batches attached.

    Raises:
        ValueError: bad eps/steps/output mode/labels/implementation.
    """
    attack_f = f if attack_f is None else attack_f
    xa, xaa = perturbed_batches(
        attack_f, params, x, y, eps, key=key, steps=steps, alpha_factor=alpha_factor, norm=norm, unroll=unroll
    )
    G = stacked_gram(
        f,
        params,
        jnp.concatenate([x[None], xa, xaa]),
        y,
        output_mode=output_mode,
        implementation=implementation,
        chunk_size=chunk_size,
        independent_rows=independent_rows,
    )
    return families_from_gram(G, x.shape[0], len(eps), xa, xaa)


def kernel_family(
    f: ntk.Fn, params: Any, x: jax.Array, y: jax.Array, eps: float, *, key: jax.Array, **kwargs
) -> KernelFamily:
    """The :class:`KernelFamily` of one ε: ``kernel_families(..., (eps,), ...)[0]`` (same
    arguments, same attack keys as the first ε of :func:`kernel_families`)."""
    return kernel_families(f, params, x, y, (eps,), key=key, **kwargs)[0]
