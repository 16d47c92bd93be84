# tests/e2e/elastic.sh: the e2e stages of elastic training, sourced by
# tests/e2e/run (its helpers: helm_, kc, pods_of, plog, global_step, check,
# wait_for, wait_trained, report_memory, save_pod_logs, say, ok, notok).
#
#   baseline  an undisturbed training of ELASTIC_STEPS global steps (2 ps +
#             2 workers, a checkpoint every ELASTIC_CKPT steps), for its
#             test accuracy
#   scale     the same training, scaled while it runs with helm upgrade:
#             --set worker.number=3 at a quarter of it and --set
#             ps.number=3 at half (each ps restores its new range from the
#             old shards' files); each time it
#             prints "e2e: scaled workers 2 -> 3 at global step A; training
#             went on from global step B" and checks B >= A - ELASTIC_CKPT;
#             the run completes with a test accuracy within ELASTIC_TOLERANCE
#             of the baseline's
#   cnn       hyperparams.model=cnn for CNN_STEPS steps in the 125Mi pods: no
#             container killed for memory, a test accuracy at the end
# Each run has a checkpoint.dir of its own (on values.yml's hostPath), so
# that both start from the initial parameters: an upgrade keeps it, so the
# scaled pods find the checkpoints of the pods before them.

ELASTIC_STEPS=${DTF_E2E_SCALE_STEPS:-20000}
ELASTIC_CKPT=1000
ELASTIC_TOLERANCE=0.02
CNN_STEPS=${DTF_E2E_CNN_STEPS:-300}

elastic_args() { # checkpoint dir name: the settings both runs share
  echo --set "hyperparams.trainsteps=$ELASTIC_STEPS" --set "checkpoint.steps=$ELASTIC_CKPT" \
    --set checkpoint.secs=5 --set "checkpoint.dir=/tmp/mnist-log/ckpt/$1"
}

pod_uids() { # the release's pods' uids, one a line
  kc get pods -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{range .items[*]}{.metadata.uid}{"\n"}{end}' 2>/dev/null
}
# Every pod of the release is one made after OLD_UIDS_FILE was taken, with
# the counts asked for.
rolled() { # old-uids-file ps workers
  local u
  [ "$(npods ps)" -eq "$2" ] && [ "$(npods worker)" -eq "$3" ] || return 1
  for u in $(pod_uids); do grep -qx "$u" "$1" && return 1; done
  return 0
}
top_step() { # the highest global step a worker pod logged last
  local p
  for p in $(pods_of worker); do global_step "$p"; done | sort -n | tail -n 1
}
restored_step() { # pod: the step its ps restored (empty: none)
  plog "$1" | grep -oE 'ps [0-9]+: restored step [0-9]+' | tail -n 1 | grep -oE '[0-9]+$'
}
# Every ps pod is new (not in the uids file) and said what it restored.
ps_restored() { # old-uids-file ps
  local p
  [ "$(npods ps)" -eq "$2" ] || return 1
  for p in $(pods_of ps); do
    grep -qx "$(pod_uid "$p")" "$1" && return 1
    [ -n "$(restored_step "$p")" ] || return 1
  done
}
worker0_accuracy() {
  plog "$(pods_of worker | grep -- '-0$' | head -n 1)" | grep -oE 'Test accuracy: [0-9.]+' | tail -n 1 | grep -oE '[0-9.]+$'
}

# helm upgrade with the e2e's values and ARGS..., then wait until every pod
# is a new one (ps and worker counts given).
upgrade_rolled() { # log-name ps workers args...
  local name=$1 nps=$2 nw=$3; shift 3
  pod_uids >"$WORK/uids-$name"
  if ! helm_ upgrade "$RELEASE" chart/ "${HELM_ARGS[@]}" "$@" --timeout 2m >"$WORK/logs/helm-$name.log" 2>&1; then
    notok "helm upgrade ($name)"; cat "$WORK/logs/helm-$name.log"; return 1
  fi
  wait_for 300 "the pods of $name" rolled "$WORK/uids-$name" "$nps" "$nw" ||
    { notok "the pods of $name started"; kc get pods -o wide; return 1; }
}

stage_baseline() {
  local t0=$SECONDS
  # shellcheck disable=SC2046
  upgrade_rolled baseline 2 2 $(elastic_args baseline) || return 1
  wait_trained 900 2 || { notok "the undisturbed training ($ELASTIC_STEPS steps) completed"; return 1; }
  BASELINE_ACC=$(worker0_accuracy)
  stage_time "baseline: $ELASTIC_STEPS steps" $((SECONDS - t0))
  check "the undisturbed training of $ELASTIC_STEPS steps completed with a test accuracy (${BASELINE_ACC:-none})" test -n "$BASELINE_ACC"
  save_pod_logs baseline
}

# helm upgrade --set WHAT.number=TO mid-run: A, the step before; B, the lowest
# step a new ps restored. (what, its name in the line, from, to, ps count
# after, worker count after, args)
scale_once() {
  local what=$1 label=$2 from=$3 to=$4 nps=$5 nw=$6 a b p; shift 6
  a=$(top_step)
  pod_uids >"$WORK/uids-scale-$what"
  if ! helm_ upgrade "$RELEASE" chart/ "${HELM_ARGS[@]}" "$@" --timeout 2m >"$WORK/logs/helm-scale-$what.log" 2>&1; then
    notok "helm upgrade --set $what.number=$to"; cat "$WORK/logs/helm-scale-$what.log"; return 1
  fi
  if ! wait_for 300 "every ps restarted and restored" ps_restored "$WORK/uids-scale-$what" "$nps"; then
    notok "after --set $what.number=$to every ps restarted and restored a checkpoint"
    kc get pods -o wide
    for p in $(pods_of ps); do echo "--- $p"; plog "$p" --tail 5; done
    return 1
  fi
  b=$(for p in $(pods_of ps); do restored_step "$p"; done | sort -n | head -n 1)
  wait_for 120 "$nw workers" eval '[ "$(npods worker)" -eq "$nw" ]'
  say "scaled $label $from -> $to at global step $a; training went on from global step $b"
  check "scaled $label $from -> $to: went on from $b >= $a - $ELASTIC_CKPT (one checkpoint interval)" \
    test -n "$a" -a -n "$b" -a "${b:-0}" -ge $((${a:-0} - ELASTIC_CKPT))
}

stage_scale() {
  local t0=$SECONDS acc nps=2
  local -a args
  # shellcheck disable=SC2207
  args=($(elastic_args scale))
  upgrade_rolled scale 2 2 "${args[@]}" || return 1
  wait_for 600 "global step $((ELASTIC_STEPS / 4))" eval '[ "$(top_step)" -ge $((ELASTIC_STEPS / 4)) ]' ||
    { notok "the training to scale reached global step $((ELASTIC_STEPS / 4))"; return 1; }
  scale_once worker workers 2 3 2 3 "${args[@]}" --set worker.number=3 || return 1
  wait_for 600 "global step $((ELASTIC_STEPS / 2))" eval '[ "$(top_step)" -ge $((ELASTIC_STEPS / 2)) ]' ||
    { notok "the scaled training reached global step $((ELASTIC_STEPS / 2))"; return 1; }
  scale_once ps ps 2 3 3 3 "${args[@]}" --set worker.number=3 --set ps.number=3 || return 1
  nps=3
  wait_trained 900 3 || { notok "the scaled training ($ELASTIC_STEPS steps) completed"; return 1; }
  stage_time "scale: $ELASTIC_STEPS steps, scaled mid-run" $((SECONDS - t0))
  acc=$(worker0_accuracy)
  say "scaled run ($nps ps, 3 workers at the end): test accuracy ${acc:-none}; undisturbed: ${BASELINE_ACC:-not run}"
  if [ -n "${BASELINE_ACC:-}" ]; then
    check "the scaled run's test accuracy ${acc:-none} is within $ELASTIC_TOLERANCE of the undisturbed run's $BASELINE_ACC" \
      awk -v a="${acc:-0}" -v b="$BASELINE_ACC" -v t="$ELASTIC_TOLERANCE" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= t) }'
  else
    check "the scaled run completed with a test accuracy (${acc:-none})" test -n "$acc"
  fi
  no_liveness_failures "the scaled run"
  say_restarts
  report_memory
  save_pod_logs scale
}

# The release's pods that restarted, and the last line of their previous
# container: during a StatefulSet roll a new worker can meet a ps of the old
# count, which refuses it (worker index out of range) until it rolls too.
say_restarts() {
  local p n last
  for p in $(pods_of ps) $(pods_of worker); do
    n=$(kc get pod "$p" -o jsonpath='{.status.containerStatuses[0].restartCount}')
    [ "${n:-0}" -gt 0 ] || continue
    last=$(plog "$p" --previous | grep -E 'dtf: |ERROR' | tail -n 1)
    say "$p restarted $n time(s) during the roll; its previous container ended: ${last:-?}"
  done
}

# The release's pods that restarted: "pod restarts last-reason" lines.
restarted_pods() {
  kc get pods -l "app.kubernetes.io/instance=$RELEASE" \
    -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.reason}{"\n"}{end}' |
    awk '$2 > 0 { print }'
}

stage_cnn() {
  local t0=$SECONDS log oom
  # shellcheck disable=SC2086 # DTF_E2E_CNN_ARGS: more arguments, split
  upgrade_rolled cnn 2 2 --set hyperparams.model=cnn --set "hyperparams.trainsteps=$CNN_STEPS" \
    --set checkpoint.dir=/tmp/mnist-log/ckpt/cnn ${DTF_E2E_CNN_ARGS:-} || return 1
  # Until every worker is done, or a container was killed (a restarted
  # worker finds the ps gone once the others are done: no use waiting).
  wait_for 1800 "the CNN's training" eval 'all_workers_done 2 || [ -n "$(restarted_pods)" ]'
  stage_time "cnn: $CNN_STEPS steps" $((SECONDS - t0))
  oom=$(restarted_pods)
  check "no CNN pod was restarted or killed for memory (125Mi)${oom:+: $oom}" test -z "$oom"
  log=$(plog "$(pods_of worker | grep -- '-0$' | head -n 1)")
  check "the CNN trained $CNN_STEPS steps in the 125Mi pods (worker 0: $(grep -oE 'Worker 0: [0-9]+ parameters' <<<"$log" | head -n 1)) and reported a test accuracy ($(grep -oE 'Test accuracy: [0-9.]+' <<<"$log" | tail -n 1))" \
    eval 'all_workers_done 2 && grep -q "Test accuracy" <<<"$log"'
  report_memory
  save_pod_logs cnn
}
