#!/usr/bin/env bash
# The bf16 wire (wire_dtype=bf16) end to end with real processes: a pull
# carries exactly the bf16 rounding of the ps's float32 parameters and a
# pushed gradient lands, with every float body at 2 bytes a value (the ps's
# byte counters, to the byte); a mixed cluster is refused both ways with a
# message naming both dtypes; a bad value is a usage error; training with a
# bf16 wire reaches the accuracy of an fp32 one (MLP, one epoch, sync and
# async); checkpoints stay float32. DTF_TEST_CNN=1 adds the CNN (500 steps,
# sync and async), which takes minutes on two cores.
. "$(dirname "$0")/testlib.bash"

acc_of() { printf '%s\n' "$OUT" | sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p' | tail -n 1; }
absdiff_le() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= m) }'; }
stat_of() { sed -nE "s/^stat $2=([0-9]+)$/\1/p" "$1"; }

# ---- values and bytes over a real socket ------------------------------------
# P is odd and large: many vector blocks of the conversions and a tail.
P=100003
for dt in fp32 bf16; do
  port=$(free_port)
  "$DTF" run tests/integration/ps_only.lua -- "$port" P=$P wire_dtype=$dt >"$SCRATCH/ps_$dt.log" 2>&1 &
  ps=$!
  expect_exit 0 "$dt client: pull, push, pull against ps_only" \
    "$DTF" run tests/integration/wire_client.lua -- "$port" $P $dt
  printf '%s\n' "$OUT" | grep -E '^(not )?ok ' | sed 's/^/  /'
  expect_out "^ok $dt pull of 0..P-1 carries exactly" "$dt: the pulled values are the $dt ones"
  expect_out "^ok $dt push of 0.5s applied" "$dt: the pushed gradient is applied"
  wait "$ps"
  # in: HELLO (40 + 24), PULL, PUSH (40 + body), PULL, WORKER_DONE; out:
  # HELLO_REPLY (40 + 24), PULL_REPLY twice (40 + body), PUSH_REPLY, DONE_REPLY
  size=4; [ $dt = bf16 ] && size=2
  in=$(stat_of "$SCRATCH/ps_$dt.log" bytes_in) out=$(stat_of "$SCRATCH/ps_$dt.log" bytes_out)
  check "$dt: the ps read $in bytes = 224 + $size x P" test "${in:-0}" -eq $((224 + size * P))
  check "$dt: the ps sent $out bytes = 224 + 2 x $size x P" test "${out:-0}" -eq $((224 + 2 * size * P))
done

# ---- a mixed cluster -----------------------------------------------------------
port=$(free_port)
"$DTF" run tests/integration/ps_only.lua -- "$port" P=1000 wire_dtype=bf16 >"$SCRATCH/ps_mixed.log" 2>&1 &
ps=$!
expect_exit 3 "an fp32 client of a bf16 ps is refused" \
  "$DTF" run tests/integration/wire_client.lua -- "$port" 1000 fp32
expect_out "refused: ps 0 at 127.0.0.1:$port: worker 0 uses wire_dtype=fp32 but this ps uses wire_dtype=bf16 \(a mixed cluster\)" \
  "the client's error names both dtypes"
kill "$ps" 2>/dev/null; wait "$ps" 2>/dev/null
check "the ps logs the refusal" grep -q "closing connection from worker 0 .*: worker 0 uses wire_dtype=fp32 but this ps uses wire_dtype=bf16" "$SCRATCH/ps_mixed.log"

pport=$(free_port) wport=$(free_port)
spec=(--ps=127.0.0.1:$pport --workers=127.0.0.1:$wport --set logdir="$SCRATCH/mixed")
"$DTF" run train.lua --role=ps --index=0 "${spec[@]}" --set done_timeout=5 >"$SCRATCH/ps_train.log" 2>&1 &
ps=$!
expect_exit 1 "a bf16 worker of an fp32 ps (train.lua) exits 1" \
  "$DTF" run train.lua --role=worker --index=0 "${spec[@]}" --set wire_dtype=bf16 --set trainsteps=5
expect_out "dtf: ps 0 at 127.0.0.1:$pport: worker 0 uses wire_dtype=bf16 but this ps uses wire_dtype=fp32 \(a mixed cluster\): every task of a training must set the same wire_dtype" \
  "the worker says what to fix"
kill "$ps" 2>/dev/null; wait "$ps" 2>/dev/null

expect_exit 2 "wire_dtype=fp16 is a usage error" "$DTF" run train.lua --set wire_dtype=fp16
expect_out "wire_dtype" "the message names the key"
cat >"$SCRATCH/bad.lua" <<'EOF'
local ok, err = pcall(require('dtf.ps').connect, { addrs = { '127.0.0.1:1' }, P = 10, wire_dtype = 'int8' })
print(ok, err)
EOF
expect_exit 0 "ps.connect with wire_dtype=int8" "$DTF" run "$SCRATCH/bad.lua"
expect_out "ps.connect: option wire_dtype 'int8' is not fp32 or bf16" "ps.connect names the option and the value"

# ---- accuracy: bf16 against fp32 -----------------------------------------------
# Sync is deterministic (the same accuracy to the digit run after run), so
# the two wires are compared directly: measured fp32 0.8570, bf16 0.8532
# (bf16 was 0.8555 before net merged main, issue 13 and the perf kernels).
declare -A ACC
for dt in fp32 bf16; do
  expect_exit 0 "MLP one epoch, sync, 2 ps + 2 workers, $dt wire" "$DTF" local train.lua --ps=2 --workers=2 \
    --set sync=true --set wire_dtype=$dt --set logevery=100000 --set logdir="$SCRATCH/sync_$dt" \
    --set checkpoint_dir="$SCRATCH/ckpt_$dt" --set checkpoint_secs=1000
  ACC[sync_$dt]=$(acc_of); echo "sync $dt test accuracy: ${ACC[sync_$dt]:-none}"
done
check "sync: bf16 accuracy ${ACC[sync_bf16]:-none} within 0.01 of fp32's ${ACC[sync_fp32]:-none}" \
  absdiff_le "${ACC[sync_bf16]:-}" "${ACC[sync_fp32]:-}" 0.01

# The ps keeps float32: the checkpoint it wrote at the end of a bf16 run
# holds F32 tensors only (safetensors header).
ck=$(ls "$SCRATCH"/ckpt_bf16/*ps0*.safetensors 2>/dev/null | tail -n 1)
check "a bf16 run's ps checkpoint (${ck:-none}) holds float32 tensors only" python3 - "${ck:-/nonexistent}" <<'EOF'
import json, struct, sys
with open(sys.argv[1], 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    h = json.loads(f.read(n))
dt = {v['dtype'] for k, v in h.items() if k != '__metadata__'}
sys.exit(0 if dt == {'F32'} else 1)
EOF

# Async is not deterministic and its last iterate scatters: one epoch gave
# fp32 0.807-0.844 (mean 0.834) and bf16 0.813-0.850 (mean 0.835) over 13
# runs each on a loaded machine, so single runs cannot be compared to 0.01;
# the means agree to 0.002. Over cluster.sh's 3752 global steps (13 runs
# each) fp32 gave 0.840-0.872 (mean 0.859), bf16 0.845-0.869 (mean 0.860):
# bf16 must reach 0.83 there, 0.015 under its lowest run.
expect_exit 0 "MLP 3752 steps, async, 2 ps + 2 workers, bf16 wire" "$DTF" local train.lua --ps=2 \
  --workers=2 --set wire_dtype=bf16 --set trainsteps=3752 --set logevery=100000 --set logdir="$SCRATCH/async"
acc=$(acc_of); echo "async bf16 test accuracy: ${acc:-none}"
check "async bf16 accuracy ${acc:-none} >= 0.83" ge "${acc:-0}" 0.83

# ---- the CNN (DTF_TEST_CNN=1) ---------------------------------------------------
# 500 steps of the CNN take 1-3 minutes a run on two shared cores, more than
# all of make test's other integration tests together: opt in.
if [ "${DTF_TEST_CNN:-0}" = 1 ]; then
  for dt in fp32 bf16; do
    expect_exit 0 "CNN 500 steps, sync, 2 ps + 2 workers, $dt wire" "$DTF" local train.lua --ps=2 \
      --workers=2 --set model=cnn --set sync=true --set trainsteps=500 --set wire_dtype=$dt \
      --set logevery=100000 --set logdir="$SCRATCH/cnn_$dt"
    ACC[cnn_$dt]=$(acc_of); echo "CNN sync $dt test accuracy: ${ACC[cnn_$dt]:-none}"
  done
  check "CNN sync: bf16 accuracy ${ACC[cnn_bf16]:-none} within 0.01 of fp32's ${ACC[cnn_fp32]:-none}" \
    absdiff_le "${ACC[cnn_bf16]:-}" "${ACC[cnn_fp32]:-}" 0.01
else
  echo "skip the CNN's 500 steps (DTF_TEST_CNN=1 runs them: minutes on two cores)"
fi

finish
