#!/usr/bin/env bash
# The dtf command's errors: every bad input exits non-zero with a message
# that names it; a Lua error shows the file and line.
. "$(dirname "$0")/testlib.bash"

expect_exit 0 "version" "$DTF" version;                  expect_out '^dtf [0-9.]+ \(Lua 5\.4' "version names Lua 5.4"
expect_exit 0 "help" "$DTF" help;                        expect_out 'run SCRIPT' "help lists run"
expect_exit 0 "help run" "$DTF" help run;                expect_out -- '--set KEY=VALUE' "help run lists --set"
expect_exit 0 "help local" "$DTF" help local;            expect_out -- '--workers' "help local lists --workers"
expect_exit 2 "unknown command" "$DTF" frobnicate;       expect_out "unknown command 'frobnicate'" "names the command"
expect_exit 2 "run without script" "$DTF" run;           expect_out 'needs a SCRIPT' "says a script is needed"
expect_exit 2 "missing script" "$DTF" run "$SCRATCH/nope.lua"; expect_out "cannot read script '.*nope.lua'" "names the script"
expect_exit 2 "unknown flag" "$DTF" run train.lua --bogus=1;   expect_out "unknown flag '--bogus=1'" "names the flag"
expect_exit 2 "--set without =" "$DTF" run train.lua --set batchsize; expect_out "--set 'batchsize' is not KEY=VALUE" "names the --set"
expect_exit 2 "bad --set value" "$DTF" run train.lua --set batchsize=abc; expect_out "batchsize='abc' is not a number" "names key and value"
expect_exit 2 "unknown hyperparameter" "$DTF" run train.lua --set batchsiz=3; expect_out "unknown hyperparameter 'batchsiz'" "names the key"
expect_exit 2 "bad role" "$DTF" run train.lua --role=chief; expect_out "--role 'chief'" "names the role"
expect_exit 2 "index out of range" "$DTF" run train.lua --role=ps --index=2 --ps=127.0.0.1:1,127.0.0.1:2 --workers=127.0.0.1:3
expect_out "ps index 2 \(from --index\) is outside the 2 ps" "says which source it read"
expect_exit 2 "no index" env -u JOB_COMPLETION_INDEX HOSTNAME=laptop "$DTF" run train.lua --role=worker --ps=127.0.0.1:1 --workers=127.0.0.1:3
expect_exit 0 "--set help lists hyperparameters" "$DTF" run train.lua --set help=true; expect_out 'learningrate' "lists learningrate"

# A Lua error in a model script: exit 1, message with file and line, traceback.
cat > "$SCRATCH/badmodel.lua" <<'LUA'
local nn = require 'dtf.nn'
return function(hp)
  local x = nil
  return x.field -- line 4
end
LUA
expect_exit 1 "Lua error in the model" "$DTF" run train.lua --set modelfile="$SCRATCH/badmodel.lua" --set logdir="$SCRATCH/log"
expect_out "badmodel.lua:4: attempt to index a nil value" "names the model file and line"
expect_out "stack traceback" "prints a traceback"

echo 'return 42' > "$SCRATCH/notafunction.lua"
expect_exit 1 "model file returning no builder" "$DTF" run train.lua --set modelfile="$SCRATCH/notafunction.lua" --set logdir="$SCRATCH/log"
expect_out "must return a function" "says what a model file returns"

expect_exit 1 "missing data set" "$DTF" run train.lua --set datadir="$SCRATCH/nodata" --set logdir="$SCRATCH/log" --set trainsteps=1
expect_out "nodata" "names the data directory"

# Script arguments reach the script.
echo 'print(select("#", ...), arg[0], arg[1], arg[2])' > "$SCRATCH/args.lua"
expect_exit 0 "script arguments" "$DTF" run "$SCRATCH/args.lua" -- a --b; expect_out "^2	.*args.lua	a	--b" "arg and ... hold them"

# DTF_PATH adds module directories.
mkdir -p "$SCRATCH/mods"; echo 'return { answer = 42 }' > "$SCRATCH/mods/mymod.lua"
echo 'print(require("mymod").answer)' > "$SCRATCH/req.lua"
OUT=$(DTF_PATH="$SCRATCH/mods" "$DTF" run "$SCRATCH/req.lua" 2>&1); expect_out '^42$' "DTF_PATH finds modules"

# The binary finds its Lua library from any directory.
OUT=$(cd / && "$DTF" run "$SCRATCH/req.lua" 2>&1 || true); expect_out "module 'mymod' not found" "library found, missing module named"
cp "$SCRATCH/args.lua" "$SCRATCH/a2.lua"
OUT=$(cd / && "$DTF" run "$SCRATCH/a2.lua" 2>&1); expect_out '^0	' "runs from /"

finish
