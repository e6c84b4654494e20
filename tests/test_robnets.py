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
    assert round(rn.count_params(rn.robnet(name, num_classes=100)) / 1e6, 2) == pytest.approx(paper)


def test_only_heads_97_to_100_fit_all_three_paper_sizes():
    fits = set.intersection(*(set(rs.paper_head_classes(n, 200)) for n in rs.CONFIGS))
    assert sorted(fits) == [97, 98, 99, 100]


# --------------------------------------------------------------------------- forward
def _cell_io(code, reduction=False, reduction_prev=False, C=4):
    cell = rn.Cell(tuple(code), C, reduction, reduction_prev)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    s0 = jax.random.normal(k1, (2, 8, 8, 6))
    s1 = jax.random.normal(k2, (2, 8, 8, 5))
    v = cell.init(k3, s0, s1, train=False)
    return cell, v, s0, s1


def test_identity_cell_sums_node_inputs():
    """All edges identity: node2 = s0+s1, node3 = 2(s0+s1), node4 = 4(.), node5 = 8(.)."""
    cell, v, s0, s1 = _cell_io(["10"] * 14)
    out = cell.apply(v, s0, s1, train=False)
    p = v["params"]
    pre = lambda name, s: jax.lax.conv_general_dilated(
        jax.nn.relu(s), p[name]["conv"]["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    ) / jnp.sqrt(1 + 1e-5)  # eval BN at init: running mean 0, var 1
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
    vk = {"params": {k: v["params"][k] for k in ("pre0", "pre1")},
          "batch_stats": {k: v["batch_stats"][k] for k in ("pre0", "pre1")}}
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


def test_robnet_large_forward_on_real_cifar10(data_dir):
    """Full-size RobNet-large (C=36, 20 cells) on 4 real CIFAR-10 test images, eval-mode BN:
    logits (4, 10), finite, each row independent of the rest of the batch."""
    from robntk.datasets import load_dataset, balanced_indices

    x, y = load_dataset("cifar10", "test", data_dir)
    idx = balanced_indices(y, 4, seed=0)
    xb = jnp.asarray(x[idx], jnp.float32) / 255.0
    model = rn.robnet("robnet_large_v1")
    v = jax.jit(lambda k: model.init(k, xb[:1], train=False))(jax.random.PRNGKey(0))
    f = jax.jit(lambda v, x: model.apply(v, x, train=False))
    logits = f(v, xb)
    assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(f(v, xb[2:]), logits[2:], rtol=1e-4, atol=1e-5)
    assert float(jnp.std(logits, axis=0).mean()) > 1e-3  # different images give different logits
