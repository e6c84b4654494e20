#!/bin/bash
# The prepared device run of issue 27 (part 2: every proxy on all 6,466 representatives): at most
# TOTAL seconds (default 540) of `robntk proxies` on a lent GPU, continuing the committed
# resumable store experiments/proxies_modern/store (a copy in $OUT; archs already stored are
# skipped), in the order of the background CPU run (archs_shuffled.txt, so what is scored at
# any time is a uniform random sample). Steps, each bounded by `timeout` and `--minutes`:
#   1. the cheap proxies the CPU run had not finished (AZ-NAS, MeCo, SWAP, flops) and ZCPRob's terms
#   2. VKDNW (with jacov: VKDNW_agg)                       (≈ 12-15 s/arch on this 2-core CPU)
#   3. the PGD-input variants of MeCo and SWAP              (≈ 25 s/arch on this CPU)
#   4. pack the store into $OUT/proxy_store.tgz
# Prepare here, then call the device tool once:
#   python experiments/gpu/make_pack.py --data-dir ../shared/data      # .gpu_pack/, 4.4 MB
#   run(command="bash experiments/gpu/run_proxies.sh", carry=[".gpu_pack"], timeout_s=600)
# then merge what comes back (the store's part files have unique names, so unpacking over the
# committed store is a union; `robntk proxies` re-reads it):
#   tar xzf <files_at>/proxy_store.tgz -C experiments/proxies_modern
# CPU smoke test (three archs, a tiny network, an empty store; ≈ 5 min on 2 cores):
#   mkdir -p /tmp/empty-store && OUT=/tmp/proxy-smoke TOTAL=600 ARCHS=<file with 3 indices> \
#     SRC=/tmp/empty-store EXTRA="--C 4 --N 1" bash experiments/gpu/run_proxies.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu_proxies}
TOTAL=${TOTAL:-540}
ARCHS=${ARCHS:-experiments/proxies_modern/archs_shuffled.txt}
SRC=${SRC:-experiments/proxies_modern/store}
EXTRA=${EXTRA:-}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export ROBNTK_DATA=${ROBNTK_DATA:-$PWD/.gpu_pack} PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOG=$OUT/log.txt
T0=$SECONDS
left() { echo $(( TOTAL - (SECONDS - T0) )); }
rm -rf "$OUT/store" && cp -r "$SRC" "$OUT/store"
step() {  # step NAME TIMEOUT_S PROXY...: one bounded `robntk proxies` into the copied store
  local name=$1 limit=$2; shift 2
  if (( limit < 30 )); then echo "== $name: skipped ($limit s left)" >>"$LOG"; return; fi
  echo "== $name (timeout ${limit}s, at $(( SECONDS - T0 ))s): $* $EXTRA" >>"$LOG"
  timeout --signal=INT --kill-after=15 "$limit" "$PY" -m robntk.cli proxies --no-progress \
    --archs-file "$ARCHS" --proxies "$@" --store "$OUT/store" --out "$OUT/$name.csv" \
    --minutes "$(awk "BEGIN{print ($limit - 25) / 60}")" $EXTRA >>"$LOG" 2>&1
  echo "== $name: exit $? after $(( SECONDS - T0 ))s" >>"$LOG"
}
{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1
  "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1; } >"$LOG"
step cheap $(( $(left) / 3 )) az_expressivity az_progressivity az_trainability meco swap vkdnw_dim flops \
  zcprob_ntk zcprob_curv
step vkdnw $(( $(left) / 2 )) vkdnw jacov
step pgd $(( $(left) - 30 )) meco_pgd swap_pgd
tar czf "$OUT/proxy_store.tgz" -C "$OUT" store 2>>"$LOG" && rm -rf "$OUT/store"
echo "== done after $(( SECONDS - T0 ))s" >>"$LOG"
ls -la "$OUT" >>"$LOG"
