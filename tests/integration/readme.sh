#!/usr/bin/env bash
# tests/integration/readme.sh BUILD_DIR: README.md stays true.
#   - every marked example runs (`<!-- example: lua|model|sh -->`, see
#     readme_examples.py) and prints what the README shows after it;
#   - every hyperparameter train.lua and models/mnist.lua take, every flag of
#     every command's help, and every make target is in the README, and every
#     `make X` it names is a target of the Makefile.
. "$(dirname "$0")/testlib.bash"

EX=$SCRATCH/examples
mkdir -p "$EX" "$SCRATCH/tmp"
n=$(python3 tests/integration/readme_examples.py README.md "$EX") || { fail "README.md's examples parse"; finish; exit 1; }
check "README.md marks examples to run ($n)" test "$n" -ge 4
# build/dtf as the README writes it, whatever BUILD_DIR is
mkdir -p "$SCRATCH/bin"
ln -s "$DTF" "$SCRATCH/bin/dtf"

for f in "$EX"/*.lua "$EX"/*.model "$EX"/*.sh; do
  [ -e "$f" ] || continue
  k=${f##*/}; k=${k%.*}
  kind=${f##*.}
  at="README.md:$(cat "$EX/$k.line")"
  case $kind in
    lua)
      expect_exit 0 "$at: the Lua example runs" timeout 300 "$DTF" run "$f" ;;
    model)
      # the model example as a model file, with its own hyperparameter set
      cp "$f" "$SCRATCH/model-$k.lua"
      expect_exit 0 "$at: the model example trains through train.lua" timeout 300 \
        "$DTF" run train.lua --set modelfile="$SCRATCH/model-$k.lua" --set layers=2 \
        --set trainsteps=30 --set evaluate=false --set logdir="$SCRATCH/model-$k"
      expect_out "Worker 0: [0-9]+ parameters" "$at: and says how many parameters it built"
      expect_exit 2 "$at: a misspelt key of the model file is refused" \
        "$DTF" run train.lua --set modelfile="$SCRATCH/model-$k.lua" --set layrs=2 --set logdir="$SCRATCH/model-$k"
      expect_out "unknown hyperparameter 'layrs'" "$at: naming it" ;;
    sh)
      # /tmp in an example is this test's scratch directory; build/dtf is $DTF
      sed -e "s#/tmp/#$SCRATCH/tmp/#g" -e "s#build/dtf#$SCRATCH/bin/dtf#g" "$f" >"$SCRATCH/ex-$k.sh"
      expect_exit 0 "$at: the shell example runs" timeout 300 bash -e "$SCRATCH/ex-$k.sh" ;;
  esac
  if [ -f "$EX/$k.out" ]; then
    printf '%s\n' "$OUT" >"$SCRATCH/out-$k"
    if why=$(python3 tests/integration/readme_examples.py --match "$EX/$k.out" "$SCRATCH/out-$k"); then
      pass "$at: it prints what the README shows"
    else
      fail "$at: it prints what the README shows: $why"
      tail -n 20 "$SCRATCH/out-$k" | sed 's/^/    | /'
    fi
  fi
done

# ---- every name is documented ------------------------------------------------
documented() { grep -qxF -- "$1" "$EX/documented"; }
missing=()
for key in $("$DTF" run train.lua --set help=json | python3 -c 'import json, sys; print(" ".join(e["name"] for e in json.load(sys.stdin)))'); do
  documented "$key" || missing+=("$key")
done
check "every hyperparameter is in README.md (missing: ${missing[*]:-none})" test ${#missing[@]} -eq 0

missing=()
for cmd in run local repl export predict plot; do
  for flag in $("$DTF" help "$cmd" | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
    grep -qF -- "$flag" README.md || missing+=("$cmd $flag")
  done
done
check "every command's flags are in README.md (missing: ${missing[*]:-none})" test ${#missing[@]} -eq 0

missing=()
while read -r t; do
  grep -qE "^$t( [^:]*)?:" Makefile || grep -qE "^[^#]*[ ]$t( |:)" Makefile || missing+=("$t")
done <"$EX/targets"
check "every 'make X' in README.md is a Makefile target (not: ${missing[*]:-none})" test ${#missing[@]} -eq 0
finish
