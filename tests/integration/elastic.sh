#!/usr/bin/env bash
# tests/integration/elastic.sh BUILD_DIR: a training is its model, not its
# cluster. dtf local with 2 ps + 2 workers is stopped mid-run with Ctrl-C
# (SIGINT: every ps checkpoints as it stops), then started again with 3 ps +
# 3 workers on the same checkpoint_dir: every ps restores its range, cut
# from the 2-ps checkpoints (resharded), at the stopped step, the workers go
# on from there and the run completes with its accuracy. One process then
# goes on from the 3-ps checkpoints, and another model in the same
# directory starts fresh, saying why.
. "$(dirname "$0")/testlib.bash"

CK=$SCRATCH/ck
STEPS=3000
OUTF=$SCRATCH/first.out
SHOW_ON_FAIL=$OUTF
# async; the gradient of every global step reaches both ps, so both shards'
# steps stay within a few of each other
"$DTF" local train.lua --ps=2 --workers=2 --set trainsteps=$STEPS --set logevery=100 \
  --set checkpoint_dir="$CK" --set checkpoint_secs=1 --set logdir="$SCRATCH/first" >"$OUTF" 2>&1 &
LPID=$!
check "the first run trains past global step 800" \
  wait_for_log "$OUTF" 'Worker 0: training step [0-9]+ done \(global step: ([89][0-9]{2}|[1-9][0-9]{3})\)' 300
kill -INT $LPID
wait_for_exit $LPID 60
check "Ctrl-C stops it (status $RC)" test "$RC" -eq 130
# the step each ps checkpointed last, as it stopped
last_ckpt() { sed -nE "s/^ps$1 +\\| .*ps $1: checkpoint at step ([0-9]+): .*/\\1/p" "$OUTF" | tail -n 1; }
S0=$(last_ckpt 0); S1=$(last_ckpt 1)
echo "stopped: ps 0 at step ${S0:-?}, ps 1 at ${S1:-?}"
check "both ps checkpointed as they stopped (${S0:-?}, ${S1:-?})" test -n "$S0" -a -n "$S1"
check "the files carry the sharding" test -f "$CK/ckpt-$(printf '%08d' "${S0:-0}")-ps0-of-2.safetensors"

# What the stopped model scores: its shards merged by dtf export.
expect_exit 0 "export the stopped training" "$DTF" export "$CK" "$SCRATCH/stopped.safetensors"
mkdir -p "$SCRATCH/empty"
expect_exit 1 "export of a directory without checkpoints fails" "$DTF" export "$SCRATCH/empty" "$SCRATCH/none.safetensors"
expect_out "^dtf export: $SCRATCH/empty: no complete set of ps checkpoints" "with one line naming the directory"
check "and no Lua traceback" test "$(printf '%s\n' "$OUT" | grep -c traceback)" -eq 0
expect_exit 0 "and evaluate it" "$DTF" run tests/integration/eval_export.lua -- "$SCRATCH/stopped.safetensors"
A=$(sed -nE 's/^export accuracy: ([0-9.]+).*/\1/p' <<<"$OUT")

# 3 ps + 3 workers with nothing left to train: the workers evaluate the
# parameters the new ps tasks restored, which must be the stopped model's.
OUTF=$SCRATCH/resharded.out
SHOW_ON_FAIL=$OUTF
expect_exit 0 "3 ps + 3 workers on the same checkpoint_dir, at the stopped step" "$DTF" local train.lua --ps=3 \
  --workers=3 --set trainsteps="${S0:-1}" --set checkpoint_dir="$CK" --set logdir="$SCRATCH/resharded"
printf '%s\n' "$OUT" >"$OUTF"
for i in 0 1 2; do
  expect_out "^ps$i +\\| .*ps $i: restored step ${S0:-none} from 2 ps checkpoints in $CK \\(ps0@${S0:-none} ps1@${S1:-none}(, each shard's newest)?\\), resharded from 2 to 3 ps tasks" \
    "ps $i restores the stopped step ${S0:-?}, resharded from 2 ps"
done
B=$(sed -nE 's/.*Test accuracy: ([0-9.]+).*/\1/p' "$OUTF")
check "the resharded parameters are the stopped model's (accuracy ${B:-none} = ${A:-none})" \
  test -n "$A" -a "${B:-x}" = "${A:-y}"

OUTF=$SCRATCH/second.out
SHOW_ON_FAIL=$OUTF
expect_exit 0 "3 ps + 3 workers go on to the end" "$DTF" local train.lua --ps=3 --workers=3 \
  --set trainsteps=$STEPS --set logevery=100 --set checkpoint_dir="$CK" --set logdir="$SCRATCH/second"
printf '%s\n' "$OUT" >"$OUTF"
# (deploy.log has every step line; stdout every 100th)
first_global() { sed -nE "s/.*Worker $1: training step 1 done \\(global step: ([0-9]+)\\)/\\1/p" "$SCRATCH/second/deploy.log" | head -n 1; }
G=$(first_global 0)
check "worker 0 goes on from there (its first global step ${G:-?} > ${S0:-?})" test "${G:-0}" -gt "${S0:-999999}"
check "and the new worker 2 trains too" log_has "$OUTF" '^worker2 +\| .*Worker 2: training step [0-9]+ done'
# (async: the pushes in flight at the end may take it a step or two past)
check "it ends at the training's last step" log_has "$OUTF" "Worker 0: training step [0-9]+ done \\(global step: 3[0-9]{3}\\)"
ACC=$(sed -nE 's/.*Test accuracy: ([0-9.]+).*/\1/p' "$OUTF")
# Async, the last iterate of Adam: 0.837-0.861 over 5 runs of this test.
check "accuracy holds (${ACC:-none} >= 0.80)" ge "${ACC:-0}" 0.80
check "the 3-ps checkpoints are there" test -n "$(ls "$CK"/ckpt-*-ps2-of-3.safetensors 2>/dev/null)"

# One process, 100 more steps, from the 3-ps checkpoints: resharded to one.
expect_exit 0 "one process goes on from them" "$DTF" run train.lua --set trainsteps=$((STEPS + 100)) \
  --set checkpoint_dir="$CK" --set evaluate=false --set logdir="$SCRATCH/one"
expect_out "one process: restored step [0-9]+ from 3 ps checkpoints in $CK .*resharded from 3 to 1 ps tasks" \
  "resharded from 3 ps to one"
expect_out "Worker 0: training step [0-9]+ done \\(global step: $((STEPS + 100))\\)" "and trains the steps left"

# Another model in the same directory starts fresh and says why.
expect_exit 0 "another model in the same checkpoint_dir" "$DTF" run train.lua --set hidden=64 --set trainsteps=20 \
  --set checkpoint_dir="$CK" --set evaluate=false --set logdir="$SCRATCH/other"
expect_out "one process: the [0-9]+ checkpoints in $CK belong to another model \\(layout [0-9a-f]{16}; this model is [0-9a-f]{16}\\): starting from the initial parameters" \
  "starts fresh with a line that says why"
check "and leaves the first model's files alone" test -n "$(ls "$CK"/ckpt-*-ps2-of-3.safetensors 2>/dev/null)"

finish
