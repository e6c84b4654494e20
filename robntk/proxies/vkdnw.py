"""VKDNW (``vkdnw``, ``vkdnw_dim``; Týbl & Neumann, CVPR 2025): the first-entry Jacobian, the
Fisher matrix and its spectral entropy, and the population-level rank aggregations
:func:`vkdnw_rank` (VKDNW_single) and :func:`vkdnw_agg_rank` (VKDNW_agg).

Every proxy has the suite's signature (:mod:`robntk.proxies`, and the notes shared by the newer
proxies there). The authors' protocol (``NB201/tss_general*.py|ipynb`` of ondratybl/VKDNW):
kaiming-normal (fan_in) weights (robntk ``init_scheme='kaiming'``), a batch of 64 N(0, 1) images
fed to the stem without normalisation (pass ``TinyNetwork(dataset=None)`` and Gaussian ``x``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.nb201.cell import CONV1, CONV3
from robntk.nb201.layers import BN_EPS
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import NUM_EDGES
from robntk.proxies._common import _ids, _nan_unless_connected

#: VKDNW's label smoothing α of the Cholesky factor: 0.05 held in a float16 tensor
#: (``compute_vkdnw_score.py:144``), i.e. the float16 value 0.0499877...
VKDNW_ALPHA = float(np.float16(0.05))
#: VKDNW's number of parameter tensors whose first entry enters the Fisher matrix
#: (``compute_vkdnw_score.py:236``, ``params_grad_len=128``).
VKDNW_PARAMS = 128


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


# --------------------------------------------------------------------------- rank aggregations
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
