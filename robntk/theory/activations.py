"""Activations of the theory search space, in NumPy (analytic side) and JAX (networks).

The searchable activations (Zhu, Liu, Chrysos, Cevher, "Generalization Properties of NAS under
Activation and Skip Connection Search", NeurIPS 2022; NAS-RobBench-201 paper §4):

=============  ======================================  ===========================
name           σ(z)                                    σ'(z)
=============  ======================================  ===========================
``relu``       max(z, 0)                               1[z > 0]
``leaky_relu`` max(z, a·z), a = :data:`LEAKY_SLOPE`    1[z > 0] + a·1[z ≤ 0]
``tanh``       tanh z                                  1 − tanh² z
``sigmoid``    1 / (1 + e^{−z})                        s(z)(1 − s(z))
``swish``      z·s(z) (SiLU, β = 1)                    s(z) + z·s(z)(1 − s(z))
``gelu``       z·Φ(z) (exact, erf form)                Φ(z) + z·φ(z)
=============  ======================================  ===========================

All functions are elementwise; NumPy versions take/return float64 arrays of any shape.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: Names accepted everywhere in :mod:`robntk.theory`, in a fixed order (index = selector id).
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "tanh", "sigmoid", "swish", "gelu")
#: Negative-side slope of ``leaky_relu`` (PyTorch's default 0.01, as in theory.md's table).
LEAKY_SLOPE: float = 0.01
#: Activations with closed-form Hermite coefficients and arc-cosine dual kernels.
RELU_TYPE: tuple[str, ...] = ("relu", "leaky_relu")


def check_activation(name: str) -> str:
    """Return ``name`` if it is a known activation.

    Raises:
        ValueError: unknown name; the message lists the allowed names.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return name


def np_activation(name: str, z: np.ndarray) -> np.ndarray:
    """σ(z) in NumPy float64 (any shape). Raises ValueError for an unknown ``name``."""
    check_activation(name)
    z = np.asarray(z, dtype=np.float64)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return special.expit(z)
    if name == "swish":
        return z * special.expit(z)
    return z * special.ndtr(z)  # gelu


def np_activation_derivative(name: str, z: np.ndarray) -> np.ndarray:
    """σ'(z) in NumPy float64 (any shape); at the kink of ReLU-type activations the right
    derivative's convention is irrelevant (measure zero). Raises ValueError for an unknown name."""
    check_activation(name)
    z = np.asarray(z, dtype=np.float64)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_SLOPE)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = special.expit(z)
        return s * (1.0 - s)
    if name == "swish":
        s = special.expit(z)
        return s + z * s * (1.0 - s)
    return special.ndtr(z) + z * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # gelu


def jax_activation(name: str, z):
    """σ(z) in JAX (dtype of ``z``). Raises ValueError for an unknown ``name``."""
    import jax
    import jax.numpy as jnp

    check_activation(name)
    if name == "relu":
        return jax.nn.relu(z)
    if name == "leaky_relu":
        return jnp.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "tanh":
        return jnp.tanh(z)
    if name == "sigmoid":
        return jax.nn.sigmoid(z)
    if name == "swish":
        return z * jax.nn.sigmoid(z)
    return jax.nn.gelu(z, approximate=False)


def jax_select_activation(onehot, z):
    """Σ_a onehot[a]·σ_a(z): an activation chosen by *data* (one-hot row over :data:`ACTIVATIONS`).

    Lets one compiled network serve every activation choice (the architecture is an input, not
    part of the graph). With an exact one-hot row the result equals σ_a(z) bit for bit
    (0·finite = 0, x + 0 = x), and so do its derivatives.

    Args:
        onehot: (len(ACTIVATIONS),) float array, one entry 1, the rest 0.
        z: any-shape array.
    """
    out = onehot[0] * jax_activation(ACTIVATIONS[0], z)
    for a in range(1, len(ACTIVATIONS)):
        out = out + onehot[a] * jax_activation(ACTIVATIONS[a], z)
    return out
