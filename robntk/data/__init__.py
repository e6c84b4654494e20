"""robntk.data."""
