"""Recent zero-cost proxies: AZ-NAS (``az_expressivity``, ``az_progressivity``,
``az_trainability``; Lee & Ham, CVPR 2024), VKDNW (``vkdnw``, ``vkdnw_dim``; Týbl & Neumann, CVPR
2025), MeCo (``meco``; Jiang et al., NeurIPS 2023), SWAP (``swap``, ``swap_reg``; Peng et al.,
ICLR 2024), the population-level rank aggregations of AZ-NAS and VKDNW (:func:`az_nas_rank`,
:func:`vkdnw_rank`, :func:`vkdnw_agg_rank`), and :func:`on_pgd_inputs`, which turns any proxy
into its perturbed-input variant (the proxy computed on PGD examples of the network at init).

Every proxy has the suite's signature ``proxy(net, variables, cell, x, y, key) -> scalar``
(:mod:`robntk.proxies`): ``x`` (B, H, W, 3) in [0, 1] is normalised by ``net.dataset`` inside;
the cell may be an arch string / op names (fixed) or int (6,) op ids (data, traceable: one
``jax.jit`` serves every cell). NaN where the proxy is undefined, in particular for a cell
without an input→output path (:func:`robntk.proxies._common.connected`); :func:`proxy_table`
flags every non-finite value.

The authors' *protocols* differ from the suite's defaults; the functions compute the authors'
*definitions* on whatever network, weights and batch they are given, so the protocol is the
caller's choice (``experiments/proxies_modern/README.md`` states both):

* AZ-NAS and VKDNW (``NB201/tss_general*.py|ipynb`` of both repositories): kaiming-normal
  (fan_in) weights (robntk ``init_scheme='kaiming'``), a batch of 64 N(0, 1) images fed to the
  stem without normalisation (pass ``TinyNetwork(dataset=None)`` and Gaussian ``x``);
* MeCo (HamsterMimi/MeCo ``correlation/NAS_Bench_201.py:61,93-126``): one real image
  (``--batch_size 1``), PyTorch default init;
* SWAP (pym1024/SWAP ``correlation.py:26,46-56``): 16 real images, N(0, 1) Conv/Linear weights
  (``network_weight_gaussian_init``).

Not implemented: ZCPRob (Feng et al., ICLR 2025): its code (fyqsama/Robust_ZCP) could not be
retrieved here and the paper's formula is not restated in any source at hand; it is left out
rather than guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.attacks import iterative as attacks
from robntk.nb201.layers import BN_EPS, _Run, avg_pool_2x2, batch_norm, conv, normalize
from robntk.nb201.network import CONV1, CONV3, TinyNetwork, static_cell
from robntk.nb201.searchspace import NUM_EDGES
from robntk.proxies._common import _ids, _nan_unless_connected
from robntk.proxies.activation import relu_inputs
from robntk.proxies.closed_form import param_count

#: AZ-NAS's entropy offset (``compute_az_nas_score.py:144``) and trainability offset (:189).
_AZ_LOG_EPS, _AZ_SV_EPS = 1e-8, 1e-6
#: VKDNW's label smoothing α of the Cholesky factor: 0.05 held in a float16 tensor
#: (``compute_vkdnw_score.py:144``), i.e. the float16 value 0.0499877...
VKDNW_ALPHA = float(np.float16(0.05))
#: VKDNW's number of parameter tensors whose first entry enters the Fisher matrix
#: (``compute_vkdnw_score.py:236``, ``params_grad_len=128``).
VKDNW_PARAMS = 128
#: SWAP's batch (``pym1024/SWAP correlation.py:26``, ``--input_samples 16``).
SWAP_SAMPLES = 16


# --------------------------------------------------------------------------- blocks
def _cell_arg(cell):
    ops = static_cell(cell)
    return (ops, True) if ops is not None else (cell, False)


def _reduce_block(p, h, run: _Run, name: str):
    """A ResNet reduction block exactly as :meth:`TinyNetwork.forward` computes it (the
    ``conv_a`` → ``conv_b`` path plus the pooled 1×1 shortcut), recording into ``run``."""
    y = h
    for sub, stride in (("conv_a", 2), ("conv_b", 1)):
        run.record(f"{name}/{sub}/in", y)
        y = conv(jax.nn.relu(y), p[sub]["conv"]["kernel"], stride)
        y = run.bn(y, p[sub]["bn"], (name, sub, "bn"), f"{name}/{sub}")
    sc = avg_pool_2x2(h)
    run.record(f"{name}/downsample/in", sc)
    return conv(sc, p["downsample"]["kernel"]) + y


def _blocks(net: TinyNetwork, params, cell, run: _Run):
    """``(stem, [block_k])``: the stem (conv → BN, from the normalised input) and one function
    per block ``cells_k`` (cell or reduction block) mapping its input feature map (B, H, W, C)
    to its output, all sharing ``run`` (BN mode, taps, records). Composed they are the
    network's feature extractor up to ``lastact`` (AZ-NAS's ``extract_cell_features``,
    ``NB201/custom/tss_model.py:54``)."""
    c, static = _cell_arg(cell)

    def stem(x):
        h = conv(
            normalize(jnp.asarray(x, params["stem_conv"]["kernel"].dtype), net.dataset), params["stem_conv"]["kernel"]
        )
        return run.tap("stem", run.bn(h, params["stem_bn"], ("stem_bn",), "stem"))

    fns = []
    for k, kind, _ in net.cell_positions():
        name = f"cells_{k}"
        if kind == "reduce":
            fns.append(lambda h, p=params[name], name=name: _reduce_block(p, h, run, name))
        else:
            fns.append(lambda h, name=name: net._cell(run, params.get(name, {}), name, h, c, static))
    return stem, fns


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


# --------------------------------------------------------------------------- AZ-NAS
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


# --------------------------------------------------------------------------- VKDNW
def _torch_order(net: TinyNetwork, ids: jax.Array) -> list[tuple[tuple[str, ...], jax.Array]]:
    """Every parameter tensor of the full tree in PyTorch's ``named_parameters`` order of the
    NB201 ``TinyNetwork`` (xautodl, ``NB201/custom/tss_model.py:8-32`` of VKDNW): ``(path,
    active)`` with active 1 when the tensor belongs to the network of ``ids``. Order: stem conv,
    stem BN scale/bias; per block: a cell's conv edges in edge order (conv kernel, BN scale, BN
    bias; both candidate convs of an edge listed, at most one active), a reduction block's
    conv_a (3), conv_b (3), shortcut conv; lastact BN scale/bias; classifier kernel/bias."""
    one = jnp.ones((), jnp.float32)
    out = [(("stem_conv", "kernel"), one), (("stem_bn", "scale"), one), (("stem_bn", "bias"), one)]
    rcb = lambda pre: [((*pre, "conv", "kernel")), ((*pre, "bn", "scale")), ((*pre, "bn", "bias"))]
    for k, kind, _ in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            out += [(p, one) for p in rcb((n, "conv_a")) + rcb((n, "conv_b"))] + [((n, "downsample", "kernel"), one)]
            continue
        for e in range(NUM_EDGES):
            for op, oid in (("nor_conv_1x1", CONV1), ("nor_conv_3x3", CONV3)):
                a = (ids[e] == oid).astype(jnp.float32)
                out += [(p, a) for p in rcb((n, f"e{e}_{op}"))]
    return out + [
        (("lastact_bn", "scale"), one),
        (("lastact_bn", "bias"), one),
        (("classifier", "kernel"), one),
        (("classifier", "bias"), one),
    ]


def vkdnw_dim(net, variables=None, cell=None, x=None, y=None, key=None) -> jax.Array:
    """``vkdnw_dim``: the number of parameter tensors of the network (VKDNW's "dimension",
    ``len(list(model.named_parameters()))``, ``compute_vkdnw_score.py:278`` at commit 779a3a8):
    4 + 2·7 + 3 + 3·(3N)·(#conv edges) for NB201 (the stem conv and BN, two reduction blocks,
    lastact and classifier, and conv + BN scale + BN bias per conv edge of each of the 3N cells).
    Returns a float scalar (exact integer value); defined for every cell (no forward pass)."""
    ids = _ids(cell)
    nconv = jnp.sum((ids == CONV1) | (ids == CONV3))
    return (3 + 14 + 4 + 3 * 3 * net.N * nconv).astype(jnp.float32)


def _conv_first_entry(g: jax.Array, inp: jax.Array, k: int, stride: int) -> jax.Array:
    """Per-example derivative of a conv output w.r.t. its kernel's first entry (kh = kw = 0,
    in = out = channel 0): Σ_{h,w} g[.., b, h, w] · inp[b, stride·h − p, stride·w − p] with
    p = (k − 1)/2 (zero padding). g (K, B, H', W') the output cotangent of channel 0, inp
    (B, H, W) the conv input's channel 0. Returns (K, B)."""
    p = (k - 1) // 2
    ip = jnp.pad(inp, ((0, 0), (p, 0), (p, 0)))[:, ::stride, ::stride][:, : g.shape[2], : g.shape[3]]
    return jnp.einsum("kbhw,bhw->kb", g, ip)


def _bn_first_entry(g: jax.Array, z: jax.Array, st, which: str) -> jax.Array:
    """Per-example derivative of an eval-mode BN output w.r.t. its scale[0] (``which='scale'``:
    Σ g·(z − μ₀)/sqrt(σ²₀ + eps)) or bias[0] (Σ g); g (K, B, H, W) and z (B, H, W) channel 0, st
    the running ``{'mean', 'var'}``. Returns (K, B)."""
    if which == "bias":
        return g.sum(axis=(2, 3))
    xhat = (z - st["mean"][0]) * jax.lax.rsqrt(st["var"][0] + BN_EPS)
    return jnp.einsum("kbhw,bhw->kb", g, xhat)


def first_entry_jacobian(net: TinyNetwork, variables, cell, x) -> jax.Array:
    """Per-example Jacobian J (B, K, n) of the logits w.r.t. the first entry of every parameter
    tensor of :func:`_torch_order` (eval-mode BN: examples independent), from ONE tapped forward
    and K backward passes w.r.t. the taps (one per class, :func:`jax.lax.map`): the entry's
    derivative is a contraction of the channel-0 output cotangent with the channel-0 input
    (:func:`_conv_first_entry`, :func:`_bn_first_entry`; the classifier's is the pooled feature 0
    for class 0). Equals the reference's per-example ``jacrev`` (tests, float64) without
    forming any per-example kernel gradient. Columns of tensors the cell does not use hold
    whatever their (unused) formula gives; :func:`vkdnw_fisher` masks them. Args: x (B, H, W, 3)
    in [0, 1]. Returns: J in the params' dtype."""
    params, stats = variables["params"], variables["batch_stats"]
    dtype = params["stem_conv"]["kernel"].dtype
    taps = {k: jnp.zeros(s, dtype) for k, s in net.tap_shapes(x.shape).items()}
    logits, vjp, rec = jax.vjp(lambda t: net.forward(params, stats, x, cell, False, taps=t), taps, has_aux=True)
    K = logits.shape[1]

    def per_class(k):
        g = vjp(jnp.zeros_like(logits).at[:, k].set(1.0))[0]
        return {n: v[..., 0] for n, v in g.items()}

    G = jax.lax.map(per_class, jnp.arange(K))  # name → (K, B, H, W), channel 0
    c0 = lambda name, relu=False: (jax.nn.relu(rec[name]) if relu else rec[name])[..., 0]
    zero = jnp.zeros((K, x.shape[0]), dtype)
    cols = []
    for path, _ in _torch_order(net, _ids(cell)):
        top = path[0]
        if top == "stem_conv":
            cols.append(_conv_first_entry(G["stem/pre"], c0("stem/in"), 3, 1))
        elif top in ("stem_bn", "lastact_bn"):
            t = top.split("_")[0]
            cols.append(_bn_first_entry(G[t], c0(f"{t}/conv_out"), stats[top], path[1]))
        elif top == "classifier":
            v = rec["features"][:, 0] if path[1] == "kernel" else jnp.ones((x.shape[0],), dtype)
            cols.append(zero.at[0].set(v))
        elif path[1] == "downsample":
            cols.append(_conv_first_entry(G[f"{top}/downsample"], c0(f"{top}/downsample/in"), 1, 1))
        else:
            sub = path[1]
            tap = f"{top}/{sub}" if sub in ("conv_a", "conv_b") else f"{top}/e{sub[1]}"
            if f"{tap}/in" not in rec:  # an edge a fixed cell does not use: masked column
                cols.append(zero)
            elif path[-1] == "kernel":
                k = 1 if sub.endswith("conv_1x1") else 3
                cols.append(_conv_first_entry(G[f"{tap}/pre"], c0(f"{tap}/in", True), k, 2 if sub == "conv_a" else 1))
            else:
                cols.append(_bn_first_entry(G[tap], c0(f"{tap}/conv_out"), _get(stats, path[:-1]), path[-1]))
    return jnp.stack(cols, axis=-1).transpose(1, 0, 2)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def vkdnw_cholesky(logits: jax.Array, alpha: float = VKDNW_ALPHA) -> jax.Array:
    """VKDNW's factor L (B, K, K) of the multinomial covariance diag(p) − p pᵀ of the smoothed
    softmax p = (1 − α)·softmax(logits) + α/K (``compute_vkdnw_score.py:141-171``, after
    Tanabe & Sagae 1992 Thm. 1): with q_j = 1 − Σ_{i≤j} p_i (q_{K−1} = 0, q_{−1} = 1),
    L_ij = −p_i/q_j (i > j), L_jj = 1, 0 above, columns scaled by d_j = sqrt(p_j q_j / q_{j−1}),
    so that L Lᵀ = diag(p) − p pᵀ. As the reference, α is a float16 tensor, so 1 − α and α/K are
    rounded to float16 (0.9501953 and 0.004997 for K = 10; p then sums to 1 + 1.9e-4 and
    L Lᵀ matches the covariance to ~1e-4, within the reference's own 1e-3 back-test).
    Args: logits (B, K). Returns (B, K, K), logits' dtype."""
    K = logits.shape[-1]
    a16 = np.float16(alpha)
    scale, shift = float(np.float16(1) - a16), float(a16 / np.float16(K))  # float16 arithmetic, as the reference
    p = jax.nn.softmax(logits, axis=-1) * scale + shift
    q = 1.0 - jnp.cumsum(p, axis=-1)
    q = q.at[:, -1].set(0.0)
    q_prev = jnp.concatenate([jnp.ones_like(q[:, :1]), q[:, :-1]], axis=-1)
    d = jnp.sqrt(p * q / q_prev)
    lower = jnp.tril(jnp.ones((K, K), bool), -1)
    safe_q = jnp.where(q == 0, 1.0, q)
    L = jnp.where(lower[None], -p[:, :, None] / safe_q[:, None, :], 0.0)
    L = jnp.where(lower[None] & (q[:, None, :] == 0), 0.0, L) + jnp.eye(K, dtype=logits.dtype)[None]
    return L * d[:, None, :]


def vkdnw_fisher(net, variables, cell, x, params_grad_len: int = VKDNW_PARAMS) -> tuple[jax.Array, jax.Array]:
    """VKDNW's Fisher information matrix (``get_fisher`` / ``get_jacobian_index``,
    ``compute_vkdnw_score.py:125-139, 205-234`` at commit 779a3a8; the current version with
    ``p=1`` selects the same entries).

    θ: the first entry of each of the first ``params_grad_len`` parameter tensors of the network
    (PyTorch ``named_parameters`` order, :func:`_torch_order`). J_b (K, P): the per-example
    Jacobian of the logits w.r.t. θ (eval-mode BN: running statistics, examples independent;
    :func:`first_entry_jacobian`, K tap backward passes, where the reference runs ``jacrev``
    per example);
    F = mean_b (L_b J_b)ᵀ (L_b J_b) with L_b = :func:`vkdnw_cholesky` of the example's logits.

    For a cell given as data the Jacobian is taken w.r.t. every candidate tensor of the full
    tree (both convs of every edge), and the columns not in θ are zeroed; F then has the
    spectrum of the reference's P×P matrix plus (n_candidates − P) zeros, and ``P`` (traced)
    says how many eigenvalues are real (:func:`vkdnw`).

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3) in [0, 1]. params_grad_len: P_max ≥ 1
        (an int, or a traced integer: one compile serves several values).
    Returns: (F (n_candidates, n_candidates), P int32 scalar). Raises: ValueError: bad P_max.
    """
    if not isinstance(params_grad_len, jax.core.Tracer) and not (int(params_grad_len) == params_grad_len >= 1):
        raise ValueError(f"params_grad_len must be a positive int, got {params_grad_len!r}")
    params, stats = variables["params"], variables["batch_stats"]
    act = jnp.stack([a for _, a in _torch_order(net, _ids(cell))])
    pos = jnp.cumsum(act) - 1
    use = act * (pos < params_grad_len)
    dtype = params["stem_conv"]["kernel"].dtype
    J = first_entry_jacobian(net, variables, cell, x) * use.astype(dtype)  # (B, K, n)
    L = vkdnw_cholesky(net.forward(params, stats, x, cell, False)[0])
    LJ = jnp.einsum("bij,bjn->bin", L, J)
    F = jnp.einsum("bkn,bkm->nm", LJ, LJ) / x.shape[0]
    return F, jnp.sum(use).astype(jnp.int32)


def _quantiles_of_top(v: jax.Array, n: jax.Array, qs: jax.Array) -> jax.Array:
    """``torch.quantile`` (linear interpolation) of the ``n`` largest entries of ``v`` (traced n)."""
    s = jnp.sort(v)
    off = v.shape[0] - n
    pos = qs * (n - 1)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n - 1)
    frac = pos - lo
    return s[off + lo] * (1 - frac) + s[off + hi] * frac


def vkdnw(net, variables, cell, x, y=None, key=None, params_grad_len: int = VKDNW_PARAMS) -> jax.Array:
    """``vkdnw``: VKDNW's entropy of the Fisher spectrum (Týbl & Neumann, "Training-free Neural
    Architecture Search through Variance of Knowledge of Deep Network Weights", CVPR 2025;
    reference ondratybl/VKDNW ``NB201/ZeroShotProxy/compute_vkdnw_score.py:236-292`` at commit
    779a3a8, ``vkdnw_entropy``).

    λ: the eigenvalues of the Fisher matrix F of :func:`vkdnw_fisher` (``torch.svd(F).S``; F is
    symmetric PSD, so |eigvalsh|); ν_1..ν_9 = its deciles (``torch.quantile`` at 0.1, …, 0.9,
    linear interpolation); ν̂ = ν / (‖ν‖₁ + 1e-10); score = −Σ ν̂ log(ν̂ + 1e-10).

    Mirrored: the parameter selection (first entry of the first 128 tensors), eval-mode BN, the
    float16-rounded α of the Cholesky factor, the deciles and the entropy offsets. The reference
    feeds N(0, 1) images without normalisation (pass ``TinyNetwork(dataset=None)`` and Gaussian
    x for that protocol); it catches a failed SVD and scores 0-eigenvalues instead (here: NaN).

    Args: see :mod:`robntk.proxies`; x (B, H, W, 3). params_grad_len: as :func:`vkdnw_fisher`.

    Returns: scalar in [0, log 9] (params dtype); NaN for a cell without an input→output path.
    """
    F, n = vkdnw_fisher(net, variables, cell, x, params_grad_len)
    lam = jnp.abs(jnp.linalg.eigvalsh(F))
    qs = jnp.arange(1, 10, dtype=F.dtype) / 10
    nu = _quantiles_of_top(lam, n, qs)
    t = nu / (jnp.sum(jnp.abs(nu)) + 1e-10)
    return _nan_unless_connected(-jnp.sum(t * jnp.log(t + 1e-10)), cell)


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
    output of every block of :func:`block_features` (the stem's ``nn.Sequential``, whose map is
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


# --------------------------------------------------------------------------- perturbed inputs
def pgd_inputs(net, variables, cell, x, y, key, eps: float = 8 / 255, steps: int = 10, alpha=None) -> jax.Array:
    """PGD examples of the network at init: L∞ PGD (:func:`robntk.attacks.iterative.pgd`,
    uniform random start from ``fold_in(key, 7)``, ``steps`` steps of 2.5·eps/steps) on the mean
    cross-entropy of the train-mode-BN network (the proxies' mode) at x (B, H, W, 3) in [0, 1],
    y (B,) int. eps in pixel units (8/255: NAS-RobBench-201's PGD-8). Returns x_adv (x's shape,
    in [0, 1]). Raises: ValueError: bad eps/steps (:func:`check_attack_args`), key None."""
    if key is None:
        raise ValueError("pgd_inputs needs a PRNG key (random start)")

    def f(p, z):
        return net.forward(p, None, z, cell, True)[0]

    return attacks.pgd(f, variables["params"], x, y, eps, steps=steps, alpha=alpha, key=jax.random.fold_in(key, 7))


def on_pgd_inputs(proxy, eps: float = 8 / 255, steps: int = 10, name: str | None = None):
    """The perturbed-input variant of ``proxy`` (Lukasik, Moeller, Keuper, IJCV 2024: proxies
    computed on adversarial inputs): ``proxy(net, variables, cell, pgd_inputs(...), y, key)``
    with :func:`pgd_inputs` of radius ``eps`` (pixel units) and ``steps`` iterations on the
    network at init. The proxy's own randomness uses the same ``key`` as its clean version.
    Works for single proxies and for group functions returning a dict (keys suffixed ``_pgd``).

    Returns: a proxy with the suite's signature. Raises (when called): ValueError: key None."""

    def wrapped(net, variables, cell, x, y, key=None):
        xa = pgd_inputs(net, variables, cell, x, y, key, eps=eps, steps=steps)
        out = proxy(net, variables, cell, xa, y, key)
        return {f"{k}_pgd": v for k, v in out.items()} if isinstance(out, dict) else out

    wrapped.__name__ = name or f"{getattr(proxy, '__name__', 'proxy')}_pgd"
    wrapped.__doc__ = f"``{wrapped.__name__}``: ``{getattr(proxy, '__name__', 'proxy')}`` on PGD inputs (eps={eps:.5g}, steps={steps}); see :func:`on_pgd_inputs`."
    return wrapped


az_nas_pgd_proxies = on_pgd_inputs(az_nas_proxies, name="az_nas_pgd_proxies")
vkdnw_pgd = on_pgd_inputs(vkdnw, name="vkdnw_pgd")
meco_pgd = on_pgd_inputs(meco, name="meco_pgd")
swap_pgd = on_pgd_inputs(swap, name="swap_pgd")


# --------------------------------------------------------------------------- rank aggregations
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


def vkdnw_rank(scores: pd.DataFrame) -> pd.Series:
    """VKDNW_single (ondratybl/VKDNW ``NB201/tss_utils.py:376`` at commit 19cad2f): the dense rank
    of the pairs (``vkdnw_dim``, ``vkdnw``) in lexicographic order (tensor count first, the
    entropy breaking ties), as ``pandas.rank(method='dense')``; its log is what VKDNW_agg sums.
    Args: scores with columns ``vkdnw_dim`` and ``vkdnw``. Returns: float64 Series of ranks ≥ 1
    named ``vkdnw_single`` (NaN where either is NaN). Raises: KeyError: a missing column."""
    ok = scores[["vkdnw_dim", "vkdnw"]].notna().all(axis=1)
    sub = scores.loc[ok, ["vkdnw_dim", "vkdnw"]].astype(np.float64)
    keys = pd.Series(list(zip(sub["vkdnw_dim"], sub["vkdnw"])), index=sub.index)
    r = keys.rank(method="dense")
    return r.reindex(scores.index).astype(np.float64).rename("vkdnw_single")


def vkdnw_agg_rank(scores: pd.DataFrame) -> pd.Series:
    """VKDNW_agg (ondratybl/VKDNW ``NB201/tss_utils.py:392-394`` at commit 19cad2f,
    ``vkdnw_comb_rank``, the paper's VKDNW_agg): log(VKDNW_single) + Σ log rank(c) over c in
    (``az_expressivity``, ``az_trainability``, ``flops``, ``jacov``), ranks by
    ``pandas.rank()`` (average, not normalised). Args: scores with those columns and
    ``vkdnw_dim``, ``vkdnw``. Returns: float64 Series named ``vkdnw_agg`` (higher = better; NaN
    where a component is NaN). Raises: KeyError: a missing column."""
    out = np.log(vkdnw_rank(scores))
    for c in ("az_expressivity", "az_trainability", "flops", "jacov"):
        out = out + np.log(scores[c].astype(np.float64).rank())
    return out.rename("vkdnw_agg")
