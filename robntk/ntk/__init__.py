"""Empirical neural tangent kernels and their spectra.

One entry point, shaped like neural-tangents' (:func:`empirical_ntk_fn`,
:mod:`~robntk.ntk.ntk_fn`)::

    from robntk.ntk import empirical_ntk_fn
    ntk_fn = empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation="jacobian")
    K = ntk_fn(x1, None, params)                     # (N, N): mean over logits, as neural-tangents

dispatching through one table, :data:`IMPLEMENTATIONS` (neural-tangents' integer codes:
:data:`NT_IMPLEMENTATION_CODES`), to the implementations below it:

* :mod:`~robntk.ntk.empirical` — any ``f(params, x)``: Jacobian contraction and NTK-vector
  products with robntk's output modes (``'sum'``, ``'label'``, ``'trace'`` = sum over logits,
  ``'full'``), finite differences;
* :mod:`~robntk.ntk.layerwise` — the exact per-layer NTK of the NB201 network in both BN modes;
* :mod:`~robntk.ntk.kernels` — the clean / robust / cross / mixed kernel family of one batch and
  its PGD-perturbed copies (Wu et al., ICLR 2024, Eq. 4–5), the pipeline's kernels;
* :mod:`~robntk.ntk.spectra` — λ_min, λ_max, condition number, log-determinant of a kernel.
"""

from robntk.ntk.empirical import (
    GENERIC_IMPLEMENTATIONS,
    IMPLEMENTATIONS,
    NT_IMPLEMENTATION_CODES,
    OUTPUT_MODES,
    empirical_ntk,
    finite_difference_ntk,
)
from robntk.ntk.kernels import KernelFamily, kernel_families, kernel_family, mixed_kernel, stacked_gram
from robntk.ntk.ntk_fn import empirical_ntk_fn, resolve_implementation
from robntk.ntk.spectra import Spectrum, spectrum

__all__ = [
    "GENERIC_IMPLEMENTATIONS",
    "IMPLEMENTATIONS",
    "KernelFamily",
    "NT_IMPLEMENTATION_CODES",
    "OUTPUT_MODES",
    "Spectrum",
    "empirical_ntk",
    "empirical_ntk_fn",
    "finite_difference_ntk",
    "kernel_families",
    "kernel_family",
    "mixed_kernel",
    "resolve_implementation",
    "spectrum",
    "stacked_gram",
]
