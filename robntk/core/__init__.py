"""Utilities every layer may use, with no robntk imports of their own: dataset facts, names and
the ε parser (:mod:`~robntk.core.registry`), the data directory and atomic file writes
(:mod:`~robntk.core.paths`), the one writer of tables and JSON files (:mod:`~robntk.core.tables`)
and the shared plotting helpers (:mod:`~robntk.core.figures`).
"""
