#!/usr/bin/env bash
# `dtf repl --ps=...` reaches a running training: it reads the global step and
# the ps stats, pulls the parameters and evaluates them on the test set while
# the worker trains; SIGTERM then stops the ps with exit 0. Then a training
# whose model file defaults hidden to 256, started with --config (the file
# the pods mount, with keys the REPL has no use for): the REPL attached with
# the same --config builds the same model and evaluates it; without it, it
# says in one line that it runs a different model.
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

# ---- --config and the model file's own defaults ------------------------------
sed 's/default = 100,/default = 256,/' models/mnist.lua >"$SCRATCH/wide.lua"
check "the test's model file defaults hidden to 256" grep -q "'hidden', type = 'int', default = 256," "$SCRATCH/wide.lua"
CFG=$SCRATCH/hparams.lua
cat >"$CFG" <<CFG
return { modelfile = "$SCRATCH/wide.lua", batchsize = 20, learningrate = 0.001, trainsteps = 0,
         logevery = 100000, logdir = "$SCRATCH/wide-log", save = "" }
CFG
PS=127.0.0.1:$(free_port)
W=127.0.0.1:$(free_port)
"$DTF" run train.lua --role=ps --index=0 --ps=$PS --workers=$W --config "$CFG" >"$SCRATCH/ps2.log" 2>&1 &
ps_pid=$!
"$DTF" run train.lua --role=worker --index=0 --ps=$PS --workers=$W --config "$CFG" >"$SCRATCH/w2.log" 2>&1 &
w_pid=$!
for _ in $(seq 300); do grep -q 'training step 50 done' "$SCRATCH/wide-log/deploy.log" 2>/dev/null && break; sleep 0.1; done
check "the worker of the hidden=256 model trains" grep -q 'training step 50 done' "$SCRATCH/wide-log/deploy.log"

OUT=$(printf '%s\n' 'print("params", cluster.pull().nparams)' 'print("accuracy", cluster.evaluate())' \
  | timeout 60 "$DTF" repl --ps=$PS --config "$CFG" 2>&1)
printf '%s\n' "$OUT" | grep -vE ' - dtf - '
# 784 inputs -> 256 -> 10 outputs: weights and biases of both layers
expect_out "^params	$((784 * 256 + 256 + 256 * 10 + 10))\$" "with --config the REPL builds the model file's hidden=256 network"
expect_out '^accuracy	0\.[0-9]+	10000$' "cluster.evaluate() answers with the test accuracy"

OUT=$(printf '%s\n' 'print("params", cluster.pull().nparams)' | timeout 60 "$DTF" repl --ps=$PS 2>&1)
printf '%s\n' "$OUT" | grep -vE ' - dtf - '
expect_out 'runs a different model' "without --config the REPL says it runs a different model"
check "in one line, without a traceback" bash -c "! grep -q 'stack traceback' <<<\"\$1\"" _ "$OUT"
kill -TERM $ps_pid; wait $ps_pid
kill $w_pid 2>/dev/null; wait $w_pid 2>/dev/null
finish
