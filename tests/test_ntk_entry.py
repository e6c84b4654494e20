"""robntk.ntk.empirical_ntk_fn: neural-tangents' interface on robntk's implementations.

Every kernel is checked against an independent reference written here — the explicit
``jax.jacobian`` of the whole output, contracted over the parameters, then traced / diagonalised
by enumerating the result's indices one by one (neural-tangents 0.6.5 semantics: a traced axis is
averaged, a diagonal axis kept once, other axes kept as adjacent pairs) — and against robntk's
existing entry points (robntk.ntk.empirical.empirical_ntk, robntk.ntk.layerwise.layerwise_ntk).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.nb201 import cell as nc
from robntk.nb201 import network as nw
from robntk.ntk import IMPLEMENTATIONS, NT_IMPLEMENTATION_CODES, empirical_ntk_fn
from robntk.ntk import empirical as ntk
from robntk.ntk import layerwise as layer_ntk
from robntk.ntk.ntk_fn import resolve_implementation

pytestmark = pytest.mark.usefixtures("x64")


A = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
AXES = [((-1,), ()), ((), ()), ((-1,), (0,)), ((), (0,))]  # (trace_axes, diagonal_axes)


# ----------------------------------------------------------------------------------- reference
def full_kernel(f, params, x1, x2=None, **kw):
    """Θ[a, b] = Σ_p ∂f(x1)[a]/∂θ_p ∂f(x2)[b]/∂θ_p from explicit ``jax.jacobian``s: (*S1, *S2)."""
    x2 = x1 if x2 is None else x2

    def jac(x):
        out = f(params, x, **kw)
        leaves = jax.tree_util.tree_leaves(jax.jacobian(lambda p: f(p, x, **kw))(params))
        return np.concatenate([np.asarray(a).reshape(out.shape + (-1,)) for a in leaves], axis=-1)

    return np.tensordot(jac(x1), jac(x2), axes=([-1], [-1]))


def nt_layout(full, trace_axes, diagonal_axes):
    """neural-tangents' trace (mean) / diagonal / pair layout of a full kernel (*S1, *S2), one
    result entry at a time."""
    n = full.ndim // 2
    S1, S2 = full.shape[:n], full.shape[n:]
    tr = sorted(a % n for a in trace_axes)
    dg = sorted(a % n for a in diagonal_axes)
    shape, slots = [], []  # result axes: (output axis, 'a' | 'b' | 'ab')
    for k in range(n):
        if k in tr:
            continue
        if k in dg:
            shape.append(S1[k]), slots.append((k, "ab"))
        else:
            shape += [S1[k], S2[k]]
            slots += [(k, "a"), (k, "b")]
    res = np.zeros(shape)
    for idx in np.ndindex(*shape):
        a, b = [None] * n, [None] * n
        for (k, side), i in zip(slots, idx):
            if "a" in side:
                a[k] = i
            if "b" in side:
                b[k] = i
        total = 0.0
        for t in itertools.product(*[range(S1[k]) for k in tr]):
            for k, i in zip(tr, t):
                a[k] = b[k] = i
            total += full[tuple(a) + tuple(b)]
        res[idx] = total / np.prod([S1[k] for k in tr])
    return res


def reference(f, params, x1, x2, trace_axes, diagonal_axes, **kw):
    """The independent reference kernel in neural-tangents' semantics."""
    return nt_layout(full_kernel(f, params, x1, x2, **kw), trace_axes, diagonal_axes)


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ----------------------------------------------------------------------------------- small nets
def mlp(p, x):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return h @ p["w2"] + p["b2"]


def cnn_features(p, x):
    """(N, 6, 6, 2) → conv 3×3 (2→3, SAME) → ReLU → conv 3×3 (3→2): (N, 6, 6, 2)."""
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.nn.relu(jax.lax.conv_general_dilated(x, p["k1"], (1, 1), "SAME", dimension_numbers=dn))
    return jax.lax.conv_general_dilated(h, p["k2"], (1, 1), "SAME", dimension_numbers=dn)


def cnn(p, x):
    """CNN with a dense head: (N, 6, 6, 2) → (N, 3) logits."""
    return jnp.mean(jax.nn.relu(cnn_features(p, x)), axis=(1, 2)) @ p["w"]


@pytest.fixture(scope="module")
def small():
    k = jax.random.split(jax.random.PRNGKey(0), 8)
    n = lambda i, s: jax.random.normal(k[i], s, jnp.float64)
    p_mlp = {"w1": n(0, (5, 7)) / 2, "b1": n(1, (7,)), "w2": n(2, (7, 3)) / 2, "b2": n(3, (3,))}
    p_cnn = {"k1": n(4, (3, 3, 2, 3)) / 3, "k2": n(5, (3, 3, 3, 2)) / 3, "w": n(6, (2, 3))}
    xm, xm2 = n(7, (4, 5)), jax.random.normal(jax.random.PRNGKey(9), (3, 5), jnp.float64)
    xc = jax.random.normal(jax.random.PRNGKey(10), (3, 6, 6, 2), jnp.float64)
    xc2 = jax.random.normal(jax.random.PRNGKey(11), (2, 6, 6, 2), jnp.float64)
    return {"mlp": (mlp, p_mlp, xm, xm2), "cnn": (cnn, p_cnn, xc, xc2)}


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_small_networks_every_implementation(small, net):
    """Every generic implementation and vmap setting, for the trace kernel (-1,) and the full
    kernel (), on K(x, x) and K(x, x2); diagonal_axes=(0,) with both."""
    f, p, x, x2 = small[net]
    ref = {None: full_kernel(f, p, x), "x2": full_kernel(f, p, x, x2)}
    impls = (("jacobian", None), (1, 0), ("ntvp", None), (2, 0))
    calls = [(i, vm, tr, (), y2) for i, vm in impls for tr in ((-1,), ()) for y2 in (None, "x2")]
    calls += [
        ("jacobian", None, (-1,), (0,), None),
        (1, 0, (), (0,), None),
        (2, 0, (-1,), (0,), None),
        ("ntvp", None, (), (0,), None),
    ]
    got = {}
    for impl, vmap_axes, trace_axes, diagonal_axes, y2 in calls:
        K = empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, impl)(x, None if y2 is None else x2, p)
        assert rel(K, nt_layout(ref[y2], trace_axes, diagonal_axes)) < 1e-10, (impl, vmap_axes, trace_axes, y2)
        got[impl, vmap_axes, trace_axes, diagonal_axes, y2] = K
    assert got["jacobian", None, (-1,), (0,), None].shape == (4 if net == "mlp" else 3,)
    # the existing entry point: NT's trace is the MEAN over logits, output_mode='trace' the SUM
    O = 3
    np.testing.assert_allclose(
        O * got["jacobian", None, (-1,), (), None], ntk.empirical_ntk(f, p, x, output_mode="trace"), rtol=1e-10
    )
    np.testing.assert_allclose(
        got[2, 0, (), (), "x2"], ntk.empirical_ntk(f, p, x, x2, output_mode="full", implementation="ntvp"), rtol=1e-10
    )


def test_general_output_axes_match_nt_layout(small):
    """NT's docstring example: output (N, X, Y, Z), trace_axes=(1,), diagonal_axes=(2,) →
    (N1, N2, Y, Z, Z); plus a diagonal on the batch axis and a trace over the batch."""
    _, p, x, x2 = small["cnn"]
    f = cnn_features
    K = empirical_ntk_fn(f, trace_axes=(1,), diagonal_axes=(2,))(x, x2, p)
    assert K.shape == (3, 2, 6, 2, 2)
    assert rel(K, reference(f, p, x, x2, (1,), (2,))) < 1e-10
    for tr, dg, impl in (((-1, 1), (0,), "ntvp"), ((0, 2), (-1,), "jacobian"), ((0, 1, 2, 3), (), 1)):
        K = empirical_ntk_fn(f, trace_axes=tr, diagonal_axes=dg, vmap_axes=0, implementation=impl)(x, None, p)
        assert rel(K, reference(f, p, x, None, tr, dg)) < 1e-10, (tr, dg)


def test_vmap_axes_other_than_zero_and_kwargs(small):
    f, p, x, x2 = small["mlp"]
    want = reference(f, p, x, x2, (-1,), ())
    # batch on axis 1 of the input and of the output: traced logit axis is now 0
    fT = lambda q, xt: f(q, xt.T).T
    for impl in (1, 2):
        K = empirical_ntk_fn(fT, trace_axes=(0,), vmap_axes=1, implementation=impl)(x.T, x2.T, p)
        assert rel(K, want) < 1e-10
    # a keyword argument batched with x (kwargs_axes) or not batched
    fs = lambda q, z, scale, shift: f(q, z) * scale[:, None] + shift
    s1, s2 = jnp.linspace(0.5, 2.0, 4), jnp.linspace(1.0, 3.0, 3)
    ref = reference(lambda q, z: f(q, z) * s1[:, None], p, x, None, (-1,), ())
    K = empirical_ntk_fn(fs, vmap_axes=(0, 0, {"scale": 0}))(x, None, p, scale=s1, shift=1.5)
    assert rel(K, ref) < 1e-10
    K = empirical_ntk_fn(fs)(x, None, p, scale=s1, shift=1.5)
    assert rel(K, ref) < 1e-10
    # cross kernel with a batched keyword: the same values for x1 and x2 slices
    K = empirical_ntk_fn(fs, vmap_axes=(0, 0, {"scale": 0}))(x[:3], x2, p, scale=s2, shift=0.0)
    ref = reference(lambda q, z: f(q, z) * s2[:, None], p, x[:3], x2, (-1,), ())
    assert rel(K, ref) < 1e-10


def test_pytree_inputs_scalar_output_and_jit(small):
    f, p, x, _ = small["mlp"]
    y = jnp.array([0, 2, 1, 2])
    # the label read-out of bench_nt.py: inputs (x, one-hot), both batched on axis 0
    g = lambda q, xy: jnp.sum(f(q, xy[0]) * xy[1], axis=-1)
    K = empirical_ntk_fn(g, trace_axes=(), vmap_axes=0)((x, jax.nn.one_hot(y, 3)), None, p)
    np.testing.assert_allclose(K, ntk.empirical_ntk(f, p, x, output_mode="label", labels1=y), rtol=1e-10)
    # a scalar output gives a scalar kernel: |∇θ Σ f|²
    h = lambda q, z: jnp.sum(f(q, z))
    grad = jax.tree_util.tree_leaves(jax.grad(h)(p, x))
    K = empirical_ntk_fn(h)(x, None, p)
    assert K.shape == ()
    np.testing.assert_allclose(K, sum(float(jnp.sum(a * a)) for a in grad), rtol=1e-10)
    # jittable
    fn = empirical_ntk_fn(f, trace_axes=(), vmap_axes=0)
    np.testing.assert_allclose(jax.jit(fn)(x, None, p), fn(x, None, p), rtol=1e-12)


# ----------------------------------------------------------------------------------- NB201
@pytest.fixture(scope="module")
def nb201():
    net = nw.TinyNetwork(C=2, N=1, num_classes=3)
    v = net.init(jax.random.PRNGKey(0), jnp.float64, arch=A)
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 3), jnp.float64)
    x2 = jax.random.uniform(jax.random.PRNGKey(2), (3, 8, 8, 3), jnp.float64)
    return net, v, x, x2


@pytest.mark.parametrize("bn", ["train", "eval"])
def test_nb201_network_both_bn_modes(nb201, bn):
    """Every implementation (3 layerwise, 1 Jacobian, 2 NTK-vector products) on the NB201 network;
    each call exercises another path (trace vs full kernel, x2 None vs given, diagonal)."""
    net, v, x, x2 = nb201
    f, p = net.make_apply(v, A, bn)
    ref = {None: full_kernel(f, p, x), "x2": full_kernel(f, p, x, x2)}
    vm = 0 if bn == "eval" else None  # rows independent only with running statistics
    calls = [
        (3, None, (-1,), (), None),
        (3, None, (), (), "x2"),
        (3, None, (-1,), (0,), None),
        (1, None, (), (), None),
        (1, vm, (-1,), (), "x2"),
        (2, None, (-1,), (), "x2"),
    ]
    got = {}
    for impl, vmap_axes, trace_axes, diagonal_axes, y2 in calls:
        K = empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, impl)(x, None if y2 is None else x2, p)
        want = nt_layout(ref[y2], trace_axes, diagonal_axes)
        assert rel(K, want) < 1e-9, (impl, vmap_axes, trace_axes, diagonal_axes, y2)
        got[impl, trace_axes, diagonal_axes, y2] = K
    # the existing entry points: output_mode 'trace' (the SUM over logits) = O × NT's mean
    train = bn == "train"
    K_lw = layer_ntk.layerwise_ntk(net, p, v["batch_stats"], A, x, None, "trace", train)
    np.testing.assert_allclose(got[3, (-1,), (), None] * 3, K_lw, rtol=1e-10)


def test_nb201_cell_as_data_layerwise(nb201):
    """The engine's form: the full parameter tree and the cell as int op ids (lax.switch)."""
    net, _, x, _ = nb201
    v = net.init(jax.random.PRNGKey(0), jnp.float64)
    f, p = net.make_apply(v, jnp.asarray(nc.op_ids(A)), "eval")
    fixed, q = net.make_apply(net.extract(v, A), A, "eval")
    want = reference(fixed, q, x, None, (), ())
    K = empirical_ntk_fn(f, trace_axes=(), implementation=3)(x, None, p)
    assert rel(K, want) < 1e-10


# ----------------------------------------------------------------------------------- names, errors
def test_implementation_table_and_codes(nb201):
    net, v, *_ = nb201
    f, _ = net.make_apply(v, A, "eval")
    assert IMPLEMENTATIONS == ("auto", "layerwise", "jacobian", "ntvp")
    assert set(NT_IMPLEMENTATION_CODES.values()) == set(IMPLEMENTATIONS)
    assert [resolve_implementation(f, c) for c in (0, 1, 2, 3)] == ["layerwise", "jacobian", "ntvp", "layerwise"]
    assert [resolve_implementation(mlp, c) for c in (0, "auto", 1, 2)] == ["jacobian", "jacobian", "jacobian", "ntvp"]
    assert np.int64(2) is not None and resolve_implementation(mlp, np.int64(2)) == "ntvp"


def test_bad_arguments(small, nb201):
    f, p, x, x2 = small["mlp"]
    net, v, xn, _ = nb201
    ftrain, _ = net.make_apply(v, A, "train")
    cases = [
        (lambda: empirical_ntk_fn(f, implementation=4), "unknown implementation code 4"),
        (lambda: empirical_ntk_fn(f, implementation="structured"), "unknown implementation 'structured'"),
        (lambda: empirical_ntk_fn(f, implementation=3), "needs a robntk.nb201.network.NetworkFn"),
        (lambda: empirical_ntk_fn(ftrain, vmap_axes=0), "train-mode BN"),
        (lambda: empirical_ntk_fn(f, trace_axes="x"), "trace_axes must be an int"),
        (lambda: empirical_ntk_fn(f, vmap_axes=(0, None, {})), "vmap_axes must be"),
        (lambda: empirical_ntk_fn(f, chunk_size=0), "chunk_size must be"),
        (lambda: empirical_ntk_fn(f, trace_axes=(2,))(x, None, p), r"out of range for an output of rank 2"),
        (lambda: empirical_ntk_fn(f, trace_axes=(1, -1))(x, None, p), "twice"),
        (lambda: empirical_ntk_fn(f, trace_axes=(1,), diagonal_axes=(-1,))(x, None, p), "share an axis"),
        (lambda: empirical_ntk_fn(f, diagonal_axes=(0,))(x, x2, p), "size 4 for x1 and 3 for x2"),
        (lambda: empirical_ntk_fn(lambda q, z: {"o": f(q, z)})(x, None, p), "pytree outputs"),
        (lambda: empirical_ntk_fn(lambda q, z, rng: f(q, z))(x, None, p, rng=jax.random.PRNGKey(0)), "'rng'"),
        (lambda: empirical_ntk_fn(f, vmap_axes=(0, 0, {"s": 0}))(x, None, p), "were not passed"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call()
