"""Robustness-aware proxies: CRoZe (``croze``, Ha et al. NeurIPS 2023), from the consistency of
features, parameters and gradients between clean and perturbed inputs; ZCPRob (``zcprob``, Feng
et al. ICLR 2025), from an upper bound of the adversarial loss: an NTK factor and an
input-curvature factor (:func:`zcprob_terms`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robntk.attacks import iterative as attacks
from robntk.nb201.layers import batch_norm, conv
from robntk.nb201.network import TinyNetwork
from robntk.proxies._common import _ce, _ids, _nan_unless_connected, _plain_net, _weight_leaves
from robntk.proxies.closed_form import param_count
from robntk.proxies.gradient import _kernel_mask


# --------------------------------------------------------------------------- robustness-aware
def _cos(a: jax.Array, b: jax.Array, axis: int) -> jax.Array:
    """Cosine similarity along ``axis`` as ``torch.nn.CosineSimilarity(eps=1e-8)`` (PyTorch ≥ 1.12:
    a·b / (max(‖a‖, 1e-8)·max(‖b‖, 1e-8)); 0 for a zero vector)."""
    na = jnp.maximum(jnp.sqrt(jnp.sum(a * a, axis=axis)), 1e-8)
    nb = jnp.maximum(jnp.sqrt(jnp.sum(b * b, axis=axis)), 1e-8)
    return jnp.sum(a * b, axis=axis) / (na * nb)


def _stage_features(net: TinyNetwork, params, rec) -> list[jax.Array]:
    """CRoZe's "activated features": [stem output, output of reduction block 1, of reduction
    block 2, output of the last stage, global-pooled features (B, 4C)], from a tapped forward's
    records (train-mode BN)."""
    out = [batch_norm(rec["stem/conv_out"], params["stem_bn"], None, True)[0]]
    for k, kind, _ in net.cell_positions():
        if kind == "reduce":
            n = f"cells_{k}"
            yb = batch_norm(rec[f"{n}/conv_b/conv_out"], params[n]["conv_b"]["bn"], None, True)[0]
            out.append(yb + conv(rec[f"{n}/downsample/in"], params[n]["downsample"]["kernel"]))
    return out + [rec["lastact/conv_out"], rec["features"]]


def _feature_index(net: TinyNetwork, path: str) -> int:
    """CRoZe's layer → feature pairing: ⌊(cells up to and including the layer's block) / N⌋,
    the classifier the pooled features (index 4); the stem conv 0."""
    if path == "stem_conv":
        return 0
    if path == "classifier":
        return 4
    k = int(path.split("/")[0].split("_")[1])
    cells = sum(1 for kk, kind, _ in net.cell_positions() if kind == "cell" and kk <= k)
    return cells // net.N


def croze(net, variables, cell, x, y, key=None, weight_step: float = 2.0, eps: float = 0.01) -> jax.Array:
    """``croze``: consistency-based robust zero-cost proxy (Ha, Kim, Hwang, "Generalizable
    Lightweight Proxy for Robust NAS against Diverse Perturbations", NeurIPS 2023; reference
    HyeonjeongHa/CRoZe ``zero_cost_methods/pruners/measures/croze.py`` and ``p_utils.py``
    ``adj_weights``).

    With θ = |params| (every parameter replaced by its absolute value, as the reference's
    ``linearize``), g = ∂CE(f_θ(x), y)/∂θ:

    1. robust surrogate θ_r: for every Conv/Linear weight W_l, W_l + w·‖W_l‖/‖g_l‖·g_l (one
       normalised gradient-*ascent* step on the clean loss, w = ``weight_step`` = 2.0); other
       parameters unchanged;
    2. x_adv = :func:`robntk.attacks.iterative.fgsm` on the surrogate (one L∞ sign step of size ``eps``
       in [0, 1] pixel units, clipped to [0, 1]); g_r = ∂CE(f_θr(x_adv), y)/∂θ_r;
    3. per Conv/Linear layer l (the layers of :func:`_weight_leaves`) with its paired feature
       map z (:func:`_feature_index`: the stage feature of :func:`_stage_features`, z of f_θ at
       x, z_r of f_θr at x_adv):
       s_l = |Σ(1 + cos(W_r, W)) · Σ|cos(g_r, g)| · Σ(1 + cos(z_r, z))|, the weight and
       gradient cosines along the output-channel axis (PyTorch ``dim=0`` of an (O, I, k, k)
       weight), the feature cosine along the batch axis, each summed over the remaining
       entries;
    4. score = Σ_l s_l (higher = predicted more robust).

    Mirrored: the three consistency factors and their product per layer, the |θ| linearisation,
    the normalised weight step (w = 2, weights of ndim > 1 only), the FGSM input from the
    surrogate, the loss on the clean net at x and on the surrogate at x_adv, the layer →
    feature pairing (the reference's ``layer_cnt // 5`` written for N cells per stage), the
    cosine eps 1e-8. A layer with a zero gradient (an op on a dead-end node) scores 0. **Not mirrored**: the reference runs its own NB201 model with BN removed
    (``bn=False``) except in the reduction blocks and with biased cell convs; here the
    NB201 TinyNetwork keeps every BN in train mode (batch statistics) and has no conv biases.
    Its FGSM *subtracts* ε·sign(∇) on the normalised tensor (ε = 0.01 in normalised units) and
    clamps that tensor to [0, 1]; here the attack ascends the loss in pixel space (robntk's one
    attack convention), ε = ``eps`` in pixel units. Float64 as the reference only under x64
    (the params' dtype is used).

    Args: see module docstring; x (B, H, W, 3) in [0, 1], y (B,) int. weight_step: w ≥ 0.
        eps: FGSM radius in [0, 1].

    Returns: scalar ≥ 0 (params dtype); NaN for a cell without an input→output path.

    Raises: ValueError: N < 1, or a bad eps (:func:`robntk.attacks.iterative.check_attack_args`).
    """
    if net.N < 1:
        raise ValueError(f"croze pairs layers with stage features and needs N >= 1, got N={net.N}")
    ids = _ids(cell)
    theta = jax.tree_util.tree_map(jnp.abs, variables["params"])
    taps = {k: jnp.zeros(s, theta["stem_conv"]["kernel"].dtype) for k, s in net.tap_shapes(x.shape).items()}

    def f(q, z):
        return net.forward(q, None, z, cell, True)[0]

    def loss(q, z):
        return _ce(f(q, z), y)

    g = jax.grad(loss)(theta, x)
    mask = _kernel_mask(theta)

    def step(w, gg, m):
        n = jnp.sqrt(jnp.sum(jnp.square(w))) / (jnp.sqrt(jnp.sum(jnp.square(gg))) + 1e-30)
        return w + m * weight_step * n * gg

    theta_r = jax.tree_util.tree_map(step, theta, g, mask)
    x_adv = attacks.fgsm(f, theta_r, x, y, eps)
    g_r = jax.grad(loss)(theta_r, x_adv)
    z = _stage_features(net, theta, net.forward(theta, None, x, cell, True, taps=taps)[1])
    z_r = _stage_features(net, theta_r, net.forward(theta_r, None, x_adv, cell, True, taps=taps)[1])
    tot = 0.0
    for (path, w, a), (_, wr, _), (_, gg, _), (_, gr, _) in zip(
        _weight_leaves(net, theta, ids),
        _weight_leaves(net, theta_r, ids),
        _weight_leaves(net, g, ids),
        _weight_leaves(net, g_r, ids),
    ):
        i = _feature_index(net, path)
        w_sim = jnp.sum(1 + _cos(wr, w, -1))
        g_sim = jnp.sum(jnp.abs(_cos(gr, gg, -1)))
        f_sim = jnp.sum(1 + _cos(z_r[i], z[i], 0))
        tot = tot + a * jnp.abs(w_sim * g_sim * f_sim)
    return _nan_unless_connected(tot, cell)


# --------------------------------------------------------------------------- ZCPRob
def zcprob_terms(
    net, variables, cell, x, y, key=None, n_ntk: int | None = None, n_curv: int | None = None, h: float = 3.0
) -> dict[str, jax.Array]:
    """The two factors of ZCPRob (Feng, Ou, Fan, Sun, "Zero-cost Proxy for Adversarial
    Robustness Evaluation", ICLR 2025, Eq. 4; code fyqsama/Robust_ZCP, which could not be
    retrieved here: the code facts below are from a third-party reading of its
    ``exps/Robust_ZCP/functions.py`` and ``regularizer.py``, unverified).

    * ``zcprob_ntk`` (Eq. 8, the NTK factor): Θ̄ = (1/(M N²)) Σ_m Σ_{i,j} g_i^m g_j^m
      = ‖(1/N) Σ_i g_i‖² / M, with g_i = ∂CE(f(x_i), y_i)/∂θ the loss gradient of image i
      run *alone* (a batch of one, train-mode BN: the reference's ``batch_size_1=1`` loader),
      i < N = ``n_ntk`` (default min(50, B): the reference's 50 passes), m over the
      M = :func:`robntk.proxies.closed_form.param_count` scalar parameters of the cell (unused
      ops have zero gradient). The sum over i of the
      single-image losses is differentiated once (Σ_{i,j} ⟨g_i, g_j⟩ = ‖Σ_i g_i‖²).
    * ``zcprob_curv`` (Eq. 7, the input-loss-landscape factor): with l(x) = ∇_x L(x) for the
      mean cross-entropy L of the first ``n_curv`` images (default min(32, B): the reference's
      ``batch_size_2``; eval-mode BN: the reference's ``net.eval()``; at init the running
      statistics are (0, 1)), z* = sign(l(x)) / ‖sign(l(x))‖
      per image (the reference's ``(s + 1e-7)/(‖s‖ + 1e-7)``), the finite-difference curvature
      mean_i ‖(l(x + h z*) − l(x))_i / h‖² (h in [0, 1] pixel units of L2 norm per image; no
      clipping, as the reference).

    Inputs reach the network unnormalised, as the reference's ``ToTensor()``-only transform
    (``net.dataset`` is ignored). Eq. 4's score R = −exp(t·Θ̄)·curv is :func:`zcprob`.

    **Not mirrored** (as read from the code): the reference accumulates gradients over its 50
    single-image passes without zeroing them, keeps the first 100 coordinates of the first
    parameter tensors of ≥ 50 entries and pairs snapshots 1–25 with 26–50 (normalised by
    2500); its regulariser is λ·mean_i ‖l(x+hz*) − l(x)‖ (not squared, not divided by h).
    Here both factors are Eq. 7–8 as printed, exact over all parameters.

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3) in [0, 1], y (B,) int; n_ntk, n_curv:
        1 ≤ n ≤ B images for each factor; h > 0 (the reference's default 3).
    Returns: {"zcprob_ntk", "zcprob_curv"}: scalars ≥ 0 (params dtype); NaN for a cell without
        an input→output path.
    Raises: ValueError: n_ntk or n_curv outside [1, B], h ≤ 0.
    """
    b = x.shape[0]
    n_ntk = min(50, b) if n_ntk is None else n_ntk
    n_curv = min(32, b) if n_curv is None else n_curv
    for name, n in (("n_ntk", n_ntk), ("n_curv", n_curv)):
        if not isinstance(n, int) or not 1 <= n <= b:
            raise ValueError(f"zcprob needs 1 <= {name} <= batch size {b}, got {n!r}")
    if not h > 0:
        raise ValueError(f"zcprob needs a finite-difference step h > 0, got {h!r}")
    pnet = _plain_net(net)
    params, stats = variables["params"], variables["batch_stats"]

    def one_loss(p, xi, yi):
        return _ce(pnet.forward(p, None, xi[None], cell, True)[0], yi[None])

    gsum = jax.grad(lambda p: jnp.sum(jax.vmap(one_loss, (None, 0, 0))(p, x[:n_ntk], y[:n_ntk])))(params)
    sq = sum(jnp.sum(jnp.square(g)) for g in jax.tree_util.tree_leaves(gsum))
    dtype = params["stem_conv"]["kernel"].dtype
    ntk = sq / n_ntk**2 / param_count(net, cell).astype(dtype)

    xc, yc = x[:n_curv].astype(dtype), y[:n_curv]
    l_of = jax.grad(lambda z: _ce(pnet.forward(params, stats, z, cell, False)[0], yc))
    lx = l_of(xc)
    s = jnp.sign(lx)
    zs = (s + 1e-7) / (jnp.sqrt(jnp.sum(s * s, axis=(1, 2, 3), keepdims=True)) + 1e-7)
    d = (l_of(xc + h * zs) - lx) / h
    curv = jnp.mean(jnp.sum(d * d, axis=(1, 2, 3)))
    return {"zcprob_ntk": _nan_unless_connected(ntk, cell), "zcprob_curv": _nan_unless_connected(curv, cell)}


def zcprob_from_terms(ntk, curv, t: float):
    """Eq. 4's ranking in log form: −(t·Θ̄ + log curv), a monotone function of R = −exp(t·Θ̄)·curv
    (R itself overflows float for large t·Θ̄). Higher = predicted more robust.

    Args: ntk, curv: the two factors of :func:`zcprob_terms`, float scalars, arrays (jax or
        numpy, traceable) or pandas columns of one shape, curv > 0. t: the weight ≥ 0 of the
        NTK factor (t = 0: the curvature factor alone).
    Returns: float, the inputs' shape and kind; NaN where an input is NaN, +inf where curv = 0.
    """
    log = jnp.log if isinstance(ntk, jax.Array) else np.log
    return -(t * ntk + log(curv))


#: t of :func:`zcprob`, chosen without NAS-RobBench-201 labels: the best of {0, 10⁰, …, 10⁸} by
#: Kendall τ against NB201 standard-training CIFAR-10 accuracy on 2,070 representatives
#: (``experiments/proxies_modern/zero_shot.py``; 1000 was also the choice on the first 310).
ZCPROB_T = 1000.0


def zcprob(net, variables, cell, x, y, key=None) -> jax.Array:
    """``zcprob``: ZCPRob's score (Eq. 4) in log form, :func:`zcprob_from_terms` of
    :func:`zcprob_terms` at t = :data:`ZCPROB_T`. Returns a scalar (higher = predicted more
    robust); NaN for a cell without an input→output path."""
    r = zcprob_terms(net, variables, cell, x, y, key)
    return zcprob_from_terms(r["zcprob_ntk"], r["zcprob_curv"], ZCPROB_T)
