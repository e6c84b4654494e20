#!/bin/sh
# Partial run, not a reproduction: PGD-AT of NB201 arch 2581 on the full CIFAR-10 training set
# (50,000 images of the bundle's JPEG copy) with NAS-RobBench-201's protocol (robntk train's
# defaults). Run from the repository root. Checkpoints are written at the end of every epoch only;
# re-running the same command resumes from the last one (from scratch, identically, if none).
set -e
DATA=${ROBNTK_DATA:-../shared/data}
RUN=runs/train_2581_partial
nice -n 19 python -m robntk.cli train --data-dir "$DATA" --arch 2581 --dataset cifar10 --method pgd --eps 8/255 \
    --epochs 50 --batch-size 256 --seed 0 --out "$RUN"
# once a checkpoint exists (>= 1 epoch):
python -m robntk.cli evaluate --data-dir "$DATA" --checkpoint "$RUN" --limit 1000 \
    --attacks clean,fgsm,pgd --eps 3/255 8/255 --out experiments/train_2581_partial/metrics.json
