"""Command layer: one module per `robntk <name>` command (add_arguments / run)."""
