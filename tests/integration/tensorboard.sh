#!/usr/bin/env bash
# TensorBoard event files of real trainings, decoded without dtf's reader:
# tfevents_check.py checks the TFRecord framing and both CRCs of every
# record itself and has Debian's protoc decode the Events against
# fixtures/tfevent.proto (TensorBoard's field numbers). Then evaluation
# during training: evalevery on the test set in a cluster, validation=N and
# save_best in one process, and a worker 0 killed with SIGKILL whose
# evaluations are on disk already.
#   tests/integration/tensorboard.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
PROTO=$HERE/fixtures/tfevent.proto
cd "$ROOT"

decode() { # FILE... [--want ...]: runs the checker, its ok/not ok lines count here
  python3 "$HERE/tfevents_check.py" "$PROTO" "$@" >"$SCRATCH/check.out" 2>&1
  while read -r line; do
    case $line in
      "ok "*) pass "${line#ok }" ;;
      "not ok "*) fail "${line#not ok }" ;;
      "tfevents_check: "*|"scalar "*) ;;
      *) echo "$line" ;;
    esac
  done <"$SCRATCH/check.out"
}
scalars() { awk -v t="$1" '$1 == "scalar" && $2 == t { print $3, $4 }' "$SCRATCH/worker0.out"; }

# ---- a cluster: 2 ps, 2 workers, evalevery ------------------------------------------
# Sync, so that the evaluations fall on the multiples of evalevery: in async
# the other worker trains on while worker 0 evaluates, and on a loaded
# machine it may pass several multiples before worker 0 looks again.
LOG=$SCRATCH/cluster
expect_exit 0 "dtf local trains 600 sync steps with evalevery=150" \
  timeout 300 "$DTF" local train.lua --ps=2 --workers=2 --set sync=true --set trainsteps=600 --set batchsize=32 \
  --set lossevery=20 --set evalevery=150 --set logevery=100 --set logdir="$LOG"
printf '%s\n' "$OUT" >"$SCRATCH/cluster.out"
W0=$(ls "$LOG"/tensorboard/worker0/events.out.tfevents.* 2>/dev/null)
check "worker 0 wrote one event file named events.out.tfevents.<time>.<host>.<pid>" \
  bash -c "[ \$(echo '$W0' | wc -w) -eq 1 ] && echo '$W0' | grep -qE '/events\.out\.tfevents\.[0-9]{10}\.$(hostname)\.[0-9]+$'"
check "worker 1 writes none" test ! -e "$LOG/tensorboard/worker1"
check "each ps has an event file of its own" \
  bash -c "ls '$LOG'/tensorboard/ps0/events.out.tfevents.* && ls '$LOG'/tensorboard/ps1/events.out.tfevents.*" >/dev/null
decode $W0 --want train/loss --want train/steps_per_second --want train/examples_per_second \
  --want train/learning_rate --want eval/accuracy:150 --want eval/loss:150
cp "$SCRATCH/check.out" "$SCRATCH/worker0.out"
for f in "$LOG"/tensorboard/ps*/events.out.tfevents.*; do
  decode "$f" --want ps/updates_per_second --want ps/staleness
  ups=$(awk '$1 == "scalar" && $2 == "ps/updates_per_second" { print $4 }' "$SCRATCH/check.out" | sort -g | tail -n 1)
  check "$(basename "$(dirname "$f")") shows updates per second ($ups)" awk -v v="${ups:-0}" 'BEGIN { exit !(v > 10) }'
done
# the scalars agree with the log lines
n_logged=$(grep -c 'Evaluation at global step' "$SCRATCH/cluster.out")
n_tb=$(scalars eval/accuracy | wc -l)
check "worker 0 logs an evaluation line for each periodic one ($n_logged lines, $n_tb scalars)" \
  test "$n_logged" -ge 3 -a "$n_tb" -ge "$n_logged"
at=$(sed -nE 's/.*Evaluation at global step ([0-9]+):.*/\1/p' "$SCRATCH/cluster.out" | tr '\n' ' ')
check "evaluations at global steps 150 300 450 600 ($at)" test "$at" = "150 300 450 600 "
agree=1
while read -r step acc; do
  line=$(grep -E "Evaluation at global step $step: accuracy" "$SCRATCH/cluster.out" | head -n 1)
  if [ -n "$line" ]; then
    logged=$(sed -E 's/.*accuracy ([0-9.]+),.*/\1/' <<<"$line")
    awk -v a="$acc" -v b="$logged" 'BEGIN { exit !(a - b < 0.00006 && b - a < 0.00006) }' || agree=0
  fi
done < <(scalars eval/accuracy)
check "eval/accuracy equals the logged accuracy at each step" test $agree -eq 1
lr=$(scalars train/learning_rate | awk '{ print $2; exit }')
check "train/learning_rate is the learning rate (0.003): $lr" awk -v v="$lr" 'BEGIN { exit !(v > 0.00299 && v < 0.00301) }'
test_acc=$(sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p' "$SCRATCH/cluster.out")
check "the test accuracy is still logged in the seed's format ($test_acc)" test -n "$test_acc"
loss_steps=$(scalars train/loss | wc -l)
loss_lines=$(grep -c 'Worker 0: mean loss' "$SCRATCH/cluster.out")
check "train/loss at each of worker 0's $loss_lines mean-loss lines ($loss_steps points)" \
  test "$loss_steps" -eq "$loss_lines" -a "$loss_lines" -ge 3

# ---- one process: validation and save_best ------------------------------------------
LOG1=$SCRATCH/one
expect_exit 0 "one process with validation=5000, evalevery=100, save_best" \
  timeout 300 "$DTF" run train.lua --set trainsteps=500 --set validation=5000 --set evalevery=100 \
  --set lossevery=50 --set save="$SCRATCH/best.safetensors" --set save_best=true --set logdir="$LOG1"
printf '%s\n' "$OUT" >"$SCRATCH/one.out"
expect_out 'Worker 0: 79510 parameters, 55000 training examples in its shard' \
  "the held-out 5000 are not trained on"
expect_out 'Evaluation at global step 100: accuracy [0-9.]+, loss [0-9.]+ \(5000 images\)' \
  "evaluations run on the 5000 held-out images"
expect_out 'Test accuracy: [0-9.]+ \(10000 images\)' "the test set is evaluated at the end"
# every "Model saved" follows an evaluation that beat all before it
best=$(awk '
  /Evaluation at global step/ { match($0, /accuracy [0-9.]+/); a = substr($0, RSTART + 9, RLENGTH - 9) + 0
                               if (a > max) { max = a; want = 1 } else want = 0; next }
  /Model saved to .*best accuracy so far/ { if (!want) bad = 1; saved = max; want = 0 }
  END { if (bad) print "bad"; else print saved }' "$SCRATCH/one.out")
check "a model is saved exactly when an evaluation is the best so far (best $best)" \
  bash -c "[ '$best' != bad ] && [ -n '$best' ]"
cat >"$SCRATCH/best.lua" <<'EOF'
local ckpt, nn, data, model = require 'dtf.ckpt', require 'dtf.nn', require 'dtf.data', require 'dtf.model'
local t, meta = assert(ckpt.load(arg[1]))
local m = model.load('models/mnist.lua')
local schema = model.schema({}, m)
local net = model.build(m, { model = 'mlp', hidden = 100 }, schema, 1)
net:load(t)
local ds = assert(data.mnist('/usr/share/datasets/fashion-mnist', 'train'))
local correct, n = 0, 0
for x, y, k in ds:batches(1000, ds:count() - 5000 + 1, 5000) do
  correct = correct + require('dtf.tensor').accuracy(net:forward(x), y); n = n + k
end
print(string.format('saved %s accuracy %.4f step %s', meta.accuracy, correct / n, meta.global_step))
EOF
saved=$("$DTF" run "$SCRATCH/best.lua" "$SCRATCH/best.safetensors" 2>&1)
echo "$saved"
check "the saved model is the best one: its metadata says $best" grep -qE "^saved $best accuracy " <<<"$saved"
check "and it scores that accuracy on the held-out set again" \
  awk -v want="$best" '{ exit !($2 == $4 && $4 == want) }' <<<"$saved"
decode "$LOG1"/tensorboard/worker0/events.out.tfevents.* --want eval/accuracy:100 --want eval/loss:100

# ---- killed with SIGKILL: what was flushed stays --------------------------------------
LOG2=$SCRATCH/killed
"$DTF" run train.lua --set trainsteps=0 --set evalevery=200 --set logdir="$LOG2" \
  >"$SCRATCH/killed.out" 2>&1 &
PID=$!
for _ in $(seq 600); do grep -q 'Evaluation at global step 400' "$SCRATCH/killed.out" && break; sleep 0.1; done
kill -KILL $PID 2>/dev/null
wait $PID 2>/dev/null
check "the training reached its second evaluation before the kill" \
  grep -q 'Evaluation at global step 400' "$SCRATCH/killed.out"
decode "$LOG2"/tensorboard/worker0/events.out.tfevents.*
check "both evaluations are in the file of the killed task" \
  bash -c "[ \$(awk '\$1 == \"scalar\" && \$2 == \"eval/accuracy\"' '$SCRATCH/check.out' | wc -l) -ge 2 ]"

# ---- a logdir where TensorBoard cannot write: a warning, the training goes on ----------
mkdir -p "$SCRATCH/blocked"
touch "$SCRATCH/blocked/tensorboard"
expect_exit 0 "a file where the tensorboard directory should be does not stop a training" \
  "$DTF" run train.lua --set trainsteps=50 --set logdir="$SCRATCH/blocked"
expect_out 'WARNING - Worker 0: no TensorBoard scalars: cannot create .*/blocked/tensorboard/worker0: Not a directory' \
  "it says why, once"
expect_out 'Test accuracy: ' "and trains to the end"
finish
