"""``robntk robnets``: RobNets (Guo et al., CVPR 2020) architectures, attacks and findings.

Subcommands::

    params        parameter counts of the released RobNets (reference skeleton vs the paper)
    train         PGD adversarial training of a RobNet (full scale needs a GPU)
    eval          clean / FGSM / PGD-20 / PGD-100 / MI-FGSM / DeepFool accuracy of a trained RobNet
    density       finding 1 on NAS-RobBench-201: density vs clean/robust accuracy (τ, CI, figure)
    direct-edges  finding 2: equal-parameter pairs, conv on the direct edge 0→3 vs elsewhere
    fsp           finding 3: FSP-matrix loss per cell depth at init / after a PGD fine-tune, τ
    oneshot       RobNets' one-shot adversarial supernet search over NB201 (reduced or full)

Every sub-command's flags are generated from its configuration dataclass in
:mod:`robntk.robnets.config` (one source of defaults; ε in [0, 1] pixel units, ``--eps 8/255``),
which validates them before any work, and from the small option classes below (``--out``,
``--run``, ``--no-progress``, oneshot's ``--config`` / ``--set``); the work is the library's
(:mod:`robntk.robnets`). Outputs and the configuration go into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.robnets import config as rc


@dataclass(frozen=True, kw_only=True)
class OutDir:
    """``--out`` (the output or run directory) and ``--no-progress`` of the sub-commands that
    write a directory."""

    out: str = field(metadata=flag("output directory (the run directory for train and oneshot; rerun to resume)"))
    no_progress: bool = field(default=False, metadata=flag("no progress bars"))


@dataclass(frozen=True, kw_only=True)
class EvalRun:
    """The run ``robntk robnets eval`` evaluates and where its JSON goes."""

    run: str = field(metadata=flag("run directory written by `robntk robnets train`"))
    out: str | None = field(default=None, metadata=flag("JSON output (default: <run>/eval.json)"))


@dataclass(frozen=True, kw_only=True)
class ParamsOut:
    """The optional JSON output of ``robntk robnets params``."""

    out: str | None = field(default=None, metadata=flag("optional JSON output"))


@dataclass(frozen=True, kw_only=True)
class OneShotStart:
    """Where ``robntk robnets oneshot``'s configuration starts from, and field overrides by name."""

    config: str = field(
        default="reduced",
        metadata=flag(
            "starting configuration: reduced (2 CPU cores, < 1 h) or full (GPU); the defaults shown below are the "
            "reduced one's",
            choices=("reduced", "full"),
        ),
    )
    overrides: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "set a configuration field by its name, parsed as its flag (repeatable), e.g. --set train_steps=10",
            flag="--set",
            action="append",
            metavar="FIELD=VALUE",
        ),
    )


#: sub-command → (configuration class, option classes, one-line help)
SUBCOMMANDS: dict[str, tuple[type | None, tuple[type, ...], str]] = {
    "params": (None, (ParamsOut,), "parameter counts (reference skeleton, paper)"),
    "train": (rc.RobNetTrainConfig, (OutDir,), "PGD adversarial training of a RobNet (GPU for full scale; resumes)"),
    "eval": (rc.RobNetEvalConfig, (EvalRun,), "white-box evaluation as RobNets reports it"),
    "density": (rc.DensityConfig, (OutDir,), "finding 1 on NAS-RobBench-201"),
    "direct-edges": (rc.DirectEdgesConfig, (OutDir,), "finding 2 on NAS-RobBench-201"),
    "fsp": (rc.FSPConfig, (OutDir,), "finding 3: FSP loss per cell depth vs NAS-RobBench-201 (resumable)"),
    "oneshot": (
        rc.OneShotConfig,
        (OutDir, OneShotStart),
        "one-shot adversarial supernet search over NB201 (resumable)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the subcommands on ``parser``."""
    sub = parser.add_subparsers(dest="robnets_cmd", required=True)
    for name, (cls, options, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--data-dir", default=argparse.SUPPRESS, help="data directory (also accepted before the sub-command)"
        )
        for opt in options:
            add_dataclass_flags(p, opt)
        if cls is not None:
            add_dataclass_flags(
                p.add_argument_group("configuration"), cls, defaults=rc.REDUCED if name == "oneshot" else None
            )


def main(argv=None) -> int:
    """Stand-alone entry (scripts): parse ``argv`` and :func:`run`."""
    parser = argparse.ArgumentParser(prog="robntk robnets")
    parser.add_argument("--data-dir", dest="data_dir", default=None)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def _set_fields(cls, items: list[str]) -> dict:
    """``--set FIELD=VALUE`` items → field values, each parsed by the field's own flag parser.

    Raises:
        ValueError: an item without ``=``, an unknown field (lists the allowed ones), a bad value.
    """
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set needs FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if k not in fields_:
            raise ValueError(f"unknown {cls.__name__} field {k!r}; allowed: {', '.join(fields_)}")
        p = argparse.ArgumentParser(exit_on_error=False, add_help=False)
        add_dataclass_flags(p, cls, include=(k,))
        try:
            ns, _ = p.parse_known_args([fields_[k].metadata.get("flag", "--" + k.replace("_", "-")), v])
        except argparse.ArgumentError as exc:
            raise ValueError(f"--set {item}: {exc}") from None
        out[k] = getattr(ns, k)
    return out


def run(args: argparse.Namespace) -> int:
    """Build the sub-command's configuration from the flags (validated), call the library, print.
    Returns the exit status."""
    from robntk.robnets import findings, fsp, oneshot, space, training

    cmd, data_dir = args.robnets_cmd, getattr(args, "data_dir", None)
    cls, options, _ = SUBCOMMANDS[cmd]
    opts = [config_from_args(o, args) for o in options]
    if cmd == "params":
        counts = space.parameter_counts()
        for name, c in counts.items():
            print(
                f"{name:16s} CIFAR-10 head {c['params_cifar10_head'] / 1e6:7.3f}M   "
                f"100-class head {c['params_100_class_head'] / 1e6:7.3f}M   paper {c['paper'] / 1e6:.2f}M"
            )
        if opts[0].out:
            from robntk.core.tables import write_json

            write_json(counts, opts[0].out)
        return 0
    if cmd == "oneshot":
        start = opts[1]
        base = rc.REDUCED if start.config == "reduced" else rc.FULL
        cfg = config_from_args(cls, args, defaults=base, **_set_fields(cls, list(start.overrides)))
    else:
        cfg = config_from_args(cls, args)
    if cmd == "eval":
        rec = training.evaluate_robnet(cfg, opts[0].run, opts[0].out, data_dir, progress=False)
        for name, acc in rec["accuracy"].items():
            print(f"{name:9s} {100 * acc:6.2f}%")
        return 0
    out, progress = opts[0].out, not opts[0].no_progress
    if cmd == "train":
        print(json.dumps(training.train_robnet(cfg, out, data_dir, progress=progress), indent=1, default=str))
    elif cmd == "density":
        print(findings.run_density(cfg, out, _bench(data_dir)).to_string(index=False))
    elif cmd == "direct-edges":
        res = findings.run_direct_edges(cfg, out, _bench(data_dir))
        for m, s in res["summaries"].items():
            print(f"{m} (direct edges {cfg.direct}):\n{s.to_string(index=False)}")
    elif cmd == "fsp":
        tab = fsp.run_fsp(cfg, out, data_dir, progress=progress)["taus"]
        if len(tab):
            print(tab[tab.target == "val_pgd_8.0_acc"].to_string(index=False))
    else:
        print(json.dumps(oneshot.run_search(cfg, out, data_dir, progress=progress), indent=1))
    return 0


def _bench(data_dir):
    from robntk.data.benchmark import RobBench

    return RobBench.load(data_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
