"""RobNets (Guo et al., CVPR 2020) in robntk: search space (:mod:`~robntk.robnets.space`),
networks (:mod:`~robntk.robnets.network`), the configurations of every job
(:mod:`~robntk.robnets.config`), the findings on NAS-RobBench-201 (:mod:`~robntk.robnets.findings`,
:mod:`~robntk.robnets.fsp`), the one-shot search (:mod:`~robntk.robnets.oneshot`) and RobNet
training/evaluation (:mod:`~robntk.robnets.training`), on robntk's one training stack
(:mod:`robntk.train`) and job driver (:mod:`robntk.jobs`)."""
