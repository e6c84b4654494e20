"""The command layer: one module per ``robntk`` command, each with ``add_arguments(parser)`` and
``run(args) -> int``. Commands parse flags (generated from the library's config dataclasses by
:mod:`robntk.commands.flags`), check outputs up front, call the library and print; nothing below
this package sees an argparse namespace."""
