"""robntk.theory: the theory setting of NAS-RobBench-201 §4 — networks, kernels, λ_min bounds.

Residual FCN/CNN with searchable activations and skips (NTK parametrisation, unit-sphere
inputs, scalar output), their empirical and infinite-width NTKs, Hermite coefficients, and
rigorous Hermite/Gershgorin lower bounds on λ_min of the mixed robust kernels K_all(β),
K̃_all(β). Derivations and the exact implemented formulas: docs/theory-bounds.md.

Usage::

    import jax, jax.numpy as jnp
    import numpy as np
    from robntk.theory import ResFCN, analytic_ntk, lambda_min_bound, make_network, sphere_points

    arch = ResFCN(("relu", "tanh", "gelu"), skips=(1, 1), in_dim=32)
    X, y = sphere_points(16, 32, seed=0)                 # (16, 32) unit rows, ±1 labels
    K_inf = analytic_ntk(arch, X)                        # (16, 16) float64
    b = lambda_min_bound(arch, X)                        # Bound(value=..., best_r=...)
    assert b.value <= np.linalg.eigvalsh(K_inf)[0]

    with jax.enable_x64(True):
        init, f = make_network(arch, width=1024, dtype=jnp.float64)
        params = init(jax.random.PRNGKey(0))             # f(params, X) -> (16, 1)

Modules: :mod:`.activations`, :mod:`.hermite` (μ_r, duals), :mod:`.arch` (specs, layer
constants), :mod:`.networks` (JAX), :mod:`.infinite` (analytic NTK, Taylor/path coefficients),
:mod:`.adversary` (spherical PGD), :mod:`.bounds`, :mod:`.data`, :mod:`.grid` (the bound-check
grid), :mod:`.experiment`, :mod:`.plots` (``robntk bound`` is :mod:`robntk.commands.bound`;
:func:`check_override` type-checks its ``--config`` grid overrides). Importing this package does
not change JAX's global configuration (use ``jax.enable_x64(True)`` around float64 work).
"""

from robntk.theory.activations import ACTIVATIONS, LEAKY_SLOPE, check_activation
from robntk.theory.adversary import (
    angular_radius,
    check_rho,
    perturb_sphere,
    project_cap,
    random_cap_points,
    sphere_pgd,
)
from robntk.theory.arch import ResCNN, ResFCN, layer_constants, skip_pattern
from robntk.theory.bounds import (
    Bound,
    apriori_bound,
    bound_coefficients,
    gram_lower_bounds,
    kernel_bounds,
    lambda_min_bound,
    pair_grams,
    power_grams,
)
from robntk.theory.data import normalise, separation, sphere_points
from robntk.theory.grid import check_override
from robntk.theory.hermite import derivative_hermite, dual, dual_derivative, hermite_coefficients
from robntk.theory.infinite import (
    analytic_family,
    analytic_ntk,
    fcn_ntk_dual,
    fcn_taylor_coefficients,
    path_coefficients,
)
from robntk.theory.networks import arch_arrays, fcn_ntk_structured, init_params, make_network

__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "check_activation",
    "angular_radius",
    "check_rho",
    "perturb_sphere",
    "project_cap",
    "random_cap_points",
    "sphere_pgd",
    "ResCNN",
    "ResFCN",
    "layer_constants",
    "skip_pattern",
    "Bound",
    "apriori_bound",
    "bound_coefficients",
    "gram_lower_bounds",
    "kernel_bounds",
    "lambda_min_bound",
    "pair_grams",
    "power_grams",
    "normalise",
    "separation",
    "sphere_points",
    "check_override",
    "derivative_hermite",
    "dual",
    "dual_derivative",
    "hermite_coefficients",
    "analytic_family",
    "analytic_ntk",
    "fcn_ntk_dual",
    "fcn_taylor_coefficients",
    "path_coefficients",
    "arch_arrays",
    "fcn_ntk_structured",
    "init_params",
    "make_network",
]
