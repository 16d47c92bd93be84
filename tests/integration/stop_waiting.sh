#!/usr/bin/env bash
# tests/integration/stop_waiting.sh BUILD_DIR: a worker asked to stop while it
# waits for a lost ps stops at once. A pod is deleted (SIGTERM) while its ps
# is down: before, the worker kept reconnecting for reconnect_timeout (120 s
# here) and the kubelet killed it after its 30 s grace; now its wait ends on
# the signal, it exits 128 + 15 with one line, and says nothing of done.
. "$(dirname "$0")/testlib.bash"

PS_PORT=$(free_port) W_PORT=$(free_port)
common=(--ps=127.0.0.1:$PS_PORT --workers=127.0.0.1:$W_PORT --set trainsteps=0
        --set evaluate=false --set tensorboard=false --set progress=false)
"$DTF" run train.lua --role=ps --index=0 "${common[@]}" --set logdir="$SCRATCH/ps" \
  >"$SCRATCH/ps.out" 2>&1 &
ps_pid=$!
"$DTF" run train.lua --role=worker --index=0 "${common[@]}" --set logdir="$SCRATCH/w" \
  --set reconnect_timeout=120 >"$SCRATCH/w.out" 2>&1 &
w_pid=$!
SHOW_ON_FAIL=$SCRATCH/w.out

check "the worker trains (trainsteps=0: until stopped)" \
  wait_for_log "$SCRATCH/w.out" 'Worker 0: training step 200 done' 60
kill -9 "$ps_pid"
wait "$ps_pid" 2>/dev/null
check "it notices its ps is gone and reconnects (for up to 120 s)" \
  wait_for_log "$SCRATCH/w.out" 'lost ps 0 .*reconnecting for up to 120 s' 30
t0=$SECONDS
kill -TERM "$w_pid"
wait_for_exit "$w_pid" 20
check "SIGTERM during the reconnect wait: exit 143 within 20 s, not after 120 s (exit $RC after $((SECONDS - t0)) s)" \
  test "$RC" -eq 143
check "one line says why" log_has "$SCRATCH/w.out" 'worker 0 stopped by SIGTERM while it waited for the ps tasks'
check "without a traceback" bash -c "! grep -q 'stack traceback' '$SCRATCH/w.out'"
finish
