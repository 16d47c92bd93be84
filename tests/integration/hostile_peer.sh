#!/usr/bin/env bash
# A ps under attack: garbage, a huge length, another protocol version, slow
# and half frames, a wrong token, a HELLO from another model, requests
# before HELLO or outside the shard (hostile_peer.py) must each close only
# that connection, with a log line naming the peer; then a well-behaved
# client (hostile_peer.lua) must complete and the ps must exit 0.
#   tests/integration/hostile_peer.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"

HERE=$ROOT/tests/integration
TOKEN=sesame-$$
P=1000
SUM=00000000c0ffee00
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$DTF" run "$HERE/ps_only.lua" -- "$PORT" P=$P token="$TOKEN" checksum=$SUM hello_timeout=2 \
  >"$SCRATCH/ps.log" 2>&1 &
PS_PID=$!
for _ in $(seq 100); do
  grep -q 'serving parameters' "$SCRATCH/ps.log" && break
  sleep 0.1
done
check "the ps is up on port $PORT" grep -q "ps 0: serving parameters \[0, $P) of $P" "$SCRATCH/ps.log"

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
for _ in $(seq 100); do grep -q held "$SCRATCH/hold.out" && break; sleep 0.05; done
expect_exit 0 "a well-behaved client completes beside a half-open peer" \
  "$DTF" run "$HERE/hostile_peer.lua" -- "$PORT" "$TOKEN" $P $SUM
expect_out '^client: ok' "the client checked the values it pulled"
wait $HOLD_PID

rc=0
for _ in $(seq 50); do kill -0 $PS_PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $PS_PID 2>/dev/null; then
  fail "the ps exits once its worker is done"; kill $PS_PID
else
  wait $PS_PID; rc=$?
  check "the ps exits 0 (exit $rc)" test $rc -eq 0
fi

logged() { grep -qE -- "$1" "$SCRATCH/ps.log"; }
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
finish
