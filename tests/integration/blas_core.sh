#!/usr/bin/env bash
# The BLAS core dtf runs on: the best this CPU allows unless the user set
# OPENBLAS_CORETYPE (even empty), the same line in every task dtf local
# starts, the same PID after the re-exec, the fallback when the chosen core
# computes wrong results; the threads default and the denormals mode each
# task runs with.
. "$(dirname "$0")/testlib.bash"
unset OPENBLAS_CORETYPE DTF_BLAS_CORE

# The best core by the kernel's view of the CPU (an independent reading of
# the rules in blas.h).
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { case "$flags" in *" $1 "*) return 0 ;; esac; return 1; }
best=
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then best=SkylakeX
elif has avx2 && has fma; then best=Haswell
elif has avx; then best=Sandybridge
elif has sse4_2; then best=Nehalem; fi
echo "best core for this CPU: ${best:-none}"

expect_exit 0 "dtf version" "$DTF" version
expect_out '^BLAS: OpenBLAS [0-9.]+, core [A-Za-z0-9_]+ \(' "names library, version and core"
line=$(printf '%s\n' "$OUT" | grep '^BLAS: ')
core=$(sed -nE 's/.*, core ([A-Za-z0-9_]+) .*/\1/p' <<<"$line")
pick=$(sed -nE 's/.*\(OpenBLAS picked ([A-Za-z0-9_]+)\)$/\1/p' <<<"$line")
if [ -n "$pick" ]; then
  check "dtf chose $core, the best core ($best), over OpenBLAS's $pick" test "$core" = "$best"
else
  check "OpenBLAS's own pick $core is kept" grep -q "(OpenBLAS's own pick)" <<<"$line"
fi

expect_exit 0 "the user's OPENBLAS_CORETYPE" env OPENBLAS_CORETYPE=Prescott "$DTF" version
expect_out '^BLAS: .*, core Prescott \(set by OPENBLAS_CORETYPE=Prescott\)$' "is respected"
expect_exit 0 "an empty OPENBLAS_CORETYPE" env OPENBLAS_CORETYPE= "$DTF" version
expect_out '\(set by OPENBLAS_CORETYPE=\)$' "counts as set"

# exec keeps the PID that a supervisor or Kubernetes watches
cat >"$SCRATCH/pid.lua" <<'LUA'
local f = assert(io.open('/proc/self/stat')); print('pid ' .. f:read('n')); f:close()
print('core ' .. require('dtf.tensor').blas_info())
local c = assert(io.open('/proc/self/comm')); print('comm ' .. c:read('l')); c:close()
LUA
OUT=$(bash -c 'echo "shell $$"; exec "$0" run "$1"' "$DTF" "$SCRATCH/pid.lua" 2>&1)
sh_pid=$(sed -nE 's/^shell ([0-9]+)$/\1/p' <<<"$OUT")
lua_pid=$(sed -nE 's/^pid ([0-9]+)$/\1/p' <<<"$OUT")
check "the process keeps its PID ($sh_pid -> $lua_pid)" test -n "$sh_pid" -a "$sh_pid" = "$lua_pid"
expect_out "^core .*core $core " "the script runs on core $core"
# and its name: exec'd as /proc/self/exe it would be 'exe' to ps, pgrep and
# the chart's liveness probe
expect_out "^comm dtf$" "the re-executed process is still named dtf"

# Every task of dtf local logs the same BLAS line; ps and worker default to
# one thread; every task flushes denormals unless told to keep them.
expect_exit 0 "dtf local, 1 ps + 1 worker" "$DTF" local train.lua --ps=1 --workers=1 \
  --set trainsteps=5 --set evaluate=false --set logdir="$SCRATCH/local"
task_line() { printf '%s\n' "$OUT" | grep -E "^$1 +\| " | grep -qF -- "- $line, 1 thread; denormals flush"; }
for task in ps0 worker0; do
  check "$task logs the same BLAS line, 1 thread, denormals flush" task_line $task
done
expect_exit 0 "one process" "$DTF" run train.lua --set trainsteps=3 --set evaluate=false \
  --set denormals=keep --set logdir="$SCRATCH/one"
# the usable cores: the affinity mask (nproc) capped by a cgroup quota
echo 'print(require("dtf.tensor").usable_cores())' >"$SCRATCH/cores.lua"
ncpu=$("$DTF" run "$SCRATCH/cores.lua")
check "usable cores $ncpu within 1..$(nproc)" test "$ncpu" -ge 1 -a "$ncpu" -le "$(nproc)"
want="$ncpu thread"; [ "$ncpu" -gt 1 ] && want="$ncpu threads"
expect_out " - BLAS: .*, $want; denormals keep$" "one process: $want (the usable cores), denormals kept"
expect_exit 0 "one process on one CPU" taskset -c 0 "$DTF" run train.lua --set trainsteps=3 \
  --set evaluate=false --set threads=1 --set logdir="$SCRATCH/one"
expect_out " - BLAS: .*, 1 thread; denormals flush$" "threads=1 and the default flush"
expect_exit 0 "one process limited by taskset" taskset -c 0 "$DTF" run train.lua --set trainsteps=3 \
  --set evaluate=false --set logdir="$SCRATCH/one"
expect_out " - BLAS: .*, 1 thread; " "the affinity mask gives 1 thread"
expect_exit 2 "a bad denormals value" "$DTF" run train.lua --set denormals=sometimes --set logdir="$SCRATCH/one"
expect_out "denormals" "names the key"

# A chosen core that disagrees with the naive kernels: back to the
# library's pick, with a warning. Only where dtf chooses at all.
if [ -n "$pick" ]; then
  cc -shared -fPIC -O2 -o "$SCRATCH/bad_sgemm.so" tests/integration/fixtures/bad_sgemm.c -ldl
  # A sanitizer build wants its runtime first among the preloads.
  pre=$(ldd "$DTF" | awk '/libasan|libubsan/ { printf "%s:", $3 }')
  expect_exit 0 "a wrong $core kernel" env LD_PRELOAD="$pre$SCRATCH/bad_sgemm.so" DTF_TEST_BAD_CORE="$core" \
    "$DTF" version
  expect_out "^dtf: warning: BLAS core $core disagrees with the naive kernels; falling back to OpenBLAS's own pick, $pick \(sgemm" "warns, naming the shape"
  expect_out "^BLAS: .*, core $pick \(OpenBLAS's own pick; $core disagreed with the naive kernels\)$" "runs on $pick"
  n=$(printf '%s\n' "$OUT" | grep -c 'warning')
  check "warns once ($n)" test "$n" -eq 1
else
  echo "skip fallback: OpenBLAS's own pick is already the best core here"
fi

finish
