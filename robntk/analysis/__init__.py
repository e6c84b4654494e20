"""Analyses over the benchmark: rank correlations with bootstrap CIs
(:mod:`~robntk.analysis.correlation`), score combinations (:mod:`~robntk.analysis.combine`),
search on the benchmark (:mod:`~robntk.analysis.search`) and the benchmark report
(:mod:`~robntk.analysis.report`, its figures and writer).
"""
