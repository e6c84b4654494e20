"""Proxies from activations and input Jacobians at initialisation: ``nwot`` (Mellor et al. 2021),
``linear_regions`` (TE-NAS), ``jacov`` and ``epe_nas``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3
from robntk.nb201.layers import batch_norm, normalize
from robntk.nb201.searchspace import NUM_EDGES
from robntk.proxies._common import _ids, _nan_unless_connected, _plain_net


# --------------------------------------------------------------------------- activation proxies
def relu_inputs(net, variables, cell, x) -> list[tuple[jax.Array, jax.Array]]:
    """Pre-activation inputs of every ReLU module of the network of ``cell``, train-mode BN:
    ``(z, active)`` with z (B, ...) and ``active`` 1.0 when the ReLU runs for this cell.

    These are the ReLUs NASLib's nwot hooks (every ``nn.ReLU``): the ReLU of each chosen conv
    edge (``ReLUConvBN``), of ``conv_a`` and ``conv_b`` of both reduction blocks, and
    ``lastact``'s ReLU (after its BN)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    shapes = pn.tap_shapes(x.shape)
    taps = {k: jnp.zeros(s, xn.dtype) for k, s in shapes.items()}
    _, rec = pn.forward(variables["params"], None, xn, cell, True, taps=taps)
    ids = _ids(cell)
    out = []
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            out += [(rec[f"{name}/conv_a/in"], jnp.ones(())), (rec[f"{name}/conv_b/in"], jnp.ones(()))]
            continue
        for e in range(NUM_EDGES):
            if f"{name}/e{e}/in" in rec:
                out.append((rec[f"{name}/e{e}/in"], ((ids[e] == CONV1) | (ids[e] == CONV3)).astype(xn.dtype)))
    last, _ = batch_norm(rec["lastact/conv_out"], variables["params"]["lastact_bn"], None, True)
    out.append((last, jnp.ones(())))
    return out


def _code_agreement(net, variables, cell, x) -> tuple[jax.Array, jax.Array]:
    """(A, D): A (B, B) the number of ReLU units on which examples i and j have the same binary
    code 1[z > 0] (Σ over the ReLUs of :func:`relu_inputs` of c·cᵀ + (1 − c)(1 − c)ᵀ, c (B, D_r)
    the flattened codes), and D the number of units of the ReLUs that run for the cell; the
    Hamming distance of the codes is D − A. Integer-valued in the input's float dtype (exact
    below 2²⁴ units in float32)."""
    A, D = 0.0, 0.0
    for z, a in relu_inputs(net, variables, cell, x):
        c = (z.reshape(z.shape[0], -1) > 0).astype(z.dtype)
        A = A + a * (c @ c.T + (1 - c) @ (1 - c).T)
        D = D + a * c.shape[1]
    return A, D


def nwot(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``nwot``: log|K_H| (Mellor et al., "Neural Architecture Search without Training", ICML
    2021; NASLib ``measures/nwot.py``), K_H = Σ_ReLUs c·cᵀ + (1 − c)(1 − c)ᵀ with c (B, D) the
    binary codes 1[z > 0] of each ReLU's input z (flattened per example), over the ReLUs of
    :func:`relu_inputs`; train-mode BN. Returns: the log-determinant (``slogdet``'s second
    value, sign ignored as NASLib does), float64 under x64. Shapes: x (B, H, W, 3) → K (B, B)."""
    return jnp.linalg.slogdet(_code_agreement(net, variables, cell, x)[0])[1]


def linear_regions(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``linear_regions``: number of distinct ReLU activation patterns of the batch (Chen et al.,
    "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically Inspired
    Perspective" (TE-NAS), ICLR 2021; reference VITA-Group/TENAS
    ``lib/procedures/linear_region_counter.py``, ``LinearRegionCount.calc_LR``).

    Counting rule: the pattern of example b is the concatenation over every ReLU of
    :func:`relu_inputs` (the ``nn.ReLU`` modules TE-NAS hooks) of the binary codes 1[z > 0]
    (= sign of the ReLU output) of all its units; two examples are in the same region iff
    their patterns are equal (Hamming distance 0); the count is Σ_b 1 / #{b' : pattern(b') =
    pattern(b)}, i.e. exactly the number of distinct patterns (TE-NAS's ``calc_LR``; here
    counted exactly, TE-NAS compares in float16). Train-mode BN (patterns depend on the whole
    batch). TE-NAS's own protocol (3×3-pixel inputs, 1,000 samples, a thin C=3/N=1 copy of the
    network, kaiming init, 3 repeats) is not mirrored: this counts over the batch ``x`` on the
    network as given.

    Args: see module docstring; x (B, H, W, 3) in [0, 1]. Returns: float scalar in [1, B]
        (params dtype); NaN for a cell without an input→output path (the network is then
        constant in its input and has one linear region whatever the hidden patterns).
    """
    A, D = _code_agreement(net, variables, cell, x)
    same = (A == D).astype(A.dtype)
    return _nan_unless_connected(jnp.sum(1.0 / jnp.sum(same, axis=1)), cell)


def _input_jacobian(net, variables, cell, x) -> jax.Array:
    """(B, H·W·3) rows of ∂(Σ_{b,k} f(x)_{bk})/∂x̂ on the normalised input x̂, train-mode BN (the
    ``y.backward(ones)`` input Jacobian of NASLib's jacov and epe_nas)."""
    pn = _plain_net(net)
    xn = normalize(x, net.dataset)
    J = jax.grad(lambda z: jnp.sum(pn.forward(variables["params"], None, z, cell, True)[0]))(xn)
    return J.reshape(J.shape[0], -1)


def _corrcoef(J: jax.Array) -> jax.Array:
    """Row correlation matrix (B, B) of J (B, D) (``numpy.corrcoef``); NaN rows for constant rows."""
    Jc = J - J.mean(axis=1, keepdims=True)
    cov = Jc @ Jc.T
    d = jnp.sqrt(jnp.diag(cov))
    return cov / (d[:, None] * d[None, :])


def jacov(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``jacov``: Jacobian covariance (Mellor et al. 2020, v1 of arXiv 2006.04647; NASLib
    ``measures/jacov.py``): J = ∂(Σ_{b,k} f(x)_{bk})/∂x on the normalised input (train-mode BN,
    so rows couple through the batch), rows flattened (B, H·W·3), Σ = corrcoef(J) (B, B),
    score = −Σ_i [log(λ_i + 1e-5) + 1/(λ_i + 1e-5)] over the eigenvalues λ of Σ. Returns:
    scalar; NaN when a row of J is constant (correlation undefined), in particular for a cell
    without an input→output path (J = 0)."""
    return input_jacobian_proxies(net, variables, cell, x, y)["jacov"]


def epe_nas(net, variables, cell, x, y, key=None) -> jax.Array:
    """``epe_nas``: per-class correlation of input Jacobians (Lopes, Alirezazadeh, Alexandre,
    "EPE-NAS: Efficient Performance Estimation Without Training for Neural Architecture
    Search", ICANN 2021; NASLib ``measures/epe_nas.py``, from VascoLopes/EPE-NAS ``search.py``).

    J (B, H·W·3): the input Jacobian of :func:`jacov` (Σ of all logits, normalised input,
    train-mode BN). For every class c present in ``y``: R_c = corrcoef of the rows of J with
    label c (a (1, 1) matrix [1] for a single row, as ``numpy.corrcoef`` of one vector), and
    s_c = Σ_{ij} log(|R_c,ij| + 1e-5). With K = ``net.num_classes``:

    * K ≤ 100: score = Σ_c |s_c|;
    * K > 100: s_c is divided by n_c (the class's row count); classes with one row are skipped
      (NASLib's ``len`` of a scalar raises and the class is dropped); score =
      Σ_{c, c'} |s_c − s_c'| / #classes kept (NaN when none is kept: NASLib's division by zero
      is caught and returns NaN).

    Computed from the full (B, B) correlation matrix (a class block of it equals the
    correlation matrix of that class's rows). Args: see module docstring; y (B,) int labels in
    [0, K). Returns: scalar (params dtype); NaN when a row of J is constant (e.g. a cell without
    an input→output path).
    """
    return input_jacobian_proxies(net, variables, cell, x, y)["epe_nas"]


def input_jacobian_proxies(net, variables, cell, x, y, key=None) -> dict[str, jax.Array]:
    """``jacov`` and ``epe_nas`` from ONE input Jacobian (:func:`_input_jacobian`, one backward
    pass) and its row correlation matrix; :func:`proxy_table` calls this once per arch for both
    (:data:`GROUPS`). Args: see module docstring; x (B, H, W, 3) in [0, 1], y (B,) int labels
    in [0, K). Returns: dict name → scalar (params dtype), NaN as the two proxies define it;
    raises nothing of its own. Sources: NASLib ``measures/jacov.py`` and ``epe_nas.py``."""
    R = _corrcoef(_input_jacobian(net, variables, cell, x))
    v = jnp.linalg.eigvalsh(R)
    k = 1e-5
    L = jnp.log(jnp.abs(R) + 1e-5)
    onehot = jax.nn.one_hot(y, net.num_classes, dtype=L.dtype)  # (B, K)
    s = jnp.einsum("ic,ij,jc->c", onehot, L, onehot)
    n = onehot.sum(axis=0)
    if net.num_classes <= 100:
        epe = jnp.sum(jnp.where(n > 0, jnp.abs(s), 0.0))
    else:
        keep = (n > 1).astype(L.dtype)
        sc = s / jnp.maximum(n, 1.0)
        pair = jnp.abs(sc[:, None] - sc[None, :]) * keep[:, None] * keep[None, :]
        epe = jnp.sum(pair) / jnp.sum(keep)
    return {"jacov": -jnp.sum(jnp.log(v + k) + 1.0 / (v + k)), "epe_nas": epe}
