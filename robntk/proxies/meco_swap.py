"""Activation-statistics proxies from one forward pass: MeCo (``meco``; Jiang et al., NeurIPS
2023) and SWAP (``swap``, ``swap_reg``; Peng et al., ICLR 2024).

Every proxy has the suite's signature (:mod:`robntk.proxies`, and the notes shared by the newer
proxies there). The authors' protocols:

* MeCo (HamsterMimi/MeCo ``correlation/NAS_Bench_201.py:61,93-126``): one real image
  (``--batch_size 1``), PyTorch default init;
* SWAP (pym1024/SWAP ``correlation.py:26,46-56``): 16 real images, N(0, 1) Conv/Linear weights
  (``network_weight_gaussian_init``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3
from robntk.nb201.layers import _Run, batch_norm, conv
from robntk.nb201.searchspace import NUM_EDGES
from robntk.proxies._blocks import _blocks
from robntk.proxies._common import _ids, _nan_unless_connected
from robntk.proxies.activation import relu_inputs
from robntk.proxies.closed_form import param_count

#: SWAP's batch (``pym1024/SWAP correlation.py:26``, ``--input_samples 16``).
SWAP_SAMPLES = 16


# --------------------------------------------------------------------------- MeCo
def _corr_min_eig(f: jax.Array) -> jax.Array:
    """MeCo's per-layer value: the smallest eigenvalue of ``torch.corrcoef`` of the rows of f
    (C, M) (clipped to [−1, 1], NaN/inf entries set to 0; ``meco.py:34-39``)."""
    fc = f - f.mean(axis=1, keepdims=True)
    cov = fc @ fc.T / (f.shape[1] - 1)
    d = jnp.sqrt(jnp.diag(cov))
    c = jnp.clip(cov / (d[:, None] * d[None, :]), -1.0, 1.0)
    c = jnp.where(jnp.isfinite(c), c, 0.0)
    return jnp.linalg.eigvalsh(c)[0]


def meco_layers(net, variables, cell, x) -> list[tuple[jax.Array, jax.Array]]:
    """The feature maps MeCo scores, ``(z, active)`` with z (B, H, W, C), train-mode BN: the
    output of every Conv2d (stem, each chosen conv edge, each reduction block's conv_a, conv_b
    and shortcut conv) and of every BatchNorm2d (the same convs' BNs and lastact's BN), and the
    output of every block of :func:`robntk.proxies.az_nas.block_features` (the stem's ``nn.Sequential``, whose map is
    its BN's, counted again as a hook on every module counts it; each cell and reduction block). ``active`` is 1.0 when the module runs for the cell."""
    params = variables["params"]
    taps = {k: jnp.zeros(s, params["stem_conv"]["kernel"].dtype) for k, s in net.tap_shapes(x.shape).items()}
    run = _Run(None, True, taps, None)
    stem, fns = _blocks(net, params, cell, run)
    feats = [stem(x)]
    for f in fns:
        feats.append(f(feats[-1]))
    rec, ids, one = run.rec, _ids(cell), jnp.ones(())
    bn = lambda z, p: batch_norm(z, p, None, True)[0]
    # the stem's conv and BN outputs, then the stem (nn.Sequential: the same map again) and blocks
    out = [(rec["stem/conv_out"], one), (feats[0], one)] + [(f, one) for f in feats]
    for k, kind, _ in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            for sub in ("conv_a", "conv_b"):
                z = rec[f"{n}/{sub}/conv_out"]
                out += [(z, one), (bn(z, params[n][sub]["bn"]), one)]
            out.append((conv(rec[f"{n}/downsample/in"], params[n]["downsample"]["kernel"]), one))
            continue
        for e in range(NUM_EDGES):
            if f"{n}/e{e}/conv_out" not in rec:
                continue
            z = rec[f"{n}/e{e}/conv_out"]
            p1, p3 = params[n][f"e{e}_nor_conv_1x1"]["bn"], params[n][f"e{e}_nor_conv_3x3"]["bn"]
            pb = jax.tree_util.tree_map(lambda a, b: jnp.where(ids[e] == CONV3, b, a), p1, p3)
            a = ((ids[e] == CONV1) | (ids[e] == CONV3)).astype(z.dtype)
            out += [(z, a), (bn(z, pb), a)]
    h = feats[-1]
    out.append((bn(h, params["lastact_bn"]), one))
    return out


def meco(net, variables, cell, x, y=None, key=None, samples: int = 1) -> jax.Array:
    """``meco``: Σ over layers of the smallest eigenvalue of the channel correlation matrix of
    the layer's feature map of one image (Jiang, Wang, Bie, "MeCo: Zero-Shot NAS with One Data
    and Single Forward Pass via Minimum Eigenvalue of Correlation", NeurIPS 2023; reference
    HamsterMimi/MeCo ``correlation/NAS_Bench_201.py:11-43``, ``get_score`` with
    ``measure='meco'``).

    The network runs on the first ``samples`` images (train-mode BN on them, the reference's
    batch of 1); for every layer of :func:`meco_layers`, the first image's map (H, W, C) is
    read as C rows of H·W values; R = corrcoef of the rows (clipped to [−1, 1], NaN → 0);
    score = Σ_layers λ_min(R) (NaN/inf layer values dropped; ``eigvalsh``, R is symmetric).

    **Not mirrored**: the reference hooks *every* ``nn.Module`` of its own NB201 model (the
    foresight ``nasbench2`` variant: ReLUs, pooling and identity ops, containers, the
    classifier, whose maps without spatial extent add 0). Here the layers are the Conv2d and
    BatchNorm2d outputs and block outputs of robntk's NB201 TinyNetwork (:func:`meco_layers`);
    the per-layer formula and the sum are the reference's.

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3) in [0, 1], B ≥ ``samples`` ≥ 1.
    Returns: scalar (params dtype); NaN for a cell without an input→output path.
    Raises: ValueError: samples < 1 or > B.
    """
    if not isinstance(samples, int) or not 1 <= samples <= x.shape[0]:
        raise ValueError(f"meco needs 1 <= samples <= batch size {x.shape[0]}, got {samples!r}")
    tot = 0.0
    for z, a in meco_layers(net, variables, cell, x[:samples]):
        v = _corr_min_eig(z[0].reshape(-1, z.shape[-1]).T)
        tot = tot + jnp.where(jnp.isfinite(v), a * v, 0.0)
    return _nan_unless_connected(tot, cell)


# --------------------------------------------------------------------------- SWAP
def _count_unique_rows(bits: jax.Array) -> jax.Array:
    """Number of distinct rows of a 0/1 matrix (D, B) (``torch.unique(dim=0).size(0)``), rows
    packed into ⌈B/32⌉ uint32 words and sorted lexicographically."""
    D, B = bits.shape
    W = -(-B // 32)
    b = jnp.pad(bits.astype(jnp.uint32), ((0, 0), (0, 32 * W - B))).reshape(D, W, 32)
    words = jnp.sum(b << jnp.arange(32, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)  # (D, W)
    order = jnp.lexsort(tuple(words[:, w] for w in reversed(range(W))))
    s = words[order]
    new = jnp.any(s[1:] != s[:-1], axis=1)
    return 1 + jnp.sum(new)


def swap(net, variables, cell, x, y=None, key=None, samples: int | None = SWAP_SAMPLES) -> jax.Array:
    """``swap``: the SWAP-score, the number of distinct sample-wise activation patterns (Peng,
    Song, Fayek, Ciesielski, Chang, "SWAP-NAS: Sample-Wise Activation Patterns for Ultra-fast
    NAS", ICLR 2024; reference pym1024/SWAP ``src/metrics/swap.py:14-94``).

    On the first ``samples`` images (train-mode BN on them): the outputs of every ``nn.ReLU``
    with a 4-D input (:func:`robntk.proxies.activation.relu_inputs`: the conv edges' ReLUs, the
    reduction blocks' and lastact's) are concatenated per image into A (S, D); the patterns are
    the D columns of sign(A) (each neuron's S-bit on/off vector across the images); score = the
    number of distinct patterns (``torch.unique(sign(A)ᵀ, dim=0)``).

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3) in [0, 1]. samples: S, the first
        min(S, B) images are used (None: the whole batch; the reference's default is 16).
    Returns: scalar ≥ 1 (params dtype; an exact count); NaN for a cell without an input→output
        path. Raises: ValueError: samples not a positive int or None.
    """
    S = x.shape[0] if samples is None else samples
    if not isinstance(S, int) or S < 1:
        raise ValueError(f"swap needs samples >= 1 (or None), got {samples!r}")
    S = min(S, x.shape[0])
    rel = relu_inputs(net, variables, cell, x[:S])
    last = (rel[-1][0].reshape(S, -1) > 0).T  # lastact's ReLU always runs: its first row is a sentinel
    rows = []
    for z, a in rel:
        bits = (z.reshape(S, -1) > 0).T  # (D_l, S)
        rows.append(jnp.where(a > 0, bits, last[:1]))
    dtype = variables["params"]["stem_conv"]["kernel"].dtype
    return _nan_unless_connected(_count_unique_rows(jnp.concatenate(rows, axis=0)).astype(dtype), cell)


#: SWAP's size regulariser: μ and σ in thousands of parameters (robntk's choice: the reference
#: code leaves them to the caller, ``swap.py:6-11,52-53``; μ = 1,000 K, σ = 1,000² K²).
SWAP_MU, SWAP_SIGMA = 1000.0, 1.0e6


def swap_reg(
    net, variables, cell, x, y=None, key=None, mu: float = SWAP_MU, sigma: float = SWAP_SIGMA, samples=SWAP_SAMPLES
) -> jax.Array:
    """``swap_reg``: the regularised SWAP-score ``swap · exp(−(P − μ)² / σ)`` with P the
    parameter count in thousands (reference ``src/metrics/swap.py:6-11``, ``count_parameters``
    of ``src/utils/utilities.py:11-12``: every parameter / 1e3). μ, σ: in K and K²
    (defaults :data:`SWAP_MU`, :data:`SWAP_SIGMA`, a stated robntk choice: the paper tunes them
    per search space). Args as :func:`swap`. Returns: scalar ≥ 0; NaN where ``swap`` is.
    Raises: ValueError: σ ≤ 0, or as :func:`swap`."""
    if not sigma > 0:
        raise ValueError(f"swap_reg needs sigma > 0, got {sigma!r}")
    P = param_count(net, cell).astype(jnp.float32) / 1e3
    return swap(net, variables, cell, x, y, key, samples) * jnp.exp(-((P - mu) ** 2) / sigma)
