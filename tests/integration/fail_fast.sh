#!/usr/bin/env bash
# tests/integration/fail_fast.sh BUILD_DIR: a run fails before its first step
# and says plainly why: dtf local's safety (loopback, a token, no restart of
# what would fail again), the checks before step 1, one-line errors without
# a traceback, the model file's own hyperparameters, checkpoints and
# schedules in one process, dtf predict, and the small things of issue 12.
. "$(dirname "$0")/testlib.bash"

DATA=/usr/share/datasets/fashion-mnist
RUN=("$DTF" run train.lua --set logdir="$SCRATCH/log")
no_traceback() { ! printf '%s\n' "$OUT" | grep -q 'stack traceback'; }
no_step() { ! printf '%s\n' "$OUT" | grep -q 'training step'; }

# ---- checks before step 1 --------------------------------------------------------
expect_exit 1 "save into a missing directory fails" "${RUN[@]}" --set save=/nonexistent/dir/m.safetensors
expect_out "save=/nonexistent/dir/m.safetensors: cannot write in /nonexistent/dir .*the trained model is lost" \
  "the message names the path and why it matters"
check "before step 1" no_step
check "without a traceback" no_traceback

mkdir -p "$SCRATCH/cut"
cp "$DATA"/train-* "$SCRATCH/cut/"
cp "$DATA/t10k-labels-idx1-ubyte.gz" "$SCRATCH/cut/"
head -c 200000 "$DATA/t10k-images-idx3-ubyte.gz" >"$SCRATCH/cut/t10k-images-idx3-ubyte.gz"
expect_exit 1 "a truncated test set fails" "${RUN[@]}" --set datadir="$SCRATCH/cut"
expect_out "t10k-images-idx3-ubyte.gz" "the message names the file"
check "before step 1, not after the last" no_step
check "without a traceback (a truncated file)" no_traceback
expect_exit 0 "without evaluation the test set is not needed" "${RUN[@]}" --set datadir="$SCRATCH/cut" \
  --set evaluate=false --set trainsteps=5

expect_exit 1 "a missing datadir fails" "${RUN[@]}" --set datadir="$SCRATCH/none"
expect_out "apt-get install dataset-fashion-mnist" "the message says how to get the data"
check "without a traceback (missing data)" no_traceback

cat >"$SCRATCH/bad_model.lua" <<'EOF'
local nn = require 'dtf.nn'
return function(hp) return nn.Sequential { nn.Linear(784, 128), nn.ReLU(), nn.Linear(256, 10) } end
EOF
expect_exit 1 "a shape bug in the model file fails" "${RUN[@]}" --set modelfile="$SCRATCH/bad_model.lua"
expect_out "do not match" "with the kernel's message"
check "before step 1 (a shape bug)" no_step

# ---- usage errors: exit 2, one line ------------------------------------------------
expect_exit 2 "model=resnet is a usage error" "${RUN[@]}" --set model=resnet
expect_out "model='resnet' is not one of mlp, cnn" "naming the choices"
check "without a traceback (model=resnet)" no_traceback
expect_exit 2 "epochs=0 is refused" "${RUN[@]}" --set epochs=0
expect_out "epochs=0 trains nothing \(trainsteps=0 is the way to train until stopped\)" "saying what to use"
expect_exit 2 "a misspelt key is refused" "${RUN[@]}" --set hiden=3
expect_out "unknown hyperparameter 'hiden'" "naming it"
expect_exit 2 "lr_schedule=cosine without an end is refused" "${RUN[@]}" --set trainsteps=0 --set lr_schedule=cosine
expect_out "lr_schedule=cosine needs lr_decay_steps" "with what it needs"

# ---- the model file's own hyperparameters --------------------------------------------
cat >"$SCRATCH/deep.lua" <<'EOF'
local nn = require 'dtf.nn'
return {
  hyperparams = { { name = 'layers', type = 'int', default = 1, min = 1, help = 'hidden layers' } },
  build = function(hp)
    local l = { nn.Linear(784, 32), nn.ReLU() }
    for _ = 2, hp.layers do l[#l + 1] = nn.Linear(32, 32); l[#l + 1] = nn.ReLU() end
    l[#l + 1] = nn.Linear(32, 10)
    return nn.Sequential(l)
  end,
}
EOF
expect_exit 0 "a model file's own hyperparameter: --set layers=3" "${RUN[@]}" --set modelfile="$SCRATCH/deep.lua" \
  --set layers=3,trainsteps=3 --set evaluate=false
expect_out "Worker 0: 27562 parameters" "it builds three hidden layers (helm's comma form --set a=1,b=2 too)"
expect_exit 0 "help lists it" "${RUN[@]}" --set modelfile="$SCRATCH/deep.lua" --set help=true
expect_out "^  layers +int +default 1 +hidden layers \[deep.lua\]" "with its type, default and file"
sed 's/hp.layers/hp.layrs/' "$SCRATCH/deep.lua" >"$SCRATCH/typo.lua"
expect_exit 1 "a model file that reads a misspelt key fails" "${RUN[@]}" --set modelfile="$SCRATCH/typo.lua"
expect_out "reads hp.layrs, which is no hyperparameter" "naming the key"

# ---- one process: the last loss window, ISO time, checkpoints, schedules -----------------
expect_exit 0 "150 steps with a loss every 100" "${RUN[@]}" --set trainsteps=150 --set lossevery=100 \
  --set evaluate=false --set checkpoint_dir="$SCRATCH/ck1" --set checkpoint_steps=100
expect_out "mean loss [0-9.]+ over steps 101-150" "the last, partial loss window is logged"
expect_out "Training ends @ [0-9.]+ \([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\)" "Training ends gives ISO time"
expect_out "one process: checkpoint at step 150: $SCRATCH/ck1/ckpt-00000150-ps0-of-1.safetensors" \
  "checkpoint_dir works in one process"
expect_exit 0 "the same checkpoint_dir with trainsteps=200" "${RUN[@]}" --set trainsteps=200 \
  --set evaluate=false --set checkpoint_dir="$SCRATCH/ck1"
expect_out "one process: restored step 150 from $SCRATCH/ck1/ckpt-00000150-ps0-of-1.safetensors" "it resumes"
expect_out "Worker 0: training step 50 done \(global step: 200\)" "and trains the 50 steps left"
cat >"$SCRATCH/lr.lua" <<'EOF'
local T, ps, optim = require 'dtf.tensor', require 'dtf.ps', require 'dtf.optim'
local hp = { optimizer = 'sgd', learningrate = 0.1, momentum = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8,
             weight_decay = 0, lr_schedule = 'cosine', warmup = 10, lr_decay_steps = 0, lr_decay = 0.1 }
local p, g = T.zeros(4), T.ones(4)
local s = assert(ps.local_shard { params = p, optimizer = optim.config(hp, 110) })
local lrs = {}
for i = 1, 111 do lrs[i] = s:lr(); s:apply(g) end
print(string.format('lr %.4f %.4f %.4f %.4f %.4f', lrs[1], lrs[10], lrs[11], lrs[61], lrs[111]))
EOF
expect_exit 0 "a cosine schedule with warmup on the shard" "$DTF" run "$SCRATCH/lr.lua"
expect_out "^lr 0.0100 0.1000 0.1000 0.0500 0.0000$" "rises over 10 steps, then falls to 0 over 100"

# ---- a signal stops a training at a step boundary, keeping what it did ----------------
"${RUN[@]}" --set trainsteps=0 --set evaluate=false --set checkpoint_dir="$SCRATCH/ck2" --set lossevery=50 \
  >"$SCRATCH/sig.out" 2>&1 &
SPID=$!
check "an endless one-process training runs" wait_for_log "$SCRATCH/sig.out" 'training step 100 done' 60
kill -TERM $SPID
wait_for_exit $SPID 30
check "SIGTERM stops it with status 143 ($RC)" test "$RC" -eq 143
check "at a step boundary, saying so" log_has "$SCRATCH/sig.out" 'Worker 0: SIGTERM at global step [0-9]+; stopping after [0-9]+ steps'
STOPPED=$(sed -nE 's/.*SIGTERM at global step ([0-9]+);.*/\1/p' "$SCRATCH/sig.out")
check "with its last checkpoint (step ${STOPPED:-?})" log_has "$SCRATCH/sig.out" \
  "one process: checkpoint at step ${STOPPED:-none}: "
check "and one line, no traceback" log_has "$SCRATCH/sig.out" \
  "^dtf: stopped at global step ${STOPPED:-none} \\(checkpoint_dir resumes it\\)$"

# ---- dtf predict ------------------------------------------------------------------
expect_exit 0 "train one epoch and save" "${RUN[@]}" --set save="$SCRATCH/m.safetensors" --set logevery=1000
ACC=$(sed -nE 's/.*Test accuracy: ([0-9.]+).*/\1/p' <<<"$OUT")
expect_exit 0 "dtf predict the test set" "$DTF" predict "$SCRATCH/m.safetensors" "$DATA/t10k-images-idx3-ubyte.gz" \
  --labels "$DATA/t10k-labels-idx1-ubyte.gz"
expect_out "^accuracy ${ACC:-none} \(10000 images\)$" "predict scores the training's own accuracy (${ACC:-none})"
expect_out "^9999 [0-9]$" "one 0-based line per image"
check "10001 lines" test "$(printf '%s\n' "$OUT" | wc -l)" -eq 10001
expect_exit 0 "predict without labels" "$DTF" predict "$SCRATCH/m.safetensors" "$DATA/t10k-images-idx3-ubyte.gz"
no_accuracy() { ! printf '%s\n' "$OUT" | grep -q accuracy; }
check "no accuracy line without labels" no_accuracy
expect_exit 1 "predict with a ps shard's checkpoint" "$DTF" predict "$SCRATCH/ck1/ckpt-00000200-ps0-of-1.safetensors" \
  "$DATA/t10k-images-idx3-ubyte.gz"
expect_out "is not a dtf model file \(format 'dtf-ps-shard-1'\)" "is refused, saying what it is"
expect_exit 2 "predict without its arguments" "$DTF" predict "$SCRATCH/m.safetensors"

# ---- dtf local: loopback, the token, no restart of what fails the same way ---------------
OUTF=$SCRATCH/local.out
"$DTF" local train.lua --ps=1 --workers=1 --set trainsteps=0 --set logdir="$SCRATCH/loc" >"$OUTF" 2>&1 &
LPID=$!
check "dtf local's ps serves" wait_for_log "$OUTF" 'ps 0: serving parameters' 60
PSADDR=$(sed -nE 's/^local: 1 ps \(([0-9.]+:[0-9]+)\).*/\1/p' "$OUTF")
PORT=${PSADDR##*:}
HEXPORT=$(printf '%04X' "${PORT:-0}")
# /proc/net/tcp: local address as hex IP:port, state 0A = LISTEN
check "the ps listens on 127.0.0.1 only (port ${PORT:-?})" \
  bash -c "grep -qE '^ *[0-9]+: 0100007F:$HEXPORT [0-9A-F:]+ 0A ' /proc/net/tcp &&
           ! grep -qE '^ *[0-9]+: 00000000:$HEXPORT [0-9A-F:]+ 0A ' /proc/net/tcp &&
           ! grep -qE '^ *[0-9]+: 0{32}:$HEXPORT [0-9A-F:]+ 0A ' /proc/net/tcp6"
check "it made a token for the run" log_has_text "$OUTF" "local: no token given: made one for this run"
expect_exit 1 "a worker without the run's token is refused" env -u DTF_TOKEN "$DTF" run train.lua --role=worker \
  --index=0 --ps="$PSADDR" --workers=127.0.0.1:1 --set logdir="$SCRATCH/intruder" --set reconnect_timeout=0
expect_out "needs a token" "with the ps's reason"
check "without a traceback (no token)" no_traceback
kill -INT $LPID
wait_for_exit $LPID 30

PORT=$(free_port)
env -u DTF_TOKEN "$DTF" run train.lua --role=ps --index=0 --ps=127.0.0.1:$PORT --workers=127.0.0.1:1 \
  --set logdir="$SCRATCH/open" >"$SCRATCH/open.out" 2>&1 &
OPID=$!
check "a ps without a token says it accepts any peer" \
  wait_for_log "$SCRATCH/open.out" "ps 0: no token: any peer that reaches port $PORT can join" 60
expect_exit 1 "a worker with a token refuses a ps that asks for none" env DTF_TOKEN=sesame "$DTF" run train.lua \
  --role=worker --index=0 --ps=127.0.0.1:$PORT --workers=127.0.0.1:1 --set logdir="$SCRATCH/w"
expect_out "it does not ask for a token and this worker has one" "saying why"
expect_exit 1 "a second ps on the same port fails" "$DTF" run train.lua --role=ps --index=0 --ps=127.0.0.1:$PORT \
  --workers=127.0.0.1:1 --set logdir="$SCRATCH/twice"
expect_out "cannot listen on 127.0.0.1:$PORT: Address already in use" "naming the address (port in use)"
check "without a traceback (port in use)" no_traceback
kill $OPID; wait $OPID 2>/dev/null

expect_exit 2 "dtf local with a usage error exits 2" "$DTF" local train.lua --ps=1 --workers=1 --set bogus=1 \
  --set logdir="$SCRATCH/bogus"
expect_out "not restarting it" "and does not restart it"
check "it is said once per task at most (2 tasks)" \
  test "$(printf '%s\n' "$OUT" | grep -c "unknown hyperparameter 'bogus'")" -le 2
expect_exit 1 "dtf local with a model shape bug exits 1" "$DTF" local train.lua --ps=1 --workers=1 \
  --set modelfile="$SCRATCH/bad_model.lua" --set logdir="$SCRATCH/shape"
check "the worker is not retried" test "$(printf '%s\n' "$OUT" | grep -c 'restarting (')" -eq 0

finish
