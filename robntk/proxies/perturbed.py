"""Perturbed-input proxies: :func:`on_pgd_inputs` turns any proxy into its perturbed-input
variant (the proxy computed on PGD examples of the network at init, :func:`pgd_inputs`), and
the variants of the newer proxies registered in :data:`robntk.proxies.PROXIES`
(``az_nas_pgd_proxies``, ``vkdnw_pgd``, ``meco_pgd``, ``swap_pgd``).
"""

from __future__ import annotations

import jax

from robntk.attacks import iterative as attacks
from robntk.proxies.az_nas import az_nas_proxies
from robntk.proxies.meco_swap import meco, swap
from robntk.proxies.vkdnw import vkdnw


def pgd_inputs(net, variables, cell, x, y, key, eps: float = 8 / 255, steps: int = 10, alpha=None) -> jax.Array:
    """PGD examples of the network at init: L∞ PGD (:func:`robntk.attacks.iterative.pgd`,
    uniform random start from ``fold_in(key, 7)``, ``steps`` steps of 2.5·eps/steps) on the mean
    cross-entropy of the train-mode-BN network (the proxies' mode) at x (B, H, W, 3) in [0, 1],
    y (B,) int. eps in pixel units (8/255: NAS-RobBench-201's PGD-8). Returns x_adv (x's shape,
    in [0, 1]). Raises: ValueError: bad eps/steps (:func:`check_attack_args`), key None."""
    if key is None:
        raise ValueError("pgd_inputs needs a PRNG key (random start)")

    def f(p, z):
        return net.forward(p, None, z, cell, True)[0]

    return attacks.pgd(f, variables["params"], x, y, eps, steps=steps, alpha=alpha, key=jax.random.fold_in(key, 7))


def on_pgd_inputs(proxy, eps: float = 8 / 255, steps: int = 10, name: str | None = None):
    """The perturbed-input variant of ``proxy`` (Lukasik, Moeller, Keuper, IJCV 2024: proxies
    computed on adversarial inputs): ``proxy(net, variables, cell, pgd_inputs(...), y, key)``
    with :func:`pgd_inputs` of radius ``eps`` (pixel units) and ``steps`` iterations on the
    network at init. The proxy's own randomness uses the same ``key`` as its clean version.
    Works for single proxies and for group functions returning a dict (keys suffixed ``_pgd``).

    Returns: a proxy with the suite's signature. Raises (when called): ValueError: key None."""

    def wrapped(net, variables, cell, x, y, key=None):
        xa = pgd_inputs(net, variables, cell, x, y, key, eps=eps, steps=steps)
        out = proxy(net, variables, cell, xa, y, key)
        return {f"{k}_pgd": v for k, v in out.items()} if isinstance(out, dict) else out

    wrapped.__name__ = name or f"{getattr(proxy, '__name__', 'proxy')}_pgd"
    wrapped.__doc__ = f"``{wrapped.__name__}``: ``{getattr(proxy, '__name__', 'proxy')}`` on PGD inputs (eps={eps:.5g}, steps={steps}); see :func:`on_pgd_inputs`."
    return wrapped


az_nas_pgd_proxies = on_pgd_inputs(az_nas_proxies, name="az_nas_pgd_proxies")
vkdnw_pgd = on_pgd_inputs(vkdnw, name="vkdnw_pgd")
meco_pgd = on_pgd_inputs(meco, name="meco_pgd")
swap_pgd = on_pgd_inputs(swap, name="swap_pgd")
