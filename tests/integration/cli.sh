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
expect_exit 2 "no index" env -u JOB_COMPLETION_INDEX -u TF_CONFIG -u DTF_CLUSTER HOSTNAME=laptop "$DTF" run train.lua --role=worker --ps=127.0.0.1:1 --workers=127.0.0.1:3
expect_out "cannot find this worker task's index: no --index, no TF_CONFIG task.index, no JOB_COMPLETION_INDEX, and the hostname 'laptop' has no ordinal" \
  "says where it looked for the index"
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

# The binary finds its Lua library (lua/dtf/*.lua, next to it) from any
# directory, without DTF_PATH: each script requires a module that is a Lua
# file of the library, not one built into the binary, so a dtf binary copied
# alone elsewhere fails these.
cat > "$SCRATCH/lib_then_missing.lua" <<'LUA'
local nn = require 'dtf.nn'
print('dtf.nn', type(nn.Linear))
require 'mymod'
LUA
expect_exit 1 "a missing module is an error, from /" env -u DTF_PATH -C / "$DTF" run "$SCRATCH/lib_then_missing.lua"
expect_out '^dtf.nn	table$' "library found from /"
expect_out "module 'mymod' not found" "library found, missing module named"
cat > "$SCRATCH/a2.lua" <<'LUA'
local json = require 'dtf.json'
print(select('#', ...), json.encode({ ok = true }))
LUA
expect_exit 0 "runs from /" env -u DTF_PATH -C / "$DTF" run "$SCRATCH/a2.lua"
expect_out '^0	\{"ok":true\}$' "runs from / with the library's modules"

finish
