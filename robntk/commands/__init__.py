"""Command-line commands of robntk (one module per command)."""
