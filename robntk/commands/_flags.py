"""CLI flags generated from configuration dataclasses, so each default has one source (internal).

A dataclass field becomes a flag when its ``metadata`` comes from :func:`robntk.core.config.flag`
(a ``'help'`` entry; optional ``'flag'``, ``'parse'``, ``'choices'``, ``'metavar'``, ``'nargs'``,
``'action'``, ``'show_default'``). Tuple fields take one or more values (``nargs='+'``); a bool
field is a switch (``store_true``) when its default is False, else ``--x/--no-x``; a field
without a default is a required flag. The default shown in ``--help`` is the dataclass's.

Flags are parsed with ``default=argparse.SUPPRESS``: :func:`config_from_args` builds (and so
validates, in the dataclass's ``__post_init__``) the dataclass from the flags the command line
set, every other field keeping the dataclass default. One parser may carry the flags of several
dataclasses (a library configuration and the command's own options); field names shared by two
of them read the same flag.

Two checks hold for every command, whatever dataclass a flag belongs to (:func:`config_from_args`):
a seed flag (a field named in :data:`SEED_FIELDS`) must be at most 2**32 − 1
(:data:`robntk.core.registry.MAX_SEED`: larger seeds alias smaller ones in ``jax.random.PRNGKey``),
and a float flag must be finite (no ``nan`` / ``inf``); both errors name the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from robntk.core.registry import MAX_SEED, check_seed, format_eps, parse_eps

#: Field names that are seeds of a random generator in any configuration dataclass (checked
#: against [0, 2**32 − 1] by :func:`config_from_args`).
SEED_FIELDS: tuple[str, ...] = ("seed", "attack_seed", "split_seed", "init_seeds", "attack_seeds")


def _base_type(hint) -> tuple[type, bool]:
    """(element type, is_tuple) of a field's type hint (``int | None`` → int)."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is tuple:
        return (args[0] if args else str), True
    if args and origin is not None:  # Optional / Union
        return _base_type(args[0])
    return hint, False


def _arg_type(parse):
    """``parse`` as an argparse type whose ValueError message is kept (argparse would replace it
    with "invalid <name> value", losing e.g. the "did you mean 8/255?" hint)."""
    if parse in (int, float, str):
        return parse

    def conv(text):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    conv.__name__ = getattr(parse, "__name__", "value")
    return conv


def _show(value, parse) -> str:
    vals = value if isinstance(value, tuple) else (value,)
    text = " ".join(format_eps(v) if parse is parse_eps else str(v) for v in vals)
    return text.replace("%", "%%")  # argparse %-formats help strings


def _default(f: dataclasses.Field, defaults) -> Any:
    if defaults is not None:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def add_dataclass_flags(
    parser: argparse.ArgumentParser | Any,
    cls,
    defaults=None,
    exclude: Iterable[str] = (),
    include: Iterable[str] | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add one flag per documented field of dataclass ``cls`` (module docstring).

    Args:
        parser: an ``ArgumentParser`` or argument group.
        cls: a dataclass whose flag fields carry :func:`robntk.core.config.flag` metadata.
        defaults: an instance whose values are the defaults shown (default: the class defaults);
            pass the same instance to :func:`config_from_args`.
        exclude: field names to leave out. include: only these field names (None: all).
        helps: help texts replacing the field's own for this command (field name → text).
    """
    hints = typing.get_type_hints(cls)
    include = None if include is None else set(include)
    for f in dataclasses.fields(cls):
        md = f.metadata
        if f.name in exclude or "help" not in md or (include is not None and f.name not in include):
            continue
        default = _default(f, defaults)
        typ, is_tuple = _base_type(hints[f.name])
        parse = md.get("parse", typ if typ in (int, float, str) else str)
        name = md.get("flag", "--" + f.name.replace("_", "-"))
        help_ = (helps or {}).get(f.name, md["help"])
        action = md.get("action")
        if typ is bool and action is None:
            action = "store_true" if default is False else argparse.BooleanOptionalAction
        kw: dict[str, Any] = {}
        if action in ("store_true", "store_false"):
            kw["action"] = action
        else:
            if action is not None:
                kw["action"] = action
            if typ is not bool:
                kw["type"] = _arg_type(parse)
                if "nargs" in md or (is_tuple and action != "append"):
                    kw["nargs"] = md.get("nargs", "+")
                if "choices" in md:
                    kw["choices"] = tuple(md["choices"])
            if "metavar" in md:
                kw["metavar"] = md["metavar"]
            if md.get("show_default", True) and default not in (None, (), dataclasses.MISSING):
                help_ += f" (default: {_show(default, parse)})"
        kw["help"] = help_
        if not name.startswith("-"):  # positional: argparse takes its dest from the name
            parser.add_argument(f.name, **({"metavar": name} if name != f.name else {}), **kw)
            continue
        kw.update(dest=f.name, default=argparse.SUPPRESS)
        if default is dataclasses.MISSING:
            kw["required"] = True
        parser.add_argument(name, **kw)


def config_from_args(cls, args: argparse.Namespace, defaults=None, **overrides):
    """Instance of ``cls`` from ``defaults`` (or the class defaults) with the flags the command
    line set, then ``overrides``; list values become tuples.

    Besides the dataclass's own validation: a seed flag (:data:`SEED_FIELDS`) above 2**32 − 1 and
    a float flag that is not finite are refused, naming the flag.

    Raises:
        ValueError: a value the dataclass rejects (names it and what is allowed), a seed above
            2**32 − 1, a NaN or infinite float.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    from_flags = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in fields}
    for name, v in from_flags.items():  # before the dataclass: its own message would not name the flag
        if name in SEED_FIELDS:
            for s in v if isinstance(v, tuple) else (v,):
                if isinstance(s, int) and s > MAX_SEED:
                    check_seed(s, flag_name(fields[name]))
    given = {**from_flags, **overrides}
    cfg = dataclasses.replace(defaults, **given) if defaults is not None else cls(**given)
    for name, v in from_flags.items():  # after it: its own message for NaN (e.g. "in (0, 1)") comes first
        for x in v if isinstance(v, tuple) else (v,):
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"{flag_name(fields[name])} must be a finite number, got {x!r}")
    return cfg


def flag_name(f: dataclasses.Field) -> str:
    """The command-line spelling of dataclass field ``f`` (``--field-name`` unless its metadata
    says otherwise)."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))
