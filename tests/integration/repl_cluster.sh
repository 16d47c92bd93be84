#!/usr/bin/env bash
# `dtf repl --ps=...` reaches a running training: it reads the global step and
# the ps stats, pulls the parameters and evaluates them on the test set while
# the worker trains; SIGTERM then stops the ps with exit 0.
. "$(dirname "$0")/testlib.bash"

PS=127.0.0.1:$(free_port)
W=127.0.0.1:$(free_port)
"$DTF" run train.lua --role=ps --index=0 --ps=$PS --workers=$W --set logdir="$SCRATCH" >"$SCRATCH/ps.log" 2>&1 &
ps_pid=$!
"$DTF" run train.lua --role=worker --index=0 --ps=$PS --workers=$W --set logdir="$SCRATCH" \
  --set trainsteps=0 --set logevery=100000 >"$SCRATCH/w.log" 2>&1 &
w_pid=$!
check "the worker trains" wait_for_log "$SCRATCH/deploy.log" 'training step 200 done'

OUT=$(printf '%s\n' 'print("step", cluster.step())' \
  'local s = cluster.stats()[1]; print("mode", s.mode, "updates", s.updates)' \
  'print("accuracy", cluster.evaluate())' \
  'local net = cluster.pull(); print("params", net.nparams)' | timeout 60 "$DTF" repl --ps=$PS 2>&1)
printf '%s\n' "$OUT" | grep -vE ' - dtf - '
expect_out '^step	[1-9][0-9]*$' "the REPL reads the global step"
expect_out '^mode	async	updates	[1-9]' "the REPL reads the ps stats"
expect_out '^accuracy	0\.[5-9][0-9]*	10000$' "the REPL evaluates the current parameters on the test set"
expect_out '^params	79510$' "the REPL pulls the parameters into a model"
check "the worker still trains" running $w_pid
kill -TERM $ps_pid; wait $ps_pid; rc=$?
check "SIGTERM stops the ps with exit 0 (exit $rc)" test $rc -eq 0
check "the ps says it stopped on a signal" grep -q 'ps 0: stopped (signal)' "$SCRATCH/ps.log"
kill $w_pid 2>/dev/null; wait $w_pid 2>/dev/null
finish
