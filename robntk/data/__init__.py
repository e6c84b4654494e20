"""Data readers: CIFAR-10/100 and ImageNet16-120 images (:mod:`~robntk.data.datasets`,
:mod:`~robntk.data.readers`), the NAS-RobBench-201 benchmark and NB201's clean accuracies
(:mod:`~robntk.data.benchmark`), Jung et al.'s robustness of standard-trained NB201 networks
(:mod:`~robntk.data.jung`) and NAS-Bench-Suite-Zero's proxy values (:mod:`~robntk.data.suite_zero`).
"""
