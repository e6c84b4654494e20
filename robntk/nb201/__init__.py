"""The NAS-Bench-201 search space and network: the 15,625 cells, their official index order and
isomorphism classes (:mod:`~robntk.nb201.searchspace`), the pure layers
(:mod:`~robntk.nb201.layers`) and the one TinyNetwork, for a fixed cell or a cell given as data
(:mod:`~robntk.nb201.network`).
"""
