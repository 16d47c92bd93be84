#!/usr/bin/env bash
# The status line on a real terminal (tmux): `dtf local` folds its tasks'
# step lines into one line with the step of total, steps/s, ex/s, the loss,
# elapsed and ETA, and prints no step line; `dtf run` shows the same line
# for one process while deploy.log still gets every step;
# --set progress=false brings the step lines back; piped, the same runs
# print the seed's lines and no escape codes.
#   tests/integration/progress.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"
cd "$ROOT"

SOCK=dtf-progress-$$
tm() { tmux -L "$SOCK" "$@"; }
trap 'tm kill-server 2>/dev/null; cleanup' EXIT

# run_in_tmux NAME CMD: runs CMD in a 160x50 terminal; waits for it to end
# (up to 300 s); the whole screen and scrollback go to $SCRATCH/NAME.screen,
# the live screen seen while it ran to $SCRATCH/NAME.live.
run_in_tmux() {
  local name=$1 cmd=$2
  tm new-session -d -s "$name" -x 160 -y 50 "cd '$ROOT' && $cmd; echo \"DONE rc=\$?\"; sleep 600"
  tm set-option -t "$name" history-limit 100000 >/dev/null
  : >"$SCRATCH/$name.live"
  for _ in $(seq 1500); do
    local screen
    screen=$(tm capture-pane -p -t "$name")
    grep -E '^step [0-9]+' <<<"$screen" >>"$SCRATCH/$name.live"
    grep -q '^DONE rc=' <<<"$screen" && break
    sleep 0.2
  done
  tm capture-pane -p -S - -t "$name" >"$SCRATCH/$name.screen"
  tm kill-session -t "$name"
}
screen_has() { grep -qE -- "$2" "$SCRATCH/$1.screen"; }
live_has() { grep -qE -- "$2" "$SCRATCH/$1.live"; }
LINE='^step [0-9]+/3000 \([0-9]+%\)  [0-9.]+ steps/s  [0-9]+ ex/s  loss [0-9.]+  [0-9]+:[0-9]{2} elapsed  ETA [0-9]+:[0-9]{2}'

# ---- dtf local on a terminal -----------------------------------------------------------
run_in_tmux local "'$DTF' local train.lua --ps=1 --workers=2 --set trainsteps=3000 --set lossevery=100 --set logdir='$SCRATCH/local'"
check "dtf local ends with status 0" screen_has local '^DONE rc=0$'
check "a status line with step of total, steps/s, ex/s, loss, elapsed and ETA" live_has local "$LINE"
grep -E '^step' "$SCRATCH/local.live" | sort -u | sed -n '1p;$p'
check "the line counts up while it trains" \
  bash -c "awk '{ split(\$2, a, \"/\"); s[NR] = a[1] + 0 } END { exit !(NR >= 2 && s[NR] > s[1]) }' '$SCRATCH/local.live'"
check "no step line reaches the terminal" bash -c "! grep -q 'training step' '$SCRATCH/local.screen'"
check "the other lines print above it (loss lines of both workers)" \
  bash -c "grep -q '^worker0 | .*Worker 0: mean loss' '$SCRATCH/local.screen' && grep -q '^worker1 | .*Worker 1: mean loss' '$SCRATCH/local.screen'"
check "the final status stays on the screen at 100%" screen_has local '^step [0-9]+/3000 \(100%\) '
check "the test accuracy is printed" screen_has local '^worker0 \| .*Test accuracy: [0-9.]+ \(10000 images\)'
check "deploy.log still gets every worker's step lines" \
  bash -c "[ \$(grep -c 'training step' '$SCRATCH/local/deploy.log') -ge 3000 ]"

# ---- the same, piped --------------------------------------------------------------------
timeout 300 "$DTF" local train.lua --ps=1 --workers=2 --set trainsteps=3000 --set lossevery=100 \
  --set logdir="$SCRATCH/piped" 2>&1 | cat >"$SCRATCH/piped.out"
check "piped, dtf local prints the seed's step lines" \
  grep -qE '^worker1 \| [0-9-]+ [0-9:,]+ - dtf - INFO - Worker 1: training step [0-9]+ done \(global step: [0-9]+\)$' "$SCRATCH/piped.out"
check "piped, every step line of both workers" \
  bash -c "[ \$(grep -c ': training step ' '$SCRATCH/piped.out') -ge 3000 ]"
check "piped, no status line and no escape codes" \
  bash -c "! grep -q 'steps/s' '$SCRATCH/piped.out' && ! grep -q \$'\\033' '$SCRATCH/piped.out'"

# ---- dtf run on a terminal, and progress=false -------------------------------------------
run_in_tmux one "'$DTF' run train.lua --set trainsteps=3000 --set logdir='$SCRATCH/one'"
check "dtf run ends with status 0" screen_has one '^DONE rc=0$'
check "dtf run shows the status line" live_has one "$LINE"
check "dtf run prints no step line on the terminal" bash -c "! grep -q 'training step' '$SCRATCH/one.screen'"
check "dtf run's deploy.log has all 3000 step lines" \
  bash -c "[ \$(grep -c 'Worker 0: training step' '$SCRATCH/one/deploy.log') -eq 3000 ]"
check "dtf run prints the mean loss above the line" screen_has one 'Worker 0: mean loss [0-9.]+ over steps 2901-3000'

run_in_tmux off "'$DTF' run train.lua --set trainsteps=300 --set progress=false --set logdir='$SCRATCH/off'"
check "progress=false: the step lines on the terminal, as the seed's" \
  screen_has off '^[0-9-]+ [0-9:,]+ - dtf - INFO - Worker 0: training step 300 done \(global step: 300\)$'
check "progress=false: no status line" bash -c "! grep -q 'steps/s' '$SCRATCH/off.screen' && [ ! -s '$SCRATCH/off.live' ]"
run_in_tmux localoff "'$DTF' local train.lua --ps=1 --workers=1 --set trainsteps=300 --set progress=false --set logdir='$SCRATCH/localoff'"
check "dtf local --set progress=false: the step lines, no status line" \
  bash -c "grep -q '^worker0 | .*Worker 0: training step 300 done' '$SCRATCH/localoff.screen' && [ ! -s '$SCRATCH/localoff.live' ]"
finish
