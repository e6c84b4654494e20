"""robntk.analysis."""
