"""robntk's evaluation against NAS-RobBench-201's (torchattacks FGSM, PGD-20, AutoAttack standard).

Small version of experiments/parity/eval_parity.py: a network with N=1 cell per stage (C=16)
trained by robntk for 40 PGD-AT steps, 32 CIFAR-10 test images (AutoAttack on the first 16).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch parity tests need the [parity] extra, not installed: pip install -e '.[parity]'"
)
pytest.importorskip(
    "torchattacks", reason="the [parity] extra needs torchattacks: pip install --no-deps torchattacks==3.4.0"
)

from robntk.core.registry import AA_METRIC  # noqa: E402
from robntk.parity.eval_parity import pgd_start_noise, run_eval_parity  # noqa: E402
from robntk.train.config import TrainConfig  # noqa: E402
from robntk.train.eval_config import EvalConfig  # noqa: E402
from robntk.train.evaluation import RobustnessEvaluator  # noqa: E402
from robntk.train.loop import build_model, init_state, make_optimizer, make_train_step, step_key  # noqa: E402

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def trained(data_dir):
    """(model, variables) after 40 robntk PGD-AT steps of 32 images (N=1)."""
    from robntk.data.datasets import load_split

    x, y = load_split("cifar10", "train", data_dir, 640, seed=0)
    cfg = TrainConfig(arch=ARCH, N=1, batch_size=32, epochs=2)
    model = build_model(cfg)
    tx = make_optimizer(cfg, 40)
    state = init_state(model, tx, cfg)
    step = make_train_step(model, tx, cfg)
    xd, yd = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    perm = np.random.default_rng(0).permutation(len(y))
    for t in range(40):
        idx = jnp.asarray(perm[(t % 20) * 32 : (t % 20 + 1) * 32], jnp.int32)
        state, _ = step(state, xd, yd, idx, step_key(0, t // 20, t % 20))
    return model, {"params": state["params"], "batch_stats": state["batch_stats"]}


@pytest.fixture(scope="module")
def test_images(data_dir):
    from robntk.data.datasets import load_split

    return load_split("cifar10", "test", data_dir, 32, seed=0)


def test_pgd_start_noise_is_the_evaluators():
    """The reference's PGD starts are the ones robntk's evaluator draws (per-example keys)."""
    from robntk.attacks import iterative as attacks

    ev = RobustnessEvaluator(lambda p, x: x, None, 10, EvalConfig(attacks=("pgd",)))
    e = 8 / 255
    noise = pgd_start_noise(ev, e, 5)
    keys = ev._example_keys(ev._key("pgd", e), jnp.arange(5, dtype=jnp.int32))
    x = jnp.full((5, 32, 32, 3), 0.5, jnp.float32)
    start = np.asarray(attacks.random_start(keys, x, jnp.asarray(e, jnp.float32)))
    np.testing.assert_array_equal(np.clip(0.5 + noise, 0, 1), start)
    assert np.abs(noise).max() <= np.float32(e) and np.abs(noise).max() > 0.9 * e


def test_same_verdicts_as_the_benchmarks_evaluation(trained, test_images):
    """Clean, FGSM-3/8 and PGD-20-3/8 verdicts agree image by image; AutoAttack (robntk:
    APGD-CE → APGD-T → Square, no FAB-T; torchattacks standard) within one image of 16."""
    model, variables = trained
    x, y = test_images
    r = run_eval_parity(model, variables, ARCH, x, y, aa_limit=16, N=1, torch_threads=1, min_batch=8)
    acc = r["accuracy"]
    assert 0.15 < acc["val_acc"]["reference"] < 0.9, acc  # a network that learnt something
    for k, a in r["agreement"].items():
        assert a["disagree"] == 0, (k, a)
        assert acc[k]["robntk"] == acc[k]["reference"]
    # the attacks bite (this barely trained network is not monotone in ε: PGD-8 may exceed PGD-3)
    assert min(acc[k]["reference"] for k in r["agreement"] if k != "val_acc") < acc["val_acc"]["reference"]
    assert abs(acc[AA_METRIC]["robntk"] - acc[AA_METRIC]["reference"]) <= 1 / 16 + 1e-9, acc[AA_METRIC]
