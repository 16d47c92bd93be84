#!/usr/bin/env bash
# Faults around a ps (ps_only.lua) and its workers (ps_faults_worker.lua):
#  - a worker started before its ps waits for it with backoff;
#  - a ps killed with SIGKILL and restarted resumes from its newest
#    checkpoint, and the worker reconnects and re-sends what was in flight;
#  - without reconnect_timeout a lost ps is an error naming it;
#  - in sync mode a worker that dies is dropped after sync_timeout and the
#    other one finishes; SIGTERM then stops the ps with exit 0.
#   tests/integration/ps_faults.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_log() { # file pattern
  for _ in $(seq 100); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
wait_exit() { # pid seconds -> sets RC (124 when still running)
  local pid=$1 n=$(($2 * 10))
  for _ in $(seq $n); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then RC=124; kill "$pid"; wait "$pid"; else wait "$pid"; RC=$?; fi
}
has() { grep -qE -- "$2" "$1"; }

# ---- a ps restarted from its checkpoint -----------------------------------------
PORT=$(free_port)
CK=$SCRATCH/ck
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT steps=60 sleep=0.05 reconnect=20 \
  >"$SCRATCH/w.log" 2>&1 &
W=$!
sleep 0.7
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps1.log" 2>&1 &
PS=$!
check "the worker waits for a ps that is not up yet" wait_log "$SCRATCH/w.log" \
  "waiting for ps 0 at 127.0.0.1:$PORT \(connection refused\), retry in"
wait_log "$SCRATCH/ps1.log" 'checkpoint at step 15:' || true
kill -9 $PS; wait $PS 2>/dev/null
sleep 0.5
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps2.log" 2>&1 &
PS=$!
wait_exit $W 60
check "the worker survives the ps restart (exit $RC)" test "$RC" -eq 0
wait_exit $PS 10
check "the restarted ps exits 0 (exit $RC)" test "$RC" -eq 0
check "the worker reconnected" has "$SCRATCH/w.log" "lost ps 0 at 127.0.0.1:$PORT .*reconnecting for up to 20 s"
check "the worker says it reconnected" has "$SCRATCH/w.log" "reconnected to ps 0 at 127.0.0.1:$PORT \(step [1-5][0-9]\)"
check "the ps restored its newest checkpoint" has "$SCRATCH/ps2.log" "ps 0: restored step ([1-5][0-9]) from $CK/ckpt-000000\1-ps0.safetensors"
check "the parameters match the global step after the restart" has "$SCRATCH/w.log" \
  'worker 0: finished at global step (5[0-9]|60), max deviation 0\.00'
if [ "$FAILED" -ne 0 ]; then tail -n 30 "$SCRATCH/w.log" "$SCRATCH/ps1.log" "$SCRATCH/ps2.log"; fi

# ---- no reconnect: the error names the ps ---------------------------------------------
PORT=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" >"$SCRATCH/ps3.log" 2>&1 &
PS=$!
wait_log "$SCRATCH/ps3.log" 'serving parameters' || true
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT steps=200 sleep=0.02 >"$SCRATCH/w3.log" 2>&1 &
W=$!
wait_log "$SCRATCH/ps3.log" 'joined' || true
sleep 0.3
kill -9 $PS; wait $PS 2>/dev/null
wait_exit $W 20
check "a lost ps fails the call (exit $RC)" test "$RC" -eq 4
check "the error names the ps" has "$SCRATCH/w3.log" \
  "worker: error: ps 0 at 127.0.0.1:$PORT: connection (closed|lost \\((broken pipe|connection reset by peer)\\))"

# ---- sync: a dead worker is dropped after sync_timeout --------------------------------
PORT=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" workers=2 sync=true sync_timeout=1 >"$SCRATCH/ps4.log" 2>&1 &
PS=$!
wait_log "$SCRATCH/ps4.log" 'serving parameters' || true
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT index=1 steps=20 die_after=3 >"$SCRATCH/w1.log" 2>&1 &
W1=$!
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT index=0 steps=20 >"$SCRATCH/w0.log" 2>&1 &
W0=$!
wait_exit $W1 20
check "worker 1 dies after 3 steps (exit $RC)" test "$RC" -eq 3
wait_exit $W0 30
check "worker 0 finishes without it (exit $RC)" test "$RC" -eq 0
check "worker 0 ends at global step 20" has "$SCRATCH/w0.log" 'worker 0: finished at global step 20,'
check "the ps drops the dead worker" has "$SCRATCH/ps4.log" \
  'ps 0: step 3 waited [0-9]+ s \(sync_timeout\) for worker 1; dropping it from the replicas'
kill -TERM $PS
wait_exit $PS 10
check "SIGTERM stops the ps with exit 0 (exit $RC)" test "$RC" -eq 0
check "the ps says why it stopped" has "$SCRATCH/ps4.log" 'caught SIGTERM; stopping at step 20'
check "its stats say so" has "$SCRATCH/ps4.log" 'stat reason=signal'
if [ "$FAILED" -ne 0 ]; then tail -n 30 "$SCRATCH/w0.log" "$SCRATCH/w1.log" "$SCRATCH/ps4.log"; fi
finish
