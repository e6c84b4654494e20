"""robntk.nb201."""
