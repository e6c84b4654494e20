"""RobNets: search space, networks (parameter counts vs the reference and the paper), findings on
NAS-RobBench-201, one-shot search and the command."""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk.robnets import network as rn
from robntk.robnets import space as rs

# Closed-form counts of the reference skeleton (gmh14/RobNets, CIFAR-10 head), hand-checked:
# RobNet-large = stem 2,916 + 20 cells + classifier 5,770 (see experiments/robnets/README.md).
REFERENCE_COUNTS = {"robnet_large_v1": 6_842_710, "robnet_free": 5_439_790, "robnet_large_v2": 33_326_666}


# --------------------------------------------------------------------------- space
def test_released_codes_and_density():
    assert len(rs.ROBNET_LARGE) == 14 and len(rs.ROBNET_FREE) == 20
    assert all(len(c) == 14 for c in rs.ROBNET_FREE)
    assert rs.cell_edges()[:5] == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)] and rs.cell_edges()[-1] == (4, 5)
    assert rs.density(rs.ROBNET_LARGE) == pytest.approx(22 / 28)
    assert rs.density(["00"] * 14) == 0.0 and rs.density(["11"] * 14) == 1.0
    # first cell of RobNet-free: 11 10 11 11 10 11 01 01 10 11 11 00 11 01 → 20 ones
    assert rs.density(rs.ROBNET_FREE[0]) == pytest.approx(20 / 28)


def test_code_and_config_validation():
    with pytest.raises(ValueError, match="14 edge codes"):
        rs.check_code(["11"] * 13)
    with pytest.raises(ValueError, match="unknown code '12'"):
        rs.check_code(["12"] + ["11"] * 13)
    with pytest.raises(ValueError, match="C must be even"):
        rs.RobNetConfig(C=35)
    with pytest.raises(ValueError, match="one code per cell"):
        rs.cell_codes([rs.ROBNET_LARGE], rs.RobNetConfig(share=False))
    with pytest.raises(ValueError, match="unknown RobNet"):
        rn.robnet("robnet_small")


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", list(rs.CONFIGS))
def test_parameter_count_equals_reference_skeleton(name):
    """flax tree size = closed form = the reference PyTorch skeleton's count (CIFAR-10 head)."""
    model = rn.robnet(name)
    assert rn.count_params(model) == REFERENCE_COUNTS[name]
    assert rs.num_params(rs.GENOTYPES[name], rs.CONFIGS[name]) == REFERENCE_COUNTS[name]


@pytest.mark.parametrize("name", list(rs.CONFIGS))
def test_paper_model_sizes_are_those_of_a_100_class_head(name):
    """The paper's sizes (6.89M, 5.49M, 33.42M) are not those of the released CIFAR-10 skeleton
    (6.84M, 5.44M, 33.33M); all three equal the skeleton with a 100-way classifier, and only
    K ∈ {97..100} fits all three at the printed precision."""
    paper = rs.PAPER_PARAMS[name] / 1e6
    assert round(REFERENCE_COUNTS[name] / 1e6, 2) != paper
    cfg100 = rs.RobNetConfig(**{**rs.CONFIGS[name].to_dict(), "num_classes": 100})
    assert round(rs.num_params(rs.GENOTYPES[name], cfg100) / 1e6, 2) == pytest.approx(paper)


def test_only_heads_97_to_100_fit_all_three_paper_sizes():
    fits = set.intersection(*(set(rs.paper_head_classes(n, 200)) for n in rs.CONFIGS))
    assert sorted(fits) == [97, 98, 99, 100]


# --------------------------------------------------------------------------- forward
def _cell_io(code, reduction=False, reduction_prev=False, C=4):
    cell = rn.Cell(tuple(code), C, reduction, reduction_prev)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    s0 = jax.random.normal(k1, (2, 8, 8, 6), jnp.float32)
    s1 = jax.random.normal(k2, (2, 8, 8, 5), jnp.float32)
    v = cell.init(k3, s0, s1, train=False)
    return cell, v, s0, s1


def test_identity_cell_sums_node_inputs():
    """All edges identity: node2 = s0+s1, node3 = 2(s0+s1), node4 = 4(.), node5 = 8(.)."""
    cell, v, s0, s1 = _cell_io(["10"] * 14)
    out = cell.apply(v, s0, s1, train=False)
    p = v["params"]
    pre = lambda name, s: (
        jax.lax.conv_general_dilated(
            jax.nn.relu(s), p[name]["conv"]["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        / jnp.sqrt(1 + 1e-5)
    )  # eval BN at init: running mean 0, var 1
    base = pre("pre0", s0) + pre("pre1", s1)
    np.testing.assert_allclose(out, jnp.concatenate([base, 2 * base, 4 * base, 8 * base], -1), rtol=1e-5, atol=1e-6)
    zero, vz, *_ = _cell_io(["00"] * 14)
    assert float(jnp.abs(zero.apply(vz, s0, s1, train=False)).max()) == 0.0


def test_both_code_is_sep_plus_identity():
    """'11' on every edge equals '01' + '10' edge by edge: with shared SepConv weights, the
    output of a one-step cell is sep(s0) + sep(s1) + s0' + s1'."""
    code = ["11", "11"]
    cell = rn.Cell(tuple(code), 4, False, False, steps=1, multiplier=1)
    sep_only = rn.Cell(("01", "01"), 4, False, False, steps=1, multiplier=1)
    skip_only = rn.Cell(("10", "10"), 4, False, False, steps=1, multiplier=1)
    _, _, s0, s1 = _cell_io(["10"] * 14)
    v = cell.init(jax.random.PRNGKey(3), s0, s1, train=False)
    both = cell.apply(v, s0, s1, train=False)
    vs = {"params": v["params"], "batch_stats": v["batch_stats"]}
    a = sep_only.apply(vs, s0, s1, train=False)
    vk = {
        "params": {k: v["params"][k] for k in ("pre0", "pre1")},
        "batch_stats": {k: v["batch_stats"][k] for k in ("pre0", "pre1")},
    }
    b = skip_only.apply(vk, s0, s1, train=False)
    np.testing.assert_allclose(both, a + b, rtol=1e-5, atol=1e-6)


def test_reduction_cell_shapes_and_factorized_reduce():
    cell, v, s0, s1 = _cell_io(rs.ROBNET_LARGE, reduction=True, reduction_prev=False)
    out = cell.apply(v, s0, s1, train=False)
    assert out.shape == (2, 4, 4, 16)
    # the identity part of an edge leaving an input node (stride 2) is a FactorizedReduce
    names = set(v["params"])
    assert {"e0_fr", "e1_fr", "e2_fr", "e3_fr"} <= names  # '11' on the 4 stride-2 edges of the first 2 nodes
    assert "e8_fr" not in names  # e8 = edge (3, 4), stride 1: a plain identity
    assert v["params"]["e0_sep"]["dw1"]["kernel"].shape == (3, 3, 1, 4)


def test_robnet_free_forward_on_real_cifar10(data_dir):
    """RobNet-free's first 6 released cell codes (C=12, 6 cells, both reductions) on 4 real
    CIFAR-10 test images, eval-mode BN: logits (4, 10), finite, each row independent of the rest
    of the batch. (The full-size networks are checked through their parameter trees above; a
    full-size forward costs minutes of compilation on 2 cores and is what `robnets eval` runs.)"""
    from robntk.data.datasets import balanced_indices, load_dataset

    x, y = load_dataset("cifar10", "test", data_dir)
    idx = balanced_indices(y, 4, seed=0)
    xb = jnp.asarray(x[idx], jnp.float32) / 255.0
    model = rn.robnet("robnet_free", C=12, layers=6)
    assert model.cfg.reduction_cells() == (2, 4)
    v = model.init(jax.random.PRNGKey(0), xb[:1], train=False)
    f = jax.jit(lambda v, x: model.apply(v, x, train=False))
    logits = f(v, xb)
    assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(f(v, xb[2:]), logits[2:], rtol=1e-4, atol=1e-5)
    assert float(jnp.std(logits, axis=0).mean()) > 1e-3  # different images give different logits
    assert rn.count_params(model) == rs.num_params(rs.ROBNET_FREE, model.cfg)


# --------------------------------------------------------------------------- findings
def test_nb201_density_definitions():
    from robntk.robnets.findings import nb201_density

    a = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    assert nb201_density(a, "connected") == pytest.approx(4 / 6)
    assert nb201_density(a, "param") == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="unknown density kind"):
        nb201_density(a, "edges")


def test_fsp_matrix_hand_value():
    from robntk.robnets.fsp import fsp_matrix

    f_in = jnp.array([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, 2, 1, 2): two positions
    f_out = jnp.array([[[[2.0]], [[1.0]]]])  # (1, 2, 1, 1)
    # G = ((1,2)·2 + (3,−1)·1) / 2 = (2.5, 1.5)
    np.testing.assert_allclose(fsp_matrix(f_in, f_out), [[[2.5], [1.5]]])
    with pytest.raises(ValueError, match="spatial"):
        fsp_matrix(f_in, f_out[:, :1])


def test_fsp_losses_identity_cell_and_zero_eps():
    """A cell that is only the skip 0→3 outputs its input (cell_io pairs are equal), and with
    eps = 0 the PGD example is x itself, so every FSP loss is 0 (to rounding); with eps > 0 it is not."""
    from robntk.nb201.cell import op_ids
    from robntk.nb201.network import TinyNetwork
    from robntk.robnets.fsp import cell_io, fsp_losses

    net = TinyNetwork(C=4, N=1)
    params = net.init(jax.random.PRNGKey(0))["params"]
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 16, 16, 3))
    y = jnp.arange(6) % 10
    ident = op_ids("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    io = jax.jit(lambda ids: cell_io(net, params, None, x, ids, True))(ident)
    assert len(io) == 3 and [a.shape[1] for a, _ in io] == [16, 8, 4]
    for a, b in io:
        np.testing.assert_array_equal(a, b)
    ids = op_ids("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    fl = jax.jit(lambda e: fsp_losses(net, params, None, x, y, ids, jax.random.PRNGKey(2), eps=e, steps=1))
    zero, pos = fl(0.0), fl(8 / 255)
    assert zero.shape == (3,) and float(jnp.min(pos)) > 1e-3
    assert float(jnp.max(zero)) <= 1e-6 * float(jnp.min(pos))  # 0 up to float32 rounding of two jitted passes


def test_summarize_pairs_by_hand():
    import pandas as pd

    from robntk.robnets.findings import summarize_pairs

    df = pd.DataFrame({"budget": [1, 1, 1, 2], "delta_val_pgd_8.0_acc": [0.01, 0.03, -0.01, 0.02]})
    s = summarize_pairs(df, n_boot=200).set_index("budget")
    assert s.loc[1, "pairs"] == 3 and s.loc[1, "mean_delta_pp"] == pytest.approx(1.0)
    assert s.loc[1, "direct_wins"] == pytest.approx(2 / 3) and s.loc[2, "mean_delta_pp"] == pytest.approx(2.0)
    assert s.loc[1, "ci_low"] <= 1.0 <= s.loc[1, "ci_high"]


def test_direct_edge_pairs_have_equal_parameter_counts(data_dir):
    from robntk.data.benchmark import RobBench
    from robntk.nb201.searchspace import num_cell_params
    from robntk.robnets.findings import direct_edge_pairs

    bench = RobBench.load(data_dir)
    pairs = direct_edge_pairs(bench, direct=(3,))
    assert len(pairs) > 1000 and set(pairs["budget"]) == {1, 2, 3, 4, 5}
    sub = pairs.sample(300, random_state=0)
    for _, r in sub.iterrows():
        a, b = bench.space.ops(int(r.a_cell)), bench.space.ops(int(r.b_cell))
        assert num_cell_params(a, 16) == num_cell_params(b, 16) == r.cell_params
        assert a[3] in ("nor_conv_1x1", "nor_conv_3x3") and b[3] not in ("nor_conv_1x1", "nor_conv_3x3")
        assert sorted(a) == sorted(b) and sum(u != v for u, v in zip(a, b)) == 2
        assert bench.representative(int(r.a_cell)) == r.a and bench.representative(int(r.b_cell)) == r.b
    with pytest.raises(ValueError, match="proper, non-empty subset"):
        direct_edge_pairs(bench, direct=range(6))


# --------------------------------------------------------------------------- one-shot + command
def _parser():
    from robntk.commands import robnets as cmd

    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", dest="data_dir", default=None)
    cmd.add_arguments(p)
    return p, cmd


def test_oneshot_command_runs_and_resumes(tmp_path, data_dir):
    p, cmd = _parser()
    sets = [
        "C=4",
        "N=1",
        "train_limit=64",
        "batch_size=16",
        "train_steps=2",
        "train_pgd_steps=1",
        "num_archs=4",
        "finetune_steps=0",
        "eval_images=20",
        "eval_batch=20",
        "eval_pgd_steps=1",
        "ckpt_every=1",
    ]
    argv = ["--data-dir", str(data_dir), "oneshot", "--out", str(tmp_path)] + sum((["--set", s] for s in sets), [])
    assert cmd.run(p.parse_args(argv)) == 0
    s1 = json.loads((tmp_path / "summary.json").read_text())
    rows = (tmp_path / "candidates.csv").read_text().splitlines()
    assert s1["n_candidates"] == 4 and len(rows) == 5
    assert s1["pick_bench_pgd8"] <= s1["best_candidate_bench_pgd8"]
    assert 0.0 < s1["pick_percentile_all"] <= 100.0
    assert cmd.run(p.parse_args(argv)) == 0  # resume: nothing recomputed, same numbers
    assert json.loads((tmp_path / "summary.json").read_text()) == s1
    with pytest.raises(ValueError, match="another configuration"):
        cmd.run(p.parse_args(argv[:-2] + ["--set", "ckpt_every=2"]))
    with pytest.raises(ValueError, match="unknown OneShotConfig field"):
        cmd.run(p.parse_args(["oneshot", "--out", str(tmp_path / "x"), "--set", "width=3"]))


def test_oneshot_config_validation():
    from robntk.robnets.oneshot import OneShotConfig, sample_path

    with pytest.raises(ValueError, match="image_size"):
        OneShotConfig(image_size=24)
    with pytest.raises(ValueError, match="num_archs"):
        OneShotConfig(num_archs=7000)
    np.testing.assert_array_equal(sample_path(0, 5), sample_path(0, 5))
    assert {tuple(sample_path(0, t)) for t in range(50)}.__len__() == 50


def test_params_command(tmp_path):
    p, cmd = _parser()
    assert cmd.run(p.parse_args(["params", "--out", str(tmp_path / "p.json")])) == 0
    d = json.loads((tmp_path / "p.json").read_text())
    assert {k: v["params_cifar10_head"] for k, v in d.items()} == REFERENCE_COUNTS
    assert d["robnet_large_v2"]["params_100_class_head"] == 33_418_916


@pytest.mark.slow
def test_train_and_eval_commands_tiny(tmp_path, data_dir):
    """`robnets train` (one PGD-AT step of a tiny RobNet-free copy) and `robnets eval` (clean and
    FGSM here; the attacks themselves are tested in test_attacks_robnets.py): the accuracies are
    fractions of the 10 images; an unknown attack name is a ValueError."""
    p, cmd = _parser()
    run = tmp_path / "run"
    assert (
        cmd.run(
            p.parse_args(
                [
                    "--data-dir",
                    str(data_dir),
                    "train",
                    "--model",
                    "robnet_free",
                    "--out",
                    str(run),
                    "--C",
                    "4",
                    "--layers",
                    "3",
                    "--max-steps",
                    "1",
                    "--train-limit",
                    "32",
                    "--batch-size",
                    "16",
                    "--pgd-steps",
                    "1",
                ]
            )
        )
        == 0
    )
    assert (
        cmd.run(
            p.parse_args(
                [
                    "--data-dir",
                    str(data_dir),
                    "eval",
                    "--run",
                    str(run),
                    "--limit",
                    "10",
                    "--batch-size",
                    "10",
                    "--attacks",
                    "clean,fgsm",
                ]
            )
        )
        == 0
    )
    acc = json.loads((run / "eval.json").read_text())["accuracy"]
    assert set(acc) == {"clean", "fgsm"}
    assert all(round(v * 10) == pytest.approx(v * 10) for v in acc.values())
    with pytest.raises(ValueError, match="unknown attacks"):
        cmd.run(p.parse_args(["--data-dir", str(data_dir), "eval", "--run", str(run), "--attacks", "cw"]))
