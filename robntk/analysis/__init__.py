"""Analyses over the benchmark: rank correlations with bootstrap CIs
(:mod:`~robntk.analysis.correlation`); zero-shot score combinations
(:mod:`~robntk.analysis.combine`) and learned ones with their evaluation
(:mod:`~robntk.analysis.combine_fit`); label-free cell features (:mod:`~robntk.analysis.cell_features`),
few-shot predictors (:mod:`~robntk.analysis.predictors`) and their evaluation protocol
(:mod:`~robntk.analysis.predictor_eval`); search on the benchmark (:mod:`~robntk.analysis.search`)
and its curves (:mod:`~robntk.analysis.search_curves`); the benchmark report
(:mod:`~robntk.analysis.report`, its figures and writer).
"""
