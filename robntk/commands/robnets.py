"""``robntk robnets``: RobNets (Guo et al., CVPR 2020) architectures, attacks and findings.

Subcommands::

    params        parameter counts of the released RobNets (reference skeleton vs the paper)
    train         PGD adversarial training of a RobNet (full scale needs a GPU)
    eval          clean / FGSM / PGD-20 / PGD-100 / MI-FGSM / DeepFool accuracy of a trained RobNet
    density       finding 1 on NAS-RobBench-201: density vs clean/robust accuracy (τ, CI, figure)
    direct-edges  finding 2: equal-parameter pairs, conv on the direct edge 0→3 vs elsewhere
    fsp           finding 3: FSP-matrix loss per cell depth at init / after a PGD fine-tune, τ
    oneshot       RobNets' one-shot adversarial supernet search over NB201 (reduced or full)

Every subcommand writes its outputs (CSV/JSON/PNG, atomically) and the exact configuration into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the subcommands on ``parser``."""
    sub = parser.add_subparsers(dest="robnets_cmd", required=True)

    p = sub.add_parser("params", help="parameter counts (reference skeleton, paper)")
    p.add_argument("--out", default=None, help="optional JSON output")

    p = sub.add_parser("train", help="PGD adversarial training of a RobNet (GPU for full scale)")
    p.add_argument("--model", default="robnet_large_v1", choices=["robnet_large_v1", "robnet_large_v2", "robnet_free"])
    p.add_argument("--out", required=True)
    p.add_argument("--C", type=int, default=None, help="override the config's C (small copies)")
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--epochs", type=float, default=150.0, help="reference: 150")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=1e-4, help="reference: 1e-4")
    p.add_argument("--train-limit", type=int, default=None, help="class-balanced training subset")
    p.add_argument("--pgd-steps", type=int, default=7, help="reference training: PGD-7, step 2/255")
    p.add_argument("--seed", type=int, default=10)

    p = sub.add_parser("eval", help="white-box evaluation as RobNets reports it")
    p.add_argument("--run", required=True, help="directory written by `robnets train`")
    p.add_argument("--out", default=None, help="JSON (default: <run>/eval.json)")
    p.add_argument("--limit", type=int, default=1000, help="class-balanced test images")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--attacks", default="clean,fgsm,pgd20,pgd100,mifgsm,deepfool")
    p.add_argument("--eps", type=float, default=8.0, help="L∞ radius in 1/255 units (RobNets: 8)")

    p = sub.add_parser("density", help="finding 1 on NAS-RobBench-201")
    p.add_argument("--out", required=True)
    p.add_argument("--n-boot", type=int, default=1000)

    p = sub.add_parser("direct-edges", help="finding 2 on NAS-RobBench-201")
    p.add_argument("--out", required=True)
    p.add_argument("--direct", default="3", help="comma-separated edge ids treated as direct (default 3 = 0→3)")

    p = sub.add_parser("fsp", help="finding 3: FSP loss per cell depth vs NAS-RobBench-201")
    p.add_argument("--out", required=True)
    p.add_argument("--num-archs", type=int, default=60)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=2)
    p.add_argument("--image-size", type=int, default=16, choices=[16, 32])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--finetune-steps", type=int, default=10)
    p.add_argument("--attack-steps", type=int, default=5)
    p.add_argument("--train-pgd-steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)

    p = sub.add_parser("oneshot", help="one-shot adversarial supernet search over NB201")
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="reduced", choices=["reduced", "full"],
                   help="reduced: 2 CPU cores, < 1 h; full: GPU")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override an OneShotConfig field (repeatable), e.g. --set train_steps=10")


def main(argv=None) -> int:
    """Stand-alone entry (scripts): parse ``argv`` and :func:`run`."""
    parser = argparse.ArgumentParser(prog="robntk robnets")
    parser.add_argument("--data-dir", dest="data_dir", default=None)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed ``robntk robnets`` command. Returns the exit status."""
    fn = {"params": _params, "train": _train, "eval": _eval, "density": _density, "direct-edges": _direct,
          "fsp": _fsp, "oneshot": _oneshot}[args.robnets_cmd]
    return fn(args)


def _data_dir(args):
    return getattr(args, "data_dir", None)


def _write_json(obj, path) -> None:
    from robntk.robnets.findings import save_json

    save_json(obj, path)


# --------------------------------------------------------------------------- params
def _params(args) -> int:
    from robntk.robnets import space as rs

    out = {}
    for name, cfg in rs.CONFIGS.items():
        c10 = rs.num_params(rs.GENOTYPES[name], cfg)
        c100 = rs.num_params(rs.GENOTYPES[name], rs.RobNetConfig(**{**cfg.to_dict(), "num_classes": 100}))
        out[name] = {"config": cfg.to_dict(), "params_cifar10_head": c10, "params_100_class_head": c100,
                     "paper": rs.PAPER_PARAMS[name], "heads_matching_paper": rs.paper_head_classes(name, 200)}
        print(f"{name:16s} CIFAR-10 head {c10 / 1e6:7.3f}M   100-class head {c100 / 1e6:7.3f}M   "
              f"paper {rs.PAPER_PARAMS[name] / 1e6:.2f}M")
    if args.out:
        _write_json(out, args.out)
    return 0


# --------------------------------------------------------------------------- train / eval
def _train(args) -> int:
    import jax
    import jax.numpy as jnp
    import optax

    from robntk.core import paths
    from robntk.attacks.iterative import cross_entropy, pgd
    from robntk.data.datasets import balanced_indices, load_dataset
    from robntk.robnets.network import robnet
    from robntk.data.datasets import augment, epoch_permutation

    over = {k: v for k, v in (("C", args.C), ("layers", args.layers)) if v is not None}
    model = robnet(args.model, **over)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_dataset("cifar10", "train", _data_dir(args))
    if args.train_limit:
        i = balanced_indices(y, args.train_limit, seed=args.seed)
        x, y = x[i], y[i]
    x = x.astype(np.float32) / 255.0
    y = y.astype(np.int32)
    per_epoch = max(len(y) // args.batch_size, 1)
    total = int(args.epochs * per_epoch) if args.max_steps is None else min(args.max_steps, int(args.epochs * per_epoch))
    tx = optax.chain(optax.add_decayed_weights(args.weight_decay),
                     optax.sgd(optax.cosine_decay_schedule(args.lr, max(total, 1)), 0.9))
    v = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False))(jax.random.PRNGKey(args.seed))
    params, stats = v["params"], v["batch_stats"]
    st = tx.init(params)

    @jax.jit
    def step(params, stats, st, xb, yb, key):
        k1, k2 = jax.random.split(key)
        xb = augment(k1, xb, 4)
        # the reference crafts in train mode (main.py: net.train(), AttackPGD inside the forward):
        # batch statistics; the running-statistics updates of the attack passes are discarded here
        f_train = lambda p, z: model.apply({"params": p, "batch_stats": stats}, z, train=True,
                                           mutable=["batch_stats"])[0]
        xa = pgd(f_train, params, xb, yb, 8 / 255, steps=args.pgd_steps, alpha=2 / 255, key=k2)

        def loss(p):
            logits, new = model.apply({"params": p, "batch_stats": stats}, xa, train=True, mutable=["batch_stats"])
            return cross_entropy(logits, yb), new["batch_stats"]

        (l, stats), g = jax.value_and_grad(loss, has_aux=True)(params)
        u, st = tx.update(g, st, params)
        return optax.apply_updates(params, u), stats, st, l

    from tqdm import tqdm

    for t in tqdm(range(total), desc=f"PGD-AT {args.model}"):
        e, j = divmod(t, per_epoch)
        b = epoch_permutation(args.seed, e, len(y))[j * args.batch_size:(j + 1) * args.batch_size]
        params, stats, st, l = step(params, stats, st, x[b], y[b], jax.random.fold_in(jax.random.PRNGKey(args.seed), t))
    meta = {"model": args.model, "overrides": over, "steps": total, **{k: getattr(args, k) for k in
            ("epochs", "batch_size", "lr", "weight_decay", "train_limit", "pgd_steps", "seed")}}
    blob = pickle.dumps({"meta": meta, "variables": jax.device_get({"params": params, "batch_stats": stats})})
    paths.atomic_save(out / "model.pkl", lambda tmp: Path(tmp).write_bytes(blob))
    _write_json(meta, out / "config.json")
    print(f"trained {total} steps → {out / 'model.pkl'} (last loss {float(l):.4f})")
    return 0


def _eval(args) -> int:
    import jax
    import jax.numpy as jnp

    from robntk.attacks.iterative import deepfool, fgsm, mifgsm, pgd
    from robntk.data.datasets import balanced_indices, load_dataset
    from robntk.robnets.network import robnet

    run_dir = Path(args.run)
    blob = pickle.loads((run_dir / "model.pkl").read_bytes())
    meta, variables = blob["meta"], blob["variables"]
    model = robnet(meta["model"], **meta["overrides"])
    f = jax.jit(lambda p, z: model.apply({"params": p, "batch_stats": variables["batch_stats"]}, z, train=False))
    params = variables["params"]
    eps = args.eps / 255.0
    allowed = ("clean", "fgsm", "pgd20", "pgd100", "mifgsm", "deepfool")
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    bad = [a for a in attacks if a not in allowed]
    if bad:
        raise ValueError(f"unknown attacks {bad}; allowed: {', '.join(allowed)}")
    x, y = load_dataset("cifar10", "test", _data_dir(args))
    i = balanced_indices(y, args.limit, seed=0)
    x, y = x[i].astype(np.float32) / 255.0, y[i].astype(np.int32)
    fns = {
        "clean": lambda xb, yb, k: xb,
        "fgsm": jax.jit(lambda xb, yb, k: fgsm(f, params, xb, yb, eps)),
        "pgd20": jax.jit(lambda xb, yb, k: pgd(f, params, xb, yb, eps, steps=20, alpha=2 / 255, key=k)),
        "pgd100": jax.jit(lambda xb, yb, k: pgd(f, params, xb, yb, eps, steps=100, alpha=2 / 255, key=k)),
        "mifgsm": jax.jit(lambda xb, yb, k: mifgsm(f, params, xb, yb, eps, steps=20, alpha=2 / 255)),
        "deepfool": jax.jit(lambda xb, yb, k: deepfool(f, params, xb, yb, num_classes=10, steps=50, norm="linf", eps=eps)),
    }
    res = {}
    for a in attacks:
        correct = 0
        for b0 in range(0, len(y), args.batch_size):
            xb, yb = jnp.asarray(x[b0:b0 + args.batch_size]), jnp.asarray(y[b0:b0 + args.batch_size])
            xa = fns[a](xb, yb, jax.random.PRNGKey(b0))
            correct += int(jnp.sum(jnp.argmax(f(params, xa), -1) == yb))
        res[a] = correct / len(y)
        print(f"{a:9s} {100 * res[a]:6.2f}%")
    out = {"run": str(run_dir), "n": len(y), "eps": eps, "accuracy": res,
           "protocol": "L∞ eps 8/255; PGD-20/100 step 2/255 random start; MI-FGSM 20 steps step 2/255 decay 1; "
                       "DeepFool L∞ 50 steps overshoot 0.02 projected onto the eps-ball; eval-mode BN"}
    _write_json(out, args.out or run_dir / "eval.json")
    return 0


# --------------------------------------------------------------------------- findings
def _bench(args):
    from robntk.data.benchmark import RobBench

    return RobBench.load(_data_dir(args))


def _density(args) -> int:
    from robntk.core import paths
    from robntk.robnets import findings as fd

    out = Path(args.out)
    bench = _bench(args)
    df = fd.density_table(bench, ("cifar10", "cifar100", "ImageNet16-120"))
    targets = [f"{ds}_{m}" for ds in ("cifar10", "cifar100", "ImageNet16-120") for m in ("val_acc", "val_pgd_8.0_acc")]
    tab = fd.tau_table(df, ["density_connected", "density_param", "cell_params"], targets, n_boot=args.n_boot)
    levels = df.groupby("density_connected")[["cifar10_val_acc", "cifar10_val_pgd_8.0_acc"]].agg(["mean", "std", "count"])
    levels_p = df.groupby("density_param")[["cifar10_val_acc", "cifar10_val_pgd_8.0_acc"]].agg(["mean", "std", "count"])
    # within equal parameter count: does density still help? (τ per cell_params group, pooled)
    paths.atomic_save(out / "density_tau.csv", lambda t: tab.to_csv(t, index=False, float_format="%.4f"))
    paths.atomic_save(out / "density_levels_connected.csv", lambda t: levels.to_csv(t, float_format="%.4f"))
    paths.atomic_save(out / "density_levels_param.csv", lambda t: levels_p.to_csv(t, float_format="%.4f"))
    fd.density_figure(df, out / "density.png")
    _write_json({"command": "robntk robnets density", "n_boot": args.n_boot, "n_archs": len(df),
                 "definitions": {"density_connected": "share of the 6 edges that are not none",
                                 "density_param": "share of the 6 edges holding nor_conv_1x1 or nor_conv_3x3"}},
                out / "density_config.json")
    print(tab.to_string(index=False))
    return 0


def _direct(args) -> int:
    from robntk.core import paths
    from robntk.robnets import findings as fd

    out = Path(args.out)
    direct = tuple(int(d) for d in args.direct.split(","))
    bench = _bench(args)
    pairs = fd.direct_edge_pairs(bench, direct)
    tag = "_".join(map(str, direct))
    res = {}
    for m in ("val_pgd_8.0_acc", "val_acc"):
        s = fd.summarize_pairs(pairs, m)
        res[m] = s
        paths.atomic_save(out / f"direct_edges_{tag}_{m}.csv", lambda t, s=s: s.to_csv(t, index=False, float_format="%.4f"))
        print(f"{m} (direct edges {direct}):\n{s.to_string(index=False)}")
    by_conv = pairs.groupby(["budget", "conv"])["delta_val_pgd_8.0_acc"].agg(["count", "mean"]).reset_index()
    by_conv["mean"] *= 100
    paths.atomic_save(out / f"direct_edges_{tag}_by_conv.csv", lambda t: by_conv.to_csv(t, index=False, float_format="%.4f"))
    _write_json({"command": f"robntk robnets direct-edges --direct {args.direct}", "direct_edges": direct,
                 "pairs": len(pairs), "dataset": "cifar10"}, out / f"direct_edges_{tag}_config.json")
    return 0


def _fsp(args) -> int:
    from robntk.core import paths
    from robntk.data.datasets import balanced_indices, load_dataset
    from robntk.robnets import findings as fd
    from robntk.robnets.oneshot import prepare_images

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(args, k) for k in ("num_archs", "C", "N", "image_size", "batch_size", "finetune_steps",
                                         "attack_steps", "train_pgd_steps", "lr", "seed")}
    cfg_path = out / "fsp_config.json"
    if cfg_path.is_file() and json.loads(cfg_path.read_text()) != cfg:
        raise ValueError(f"{out} holds an FSP run with another configuration; use a new --out")
    _write_json(cfg, cfg_path)
    bench = _bench(args)
    idx = fd.sample_fsp_archs(bench, args.num_archs, args.seed)
    x, y = load_dataset("cifar10", "train", _data_dir(args))
    i = balanced_indices(y, 2000, seed=args.seed)
    x, y = prepare_images(x[i], args.image_size), y[i].astype(np.int32)
    df = fd.fsp_experiment(idx, bench.space, x, y, out / "fsp.csv", C=args.C, N=args.N,
                           finetune_steps=args.finetune_steps, batch_size=args.batch_size, lr=args.lr,
                           attack_steps=args.attack_steps, train_pgd_steps=args.train_pgd_steps, seed=args.seed)
    tab = fd.fsp_taus(df, bench, n_boot=args.n_boot)
    paths.atomic_save(out / "fsp_tau.csv", lambda t: tab.to_csv(t, index=False, float_format="%.4f"))
    print(tab[tab.target == "val_pgd_8.0_acc"].to_string(index=False))
    return 0


def _oneshot(args) -> int:
    from dataclasses import fields

    from robntk.robnets import oneshot as osh

    base = osh.REDUCED if args.config == "reduced" else osh.FULL
    d = base.to_dict()
    types = {f.name: f.type for f in fields(osh.OneShotConfig)}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set needs FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in d:
            raise ValueError(f"unknown OneShotConfig field {k!r}; allowed: {', '.join(d)}")
        d[k] = None if v.lower() == "none" else (float(v) if "float" in str(types[k]) else int(v))
    summary = osh.run_search(osh.OneShotConfig(**d), args.out, _data_dir(args))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
