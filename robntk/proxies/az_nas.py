"""AZ-NAS (``az_expressivity``, ``az_progressivity``, ``az_trainability``; Lee & Ham, CVPR
2024): the block features, the three network-level scores, and the population-level rank
aggregation :func:`az_nas_rank`.

Every proxy has the suite's signature (:mod:`robntk.proxies`, and the notes shared by the newer
proxies there). The authors' protocol (``NB201/tss_general*.py|ipynb`` of cvlab-yonsei/AZ-NAS):
kaiming-normal (fan_in) weights (robntk ``init_scheme='kaiming'``), a batch of 64 N(0, 1) images
fed to the stem without normalisation (pass ``TinyNetwork(dataset=None)`` and Gaussian ``x``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.nb201.layers import _Run
from robntk.nb201.network import TinyNetwork
from robntk.proxies._blocks import _blocks
from robntk.proxies._common import _nan_unless_connected

#: AZ-NAS's entropy offset (``compute_az_nas_score.py:144``) and trainability offset (:189).
_AZ_LOG_EPS, _AZ_SV_EPS = 1e-8, 1e-6


def block_features(net: TinyNetwork, variables, cell, x) -> list[jax.Array]:
    """The 3N + 3 feature maps of AZ-NAS (``extract_cell_features``): the stem output (after its
    BN) and the output of every block (N cells, reduction, N cells, reduction, N cells), each
    (B, H, W, C), train-mode BN (batch statistics), from x (B, H, W, 3) in [0, 1] (normalised by
    ``net.dataset``). Raises nothing of its own."""
    stem, fns = _blocks(net, variables["params"], cell, _Run(None, True, None, None))
    feats = [stem(x)]
    for f in fns:
        feats.append(f(feats[-1]))
    return feats


def _entropy_of_spectrum(feat: jax.Array) -> jax.Array:
    """AZ-NAS's per-feature expressivity: the entropy −Σ p log(p + 1e-8) of the normalised
    eigenvalues p = s / Σ s of the (biased) channel covariance of ``feat`` (B, H, W, C) over its
    B·H·W positions (``compute_az_nas_score.py:136-146``)."""
    f = feat.reshape(-1, feat.shape[-1])
    f = f - f.mean(axis=0, keepdims=True)
    s = jnp.linalg.eigvalsh(f.T @ f / f.shape[0])
    p = s / s.sum()
    return jnp.sum(-p * jnp.log(p + _AZ_LOG_EPS))


def _pixel_unshuffle(g: jax.Array, r: int) -> jax.Array:
    """(B, H, W, C) → (B, H/r, W/r, C·r²): ``torch.nn.PixelUnshuffle(r)`` in NHWC (the channel
    order differs from PyTorch's, which leaves the singular values below unchanged)."""
    B, H, W, C = g.shape
    g = g.reshape(B, H // r, r, W // r, r, C)
    return g.transpose(0, 1, 3, 2, 4, 5).reshape(B, H // r, W // r, r * r * C)


def _trainability_term(g_in: jax.Array, g_out: jax.Array) -> jax.Array:
    """One block's AZ-NAS trainability (``compute_az_nas_score.py:165-189``): −∞ when the block
    passes the cotangent through unchanged (g_in == g_out), else −σ − 1/(σ + 1e-6) + 2 with σ the
    largest singular value of g_inᵀ g_out / (B·H·W) (g_in pixel-unshuffled to g_out's grid)."""
    same = jnp.asarray(False)
    if g_in.shape == g_out.shape:
        same = jnp.all(g_in == g_out)
    else:
        g_in = _pixel_unshuffle(g_in, g_in.shape[1] // g_out.shape[1])
    a = g_in.reshape(-1, g_in.shape[-1])
    b = g_out.reshape(-1, g_out.shape[-1])
    m = a.T @ b / b.shape[0]
    s = jnp.linalg.svd(m, compute_uv=False)[0]
    return jnp.where(same, -jnp.inf, -s - 1.0 / (s + _AZ_SV_EPS) + 2.0)


def az_nas_cotangents(net: TinyNetwork, x_shape: Sequence[int], key: jax.Array, dtype=jnp.float32) -> list[jax.Array]:
    """The random ±1 (Rademacher, p = 1/2) output cotangents of AZ-NAS's trainability, one per
    block k = 1 … 3N+2 with the shape of that block's output (``compute_az_nas_score.py:162-163``:
    ``(bernoulli(0.5) − 0.5)·2``), drawn from ``fold_in(key, k)``. Args: x_shape (B, H, W, 3).
    Returns: list of 3N + 2 arrays (B, H_k, W_k, C_k) of ``dtype``."""
    B, H, W = x_shape[:3]
    out = []
    for k, (_, kind, w) in enumerate(net.cell_positions(), start=1):
        if kind == "reduce":
            H, W = H // 2, W // 2
        out.append(jax.random.rademacher(jax.random.fold_in(key, k), (B, H, W, w), dtype))
    return out


def az_nas_proxies(net, variables, cell, x, y=None, key=None, cotangents=None) -> dict[str, jax.Array]:
    """AZ-NAS's three network-level scores from one forward pass and one VJP per block (Lee & Ham,
    "AZ-NAS: Assembling Zero-Cost Proxies for Network Architecture Search", CVPR 2024; reference
    cvlab-yonsei/AZ-NAS ``NB201/ZeroShotProxy/compute_az_nas_score.py:109-197``, the features of
    ``NB201/custom/tss_model.py:54``). :func:`proxy_table` calls it once per arch for all three.

    With f_0 the stem output and f_k the output of block k (:func:`block_features`, L = 3N + 3
    maps, train-mode BN) and e_k = −Σ p log(p + 1e-8) the entropy of the normalised spectrum of
    f_k's channel covariance (:func:`_entropy_of_spectrum`):

    * ``az_expressivity`` = Σ_k e_k;
    * ``az_progressivity`` = min_k (e_k − e_{k−1});
    * ``az_trainability`` = mean over blocks k ≥ 1 of −σ_k − 1/(σ_k + 1e-6) + 2, σ_k the largest
      singular value of g_inᵀ g_out / n for g_out a random ±1 cotangent at f_k and g_in =
      (∂f_k/∂f_{k−1})ᵀ g_out (the block's VJP, batch-statistics BN included; pixel-unshuffled
      to f_k's grid at the reduction blocks); −∞ for a block that passes g_out through
      unchanged (an identity cell), as the reference;
    * ``az_complexity`` is FLOPs: robntk's ``flops`` proxy (the reference takes it from the
      benchmark API).

    Mirrored: features, covariance normalisation (÷ B·H·W), eigen/singular-value formulas and
    offsets, the −∞ rule. The reference maps a NaN score to −∞ (ranked last); here it stays NaN
    and :func:`proxy_table` flags it (:func:`az_nas_rank` callers may fill −∞ as the reference).

    .. warning:: In float32, the deep features of skip/pool-heavy cells are large and the
       covariance spectrum spans more than float32 resolves: ``eigvalsh`` returns eigenvalues
       below −1e-8·Σs and e_k is NaN, exactly as in the float32 reference (18 % of the first
       321 NAS-RobBench-201 representatives; e.g. NB201 index 13847: finite in float64). The cotangents come from JAX's PRNG (``key``), so values
    equal the reference's for the same cotangents (``cotangents``), in distribution otherwise.

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3) in [0, 1]. key: PRNG key of the ±1
        cotangents (:func:`az_nas_cotangents`; required unless ``cotangents`` is given).
        cotangents: optional list of 3N + 2 arrays shaped as the block outputs.

    Returns: dict ``az_expressivity``, ``az_progressivity``, ``az_trainability`` → scalar
        (params dtype); NaN for a cell without an input→output path.

    Raises: ValueError: neither key nor cotangents.
    """
    params = variables["params"]
    if cotangents is None:
        if key is None:
            raise ValueError("az_nas_proxies needs a PRNG key (random ±1 cotangents) or cotangents")
        cotangents = az_nas_cotangents(net, x.shape, key, params["stem_conv"]["kernel"].dtype)
    stem, fns = _blocks(net, params, cell, _Run(None, True, None, None))
    feats, vjps = [stem(x)], []
    for f in fns:
        out, vjp = jax.vjp(f, feats[-1])
        feats.append(out)
        vjps.append(vjp)
    e = jnp.stack([_entropy_of_spectrum(f) for f in feats])
    tr = jnp.stack([_trainability_term(vjp(g)[0], g) for vjp, g in zip(vjps, cotangents)])
    out = {"az_expressivity": e.sum(), "az_progressivity": jnp.min(e[1:] - e[:-1]), "az_trainability": tr.mean()}
    return {k: _nan_unless_connected(v, cell) for k, v in out.items()}


def az_expressivity(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``az_expressivity`` of :func:`az_nas_proxies` (scalar; NaN for a disconnected cell)."""
    return az_nas_proxies(net, variables, cell, x, y, key)["az_expressivity"]


def az_progressivity(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``az_progressivity`` of :func:`az_nas_proxies` (scalar; NaN for a disconnected cell)."""
    return az_nas_proxies(net, variables, cell, x, y, key)["az_progressivity"]


def az_trainability(net, variables, cell, x, y=None, key=None) -> jax.Array:
    """``az_trainability`` of :func:`az_nas_proxies` (scalar ≤ 0 or −∞; needs ``key``)."""
    return az_nas_proxies(net, variables, cell, x, y, key)["az_trainability"]


# --------------------------------------------------------------------------- rank aggregation
def az_nas_rank(
    scores: pd.DataFrame,
    columns: Sequence[str] = ("az_expressivity", "az_progressivity", "az_trainability", "flops"),
) -> pd.Series:
    """AZ-NAS's non-linear rank aggregation over a population of archs (reference
    cvlab-yonsei/AZ-NAS ``NB201/tss_general.ipynb`` (``rank_agg``: Σ log(rankdata(s) / n) over
    FLOPs, expressivity, progressivity, trainability), also ondratybl/VKDNW
    ``NB201/tss_utils.py:341-351`` at commit 19cad2f): Σ_c log(r_c) with r_c the percentile rank
    of column c (average rank / n; :func:`robntk.analysis.combine.normalised_ranks`, the helper
    ``geometric_rank`` uses, of which this is a monotone transform). Higher = better.

    Args: scores: DataFrame with the columns (one row per arch; index kept). columns: the
        component columns (defaults: AZ-NAS's four, ``flops`` being its complexity).
    Returns: float64 Series (≤ 0) named ``az_nas``; NaN where any component is NaN (the
        reference scores NaN as −∞ before ranking; here such rows are not ranked).
    Raises: ValueError: a missing or non-numeric column.
    """
    from robntk.analysis.combine import normalised_ranks

    r = normalised_ranks(scores, list(columns)).to_numpy()
    return pd.Series(np.log(r).sum(axis=1), index=scores.index, name="az_nas")
