# /etc/dtf/liveness.sh ROLE STALL_SECONDS: the liveness probe of a dtf
# container (the chart's livenessProbe execs it there, as the container's user).
#   ps      passes while dtf holds a listening TCP socket other than its
#           metrics port ($DTF_METRICS_PORT): it serves the ps port; and for
#           STALL_SECONDS after dtf started (restoring a checkpoint first)
#   worker  passes while dtf does something: its CPU time, or the bytes it
#           read or wrote (sockets, the data set, its logs), changed within
#           the last STALL_SECONDS; it keeps what it saw in /tmp/.dtf-liveness
# Both pass when no dtf process is left: a StatefulSet pod that idles after a
# finished training (the chart's wrapper), or a container that is exiting.
# One line on stdout says why; the kubelet keeps it in the pod's events.
role=$1 stall=${2:-300}
state=/tmp/.dtf-liveness

pid=
for d in /proc/[0-9]*; do
  read -r comm 2>/dev/null <"$d/comm" || continue
  if [ "$comm" = dtf ]; then pid=${d#/proc/}; break; fi
done
if [ -z "$pid" ]; then echo "no dtf process: finished"; exit 0; fi
read -r stat 2>/dev/null <"/proc/$pid/stat" || { echo "dtf (pid $pid) just ended"; exit 0; }
# shellcheck disable=SC2086 # the fields after "pid (comm) ": state is field 3
set -- ${stat##*) }
[ "$1" = Z ] && { echo "dtf (pid $pid) ended"; exit 0; }

if [ "$role" = ps ]; then
  listening=' ' metrics=
  [ -n "${DTF_METRICS_PORT:-}" ] && metrics=$(printf '%04X' "$DTF_METRICS_PORT")
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    # sl local remote st tx:rx tr:when retrnsmt uid timeout inode ...; st 0A is LISTEN
    while read -r _ local _ st _ _ _ _ _ inode _; do
      [ "$st" = 0A ] || continue
      [ "${local##*:}" = "$metrics" ] && continue
      listening="$listening$inode "
    done <"$f"
  done
  for fd in /proc/"$pid"/fd/*; do
    l=$(readlink "$fd" 2>/dev/null) || continue
    case $l in
      socket:\[*\])
        i=${l#socket:[}; i=${i%]}
        case $listening in *" $i "*) echo "ps: dtf (pid $pid) listens"; exit 0 ;; esac ;;
    esac
  done
  # started within STALL_SECONDS: still restoring, not hung (field 22 of
  # stat is the start in clock ticks after boot; 100 a second here)
  read -r up _ </proc/uptime
  age=$(( ${up%.*} - ${20} / 100 ))
  if [ "$age" -lt "$stall" ]; then
    echo "ps: dtf (pid $pid) is starting (${age} s) and listens on no port yet"
    exit 0
  fi
  echo "ps: dtf (pid $pid) holds no listening TCP socket${metrics:+ but its metrics port}"
  exit 1
fi

# utime + stime (fields 14 and 15), and rchar + wchar of /proc/PID/io
cpu=$((${12} + ${13})) io=0
if [ -r "/proc/$pid/io" ]; then
  while read -r k v; do
    case $k in rchar: | wchar:) io=$((io + v)) ;; esac
  done <"/proc/$pid/io"
fi
now=$(date +%s)
spid='' scpu='' sio='' since=$now
[ -r "$state" ] && read -r spid scpu sio since <"$state"
if [ "$spid $scpu $sio" != "$pid $cpu $io" ]; then
  echo "$pid $cpu $io $now" >"$state" || { echo "worker: cannot write $state"; exit 1; }
  echo "worker: dtf (pid $pid) is working (cpu ticks $cpu, bytes read and written $io)"
  exit 0
fi
idle=$((now - since))
if [ "$idle" -ge "$stall" ]; then
  echo "worker: dtf (pid $pid) has used no CPU and read or written nothing for $idle s (limit $stall s)"
  exit 1
fi
echo "worker: dtf (pid $pid) quiet for $idle s (limit $stall s)"
exit 0
