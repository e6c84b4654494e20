"""CLI commands (one module per command, wired into ``robntk <name>`` by robntk/cli.py)."""
