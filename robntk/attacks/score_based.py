"""Score-based attacks in JAX: Square (L∞; Andriushchenko, Croce, Flammarion & Hein, "Square
Attack: a query-efficient black-box adversarial attack via random search", ECCV 2020), the
black-box member of AutoAttack (APGD: :mod:`robntk.attacks.autoattack`).

Square uses only ``f``'s outputs. :func:`square_attack` is an
:class:`robntk.attacks.protocol.IterativeAttack`; :func:`square` runs it in a trace and returns
``(x_adv, robust)`` with AutoAttack's convention (:mod:`robntk.attacks.autoattack`). Reference
``autoattack/square.py`` (= torchattacks 3.4.0 ``Square``), L∞, margin loss, p_init 0.8, the
p-schedule rescaled to ``n_queries`` (``resc_schedule=True``), vertical-stripe initialisation.

Randomness is per example (:func:`robntk.attacks.autoattack.example_keys`). The one consequence
for Square: the reference draws one square position and colour per iteration shared by the
whole batch; here each example draws its own (the same distribution per example).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from robntk.attacks.autoattack import Fn, _clip_ball, _per_example, example_keys, margin
from robntk.attacks.iterative import check_attack_args
from robntk.attacks.protocol import IterativeAttack, run_attack_carry


def square_p(i: jax.Array, n_queries: int, p_init: float = 0.8, rescale: bool = True) -> jax.Array:
    """Square's schedule of the square-area fraction p at iteration ``i`` (``p_selection``):
    p_init halved after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a
    10,000-query budget, the iteration rescaled to ``i·10000 // n_queries`` when ``rescale``."""
    it = (i * 10000) // n_queries if rescale else i
    bounds = jnp.asarray([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    return p_init / (2.0 ** jnp.sum(it > bounds))


def _check_square(n_queries, p_init):
    if not isinstance(n_queries, int) or isinstance(n_queries, bool) or n_queries < 1:
        raise ValueError(f"n_queries must be an integer >= 1, got {n_queries!r}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")


class SquareState(NamedTuple):
    """Square's carry (B examples).

    Attributes:
        x_best: (B, H, W, C) current point. margin: (B,) its margin z_y − max_{i≠y} z_i (≤ 0:
            fooled). loss: (B,) the margin loss of the last accepted improvement. keys: (B,)
            per-example keys. clean_ok: (B,) bool, correct at x.
    """

    x_best: jax.Array
    margin: jax.Array
    loss: jax.Array
    keys: jax.Array
    clean_ok: jax.Array


def _square_init(f: Fn, params, x, y, eps, key) -> SquareState:
    """Vertical-stripe start x + ε·(±1 per example, column, channel) clipped to [0, 1], its
    margin, per-example keys."""
    check_attack_args(eps)
    y = y.astype(jnp.int32)
    B, H, W, C = x.shape
    keys = example_keys(key, B)
    stripes = jax.vmap(lambda k: jnp.sign(jax.random.uniform(jax.random.fold_in(k, 0), (1, W, C), x.dtype) * 2 - 1))(
        keys
    )
    x_best = jnp.clip(x + eps * stripes, 0.0, 1.0)
    m0 = margin(f(params, x_best), y)
    clean_ok = jnp.argmax(f(params, x), -1) == y
    return SquareState(x_best=x_best, margin=m0, loss=m0, keys=keys, clean_ok=clean_ok)


def _square_step(
    f: Fn, params, x, y, eps, c: SquareState, i, *, n_queries: int, p_init: float, rescale_schedule: bool
) -> SquareState:
    """Square iteration ``i`` (one query per still-robust example): square side
    s = max(round(√(p·H·W)), 1), position (⌊(H − s)·U⌋, ⌊(W − s)·U⌋), colour ±2ε per channel,
    added to the current best point, projected; accepted if the margin loss decreases or the
    point is misclassified. Fooled examples are left unchanged."""
    y = y.astype(jnp.int32)
    B, H, W, C = x.shape
    active = c.margin > 0
    p = square_p(i, n_queries, p_init, rescale_schedule)
    s = jnp.maximum(jnp.round(jnp.sqrt(p * H * W)), 1).astype(jnp.int32)

    def draw(k):
        k = jax.random.fold_in(k, i + 1)
        kh, kw, kc = jax.random.split(k, 3)
        vh = jnp.floor((H - s) * jax.random.uniform(kh)).astype(jnp.int32)
        vw = jnp.floor((W - s) * jax.random.uniform(kw)).astype(jnp.int32)
        return vh, vw, jnp.sign(jax.random.uniform(kc, (C,), x.dtype) * 2 - 1)

    vh, vw, sign = jax.vmap(draw)(c.keys)
    rows, cols = jnp.arange(H), jnp.arange(W)
    in_h = (rows[None] >= vh[:, None]) & (rows[None] < (vh + s)[:, None])  # (B, H)
    in_w = (cols[None] >= vw[:, None]) & (cols[None] < (vw + s)[:, None])  # (B, W)
    mask = (in_h[:, :, None] & in_w[:, None, :])[..., None].astype(x.dtype)  # (B, H, W, 1)
    x_new = _clip_ball(c.x_best + mask * 2.0 * eps * sign[:, None, None, :], x, eps)
    m_new = margin(f(params, x_new), y)
    improved = m_new < c.loss  # margin loss: loss == margin
    upd = active & (improved | (m_new <= 0))
    return SquareState(
        x_best=jnp.where(_per_example(upd, x), x_new, c.x_best),
        margin=jnp.where(upd, m_new, c.margin),
        loss=jnp.where(active & improved, m_new, c.loss),
        keys=c.keys,
        clean_ok=c.clean_ok,
    )


def square_robust(c: SquareState) -> jax.Array:
    """(B,) bool: clean-correct and margin > 0 (not fooled) in a Square carry."""
    return c.clean_ok & (c.margin > 0)


def _square_finish(x, c: SquareState) -> jax.Array:
    return jnp.where(_per_example(square_robust(c) | ~c.clean_ok, x), x, c.x_best)


def _square_done(c: SquareState) -> jax.Array:
    return ~jnp.any(c.margin > 0)


def square_attack(
    f: Fn, *, n_queries: int = 5000, p_init: float = 0.8, rescale_schedule: bool = True
) -> IterativeAttack:
    """Square Attack (L∞, untargeted, margin loss) as an
    :class:`~robntk.attacks.protocol.IterativeAttack` (Andriushchenko et al. 2020;
    ``autoattack/square.py`` ``attack_single_run``). Score-based: uses only ``f``'s outputs.

    ``init(params, x, y, eps, key)``: the vertical-stripe start x + ε·(±1 per example, column,
    channel) from the per-example keys :func:`~robntk.attacks.autoattack.example_keys` of
    ``key`` (carry: :class:`SquareState`). ``step(..., i)``: query i (one per still-robust
    example): a square of side s = max(round(√(p_i·H·W)), 1) (p_i = :func:`square_p`) at a
    uniform position with colour ±2ε per channel, drawn from ``fold_in(key_b, i + 1)``, added to
    the current best point and projected; accepted if the margin decreases or the point is misclassified; fooled
    points are frozen, so ``done`` (every point fooled) ends the run without changing its
    result. ``finish(x, carry)``: the fooling point where the example was broken, else x
    (:func:`square_robust` gives the verdicts from the carry). ``steps`` = ``n_queries``.

    Args:
        f: ``f(params, x) -> (B, K)`` logits; x (B, H, W, C) in [0, 1]; eps in pixel units.
        n_queries: iteration budget (AutoAttack 5000). p_init: initial fraction (0.8).
        rescale_schedule: rescale the p-schedule to ``n_queries`` (True, as AutoAttack).

    Raises:
        ValueError: n_queries < 1, p_init outside (0, 1]; at ``init``: bad eps.
    """
    _check_square(n_queries, p_init)

    def step(params, x, y, eps, c, i):
        return _square_step(
            f, params, x, y, eps, c, i, n_queries=n_queries, p_init=p_init, rescale_schedule=rescale_schedule
        )

    return IterativeAttack(
        lambda params, x, y, eps, key: _square_init(f, params, x, y, eps, key),
        step,
        _square_finish,
        n_queries,
        _square_done,
    )


def square(
    f: Fn,
    params,
    x: jax.Array,
    y: jax.Array,
    eps,
    *,
    key: jax.Array,
    n_queries: int = 5000,
    p_init: float = 0.8,
    rescale_schedule: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Square Attack, L∞, untargeted, margin loss (Andriushchenko et al. 2020;
    ``autoattack/square.py`` ``attack_single_run``): :func:`square_attack` run by
    :func:`robntk.attacks.protocol.run_attack_carry` in a ``lax.while_loop`` until
    ``n_queries`` iterations or every point is fooled.

    Args: f, params, x (B, H, W, C) in [0, 1], y (B,), eps (pixel units), key (one or B keys):
    as :func:`~robntk.attacks.autoattack.apgd`; n_queries, p_init, rescale_schedule: as
    :func:`square_attack`.

    Returns:
        ``(x_adv, robust)`` as :func:`~robntk.attacks.autoattack.apgd`, robust = clean-correct and
        margin > 0 at the end.

    Raises:
        ValueError: bad eps, n_queries < 1, p_init outside (0, 1].
    """
    check_attack_args(eps)
    atk = square_attack(f, n_queries=n_queries, p_init=p_init, rescale_schedule=rescale_schedule)
    c = run_attack_carry(atk, params, x, y, eps, key, loop="fori")
    return jax.lax.stop_gradient(atk.finish(x, c)), square_robust(c)
