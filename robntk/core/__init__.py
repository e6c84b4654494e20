"""robntk.core."""
