"""The proxy suite (:data:`PROXIES`, NASLib names) and :func:`proxy_table`: many proxies for many
archs, one compile per proxy, resumable through :mod:`robntk.jobs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.jobs.driver import config_key, run_job
from robntk.jobs.store import KEY, ResultStore
from robntk.nb201.cell import check_op_ids, op_ids
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import is_connected
from robntk.proxies._common import Proxy
from robntk.proxies.activation import epe_nas, input_jacobian_proxies, jacov, linear_regions, nwot
from robntk.proxies.az_nas import az_expressivity, az_nas_proxies, az_progressivity, az_trainability
from robntk.proxies.closed_form import flop_count, flops, param_count, params
from robntk.proxies.gradient import fisher, grad_norm, grasp, l2_norm, loss_gradient_proxies, plain, snip, synflow
from robntk.proxies.meco_swap import meco, swap, swap_reg
from robntk.proxies.perturbed import az_nas_pgd_proxies, meco_pgd, swap_pgd, vkdnw_pgd
from robntk.proxies.robust import croze, zcprob, zcprob_terms
from robntk.proxies.vkdnw import vkdnw, vkdnw_dim
from robntk.proxies.zen_zico_tenas import tenas_ntk_cond, zen, zico

#: Proxy name → function (NASLib names).
PROXIES: dict[str, Proxy] = {
    "params": params,
    "flops": flops,
    "synflow": synflow,
    "grad_norm": grad_norm,
    "snip": snip,
    "plain": plain,
    "l2_norm": l2_norm,
    "fisher": fisher,
    "grasp": grasp,
    "nwot": nwot,
    "jacov": jacov,
    "epe_nas": epe_nas,
    "zen": zen,
    "zico": zico,
    "tenas_ntk_cond": tenas_ntk_cond,
    "linear_regions": linear_regions,
    "croze": croze,
    "zcprob_ntk": lambda *a: zcprob_terms(*a)["zcprob_ntk"],
    "zcprob_curv": lambda *a: zcprob_terms(*a)["zcprob_curv"],
    "zcprob": zcprob,
    # robntk.proxies.az_nas, .vkdnw, .meco_swap: AZ-NAS, VKDNW, MeCo, SWAP; .perturbed: their PGD variants
    "az_expressivity": az_expressivity,
    "az_progressivity": az_progressivity,
    "az_trainability": az_trainability,
    "vkdnw": vkdnw,
    "vkdnw_dim": vkdnw_dim,
    "meco": meco,
    "swap": swap,
    "swap_reg": swap_reg,
    "az_expressivity_pgd": lambda *a: az_nas_pgd_proxies(*a)["az_expressivity_pgd"],
    "az_progressivity_pgd": lambda *a: az_nas_pgd_proxies(*a)["az_progressivity_pgd"],
    "az_trainability_pgd": lambda *a: az_nas_pgd_proxies(*a)["az_trainability_pgd"],
    "vkdnw_pgd": vkdnw_pgd,
    "meco_pgd": meco_pgd,
    "swap_pgd": swap_pgd,
}
#: Proxies that need no forward pass (closed form in the cell): their integer counts, which
#: :func:`proxy_table` divides by 1e6 on the host (the exact decimal NAS-Bench-Suite-Zero prints).
CLOSED_FORM = {"params": lambda net, cell, x: param_count(net, cell), "flops": flop_count}
#: Proxies :func:`proxy_table` computes in float64 (weights and batch cast, x64 enabled for the
#: call), as NASLib does: ``synflow`` overflows float32 for large cells.
FLOAT64_PROXIES = ("synflow",)
#: Proxies that share one forward/backward pass: group function → its members. :func:`proxy_table`
#: computes the members an arch still needs in one call of the group function (one compile).
GROUPS: dict[Callable[..., dict], tuple[str, ...]] = {
    loss_gradient_proxies: ("grad_norm", "snip", "plain", "fisher"),
    input_jacobian_proxies: ("jacov", "epe_nas"),
    az_nas_proxies: ("az_expressivity", "az_progressivity", "az_trainability"),
    az_nas_pgd_proxies: ("az_expressivity_pgd", "az_progressivity_pgd", "az_trainability_pgd"),
    zcprob_terms: ("zcprob_ntk", "zcprob_curv"),
}


class _ProxyStores:
    """The :class:`robntk.jobs.driver.Sink` of :func:`proxy_table`: one store per proxy; an arch
    is done when every requested proxy has its value; a row goes to each proxy's store."""

    def __init__(self, stores: dict[str, ResultStore], have: dict[str, dict[int, dict]], names: list[str]):
        self.stores, self.have, self.names = stores, have, names

    def done(self) -> set[int]:
        return set.intersection(*(set(self.have[n]) for n in self.names))

    def append(self, rows) -> None:
        for n, st in self.stores.items():
            st.append([{KEY: r[KEY], n: r[n], f"{n}_s": r[f"{n}_s"]} for r in rows if n in r])


def check_proxy_names(names: Sequence[str]) -> list[str]:
    """Validate proxy names. Raises: ValueError naming the unknown ones and the allowed ones."""
    names = [names] if isinstance(names, str) else list(names)
    bad = [n for n in names if n not in PROXIES]
    if bad or not names:
        raise ValueError(f"unknown proxy name(s) {bad or names!r}; allowed: {', '.join(PROXIES)}")
    return names


def proxy_table(
    names: Sequence[str],
    arch_indices: Sequence[int],
    net: TinyNetwork,
    variables,
    x: jax.Array,
    y: jax.Array,
    space,
    key: jax.Array | None = None,
    progress: bool = True,
    store=None,
    store_config: Mapping | None = None,
    time_budget_s: float | None = None,
    flush_s: float = 30.0,
) -> pd.DataFrame:
    """Several proxies for many archs, one compile per proxy (the cell as data), optionally
    resumable through :class:`robntk.jobs.store.ResultStore`. Requested members of a :data:`GROUPS`
    group share one call (one forward/backward pass per arch for all of them).

    Archs are visited in the given order and every proxy of an arch is computed before the next
    arch, so a run cut short leaves complete rows.

    Args:
        names: proxy names (:data:`PROXIES`). arch_indices: NB201 indices. net, variables: the
            network and its full-tree variables. x (B, H, W, 3) in [0, 1], y (B,) int: the batch
            (the same for all archs). space: :class:`robntk.nb201.searchspace.SearchSpace`.
        key: PRNG key passed to every proxy (default PRNGKey(0)). progress: show tqdm.
        store: directory of a resumable store, one sub-store per proxy (``STORE/<name>``, keyed
            by the proxy name, its compute dtype and ``store_config``): values already stored are read, not
            recomputed; new ones are appended (atomically) every ``flush_s`` seconds and at the
            end, so a killed run loses at most ``flush_s`` seconds. None: nothing on disk.
        store_config: JSON-able dict of everything besides the name that determines a value
            (network, init seed, batch digest, key); required with ``store``.
        time_budget_s: start no new arch after this many seconds (None: no limit).

    Returns:
        DataFrame indexed by ``nb201_index`` (the archs with every proxy computed, in the given
        order) with ``arch_str``, one float64 column per proxy, and ``{name}_undefined`` (bool):
        True where the value is not finite or the cell has no input→output path (for those the
        value is NaN, never a silent number).

    Raises:
        ValueError: unknown proxy names (lists the allowed ones), bad indices, ``store`` without
            ``store_config``. robntk.jobs.store.StoreMismatchError: ``store`` holds another config.
    """
    names = check_proxy_names(names)
    idx = list(dict.fromkeys(space.check_index(int(i)) for i in arch_indices))
    key = jax.random.PRNGKey(0) if key is None else key
    stores: dict[str, ResultStore] = {}
    have: dict[str, dict[int, dict]] = {n: {} for n in names}
    if store is not None:
        if store_config is None:
            raise ValueError("proxy_table(store=...) needs store_config (what determines the values)")
        for n in names:
            cfg = {"proxy": n, **dict(store_config)}
            if n in FLOAT64_PROXIES:
                cfg["compute_dtype"] = "float64"
            elif n in CLOSED_FORM:
                cfg["compute"] = "integer count / 1e6 on the host"
            stores[n] = ResultStore.open(Path(store) / n, config_key(cfg), {"config": cfg})
            have[n] = stores[n].read().rows
    # Each requested proxy is computed by a "unit": its GROUPS function (shared by the requested
    # members of the group) or the proxy alone; one jit per unit.
    unit_of = {n: next((g for g, ms in GROUPS.items() if n in ms), PROXIES[n]) for n in names}
    members = {u: [n for n in names if unit_of[n] is u] for u in dict.fromkeys(unit_of.values())}
    fns = {
        u: jax.jit(
            lambda v, c, xx, yy, kk, fn=u, ms=tuple(ms): (
                fn(net, v, c, xx, yy, kk) if fn in GROUPS else {ms[0]: fn(net, v, c, xx, yy, kk)}
            )
        )
        for u, ms in members.items()
        if ms[0] not in CLOSED_FORM
    }
    counts = {n: jax.jit(lambda c, fn=CLOSED_FORM[n]: fn(net, c, x)) for n in names if n in CLOSED_FORM}
    if any(n in FLOAT64_PROXIES for n in names):
        with jax.enable_x64(True):  # the float64 copies of FLOAT64_PROXIES (the same weights and batch)
            v64, x64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (variables, x))

    def values(u, ms, c) -> dict[str, float]:
        if ms[0] in CLOSED_FORM:
            return {ms[0]: int(counts[ms[0]](c)) / 1e6}
        if ms[0] not in FLOAT64_PROXIES:
            out = fns[u](variables, c, x, y, key)
        else:
            with jax.enable_x64(True):
                out = fns[u](v64, c, x64, y, key)
        return {n: float(out[n]) for n in ms}

    def compute(blk: list[int]) -> list[dict]:
        rows = []
        for i in blk:
            c = jnp.asarray(check_op_ids(op_ids(space.ops(i))))
            row = {KEY: i}
            for u, ms in members.items():
                if all(i in have[n] for n in ms):
                    continue
                t0 = time.time()
                vals = values(u, ms, c)
                dt = time.time() - t0
                for n in ms:
                    if i not in have[n]:
                        have[n][i] = {KEY: i, n: vals[n], f"{n}_s": dt}
                        row.update(have[n][i])
            rows.append(row)
        return rows

    run_job(
        idx,
        compute,
        _ProxyStores(stores, have, names) if stores else None,
        time_budget_s=time_budget_s,
        flush_s=flush_s,
        desc="proxies",
        progress=progress,
    )
    done = [i for i in idx if all(i in have[n] for n in names)]
    out = pd.DataFrame(index=pd.Index(done, name="nb201_index"))
    out["arch_str"] = [space.arch_str(i) for i in done]
    connected = np.array([is_connected(space.ops(i)) for i in done], bool)
    for n in names:
        vals = np.array([have[n][i][n] for i in done], np.float64)
        bad = ~np.isfinite(vals) | (~connected if n not in CLOSED_FORM else np.zeros(len(done), bool))
        vals[bad] = np.nan
        out[n] = vals
        out[f"{n}_undefined"] = bad
    return out
