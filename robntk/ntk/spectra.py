"""Spectra of kernel matrices in float64: λ_min, λ_max, condition number, trace, log-determinant.

Kernels are computed in float32 (accelerators) or float64 (CPU with ``jax_enable_x64``) and
symmetrised, (K + Kᵀ)/2, before ``numpy.linalg.eigvalsh`` in float64. A ``'full'`` kernel
(B, B, O, O) is analysed as the (B·O, B·O) matrix with index (i, a).

Degenerate kernels. An eigenvalue below the resolution floor ``n · eps_dtype · λ_max`` (n the
matrix size, eps_dtype the machine epsilon of the dtype the kernel was computed in) is not
distinguishable from zero by rounding. Such a λ_min is reported as 0 with ``degenerate=True``;
this is the case for disconnected NB201 cells (no input→output path; e.g. index 10), whose
output does not depend on the input, so every row of the Jacobian is the same and the kernel
is constant (rank ≤ 1) or zero. Nothing here raises or returns NaN for such kernels:
``cond`` is +inf and ``logdet`` −inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrum:
    """Summary of a symmetric PSD kernel's spectrum (all float64).

    Attributes:
        lambda_min: smallest eigenvalue, 0.0 when below the resolution floor.
        lambda_max: largest eigenvalue.
        cond: λ_max / λ_min (TE-NAS's score), +inf when degenerate.
        trace: Σ λ.
        logdet: Σ log λ, −inf when degenerate.
        degenerate: λ_min was below the resolution floor (numerically singular kernel).
        floor: the resolution floor n · eps_dtype · λ_max used.
    """

    lambda_min: float
    lambda_max: float
    cond: float
    trace: float
    logdet: float
    degenerate: bool
    floor: float


def as_matrix(K) -> np.ndarray:
    """(B, B) → itself; (B, B, O, O) 'full' kernel → (B·O, B·O) with index (i, a); float64.

    Raises:
        ValueError: not a square 2-D or (B, B, O, O) array.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 4 and K.shape[0] == K.shape[1] and K.shape[2] == K.shape[3]:
        B, _, O, _ = K.shape
        K = K.transpose(0, 2, 1, 3).reshape(B * O, B * O)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"kernel must be square (n, n) or (B, B, O, O), got shape {K.shape}")
    return K


def eigenvalues(K) -> np.ndarray:
    """Ascending eigenvalues of the symmetrised kernel, float64 (n,)."""
    K = as_matrix(K)
    return np.linalg.eigvalsh(0.5 * (K + K.T))


def spectrum(K, computed_dtype=np.float32) -> Spectrum:
    """Spectrum summary of a kernel.

    Args:
        K: (n, n) or (B, B, O, O) kernel (any float dtype; a jax array is fine).
        computed_dtype: dtype the kernel was *computed* in (sets the resolution floor); defaults
            to float32, use float64 for kernels computed with x64.

    Returns:
        :class:`Spectrum`. Never NaN for finite input.

    Raises:
        ValueError: non-square input, or non-finite entries (the message says how many).
    """
    Km = as_matrix(K)
    bad = int(np.size(Km) - np.count_nonzero(np.isfinite(Km)))
    if bad:
        raise ValueError(f"kernel has {bad} non-finite entries (NaN/inf); cannot compute its spectrum")
    ev = eigenvalues(Km)
    n = ev.shape[0]
    lmax = float(max(ev[-1], 0.0))
    floor = n * float(np.finfo(computed_dtype).eps) * lmax
    lmin_raw = float(ev[0])
    degenerate = lmax == 0.0 or lmin_raw <= floor
    lmin = 0.0 if degenerate else lmin_raw
    pos = np.clip(ev, 0.0, None)
    trace = float(np.sum(ev))
    if degenerate:
        cond, logdet = float("inf"), float("-inf")
    else:
        cond, logdet = lmax / lmin, float(np.sum(np.log(pos)))
    return Spectrum(lmin, lmax, cond, trace, logdet, bool(degenerate), floor)
