"""Synthetic data of the theory setting: points on the unit sphere and their separation.

Random inputs are i.i.d. standard Gaussians normalised along the last axis (uniform on
S^{d−1}, or on (S^{C−1})^P for CNN inputs); labels are i.i.d. uniform on {−1, +1}.
"""

from __future__ import annotations

import numpy as np


def normalise(X, axis: int = -1) -> np.ndarray:
    """X / ‖X‖ along ``axis`` (float64). Raises ValueError for a zero vector."""
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=axis, keepdims=True)
    if np.any(n == 0):
        raise ValueError("cannot normalise a zero vector onto the unit sphere")
    return X / n


def sphere_points(n: int, shape: tuple[int, ...] | int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random unit inputs and ±1 labels.

    Args:
        n: number of points N ≥ 1.
        shape: (d,) / d for FCN inputs, (P, C) for CNN inputs (each position a unit vector).
        seed: NumPy seed.

    Returns:
        X float64 (n, *shape), y float64 (n,) in {−1, +1}.

    Raises:
        ValueError: n < 1 or a non-positive dimension.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not isinstance(n, (int, np.integer)) or n < 1 or any(s < 1 for s in shape):
        raise ValueError(f"need n >= 1 points of positive dimensions, got n={n!r}, shape={shape!r}")
    rng = np.random.default_rng(seed)
    X = normalise(rng.standard_normal((n,) + shape))
    y = rng.choice([-1.0, 1.0], size=n)
    return X, y


def separation(X, Y=None) -> float:
    """δ = max_{i≠j} |⟨x_i, y_j⟩| over flattened inputs (Y defaults to X; for Y ≠ X the pairs
    i ≠ j of the two sets, matching the Gershgorin off-diagonals). 0 for a single point."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    G = np.abs(X @ Y.T)
    if G.shape[0] < 2:
        return 0.0
    np.fill_diagonal(G, -np.inf)
    return float(G.max())
