"""robntk.scoring."""
