#!/usr/bin/env bash
# overlap=true (async): a step computes while the previous step's push and
# pull cross the link. The client's exchange_start / exchange_finish over a
# real socket (the pull goes ahead of the push: one round older), misuse
# refused, sync refused; a ps killed and restarted from its checkpoint
# under an overlapping worker loses and doubles nothing; train.lua: sync
# ignores overlap (the saved model byte for byte), and async MLP training
# with it reaches its measured accuracy.
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
acc_of() { printf '%s\n' "$OUT" | sed -nE 's/.*Test accuracy: ([0-9.]+) \(10000 images\).*/\1/p' | tail -n 1; }

# ---- the client's rounds against ps_only ---------------------------------------------
port=$(free_port)
# 3M floats: 12 MB each way, more than the sockets take at once
"$DTF" run "$HERE/ps_only.lua" -- "$port" P=3000001 >"$SCRATCH/ps.log" 2>&1 &
ps=$!
check "the ps is up" wait_for_log "$SCRATCH/ps.log" 'serving parameters'
expect_exit 0 "exchange_start / exchange_finish against ps_only" "$DTF" run "$HERE/overlap_client.lua" -- "$port" 3000001
printf '%s\n' "$OUT" | grep -E '^(not )?ok ' | sed 's/^/  /'
expect_out '^ok exchange_finish with nothing in flight' "a finish with nothing in flight is refused"
expect_out '^ok a pull while a round is in flight is refused' "another call while a round is in flight is refused"
expect_out '^ok round 1: the pull went ahead of its push' "the pull goes ahead of the push"
expect_out '^ok round 2: the pull carries round 1' "the next round's pull carries the previous push"
expect_out '^ok a pull after round 2 sees both pushes' "every push lands"
expect_out "^ok round 3's push of 12000004 bytes lands while this thread leaves the client alone" \
  "the exchange thread carries a round while the worker computes"
expect_out '^ok round 3: the pull carries rounds 1 and 2' "the third round's pull carries the two before"
expect_out "^ok round 5's gradient is tagged with the step of the parameters it came from" \
  "a pushed gradient is tagged with the step it was computed from (the ps's staleness)"
wait_for_exit $ps 10
check "the ps exits 0 (exit $RC)" test "$RC" -eq 0

# The bf16 wire: the gradient is narrowed once, straight from the worker's
# buffer, and the same rounds come out (lr 1, P < 256: every value exact).
port=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$port" P=101 lr=1 wire_dtype=bf16 >"$SCRATCH/ps_bf16.log" 2>&1 &
ps=$!
expect_exit 0 "the same rounds over the bf16 wire" "$DTF" run "$HERE/overlap_client.lua" -- "$port" 101 bf16 1
printf '%s\n' "$OUT" | grep -E '^(not )?ok ' | sed 's/^/  /'
expect_out '^ok round 2: the pull carries round 1' "bf16: the next round's pull carries the previous push"
expect_out '^ok round 3: the pull carries rounds 1 and 2' "bf16: every push lands"
expect_out "^ok round 5's gradient is tagged" "bf16: the tags"
wait_for_exit $ps 10
check "the bf16 ps exits 0 (exit $RC)" test "$RC" -eq 0

port=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$port" P=10 sync=true >"$SCRATCH/ps_sync.log" 2>&1 &
ps=$!
cat >"$SCRATCH/sync.lua" <<LUA
local T = require 'dtf.tensor'
local c = assert(require('dtf.ps').connect { addrs = { '127.0.0.1:$port' }, P = 10,
                 layout_checksum = '00000000c0ffee00', connect_timeout = 10 })
print(c:exchange_start(T.zeros(10), T.zeros(10), 0))
c:close()
LUA
expect_exit 0 "exchange_start against a sync ps" "$DTF" run "$SCRATCH/sync.lua"
expect_out "nil	exchange_start: the ps tasks train synchronously" "a sync ps refuses it, saying why"
kill $ps 2>/dev/null; wait $ps 2>/dev/null

# ---- a ps restarted from its checkpoint under an overlapping worker -------------------
PORT=$(free_port)
CK=$SCRATCH/ck
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps1.log" 2>&1 &
PS=$!
check "the ps is up" wait_for_log "$SCRATCH/ps1.log" 'serving parameters'
"$DTF" run "$HERE/ps_faults_worker.lua" -- ps=127.0.0.1:$PORT steps=60 sleep=0.05 reconnect=20 overlap=true \
  >"$SCRATCH/w.log" 2>&1 &
W=$!
check "the ps checkpoints step 15" wait_for_log "$SCRATCH/ps1.log" 'checkpoint at step 15:'
kill -9 $PS; wait $PS 2>/dev/null
check "the worker loses the killed ps" wait_for_log "$SCRATCH/w.log" \
  "lost ps 0 at 127.0.0.1:$PORT .*reconnecting for up to 20 s"
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" checkpoint_dir="$CK" checkpoint_steps=5 >"$SCRATCH/ps2.log" 2>&1 &
PS=$!
wait_for_exit $W 60
check "the overlapping worker survives the ps restart (exit $RC)" test "$RC" -eq 0
wait_for_exit $PS 10
check "the restarted ps exits 0 (exit $RC)" test "$RC" -eq 0
check "the worker reconnected" log_has "$SCRATCH/w.log" "reconnected to ps 0 at 127.0.0.1:$PORT"
check "the parameters match the global step after the restart (nothing lost or doubled)" log_has "$SCRATCH/w.log" \
  'worker 0: finished at global step [0-9]+, max deviation 0\.00'
if [ "$FAILED" -ne 0 ]; then tail -n 30 "$SCRATCH/w.log" "$SCRATCH/ps1.log" "$SCRATCH/ps2.log"; fi

# ---- train.lua ------------------------------------------------------------------------
# Sync ignores overlap: the same model, byte for byte.
for ov in false true; do
  expect_exit 0 "MLP 300 steps, sync, 2 ps + 2 workers, overlap=$ov" "$DTF" local train.lua --ps=2 --workers=2 \
    --set sync=true --set overlap=$ov --set trainsteps=300 --set logevery=100000 --set evaluate=false \
    --set logdir="$SCRATCH/sync_$ov" --set save="$SCRATCH/sync_$ov.safetensors"
done
# the tensors' names, shapes and bytes (the metadata says when and where)
check "sync: overlap=true saves the same model as overlap=false, bit for bit" python3 - \
  "$SCRATCH/sync_false.safetensors" "$SCRATCH/sync_true.safetensors" <<'PY'
import json, struct, sys
def tensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    h.pop('__metadata__', None)
    return {k: (v['dtype'], v['shape'], data[v['data_offsets'][0]:v['data_offsets'][1]]) for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
sys.exit(0 if a and a == b else 1)
PY

# Async with overlap computes on parameters one round older (this worker's
# last two gradients missing instead of none). Over cluster.sh's 3752
# global steps (2 ps + 2 workers) 5 runs gave 0.816-0.850 (mean 0.827; overlap=false 0.850-0.867, mean
# 0.859); it must reach 0.78, 0.035 under its lowest run.
expect_exit 0 "MLP 3752 steps, async, 2 ps + 2 workers, overlap=true" "$DTF" local train.lua --ps=2 \
  --workers=2 --set overlap=true --set trainsteps=3752 --set logevery=100000 --set logdir="$SCRATCH/async"
acc=$(acc_of); echo "async overlap test accuracy: ${acc:-none}"
check "async overlap accuracy ${acc:-none} >= 0.78" ge "${acc:-0}" 0.78

finish
