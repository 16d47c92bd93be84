# tests/e2e/cluster.sh: a single-node Kubernetes 1.20 on this machine, sourced
# by tests/e2e/run. cluster_up starts it, cluster_down (idempotent, safe to run
# after any failure) stops it and undoes every change to the machine.
#
# Everything the cluster keeps lives under $WORK: etcd's data, the
# certificates, kubeconfigs, containerd's root, state and socket, the
# kubelet's root, the CNI configuration and IP allocations, dnsmasq's records
# and every log. Addresses are all on this machine: $NODE_IP and $DNS_IP on
# `lo` (a documentation range, never routed), pods on the bridge $BRIDGE in
# $POD_CIDR, Services in $SVC_CIDR (kube-proxy's iptables rules), and a
# FORWARD rule keeps pod traffic from leaving through any other interface.
#
# Paths the components insist on (kept track of, removed when they were not
# there before): /var/log/pods, /var/log/containers, /run/containerd (shim
# sockets), /var/lib/kubelet/device-plugins, /run/netns/cni-*,
# /var/lib/cni/results/$NET-*.
#
# The caller sets WORK, K8S_BIN and HERE; the rest has defaults.
: "${NODE_IP:=198.51.100.10}" "${DNS_IP:=198.51.100.53}"
: "${POD_CIDR:=198.18.0.0/24}" "${POD_GW:=198.18.0.1}" "${SVC_CIDR:=198.18.128.0/24}"
: "${SVC_IP:=198.18.128.1}" "${BRIDGE:=dtfe2e0}" "${NET:=dtf-e2e}" "${NODE:=dtf-e2e-node}"
: "${CGROOT:=dtf-e2e}" "${ETCD_PORT:=12379}" "${ETCD_PEER_PORT:=12380}" "${DOMAIN:=cluster.local}"
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.ipv6.conf.all.forwarding
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait)
FIXED_PATHS=(/var/log/pods /var/log/containers /run/containerd /var/lib/kubelet /var/lib/cni
  /run/netns /opt/containerd /etc/kubernetes /usr/libexec/kubernetes)

cl_log() { echo "cluster: $*"; }
kc() { "$KUBECTL" --kubeconfig "$WORK/admin.kubeconfig" "$@"; }
ctr_() { ctr --address "$WORK/containerd/containerd.sock" --namespace k8s.io "$@"; }

# Starts a long-running process in its own session, output to $WORK/logs/NAME.log.
cl_start() { # name cmd...
  local name=$1; shift
  setsid "$@" >"$WORK/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$WORK/pids/$name"
}

cl_running() { local p; p=$(cat "$WORK/pids/$1" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

cl_stop() { # name...: TERM, then KILL after 10 s
  local name pid i
  for name in "$@"; do
    pid=$(cat "$WORK/pids/$name" 2>/dev/null) || continue
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$WORK/pids/$name"
  done
}

# wait_for SECONDS WHAT CMD...: polls CMD every half second.
wait_for() {
  local secs=$1 what=$2 t0=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - t0)) -ge "$secs" ]; then
      cl_log "timed out after ${secs} s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# ---- the state of the machine before, so that cluster_down restores it ------

cl_note_machine() {
  local s p
  mkdir -p "$WORK/before"
  : >"$WORK/before/sysctl"
  for s in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(sysctl -n "$s")" >>"$WORK/before/sysctl"
  done
  : >"$WORK/before/paths"
  for p in "${FIXED_PATHS[@]}"; do [ -e "$p" ] && echo "$p" >>"$WORK/before/paths"; done
  ls /run/netns 2>/dev/null >"$WORK/before/netns" || :
  ls /var/lib/cni/results 2>/dev/null >"$WORK/before/cni-results" || :
  "$HERE/tests/e2e/iptables-sweep" snapshot "$WORK/before/iptables.json"
}

# ---- certificates and kubeconfigs ----------------------------------------------

cl_certs() {
  local d=$WORK/pki
  mkdir -p "$d"
  (
    cd "$d"
    key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null; }
    key ca
    openssl req -x509 -new -key ca.key -subj /CN=dtf-e2e-ca -days 2 -out ca.crt 2>/dev/null
    cert() { # name subject extensions
      key "$1"
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    }
    cert apiserver /CN=kube-apiserver "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:$SVC_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN"
    cert admin "/O=system:masters/CN=dtf-e2e-admin" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    cert node "/O=system:nodes/CN=system:node:$NODE" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || return 1
  local who
  for who in admin node; do
    cat >"$WORK/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dtf-e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $d/ca.crt
users:
- name: $who
  user:
    client-certificate: $d/$who.crt
    client-key: $d/$who.key
contexts:
- name: dtf-e2e
  context: {cluster: dtf-e2e, user: $who}
current-context: dtf-e2e
EOF
  done
}

# ---- cgroups: everything the kubelet and runc make goes under /$CGROOT ----------

cl_cgroup_dirs() { # every hierarchy's /$CGROOT that exists
  local m
  for m in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$m$CGROOT" ] && echo "$m$CGROOT"
  done
}

cl_cgroups() {
  local m
  for m in /sys/fs/cgroup/*/; do
    [ -e "${m}cgroup.procs" ] || continue
    mkdir -p "$m$CGROOT" || return 1
    if [ -e "${m}cpuset.cpus" ]; then
      cat "${m}cpuset.cpus" >"$m$CGROOT/cpuset.cpus"
      cat "${m}cpuset.mems" >"$m$CGROOT/cpuset.mems"
    fi
  done
}

# The peak memory of a container (cgroup v1 memory.max_usage_in_bytes, v2
# memory.peak), in bytes; empty when its cgroup is not found.
cl_container_peak() { # container id
  local f
  f=$(find /sys/fs/cgroup/memory/"$CGROOT" /sys/fs/cgroup/unified/"$CGROOT" /sys/fs/cgroup/"$CGROOT" \
        -maxdepth 5 -type d -name "$1" 2>/dev/null | head -n 1)
  [ -n "$f" ] || return 0
  if [ -r "$f/memory.max_usage_in_bytes" ]; then cat "$f/memory.max_usage_in_bytes"
  elif [ -r "$f/memory.peak" ]; then cat "$f/memory.peak"; fi
}

# ---- start ---------------------------------------------------------------------

cl_etcd() {
  cl_start etcd etcd --name dtf-e2e --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "dtf-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --listen-metrics-urls "" --log-level warn
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
}

cl_control_plane() {
  local p=$WORK/pki
  cl_start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 --insecure-port 0 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --cert-dir "$WORK/apiserver" \
    --service-cluster-ip-range "$SVC_CIDR" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.$DOMAIN" \
    --api-audiences "https://kubernetes.default.svc.$DOMAIN" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --allow-privileged=true --profiling=false --v=0
  wait_for 60 kube-apiserver kc get --raw /readyz || return 1
  cl_start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$WORK/admin.kubeconfig" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=false --cluster-name dtf-e2e \
    --port 0 --secure-port 0 --profiling=false --v=0
  cl_start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$WORK/admin.kubeconfig" --leader-elect=false \
    --port 0 --secure-port 0 --profiling=false --v=0
}

cl_containerd() {
  local d=$WORK/containerd
  mkdir -p "$d" "$WORK/cni/net.d" "$WORK/cni/ipam"
  cat >"$WORK/cni/net.d/10-$NET.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NET",
  "plugins": [{
    "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local", "dataDir": "$WORK/cni/ipam",
      "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
      "routes": [{"dst": "0.0.0.0/0"}]
    }
  }]
}
EOF
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni/net.d"
    max_conf_num = 1
EOF
  cl_start containerd containerd --config "$d/config.toml"
  wait_for 30 containerd ctr --address "$d/containerd.sock" version
}

# The sandbox image: a static pause program as k8s.gcr.io/pause:3.2.
cl_pause_image() {
  gcc -static -O2 -o "$WORK/pause" "$HERE/tests/e2e/pause.c" &&
    "$HERE/tests/e2e/mkimage" k8s.gcr.io/pause:3.2 "$WORK/pause" /pause "$WORK/pause.tar" &&
    ctr_ images import "$WORK/pause.tar" >/dev/null
}

cl_kubelet() {
  mkdir -p "$WORK/kubelet" "$WORK/kubelet-plugins"
  cl_start kubelet "$K8S_BIN/kubelet" \
    --kubeconfig "$WORK/node.kubeconfig" --hostname-override "$NODE" --node-ip "$NODE_IP" \
    --container-runtime remote \
    --container-runtime-endpoint "unix://$WORK/containerd/containerd.sock" \
    --root-dir "$WORK/kubelet" --cert-dir "$WORK/kubelet/pki" \
    --volume-plugin-dir "$WORK/kubelet-plugins" \
    --cgroup-driver cgroupfs --cgroup-root "/$CGROOT" --fail-swap-on=false \
    --address "$NODE_IP" --port 10250 --read-only-port 0 --healthz-port 0 \
    --client-ca-file "$WORK/pki/ca.crt" --anonymous-auth=false --authorization-mode AlwaysAllow \
    --cluster-dns "$DNS_IP" --cluster-domain "$DOMAIN" --resolv-conf "" \
    --pod-infra-container-image k8s.gcr.io/pause:3.2 \
    --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
    --eviction-hard 'memory.available<100Mi,nodefs.available<1%,imagefs.available<1%' \
    --make-iptables-util-chains=false --oom-score-adj 0 --serialize-image-pulls=false \
    --node-status-update-frequency 4s --v=0
  wait_for 90 "the node to be Ready" node_ready
}

node_ready() {
  [ "$(kc get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

cl_kube_proxy() {
  cl_start kube-proxy "$K8S_BIN/kube-proxy" \
    --kubeconfig "$WORK/admin.kubeconfig" --hostname-override "$NODE" \
    --bind-address "$NODE_IP" --cluster-cidr "$POD_CIDR" --proxy-mode iptables \
    --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 \
    --conntrack-tcp-timeout-close-wait 0 --oom-score-adj 0 \
    --metrics-bind-address "$NODE_IP:10249" --healthz-bind-address "$NODE_IP:10256" --v=0
  wait_for 30 "kube-proxy's rules" sh -c "iptables-save -t nat | grep -q KUBE-SERVICES"
}

cl_dns() {
  mkdir -p "$WORK/dns/hosts"
  cl_start dns-feed "$HERE/tests/e2e/dns-feed" "$WORK/admin.kubeconfig" \
    "$WORK/dns/hosts" "$DOMAIN"
  cl_start dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address="$DNS_IP" --port=53 --user=root \
    --hostsdir="$WORK/dns/hosts" --local="/$DOMAIN/" --domain-needed \
    --local-ttl=1 --neg-ttl=1 --cache-size=0 --pid-file="$WORK/dns/dnsmasq.pid" \
    --log-facility=-
  wait_for 30 "the cluster DNS" dig_service
}

# The kubernetes Service's name answered by dnsmasq (getent cannot pick the
# server; a DNS query by hand with bash's /dev/udp would be unreadable).
dig_service() {
  grep -q "kubernetes.default.svc.$DOMAIN" "$WORK/dns/hosts/cluster" 2>/dev/null &&
    [ -n "$(python3 "$HERE/tests/e2e/dnsq" "$DNS_IP" "kubernetes.default.svc.$DOMAIN")" ]
}

cluster_up() {
  mkdir -p "$WORK/logs" "$WORK/pids"
  cl_note_machine
  ip addr add "$NODE_IP/32" dev lo && echo "$NODE_IP/32" >>"$WORK/addresses" || return 1
  ip addr add "$DNS_IP/32" dev lo && echo "$DNS_IP/32" >>"$WORK/addresses" || return 1
  # Pod traffic stays on this machine: nothing is forwarded between the bridge
  # and any other interface.
  iptables -w -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -m comment --comment "$NET isolation" -j DROP &&
    iptables -w -I FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -m comment --comment "$NET isolation" -j DROP ||
    return 1
  cl_certs || { cl_log "openssl failed"; return 1; }
  cl_cgroups || { cl_log "cannot make the cgroup /$CGROOT"; return 1; }
  cl_etcd || return 1
  cl_control_plane || return 1
  cl_containerd || return 1
  cl_pause_image || { cl_log "cannot build or import the pause image"; return 1; }
  cl_kubelet || return 1
  cl_kube_proxy || return 1
  cl_dns || return 1
  wait_for 60 "the default service account's token" \
    sh -c "'$KUBECTL' --kubeconfig '$WORK/admin.kubeconfig' get serviceaccount default -o jsonpath='{.secrets[0].name}' | grep -q ."
}

# ---- stop and undo ---------------------------------------------------------------

# Kills every process in the cluster's cgroups (pods) and removes the cgroups.
cl_cgroups_down() {
  local d pids i
  for i in 1 2 3; do
    pids=$(cl_cgroup_dirs | while read -r d; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u)
    [ -n "$pids" ] || break
    kill -KILL $pids 2>/dev/null
    sleep 0.5
  done
  for d in $(cl_cgroup_dirs); do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$d" ] && cl_log "could not remove the cgroup $d"
  done
  return 0
}

cl_unmount_under() { # dir: every mount point below it, deepest first
  local m
  awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || cl_log "could not unmount $m"
  done
}

cluster_down() {
  [ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
  local s n p pid
  # Pods first, while the kubelet can still stop them cleanly (CNI DEL).
  if cl_running kube-apiserver && cl_running kubelet; then
    # Controllers first, or they make the pods again.
    kc delete statefulsets,deployments,daemonsets,replicasets,jobs,replicationcontrollers --all -A \
      --wait=false >/dev/null 2>&1
    kc delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1
    wait_for 45 "the pods to go" sh -c "[ -z \"\$(ctr --address '$WORK/containerd/containerd.sock' -n k8s.io tasks ls -q)\" ]" ||
      cl_log "pods left running: $(ctr_ tasks ls -q 2>/dev/null | wc -l)"
  fi
  cl_stop dns-feed dnsmasq kube-proxy
  [ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup >"$WORK/logs/kube-proxy-cleanup.log" 2>&1
  cl_stop kubelet kube-scheduler kube-controller-manager
  if cl_running containerd; then
    for n in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$n" >/dev/null 2>&1; done
    sleep 1
    for n in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$n" >/dev/null 2>&1; done
  fi
  cl_stop containerd
  # Shims outlive containerd: find ours by the socket address in their command line.
  for pid in $(pgrep -f -- "-address $WORK/containerd/containerd.sock" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null
  done
  cl_cgroups_down
  cl_stop kube-apiserver etcd
  # Network namespaces of pods (containerd names them cni-<uuid>).
  for n in $(ls /run/netns 2>/dev/null); do
    case $n in cni-*) ;; *) continue ;; esac
    grep -qx -- "$n" "$WORK/before/netns" 2>/dev/null && continue
    umount "/run/netns/$n" 2>/dev/null || umount -l "/run/netns/$n" 2>/dev/null
    rm -f "/run/netns/$n"
  done
  cl_unmount_under "$WORK"
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  if [ -f "$WORK/addresses" ]; then
    while read -r a; do ip addr del "$a" dev lo 2>/dev/null; done <"$WORK/addresses"
    rm -f "$WORK/addresses"
  fi
  [ -f "$WORK/before/iptables.json" ] &&
    "$HERE/tests/e2e/iptables-sweep" clean "$WORK/before/iptables.json" "$NET" "$BRIDGE" \
      "${POD_CIDR%.*}." "${SVC_CIDR%.*}." "$NODE_IP" "$DNS_IP"
  if [ -f "$WORK/before/sysctl" ]; then
    while IFS== read -r s v; do
      [ "$(sysctl -n "$s" 2>/dev/null)" = "$v" ] || sysctl -q -w "$s=$v" >/dev/null ||
        cl_log "could not restore $s=$v"
    done <"$WORK/before/sysctl"
  fi
  # CNI result caches of our sandboxes (the pod network's and containerd's
  # loopback network's), left where a sandbox was never stopped cleanly.
  for n in $(ls /var/lib/cni/results 2>/dev/null); do
    case $n in "$NET"-*|cni-loopback-*) ;; *) continue ;; esac
    grep -qx -- "$n" "$WORK/before/cni-results" 2>/dev/null && continue
    rm -f "/var/lib/cni/results/$n"
  done
  if [ -f "$WORK/before/paths" ]; then
    for p in "${FIXED_PATHS[@]}"; do
      grep -qx -- "$p" "$WORK/before/paths" && continue
      [ -e "$p" ] || continue
      cl_unmount_under "$p"
      rm -rf "$p"
    done
  fi
  return 0
}

# What is still there that cluster_down should have removed (empty: nothing).
cluster_leftovers() {
  local pid
  for pid in $(pgrep -f -- "$WORK/" 2>/dev/null); do
    [ "$pid" = $$ ] || echo "process $pid: $(tr '\0' ' ' </proc/$pid/cmdline 2>/dev/null | cut -c1-80)"
  done
  awk -v d="$WORK/" 'index($5, d) == 1 { print "mount " $5 }' /proc/self/mountinfo
  ip -br addr show dev lo | grep -oE "($NODE_IP|$DNS_IP)/32" | sed 's/^/address /'
  ip link show "$BRIDGE" >/dev/null 2>&1 && echo "link $BRIDGE"
  cl_cgroup_dirs | sed 's/^/cgroup /'
  ls /var/lib/cni/results 2>/dev/null | grep -E "^($NET|cni-loopback)-" |
    grep -vxF -f "$WORK/before/cni-results" 2>/dev/null | sed 's/^/CNI result cache /'
  iptables-save 2>/dev/null | grep -E "KUBE-|$NET|$BRIDGE" | sed 's/^/iptables /'
  ip6tables-save 2>/dev/null | grep -E "KUBE-|$NET|$BRIDGE" | sed 's/^/ip6tables /'
  local s v
  [ -f "$WORK/before/sysctl" ] && while IFS== read -r s v; do
    [ "$(sysctl -n "$s" 2>/dev/null)" = "$v" ] || echo "sysctl $s=$(sysctl -n "$s") (was $v)"
  done <"$WORK/before/sysctl"
  return 0
}
