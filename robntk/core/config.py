"""Field metadata that turns a configuration dataclass field into a command-line flag.

robntk's configurations are frozen dataclasses (library ones such as
:class:`robntk.scoring.config.ScoreConfig`, :class:`robntk.train.config.TrainConfig`,
:class:`robntk.scoring.engine.EngineOptions`, and one small options class per command in
:mod:`robntk.commands`). A field becomes a flag when its ``metadata`` is :func:`flag`'s dict; the
command layer (``robntk/commands/_flags.py``) generates the argparse flags from it, so every
default has one source: the dataclass. Validation stays in the dataclass (``__post_init__``).

Example::

    @dataclass(frozen=True)
    class Options:
        n_boot: int = field(default=200, metadata=flag("bootstrap resamples for the CIs"))
        eps: tuple[float, ...] = field(default=(8 / 255,), metadata=flag("radii, e.g. 8/255", parse=parse_eps))
"""

from __future__ import annotations

from typing import Any

#: Keys :func:`flag` accepts besides ``help`` (see :func:`flag`).
FLAG_KEYS: tuple[str, ...] = ("flag", "parse", "choices", "metavar", "nargs", "action", "show_default")
#: Values of the ``action`` key.
FLAG_ACTIONS: tuple[str, ...] = ("store_true", "store_false", "append")


def flag(help: str, **kw: Any) -> dict[str, Any]:
    """The ``metadata`` of a dataclass field that is a command-line flag.

    Args:
        help: the flag's help text (the generator appends ``(default: X)`` from the field's
            default unless the default is None, the flag is a switch, or ``show_default=False``).
        **kw: optional keys:

            * ``flag``: the spelling (default ``--field-name``); a name without a leading ``-``
              makes a positional argument.
            * ``parse``: parser of one value (e.g. :func:`robntk.core.registry.parse_eps`); its
              ValueError message reaches the user unchanged.
            * ``choices``: allowed values (after ``parse``).
            * ``metavar``: the value's name in ``--help`` (a tuple for ``nargs=2``).
            * ``nargs``: number of values (default: ``'+'`` for tuple fields, one otherwise).
            * ``action``: ``'store_true'`` / ``'store_false'`` (a switch that sets the field to
              True / False) or ``'append'`` (a repeatable flag collecting a tuple). Default for a
              bool field: ``store_true`` when its default is False, else ``--x/--no-x``.
            * ``show_default``: False hides the default in ``--help``.

    Returns:
        ``{'help': help, **kw}``.

    Raises:
        ValueError: an unknown key or action (names it and lists the allowed ones), or an
            empty help text.
    """
    if not isinstance(help, str) or not help.strip():
        raise ValueError(f"flag help must be a non-empty string, got {help!r}")
    bad = [k for k in kw if k not in FLAG_KEYS]
    if bad:
        raise ValueError(f"unknown flag metadata key(s) {bad}; allowed: {', '.join(FLAG_KEYS)}")
    if "action" in kw and kw["action"] not in FLAG_ACTIONS:
        raise ValueError(f"unknown flag action {kw['action']!r}; allowed: {', '.join(FLAG_ACTIONS)}")
    return {"help": help, **kw}
