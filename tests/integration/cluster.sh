#!/usr/bin/env bash
# Real ps and worker processes on loopback (dtf local): async and sync
# training reach 0.84 on Fashion-MNIST; sync with one worker matches the
# one-process run; the seed's configuration ends with every task exiting 0.
. "$(dirname "$0")/testlib.bash"

acc_of() { printf '%s\n' "$OUT" | sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p' | tail -n 1; }

# The seed's configuration: 2 ps, 2 workers, batch 20, learning rate 0.001, 200 steps.
expect_exit 0 "seed configuration: every task exits 0" "$DTF" local train.lua --ps=2 --workers=2 \
  --set batchsize=20 --set learningrate=0.001 --set trainsteps=200 --set logdir="$SCRATCH/seed"
last=$(printf '%s\n' "$OUT" | grep -E '^worker0 \| .*Worker 0: training step' | tail -n 1)
gs=$(sed -nE 's/.*global step: ([0-9]+)\).*/\1/p' <<<"$last")
echo "worker 0's last step line: $last"
check "worker 0 ends at global step ${gs:-none} >= 200" ge "${gs:-0}" 200
expect_out '^ps0 \| .*ps 0: serving parameters \[0, 39755\)' "ps 0 logs its range"
expect_out '^ps1 \| .*ps 1: serving parameters \[39755, 79510\)' "ps 1 logs its range"

expect_exit 0 "async, 2 ps + 2 workers" "$DTF" local train.lua --ps=2 --workers=2 \
  --set trainsteps=1876 --set logevery=200 --set logdir="$SCRATCH/async"
acc=$(acc_of); echo "async test accuracy: ${acc:-none}"
check "async accuracy ${acc:-none} >= 0.84" ge "${acc:-0}" 0.84

expect_exit 0 "sync, 2 ps + 2 workers" "$DTF" local train.lua --ps=2 --workers=2 --set sync=true \
  --set trainsteps=938 --set logevery=200 --set logdir="$SCRATCH/sync"
acc=$(acc_of); echo "sync test accuracy: ${acc:-none}"
check "sync accuracy ${acc:-none} >= 0.84" ge "${acc:-0}" 0.84

# Sync with one worker applies exactly the one-process updates.
expect_exit 0 "one process, 60 steps" "$DTF" run train.lua --set trainsteps=60 --set evaluate=false \
  --set logdir="$SCRATCH/one" --set save="$SCRATCH/one.safetensors"
expect_exit 0 "sync, 2 ps + 1 worker, 60 steps" "$DTF" local train.lua --ps=2 --workers=1 --set sync=true \
  --set trainsteps=60 --set evaluate=false --set logdir="$SCRATCH/sync1" --set save="$SCRATCH/sync1.safetensors"
expect_exit 0 "compare the two models" "$DTF" run tests/integration/compare_models.lua -- \
  "$SCRATCH/one.safetensors" "$SCRATCH/sync1.safetensors"
diff=$(sed -nE 's/.*max abs difference ([0-9.e+-]+).*/\1/p' <<<"$OUT"); echo "$OUT"
check "sync/1 worker equals one process (max diff ${diff:-none} <= 1e-5)" awk -v d="${diff:-1}" 'BEGIN { exit !(d <= 1e-5) }'

finish
