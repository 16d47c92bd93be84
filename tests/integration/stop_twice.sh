#!/usr/bin/env bash
# tests/integration/stop_twice.sh BUILD_DIR: a ps asked twice to stop still
# writes its last checkpoint. A supervisor (dtf local did: the task's group,
# then the task) or an impatient user may send a second SIGTERM while the
# ps, stopping on the first, writes its checkpoint; the second used to find
# the default handler back (libevent's signal events were already deleted)
# and killed the ps before the file was complete. The shard is large (16M
# floats, 64 MB) so that the second signal lands while it writes.
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
port=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$port" P=16000000 checkpoint_dir="$SCRATCH/ck" >"$SCRATCH/ps.log" 2>&1 &
ps=$!
SHOW_ON_FAIL=$SCRATCH/ps.log
check "the ps is up" wait_for_log "$SCRATCH/ps.log" 'serving parameters' 60
# one gradient, so that the ps has a step to save
cat >"$SCRATCH/push.lua" <<LUA
local T = require 'dtf.tensor'
local c = assert(require('dtf.ps').connect { addrs = { '127.0.0.1:$port' }, P = 16000000,
                 layout_checksum = '00000000c0ffee00', connect_timeout = 10 })
local g = T.zeros(16000000)
g:fill(1)
assert(c:push(g, 0))
c:close()
LUA
expect_exit 0 "a worker pushes one gradient" "$DTF" run "$SCRATCH/push.lua"
kill -TERM "$ps"
check "the ps stops on the first SIGTERM" wait_for_log "$SCRATCH/ps.log" 'caught SIGTERM; stopping at step 1' 10
kill -TERM "$ps" 2>/dev/null
wait_for_exit "$ps" 60
# 0, or 143 when the second signal came after the checkpoint, once the ps
# had given the signals back; never killed before it
check "the ps exits by itself, not killed by the second SIGTERM mid-checkpoint (exit $RC)" \
  test "$RC" -eq 0 -o "$RC" -eq 143
check "it wrote its last checkpoint" log_has "$SCRATCH/ps.log" 'checkpoint at step 1: .*ckpt-00000001-ps0-of-1.safetensors'
"$DTF" run "$HERE/ps_only.lua" -- "$port" P=16000000 checkpoint_dir="$SCRATCH/ck" >"$SCRATCH/ps2.log" 2>&1 &
ps=$!
check "the checkpoint is whole: a new ps restores step 1 from it" \
  wait_for_log "$SCRATCH/ps2.log" 'restored step 1 from .*ckpt-00000001-ps0-of-1.safetensors' 60
kill "$ps" 2>/dev/null; wait "$ps" 2>/dev/null
finish
