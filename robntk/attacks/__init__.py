"""robntk.attacks."""
