"""CLI flags generated from the library's frozen config dataclasses, so each default has one source.

A dataclass field becomes a flag when its ``metadata`` has a ``'help'`` entry; optional entries:
``'flag'`` (the spelling, default ``--field-name``), ``'parse'`` (the parser of one value, e.g.
:func:`robntk.core.registry.parse_eps`), ``'choices'``. Tuple fields take one or more values
(``nargs='+'``), bool fields get ``--x/--no-x``; the default shown in ``--help`` is the
dataclass's. :func:`config_from_args` builds (and so validates) the dataclass from the parsed
flags, overriding only what the command line set.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from robntk.core.registry import format_eps, parse_eps


def _base_type(hint) -> tuple[type, bool]:
    """(element type, is_tuple) of a field's type hint (``int | None`` → int)."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is tuple:
        return (args[0] if args else str), True
    if args and origin is not None and origin is not tuple:  # Optional / Union
        return _base_type(args[0])
    return hint, False


def _arg_type(parse):
    """``parse`` as an argparse type whose ValueError message is kept (argparse would replace it
    with "invalid <name> value", losing e.g. the "did you mean 8/255?" hint)."""
    def conv(text):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    conv.__name__ = getattr(parse, "__name__", "value")
    return conv


def _show(value, parse) -> str:
    if parse is parse_eps:
        vals = value if isinstance(value, tuple) else (value,)
        return " ".join(format_eps(v) for v in vals)
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls, defaults=None, exclude=()) -> None:
    """Add one flag per documented field of dataclass ``cls``.

    Args:
        parser: an ``ArgumentParser`` or argument group.
        cls: a dataclass whose fields carry ``metadata['help']``.
        defaults: an instance whose values are the defaults (default: the class defaults).
        exclude: field names to leave out.
    """
    hints = typing.get_type_hints(cls)
    base = defaults if defaults is not None else cls
    for f in dataclasses.fields(cls):
        md = f.metadata
        if f.name in exclude or "help" not in md:
            continue
        default = getattr(base, f.name) if defaults is not None else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        typ, is_tuple = _base_type(hints[f.name])
        parse = md.get("parse", typ if typ in (int, float, str) else str)
        flag = md.get("flag", "--" + f.name.replace("_", "-"))
        shown = "" if default is None else f" (default: {_show(default, parse)})"
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=md["help"] + shown)
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _arg_type(parse)
            if is_tuple:
                kw["nargs"] = "+"
            if "choices" in md:
                kw["choices"] = tuple(md["choices"])
        parser.add_argument(flag, **kw)


def config_from_args(cls, args: argparse.Namespace, defaults=None, **overrides):
    """Instance of ``cls`` from ``defaults`` (or the class defaults) with the flags the command
    line set, then ``overrides``.

    Raises:
        ValueError: a value the dataclass rejects (names it and what is allowed).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(args).items() if k in names}
    given.update(overrides)
    if defaults is not None:
        return dataclasses.replace(defaults, **given)
    return cls(**given)
