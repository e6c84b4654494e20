"""robntk.ntk."""
