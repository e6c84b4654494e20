"""Zen-NAS (``zen``, Lin et al. ICCV 2021), ZiCo (``zico``, Li et al. ICLR 2023) and TE-NAS's NTK
condition number (``tenas_ntk_cond``, Chen et al. ICLR 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from robntk.nb201.cell import CONV1, CONV3
from robntk.nb201.layers import BN_MOMENTUM, batch_norm
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import NUM_EDGES
from robntk.ntk import layerwise as layer_ntk
from robntk.proxies._common import _ids, _nan_unless_connected, _plain_net, _weight_leaves
from robntk.proxies.gradient import _loss_backward


# --------------------------------------------------------------------------- zen, TE-NAS, ZiCo
def _params_dtype(variables):
    return variables["params"]["stem_conv"]["kernel"].dtype


def _bn_layers(net: TinyNetwork, variables, cell, rec) -> list[tuple[jax.Array, jax.Array, jax.Array]]:
    """``(z, r0, active)`` for every BatchNorm of the network of ``cell`` (PyTorch's
    ``nn.BatchNorm2d`` modules): z its input (B, H, W, C) from the records of a tapped forward,
    r0 (C,) its running variance in ``variables['batch_stats']`` and ``active`` 1.0 when it
    runs for this cell. Order: stem, each cell's chosen conv edges, each reduction block's
    conv_a and conv_b, lastact."""
    st, ids, one = variables["batch_stats"], _ids(cell), jnp.ones(())
    out = [(rec["stem/conv_out"], st["stem_bn"]["var"], one)]
    for k, kind, _ in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            out += [(rec[f"{n}/{sub}/conv_out"], st[n][sub]["bn"]["var"], one) for sub in ("conv_a", "conv_b")]
            continue
        for e in range(NUM_EDGES):
            if f"{n}/e{e}/conv_out" in rec:
                r1, r3 = st[n][f"e{e}_nor_conv_1x1"]["bn"]["var"], st[n][f"e{e}_nor_conv_3x3"]["bn"]["var"]
                out.append(
                    (
                        rec[f"{n}/e{e}/conv_out"],
                        jnp.where(ids[e] == CONV3, r3, r1),
                        ((ids[e] == CONV1) | (ids[e] == CONV3)).astype(r1.dtype),
                    )
                )
    out.append((rec["lastact/conv_out"], st["lastact_bn"]["var"], one))
    return out


def _batch_var(z: jax.Array, unbiased: bool) -> jax.Array:
    """Per-channel variance over (B, H, W) of z (B, H, W, C); ×n/(n−1) when ``unbiased``."""
    n = z.shape[0] * z.shape[1] * z.shape[2]
    v = jnp.var(z, axis=(0, 1, 2))
    return v * (n / (n - 1)) if unbiased else v


def _gaussian_params(params, key: jax.Array):
    """Zen-NAS's re-initialisation: every Conv/Linear weight (``kernel``) i.i.d. N(0, 1), Linear
    bias 0, BN scale 1 and bias 0. The weights are consecutive slices, in the full tree's
    flatten order, of ONE draw ``normal(key, (Σ sizes,))`` (one RNG kernel: drawing leaf by
    leaf costs ~20 s of compilation), so a leaf's value does not depend on the cell."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    is_k = [jax.tree_util.keystr(p).endswith("['kernel']") for p, _ in flat]
    total = sum(l.size for (_, l), k in zip(flat, is_k) if k)
    z = jax.random.normal(key, (total,), flat[0][1].dtype)
    leaves, o = [], 0
    for (path, leaf), k in zip(flat, is_k):
        if k:
            leaves.append(z[o : o + leaf.size].reshape(leaf.shape))
            o += leaf.size
        elif jax.tree_util.keystr(path).endswith("['scale']"):
            leaves.append(jnp.ones_like(leaf))
        else:  # BN bias, classifier bias
            leaves.append(jnp.zeros_like(leaf))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _zen_draws(net, variables, x, key, gaussian_init: bool, mixup_gamma: float):
    """(params, x1, x_mix) of :func:`zen`: key → (k_init, k1, k2); x1, x2 ~ N(0, I) of x's shape
    in the params' dtype; x_mix = x1 + mixup_gamma·x2."""
    if key is None:
        raise ValueError("zen needs a PRNG key (Gaussian inputs and weights)")
    k_init, k1, k2 = jax.random.split(key, 3)
    dtype = _params_dtype(variables)
    p = _gaussian_params(variables["params"], k_init) if gaussian_init else variables["params"]
    x1 = jax.random.normal(k1, x.shape, dtype)
    x2 = jax.random.normal(k2, x.shape, dtype)
    return p, x1, x1 + mixup_gamma * x2


def zen(
    net,
    variables,
    cell,
    x,
    y=None,
    key=None,
    mixup_gamma: float = 1e-2,
    gaussian_init: bool = True,
    bn_var: str = "running",
) -> jax.Array:
    """``zen``: Zen-score (Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image
    Recognition", ICCV 2021; NASLib ``measures/zen.py``, from idstcv/ZenNAS
    ``ZeroShotProxy/compute_zen_score.py``).

        zen = log( mean_b Σ_{h,w,c} |F(x1)_b − F(x1 + γ·x2)_b| ) + Σ_BN log sqrt(mean_c σ²_BN)

    with F the pre-global-average-pool feature map (B, H/4, W/4, 4C) (the output of lastact's
    BN → ReLU, the input of NASLib's ``AdaptiveAvgPool2d`` hook), x1, x2 ~ N(0, I) of x's shape
    (they replace the normalised input: fed to the stem directly), γ = ``mixup_gamma``, every
    forward in train-mode BN, and the sum over every BatchNorm of the network of ``cell``
    (stem, chosen conv edges, reduction blocks' conv_a/conv_b, lastact; :func:`_bn_layers`).

    NASLib choices mirrored: ``mixup_gamma=1e-2``; ``repeat=1``; the Gaussian weight
    re-initialisation ``network_weight_gaussian_init`` (``gaussian_init=True``: Conv/Linear
    weights N(0, 1), biases 0, BN scale 1 and bias 0; False keeps ``variables``); the forward of
    x1 first, then of the mixup input, both in ``train()`` mode; σ²_BN = the BN's
    ``running_var`` after those two forwards (``bn_var='running'``: PyTorch momentum 0.1 and the
    *unbiased* batch variance, r = 0.81·r0 + 0.09·v(x1) + 0.1·v(x_mix), r0 the running variance
    in ``variables['batch_stats']``, 1 at init); log of the batch mean of the per-example
    L1 difference. Not mirrored: float16 (``fp16``) option; the draws use JAX's PRNG, so values
    equal NASLib's only in distribution. ``bn_var='batch'``: σ² = the biased batch variance of
    the x1 forward (the Zen-NAS paper's definition) instead.

    Args: see module docstring (x only gives the shape; y unused). key: PRNG key, split into
        (weights, x1, x2) (required). mixup_gamma: γ > 0. gaussian_init: as above. bn_var:
        ``'running'`` or ``'batch'``.

    Returns: scalar (params dtype); NaN for a cell without an input→output path (F does not
        depend on the input: log 0).

    Raises: ValueError: key None, unknown ``bn_var``.
    """
    if bn_var not in ("running", "batch"):
        raise ValueError(f"unknown bn_var {bn_var!r}; allowed: running, batch")
    p, x1, xm = _zen_draws(net, variables, x, key, gaussian_init, mixup_gamma)
    pn = _plain_net(net)
    taps = {k: jnp.zeros(s, x1.dtype) for k, s in pn.tap_shapes(x.shape).items()}

    def feats(z):
        _, rec = pn.forward(p, None, z, cell, True, taps=taps)
        return jax.nn.relu(batch_norm(rec["lastact/conv_out"], p["lastact_bn"], None, True)[0]), rec

    f1, rec1 = feats(x1)
    f2, rec2 = feats(xm)
    delta = jnp.mean(jnp.sum(jnp.abs(f1 - f2), axis=(1, 2, 3)))
    m = BN_MOMENTUM  # flax convention: PyTorch's 0.1 is 1 − m
    log_bn = 0.0
    for (z1, r0, a), (z2, _, _) in zip(_bn_layers(net, variables, cell, rec1), _bn_layers(net, variables, cell, rec2)):
        if bn_var == "running":
            var = m * m * r0 + m * (1 - m) * _batch_var(z1, True) + (1 - m) * _batch_var(z2, True)
        else:
            var = _batch_var(z1, False)
        log_bn = log_bn + a * 0.5 * jnp.log(jnp.mean(var))
    return _nan_unless_connected(jnp.log(delta) + log_bn, cell)


def tenas_ntk_cond(net, variables, cell, x, y=None, key=None, chunk_size: int | None = None) -> jax.Array:
    """``tenas_ntk_cond``: minus the condition number of the train-mode NTK of the batch (Chen,
    Gong, Wang, "Neural Architecture Search on ImageNet in Four GPU Hours: A Theoretically
    Inspired Perspective" (TE-NAS), ICLR 2021; reference VITA-Group/TENAS
    ``lib/procedures/ntk.py``, ``get_ntk_n`` with ``train_mode=True``).

    K = :func:`robntk.ntk.layerwise.layerwise_ntk` ``(..., output_mode='sum', train=True)`` (B, B):
    the NTK of the sum of each example's logits (TE-NAS back-propagates ``ones`` per example),
    batch-statistics BN, on the normalised input; κ = λ_max(K) / λ_min(K) (``eigvalsh``).

    **Sign**: TE-NAS ranks a lower κ as better (better trainability); this returns **−κ**, so
    that higher is better as for every other proxy here. Not mirrored: TE-NAS takes the
    gradients of parameters named ``weight`` only (Conv, BN scale, Linear weight); robntk's NTK
    uses every parameter (also the BN and classifier biases); TE-NAS's search script
    (``prune_tenas.py``) repeats the measurement over several batches on re-initialised
    (kaiming-normal) networks — here one batch on the weights given.

    Args: see module docstring; x (B, H, W, 3) in [0, 1], B ≥ 2. chunk_size: cotangents per
        vmapped backward of the NTK (None: all B at once).

    Returns: scalar −κ ≤ −1 (params dtype); NaN when λ_min ≤ 0 (K numerically singular, κ
        undefined; TE-NAS returns −1 for a NaN κ) or for a cell without an input→output path.
    """
    K = layer_ntk.layerwise_ntk(
        net,
        variables["params"],
        variables["batch_stats"],
        cell,
        x,
        output_mode="sum",
        train=True,
        chunk_size=chunk_size,
    )
    v = jnp.linalg.eigvalsh(K)
    return _nan_unless_connected(jnp.where(v[0] > 0, -v[-1] / v[0], jnp.nan), cell)


def zico(net, variables, cell, x, y, key=None, splits: int = 2) -> jax.Array:
    """``zico``: Σ_layers log Σ_θ mean_m|g_m(θ)| / std_m(g_m(θ)) (Li, Yang, Wang, Xu, Liu,
    "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients", ICLR 2023;
    reference SLDGroup/ZiCo ``ZeroShotProxy/compute_zico.py``; upstream NASLib has no zico).

    The batch is split into ``splits`` contiguous mini-batches of B / splits examples
    (``torch.chunk`` order: examples [0, B/s), [B/s, 2B/s), ...); g_m = ∂L_m/∂W for every
    Conv/Linear weight W (the layers of :func:`_weight_leaves`), L_m the mean cross-entropy of
    mini-batch m with train-mode BN on that mini-batch alone. Per layer, over the M = splits
    gradients: mean|g| and the population std (``numpy.std``, ddof 0) of every weight entry;
    the sum of mean|g|/std over entries with std ≠ 0; log of it, and the layer is skipped when
    that sum is 0 (as the reference; unused ops have zero gradients and drop out).

    Args: see module docstring; y (B,) int. splits: M ≥ 2 mini-batches; B must be divisible
        by it.

    Returns: scalar (params dtype); NaN for a cell without an input→output path.

    Raises: ValueError: splits < 2 or B not divisible by splits.
    """
    B = x.shape[0]
    if not isinstance(splits, int) or splits < 2 or B % splits:
        raise ValueError(f"zico needs an integer splits >= 2 dividing the batch size {B}, got {splits!r}")
    ids, b = _ids(cell), B // splits
    G = [
        _weight_leaves(
            net, _loss_backward(net, variables, cell, x[m * b : (m + 1) * b], y[m * b : (m + 1) * b])[1], ids
        )
        for m in range(splits)
    ]
    tot = 0.0
    for layer in zip(*G):
        g = jnp.stack([gg for _, gg, _ in layer])  # (M, ...)
        sd = jnp.std(g, axis=0)
        ratio = jnp.where(sd > 0, jnp.mean(jnp.abs(g), axis=0) / jnp.where(sd > 0, sd, 1.0), 0.0)
        ssum = jnp.sum(ratio)
        tot = tot + layer[0][2] * jnp.where(ssum > 0, jnp.log(jnp.where(ssum > 0, ssum, 1.0)), 0.0)
    return _nan_unless_connected(tot, cell)
