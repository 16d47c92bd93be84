# testlib.bash, sourced by the integration tests (not a test itself): counters, assertions, a scratch directory
# removed at exit, and the closing "NAME: N passed, M failed" line.
set -u
BUILD=${1:?usage: $0 BUILD_DIR}
DTF="$PWD/$BUILD/dtf"
[ -x "$DTF" ] || DTF="$BUILD/dtf"
ROOT=$PWD
NAME=$(basename "$0" .sh)
PASSED=0
FAILED=0
SCRATCH=$(mktemp -d "/tmp/dtf-$NAME.XXXXXX")
export OPENBLAS_NUM_THREADS=1

cleanup() {
  # Kill whatever a test left running in its process group's children.
  pkill -P $$ 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# A free TCP port on loopback (bound, read, released).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pass() { PASSED=$((PASSED + 1)); echo "ok $*"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok $*"; }
check() { # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# expect_exit CODE DESCRIPTION COMMAND...: runs it, keeps output in $OUT
expect_exit() {
  local want=$1 what=$2; shift 2
  OUT=$("$@" 2>&1); local rc=$?
  if [ "$rc" -eq "$want" ]; then pass "$what"; else fail "$what (exit $rc, wanted $want)"; printf '%s\n' "$OUT" | tail -n 20; fi
}
# expect_out PATTERN DESCRIPTION: grep -E on the last $OUT
expect_out() {
  if printf '%s\n' "$OUT" | grep -qE -- "$1"; then pass "$2"; else fail "$2 (no /$1/ in output)"; printf '%s\n' "$OUT" | tail -n 20; fi
}
# A float comparison: ge A B
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
finish() {
  echo "$NAME: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
