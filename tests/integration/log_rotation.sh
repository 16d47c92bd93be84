#!/usr/bin/env bash
# deploy.log rotates by size (logmax): past it, deploy.log becomes
# deploy.log.1 and a new one starts; one old file is kept. One process,
# then four tasks of dtf local all appending to the same file: every line
# whole and in the seed's format, the files bounded, no line lost at a
# rotation, the last lines of the run in deploy.log.
#   tests/integration/log_rotation.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"
cd "$ROOT"

SEED='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2},[0-9]{3} - dtf - (INFO|WARNING|ERROR|DEBUG) - '
size() { stat -c %s "$1"; }
whole() { ! grep -vqE "$SEED" "$@"; }

L=$SCRATCH/one
expect_exit 0 "one process with logmax=20K" "$DTF" run train.lua --set trainsteps=2000 \
  --set logmax=20K --set logdir="$L"
check "deploy.log and one old file" bash -c "[ -s '$L/deploy.log' ] && [ -s '$L/deploy.log.1' ] && [ ! -e '$L/deploy.log.2' ]"
check "deploy.log stays under 20K ($(size "$L/deploy.log") bytes)" test "$(size "$L/deploy.log")" -le 20480
check "deploy.log.1 stays under 20K ($(size "$L/deploy.log.1") bytes)" test "$(size "$L/deploy.log.1")" -le 20480
check "every line whole, in the seed's format" whole "$L/deploy.log" "$L/deploy.log.1"
check "the end of the run is in deploy.log" grep -q 'Test accuracy: ' "$L/deploy.log"
steps() { sed -nE 's/.*Worker 0: training step ([0-9]+) done.*/\1/p' "$@"; }
check "no step line lost at the rotation: the old file and the new one are consecutive" \
  bash -c "steps() { sed -nE 's/.*Worker 0: training step ([0-9]+) done.*/\1/p' \"\$@\"; }
           steps '$L/deploy.log.1' '$L/deploy.log' | awk 'NR > 1 && \$1 != p + 1 { bad = 1 } { p = \$1 } END { exit bad || NR < 50 }'"
check "and the last one is step 2000" bash -c "[ \"\$(steps() { sed -nE 's/.*training step ([0-9]+) done.*/\1/p' \"\$@\"; }; steps '$L/deploy.log' | tail -n 1)\" = 2000 ]"

L=$SCRATCH/cluster
expect_exit 0 "four tasks sharing one deploy.log with logmax=50K" timeout 300 "$DTF" local train.lua \
  --ps=2 --workers=2 --set trainsteps=3000 --set logmax=50K --set logdir="$L"
check "deploy.log and one old file" bash -c "[ -s '$L/deploy.log' ] && [ -s '$L/deploy.log.1' ] && [ ! -e '$L/deploy.log.2' ]"
# four writers: a file may pass logmax by the batches (at most logmax/2 each) the
# others wrote between a writer's check and its write
check "deploy.log stays near 50K ($(size "$L/deploy.log") bytes)" test "$(size "$L/deploy.log")" -le 128000
check "deploy.log.1 stays near 50K ($(size "$L/deploy.log.1") bytes)" test "$(size "$L/deploy.log.1")" -le 128000
check "every line whole, in the seed's format, no two tasks' lines mixed" whole "$L/deploy.log" "$L/deploy.log.1"
check "the end of the run is in deploy.log" grep -q 'Test accuracy: ' "$L/deploy.log"
for w in 0 1; do
  check "worker $w's step lines in each file come in order" bash -c "
    for f in '$L/deploy.log.1' '$L/deploy.log'; do
      sed -nE 's/.*Worker $w: training step ([0-9]+) done.*/\1/p' \"\$f\" |
        awk 'NR > 1 && \$1 <= p { exit 1 } { p = \$1 }' || exit 1
    done"
done

L=$SCRATCH/never
expect_exit 0 "logmax=0 never rotates" "$DTF" run train.lua --set trainsteps=300 --set logmax=0 --set logdir="$L"
check "no old file" test ! -e "$L/deploy.log.1"
expect_exit 2 "a bad logmax is a usage error" "$DTF" run train.lua --set logmax=lots --set logdir="$L"
expect_out "logmax='lots' is not a size" "naming the value"
finish
