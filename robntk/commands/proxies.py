"""``robntk proxies``: zero-cost proxies (NASLib's definitions, :mod:`robntk.proxies`) of NB201
archs on one fixed batch and one initialisation, one compile per proxy for all cells.

Writes ``--out`` (CSV/TSV/parquet: ``nb201_index``, ``arch_str``, one column per proxy and a
``{name}_undefined`` flag column — NaN, never a silent number, where a proxy is undefined) and
its JSON sidecar (configuration, batch hash, BN mode, versions). Same batch definition and
"init seed s" as ``robntk score``; the network runs with batch-statistics BN, as NASLib's
``find_measures`` does (``synflow`` is BN-free by definition).

Resumable: values go to the store ``--store`` (default ``OUT.store``, one sub-store per proxy,
keyed by the configuration and the batch digest) as they are computed; rerunning the same
command skips what is stored, ``--minutes`` bounds one run, and adding a proxy to ``--proxies``
later computes only that proxy. The table holds the archs with every requested proxy.
"""

from __future__ import annotations

import argparse

import jax

from robntk import proxies as P
from robntk.nb201.network import TinyNetwork
from robntk.scoring.config import ScoreConfig, load_batch, provenance
from robntk.nb201.searchspace import SearchSpace
from robntk.core.tables import check_table_path, write_table
from robntk.commands.common import add_selection_flags, select_indices

#: NASLib's batch size for the NB201 proxies (NAS-Bench-Suite-Zero: 64 images).
DEFAULT_BATCH = 64
#: The default selection: NAS-Bench-Suite-Zero's NB201 proxies that robntk defines, one
#: forward/backward each (the others — zen, epe_nas, zico, tenas_ntk_cond, linear_regions, croze,
#: l2_norm, plain — are chosen with --proxies).
DEFAULT_PROXIES = ("params", "flops", "synflow", "nwot", "jacov", "snip", "grad_norm", "fisher", "grasp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk proxies``."""
    add_selection_flags(p)
    p.add_argument("--proxies", nargs="+", default=list(DEFAULT_PROXIES), metavar="NAME",
                   help=f"proxies to compute (default: {' '.join(DEFAULT_PROXIES)}; allowed: {', '.join(P.PROXIES)})")
    p.add_argument("--dataset", default="cifar10", help="batch source / normalisation / classes")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="images in the fixed batch")
    p.add_argument("--seed", type=int, default=0, help="init seed (also batch, sample and proxy key seed)")
    p.add_argument("--C", type=int, default=16, help="TinyNetwork width (NB201: 16)")
    p.add_argument("--N", type=int, default=5, help="cells per stage (NB201: 5)")
    p.add_argument("--out", required=True, help="output .csv/.tsv/.parquet (configuration in OUT.json)")
    p.add_argument("--store", default=None, help="resumable store directory (default: OUT.store)")
    p.add_argument("--minutes", type=float, default=None, help="start no new arch after this many minutes "
                   "(rerun to continue)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Compute the proxies of the selection and write the table. Returns 0."""
    names = P.check_proxy_names(args.proxies)
    out = check_table_path(args.out)
    cfg = ScoreConfig(dataset=args.dataset, batch_size=args.batch_size, seed=args.seed, C=args.C, N=args.N)
    space = SearchSpace.load(args.data_dir)
    indices = select_indices(args, space, args.seed)
    x, y, digest = load_batch(cfg, args.data_dir)
    net = TinyNetwork.for_dataset(cfg.dataset, cfg.C, cfg.N, cfg.init_scheme)
    variables = net.init(jax.random.PRNGKey(cfg.seed))
    # only the fields that define this computation (the NTK fields of ScoreConfig do not apply)
    config = {k: getattr(cfg, k) for k in ("dataset", "batch_size", "seed", "C", "N", "init_scheme", "dtype",
                                           "data_split")}
    config.update(bn_mode="train (batch statistics; synflow BN-free)", proxy_key=f"PRNGKey({cfg.seed + 1})",
                  batch_sha256_16=digest)
    store = args.store or f"{out}.store"
    table = P.proxy_table(names, indices, net, variables, x, y, space, key=jax.random.PRNGKey(cfg.seed + 1),
                          progress=not args.no_progress, store=store, store_config=config,
                          time_budget_s=None if args.minutes is None else 60 * args.minutes)
    meta = provenance(cfg, digest, {"job": "proxies", "proxies": names, "n_archs": len(table),
                                    "n_selected": len(indices), "store": str(store)})
    meta["config"] = config
    for k in ("config_digest", "bn_mode_note"):
        meta.pop(k, None)
    write_table(table.reset_index(), out, meta)
    print(table.drop(columns=["arch_str"]).describe().T[["count", "mean", "min", "max"]].to_string())
    left = len(set(indices)) - len(table)
    print(f"wrote {out} ({len(table)} archs, {len(names)} proxies)" + (f"; {left} left: rerun to continue" if left else ""))
    return 0
