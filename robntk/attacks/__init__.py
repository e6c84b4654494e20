"""robntk.attacks: adversarial attacks in JAX on any pure ``f(params, x) -> logits``.

ε (and every step size) is in [0, 1] pixel units (8/255 = 0.0314), images are in [0, 1].
Every attack the evaluator runs is an :class:`IterativeAttack` (``init`` / ``step`` /
``finish``, one signature each) run by one driver, :func:`run_attack`
(:mod:`robntk.attacks.protocol`):

* :func:`fgsm_attack`, :func:`pgd_attack` (:mod:`robntk.attacks.iterative`);
* :func:`apgd_attack` (APGD-CE, APGD-DLR, one APGD-T target; :mod:`robntk.attacks.autoattack`)
  and :func:`square_attack` (:mod:`robntk.attacks.score_based`).

The functions :func:`fgsm`, :func:`pgd`, :func:`twice_perturbed`, :func:`mifgsm`,
:func:`deepfool`, :func:`apgd`, :func:`apgd_targeted` and :func:`square` run one attack on a batch
(jit-compatible).
"""

from robntk.attacks.autoattack import (
    APGDState,
    apgd,
    apgd_attack,
    apgd_robust,
    apgd_targeted,
    ce_loss,
    dlr_loss,
    dlr_loss_targeted,
    example_keys,
    margin,
    target_classes,
)
from robntk.attacks.iterative import (
    check_attack_args,
    cross_entropy,
    deepfool,
    fgsm,
    fgsm_attack,
    kl_divergence,
    mifgsm,
    pgd,
    pgd_attack,
    project,
    random_start,
    twice_perturbed,
)
from robntk.attacks.protocol import IterativeAttack, run_attack, run_attack_carry, run_loop
from robntk.attacks.score_based import SquareState, square, square_attack, square_robust

__all__ = [
    "IterativeAttack",
    "run_attack",
    "run_attack_carry",
    "run_loop",
    "fgsm",
    "fgsm_attack",
    "pgd",
    "pgd_attack",
    "twice_perturbed",
    "mifgsm",
    "deepfool",
    "apgd",
    "apgd_attack",
    "apgd_targeted",
    "square",
    "square_attack",
    "APGDState",
    "SquareState",
    "apgd_robust",
    "square_robust",
    "target_classes",
    "example_keys",
    "cross_entropy",
    "kl_divergence",
    "ce_loss",
    "dlr_loss",
    "dlr_loss_targeted",
    "margin",
    "check_attack_args",
    "project",
    "random_start",
]
