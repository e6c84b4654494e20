"""NTK scores of NB201 architectures at benchmark scale: the one scoring protocol
(:class:`~robntk.scoring.config.ScoreConfig`, the defaults shared by ``robntk score``,
``robntk reproduce``, ``robntk proxies`` and the Python API) and the engine that compiles one
kernel function per configuration and runs every architecture through it into a resumable store
(:mod:`~robntk.scoring.engine`; :mod:`~robntk.scoring.runner` drives it over a list of archs).
"""
