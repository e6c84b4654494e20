"""RobNets (Guo et al., CVPR 2020) in robntk: search space, networks, findings, one-shot search."""
