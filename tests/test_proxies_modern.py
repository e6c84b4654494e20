"""Tests of robntk.proxies.az_nas, .vkdnw, .meco_swap and .perturbed (AZ-NAS, VKDNW, MeCo, SWAP, PGD
variants, rank aggregations).

The cross-checks run the authors' algorithms — ported to PyTorch, test-side only, from
cvlab-yonsei/AZ-NAS ``NB201/ZeroShotProxy/compute_az_nas_score.py``, ondratybl/VKDNW
``NB201/ZeroShotProxy/compute_vkdnw_score.py`` (commit 779a3a8), HamsterMimi/MeCo
``correlation/NAS_Bench_201.py`` and pym1024/SWAP ``src/metrics/swap.py`` — on a PyTorch NB201
TinyNetwork (xautodl's module tree, as AZ-NAS and VKDNW use) holding robntk's weights, in float64.
They need torch (skipped with a reason without it); the rest runs without.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from robntk import proxies as P
from robntk.nb201.cell import op_ids, to_ops
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import EDGES
from robntk.proxies import az_nas as AZ
from robntk.proxies import meco_swap as MS
from robntk.proxies import perturbed as PI
from robntk.proxies import vkdnw as VK

ARCHS = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
)
IDENTITY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"  # every cell is the identity
DISC = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"


# --------------------------------------------------------------------------- torch reference
def torch_net(net: TinyNetwork, variables, arch):
    """xautodl's NB201 TinyNetwork in PyTorch (``cell_infers/tiny_network.py``, ``cells.py``,
    ``cell_operations.py``) with robntk's weights of ``arch`` (float64; no input normalisation:
    use ``net.dataset=None``). ``forward`` returns (pooled features, logits) and
    ``extract_cell_features`` the stem and block outputs, as AZ-NAS's ``custom/tss_model.py``."""
    torch = pytest.importorskip("torch", reason="the authors' reference algorithms are PyTorch")
    nn = torch.nn
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), variables["params"])
    t = lambda a: torch.tensor(np.ascontiguousarray(a))

    def conv_from(k, stride=1):
        kh = k.shape[0]
        c = nn.Conv2d(k.shape[2], k.shape[3], kh, stride, kh // 2, bias=False)
        c.weight.data = t(k.transpose(3, 2, 0, 1))
        return c

    def bn_from(b):
        m = nn.BatchNorm2d(b["scale"].shape[0])
        m.weight.data, m.bias.data = t(b["scale"]), t(b["bias"])
        return m

    def rcb(q, stride=1):
        return nn.Sequential(nn.ReLU(inplace=False), conv_from(q["conv"]["kernel"], stride), bn_from(q["bn"]))

    class Zero(nn.Module):
        def forward(self, x):
            return x.mul(0.0)

    class Cell(nn.Module):
        def __init__(self, q, ops):
            super().__init__()
            mk = {
                "none": lambda e: Zero(),
                "skip_connect": lambda e: nn.Identity(),
                "avg_pool_3x3": lambda e: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
            }
            self.layers = nn.ModuleList([mk[op](e) if op in mk else rcb(q[f"e{e}_{op}"]) for e, op in enumerate(ops)])

        def forward(self, x):
            nodes = [x]
            for dst in (1, 2, 3):
                nodes.append(sum(self.layers[e](nodes[s]) for e, (s, d) in enumerate(EDGES) if d == dst))
            return nodes[3]

    class Reduce(nn.Module):
        def __init__(self, q):
            super().__init__()
            self.conv_a, self.conv_b = rcb(q["conv_a"], 2), rcb(q["conv_b"])
            self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), conv_from(q["downsample"]["kernel"]))

        def forward(self, x):
            return self.downsample(x) + self.conv_b(self.conv_a(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            ops = to_ops(arch)
            self.stem = nn.Sequential(conv_from(p["stem_conv"]["kernel"]), bn_from(p["stem_bn"]))
            blocks = []
            for k, kind, _ in net.cell_positions():
                q = p.get(f"cells_{k}", {})
                blocks.append(Reduce(q) if kind == "reduce" else Cell(q, ops))
            self.cells = nn.ModuleList(blocks)
            self.lastact = nn.Sequential(bn_from(p["lastact_bn"]), nn.ReLU(inplace=True))
            self.global_pooling = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(*p["classifier"]["kernel"].shape)
            self.classifier.weight.data = t(p["classifier"]["kernel"].T)
            self.classifier.bias.data = t(p["classifier"]["bias"])

        def extract_cell_features(self, x):
            feats = [self.stem(x)]
            for c in self.cells:
                feats.append(c(feats[-1]))
            return feats

        def forward(self, x):
            out = self.global_pooling(self.lastact(self.extract_cell_features(x)[-1])).flatten(1)
            return out, self.classifier(out)

    return Net().double()


def _nchw(a):
    import torch

    return torch.tensor(np.asarray(a, np.float64).transpose(0, 3, 1, 2).copy())


def ref_az_nas(model, x, g_outs):
    """AZ-NAS's scores (``compute_az_nas_score.py:131-195``) with the given ±1 cotangents."""
    import torch

    feats = model.extract_cell_features(x)
    ent = []
    for f in feats:
        b, c, h, w = f.shape
        f = f.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
        f = f - f.mean(0, keepdim=True)
        s = torch.linalg.eigvalsh(f.T @ f / f.shape[0])
        pr = s / s.sum()
        ent.append(float((-pr * torch.log(pr + 1e-8)).sum()))
    ent = np.array(ent)
    scores = []
    for i in reversed(range(1, len(feats))):
        g_out = g_outs[i - 1]
        g_in = torch.autograd.grad(feats[i], feats[i - 1], g_out, retain_graph=True)[0]
        if g_out.shape == g_in.shape and torch.all(g_in == g_out):
            scores.append(-np.inf)
            continue
        if g_out.shape[2] != g_in.shape[2]:
            g_in = torch.nn.PixelUnshuffle(g_in.shape[2] // g_out.shape[2])(g_in)
        bo, co, ho, wo = g_out.shape
        a = g_in.permute(0, 2, 3, 1).reshape(-1, g_in.shape[1])
        m = a.T @ g_out.permute(0, 2, 3, 1).reshape(-1, co) / (bo * ho * wo)
        s = float(torch.linalg.svdvals(m).max())
        scores.append(-s - 1 / (s + 1e-6) + 2)
    return {
        "az_expressivity": ent.sum(),
        "az_progressivity": np.min(ent[1:] - ent[:-1]),
        "az_trainability": np.mean(scores),
    }


def ref_vkdnw(model, x, params_grad_len=128):
    """VKDNW's entropy (``compute_vkdnw_score.py:125-292`` at 779a3a8: eval mode, first entry of
    the first ``params_grad_len`` named parameters, Cholesky-weighted Fisher, deciles)."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    model.eval()
    named = dict(list(model.named_parameters())[:params_grad_len])
    pg = {k: v.flatten()[0:1].detach() for k, v in named.items()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(sample):
        def pred(pgt):
            prm = {k: v.detach() for k, v in model.named_parameters()}
            for k, v in pgt.items():
                flat = prm[k].flatten().clone()
                flat[0:1] = v
                prm[k] = flat.reshape(prm[k].shape)
            return functional_call(model, (prm, buffers), (sample.unsqueeze(0),))[1].squeeze(0)

        return jacrev(pred)(pg)

    J = torch.cat([v.flatten(2) for v in vmap(one)(x).values()], dim=2)
    out = model(x)[1].detach()
    alpha = torch.tensor(0.05, dtype=torch.float16)
    prob = torch.softmax(out, 1) * (1 - alpha) + alpha / out.shape[1]
    q = 1 - torch.cumsum(prob, 1)
    q[:, -1] = 0
    qs = torch.roll(q, 1, 1)
    qs[:, 0] = 1
    d = torch.sqrt(prob * q / qs)
    L = torch.nan_to_num(-prob[:, :, None] / q[:, None, :], neginf=0.0)
    K = L.shape[1]
    eye = torch.eye(K, dtype=L.dtype)
    L = (L * (1 - eye) + eye) * (1 - torch.triu(torch.ones(K, K, dtype=L.dtype), 1))
    L = L @ torch.diag_embed(d)
    LJ = L @ J
    F = (LJ.transpose(1, 2) @ LJ).mean(0)
    lam = torch.svd(F).S
    nu = torch.quantile(lam, torch.arange(0.1, 1.0, 0.1, dtype=lam.dtype))
    tt = nu / (torch.linalg.norm(nu, ord=1).item() + 1e-10)
    return float(-(tt * torch.log(tt + 1e-10)).sum())


def ref_meco(model, x):
    """MeCo (``NAS_Bench_201.py:11-43``, ``measure='meco'``) with forward hooks on the modules of
    :func:`robntk.proxies.meco_swap.meco_layers`: every Conv2d and BatchNorm2d, the stem and every
    block; train mode, one image."""
    import torch

    res = []

    def hook(mod, inp, out):
        fea = out[0].detach()
        fea = fea.reshape(fea.shape[0], -1)
        c = torch.corrcoef(fea)
        c[torch.isnan(c)] = 0
        c[torch.isinf(c)] = 0
        res.append(torch.min(torch.real(torch.linalg.eig(c)[0])))

    mods = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    hs = [m.register_forward_hook(hook) for m in mods + [model.stem, *model.cells]]
    model.train()
    model(x[:1])
    for h in hs:
        h.remove()
    r = torch.tensor(res)
    return float(r[torch.isfinite(r)].sum())


def ref_swap(model, x):
    """SWAP (``src/metrics/swap.py:77-94``): unique columns of sign(ReLU outputs), train mode."""
    import torch

    feats = []
    hs = [
        m.register_forward_hook(lambda m, i, o: feats.append(o.detach()) if i[0].dim() == 4 else None)
        for m in model.modules()
        if isinstance(m, torch.nn.ReLU)
    ]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    A = torch.sign(torch.cat([f.reshape(x.shape[0], -1) for f in feats], 1))
    return torch.unique(A.T, dim=0).shape[0]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def setup64():
    """A C=3, N=1 network (kaiming init, no input normalisation), float64, and a batch of 8."""
    with jax.enable_x64(True):
        net = TinyNetwork(C=3, N=1, num_classes=10, dataset=None, init_scheme="kaiming")
        v = net.init(jax.random.PRNGKey(0), jnp.float64)
        x = jax.random.normal(jax.random.PRNGKey(1), (8, 8, 8, 3), jnp.float64)
    y = jnp.array([0, 3, 7, 3, 1, 2, 5, 9])
    return net, v, x, y


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


# --------------------------------------------------------------------------- cross-checks
def test_az_nas_matches_reference(setup64):
    """The three AZ-NAS scores equal the authors' algorithm on the same weights, batch and ±1
    cotangents (float64) on three archs; an identity cell gives −∞ trainability as theirs."""
    net, v, x, y = setup64
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(5)
        g = AZ.az_nas_cotangents(net, x.shape, key, jnp.float64)
        f = jax.jit(lambda c: AZ.az_nas_proxies(net, v, c, x, y, cotangents=g))
        for arch in ARCHS + (IDENTITY,):
            got = {k: float(val) for k, val in f(jnp.asarray(op_ids(arch))).items()}
            want = ref_az_nas(torch_net(net, v, arch), _nchw(x), [_nchw(a) for a in g])
            for k in want:
                if np.isinf(want[k]):
                    assert got[k] == want[k], (arch, k)
                else:
                    assert _rel(got[k], want[k]) < 1e-9, (arch, k, got[k], want[k])
        # the key-drawn cotangents are the ones passed above
        assert float(AZ.az_trainability(net, v, ARCHS[0], x, y, key)) == pytest.approx(
            float(f(jnp.asarray(op_ids(ARCHS[0])))["az_trainability"]), rel=1e-12
        )
        assert all(np.isnan(float(val)) for val in f(jnp.asarray(op_ids(DISC))).values())
    assert want["az_trainability"] == -np.inf and np.isfinite(want["az_expressivity"])


def test_vkdnw_matches_reference(setup64):
    """VKDNW's entropy equals the authors' algorithm (eval mode, first entries of the first
    named parameters, Cholesky-weighted Fisher, deciles) for the full selection and for a
    truncated one (which checks the PyTorch parameter order); vkdnw_dim equals the number of
    named parameters."""
    net, v, x, y = setup64
    with jax.enable_x64(True):
        f = jax.jit(lambda c, n: VK.vkdnw(net, v, c, x, y, params_grad_len=n))  # one compile
        for arch, n in ((ARCHS[0], 128), (ARCHS[1], 128), (ARCHS[1], 20), (ARCHS[2], 11)):
            model = torch_net(net, v, arch)
            got = float(f(jnp.asarray(op_ids(arch)), n))
            want = ref_vkdnw(model, _nchw(x), n)
            assert _rel(got, want) < 1e-6, (arch, n, got, want)
            assert float(VK.vkdnw_dim(net, None, arch)) == len(list(model.named_parameters()))
        assert np.isnan(float(f(jnp.asarray(op_ids(DISC)), 128)))


def test_meco_and_swap_match_reference(setup64):
    """MeCo equals the hook-based reference on the same module set (one image) and SWAP equals
    the reference's unique-pattern count exactly (8 images), cell as data, three archs."""
    net, v, x, y = setup64
    with jax.enable_x64(True):
        fm = jax.jit(lambda c: MS.meco(net, v, c, x, y))
        fs = jax.jit(lambda c: MS.swap(net, v, c, x, y, samples=8))
        for arch in ARCHS:
            c = jnp.asarray(op_ids(arch))
            model = torch_net(net, v, arch)
            want = ref_meco(model, _nchw(x))
            assert _rel(float(fm(c)), want) < 1e-8, (arch, float(fm(c)), want)
            assert float(fs(c)) == ref_swap(model, _nchw(x)), arch


# --------------------------------------------------------------------------- robntk-side checks
def test_unique_rows_and_swap_reg():
    """The packed unique-row count equals numpy's for > 32 columns; swap_reg = swap × the
    Gaussian size factor of the parameter count in thousands."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (500, 40)).astype(bool)
    bits[250:] = bits[:250]  # every row twice
    bits[::7, 5] ^= True
    assert int(MS._count_unique_rows(jnp.asarray(bits))) == len(np.unique(bits, axis=0))
    net = TinyNetwork(C=3, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    a, b = jax.jit(
        lambda: (
            MS.swap(net, v, ARCHS[0], x, samples=4),
            MS.swap_reg(net, v, ARCHS[0], x, mu=2.0, sigma=9.0, samples=4),
        )
    )()
    P_k = int(P.param_count(net, ARCHS[0])) / 1e3
    assert float(b) == pytest.approx(float(a) * np.exp(-((P_k - 2.0) ** 2) / 9.0), rel=1e-5)
    with pytest.raises(ValueError, match="samples"):
        MS.swap(net, v, ARCHS[0], x, samples=0)
    with pytest.raises(ValueError, match="sigma"):
        MS.swap_reg(net, v, ARCHS[0], x, sigma=0.0)


def test_cholesky_factor_and_quantiles():
    """L Lᵀ = diag(p) − p pᵀ for the smoothed softmax; the top-n quantiles equal numpy's."""
    logits = jax.random.normal(jax.random.PRNGKey(0), (5, 10)) * 3
    L = np.asarray(VK.vkdnw_cholesky(logits), np.float64)
    p = np.asarray(jax.nn.softmax(logits) * (1 - VK.VKDNW_ALPHA) + VK.VKDNW_ALPHA / 10, np.float64)
    cov = np.einsum("bi,ij->bij", p, np.eye(10)) - p[:, :, None] * p[:, None, :]
    err = np.abs(L @ L.transpose(0, 2, 1) - cov).max()
    assert 1e-6 < err < 1e-3  # the float16 smoothing constants (the reference's back-test bound)
    assert np.allclose(np.tril(L[:, 1:, :-1]) == 0, np.tril(np.ones((9, 9))) == 0)  # lower-triangular
    v = jnp.asarray([0.0, 0.0, 0.0, 3.0, 1.0, 7.0, 2.0])
    qs = jnp.arange(1, 10) / 10
    np.testing.assert_allclose(
        VK._quantiles_of_top(v, jnp.asarray(4), qs), np.quantile([3, 1, 7, 2], np.asarray(qs)), rtol=1e-6
    )


def test_disconnected_nan_pgd_variant_and_table(space):
    """SWAP is NaN and flagged for a cell without a path (vkdnw_dim is a count, flagged there
    too by proxy_table); proxy_table's values equal direct calls; the PGD variant equals the
    proxy on the PGD batch, which lies in the 8/255 ball."""
    net = TinyNetwork(C=3, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    y = jnp.array([0, 3, 7, 3])
    key = jax.random.PRNGKey(2)
    swap2 = PI.on_pgd_inputs(MS.swap, steps=2)
    xa, a, b, c = jax.jit(
        lambda v, x: (
            PI.pgd_inputs(net, v, ARCHS[0], x, y, key, steps=2),
            swap2(net, v, ARCHS[0], x, y, key),
            MS.swap(net, v, ARCHS[0], PI.pgd_inputs(net, v, ARCHS[0], x, y, key, steps=2)),
            MS.swap(net, v, ARCHS[0], x),
        )
    )(v, x)
    assert 0 < float(jnp.abs(xa - x).max()) <= 8 / 255 + 1e-6 and float(a) == float(b) and swap2.__name__ == "swap_pgd"
    i0, i1 = space.index_of(ARCHS[0]), space.index_of(DISC)
    t = P.proxy_table(["swap", "vkdnw_dim"], [i0, i1], net, v, x, y, space, key=key, progress=False)
    assert np.isnan(t.loc[i1, "swap"]) and t.loc[i1, "swap_undefined"] and not t.loc[i0, "swap_undefined"]
    assert t.loc[i0, "swap"] == float(c) and t.loc[i0, "vkdnw_dim"] == 21 + 9 * 3
    assert float(VK.vkdnw_dim(net, None, DISC)) == 21 + 9 * 1 and t.loc[i1, "vkdnw_dim_undefined"]


def test_rank_aggregations():
    """AZ-NAS's aggregation = Σ log(rankdata / n) (the reference's formula); VKDNW_single is the
    dense lexicographic rank of (dim, entropy); VKDNW_agg adds the log ranks of four columns."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        rng.normal(size=(30, 6)),
        columns=["az_expressivity", "az_progressivity", "az_trainability", "flops", "jacov", "vkdnw"],
    )
    df["vkdnw_dim"] = rng.integers(0, 3, 30) * 45 + 21.0
    want = sum(
        np.log(rankdata(df[c]) / 30) for c in ("flops", "az_expressivity", "az_progressivity", "az_trainability")
    )
    np.testing.assert_allclose(AZ.az_nas_rank(df).to_numpy(), want, rtol=1e-12)
    single = VK.vkdnw_rank(df)
    order = sorted(zip(df.vkdnw_dim, df.vkdnw))
    assert single.max() == 30 and single.iloc[0] == order.index((df.vkdnw_dim[0], df.vkdnw[0])) + 1
    agg = VK.vkdnw_agg_rank(df)
    want = np.log(single) + sum(
        np.log(rankdata(df[c])) for c in ("az_expressivity", "az_trainability", "flops", "jacov")
    )
    np.testing.assert_allclose(agg.to_numpy(), want, rtol=1e-12)
    df.loc[3, "jacov"] = np.nan
    assert np.isnan(VK.vkdnw_agg_rank(df)[3]) and np.isnan(AZ.az_nas_rank(df.assign(flops=df.jacov))[3])
