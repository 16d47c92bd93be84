#!/usr/bin/env bash
# A real Prometheus scrapes a `dtf local` run (2 ps, 2 workers, each task
# serving /metrics on the port dtf local gave it): Debian's prometheus,
# started here on a loopback port with a scrape config listing every task,
# stopped at the end. Its HTTP API must see every task up, a positive
# rate(dtf_worker_steps_total[...]) for each worker, dtf_ps_global_step > 0
# and the traffic, update and checkpoint metrics of each ps, the build info
# and the process metrics of every task; promtool check metrics must find
# no problem in any task's output.
#   tests/integration/prometheus.sh BUILD_DIR
. "$(dirname "$0")/testlib.bash"
cd "$ROOT"

LOG=$SCRATCH/run
"$DTF" local train.lua --ps=2 --workers=2 --set trainsteps=0 --set logevery=1000 \
  --set checkpoint_dir="$SCRATCH/ckpt" --set checkpoint_secs=1 \
  --set logdir="$LOG" >"$SCRATCH/local.out" 2>&1 &
LOCAL=$!
PROM=
stop_all() {
  [ -n "$PROM" ] && kill -TERM "$PROM" 2>/dev/null
  kill -INT "$LOCAL" 2>/dev/null
}
trap 'stop_all; cleanup' EXIT

# every task logs once where its metrics are
urls() { grep -oE '^[a-z]+[0-9]+ +\| .* metrics at http://[^ ]+/metrics' "$SCRATCH/local.out"; }
for _ in $(seq 1200); do [ "$(urls | wc -l)" -ge 4 ] && break; sleep 0.1; done
check "every task logs 'metrics at http://HOST:PORT/metrics'" test "$(urls | wc -l)" -eq 4
targets=() tasks=()
while read -r task _ rest; do
  url=${rest##* metrics at }
  hostport=${url#http://}
  hostport=${hostport%/metrics}
  tasks+=("$task")
  targets+=("$hostport")
done < <(urls)

# promtool lints what every task serves (after some steps, so that the
# histograms have observations)
for _ in $(seq 600); do grep -q 'training step' "$SCRATCH/local.out" && break; sleep 0.1; done
for i in "${!tasks[@]}"; do
  curl -sf "http://${targets[$i]}/metrics" >"$SCRATCH/${tasks[$i]}.txt"
  lint=$(promtool check metrics <"$SCRATCH/${tasks[$i]}.txt" 2>&1); rc=$?
  check "promtool check metrics: no problem in ${tasks[$i]}'s output (${lint:-clean})" \
    test $rc -eq 0 -a -z "$lint"
done
check "the workers serve dtf_worker_* and a histogram" \
  grep -q '^dtf_worker_step_seconds_bucket{le="+Inf"} ' "$SCRATCH/worker1.txt"
check "the ps tasks serve dtf_ps_*" grep -q '^dtf_ps_global_step ' "$SCRATCH/ps0.txt"

# ---- Prometheus ----------------------------------------------------------------------
PPORT=$(free_port)
{
  echo "global: { scrape_interval: 1s, evaluation_interval: 1s }"
  echo "scrape_configs:"
  echo "  - job_name: dtf"
  echo "    static_configs:"
  for i in "${!tasks[@]}"; do
    echo "      - targets: ['${targets[$i]}']"
    echo "        labels: { task: ${tasks[$i]} }"
  done
} >"$SCRATCH/prometheus.yml"
prometheus --config.file="$SCRATCH/prometheus.yml" --storage.tsdb.path="$SCRATCH/tsdb" \
  --web.listen-address=127.0.0.1:$PPORT >"$SCRATCH/prometheus.log" 2>&1 &
PROM=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PPORT/-/ready" >/dev/null && break; sleep 0.1; done
check "prometheus is ready on 127.0.0.1:$PPORT" curl -sf "http://127.0.0.1:$PPORT/-/ready"

# query Q: "task value" lines of an instant query
query() {
  curl -s --data-urlencode "query=$1" "http://127.0.0.1:$PPORT/api/v1/query" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in d.get("data", {}).get("result", []):
    print(r["metric"].get("task", "?"), r["value"][1])'
}
# until Q gives N lines (60 s)
wait_query() {
  for _ in $(seq 300); do [ "$(query "$1" | wc -l)" -ge "$2" ] && return 0; sleep 0.2; done
  return 1
}
check "every task is up" wait_query 'up{job="dtf"} == 1' 4
check "a positive rate(dtf_worker_steps_total[10s]) for each worker" \
  wait_query 'rate(dtf_worker_steps_total[10s]) > 0' 2
query 'rate(dtf_worker_steps_total[10s])'
check "dtf_build_info with version and blas_core, for every task" \
  wait_query 'dtf_build_info{version="0.1.0",blas_core!=""} == 1' 4
check "resident memory and CPU seconds of every task" \
  wait_query 'process_resident_memory_bytes > 0 and on(task) process_cpu_seconds_total > 0' 4
query 'process_resident_memory_bytes'
check "dtf_ps_global_step > 0 for each ps" wait_query 'dtf_ps_global_step > 0' 2
query 'dtf_ps_global_step'
check "each ps has both workers connected and counts its bytes" \
  wait_query 'dtf_ps_workers_connected == 2 and on(task) rate(dtf_ps_bytes_received_total[10s]) > 0' 2
check "each ps's updates advance" wait_query 'rate(dtf_ps_updates_total[10s]) > 0' 2
check "each ps reports its last checkpoint's step and how long it took" \
  wait_query 'dtf_ps_checkpoint_step > 0 and on(task) dtf_ps_checkpoint_seconds > 0' 2
check "the staleness histogram counts every applied gradient" \
  wait_query 'dtf_ps_staleness_count > 0' 2
check "the step-time histogram has quantiles" \
  wait_query 'histogram_quantile(0.5, rate(dtf_worker_step_seconds_bucket[10s])) > 0' 2

stop_all
wait "$PROM"; prc=$?
check "prometheus stops on SIGTERM (exit $prc)" test $prc -eq 0
PROM=
wait "$LOCAL"; lrc=$?
check "dtf local stops its tasks on Ctrl-C (exit $lrc)" test $lrc -eq 130
if [ "$FAILED" -ne 0 ]; then tail -n 20 "$SCRATCH/prometheus.log"; tail -n 20 "$SCRATCH/local.out"; fi
finish
