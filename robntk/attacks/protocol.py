"""The one attack protocol of robntk's attacks and its driver: an :class:`IterativeAttack` is
``init`` / ``step`` / ``finish`` with one signature each, a step count and an optional early-stop
test; :func:`run_attack` (over :func:`run_loop`) runs it inside a trace (a rolled
``lax.fori_loop`` / ``while_loop``, or unrolled) or on the host over the jitted pieces
(``loop='host'``, :mod:`robntk.train.evaluation`). FGSM and PGD (:mod:`robntk.attacks.iterative`),
APGD-CE, APGD-T (:mod:`robntk.attacks.autoattack`) and Square (:mod:`robntk.attacks.score_based`)
are built on it; :func:`is_key_batch` tells one PRNG key from B per-example keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

#: Loop strategies of :func:`run_loop`: a rolled ``lax.fori_loop`` (a ``while_loop`` with early
#: stop), unrolled in the trace, or a Python loop on the host over jitted steps.
LOOPS = ("fori", "unroll", "host")


def is_key_batch(key: jax.Array, n: int) -> bool:
    """True when ``key`` holds ``n`` keys (typed ``(n,)`` or raw ``(n, 2)``), False for one key.

    Raises:
        ValueError: a key batch whose length is not ``n``.
    """
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.shape == (() if typed else (2,)):
        return False
    if key.shape[0] != n:
        raise ValueError(f"expected one key or {n} keys, got key array of shape {key.shape}")
    return True


class IterativeAttack(NamedTuple):
    """An iterative attack in init / step / finish form — the one protocol of PGD, FGSM, APGD-CE,
    APGD-T and Square (:func:`robntk.attacks.iterative.pgd_attack`,
    :func:`robntk.attacks.iterative.fgsm_attack`, :func:`robntk.attacks.autoattack.apgd_attack`,
    :func:`robntk.attacks.score_based.square_attack`).

    Every attack is driven by :func:`run_attack` (one loop, :func:`run_loop`), inside a trace or
    from the host over jitted pieces; the attack's hyper-parameters are fixed when it is built,
    the per-call inputs are the arguments below.

    Attributes:
        init: ``init(params, x, y, eps, key) -> carry`` (a pytree). ``x`` (B, ...) float in
            [0, 1]; ``y`` (B,) int labels (or whatever the attack's loss takes, e.g. TRADES'
            reference probabilities); ``eps`` the radius in [0, 1] pixel units (a Python float or
            a traced scalar); ``key`` one PRNG key or B per-example keys (ignored by
            deterministic starts).
        step: ``step(params, x, y, eps, carry, i) -> carry``; ``i`` the 0-based iteration, an
            int32 scalar (may be traced).
        finish: ``finish(x, carry) -> x_adv`` (shape and dtype of x).
        steps: number of iterations (≥ 0; the query budget for Square).
        done: optional ``done(carry) -> bool scalar``: True once every further step leaves the
            carry's result unchanged (Square: every point fooled). Drivers may then stop early;
            the result is the same as running all ``steps``.
    """

    init: Callable
    step: Callable
    finish: Callable
    steps: int
    done: Callable | None = None


def run_loop(
    body: Callable,
    carry,
    lo: int,
    hi: int,
    loop: str = "fori",
    unroll: int | bool = 1,
    *,
    done: Callable | None = None,
    check_every: int = 25,
):
    """``for i in range(lo, hi): carry = body(i, carry)`` — the one loop driver of the attacks.

    ``loop='fori'``: :func:`jax.lax.fori_loop` (``unroll`` passed to it: 1 rolled, ``True`` fully
    unrolled, k partially), or, when ``done`` is given, a :func:`jax.lax.while_loop` that also
    stops once ``done(carry)`` (``unroll`` then unused); ``loop='unroll'``: a Python loop in the
    trace (``i`` a jnp scalar; ``done`` unused); ``loop='host'``: a Python loop meant to run
    outside any trace over jitted pieces (``i`` an int32 array), which checks ``done(carry)``
    after every ``check_every`` iterations (one device synchronisation each).
    All forms run the same iterations (``done`` promises that the skipped ones change nothing);
    on XLA:CPU ops inside a rolled while loop run several times slower (``benchmarks/RESULTS.md``
    §5) while unrolling compiles longer, so short loops are better unrolled
    there and long loops are driven from the host (:mod:`robntk.train.evaluation`).

    Raises:
        ValueError: unknown loop mode, or check_every < 1.
    """
    if loop not in LOOPS:
        raise ValueError(f"unknown loop mode {loop!r}; allowed: {', '.join(LOOPS)}")
    if not isinstance(check_every, int) or check_every < 1:
        raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
    if loop == "fori" and done is None:
        return jax.lax.fori_loop(lo, hi, body, carry, unroll=unroll)
    if loop == "fori":
        _, carry = jax.lax.while_loop(
            lambda s: (s[0] < hi) & ~done(s[1]),
            lambda s: (s[0] + 1, body(s[0], s[1])),
            (jnp.asarray(lo, jnp.int32), carry),
        )
        return carry
    for i in range(lo, hi):
        if loop == "unroll":
            carry = body(jnp.asarray(i), carry)
            continue
        carry = body(jnp.asarray(i, jnp.int32), carry)
        if done is not None and (i + 1 - lo) % check_every == 0 and bool(done(carry)):
            break
    return carry


def run_attack_carry(
    attack: IterativeAttack,
    params,
    x,
    y,
    eps,
    key,
    *,
    loop: str = "fori",
    unroll: int | bool = 1,
    check_every: int = 25,
):
    """``attack.init`` then ``attack.steps`` steps (:func:`run_loop`, early stop by
    ``attack.done``): the final carry (for attacks that report more than ``x_adv``, e.g. APGD's
    per-example verdicts). Arguments as :func:`run_attack`."""
    c = attack.init(params, x, y, eps, key)
    return run_loop(
        lambda i, cc: attack.step(params, x, y, eps, cc, i),
        c,
        0,
        attack.steps,
        loop,
        unroll,
        done=attack.done,
        check_every=check_every,
    )


def run_attack(
    attack: IterativeAttack,
    params,
    x,
    y,
    eps,
    key,
    *,
    loop: str = "fori",
    unroll: int | bool = 1,
    check_every: int = 25,
) -> jax.Array:
    """Run an :class:`IterativeAttack`: init, ``attack.steps`` steps (:func:`run_loop`), finish.

    Args:
        attack: the attack. params, x (B, ...) in [0, 1], y, eps (pixel units), key: its
            inputs (:class:`IterativeAttack`).
        loop: ``'fori'`` / ``'unroll'`` inside a trace, ``'host'`` over jitted pieces outside
            one (:func:`run_loop`). unroll: ``fori_loop``'s unrolling. check_every: how often
            the host loop checks ``attack.done``.

    Returns:
        ``x_adv`` (shape and dtype of x) with ``stop_gradient``.

    Raises:
        ValueError: unknown loop mode; whatever the attack's ``init`` raises.
    """
    c = run_attack_carry(attack, params, x, y, eps, key, loop=loop, unroll=unroll, check_every=check_every)
    return jax.lax.stop_gradient(attack.finish(x, c))
