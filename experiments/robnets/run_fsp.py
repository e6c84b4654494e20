"""FSP-matrix loss per cell depth vs NAS-RobBench-201 (RobNets finding 3), reduced CPU configuration.

Run from the repository root (resumable: rows in fsp.csv are skipped):
    nice -n 10 python experiments/robnets/run_fsp.py   # or: robntk robnets fsp --out experiments/robnets/fsp
"""

import sys

from robntk.commands.robnets import main

if __name__ == "__main__":
    sys.exit(main(["fsp", "--out", "experiments/robnets/fsp"] + sys.argv[1:]))
