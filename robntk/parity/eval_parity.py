"""Parity of ``robntk evaluate`` with NAS-RobBench-201's evaluation (``main.py`` ``_attack_test``).

:func:`run_eval_parity` evaluates one set of weights with robntk's
:class:`~robntk.train.evaluation.RobustnessEvaluator` and with the PyTorch reference
(:func:`robntk.parity.torch_reference.evaluate`: torchattacks ``FGSM``, PGD-20 as torchattacks
runs it, torchattacks ``AutoAttack(version='standard')``), both in float32 with BN in eval mode,
on the same images, and compares the per-image verdicts.

FGSM is deterministic. PGD's random start is fed from robntk: the evaluator draws example i's
start U(−ε, ε) from ``fold_in(key(pgd, ε), i)`` (:meth:`RobustnessEvaluator._key`,
:func:`robntk.attacks.iterative.random_start` with per-example keys); :func:`pgd_start_noise`
makes the same draws and the reference adds them where torchattacks adds its own. AutoAttack
is compared by accuracy only: robntk's ensemble omits FAB-T and draws its own randomness.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from robntk.core.registry import AA_METRIC, metric_name
from robntk.parity import torch_reference as ref
from robntk.train.eval_config import EvalConfig
from robntk.train.evaluation import RobustnessEvaluator


def pgd_start_noise(evaluator: RobustnessEvaluator, eps: float, n: int) -> np.ndarray:
    """The PGD start offsets robntk's evaluator draws for examples 0..n−1 at radius ``eps``:
    float32 (n, 32, 32, 3) in [−ε, ε] (``evaluation.py`` ``_key``/``_example_keys``;
    ``iterative.py`` ``random_start``, per-example keys)."""
    keys = jax.vmap(lambda i: jax.random.fold_in(evaluator._key("pgd", eps), i))(jnp.arange(n, dtype=jnp.int32))
    e = jnp.asarray(eps, jnp.float32)
    return np.asarray(jax.vmap(lambda k: jax.random.uniform(k, (32, 32, 3), jnp.float32, -e, e))(keys))


def run_eval_parity(
    model,
    variables: dict,
    arch: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: tuple[float, ...] = (3 / 255, 8 / 255),
    aa_limit: int | None = None,
    aa_eps: float = 8 / 255,
    seed: int = 0,
    C: int = 16,
    N: int = 5,
    torch_threads: int | None = None,
    min_batch: int = 32,
) -> dict[str, Any]:
    """Evaluate ``variables`` with robntk and with the reference; compare.

    Args:
        model: the robntk :class:`~robntk.nb201.network.TinyNetwork`. variables: its float32
            ``{'params', 'batch_stats'}``. arch: the NB201 arch string.
        x: uint8 (n, 32, 32, 3) CIFAR-10 test images; y: labels (n,).
        eps: FGSM/PGD radii, pixel units. aa_eps: AutoAttack radius.
        aa_limit: run AutoAttack (both sides) on the first this many images only (None: all;
            0: skip it).
        seed: robntk's evaluation seed and torchattacks AutoAttack's ``seed``.
        C, N: network size (for the reference model).
        torch_threads: ``torch.set_num_threads`` during the reference (None: leave it).
        min_batch: robntk's smallest padded batch (:class:`~robntk.train.eval_config.EvalConfig`;
            padding changes only the work done, not the verdicts: every example has its own keys).

    Returns:
        ``{'n', 'n_aa', 'accuracy': {metric: {'robntk', 'reference'}}, 'agreement': {metric:
        {'agree', 'disagree', 'disagree_idx'}}, 'seconds': {'robntk', 'reference'}}`` (FGSM/PGD
        and clean compared per image; ``autoattack`` by accuracy on the first ``n_aa`` images).
    """
    n = len(y)
    n_aa = n if aa_limit is None else min(aa_limit, n)
    f, params = model.make_apply(variables, arch, "eval")
    base = {"eps": tuple(eps), "aa_eps": (aa_eps,), "seed": seed, "min_batch": min_batch}
    ev = RobustnessEvaluator(f, params, 10, EvalConfig(attacks=("clean", "fgsm", "pgd"), **base))
    t = time.perf_counter()
    mine = ev.evaluate(x, y)["per_example"]
    if n_aa:
        ev_aa = RobustnessEvaluator(f, params, 10, EvalConfig(attacks=("clean", "autoattack"), **base))
        mine[AA_METRIC] = ev_aa.evaluate(x[:n_aa], y[:n_aa])["per_example"][metric_name("autoattack", aa_eps)]
    t_mine = time.perf_counter() - t

    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        tm = ref.build_model(arch, C=C, N=N, dtype="float32")
        ref.load_robntk_variables(tm, variables)
        noise = {e: pgd_start_noise(ev, e, n) for e in eps}
        t = time.perf_counter()
        theirs = ref.evaluate(tm, x, y, eps=eps, pgd_noise=noise, aa_eps=None)
        if n_aa:
            aa = ref.evaluate(tm, x[:n_aa], y[:n_aa], eps=(), aa_eps=aa_eps, aa_seed=seed)
            theirs[AA_METRIC] = aa[AA_METRIC]
        t_ref = time.perf_counter() - t
    finally:
        torch.set_num_threads(threads)

    acc, agree = {}, {}
    for k in sorted(theirs):
        a, b = np.asarray(mine[k], bool), np.asarray(theirs[k], bool)
        acc[k] = {"robntk": float(a.mean()), "reference": float(b.mean())}
        if k != AA_METRIC:
            bad = np.flatnonzero(a != b)
            agree[k] = {"agree": int((a == b).sum()), "disagree": int(len(bad)), "disagree_idx": bad.tolist()}
    return {
        "n": n,
        "n_aa": n_aa,
        "accuracy": acc,
        "agreement": agree,
        "seconds": {"robntk": t_mine, "reference": t_ref},
    }
