#!/usr/bin/env bash
# Training in one process on real Fashion-MNIST: the MLP reaches 0.84 test
# accuracy after one epoch at batch 64; the CNN learns within 500 steps.
. "$(dirname "$0")/testlib.bash"

expect_exit 0 "MLP, one epoch at batch 64" "$DTF" run train.lua --set batchsize=64 --set logevery=100 \
  --set logdir="$SCRATCH/mlp" --set save="$SCRATCH/mlp.safetensors"
acc=$(printf '%s\n' "$OUT" | sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p')
echo "MLP test accuracy: ${acc:-none}"
check "MLP accuracy ${acc:-none} >= 0.84" ge "${acc:-0}" 0.84
expect_out "Worker 0: training step 938 done \(global step: 938\)" "one epoch is 938 steps"
expect_out "Training elapsed time: [0-9.]+ s" "logs the elapsed time"
check "deploy.log has every step" grep -q "training step 937 done" "$SCRATCH/mlp/deploy.log"
check "deploy.log is in the seed's format" grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8},[0-9]{3} - dtf - INFO - Worker 0: training step 1 done \(global step: 1\)$' "$SCRATCH/mlp/deploy.log"
check "the trained model was saved" test -s "$SCRATCH/mlp.safetensors"

expect_exit 0 "CNN, 500 steps at batch 64" "$DTF" run train.lua --set model=cnn --set trainsteps=500 \
  --set batchsize=64 --set logevery=100 --set lossevery=100 --set logdir="$SCRATCH/cnn"
first=$(printf '%s\n' "$OUT" | sed -nE 's/.*mean loss ([0-9.]+) over steps 1-100.*/\1/p')
last=$(printf '%s\n' "$OUT" | sed -nE 's/.*mean loss ([0-9.]+) over steps 401-500.*/\1/p')
acc=$(printf '%s\n' "$OUT" | sed -nE 's/.*Test accuracy: ([0-9.]+) .*/\1/p')
echo "CNN mean loss: steps 1-100 ${first:-none}, steps 401-500 ${last:-none}; test accuracy ${acc:-none}"
check "CNN loss falls (${first:-?} -> ${last:-?})" awk -v a="${first:-0}" -v b="${last:-9}" 'BEGIN { exit !(b < a) }'
check "CNN accuracy ${acc:-none} > 0.75" ge "${acc:-0}" 0.7501

finish
