#!/usr/bin/env bash
# tests/integration/local_supervisor.sh BUILD_DIR: `dtf local` as a process
# supervisor, driven by a stand-in task (fixtures/local_task.lua) instead of
# the real training: line prefixes, exit statuses, restarts, Ctrl-C, a
# SIGKILLed supervisor, usage errors.
. "$(dirname "$0")/testlib.bash"

dtf=$DTF
fixture=$ROOT/tests/integration/fixtures/local_task.lua
tmp=$SCRATCH
OUTF=$tmp/out          # dtf local's output, shown when a check fails
SHOW_ON_FAIL=$OUTF
# Only the processes this test started carry $tmp in their arguments; a
# SIGKILLed dtf local leaves its tasks to their parent-death signal.
trap 'pkill -KILL -f -- "$tmp" 2>/dev/null; cleanup' EXIT

no_tasks() { ! pgrep -f -- "$tmp" >/dev/null; }   # (a bash -c would match itself)

# run_local ARGS...: runs dtf local with a time limit; output in $OUTF, status in $rc
run_local() {
  timeout 60 "$dtf" local "$@" >"$OUTF" 2>&1
  rc=$?
}

# ---- a run that finishes --------------------------------------------------
run_local "$fixture" --ps=2 --workers=2 --set a=1 --set=b=2 -- ok "$tmp"
check "ok run exits 0" test "$rc" -eq 0
check "every task's line is prefixed with its name, the prefixes lined up" \
  bash -c "grep -q '^ps0     | hello from ps0 task=ps0 restart=0' '$OUTF' &&
           grep -q '^ps1     | hello from ps1 ' '$OUTF' &&
           grep -q '^worker0 | hello from worker0 ' '$OUTF' &&
           grep -q '^worker1 | hello from worker1 task=worker1 ' '$OUTF'"
check "stderr goes through the prefix too" log_has_text "$OUTF" "worker1 | stderr from worker1"
check "a partial last line is flushed at EOF" log_has_text "$OUTF" "ps1     | no newline from ps1"
check "ps and worker addresses are on loopback" \
  grep -qE '^ps0 +\| .* ps=127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+ workers=127\.0\.0\.1:[0-9]+,127\.0\.0\.1:[0-9]+ ' "$OUTF"
check "a token is made for the run (32 hex digits, in every task's DTF_TOKEN)" \
  bash -c "[ \$(grep -c 'token=32\$' '$OUTF') -eq 4 ]"
check "dtf local says it made one" log_has_text "$OUTF" "local: no token given: made one for this run"
check "--set flags reach every task" log_has_text "$OUTF" "worker0 | hello from worker0 task=worker0 restart=0 ps="
check "--set values in order" grep -qE '^worker0 \| .* set=a=1,b=2 ' "$OUTF"
DTF_TOKEN=sesame run_local "$fixture" --ps=1 --workers=1 -- ok "$tmp"
check "a token given in DTF_TOKEN is the run's" bash -c "[ \$(grep -c 'token=6\$' '$OUTF') -eq 2 ]"

run_local "$fixture" --ps=1 --workers=1 --port-base=23456 -- ok "$tmp"
check "--port-base picks consecutive ports" \
  grep -qE '^ps0 +\| .* ps=127\.0\.0\.1:23456 workers=127\.0\.0\.1:23457 ' "$OUTF"

# ---- restarts ---------------------------------------------------------------
run_local "$fixture" --ps=1 --workers=2 -- flaky "$tmp"
check "a worker that fails once is restarted and the run succeeds" test "$rc" -eq 0
check "the restart is logged" log_has_text "$OUTF" "local: worker1 exited with status 1, restarting (1 of 3)"
check "the restarted task sees DTF_RESTART=1" log_has_text "$OUTF" "worker1 | hello from worker1 task=worker1 restart=1"

run_local "$fixture" --ps=1 --workers=2 --restarts=2 -- always "$tmp"
check "a task that always fails makes the run fail with status 1" test "$rc" -eq 1
check "it was restarted --restarts times" \
  bash -c "[ \$(grep -c '^worker0 | hello from worker0' '$OUTF') -eq 3 ]"
check "the last restart is logged" log_has_text "$OUTF" "restarting (2 of 2)"
check "giving up is logged" log_has_text "$OUTF" "local: worker0 exited with status 3 and has no restarts left"
check "no task is left after a failed run" no_tasks

run_local "$fixture" --ps=1 --workers=2 -- early "$tmp"
check "a task that fails before it is up fails the run with its status, 1" test "$rc" -eq 1
check "it is not restarted (once, not 4 times)" bash -c "[ \$(grep -c '^worker0 | hello from worker0' '$OUTF') -eq 1 ]"
check "dtf local says why" log_has_text "$OUTF" "local: worker0 exited with status 1 before it was up; not restarting it"
check "no task is left after it" no_tasks

run_local "$fixture" --ps=1 --workers=2 -- usage "$tmp"
check "a task's usage error fails the run with status 2" test "$rc" -eq 2
check "a usage error is not restarted" bash -c "[ \$(grep -c '^worker0 | hello from worker0' '$OUTF') -eq 1 ]"
check "dtf local says so" log_has_text "$OUTF" "local: worker0 exited with status 2 (a usage error); not restarting it"

run_local "$fixture" --ps=1 --workers=1 --ps-grace=1 -- linger "$tmp"
check "a ps that outlives the workers fails the run" test "$rc" -eq 1
check "the lingering ps is named" log_has_text "$OUTF" "local: ps0 is still running"

# ---- signals ------------------------------------------------------------------
said_hello() { [ "$(grep -c 'hello from' "$OUTF" 2>/dev/null)" -ge "$1" ]; }

"$dtf" local "$fixture" --ps=1 --workers=2 -- hang "$tmp" >"$OUTF" 2>&1 &
pid=$!
check "3 tasks start" wait_until 30 said_hello 3
kill -INT "$pid"
wait "$pid"; rc=$?
check "Ctrl-C stops the run with status 130" test "$rc" -eq 130
# dtf local reaps every task before it exits: none may be left at all
check "Ctrl-C leaves no task running" no_tasks

"$dtf" local "$fixture" --ps=1 --workers=1 -- hang "$tmp" >"$OUTF" 2>&1 &
pid=$!
check "2 tasks start" wait_until 30 said_hello 2
kill -TERM "$pid"
wait "$pid"; rc=$?
check "SIGTERM stops the run with status 143" test "$rc" -eq 143

"$dtf" local "$fixture" --ps=1 --workers=1 -- hang "$tmp" >"$OUTF" 2>&1 &
pid=$!
disown "$pid"       # no "Killed" notice from bash
check "2 tasks start" wait_until 30 said_hello 2
kill -KILL "$pid"
check "the tasks die when dtf local is SIGKILLed" wait_until 5 no_tasks

# ---- usage --------------------------------------------------------------------
usage() { # name, expected text, args...
  local name=$1 want=$2; shift 2
  "$dtf" local "$@" >"$OUTF" 2>&1; rc=$?
  check "$name exits 2" test "$rc" -eq 2
  check "$name names the problem" log_has_text "$OUTF" "$want"
}
usage "missing SCRIPT" "missing SCRIPT" --ps=1 --workers=1
usage "--ps=0" "--ps" "$fixture" --ps=0 --workers=1
usage "--workers=abc" "'abc'" "$fixture" --ps=1 --workers=abc
usage "an unknown flag" "--frobnicate" "$fixture" --ps=1 --workers=1 --frobnicate
usage "missing --workers" "--workers" "$fixture" --ps=1
"$dtf" help local >"$OUTF" 2>&1; rc=$?
check "dtf help local prints the usage" bash -c "[ $rc -eq 0 ] && grep -q 'usage: dtf local SCRIPT' '$OUTF'"

finish
