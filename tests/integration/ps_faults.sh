#!/usr/bin/env bash
# Faults around a ps (ps_only.lua) and its workers (ps_faults_worker.lua):
#  - a worker started before its ps waits for it with backoff;
#  - a ps killed with SIGKILL and restarted resumes from its newest
#    checkpoint, and the worker reconnects and re-sends what was in flight;
#  - a push re-sent to a restarted ps whose checkpoint already holds it is
#    a duplicate, not applied twice;
#  - without reconnect_timeout a lost ps is an error naming it;
#  - in sync mode a worker that dies is dropped after sync_timeout and the
#    other one finishes; SIGTERM then stops the ps with exit 0;
#  - a half-open connection (every packet dropped, no FIN: a node gone) is
#    noticed on both sides within keepalive seconds, and the worker goes on
#    once the network is back (in a private network namespace, iptables).
#   tests/integration/ps_faults.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration

# ---- a ps restarted from its checkpoint -----------------------------------------
PORT=$(free_port)
CK=$SCRATCH/ck
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT steps=60 sleep=0.05 reconnect=20 \
  >"$SCRATCH/w.log" 2>&1 &
W=$!
# the ps starts once the worker has found it missing
check "the worker waits for a ps that is not up yet" wait_for_log "$SCRATCH/w.log" \
  "waiting for ps 0 at 127.0.0.1:$PORT \(connection refused\), retry in"
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps1.log" 2>&1 &
PS=$!
check "the ps checkpoints step 15" wait_for_log "$SCRATCH/ps1.log" 'checkpoint at step 15:'
kill -9 $PS; wait $PS 2>/dev/null
# restarted once the worker has seen it go
check "the worker loses the killed ps" wait_for_log "$SCRATCH/w.log" \
  "lost ps 0 at 127.0.0.1:$PORT .*reconnecting for up to 20 s"
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps2.log" 2>&1 &
PS=$!
wait_for_exit $W 60
check "the worker survives the ps restart (exit $RC)" test "$RC" -eq 0
wait_for_exit $PS 10
check "the restarted ps exits 0 (exit $RC)" test "$RC" -eq 0
check "the worker reconnected" log_has "$SCRATCH/w.log" "lost ps 0 at 127.0.0.1:$PORT .*reconnecting for up to 20 s"
check "the worker says it reconnected" log_has "$SCRATCH/w.log" "reconnected to ps 0 at 127.0.0.1:$PORT \(step [1-5][0-9]\)"
check "the ps restored its newest checkpoint" log_has "$SCRATCH/ps2.log" "ps 0: restored step ([1-5][0-9]) from $CK/ckpt-000000\1-ps0-of-1.safetensors"
check "the parameters match the global step after the restart" log_has "$SCRATCH/w.log" \
  'worker 0: finished at global step (5[0-9]|60), max deviation 0\.00'
if [ "$FAILED" -ne 0 ]; then tail -n 30 "$SCRATCH/w.log" "$SCRATCH/ps1.log" "$SCRATCH/ps2.log"; fi

# ---- a push re-sent to a restarted ps whose checkpoint already holds it ------------------
# The ps applies a push and checkpoints (checkpoint_steps=1), then dies before
# the worker has its reply; the worker re-sends it (same request id and step
# tag) to the restarted ps. The checkpoint keeps each worker's latest push,
# so the gradient is not applied a second time. (resend_push.py plays the
# worker's client; sgd, lr 0.1, a gradient of ones.)
PORT=$(free_port)
CK=$SCRATCH/ck-resend
SUM=00000000c0ffee00
ps_resend() { "$DTF" run "$HERE/ps_only.lua" -- "$PORT" P=100 checkpoint_dir="$CK" checkpoint_steps=1 >"$SCRATCH/$1" 2>&1 & PS=$!; }
ps_resend rs1.log
check "the ps is up" wait_for_log "$SCRATCH/rs1.log" 'serving parameters'
R1=$(python3 "$HERE/resend_push.py" "$PORT" 100 $SUM 7 0 2>&1)
check "the first push is applied ($R1)" test "$R1" = "reply aux=0 step=1"
check "the ps checkpoints the push" wait_for_log "$SCRATCH/rs1.log" 'checkpoint at step 1:'
kill -9 $PS; wait $PS 2>/dev/null
ps_resend rs2.log
check "the ps is up again" wait_for_log "$SCRATCH/rs2.log" 'serving parameters'
check "the restarted ps restored step 1" log_has "$SCRATCH/rs2.log" "ps 0: restored step 1 from $CK/"
R2=$(python3 "$HERE/resend_push.py" "$PORT" 100 $SUM 7 0 2>&1)
check "the same push re-sent is a duplicate, not applied again ($R2)" test "$R2" = "reply aux=3 step=1"
R3=$(python3 "$HERE/resend_push.py" "$PORT" 100 $SUM 8 1 2>&1)
check "the next push is applied ($R3)" test "$R3" = "reply aux=0 step=2"
kill -TERM $PS
wait_for_exit $PS 10
check "SIGTERM stops the ps (exit $RC)" test "$RC" -eq 0
check "the ps counted one duplicate" log_has "$SCRATCH/rs2.log" '^stat duplicates=1$'
cat >"$SCRATCH/rs_check.lua" <<EOF
local params, c = assert(require('dtf.ps').merge_checkpoints('$CK'))
print(string.format('checkpoint step %d, parameter 2 = %.4f', c.step, params[2]))
os.exit(c.step == 2 and math.abs(params[2] - 0.8) < 1e-6 and 0 or 1)
EOF
check "its last checkpoint: parameter 2 moved by two updates, not three (1 - 2 x 0.1)" \
  "$DTF" run "$SCRATCH/rs_check.lua"
if [ "$FAILED" -ne 0 ]; then tail -n 20 "$SCRATCH/rs1.log" "$SCRATCH/rs2.log"; fi

# ---- no reconnect: the error names the ps ---------------------------------------------
PORT=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" >"$SCRATCH/ps3.log" 2>&1 &
PS=$!
check "the ps is up" wait_for_log "$SCRATCH/ps3.log" 'serving parameters'
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT steps=200 sleep=0.02 progress=true \
  >"$SCRATCH/w3.log" 2>&1 &
W=$!
# killed mid-training: once the worker is 10 steps in
check "the worker trains" wait_for_log "$SCRATCH/w3.log" 'worker 0: at global step 10$'
kill -9 $PS; wait $PS 2>/dev/null
wait_for_exit $W 20
check "a lost ps fails the call (exit $RC)" test "$RC" -eq 4
check "the error names the ps" log_has "$SCRATCH/w3.log" \
  "worker: error: ps 0 at 127.0.0.1:$PORT: connection (closed|lost \\((broken pipe|connection reset by peer)\\))"

# ---- sync: a dead worker is dropped after sync_timeout --------------------------------
PORT=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" workers=2 sync=true sync_timeout=1 >"$SCRATCH/ps4.log" 2>&1 &
PS=$!
check "the ps is up" wait_for_log "$SCRATCH/ps4.log" 'serving parameters'
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT index=1 steps=20 die_after=3 >"$SCRATCH/w1.log" 2>&1 &
W1=$!
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT index=0 steps=20 >"$SCRATCH/w0.log" 2>&1 &
W0=$!
wait_for_exit $W1 20
check "worker 1 dies after 3 steps (exit $RC)" test "$RC" -eq 3
wait_for_exit $W0 30
check "worker 0 finishes without it (exit $RC)" test "$RC" -eq 0
check "worker 0 ends at global step 20" log_has "$SCRATCH/w0.log" 'worker 0: finished at global step 20,'
check "the ps drops the dead worker" log_has "$SCRATCH/ps4.log" \
  'ps 0: step 3 waited [0-9]+ s \(sync_timeout\) for worker 1; dropping it from the replicas'
kill -TERM $PS
wait_for_exit $PS 10
check "SIGTERM stops the ps with exit 0 (exit $RC)" test "$RC" -eq 0
check "the ps says why it stopped" log_has "$SCRATCH/ps4.log" 'caught SIGTERM; stopping at step 20'
check "its stats say so" log_has "$SCRATCH/ps4.log" 'stat reason=signal'
if [ "$FAILED" -ne 0 ]; then tail -n 30 "$SCRATCH/w0.log" "$SCRATCH/w1.log" "$SCRATCH/ps4.log"; fi
# ---- a half-open connection ---------------------------------------------------------
# Inside a network namespace of its own, so the iptables rules touch nothing
# else: the ps and a worker with keepalive=4; once training runs, every
# packet of the connection is dropped; both sides must notice within a few
# keepalive periods; then the packets flow again and the worker finishes.
half_open() { # DTF HERE DIR PORT
  local dtf=$1 here=$2 d=$3 port=$4
  ip link set lo up || return 1
  "$dtf" run "$here/ps_only.lua" -- "$port" keepalive=4 >"$d/ho-ps.log" 2>&1 &
  local ps=$!
  "$dtf" run "$here/ps_faults_worker.lua" -- ps=127.0.0.1:$port steps=150 sleep=0.05 reconnect=30 \
    keepalive=4 timeout=60 progress=true >"$d/ho-w.log" 2>&1 &
  local w=$!
  # the packets are dropped once training runs: 20 steps in
  wait_for_log "$d/ho-w.log" 'worker 0: at global step 20$' 60
  iptables -A INPUT -p tcp --dport "$port" -j DROP && iptables -A INPUT -p tcp --sport "$port" -j DROP || return 1
  local t0=$(date +%s.%N) t1
  both_noticed() { log_has "$d/ho-ps.log" 'Connection timed out' && log_has "$d/ho-w.log" 'lost ps 0'; }
  wait_until 30 both_noticed
  t1=$(date +%s.%N)
  awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.1f\n", a - b }' >"$d/ho-detect"
  iptables -D INPUT -p tcp --dport "$port" -j DROP; iptables -D INPUT -p tcp --sport "$port" -j DROP
  wait_for_exit $w 60; echo $RC >"$d/ho-w.rc"
  wait_for_exit $ps 10; echo $RC >"$d/ho-ps.rc"
}
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v iptables >/dev/null &&
   unshare -n true 2>/dev/null; then
  unshare -n bash -c "$(declare -f half_open wait_until now_us log_has wait_for_log exited wait_for_exit); half_open '$DTF' '$HERE' '$SCRATCH' 41234" >"$SCRATCH/ho.out" 2>&1
  DETECT=$(cat "$SCRATCH/ho-detect" 2>/dev/null)
  echo "half-open connection noticed after ${DETECT:-?} s (keepalive=4)"
  check "the ps drops the vanished worker (keepalive)" log_has "$SCRATCH/ho-ps.log" \
    'closed connection from worker 0 \(127\.0\.0\.1:[0-9]+\): connection error \(Connection timed out\)'
  check "the worker notices the vanished ps (TCP_USER_TIMEOUT or keepalive)" log_has "$SCRATCH/ho-w.log" \
    'lost ps 0 at 127\.0\.0\.1:41234 \(connection lost \(connection timed out\)\); reconnecting'
  check "both within 3 keepalive periods (${DETECT:-?} s <= 12)" awk -v t="${DETECT:-99}" 'BEGIN { exit !(t <= 12) }'
  check "the worker reconnects once the network is back and finishes (exit $(cat "$SCRATCH/ho-w.rc" 2>/dev/null))" \
    test "$(cat "$SCRATCH/ho-w.rc" 2>/dev/null)" = 0
  # 150 pushes: none lost, none applied twice (a push re-sent after its
  # reply was lost is known by its id)
  check "every push applied once (global step 150, parameters to match)" log_has "$SCRATCH/ho-w.log" \
    'worker 0: finished at global step 150, max deviation 0\.00'
  check "the ps exits 0" test "$(cat "$SCRATCH/ho-ps.rc" 2>/dev/null)" = 0
  if [ "$FAILED" -ne 0 ]; then cat "$SCRATCH/ho.out"; tail -n 20 "$SCRATCH/ho-ps.log" "$SCRATCH/ho-w.log"; fi
else
  echo "skip half-open connection: needs root, unshare -n and iptables"
fi
finish
