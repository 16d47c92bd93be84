#!/usr/bin/env bash
# Faults during real training (train.lua on Fashion-MNIST, 2 ps + 2 workers),
# each made with kill -9 on a real process:
#  1. a ps killed mid-run (dtf local restarts it): training completes, the
#     test accuracy is within 0.02 of the same run uninterrupted (sync mode:
#     deterministic), the ps logs the step it resumed from, and no worker's
#     global step goes back by more than the checkpoint interval;
#  2. a worker killed, async and sync (dtf local restarts it): training
#     completes within a time limit; sync without a restart: the ps drops
#     the dead worker after sync_timeout, the other finishes, and the worker
#     restarted after the end joins and ends the job;
#  3. a ps killed while it writes a checkpoint (stopped with SIGSTOP while
#     its temporary file exists, then SIGKILLed): the previous checkpoint
#     loads (dtf export of the directory as it was), the restarted ps resumes
#     from it and removes the temporary file;
#  4. workers started before the ps tasks, which start once the workers
#     have backed off to 3.2 s between retries (about 3 s later): they wait
#     with backoff, training completes;
#  5. dtf export of a run's checkpoints, loaded with nn's Sequential:load:
#     the same test accuracy as the run's.
#   tests/integration/faults.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
LIMIT=${FAULTS_LIMIT:-240}   # s any one run may take before it counts as hung

# ---- helpers ------------------------------------------------------------------------

# start_local NAME ARGS...: dtf local train.lua in the background, output in
# $SCRATCH/NAME.out, logdir $SCRATCH/NAME; its pid in LPID
start_local() {
  local name=$1; shift
  "$DTF" local train.lua --ps=2 --workers=2 --set logdir="$SCRATCH/$name" "$@" >"$SCRATCH/$name.out" 2>&1 &
  LPID=$!
}
# task_pid NAME ROLE INDEX: the pid of a task of run NAME (its logdir is unique)
task_pid() { pgrep -f -- "--role=$2 --index=$3 .*logdir=$SCRATCH/$1( |\$)" | head -n 1; }
acc_in() { sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p' "$1" | tail -n 1; }
within() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { x = a - b; if (x < 0) x = -x; exit !(a != "" && b != "" && x <= d) }'; }
# The largest drop of a worker's logged global step, over both workers.
max_drop() {
  sed -nE 's/^worker([0-9]+) \| .*training step [0-9]+ done \(global step: ([0-9]+)\).*/\1 \2/p' "$1" |
    awk '{ if (($1 in last) && last[$1] - $2 > d) d = last[$1] - $2; last[$1] = $2 } END { print d + 0 }'
}
# last_step FILE WORKER_RE: the largest global step the workers matching WORKER_RE logged
last_step() {
  sed -nE "s/^worker$2 \\| .*global step: ([0-9]+)\\).*/\\1/p" "$1" | sort -n | tail -n 1
}
# stopped PID: the process is in state T (a SIGSTOP has landed)
stopped() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ]; }
show() { for f in "$@"; do echo "--- $(basename "$f") (last 25 lines)"; tail -n 25 "$f"; done; }

# ---- 1. a ps killed mid-run ----------------------------------------------------------
SYNC=(--set sync=true --set trainsteps=1500 --set learningrate=0.001 --set checkpoint_steps=100 --set logevery=1)
T0=$SECONDS
start_local base "${SYNC[@]}" --set checkpoint_dir="$SCRATCH/ck-base"
wait_for_exit $LPID $LIMIT
check "uninterrupted sync run exits 0 (exit $RC, $((SECONDS - T0)) s)" test "$RC" -eq 0
BASE_ACC=$(acc_in "$SCRATCH/base.out")
echo "uninterrupted: test accuracy ${BASE_ACC:-none}"

T0=$SECONDS
start_local kps "${SYNC[@]}" --set checkpoint_dir="$SCRATCH/ck-kps"
wait_for_log "$SCRATCH/kps.out" '^ps0 +\| .*ps 0: checkpoint at step 500:' $LIMIT
PID=$(task_pid kps ps 0)
SEEN=$(last_step "$SCRATCH/kps.out" '[01]')
kill -9 "$PID"
echo "killed ps 0 (pid $PID) after its checkpoint at step 500 (workers had seen global step ${SEEN:-?})"
wait_for_exit $LPID $LIMIT
check "with ps 0 killed, the run exits 0 (exit $RC, $((SECONDS - T0)) s)" test "$RC" -eq 0
check "dtf local restarted ps 0" log_has "$SCRATCH/kps.out" '^local: ps0 was killed by signal 9.*restarting'
RESUMED=$(sed -nE 's/^ps0 +\| .*ps 0: restored step ([0-9]+) from .*/\1/p' "$SCRATCH/kps.out" | head -n 1)
echo "ps 0 resumed from step ${RESUMED:-none}"
check "the restarted ps 0 logs the step it resumed from (${RESUMED:-none}, a checkpoint >= 500)" \
  test "${RESUMED:-0}" -ge 500 -a "$(( ${RESUMED:-1} % 100 ))" -eq 0
check "the workers reconnected" log_has "$SCRATCH/kps.out" '^worker[01] \| .*reconnected to ps 0 at .*\(step [0-9]+\)'
DROP=$(max_drop "$SCRATCH/kps.out")
echo "largest step back in a worker's global step: $DROP (checkpoint interval 100)"
check "the global step went back ($DROP > 0: the resumed step shows in the workers' logs)" test "$DROP" -gt 0
check "the global step never went back by more than the checkpoint interval ($DROP <= 100)" test "$DROP" -le 100
KPS_ACC=$(acc_in "$SCRATCH/kps.out")
echo "with a ps killed: test accuracy ${KPS_ACC:-none} (uninterrupted ${BASE_ACC:-none})"
check "accuracy ${KPS_ACC:-none} within 0.02 of the uninterrupted ${BASE_ACC:-none}" within "${KPS_ACC}" "${BASE_ACC}" 0.02
if [ "$FAILED" -ne 0 ]; then grep -vE 'training step|checkpoint at' "$SCRATCH/kps.out" | tail -n 40; fi

# ---- 5. dtf export of the uninterrupted run, evaluated through nn ----------------------
expect_exit 0 "dtf export of the run's checkpoints" "$DTF" export "$SCRATCH/ck-base" "$SCRATCH/base.safetensors"
expect_out 'wrote 4 tensors to .*\(ps0@1500 ps1@1500\)' "the export holds both shards at the last step"
expect_exit 0 "the export loads into the model (Sequential:load) and evaluates" \
  "$DTF" run "$HERE/eval_export.lua" -- "$SCRATCH/base.safetensors"
EXP_ACC=$(sed -nE 's/^export accuracy: ([0-9.]+).*/\1/p' <<<"$OUT")
echo "export: test accuracy ${EXP_ACC:-none} (the run's ${BASE_ACC:-none})"
check "the exported model's accuracy ${EXP_ACC:-none} matches the run's ${BASE_ACC:-none}" within "$EXP_ACC" "$BASE_ACC" 0.001
expect_out '^export layout ([0-9a-f]{16}), model layout \1$' "the export carries the model's layout checksum"

# ---- 2. a worker killed --------------------------------------------------------------
for mode in async sync; do
  T0=$SECONDS
  if [ $mode = sync ]; then steps=800; else steps=1600; fi
  start_local "kw-$mode" --set sync=$([ $mode = sync ] && echo true || echo false) --set trainsteps=$steps \
    --set sync_timeout=10 --set logevery=50
  wait_for_log "$SCRATCH/kw-$mode.out" '^worker1 +\| .*Worker 1: training step 200 done' $LIMIT
  PID=$(task_pid "kw-$mode" worker 1)
  kill -9 "$PID"
  wait_for_exit $LPID $LIMIT
  ACC=$(acc_in "$SCRATCH/kw-$mode.out")
  echo "$mode: worker 1 killed at its step 200; the run took $((SECONDS - T0)) s, test accuracy ${ACC:-none}"
  check "$mode: with worker 1 killed, the run completes (exit $RC)" test "$RC" -eq 0
  check "$mode: dtf local restarted worker 1" log_has "$SCRATCH/kw-$mode.out" '^local: worker1 was killed by signal 9.*restarting'
  check "$mode: the restarted worker 1 joined the ps again" \
    test "$(grep -cE '^ps0 +\| .*ps 0: worker 1 \(.*\) joined' "$SCRATCH/kw-$mode.out")" -ge 2
  END=$(last_step "$SCRATCH/kw-$mode.out" 0)
  check "$mode: worker 0 ends at global step ${END:-none} >= $steps" test "${END:-0}" -ge $steps
  check "$mode: accuracy ${ACC:-none} >= 0.80" ge "${ACC:-0}" 0.80
  if [ "$FAILED" -ne 0 ]; then grep -vE 'training step|checkpoint at' "$SCRATCH/kw-$mode.out" | tail -n 30; fi
done

# Two ps and two workers started by hand (no dtf local, so nothing restarts
# a task), with the hyperparameters in HAND.
task() { # NAME ROLE INDEX [extra...]: one task on the ports in SPEC
  local name=$1 role=$2 index=$3; shift 3
  "$DTF" run train.lua --role=$role --index=$index "${SPEC[@]}" "${HAND[@]}" \
    --set logdir="$SCRATCH/$name" "$@" >"$SCRATCH/$name.out" 2>&1 &
}
fresh_spec() { # P0 P1 W0 W1: fresh loopback ports; SPEC: the cluster flags naming them
  P0=$(free_port); P1=$(free_port); W0=$(free_port); W1=$(free_port)
  SPEC=(--ps=127.0.0.1:$P0,127.0.0.1:$P1 --workers=127.0.0.1:$W0,127.0.0.1:$W1)
}
# hand_cluster PREFIX STEP: the four tasks on fresh ports (output in
# $SCRATCH/PREFIX-{ps0,ps1,w0,w1}.out, pids in HPS0 HPS1 HW0 HW1); worker 1
# is killed for good after its step STEP; returns once worker 0 has exited
# (RC: its status). T0: the start.
hand_cluster() {
  local p=$1
  fresh_spec
  T0=$SECONDS
  task "$p-ps0" ps 0; HPS0=$!
  task "$p-ps1" ps 1; HPS1=$!
  task "$p-w0" worker 0; HW0=$!
  task "$p-w1" worker 1; HW1=$!
  wait_for_log "$SCRATCH/$p-w1.out" "Worker 1: training step $2 done" $LIMIT
  kill -9 $HW1; wait $HW1 2>/dev/null
  wait_for_exit $HW0 $LIMIT
}

# Sync without a restart: the ps drops the dead worker after sync_timeout,
# worker 0 finishes; worker 1 restarted after the end joins, finds the
# training done and ends the job.
HAND=(--set sync=true --set sync_timeout=3 --set trainsteps=400 --set logevery=50)
hand_cluster h 100
check "sync, worker 1 killed for good: worker 0 finishes (exit $RC, $((SECONDS - T0)) s)" test "$RC" -eq 0
check "the ps drops the dead worker after sync_timeout" log_has "$SCRATCH/h-ps0.out" \
  'ps 0: step [0-9]+ waited [0-9]+ s \(sync_timeout\) for worker 1; dropping it from the replicas'
ACC=$(acc_in "$SCRATCH/h-w0.out"); echo "sync with worker 1 dead from step 100: test accuracy ${ACC:-none}"
check "worker 0 evaluates the model (${ACC:-none} >= 0.78)" ge "${ACC:-0}" 0.78
task h-w1b worker 1; HW1=$!
wait_for_exit $HW1 $LIMIT
check "worker 1 restarted after the end exits 0 (exit $RC)" test "$RC" -eq 0
wait_for_exit $HPS0 30; R0=$RC
wait_for_exit $HPS1 30
check "then both ps end (exit $R0 and $RC)" test "$R0" -eq 0 -a "$RC" -eq 0
check "ps 0 stops because every worker is done" log_has "$SCRATCH/h-ps0.out" 'all 2 workers are done; stopping at step'
if [ "$FAILED" -ne 0 ]; then show "$SCRATCH"/h-*.out; fi

# Async, worker 1 killed for good and never restarted: worker 0 finishes and
# says done; the ps tasks wait done_timeout (3 s) for worker 1, which has no
# connection, then stop instead of waiting for ever.
HAND=(--set trainsteps=3000 --set done_timeout=3 --set logevery=50 --set evaluate=false)
hand_cluster g 50
check "async, worker 1 killed for good: worker 0 finishes (exit $RC, $((SECONDS - T0)) s)" test "$RC" -eq 0
T1=$SECONDS
wait_for_exit $HPS0 30; R0=$RC
wait_for_exit $HPS1 30
echo "the ps tasks ended $((SECONDS - T1)) s after worker 0 (done_timeout 3 s)"
check "both ps end by themselves, exit 0 (exit $R0 and $RC)" test "$R0" -eq 0 -a "$RC" -eq 0
check "ps 0 says it gave up on worker 1 after done_timeout" log_has "$SCRATCH/g-ps0.out" \
  'ps 0: 1 of 2 workers are done; worker 1 has had no connection for 3 s since \(done_timeout\); stopping at step [0-9]+'
check "ps 1 says the same" log_has "$SCRATCH/g-ps1.out" 'ps 1: 1 of 2 workers are done; worker 1 has had no connection'
check "neither ps claims every worker is done" eval '! grep -q "all 2 workers are done" "$SCRATCH"/g-ps*.out'
check "ps 0's last line gives the reason" log_has "$SCRATCH/g-ps0.out" \
  'ps 0: stopped \(done_timeout: not every worker said done\) at step [0-9]+'
if [ "$FAILED" -ne 0 ]; then show "$SCRATCH"/g-*.out; fi

# ---- 3. a ps killed while it writes a checkpoint ----------------------------------------
# Every step is a checkpoint (checkpoint_steps=1). ps 0 is stopped (SIGSTOP)
# at random moments until it is caught with its temporary file on disk,
# i.e. between open and rename; then it is killed there.
T0=$SECONDS
CK=$SCRATCH/ck-mid
start_local mid --set sync=true --set trainsteps=600 --set checkpoint_steps=1 --set logevery=100 \
  --set checkpoint_dir="$CK"
wait_for_log "$SCRATCH/mid.out" '^ps0 +\| .*ps 0: checkpoint at step 100:' $LIMIT
PID=$(task_pid mid ps 0)
CAUGHT=
for probe in $(seq 2000); do
  kill -STOP "$PID" 2>/dev/null || break
  wait_until 1 stopped "$PID"
  TMP=$(cd "$CK" && ls -a | grep -E '^\.ckpt-[0-9]+-ps0-of-2\.safetensors\.tmp\.' | head -n 1)
  if [ -n "$TMP" ]; then
    rm -rf "$SCRATCH/ck-snap"; cp -a "$CK" "$SCRATCH/ck-snap"   # the directory as the crash left it
    kill -KILL "$PID"; kill -CONT "$PID" 2>/dev/null
    CAUGHT=$TMP
    break
  fi
  kill -CONT "$PID"
  sleep "0.00$((RANDOM % 10))"   # not a wait: a random moment for the next probe
done
STEP=$(sed -nE 's/^\.ckpt-0*([0-9]+)-ps0.*/\1/p' <<<"${CAUGHT:-x}")
PREV=$(cd "$SCRATCH/ck-snap" 2>/dev/null && ls | sed -nE 's/^ckpt-0*([0-9]+)-ps0-of-2\.safetensors$/\1/p' | sort -n | tail -n 1)
echo "ps 0 killed after $probe probe(s) while writing ${CAUGHT:-nothing} (step ${STEP:-?}; newest complete: ${PREV:-none})"
check "ps 0 was caught writing a checkpoint (temporary file ${CAUGHT:-none})" test -n "$CAUGHT"
check "its newest complete checkpoint is the step before (${PREV:-none} = ${STEP:-?} - 1)" \
  test "${PREV:-0}" -eq "$(( ${STEP:-0} - 1 ))"
wait_for_exit $LPID $LIMIT
check "the run completes (exit $RC, $((SECONDS - T0)) s)" test "$RC" -eq 0
check "the restarted ps 0 removes the unfinished file" log_has "$SCRATCH/mid.out" \
  "^ps0 +\\| .*ps 0: removed 1 unfinished checkpoint file that a killed ps left in $CK: ${CAUGHT:-none}\$"
check "and resumes from the checkpoint before it (step ${PREV:-?})" log_has "$SCRATCH/mid.out" \
  "^ps0 +\\| .*ps 0: restored step ${PREV:-none} from $CK/ckpt-0*${PREV:-none}-ps0-of-2\\.safetensors"
expect_exit 0 "dtf export of the directory as the kill left it" \
  "$DTF" export "$SCRATCH/ck-snap" "$SCRATCH/snap.safetensors"
expect_out "wrote 4 tensors .*\\(ps0@${PREV:-none} ps1@[0-9]+\\)" "the export takes ps 0's previous checkpoint"
expect_exit 0 "the export loads into the model and evaluates" \
  "$DTF" run "$HERE/eval_export.lua" -- "$SCRATCH/snap.safetensors"
echo "$OUT" | grep '^export accuracy'
check "no temporary file is left after the run" test -z "$(cd "$CK" && ls -a | grep -E '\.tmp\.')"
if [ "$FAILED" -ne 0 ]; then grep -vE 'training step|checkpoint at' "$SCRATCH/mid.out" | tail -n 30; fi

# ---- 4. workers started before the ps ------------------------------------------------------
fresh_spec
HAND=(--set trainsteps=600 --set logevery=100)
T0=$SECONDS
task e-w0 worker 0; EW0=$!
task e-w1 worker 1; EW1=$!
# The ps tasks start once both workers have backed off to 3.2 s between retries
# (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s after their first try).
check "worker 0 backs off while ps 0 is away" wait_for_log "$SCRATCH/e-w0.out" \
  "waiting for ps 0 at 127\\.0\\.0\\.1:$P0 \\(connection refused\\), retry in 3\\.2 s" 60
check "worker 1 backs off while ps 1 is away" wait_for_log "$SCRATCH/e-w1.out" \
  "waiting for ps 1 at 127\\.0\\.0\\.1:$P1 \\(connection refused\\), retry in 3\\.2 s" 60
echo "starting the ps $((SECONDS - T0)) s after the workers"
task e-ps0 ps 0; EPS0=$!
task e-ps1 ps 1; EPS1=$!
wait_for_exit $EW0 $LIMIT; R0=$RC
wait_for_exit $EW1 $LIMIT
check "both workers complete (exit $R0 and $RC, $((SECONDS - T0)) s)" test "$R0" -eq 0 -a "$RC" -eq 0
wait_for_exit $EPS0 30; R0=$RC
wait_for_exit $EPS1 30
check "both ps exit 0 (exit $R0 and $RC)" test "$R0" -eq 0 -a "$RC" -eq 0
check "the workers logged what they waited for" log_has "$SCRATCH/e-w0.out" \
  "waiting for ps [01] at 127\\.0\\.0\\.1:[0-9]+ \\(connection refused\\), retry in [0-9.]+ s"
check "with backoff (retries up to 5 s apart)" log_has "$SCRATCH/e-w0.out" 'retry in (1\.6|3\.2|5\.0) s'
ACC=$(acc_in "$SCRATCH/e-w0.out"); echo "workers first: test accuracy ${ACC:-none}"
check "worker 0 evaluates the model (${ACC:-none} >= 0.78)" ge "${ACC:-0}" 0.78
if [ "$FAILED" -ne 0 ]; then show "$SCRATCH"/e-*.out; fi

finish
