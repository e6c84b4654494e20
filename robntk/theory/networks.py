"""JAX networks of the theory setting: plain ``f(params, x) -> (B, 1)`` functions + init.

Parametrisation: see :mod:`robntk.theory.arch` (NTK parametrisation, all weights N(0, 1), every
layer trained, no biases, scalar output). Shapes:

* :class:`~robntk.theory.arch.ResFCN`: x (B, d), unit rows; params
  ``{'W': (W¹ (d, m), W² (m, m), …, Wᴸ (m, m)), 'v': (m,)}``.
* :class:`~robntk.theory.arch.ResCNN`: x (B, P, C), every x[b, p, :] a unit vector; params
  ``{'W': (W¹ (k₁·C, m), Wˡ (k_l·m, m) …), 'v': (m,)}`` (a filter is stored flattened over
  (offset δ, input channel)).

The architecture enters the compiled graph only through its *shapes* (depth, width, filter
sizes): activations, skips and the normalisers q are passed as arrays (:func:`arch_arrays`), so
one compiled function serves every activation/skip choice of a given depth and width. The
closures returned by :func:`make_network` bake those arrays in; the generic
:func:`fcn_forward` / :func:`cnn_forward` take them as arguments (used by the experiment to
compile once).

Float64: pass ``dtype=jnp.float64`` to :func:`init_params` inside ``jax.enable_x64(True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk.theory.activations import jax_select_activation
from robntk.theory.arch import Arch, ResCNN, check_width, layer_constants, onehot_activations

Params = dict[str, Any]


def arch_arrays(arch: Arch, width: int, dtype=None) -> dict[str, jax.Array]:
    """The architecture as data: ``onehot`` (L, 6), ``alpha`` (L,), ``scale`` (L,).

    ``scale[l−1]`` multiplies layer l's pre-activation: 1 (FCN, l = 1), 1/√k₁ (CNN, l = 1),
    1/√(m q_{l−1}) (FCN, l ≥ 2), 1/√(k_l m q_{l−1}) (CNN, l ≥ 2).

    Raises:
        ValueError: width < 1.
    """
    m = check_width(width)
    c = layer_constants(arch)
    ks = arch.filter_sizes if isinstance(arch, ResCNN) else (1,) * arch.depth
    scale = np.empty(arch.depth)
    scale[0] = 1.0 / np.sqrt(ks[0])
    for l in range(1, arch.depth):
        scale[l] = 1.0 / np.sqrt(ks[l] * m * c.q[l - 1])
    as_ = lambda a: jnp.asarray(a, dtype=dtype)
    return {"onehot": as_(onehot_activations(arch)), "alpha": as_(c.alpha), "scale": as_(scale)}


def init_params(arch: Arch, key, width: int, dtype=jnp.float32) -> Params:
    """I.i.d. N(0, 1) weights (NTK parametrisation).

    Args:
        arch: :class:`ResFCN` or :class:`ResCNN`.
        key: a JAX PRNG key, or a Python int seed — then the weights come from NumPy's
            ``default_rng(seed)`` (no JAX compilation per shape; used by the experiment grid).
        width: m ≥ 1 (hidden units / channels).
        dtype: parameter dtype (float64 needs ``jax.enable_x64``).

    Returns:
        ``{'W': tuple of L arrays, 'v': (m,)}`` (shapes in the module docstring).

    Raises:
        ValueError: width < 1.
    """
    m = check_width(width)
    if isinstance(arch, ResCNN):
        fan_in = [arch.filter_sizes[0] * arch.in_channels] + [k * m for k in arch.filter_sizes[1:]]
    else:
        fan_in = [arch.in_dim] + [m] * (arch.depth - 1)
    shapes = [(f, m) for f in fan_in] + [(m,)]
    if isinstance(key, (int, np.integer)):
        rng = np.random.default_rng(int(key))
        arrs = [jnp.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]
    else:
        keys = jax.random.split(key, len(shapes))
        arrs = [jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]
    return {"W": tuple(arrs[:-1]), "v": arrs[-1]}


def fcn_forward(params: Params, x: jax.Array, arrays: dict, taps=None, return_hidden: bool = False):
    """Residual FCN forward pass, architecture as data.

    Args:
        params: from :func:`init_params` for a :class:`ResFCN`.
        x: (B, d) unit rows.
        arrays: :func:`arch_arrays`.
        taps: optional list of L arrays (B, m) added to the pre-activations (their gradients are
            the back-propagated δˡ = ∂f/∂gˡ; used by :func:`fcn_ntk_structured`).
        return_hidden: also return the layer inputs (x, h¹, …, hᴸ⁻¹) and hᴸ.

    Returns:
        (B, 1) output, or ``(out, (inputs, hL))`` with ``return_hidden``.
    """
    h = x
    inputs = []
    m = params["v"].shape[0]
    for l, W in enumerate(params["W"]):
        inputs.append(h)
        g = arrays["scale"][l] * jnp.matmul(h, W, precision=jax.lax.Precision.HIGHEST)
        if taps is not None:
            g = g + taps[l]
        a = jax_select_activation(arrays["onehot"][l], g)
        h = a if l == 0 else a + arrays["alpha"][l] * h
    out = jnp.matmul(h, params["v"], precision=jax.lax.Precision.HIGHEST)[:, None] / jnp.sqrt(m).astype(h.dtype)
    return (out, (inputs, h)) if return_hidden else out


def patches(h: jax.Array, k: int) -> jax.Array:
    """Circular 1-D patches: (B, P, C) → (B, P, k·C) with patch p = [h_{p+δ}]_{δ=−(k−1)/2..(k−1)/2}."""
    r = (k - 1) // 2
    return jnp.concatenate([jnp.roll(h, -d, axis=1) for d in range(-r, r + 1)], axis=-1)


def cnn_forward(params: Params, x: jax.Array, arrays: dict):
    """Residual 1-D CNN forward pass (architecture as data; filter sizes from weight shapes).

    Args:
        params: from :func:`init_params` for a :class:`ResCNN`.
        x: (B, P, C), every position a unit vector.
        arrays: :func:`arch_arrays`.

    Returns:
        (B, 1): vᵀ mean_p(hᴸ_p) / √m.
    """
    h = x
    m = params["v"].shape[0]
    for l, W in enumerate(params["W"]):
        k = W.shape[0] // h.shape[-1]
        g = arrays["scale"][l] * jnp.matmul(patches(h, k), W, precision=jax.lax.Precision.HIGHEST)
        a = jax_select_activation(arrays["onehot"][l], g)
        h = a if l == 0 else a + arrays["alpha"][l] * h
    pooled = jnp.mean(h, axis=1)
    return jnp.matmul(pooled, params["v"], precision=jax.lax.Precision.HIGHEST)[:, None] / jnp.sqrt(m).astype(h.dtype)


def forward_fn(arch: Arch) -> Callable:
    """The generic forward of the arch's family: :func:`fcn_forward` or :func:`cnn_forward`."""
    return cnn_forward if isinstance(arch, ResCNN) else fcn_forward


def make_network(arch: Arch, width: int, dtype=jnp.float32) -> tuple[Callable, Callable]:
    """``(init_fn, f)`` for one architecture and width.

    ``init_fn(key) -> params``; ``f(params, x) -> (B, 1)``, a pure function usable with
    :func:`robntk.ntk.empirical.empirical_ntk` and :func:`robntk.ntk.kernels.kernel_family`-style code.

    Raises:
        ValueError: bad width (and bad specs, when the spec is built).
    """
    m = check_width(width)
    fwd = forward_fn(arch)

    def init_fn(key):
        return init_params(arch, key, m, dtype)

    def f(params, x):
        return fwd(params, x, arch_arrays(arch, m, params["v"].dtype))

    return init_fn, f


# ---------------------------------------------------------------------------------------------
# Structured empirical NTK of the FCN (exact, no Jacobian in memory)
# ---------------------------------------------------------------------------------------------


def fcn_ntk_features(params: Params, x: jax.Array, arrays: dict) -> dict:
    """Per-example quantities whose inner products give the FCN's empirical NTK exactly.

    With δˡ = ∂f/∂gˡ (one backward pass of Σ_i f(x_i); rows are independent), layer inputs
    aˡ⁻¹ (x for l = 1) and scales c_l, the gradient of f w.r.t. Wˡ is c_l aˡ⁻¹ ⊗ δˡ, so

        K(x, x') = ⟨hᴸ, h'ᴸ⟩/m + Σ_l c_l² ⟨δˡ, δ'ˡ⟩ ⟨aˡ⁻¹, a'ˡ⁻¹⟩.

    Returns:
        ``{'delta': [L × (B, m)], 'inputs': [L × (B, fan_in)], 'hL': (B, m)}``.
    """
    B = x.shape[0]
    m = params["v"].shape[0]
    taps = [jnp.zeros((B, m), x.dtype) for _ in params["W"]]

    def total(t):
        out, hidden = fcn_forward(params, x, arrays, taps=t, return_hidden=True)
        return jnp.sum(out), hidden

    deltas, (inputs, hL) = jax.grad(total, has_aux=True)(taps)
    return {"delta": deltas, "inputs": inputs, "hL": hL}


def structured_gram(F1: dict, F2: dict, arrays: dict) -> jax.Array:
    """K(X1, X2) (B1, B2) from two :func:`fcn_ntk_features` results (float accumulation at
    ``Precision.HIGHEST``)."""
    hp = jax.lax.Precision.HIGHEST
    m = F1["hL"].shape[1]
    K = jnp.matmul(F1["hL"], F2["hL"].T, precision=hp) / m
    for l in range(len(F1["delta"])):
        dd = jnp.matmul(F1["delta"][l], F2["delta"][l].T, precision=hp)
        aa = jnp.matmul(F1["inputs"][l], F2["inputs"][l].T, precision=hp)
        K = K + arrays["scale"][l] ** 2 * dd * aa
    return K


def fcn_ntk_structured(params: Params, x1: jax.Array, x2: jax.Array | None, arrays: dict) -> jax.Array:
    """Exact empirical NTK of the FCN, (B1, B2), in O(B·L·m²) time and O(B·L·m) memory.

    Equal to ``robntk.ntk.empirical.empirical_ntk(f, params, x1, x2)`` up to rounding (tested); used for
    widths where the P-column Jacobian of the core module would not fit in memory.
    """
    F1 = fcn_ntk_features(params, x1, arrays)
    F2 = F1 if x2 is None else fcn_ntk_features(params, x2, arrays)
    return structured_gram(F1, F2, arrays)
