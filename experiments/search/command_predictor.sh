#!/bin/sh
# Predictor-guided search against the other methods (run from the repository root, robntk installed
# with scikit-learn). Features: the 13 NAS-Bench-Suite-Zero proxies (percentile ranks) + one-hot +
# GRAF encodings; warm start: the 10 classes with the most parameters (the tf:params order).
set -e
export ROBNTK_DATA=${ROBNTK_DATA:-../shared/data}
robntk search --methods random rea ls tf predictor --criteria robust --budget 300 --seeds 100 --seed 0 \
  --scores suite_zero --score params synflow 'vote(synflow,jacov,snip)' --warm-start params \
  --threshold 0.478 0.477 --out experiments/search/predictor --no-progress
