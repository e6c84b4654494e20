#!/bin/bash
# The one prepared device run of issue 10 ("GPU"): at most TOTAL seconds (default 540) on a lent
# GPU, in the default protocol of `robntk score` (train-mode BN, B=16, eps 8/255, PGD-5,
# beta 0.5, sum read-out, seed 0), one compile per BN mode (a persistent compilation cache lets
# step 3 reuse step 1's):
#   1. 200 sampled representatives, train-mode BN, into the store of the full table
#   2. the same 200, eval-mode BN (its own store)
#   3. as many of the 6,466 as the time left allows, train-mode BN, same store as 1 (resumes:
#      the 200 of step 1 are not scored again; a later run continues it)
#   4. pack the stores (step 3 exports every stored row; if it was killed, `robntk merge` does)
# Every step is bounded by `timeout` and `--time-budget`; a killed step loses only what it had not
# flushed (the store is crash-safe). Prepare here, then call the device tool once:
#   python experiments/gpu/make_pack.py --data-dir ../shared/data      # .gpu_pack/, 4.4 MB
#   run(command="bash experiments/gpu/run_h200.sh", carry=[".gpu_pack"], timeout_s=600)
# and commit what comes back under experiments/gpu/results/ with the device's log.
# CPU smoke test (a tiny network; same steps):
#   OUT=/tmp/gpu-smoke TOTAL=150 SAMPLE=4 EXTRA="--C 4 --N 1 --batch-size 16 --pgd-steps 1" \
#     bash experiments/gpu/run_h200.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu}
TOTAL=${TOTAL:-540}
SAMPLE=${SAMPLE:-200}
EXTRA=${EXTRA:-}
PY=${PYTHON:-python3}  # the device image has python3, not python
mkdir -p "$OUT"
export ROBNTK_DATA=${ROBNTK_DATA:-$PWD/.gpu_pack} PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/robntk-jax-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
LOG=$OUT/log.txt
T0=$SECONDS
left() { echo $(( TOTAL - (SECONDS - T0) )); }
step() {  # step NAME TIMEOUT_S ARGS...: one bounded `robntk score`, its output in the log
  local name=$1 limit=$2; shift 2
  if (( limit < 20 )); then echo "== $name: skipped ($limit s left)" >>"$LOG"; return; fi
  echo "== $name (timeout ${limit}s, at $(( SECONDS - T0 ))s): robntk score $* $EXTRA" >>"$LOG"
  timeout --signal=INT --kill-after=15 "$limit" "$PY" -m robntk.cli score --no-progress "$@" $EXTRA >>"$LOG" 2>&1
  echo "== $name: exit $? after $(( SECONDS - T0 ))s" >>"$LOG"
}
{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, jaxlib.__version__, jax.devices())" 2>&1; } >"$LOG"
step train200 $(( $(left) * 4 / 9 )) --sample "$SAMPLE" --seed 0 --store "$OUT/train.store" \
  --out "$OUT/train200.csv" --time-budget $(( TOTAL / 4 ))
step eval200 $(( $(left) * 2 / 5 )) --sample "$SAMPLE" --seed 0 --bn-mode eval --store "$OUT/eval.store" \
  --out "$OUT/eval200.csv" --time-budget $(( TOTAL / 9 ))
B3=$(( $(left) - 100 ))
step all $(( $(left) - 40 )) --all --store "$OUT/train.store" --out "$OUT/train_all.csv" --time-budget $(( B3 > 1 ? B3 : 1 ))
if [[ ! -f $OUT/train_all.csv ]]; then  # step 3 was killed before its export: export without compiling
  echo "== export by robntk merge" >>"$LOG"
  "$PY" -m robntk.cli merge "$OUT/train.store" --into /tmp/robntk-gpu-merged.store --out "$OUT/train_all.csv" \
    --allow-missing >>"$LOG" 2>&1
fi
tar czf "$OUT/stores.tgz" -C "$OUT" train.store eval.store 2>>"$LOG" && rm -rf "$OUT/train.store" "$OUT/eval.store"
echo "== done after $(( SECONDS - T0 ))s" >>"$LOG"
ls -la "$OUT" >>"$LOG"
