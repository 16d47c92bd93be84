#!/usr/bin/env bash
# A ps under attack: garbage, a huge length, another protocol version, slow
# and half frames, a wrong token, a HELLO from another model, requests
# before HELLO or outside the shard (hostile_peer.py) must each close only
# that connection, with a log line naming the peer; then a well-behaved
# client (hostile_peer.lua) must complete and the ps must exit 0.
# Then a flood (hostile_peer.py flood) against a ps with a 400 KB shard:
# peers that pipeline thousands of PULLs and never read, peers that park
# PULLs, connections past max_connections; the ps's memory must stay
# bounded (its peak RSS is reported) and a good client is still served.
#   tests/integration/hostile_peer.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
TOKEN=sesame-$$
P=1000
SUM=00000000c0ffee00
PORT=$(free_port)

"$DTF" run "$HERE/ps_only.lua" -- "$PORT" P=$P token="$TOKEN" checksum=$SUM hello_timeout=2 \
  >"$SCRATCH/ps.log" 2>&1 &
PS_PID=$!
check "the ps is up on port $PORT" wait_for_log "$SCRATCH/ps.log" "ps 0: serving parameters \[0, $P\) of $P"

python3 "$HERE/hostile_peer.py" "$PORT" "$TOKEN" $P $SUM >"$SCRATCH/hostile.out" 2>&1
while read -r line; do
  case $line in
    "ok "*) pass "${line#ok }" ;;
    "not ok "*) fail "${line#not ok }" ;;
    *) echo "$line" ;;
  esac
done <"$SCRATCH/hostile.out"

# A half frame held open while the good client trains.
python3 "$HERE/hostile_peer.py" hold "$PORT" 3 >"$SCRATCH/hold.out" 2>&1 &
HOLD_PID=$!
check "a peer holds half a frame" wait_for_log "$SCRATCH/hold.out" '^held$'
expect_exit 0 "a well-behaved client completes beside a half-open peer" \
  "$DTF" run "$HERE/hostile_peer.lua" -- "$PORT" "$TOKEN" $P $SUM
expect_out '^client: ok' "the client checked the values it pulled"
wait $HOLD_PID

wait_for_exit $PS_PID 10
if [ "$RC" -eq 124 ]; then fail "the ps exits once its worker is done"
else check "the ps exits 0 (exit $RC)" test "$RC" -eq 0; fi

logged() { log_has "$SCRATCH/ps.log" "$1"; }
check "garbage is logged with the peer's address" logged 'closing connection from 127\.0\.0\.1:[0-9]+: bad magic'
check "a wrong token is logged with the worker's index" logged 'closing connection from worker 0 \(127\.0\.0\.1:[0-9]+\): wrong token'
check "another model is logged" logged 'worker runs a different model: layout checksum 00000000c0ffeeff'
check "a disconnect in the header is logged" logged 'disconnected mid-frame \(23 of 40 header bytes\)'
check "a disconnect in a PUSH body is logged" logged 'disconnected mid-frame \(PUSH body: [0-9]+ of 4000 bytes\)'
check "a silent peer is logged" logged 'no HELLO within 2 s'
check "the ps stops when its worker is done" logged 'all 1 workers are done; stopping at step 3'
check "the ps reports its bad peers" logged 'stat bad_peers=(1[5-9]|2[0-9])'
check "no token reaches the log" bash -c "! grep -q -e '$TOKEN' -e not-the-token '$SCRATCH/ps.log'"
if [ "$FAILED" -ne 0 ]; then echo "--- ps log"; cat "$SCRATCH/ps.log"; fi

# ---- a flood --------------------------------------------------------------------------
BIGP=100000   # a 400 KB shard (a 2-ps MNIST shard is 155 KB)
NCONN=60 NPULL=2000 EXTRA=20 MAXC=72
PORT=$(free_port)
"$DTF" run "$HERE/ps_only.lua" -- "$PORT" P=$BIGP token="$TOKEN" checksum=$SUM hello_timeout=5 \
  max_connections=$MAXC >"$SCRATCH/flood-ps.log" 2>&1 &
PS_PID=$!
check "the ps to flood is up" wait_for_log "$SCRATCH/flood-ps.log" 'serving parameters'
kb() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$PS_PID/status"; }
RSS0=$(kb VmRSS)
python3 "$HERE/hostile_peer.py" flood "$PORT" "$TOKEN" $BIGP $SUM $NCONN $NPULL $EXTRA 8 >"$SCRATCH/flood.out" 2>&1 &
FLOOD_PID=$!
check "the flood runs" wait_for_log "$SCRATCH/flood.out" '^flooding$'
# "Under the flood": once the ps has paused a peer that does not read (its
# stats, asked over a connection of its own).
cat >"$SCRATCH/pauses.lua" <<'LUA'
local ps = require 'dtf.ps'
local port, token, P, checksum = arg[1], arg[2], tonumber(arg[3]), arg[4]
local c = assert(ps.connect { addrs = { '127.0.0.1:' .. port }, role = 'observer', P = P,
                              layout_checksum = checksum, token = token, connect_timeout = 5, timeout = 5,
                              log = function() end })
print(assert(c:stats())[1].backpressure_pauses)
c:close()
LUA
paused_a_peer() { [ "$("$DTF" run "$SCRATCH/pauses.lua" -- "$PORT" "$TOKEN" $BIGP $SUM 2>/dev/null)" -gt 0 ] 2>/dev/null; }
check "the ps pauses the peers that do not read" wait_until 30 paused_a_peer
RSS1=$(kb VmRSS); HWM1=$(kb VmHWM)
expect_exit 0 "a good client is served during the flood" \
  "$DTF" run "$HERE/hostile_peer.lua" -- "$PORT" "$TOKEN" $BIGP $SUM
HWM2=$(kb VmHWM)
wait $FLOOD_PID
while read -r line; do
  case $line in
    "ok "*) pass "${line#ok }" ;;
    "not ok "*) fail "${line#not ok }" ;;
    *) echo "$line" ;;
  esac
done <"$SCRATCH/flood.out"
wait_for_exit $PS_PID 10
if [ "$RC" -eq 124 ]; then fail "the flooded ps exits once its worker is done"
else check "the flooded ps exits 0 (exit $RC)" test "$RC" -eq 0; fi
flood_stat() { sed -nE "s/^stat $1=([0-9]+)$/\1/p" "$SCRATCH/flood-ps.log"; }
QPEAK=$(flood_stat queued_peak)
echo "flooded ps: RSS $((RSS0 / 1024)) MB before, $((RSS1 / 1024)) MB under the flood, peak $((HWM2 / 1024)) MB;" \
  "replies queued at most $(( ${QPEAK:-0} / 1024 )) KB; $(flood_stat backpressure_pauses) backpressure pauses;" \
  "$(flood_stat refused) connections refused"
check "the ps's peak RSS grew by $(( (HWM2 - RSS0) / 1024 )) MB (< 48 MB) under $NCONN x $NPULL PULLs" \
  test $((HWM2 - RSS0)) -lt $((48 * 1024))
check "the queued replies stayed within the budget (${QPEAK:-?} bytes <= 2 x 400 KB x 3 + 4 MiB + $NCONN replies)" \
  test "${QPEAK:-999999999}" -le $(( 2 * 4 * BIGP * 3 + 4 * 1048576 + NCONN * 4 * BIGP ))
check "slow readers were paused (backpressure)" test "$(flood_stat backpressure_pauses)" -gt 0
check "connections past max_connections were refused" grep -q "refusing connection from .*: $MAXC connections open (max_connections)" "$SCRATCH/flood-ps.log"
check "the parked-pull floods were closed" grep -q 'more than 8 PULLs waiting for a step' "$SCRATCH/flood-ps.log"
if [ "$FAILED" -ne 0 ]; then grep -v 'accepted connection' "$SCRATCH/flood-ps.log" | tail -n 40; fi
finish
