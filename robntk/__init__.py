"""robntk: training-free NTK scores for robust NAS on NAS-Bench-201 / NAS-RobBench-201 in JAX.

Data flows one way::

    searchspace → network → attacks → ntk → kernels → spectra → scoring → correlation / figures

See README.md for the command line (``robntk score | correlate | reproduce | ...``).
"""

__version__ = "0.1.0"
