"""The grid of the λ_min bound check: default and quick configurations, override merging and
type checking, range validation, and the architectures a configuration names.

:func:`robntk.theory.experiment.run_experiment` runs this grid; ``robntk bound --config``
overrides are type-checked by :func:`check_override` against :data:`DEFAULT_CONFIG`.
"""

from __future__ import annotations

import copy
from typing import Any

from robntk.ntk.kernels import check_beta
from robntk.theory.activations import ACTIVATIONS
from robntk.theory.adversary import check_rho
from robntk.theory.arch import ResCNN, ResFCN, check_depth, check_width, skip_pattern

#: Full configuration (≈ 2–4 minutes on a 2-core CPU, dominated by XLA compilation).
DEFAULT_CONFIG: dict[str, Any] = {
    "seeds": [0, 1, 2],
    "rhos": [0.1, 0.3, 0.6],
    "betas": [0.0, 0.25, 0.5, 0.75, 1.0],
    "attack_steps": 10,
    "attack_width": 256,
    "order": 64,
    "core_max_floats": 1 << 24,
    "fcn": {
        "n_points": 16,
        "in_dim": 32,
        "widths": [128, 512, 2048, 4096],
        "activations": list(ACTIVATIONS),
        "structures": [[1, "none"], [2, "none"], [2, "all"], [3, "none"], [3, "all"]],
        "mixed": [[["relu", "tanh", "gelu"], "all"], [["sigmoid", "swish", "leaky_relu"], "alternate"]],
    },
    "cnn": {
        "n_points": 8,
        "length": 8,
        "in_channels": 3,
        "widths": [32, 128, 256],
        "activations": ["relu", "tanh"],
        "depth": 2,
        "skips": ["none", "all"],
        "filter_sizes": [1, 3, 5],
    },
    "plot_structure": [2, "all"],
}

#: Small configuration for tests and smoke runs (≈ 10–20 s).
QUICK_CONFIG: dict[str, Any] = {
    "seeds": [0],
    "rhos": [0.3],
    "betas": [0.0, 0.5, 1.0],
    "attack_steps": 5,
    "attack_width": 64,
    "order": 48,
    "core_max_floats": 1 << 22,
    "fcn": {
        "n_points": 8,
        "in_dim": 16,
        "widths": [64, 256],
        "activations": ["relu", "tanh"],
        "structures": [[1, "none"], [2, "all"]],
        "mixed": [],
    },
    "cnn": {
        "n_points": 6,
        "length": 6,
        "in_channels": 3,
        "widths": [16],
        "activations": ["relu"],
        "depth": 2,
        "skips": ["all"],
        "filter_sizes": [3],
    },
    "plot_structure": [2, "all"],
}


def merge_config(base: dict, override: dict | None) -> dict:
    """Deep-merge ``override`` into a copy of ``base`` (dicts merge, other values replace).

    Raises:
        ValueError: an override key that ``base`` does not have (typo guard).
    """
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if k not in out:
            raise ValueError(f"unknown config key {k!r}; allowed: {', '.join(out)}")
        out[k] = merge_config(out[k], v) if isinstance(out[k], dict) and isinstance(v, dict) else v
    return out


#: Grid keys whose value may be null.
NULLABLE: tuple[str, ...] = ("attack_width",)
#: Top-level grid axes that must list at least one value.
NON_EMPTY: tuple[str, ...] = ("seeds", "rhos", "betas")


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "int" if isinstance(v, int) else "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(v), type(v).__name__)


def _check_value(v: Any, template: Any, name: str) -> None:
    """Raise ValueError unless ``v`` has the structure and types of ``template``."""
    if isinstance(template, dict):
        if not isinstance(v, dict):
            raise ValueError(f"config key {name!r} must be an object, got {_kind(v)} {v!r}")
        for k, sub in v.items():
            if k not in template:
                raise ValueError(f"unknown config key {name + '.' + k!r}; allowed: {', '.join(template)}")
            _check_value(sub, template[k], f"{name}.{k}")
    elif isinstance(template, list):
        if not isinstance(v, list):
            raise ValueError(f"config key {name!r} must be a list, got {_kind(v)} {v!r}")
        if len({_kind(t) for t in template}) > 1 and not isinstance(template[0], list):  # a record, e.g. [2, 'all']
            if len(v) != len(template):
                raise ValueError(f"config key {name!r} must be a list like {template!r}, got {v!r}")
            for i, (item, t) in enumerate(zip(v, template)):
                _check_value(item, t, f"{name}[{i}]")
        elif template:
            for i, item in enumerate(v):
                _check_value(item, template[0], f"{name}[{i}]")
    elif not (v is None and name.split(".")[-1] in NULLABLE):
        want, got = _kind(template), _kind(v)
        if got != want and not (want == "number" and got == "int"):
            raise ValueError(
                f"config key {name!r} must be {'an' if want[0] in 'aeiou' else 'a'} {want}, got {got} {v!r}"
            )


def check_override(override: Any, template: dict | None = None) -> dict:
    """Type-check a JSON override of the grid (``robntk bound --config``) against
    :data:`DEFAULT_CONFIG`: every key known, objects where the grid has objects, lists where it has
    lists (elements of the grid's element type; ``[depth, pattern]`` records positionally), ints /
    numbers / strings where it has them; seeds ≥ 0 and :data:`NON_EMPTY` lists non-empty. Range
    checks (β ∈ [0, 1], widths ≥ 1, known activations) are :func:`validate_config`'s.

    Args:
        override: the parsed JSON (dicts, lists, numbers, strings, null).
        template: the grid to check against (default :data:`DEFAULT_CONFIG`).

    Returns:
        ``override``.

    Raises:
        ValueError: naming the key, the expected type and the value.
    """
    template = DEFAULT_CONFIG if template is None else template
    if not isinstance(override, dict):
        raise ValueError(f"the configuration must be a JSON object, got {_kind(override)}")
    for k, v in override.items():
        if k not in template:
            raise ValueError(f"unknown config key {k!r}; allowed: {', '.join(template)}")
        _check_value(v, template[k], k)
    for k in NON_EMPTY:
        if k in override and not override[k]:
            raise ValueError(f"config key {k!r} must list at least one value")
    for s in override.get("seeds", []):
        if s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s}")
    return override


def validate_config(cfg: dict) -> dict:
    """Check ranges (β ∈ [0,1], ρ ∈ [0,2], widths ≥ 1, depth ≥ 1, known activations/patterns).

    Raises:
        ValueError: the first bad value, named.
    """
    for b in cfg["betas"]:
        check_beta(b)
    for r in cfg["rhos"]:
        check_rho(r)
    for w in cfg["fcn"]["widths"] + cfg["cnn"]["widths"]:
        check_width(w)
    if cfg["attack_width"] is not None:
        check_width(cfg["attack_width"])
    if not isinstance(cfg["attack_steps"], int) or cfg["attack_steps"] < 1:
        raise ValueError(f"attack_steps must be an integer >= 1, got {cfg['attack_steps']!r}")
    build_archs(cfg)  # validates activations, depths, skips, filter sizes
    return cfg


def build_archs(cfg: dict) -> list:
    """The architectures of a configuration: list of (arch, skip-pattern name).

    FCN: every activation × every (depth, skip pattern) of ``fcn.structures``, plus the
    mixed-activation nets of ``fcn.mixed``; CNN: activations × skip patterns × filter sizes.

    Raises:
        ValueError: unknown activation or skip pattern, depth < 1, bad filter size.
    """
    out = []
    fc = cfg["fcn"]
    for act in fc["activations"]:
        for depth, pattern in fc["structures"]:
            depth = check_depth(depth)
            out.append((ResFCN((act,) * depth, skip_pattern(pattern, depth), in_dim=fc["in_dim"]), pattern))
    for acts, pattern in fc["mixed"]:
        out.append((ResFCN(tuple(acts), skip_pattern(pattern, len(acts)), in_dim=fc["in_dim"]), pattern))
    cn = cfg["cnn"]
    depth = check_depth(cn["depth"])
    for act in cn["activations"]:
        for pattern in cn["skips"]:
            for k in cn["filter_sizes"]:
                arch = ResCNN(
                    (act,) * depth,
                    skip_pattern(pattern, depth),
                    filter_sizes=k,
                    in_channels=cn["in_channels"],
                    length=cn["length"],
                )
                out.append((arch, pattern))
    return out
