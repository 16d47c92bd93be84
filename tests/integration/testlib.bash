# testlib.bash, sourced by the integration tests (not a test itself), from the
# repository root: counters, assertions, waits with deadlines, a scratch
# directory removed at exit, and the closing "NAME: N passed, M failed" line.
#
#   pass DESC / fail DESC          count one result (fail also prints the
#                                  tail of $SHOW_ON_FAIL, a file, when set)
#   check DESC COMMAND...          pass if COMMAND succeeds, else fail
#   expect_exit CODE DESC COMMAND...   run it, output in $OUT, pass if it exits CODE
#   expect_out ERE DESC            pass if the last $OUT has a line matching ERE
#   ge A B                         A >= B as numbers
#   log_has FILE ERE               FILE has a line matching ERE now (grep -E)
#   log_has_text FILE TEXT         FILE holds TEXT now (grep -F)
#   wait_until SECONDS COMMAND...  COMMAND every 0.05 s until it succeeds (0)
#                                  or SECONDS pass (1)
#   wait_for_log FILE ERE [SECONDS]    until log_has FILE ERE (default 60 s);
#                                  says what it gave up on
#   running PID / exited PID       whether PID is still running
#   wait_for_exit PID SECONDS      until PID (a child) exits; RC = its status,
#                                  or 124 when it was still running and killed
#   free_port                      a free TCP port on loopback
#   finish                         the closing line; the script's status
#
# No sleep stands in for an event: wait for the event with a deadline. A
# deadline is a bound on a hang, not a duration: the waits return as soon as
# the event happens, so deadlines are generous.
set -u
BUILD=${1:?usage: $0 BUILD_DIR}
DTF="$PWD/$BUILD/dtf"
[ -x "$DTF" ] || DTF="$BUILD/dtf"
ROOT=$PWD
NAME=$(basename "$0" .sh)
PASSED=0
FAILED=0
SCRATCH=$(mktemp -d "/tmp/dtf-$NAME.XXXXXX")
SHOW_ON_FAIL=
export OPENBLAS_NUM_THREADS=1

cleanup() {
  # Kill whatever a test left running in its process group's children.
  pkill -P $$ 2>/dev/null || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

# A free TCP port on loopback (bound, read, released).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- results -------------------------------------------------------------------

pass() { PASSED=$((PASSED + 1)); echo "ok $*"; }
fail() {
  FAILED=$((FAILED + 1)); echo "not ok $*"
  if [ -n "$SHOW_ON_FAIL" ]; then tail -n 30 "$SHOW_ON_FAIL" 2>/dev/null | sed 's/^/    /'; fi
}
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

# ---- logs and waits -------------------------------------------------------------

# A file that does not exist yet has no line: no error, just false.
log_has() { grep -qE -- "$2" "$1" 2>/dev/null; }
log_has_text() { grep -qF -- "$2" "$1" 2>/dev/null; }

# Microseconds since the epoch ($EPOCHREALTIME without its point).
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

wait_until() {
  local end
  end=$(( $(now_us) + $(awk -v s="$1" 'BEGIN { printf "%d", s * 1000000 }') ))
  shift
  until "$@"; do
    [ "$(now_us)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

wait_for_log() {
  local secs=${3:-60}
  wait_until "$secs" log_has "$1" "$2" && return 0
  echo "  (gave up after $secs s waiting for /$2/ in $(basename "$1"))"
  return 1
}

# (bash reaps its children as they end, keeping their status for wait, so
# kill -0 fails as soon as a child has exited)
running() { kill -0 "$1" 2>/dev/null; }
exited() { ! kill -0 "$1" 2>/dev/null; }

wait_for_exit() {
  local pid=$1
  if wait_until "$2" exited "$pid"; then
    wait "$pid"; RC=$?
  else
    RC=124; kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  fi
}

finish() {
  echo "$NAME: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
