"""The command layer: one module per ``robntk`` command, each with ``add_arguments(parser)`` and
``run(args) -> int``. Commands parse flags (generated from configuration dataclasses by the
internal :mod:`robntk.commands._flags`: the library's configurations and one small options class
per command), check outputs up front, call the library and print; nothing below this package sees
an argparse namespace. Commands never import each other: what several share lives in the internal
:mod:`robntk.commands._common` or in the library."""
