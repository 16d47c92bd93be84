#!/usr/bin/env bash
# A task's /metrics endpoint under attack (metrics_hostile.py): other
# methods and paths, garbage, oversized request lines, headers and bodies,
# pipelining, connection churn, and a flood of trickling peers four times
# the connection cap. Each must get its own answer or lose its own
# connection while the endpoint keeps serving; the training it watches goes
# on, its memory stays bounded, and it still exits normally.
#   tests/integration/metrics_hostile.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"
cd "$ROOT"

PORT=$(free_port)
"$DTF" run train.lua --set trainsteps=0 --set logevery=1000 --set metrics_port="$PORT" \
  --set logdir="$SCRATCH/log" >"$SCRATCH/train.log" 2>&1 &
PID=$!
for _ in $(seq 600); do grep -q 'training step' "$SCRATCH/train.log" && break; sleep 0.1; done
check "the training serves its metrics on port $PORT" \
  grep -q "metrics at http://localhost:$PORT/metrics" "$SCRATCH/train.log"
steps() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "dtf_worker_steps_total" { print $2 }'; }
kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status"; }
S0=$(steps)
RSS0=$(kb)

python3 "$ROOT/tests/integration/metrics_hostile.py" "$PORT" 32 >"$SCRATCH/hostile.out" 2>&1
while read -r line; do
  case $line in
    "ok "*) pass "${line#ok }" ;;
    "not ok "*) fail "${line#not ok }" ;;
    "metrics_hostile: "*) ;;
    *) echo "$line" ;;
  esac
done <"$SCRATCH/hostile.out"

S1=$(steps)
RSS1=$(kb)
check "the training went on through it (steps $S0 -> $S1)" ge "${S1:-0}" "$((${S0:-0} + 100))"
echo "resident memory: $RSS0 kB before, $RSS1 kB after"
check "its memory stayed bounded (+$((RSS1 - RSS0)) kB)" test $((RSS1 - RSS0)) -lt 30000
check "the process is alive" kill -0 $PID
kill -TERM $PID
wait $PID
rc=$?
check "it ends on SIGTERM like any training (exit $rc)" test $rc -eq 143
finish
