"""AutoAttack's components in JAX: APGD-CE, APGD-DLR, APGD-T (targeted DLR) here, and Square (L∞)
in :mod:`robntk.attacks.score_based`, with the per-example losses and keys they share.

All functions take a pure ``f(params, x) -> logits`` (BN in eval mode for evaluation), images
``x`` float (B, H, W, C) in [0, 1] (NHWC), integer labels ``y`` (B,), and ``eps`` in [0, 1] pixel
units (8/255 = 0.0314). Each attack is an :class:`robntk.attacks.protocol.IterativeAttack`
(:func:`apgd_attack` — APGD-CE, APGD-DLR, and one APGD-T target;
:func:`robntk.attacks.score_based.square_attack`), the protocol PGD and FGSM share, so one driver
(:func:`robntk.attacks.protocol.run_attack`) runs them in a trace or from the host
(:mod:`robntk.train.evaluation`). The convenience functions :func:`apgd`, :func:`apgd_targeted`
and :func:`robntk.attacks.score_based.square` run them in a trace (``lax.fori_loop`` /
``lax.while_loop``, jit-compatible) and return ``(x_adv, robust)``: ``robust`` (B,) bool is False
where the attack found a misclassified point inside the ε-ball (or the clean point is already
misclassified); ``x_adv`` holds that point where ``robust`` is False and ``x`` itself where it
is True (AutoAttack's convention).

Sources (read line by line, reproduced step for step):

* APGD — Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
  diverse parameter-free attacks", ICML 2020; reference ``fra31/auto-attack``
  ``autoattack/autopgd_base.py`` (``APGDAttack.attack_single_run``), also ported to
  torchattacks 3.4.0 (``APGD``, ``APGDT``), which NAS-RobBench-201 used. Initial step 2ε,
  momentum 0.75 (α = 1 on the first step), checkpoints w_j with p_0 = 0, p_1 = 0.22,
  p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (``n_iter_2 = ⌈0.22·N⌉``, ``size_decr``,
  ``n_iter_min``), step halving when fewer than ρ = 0.75 of the steps since the last checkpoint
  increased the loss or when the best loss did not improve and the step was not halved at the
  previous checkpoint; after halving, restart from the best point. Random start
  x + ε·t/‖t‖∞ with t ~ U(−1, 1). Includes the reference's wrap-around quirk in the oscillation
  check (at the first checkpoint the step before 0 is read as the zero-initialised last row).
* DLR losses — ibid. eq. (6) and the targeted version ``dlr_loss_targeted``: (z_y − z_t) /
  (z_π1 − (z_π3 + z_π4)/2), negated so that it is maximised.
* APGD-T — ``APGDAttack_targeted.perturb``: targets are the 2nd … (n_target_classes+1)-th
  largest clean logits, one APGD-DLR-targeted run per target on the points still robust.
* Square — :mod:`robntk.attacks.score_based` (its sources there); its margin loss
  :func:`margin` and per-example keys :func:`example_keys` are this module's.

Randomness is **per example**: every example draws its own random numbers from
``fold_in(key, i)`` (``key`` a single key) or from ``key[i]`` (a batch of keys), so an example's
result does not depend on the other members of its batch. This lets an evaluator run attacks
only on the still-robust points (as AutoAttack does) and still get exactly the same per-example
outcome as a full run (for Square's one consequence, see :mod:`robntk.attacks.score_based`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from robntk.attacks.iterative import check_attack_args
from robntk.attacks.protocol import IterativeAttack, is_key_batch, run_attack_carry, run_loop

Fn = Callable[[Any, jax.Array], jax.Array]
APGD_LOSSES = ("ce", "dlr", "dlr-targeted")


# --------------------------------------------------------------------------------------------
# helpers


def example_keys(key: jax.Array, n: int) -> jax.Array:
    """Per-example keys: ``fold_in(key, i)`` for i < n if ``key`` is one key (typed ``()`` or raw
    ``(2,)``), or ``key`` itself if it already holds n keys (typed ``(n,)`` or raw ``(n, 2)``).

    Raises:
        ValueError: a key batch of the wrong length.
    """
    if is_key_batch(key, n):
        return key
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))


def _uniform_like(keys: jax.Array, x: jax.Array, lo: float, hi: float) -> jax.Array:
    return jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], x.dtype, lo, hi))(keys)


def _per_example(v: jax.Array, x: jax.Array) -> jax.Array:
    """(B,) → (B, 1, 1, ...) broadcastable against x."""
    return v.reshape((-1,) + (1,) * (x.ndim - 1))


def _clip_ball(z: jax.Array, x: jax.Array, eps) -> jax.Array:
    return jnp.clip(jnp.minimum(jnp.maximum(z, x - eps), x + eps), 0.0, 1.0)


def _label_logit(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.take_along_axis(logits, y[:, None].astype(jnp.int32), axis=-1)[:, 0]


def ce_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy (B,) (``nn.CrossEntropyLoss(reduction='none')``)."""
    return -_label_logit(jax.nn.log_softmax(logits), y)


def dlr_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per-example DLR loss (Croce & Hein 2020, eq. 6), to be maximised:
    −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 1e-12), π the descending order. Needs ≥ 3 classes.

    Args: logits (B, K) float; y (B,) int. Returns (B,) float.
    """
    srt = jnp.sort(logits, axis=-1)
    zy = _label_logit(logits, y)
    top_is_y = jnp.argmax(logits, axis=-1) == y
    other = jnp.where(top_is_y, srt[:, -2], srt[:, -1])
    return -(zy - other) / (srt[:, -1] - srt[:, -3] + 1e-12)


def dlr_loss_targeted(logits: jax.Array, y: jax.Array, y_target: jax.Array) -> jax.Array:
    """Per-example targeted DLR loss (Croce & Hein 2020), to be maximised:
    −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12). Needs ≥ 4 classes.

    Args: logits (B, K); y, y_target (B,) int. Returns (B,) float.
    """
    srt = jnp.sort(logits, axis=-1)
    return -(_label_logit(logits, y) - _label_logit(logits, y_target)) / (
        srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12
    )


def margin(logits: jax.Array, y: jax.Array) -> jax.Array:
    """z_y − max_{i≠y} z_i per example (B,); ≤ 0 means misclassified (Square's margin loss)."""
    zy = _label_logit(logits, y)
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return zy - jnp.max(others, axis=-1)


def apgd_schedule(steps: int) -> tuple[int, int, int]:
    """APGD checkpoint parameters ``(n_iter_2, n_iter_min, size_decr)`` =
    (max(⌊0.22·N⌋, 1), max(⌊0.06·N⌋, 1), max(⌊0.03·N⌋, 1)) of the reference."""
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def _check_classes(num_classes: int, loss: str) -> None:
    need = {"ce": 2, "dlr": 3, "dlr-targeted": 4}[loss]
    if num_classes < need:
        raise ValueError(f"APGD loss {loss!r} needs at least {need} classes, the model has {num_classes}")


# --------------------------------------------------------------------------------------------
# APGD


class APGDState(NamedTuple):
    """APGD's carry (the variables of ``attack_single_run``); arrays of the batch size B.

    Attributes:
        x_adv, x_old: current and previous iterate (B, ...). grad: gradient at x_adv (B, ...).
        x_best, grad_best: highest-loss point so far and its gradient. x_best_adv: last
            misclassified iterate (x_adv of the start where none). loss_best: (B,) its loss.
        acc: (B,) bool, correct at every iterate so far. clean_ok: (B,) bool, correct at x.
        step: (B,) step size (pixel units, starts at 2ε). loss_steps: (N, B) loss per iteration.
        counter3, k: iterations since the last checkpoint and the current checkpoint interval.
        last_best: (B,) best loss at the last checkpoint. reduced: (B,) bool, step halved there.
        y_target: (B,) int32 target classes ('dlr-targeted'), else None.
    """

    x_adv: jax.Array
    x_old: jax.Array
    grad: jax.Array
    x_best: jax.Array
    grad_best: jax.Array
    x_best_adv: jax.Array
    loss_best: jax.Array
    acc: jax.Array
    clean_ok: jax.Array
    step: jax.Array
    loss_steps: jax.Array
    counter3: jax.Array
    k: jax.Array
    last_best: jax.Array
    reduced: jax.Array
    y_target: jax.Array | None


def _apgd_criterion(loss: str, y_target):
    if loss == "ce":
        return ce_loss
    if loss == "dlr":
        return dlr_loss
    yt = y_target.astype(jnp.int32)
    return lambda logits, y_: dlr_loss_targeted(logits, y_, yt)


def _apgd_loss_grad(f, params, y, crit):
    def loss_grad(z):
        def total(z_):
            logits = f(params, z_)
            li = crit(logits, y)
            return jnp.sum(li), (li, logits)

        (_, (li, logits)), g = jax.value_and_grad(total, has_aux=True)(z)
        return li, logits, g

    return loss_grad


def _apgd_init(f: Fn, params, x, y, eps, keys, y_target, *, steps: int, loss: str) -> APGDState:
    """Random start x + ε·t/‖t‖∞ (t ~ U(−1, 1) per example), its loss and gradient,
    ``x_best = x_best_adv = start``, step size 2ε, checkpoint counters."""
    crit = _apgd_criterion(loss, y_target)
    B = x.shape[0]
    n_iter_2, _, _ = apgd_schedule(steps)
    clean_logits = f(params, x)
    _check_classes(clean_logits.shape[-1], loss)
    t = _uniform_like(keys, x, -1.0, 1.0)
    tmax = jnp.max(jnp.abs(t).reshape(B, -1), axis=1)
    x_adv = jnp.clip(x + eps * t / (_per_example(tmax, x) + 1e-12), 0.0, 1.0)
    li, logits, grad = _apgd_loss_grad(f, params, y, crit)(x_adv)
    return APGDState(
        x_adv=x_adv,
        x_old=x_adv,
        grad=grad,
        x_best=x_adv,
        grad_best=grad,
        x_best_adv=x_adv,
        loss_best=li,
        acc=jnp.argmax(logits, -1) == y,
        clean_ok=jnp.argmax(clean_logits, -1) == y,
        step=jnp.full((B,), 2.0 * eps, x.dtype),
        loss_steps=jnp.zeros((steps, B), li.dtype),
        counter3=jnp.asarray(0),
        k=jnp.asarray(n_iter_2),
        last_best=li,
        reduced=jnp.ones((B,), bool),
        y_target=y_target,
    )


def _apgd_step(f: Fn, params, x, y, eps, c: APGDState, i, *, steps: int, loss: str, rho: float) -> APGDState:
    """One APGD iteration ``i`` (0-based): momentum step (α = 1 at i = 0, else 0.75), projection,
    loss/gradient, best-point bookkeeping and, at a checkpoint, the step-size halving test with
    restart from the best point."""
    crit = _apgd_criterion(loss, c.y_target)
    _, n_iter_min, size_decr = apgd_schedule(steps)
    rows = jnp.arange(steps)
    a = jnp.where(i > 0, 0.75, 1.0).astype(x.dtype)
    xa = c.x_adv
    grad2 = xa - c.x_old
    ss = _per_example(c.step, x)
    x1 = _clip_ball(xa + ss * jnp.sign(c.grad), x, eps)
    x1 = _clip_ball(xa + (x1 - xa) * a + grad2 * (1 - a), x, eps)
    li, logits, grad = _apgd_loss_grad(f, params, y, crit)(x1)
    pred = jnp.argmax(logits, -1) == y
    acc = c.acc & pred
    x_best_adv = jnp.where(_per_example(~pred, x), x1, c.x_best_adv)
    loss_steps = c.loss_steps.at[i].set(li)
    imp = li > c.loss_best
    x_best = jnp.where(_per_example(imp, x), x1, c.x_best)
    grad_best = jnp.where(_per_example(imp, x), grad, c.grad_best)
    loss_best = jnp.where(imp, li, c.loss_best)
    counter3 = c.counter3 + 1
    k = c.k
    check = counter3 == k
    # check_oscillation(loss_steps, i, k): rows i-k+1..i vs. the row before (index mod N, as the
    # reference's negative indexing)
    window = (rows >= i - k + 1) & (rows <= i)
    incr = loss_steps > jnp.roll(loss_steps, 1, axis=0)
    n_incr = jnp.sum(jnp.where(window[:, None], incr, False), axis=0).astype(x.dtype)
    fl_osc = n_incr <= k.astype(x.dtype) * rho
    fl_noimpr = (~c.reduced) & (c.last_best >= loss_best)
    fl = (fl_osc | fl_noimpr) & check
    return APGDState(
        x_adv=jnp.where(_per_example(fl, x), x_best, x1),
        x_old=xa,
        grad=jnp.where(_per_example(fl, x), grad_best, grad),
        x_best=x_best,
        grad_best=grad_best,
        x_best_adv=x_best_adv,
        loss_best=loss_best,
        acc=acc,
        clean_ok=c.clean_ok,
        step=jnp.where(fl, c.step / 2.0, c.step),
        loss_steps=loss_steps,
        counter3=jnp.where(check, 0, counter3),
        k=jnp.where(check, jnp.maximum(k - size_decr, n_iter_min), k),
        last_best=jnp.where(check, loss_best, c.last_best),
        reduced=jnp.where(check, fl, c.reduced),
        y_target=c.y_target,
    )


def apgd_robust(c: APGDState) -> jax.Array:
    """(B,) bool: clean-correct and correct at every APGD iterate (AutoAttack's ``acc``)."""
    return c.clean_ok & c.acc


def _apgd_finish(x, c: APGDState) -> jax.Array:
    """AutoAttack's ``perturb`` output: the last misclassified iterate where not robust, else x."""
    return jnp.where(_per_example(apgd_robust(c) | ~c.clean_ok, x), x, c.x_best_adv)


def apgd_attack(
    f: Fn, *, steps: int = 100, loss: str = "ce", rho: float = 0.75, y_target: jax.Array | None = None, target_rank=None
) -> IterativeAttack:
    """Auto-PGD (L∞, one restart) as an :class:`~robntk.attacks.protocol.IterativeAttack`
    (Croce & Hein 2020; ``APGDAttack.attack_single_run`` of ``fra31/auto-attack``).

    ``init(params, x, y, eps, key)``: the random start x + ε·t/‖t‖∞ (t ~ U(−1, 1) from the
    per-example keys :func:`example_keys` of ``key``), its loss and gradient, step size 2ε
    (carry: :class:`APGDState`). ``step(..., i)``: the momentum step (α = 1 at i = 0, else 0.75),
    projection, best-point bookkeeping and, at a checkpoint, the step-size halving with restart
    from the best point. ``finish(x, carry)``: the last misclassified iterate where the example
    was broken, else x (:func:`apgd_robust` gives the verdicts from the carry).

    Args:
        f: ``f(params, x) -> (B, K)`` logits. x (B, H, W, C) in [0, 1]; y (B,) int labels; eps:
            L∞ radius in pixel units (the protocol's inputs).
        steps: iterations N (AutoAttack 100; torchattacks' default, used by its AutoAttack, 10).
        loss: ``'ce'``, ``'dlr'`` or ``'dlr-targeted'``.
        rho: step-halving threshold ρ (0.75).
        y_target: (B,) int targets of ``'dlr-targeted'`` (closed over: one batch), or
        target_rank: r ≥ 2 (an int or a traced int32 scalar): ``'dlr-targeted'`` with the class of
            the r-th largest clean logit as target (:func:`target_classes`) and the per-example
            keys ``fold_in(key_i, r)`` — APGD-T's run for one target (:func:`apgd_targeted`).
            Exactly one of the two with ``'dlr-targeted'``, neither otherwise.

    Raises:
        ValueError: steps < 1, unknown loss, rho outside (0, 1], a missing or superfluous target,
            target_rank < 2; at ``init``: bad eps, target_rank > K, too few classes for the loss
            (ce 2, dlr 3, dlr-targeted 4).
    """
    check_attack_args(0.0, steps)
    if loss not in APGD_LOSSES:
        raise ValueError(f"unknown APGD loss {loss!r}; allowed: {', '.join(APGD_LOSSES)}")
    if isinstance(rho, (int, float)) and not 0.0 < float(rho) <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")
    targeted = loss == "dlr-targeted"
    if targeted and (y_target is None) == (target_rank is None):
        raise ValueError("APGD loss 'dlr-targeted' needs y_target or target_rank (exactly one)")
    if not targeted and (y_target is not None or target_rank is not None):
        raise ValueError(f"y_target/target_rank are for loss 'dlr-targeted' only, got loss {loss!r}")
    if isinstance(target_rank, int) and target_rank < 2:
        raise ValueError(f"target_rank must be >= 2 (2 = the largest logit other than the top), got {target_rank}")

    def init(params, x, y, eps, key):
        check_attack_args(eps, steps)
        y = y.astype(jnp.int32)
        keys = example_keys(key, x.shape[0])
        yt = y_target
        if target_rank is not None:
            logits = f(params, x)
            if isinstance(target_rank, int) and target_rank > logits.shape[-1]:
                raise ValueError(f"target_rank must be <= the number of classes {logits.shape[-1]}, got {target_rank}")
            yt = target_classes(logits, target_rank)
            keys = jax.vmap(lambda kk: jax.random.fold_in(kk, target_rank))(keys)
        return _apgd_init(
            f, params, x, y, eps, keys, None if yt is None else yt.astype(jnp.int32), steps=steps, loss=loss
        )

    def step(params, x, y, eps, c, i):
        return _apgd_step(f, params, x, y.astype(jnp.int32), eps, c, i, steps=steps, loss=loss, rho=rho)

    return IterativeAttack(init, step, _apgd_finish, steps)


def apgd(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    key: jax.Array,
    steps: int = 100,
    loss: str = "ce",
    y_target: jax.Array | None = None,
    rho: float = 0.75,
    return_best: bool = False,
    loop: str = "fori",
) -> tuple[jax.Array, jax.Array]:
    """Auto-PGD, L∞, one restart (Croce & Hein 2020; ``APGDAttack.attack_single_run``):
    :func:`apgd_attack` run by :func:`robntk.attacks.protocol.run_attack_carry`.

    Args:
        f, steps, loss, rho, y_target: as :func:`apgd_attack` (``y_target`` (B,) required with
            ``'dlr-targeted'``).
        x: clean images (B, H, W, C) in [0, 1]. y: int labels (B,). eps: L∞ radius, pixel units.
        key: one PRNG key (per-example keys are folded in) or B keys.
        return_best: return ``(x_best, loss_best)`` instead — the highest-loss point found and
            its per-example loss (the reference's ``perturb(best_loss=True)``).
        loop: ``'fori'`` or ``'unroll'`` (:func:`robntk.attacks.protocol.run_loop`).

    Returns:
        ``(x_adv, robust)``: robust (B,) bool = correctly classified at the clean point and at
        every APGD iterate (including the random start); x_adv = the last misclassified
        iterate where not robust (``x_best_adv`` of the reference), else x.

    Raises:
        ValueError: bad eps/steps, unknown loss or loop, missing y_target, too few classes.
    """
    atk = apgd_attack(f, steps=steps, loss=loss, rho=rho, y_target=y_target)
    c = run_attack_carry(atk, params, x, y, eps, key, loop=loop)
    if return_best:
        return jax.lax.stop_gradient(c.x_best), c.loss_best
    return jax.lax.stop_gradient(atk.finish(x, c)), apgd_robust(c)


def target_classes(logits: jax.Array, rank) -> jax.Array:
    """APGD-T's target for rank r ≥ 2: the class with the r-th largest logit (B,) int32
    (``output.sort(dim=1)[1][:, -r]``). ``rank`` may be traced."""
    K = logits.shape[-1]
    order = jnp.argsort(logits, axis=-1)
    return jax.lax.dynamic_index_in_dim(order, K - rank, axis=1, keepdims=False).astype(jnp.int32)


def apgd_targeted(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    key: jax.Array,
    steps: int = 100,
    n_target_classes: int = 9,
    rho: float = 0.75,
    loop: str = "fori",
) -> tuple[jax.Array, jax.Array]:
    """APGD-T (``APGDAttack_targeted.perturb``): for target rank r = 2 … n_target_classes + 1,
    target = the class with the r-th largest clean logit (:func:`target_classes`), run
    :func:`apgd` with the targeted DLR loss; a point is robust only if it survives every target.
    (Runs every target on every point and masks; an evaluator can instead run APGD per target on
    the survivors only — same per-example result.) Target r uses the per-example keys
    ``fold_in(key_i, r)``.

    Args: as :func:`apgd`; n_target_classes in [1, K − 1] (AutoAttack 9; torchattacks K − 1).

    Returns:
        ``(x_adv, robust)`` as :func:`apgd`.

    Raises:
        ValueError: bad eps/steps, fewer than 4 classes, n_target_classes outside [1, K − 1].
    """
    check_attack_args(eps, steps)
    y = y.astype(jnp.int32)
    B = x.shape[0]
    keys = example_keys(key, B)
    logits = f(params, x)
    K = logits.shape[-1]
    _check_classes(K, "dlr-targeted")
    if not isinstance(n_target_classes, int) or not 1 <= n_target_classes <= K - 1:
        raise ValueError(f"n_target_classes must be an integer in [1, {K - 1}], got {n_target_classes!r}")
    robust0 = jnp.argmax(logits, -1) == y

    def body(r, c):
        x_out, robust = c
        kr = jax.vmap(lambda k: jax.random.fold_in(k, r))(keys)
        xa, rob = apgd(
            f,
            params,
            x,
            y,
            eps,
            key=kr,
            steps=steps,
            loss="dlr-targeted",
            y_target=target_classes(logits, r),
            rho=rho,
            loop=loop,
        )
        newly = robust & ~rob
        return jnp.where(_per_example(newly, x), xa, x_out), robust & rob

    return run_loop(body, (x, robust0), 2, n_target_classes + 2, loop)
