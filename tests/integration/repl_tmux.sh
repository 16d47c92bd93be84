#!/usr/bin/env bash
# tests/integration/repl_tmux.sh BUILD_DIR: `dtf repl` on a real terminal,
# driven in tmux as a person types: help(), help(T.zeros), help(nn.Linear),
# a nested table, a Sequential with its shapes, the layer-naming shape
# error, Tab after `x:` completing a tensor method (and listing them), `=x`,
# and Ctrl-D ending it with status 0.
. "$(dirname "$0")/testlib.bash"

if ! command -v tmux >/dev/null; then
  fail "tmux is installed (scripts/install-deps test)"
  finish
  exit 1
fi
export HOME=$SCRATCH DTF_HISTORY=$SCRATCH/history
SOCK=$SCRATCH/tmux.sock
tm() { tmux -S "$SOCK" "$@"; }
stop_tmux() { tm kill-server 2>/dev/null; cleanup; }
trap stop_tmux EXIT

# A wide pane (no line wraps) with a long history, where the pane stays
# after the REPL exits. Its exit status goes to a file: under load, tmux
# 3.3a was seen to leave the exited REPL unreaped (a zombie, pane_dead 1,
# pane_dead_status empty) for good.
STATUS=$SCRATCH/status
tm -f /dev/null start-server \; set-option -g history-limit 50000 \; \
  set-option -g remain-on-exit on \; new-session -d -s repl -x 200 -y 50 \
  "'$DTF' repl; echo \$? >'$STATUS.tmp'; mv '$STATUS.tmp' '$STATUS'"

screen() { tm capture-pane -p -J -S - -E - -t repl; }
prompts() { screen | grep -c '^dtf> '; }

# wait_for TEXT: polls the pane until TEXT (a fixed string) shows, 15 s at most.
wait_for() {
  local deadline=$((SECONDS + 15))
  until screen | grep -qF -- "$1"; do
    if [ $SECONDS -ge $deadline ]; then echo "  (no '$1' on the screen after 15 s)"; return 1; fi
    sleep 0.05
  done
}

# Keys typed before libedit has put the terminal in its editing mode (no
# icanon) may be flushed by that switch: wait for it, 15 s at most.
TTY=$(tm display-message -p -t repl '#{pane_tty}')
editing() {
  local deadline=$((SECONDS + 15))
  until stty -F "$TTY" -a 2>/dev/null | grep -qw -- '-icanon'; do
    if [ $SECONDS -ge $deadline ]; then echo "  (the terminal is not in editing mode after 15 s)"; return 1; fi
    sleep 0.02
  done
}
keys() { editing; tm send-keys -t repl "$@"; }

# type LINE: types LINE and Enter, waits for the next prompt; $SCRATCH/seg
# then holds what the line printed, from its own prompt on.
type_line() {
  local before deadline=$((SECONDS + 15))
  before=$(prompts)
  keys -l -- "$1"
  keys Enter
  until [ "$(prompts)" -gt "$before" ]; do
    if [ $SECONDS -ge $deadline ]; then echo "  (no prompt after '$1' in 15 s)"; break; fi
    sleep 0.05
  done
  screen | awk -v n="$before" '/^dtf> / { c++ } c >= n' >"$SCRATCH/seg"
}
seg_has() { grep -qF -- "$1" "$SCRATCH/seg"; }
seg_re() { grep -qE -- "$1" "$SCRATCH/seg"; }
show_seg() { sed 's/^/    | /' "$SCRATCH/seg"; }
expect_seg() { # description, fixed strings that must all be in the segment
  local what=$1 s; shift
  for s in "$@"; do
    if ! seg_has "$s"; then fail "$what (no '$s')"; show_seg; return; fi
  done
  pass "$what"
}

check "the banner and the prompt show" wait_for 'dtf> '

type_line 'help()'
expect_seg "help() lists the modules and their functions" \
  '  T, tensor' '  nn ' '  optim ' '  data ' '  ckpt ' 'zeros' 'Linear' 'help(T.Tensor)'

type_line 'help(T.zeros)'
expect_seg "help(T.zeros) gives its signature and what it does" \
  'T.zeros(d1, d2, ... | {shape}) -> tensor' 'a new tensor of zeros'

type_line 'help(nn.Linear)'
expect_seg "help(nn.Linear) gives the constructor and the parameters' layout" \
  'nn.Linear(in, out)' 'weight (out, in), bias (out)'

type_line 't = {1, 2, {a = 1, b = {c = true}}, name = "x", f = T.zeros}'
type_line 't'
expect_seg "a table prints nested, keys sorted, functions by name" \
  '{1, 2, {a = 1, b = {c = true}}, f = function T.zeros, name = "x"}'

type_line 'big = {}; for i = 1, 30 do big["k" .. i] = {i, {i}} end'
type_line 'big'
expect_seg "a long table prints one entry a line, truncated" \
  '  k1 = {1, {1}},' '  k2 = {2, {2}},' '  ... 10 more'
check "the long table's keys come in natural order (k9 before k10)" \
  bash -c "grep -n 'k9 = \\|k10 = ' '$SCRATCH/seg' | head -1 | grep -q k9"
type_line 'big2 = {a = 1}; big2.self = big2'
type_line '=big2'
expect_seg "=x prints the same way, a cycle marked" '{a = 1, self = <cycle: top>}'

type_line 'net = nn.Sequential {nn.Linear(784, 128), nn.ReLU(), nn.Linear(256, 10)}'
type_line '=net:build(1).nparams'
nparams=$(grep -E '^[0-9]+$' "$SCRATCH/seg" | head -n 1)
type_line 'net'
expect_seg "a Sequential prints each layer's index, type and parameter shapes" \
  '  [1] nn.Linear(784 -> 128)  weight 128x784, bias 128' \
  '  [2] nn.ReLU' \
  '  [3] nn.Linear(256 -> 10)   weight 10x256, bias 10'
check "and its total parameter count ($nparams)" seg_has "} $nparams parameters"
check "and no addresses" bash -c "! grep -qE '0x[0-9a-f]{8,}' '$SCRATCH/seg'"

type_line 'net:forward(T.zeros(64, 784))'
expect_seg "a shape error inside a Sequential names the layer's index and type" \
  'layer 3 (nn.Linear(256 -> 10)): linear: input (64x128) and weight (10x256, out x in) do not match'

type_line 'x = T.zeros(2, 3)'
keys -l 'x:nu'
keys Tab
check "Tab after x:nu completes the tensor method" wait_for 'dtf> x:numel'
type_line '()'
check "and the completed call runs" bash -c "grep -qF 'dtf> x:numel()' '$SCRATCH/seg' && grep -qx '6' '$SCRATCH/seg'"

keys -l 'x:'
keys Tab Tab
if wait_for 'x:transpose'; then
  screen >"$SCRATCH/seg"
  expect_seg "Tab Tab after x: lists the tensor's methods" 'x:argmax' 'x:view' 'x:is_contiguous'
else
  fail "Tab Tab after x: lists the tensor's methods"; screen | tail -n 20 | sed 's/^/    | /'
fi
n=$(prompts)
keys C-c   # clears the line and prompts again
deadline=$((SECONDS + 15))
until [ "$(prompts)" -gt "$n" ] || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
type_line 'print("al" .. "ive")'
check "the REPL goes on after the completion list" seg_has 'alive'

keys C-d
# The shell around the REPL writes its status (128 + N: killed by signal N).
deadline=$((SECONDS + 15))
until [ -s "$STATUS" ] || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
status=$(cat "$STATUS" 2>/dev/null)
if [ "$status" = 0 ]; then
  pass "Ctrl-D ends the REPL with status 0"
else
  fail "Ctrl-D ends the REPL with status 0 (status '$status')"
  screen | tail -n 5 | sed 's/^/    | /'
fi
finish
