#!/usr/bin/env bash
# tests/integration/repl.sh BUILD_DIR: `dtf repl` with piped input (no
# prompts), and on a real terminal (python3's pty module) for the banner,
# Ctrl-C and Ctrl-D. repl_tmux.sh drives help(), printing and completion in
# tmux.
. "$(dirname "$0")/testlib.bash"

dtf=$DTF
tmp=$SCRATCH
OUTF=$tmp/out          # the REPL's output, shown when a check fails
SHOW_ON_FAIL=$OUTF
export HOME=$tmp DTF_HISTORY=$tmp/history

# repl INPUT: pipes INPUT into dtf repl; output (stdout+stderr) in $OUTF
repl() {
  printf '%s' "$1" | timeout 20 "$dtf" repl >"$OUTF" 2>&1
  rc=$?
}

# ---- piped input --------------------------------------------------------------
repl $'1+1\n'
check "1+1 prints 2" bash -c "[ $rc -eq 0 ] && [ \"\$(cat '$OUTF')\" = 2 ]"

repl $'function f(x)\n  local y = x * 2\n  return y\nend\nf(21)\nlocal t = {\n  a = 1,\n}\nreturn "multi", "ok"\n'
check "a multi-line function definition works" log_has_text "$OUTF" "42"
check "several values print tab-separated" log_has_text "$OUTF" $'multi\tok'

repl $'error("boom")\nprint("still " .. "here")\nnosuch.field = 1\n1 +\n+\n"after syntax error"\n'
check "an error prints its message" log_has_text "$OUTF" "boom"
check "an error prints a traceback" log_has_text "$OUTF" "stack traceback:"
check "the REPL goes on after an error" log_has_text "$OUTF" "still here"
check "a runtime error names the culprit" log_has_text "$OUTF" "nosuch"
check "a syntax error is reported" log_has_text "$OUTF" "unexpected symbol"
check "the REPL goes on after a syntax error" log_has_text "$OUTF" "after syntax error"
check "errors do not change the exit status" test "$rc" -eq 0

repl $'x = 5\n=x + 1\nsetmetatable({}, {__tostring = function() return "custom!" end})\nnil\n'
check "=expr prints like Lua 5.1" log_has_text "$OUTF" "6"
check "values print through __tostring" log_has_text "$OUTF" "custom!"

repl $'print("unterminated'
check "end of input inside a chunk exits 0" test "$rc" -eq 0

repl $'while true do\n'
check "end of input inside a block reports it and exits 0" \
  bash -c "[ $rc -eq 0 ] && grep -q \"'end' expected\" '$OUTF'"

repl $'require("dtf.tensor").zeros(2, 2)\n'
check "a tensor prints readably" bash -c "[ $rc -eq 0 ] && grep -q '0' '$OUTF' && ! grep -q 'userdata' '$OUTF' && ! grep -q 'stack traceback' '$OUTF'"

repl $'help(T.zeros)\n{b = 1, a = {2, "x"}}\nnn.ReLU()\nprint(nn.ReLU())\n'
check "help(x) answers on piped input too" log_has_text "$OUTF" "T.zeros(d1, d2, ... | {shape}) -> tensor"
check "a table prints readably on piped input" log_has_text "$OUTF" '{a = {2, "x"}, b = 1}'
check "a layer prints as its type, through print too" \
  bash -c "[ \"\$(grep -c '^nn.ReLU\$' '$OUTF')\" -eq 2 ] && ! grep -q 0x '$OUTF'"

repl ''
check "no input exits 0 with no output" bash -c "[ $rc -eq 0 ] && [ ! -s '$OUTF' ]"

# ---- a terminal -------------------------------------------------------------
if ! command -v python3 >/dev/null || ! python3 -c 'import pty' 2>/dev/null; then
  echo "skip - terminal tests (no python3 with pty)"
else
  TERM=xterm timeout 60 python3 - "$dtf" >"$tmp/pty" 2>&1 <<'PY'
import os, pty, select, signal, sys, termios, time

dtf = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execv(dtf, [dtf, "repl"])

# Whatever happens here (a failed check, `timeout` sending SIGTERM), the REPL
# must not outlive the test: it may be spinning in `while true do end`.
import atexit
def reap(*_):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
atexit.register(reap)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

out = b""
seen = 0  # output before this offset has been matched already

def read_until(want, secs=5.0):
    """Reads the terminal until `want` shows up after what earlier calls
    matched (True), or secs pass (with want None: just reads for secs)."""
    global out, seen
    end = time.time() + secs
    while True:
        if want is not None:
            i = out.find(want, seen)
            if i >= 0:
                seen = i + len(want)
                return True
        if time.time() >= end:
            break
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
    if want is None:
        seen = len(out)
        return True
    return False

def send(data, secs=5.0):
    """Types data once libedit has the terminal in its editing mode (no
    ICANON): keys typed before that are echoed by the tty, and a ^D typed
    then is lost in the mode switch."""
    end = time.time() + secs
    while time.time() < end and termios.tcgetattr(fd)[3] & termios.ICANON:
        read_until(None, 0.01)
    os.write(fd, data)

failures = 0
def check(name, cond):
    global failures
    failures += not cond
    print(("ok - " if cond else "not ok - ") + name, flush=True)

check("the banner shows on a terminal",
      read_until(b"modules loaded; Ctrl-D exits") and read_until(b"dtf> "))
send(b"1 + 41\r")
check("an expression prints on a terminal", read_until(b"42"))
send("print(#'\u00e9' .. '<' .. '\u00e9' .. '>')\r".encode())
check("UTF-8 input reaches Lua intact", read_until("2<\u00e9>".encode()))
send(b"print(string.for\t('%d', 6 * 7 + 1000))\r")
check("Tab completes a table's field", read_until(b"1042"))
send(b"for i = 1, 3 do\r")
check("an open block prompts with >>", read_until(b">> "))
send(b"end\r")
read_until(b"dtf> ")
# SIGINT once the statement runs (it says so first): one that came while
# the line was still being read would be a Ctrl-C at the prompt.
send(b"print('spin' .. 'ning') while true do end\r")
read_until(b"spinning")
os.kill(pid, signal.SIGINT)
check("Ctrl-C interrupts a running statement", read_until(b"interrupted"))
send(b"print('al' .. 'ive')\r")
check("the REPL is alive after Ctrl-C", read_until(b"alive"))
send(b"print('lost line')")
read_until(b"print('lost line')")     # libedit has the line (its echo)
os.kill(pid, signal.SIGINT)
read_until(b"dtf> ", 2)
send(b"print('clear' .. 'ed')\r")
check("Ctrl-C at the prompt clears the line",
      read_until(b"cleared") and b"lost line\r\n" not in out.replace(b"print('lost line')", b""))
send(b"function g()\r")
read_until(b">> ")
os.kill(pid, signal.SIGINT)
read_until(b"dtf> ", 2)
send(b"print(g == nil and 'drop' .. 'ped' or 'kept')\r")
check("Ctrl-C at a >> prompt drops the chunk", read_until(b"\r\ndropped\r\n"))
send(b"\x04")
for _ in range(100):
    read_until(None, 0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
else:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
check("Ctrl-D exits 0", os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
hist = os.path.join(os.environ["HOME"], "history")
check("the history file is written",
      os.path.exists(hist) and "al' .. 'ive" in open(hist, errors="replace").read().replace("\\040", " "))
if failures:
    print("terminal transcript:", repr(out))
PY
  SHOW_ON_FAIL=
  while IFS= read -r line; do
    case $line in
      "ok - "*) pass "${line#ok - }" ;;
      "not ok - "*) fail "${line#not ok - }" ;;
      *) printf '%s\n' "$line" ;;
    esac
  done <"$tmp/pty"
  check "the terminal session finished" log_has "$tmp/pty" '^(not )?ok - the history file'
fi

finish
