"""Adversarial training and evaluation of NB201 networks as NAS-RobBench-201 did: the run
configuration (:mod:`~robntk.train.config`), SGD with the OneCycle schedule
(:mod:`~robntk.train.optim`), the resumable run directory with orbax checkpoints
(:mod:`~robntk.train.rundir`), the one train step shared with RobNets (:mod:`~robntk.train.step`),
the training loop (:mod:`~robntk.train.loop`) and the robustness
evaluation (:mod:`~robntk.train.evaluation`).
"""
