"""Tests of robntk.proxies: exact params/flops vs NAS-Bench-Suite-Zero, gradient proxies vs a
plain jax.grad on the fixed cell's sub-tree, nwot vs an explicit numpy kernel, cell-as-data
parity, proxy_table flags."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import proxies as P
from robntk.nb201 import layers as nl
from robntk.nb201.cell import op_ids, to_ops
from robntk.nb201.network import TinyNetwork
from robntk.proxies import _common as PC
from robntk.proxies import robust as PR
from robntk.proxies import zen_zico_tenas as PZ

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"
DISC = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def setup():
    net = TinyNetwork(C=3, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3))
    y = jnp.array([0, 3, 7, 3])
    return net, v, x, y


def test_params_flops_match_suite_zero(data_dir):
    from robntk.data.suite_zero import load_suite_zero

    for ds in ("cifar10", "ImageNet16-120"):
        df = load_suite_zero(ds, data_dir)
        net = TinyNetwork.for_dataset(ds)
        ids = np.stack([op_ids(a) for a in df.arch_str])
        fp = np.asarray(jax.jit(jax.vmap(lambda c: P.param_count(net, c)))(ids))
        ff = np.asarray(jax.jit(jax.vmap(lambda c: P.flop_count(net, c)))(ids))
        # the file's values are integer counts / 1e6 printed in decimal: exact integer equality
        np.testing.assert_array_equal(fp, np.rint(df.params.to_numpy() * 1e6).astype(np.int64))
        np.testing.assert_array_equal(ff, np.rint(df.flops.to_numpy() * 1e6).astype(np.int64))
        assert np.abs(fp / 1e6 - df.params.to_numpy()).max() < 1e-12
        # params also equals the PyTorch-module count
        assert fp[0] == net.num_params(df.arch_str.iloc[0])
    assert (
        P.flop_count(
            TinyNetwork.for_dataset("cifar10"),
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        )
        > 0
    )


def _sub_grads(net, v, x, y, arch):
    sub = net.extract(v, arch)

    def loss(p):
        logits = net.apply({"params": p}, x, arch, train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

    g = jax.grad(loss)(sub["params"])
    kern = lambda t: [
        l for path, l in jax.tree_util.tree_flatten_with_path(t)[0] if jax.tree_util.keystr(path).endswith("['kernel']")
    ]
    return kern(sub["params"]), kern(g)


def test_gradient_proxies_vs_plain_grad(setup):
    net, v, x, y = setup
    W, G = _sub_grads(net, v, x, y, ARCH)
    want = {
        "snip": sum(float(jnp.sum(jnp.abs(w * g))) for w, g in zip(W, G)),
        "plain": sum(float(jnp.sum(w * g)) for w, g in zip(W, G)),
        "grad_norm": sum(float(jnp.linalg.norm(g.ravel())) for g in G),
        "l2_norm": sum(float(jnp.linalg.norm(w.ravel())) for w in W),
    }
    names = list(want)
    # one compile for the four proxies (fixed cell: the cell-as-data form is checked against
    # the fixed one in test_cell_as_data_parity_and_disconnected)
    f = jax.jit(lambda: [P.PROXIES[n](net, v, ARCH, x, y, None) for n in names])
    for name, got in zip(names, f()):
        assert float(got) == pytest.approx(want[name], rel=1e-4), name


def test_nwot_vs_numpy_codes(setup):
    net, v, x, y = setup
    zs = [np.asarray(z).reshape(4, -1) for z, a in P.relu_inputs(net, v, ARCH, x) if float(a) == 1.0]
    # 3 cells x 3 conv edges + 2 reductions x 2 ReLUs + lastact
    assert len(zs) == 3 * 3 + 4 + 1
    K = np.zeros((4, 4))
    for z in zs:
        c = z > 0
        K += (c[:, None, :] == c[None, :, :]).sum(-1)  # D - Hamming distance
    want = np.linalg.slogdet(K)[1]
    got = jax.jit(lambda c: P.nwot(net, v, c, x, y, None))(jnp.asarray(op_ids(ARCH)))
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_cell_as_data_parity_and_disconnected(setup):
    net, v, x, y = setup
    # fisher: the proxy with taps inside the switch (synflow's cell-as-data compile adds ~8 s
    # and no other code path; linear_regions is checked through proxy_table)
    for name in ("fisher",):
        f = jax.jit(lambda c, fn=P.PROXIES[name]: fn(net, v, c, x, y, None))
        a = float(f(jnp.asarray(op_ids(ARCH))))
        b = float(jax.jit(lambda fn=P.PROXIES[name]: fn(net, v, ARCH, x, y, None))())
        assert np.isfinite(a) and a == pytest.approx(b, rel=1e-4), name
    # no input→output path: synflow's sum is exactly 0 (log −inf)
    assert float(P.synflow(net, v, DISC, x, y, None, log=False)) == 0.0


def test_proxy_table_and_errors(space, setup):
    net, v, x, y = setup
    with pytest.raises(ValueError, match="allowed: params"):
        P.proxy_table(["nope"], [0], net, v, x, y, space)
    idx = [space.index_of(ARCH), space.index_of(DISC)]
    # linear_regions: a cheap cell-as-data compile (forward only), also checked against the
    # fixed-cell value
    t = P.proxy_table(["params", "linear_regions"], idx, net, v, x, y, space, progress=False)
    assert list(t.index) == idx
    assert not t.loc[idx[0], "linear_regions_undefined"]
    assert t.loc[idx[0], "linear_regions"] == float(P.linear_regions(net, v, ARCH, x))
    assert t.loc[idx[1], "linear_regions_undefined"] and np.isnan(t.loc[idx[1], "linear_regions"])
    assert not t["params_undefined"].any()
    assert t.loc[idx[0], "params"] == net.num_params(ARCH) / 1e6  # exact (float64)
    # synflow runs in float64 on the same (float32) weights, as NASLib does (float32 overflows)
    t = P.proxy_table(["synflow"], idx[:1], net, v, x, y, space, progress=False)
    with jax.enable_x64(True):
        v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), v)
        want = float(P.synflow(net, v64, ARCH, jnp.asarray(x, jnp.float64)))
    assert t.loc[idx[0], "synflow"] == pytest.approx(want, rel=1e-12)
    assert t.loc[idx[0], "synflow"] != float(P.synflow(net, v, ARCH, x))


def test_proxy_table_groups_share_one_pass(space, setup, tmp_path):
    """Members of a GROUPS group come from one call per arch (one stored timing) and equal the
    proxies computed one by one on the fixed cell; a member added later reuses nothing stale."""
    net, v, x, y = setup
    assert all(n in P.PROXIES for ms in P.GROUPS.values() for n in ms)
    i = space.index_of(ARCH)
    one = {
        n: float(jax.jit(lambda fn=P.PROXIES[n]: fn(net, v, ARCH, x, y, None))())
        for n in ("snip", "plain", "grad_norm", "fisher", "jacov", "epe_nas")
    }
    cfg = {"test": 1}
    t = P.proxy_table(
        ["snip", "fisher", "jacov", "epe_nas", "l2_norm"],
        [i],
        net,
        v,
        x,
        y,
        space,
        progress=False,
        store=tmp_path / "s",
        store_config=cfg,
    )
    t2 = P.proxy_table(
        ["plain", "grad_norm"], [i], net, v, x, y, space, progress=False, store=tmp_path / "s", store_config=cfg
    )
    for n, want in one.items():
        got = (t if n in t else t2).loc[i, n]
        assert np.isfinite(want) and got == pytest.approx(want, rel=1e-5), n
    from robntk.jobs.store import ResultStore

    secs = {
        n: ResultStore.open(tmp_path / "s" / n, create=False).read().rows[i][f"{n}_s"]
        for n in ("snip", "fisher", "jacov", "epe_nas")
    }
    assert secs["snip"] == secs["fisher"] and secs["jacov"] == secs["epe_nas"]
    assert secs["snip"] != secs["jacov"]


def test_grasp_vs_finite_difference_hvp():
    # −θᵀ H g with H g from central differences of a plain jax.grad of the fixed cell's
    # sub-tree, (∇L(θ + h·g) − ∇L(θ − h·g)) / 2h (g on the conv/linear weights only), float64:
    # an independent method for the proxy's forward-over-reverse product (O(h²) truncation:
    # 2e-6 relative at h = 1e-5, below 1e-7 at h = 1e-6)
    from jax.flatten_util import ravel_pytree

    with jax.enable_x64(True):
        net = TinyNetwork(C=1, N=1, num_classes=4, dataset="cifar10")
        v = net.init(jax.random.PRNGKey(0), jnp.float64)
        x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float64)
        y = jnp.array([0, 3, 2, 3])
        sub = net.extract(v, ARCH)["params"]
        flat, unravel = ravel_pytree(sub)

        def loss(f):
            logits = net.apply({"params": unravel(f)}, x, ARCH, train=True)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

        is_k = lambda path: jax.tree_util.keystr(path).endswith("['kernel']")
        kmask, _ = ravel_pytree(
            jax.tree_util.tree_map_with_path(lambda path, a: jnp.full_like(a, 1.0 if is_k(path) else 0.0), sub)
        )
        grad = jax.jit(jax.grad(loss))
        g = kmask * grad(flat)
        h = 1e-6
        Hg = (grad(flat + h * g) - grad(flat - h * g)) / (2 * h)
        want = float(-jnp.sum(kmask * flat * Hg))
        got = float(jax.jit(lambda: P.grasp(net, v, ARCH, x, y, None))())
    assert got == pytest.approx(want, rel=1e-6)
    assert abs(want) > 1e-3


# --------------------------------------------------------------------------- hand-derived checks
NEW = ("epe_nas", "zen", "zico", "tenas_ntk_cond", "linear_regions", "croze")


def _pixel_to_normalised_jacobian(net, v, arch, x):
    """Rows of ∂(Σ logits)/∂x̂ (x̂ the normalised input), from the pixel-space gradient by the
    chain rule ∂/∂x̂ = std · ∂/∂x (independent of the proxies' own normalised-input trace)."""
    from robntk.core.registry import DATASETS

    gx = jax.jit(jax.grad(lambda z: jnp.sum(net.apply(v, z, arch, train=True))))(x)
    std = np.asarray(DATASETS[net.dataset].std) / 255.0
    return (np.asarray(gx) * std).reshape(x.shape[0], -1)


def test_jacov_vs_numpy_corrcoef(setup):
    net, v, x, y = setup
    J = _pixel_to_normalised_jacobian(net, v, ARCH, x)
    lam = np.linalg.eigvalsh(np.corrcoef(J))
    want = -np.sum(np.log(lam + 1e-5) + 1.0 / (lam + 1e-5))
    got = float(jax.jit(lambda: P.jacov(net, v, ARCH, x, y, None))())
    assert got == pytest.approx(want, rel=1e-4, abs=1e-3)


def test_fisher_vs_per_activation_formula(setup):
    # fisher = Σ_l m_l Σ_k ½ mean_b (∂L/∂s_bk)², s_bk a per-(example, channel) multiplier of
    # layer l's output a (the derivative Σ_hw a·∂L/∂a, taken here by autodiff through the
    # multiplier), m_l = #weights per output channel; classifier by hand: z·(softmax − onehot)/B.
    net, v, x, y = setup
    pn = PC._plain_net(net)
    xn = nl.normalize(x, net.dataset)
    p = v["params"]
    zero = {k: jnp.zeros(s) for k, s in pn.tap_shapes(x.shape).items()}
    logits, rec = pn.forward(p, None, xn, ARCH, True, taps=zero)
    layers = [("stem/pre", rec["stem/conv_out"], p["stem_conv"]["kernel"])]
    for k, kind, _ in net.cell_positions():
        n = f"cells_{k}"
        if kind == "reduce":
            layers += [
                (f"{n}/{s}/pre", rec[f"{n}/{s}/conv_out"], p[n][s]["conv"]["kernel"]) for s in ("conv_a", "conv_b")
            ]
            W = p[n]["downsample"]["kernel"]
            layers.append((f"{n}/downsample", nl.conv(rec[f"{n}/downsample/in"], W), W))
        for e, op in enumerate(to_ops(ARCH)):
            if kind == "cell" and op.startswith("nor_conv"):
                layers.append((f"{n}/e{e}/pre", rec[f"{n}/e{e}/conv_out"], p[n][f"e{e}_{op}"]["conv"]["kernel"]))

    def loss(S):
        taps = dict(zero)
        for (name, a, _), s in zip(layers, S):
            taps[name] = s[:, None, None, :] * jax.lax.stop_gradient(a)
        return PC._ce(pn.forward(p, None, xn, ARCH, True, taps=taps)[0], y)

    S0 = [jnp.zeros((x.shape[0], a.shape[-1])) for _, a, _ in layers]
    dS = jax.jit(jax.grad(loss))(S0)
    want = sum(
        np.prod(W.shape[:-1]) * np.sum(0.5 * np.mean(np.square(np.asarray(d)), axis=0))
        for (_, _, W), d in zip(layers, dS)
    )
    z = np.asarray(logits, np.float64)
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    dz = z * (prob - np.eye(net.num_classes)[np.asarray(y)]) / len(y)
    want += 4 * net.C * np.sum(0.5 * np.mean(dz**2, axis=0))
    assert len(layers) == 1 + 3 * 3 + 2 * 3
    got = float(jax.jit(lambda: P.fisher(net, v, ARCH, x, y, None))())
    assert got == pytest.approx(want, rel=1e-4)


def test_epe_nas_vs_numpy_per_class_loop():
    def naslib_epe(J, labels, K):  # the per-class loop of the definition, in numpy
        s = {}
        for c in dict.fromkeys(labels.tolist()):
            rows = J[labels == c]
            if K > 100 and len(rows) == 1:
                continue  # len() of numpy's scalar corrcoef fails: class dropped
            sc = np.sum(np.log(np.abs(np.corrcoef(rows)) + 1e-5))
            s[c] = sc / len(rows) if K > 100 else sc
        if K <= 100:
            return sum(abs(a) for a in s.values())
        return sum(abs(a - b) for a in s.values() for b in s.values()) / len(s)

    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 8, 8, 3))
    for K, labels in ((10, [0, 3, 7, 3, 3, 1]), (120, [5, 5, 9, 9, 9, 100])):
        net = TinyNetwork(C=2, N=1, num_classes=K, dataset="cifar10")
        v = net.init(jax.random.PRNGKey(0))
        y = jnp.array(labels)
        want = naslib_epe(_pixel_to_normalised_jacobian(net, v, ARCH, x), np.array(labels), K)
        got = float(jax.jit(lambda: P.epe_nas(net, v, ARCH, x, y, None))())
        assert np.isfinite(want) and got == pytest.approx(want, rel=1e-4), K


def test_zen_vs_running_stat_updates(setup):
    # the BN term from the network's own running-statistics update (momentum 0.9 in flax's
    # convention, PyTorch's unbiased batch variance): r = 0.81 r0 + 0.09 v(x1) + 0.1 v(x_mix)
    net, v, x, y = setup
    key = jax.random.PRNGKey(5)
    p, x1, xm = PZ._zen_draws(net, v, x, key, True, 1e-2)
    pn = PC._plain_net(net)
    _, aux = pn.forward(p, v["batch_stats"], x1, ARCH, True, momentum=0.9)
    _, aux = pn.forward(p, aux["batch_stats"], xm, ARCH, True, momentum=0.9)
    log_bn, count = 0.0, 0
    for path, r in jax.tree_util.tree_flatten_with_path(aux["batch_stats"])[0]:
        if jax.tree_util.keystr(path).endswith("['var']"):
            log_bn += 0.5 * np.log(np.mean(np.asarray(r)))
            count += 1
    assert count == 1 + 3 * 3 + 2 * 2 + 1  # stem, 3 conv edges x 3 cells, 2 reductions x 2, lastact
    zero = {k: jnp.zeros(s) for k, s in pn.tap_shapes(x.shape).items()}

    def pre_gap(z):
        rec = pn.forward(p, None, z, ARCH, True, taps=zero)[1]
        return np.asarray(jax.nn.relu(nl.batch_norm(rec["lastact/conv_out"], p["lastact_bn"], None, True)[0]))

    want = np.log(np.mean(np.abs(pre_gap(x1) - pre_gap(xm)).sum(axis=(1, 2, 3)))) + log_bn
    f = jax.jit(lambda g, k: P.zen(net, v, ARCH, x, y, k, mixup_gamma=g))
    got = float(f(1e-2, key))
    assert got == pytest.approx(want, rel=1e-4)
    # the log of an L1 difference that is linear in γ for small γ: doubling γ adds ≈ log 2
    assert float(f(2e-2, key)) - got == pytest.approx(np.log(2.0), abs=0.05)
    assert float(f(1e-2, jax.random.PRNGKey(6))) != pytest.approx(got, rel=1e-3)  # the key is used
    with pytest.raises(ValueError, match="PRNG key"):
        P.zen(net, v, ARCH, x, y, None)
    with pytest.raises(ValueError, match="allowed: running, batch"):
        P.zen(net, v, ARCH, x, y, key, bn_var="nope")


def test_linear_regions_counts_distinct_patterns(setup):
    net, v, x, y = setup
    f = jax.jit(lambda xx: P.linear_regions(net, v, ARCH, xx, None, None))
    a, b, c = x[0], x[1], x[2]
    for batch, n in (([a, a, b, c], 3), ([a, a, b, b], 2), ([a, b, c, x[3]], 4)):
        xx = jnp.stack(batch)
        codes = np.concatenate(
            [np.asarray(z).reshape(4, -1) > 0 for z, act in P.relu_inputs(net, v, ARCH, xx) if float(act) == 1.0],
            axis=1,
        )
        assert len(np.unique(codes, axis=0)) == n
        assert float(f(xx)) == n


def test_tenas_ntk_cond_vs_generic_ntk():
    from robntk.ntk import empirical as ntk

    with jax.enable_x64(True):
        net = TinyNetwork(C=2, N=1, num_classes=4, dataset="cifar10")
        v = net.init(jax.random.PRNGKey(0), jnp.float64)
        x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float64)
        fn, params = net.make_apply(v, ARCH, "train")
        K = np.asarray(jax.jit(lambda: ntk.empirical_ntk(fn, params, x, output_mode="sum"))())
        lam = np.linalg.eigvalsh(K)
        want = -lam[-1] / lam[0]
        got = float(jax.jit(lambda: P.tenas_ntk_cond(net, v, ARCH, x, None, None))())
    assert lam[0] > 0 and want < -1
    assert got == pytest.approx(want, rel=1e-6)


def test_zico_vs_numpy_over_minibatches():
    net = TinyNetwork(C=2, N=1, num_classes=10, dataset="cifar10")
    v = net.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 3))
    y = jnp.array([0, 3, 7, 3, 1, 2, 2, 9])
    sub_grads = jax.jit(lambda xx, yy: _sub_grads(net, v, xx, yy, ARCH)[1])
    for splits in (4,):  # mini-batches of 2 in torch.chunk order
        b = 8 // splits
        G = [
            np.stack([np.asarray(g) for g in gs])
            for gs in zip(*[sub_grads(x[m * b : (m + 1) * b], y[m * b : (m + 1) * b]) for m in range(splits)])
        ]
        want = 0.0
        for g in G:  # (M, ...) per layer
            sd = np.std(g, axis=0)  # population std (ddof 0)
            nz = sd != 0
            tot = np.sum(np.mean(np.abs(g), axis=0)[nz] / sd[nz])
            want += np.log(tot) if tot else 0.0
        got = float(jax.jit(lambda s=splits: P.zico(net, v, ARCH, x, y, None, splits=s))())
        # float32: entries with g1 ≈ g2 make mean/std sensitive to rounding (measured 1e-4)
        assert got == pytest.approx(want, rel=1e-3), splits
    with pytest.raises(ValueError, match="dividing the batch size"):
        P.zico(net, v, ARCH, x, y, None, splits=3)


def test_croze_identity_surrogate_and_bound(setup):
    # weight_step = 0 and eps = 0: θ_r = θ and x_adv = x, so every cosine of a non-zero vector
    # is 1 and layer l scores (2·P_l)·G_l·(2·F_l): P_l = #weight columns (entries per output
    # channel), G_l = #non-zero gradient columns (a plain jax.grad of the |θ| sub-network), F_l
    # the entries of its paired stage feature; with perturbations every factor can only shrink.
    net, v, x, y = setup
    arch = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    H, C = x.shape[1], net.C
    feat = [H * H * C, (H // 2) ** 2 * 2 * C, (H // 4) ** 2 * 4 * C, (H // 4) ** 2 * 4 * C, 4 * C]
    sub = jax.tree_util.tree_map(jnp.abs, net.extract(v, arch)["params"])
    gsub = jax.jit(jax.grad(lambda q: PC._ce(net.apply({"params": q}, x, arch, train=True), y)))(sub)

    def kernel(tree, path):
        node = tree
        for part in path.split("/"):
            node = node[part]
        return np.asarray(node.get("conv", node)["kernel"])

    want, pairs = 0.0, []
    for path, w, a in PC._weight_leaves(net, v["params"], jnp.asarray(op_ids(arch))):
        if float(a):
            i = PR._feature_index(net, path)
            pairs.append((path.split("/")[0], i))
            g = kernel(gsub, path)
            G_l = int(np.sum(np.linalg.norm(g, axis=-1) > 1e-8))
            want += 2 * np.prod(w.shape[:-1]) * G_l * 2 * feat[i]
    # the reference's ⌊cells passed / N⌋ pairing, N = 1
    assert dict(pairs) == {
        "stem_conv": 0,
        "cells_0": 1,
        "cells_1": 1,
        "cells_2": 2,
        "cells_3": 2,
        "cells_4": 3,
        "classifier": 4,
    }
    f = jax.jit(lambda w, e: P.croze(net, v, arch, x, y, None, weight_step=w, eps=e))
    assert float(f(0.0, 0.0)) == pytest.approx(want, rel=1e-5)
    got = float(f(2.0, 0.01))
    assert np.isfinite(got) and 0 < got < want


def test_new_proxies_nan_for_disconnected_cells(setup):
    net, v, x, y = setup
    key = jax.random.PRNGKey(3)
    for name in NEW + ("jacov",):
        val = float(jax.jit(lambda fn=P.PROXIES[name]: fn(net, v, DISC, x, y, key))())
        assert np.isnan(val), name
    assert bool(P.connected(ARCH)) and not bool(P.connected(DISC))
    assert not bool(jax.jit(P.connected)(jnp.asarray(op_ids(DISC))))
    with pytest.raises(ValueError, match="allowed: .*zen.*croze"):
        P.check_proxy_names(["zen", "zen_nas"])


def test_proxies_command_writes_table_with_nan_flags(data_dir, tmp_path):
    """``robntk proxies`` on a connected and a disconnected cell: params equal the exact count,
    nwot equals a direct call on the same network and batch, the disconnected cell is NaN and
    flagged; unknown names list the allowed ones."""
    import json

    import pandas as pd

    from robntk.cli import main
    from robntk.scoring.config import ScoreConfig, load_batch

    out = tmp_path / "p.csv"
    argv = [
        "proxies",
        "--data-dir",
        str(data_dir),
        "--arch",
        "2581",
        "--arch",
        "10",
        "--C",
        "4",
        "--N",
        "1",
        "--batch-size",
        "8",
        "--proxies",
        "params",
        "nwot",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    df = pd.read_csv(out).set_index("nb201_index")
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["config"]["batch_size"] == 8 and side["proxies"] == ["params", "nwot"]
    net = TinyNetwork.for_dataset("cifar10", 4, 1)
    from robntk.nb201.searchspace import SearchSpace

    space = SearchSpace.load(data_dir)
    assert df.loc[2581, "params"] == int(P.param_count(net, space.ops(2581))) / 1e6  # exact: counted in float64
    x, y, _ = load_batch(ScoreConfig(batch_size=8, C=4, N=1), data_dir)
    v = net.init(jax.random.PRNGKey(0))
    assert df.loc[2581, "nwot"] == pytest.approx(float(P.nwot(net, v, space.arch_str(2581), x, y)), rel=1e-5)
    assert np.isnan(df.loc[10, "nwot"]) and bool(df.loc[10, "nwot_undefined"]) and not df.loc[2581, "nwot_undefined"]
    assert main(argv[:-4] + ["--proxies", "nope", "--out", str(out)]) == 2
    # resumable: a rerun with one more proxy reads nwot from the store (no new chunk) and adds flops
    from robntk.jobs.store import ResultStore, StoreMismatchError

    nwot_store = ResultStore.open(tmp_path / "p.csv.store" / "nwot", create=False)
    chunks = nwot_store.chunk_files()
    assert len(chunks) == 1 and nwot_store.done() == {2581, 10}
    i = argv.index("nwot")
    assert main(argv[: i + 1] + ["flops"] + argv[i + 1 :]) == 0
    assert nwot_store.chunk_files() == chunks
    df2 = pd.read_csv(out).set_index("nb201_index")
    assert df2.loc[2581, "nwot"] == df.loc[2581, "nwot"] and df2.loc[2581, "flops"] > 0
    # a time budget of 0 starts no arch: nothing computed, nothing stored, an empty table
    out0 = tmp_path / "q.csv"
    assert main(argv[:-2] + [str(out0), "--minutes", "0", "--no-progress"]) == 0
    assert len(pd.read_csv(out0)) == 0 and ResultStore.open(tmp_path / "q.csv.store" / "nwot").done() == set()
    # the same store under another configuration (batch size) is refused
    with pytest.raises(StoreMismatchError):
        P.proxy_table(
            ["nwot"],
            [2581],
            net,
            v,
            x[:4],
            y[:4],
            space,
            store=tmp_path / "p.csv.store",
            store_config={"batch_size": 4},
            progress=False,
        )
