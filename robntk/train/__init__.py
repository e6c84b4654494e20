"""robntk.train."""
