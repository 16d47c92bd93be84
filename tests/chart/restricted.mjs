// The Pod Security Standards' "restricted" profile (which includes
// "baseline") as checks on a pod's metadata and spec, written from the
// standard's documented rules
// (https://kubernetes.io/docs/concepts/security/pod-security-standards/,
// policy version "latest"). The apiserver that make test-k8s and make e2e run
// (1.20) has no PodSecurity admission (it came in 1.22, GA in 1.25), so the
// chart is checked against these rules offline instead.
//
// restrictedViolations(metadata, spec) -> ["<control>: <field> <why>", ...]

const BASELINE_CAPS = new Set(["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
  "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"]);
const SELINUX_TYPES = new Set(["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"]);
const SAFE_SYSCTLS = new Set(["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
  "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
  "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"]);
const RESTRICTED_VOLUMES = new Set(["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
  "projected", "secret"]);
const SECCOMP_OK = new Set(["RuntimeDefault", "Localhost"]);

const unset = (v) => v === undefined || v === null;

export function restrictedViolations(metadata = {}, spec = {}) {
  const out = [];
  const bad = (control, field, why) => out.push(`${control}: ${field} ${why}`);
  const psc = spec.securityContext || {};
  const containers = [
    ...(spec.initContainers || []).map((c, i) => [`spec.initContainers[${i}]`, c]),
    ...(spec.containers || []).map((c, i) => [`spec.containers[${i}]`, c]),
    ...(spec.ephemeralContainers || []).map((c, i) => [`spec.ephemeralContainers[${i}]`, c]),
  ];

  // ---- baseline
  if (psc.windowsOptions?.hostProcess) bad("HostProcess", "spec.securityContext.windowsOptions.hostProcess", "is true");
  for (const k of ["hostNetwork", "hostPID", "hostIPC"]) if (spec[k]) bad("Host Namespaces", `spec.${k}`, "is true");
  for (const v of spec.volumes || []) if (v.hostPath) bad("HostPath Volumes", `spec.volumes[${v.name}].hostPath`, `is set (${v.hostPath.path})`);
  for (const [k, v] of Object.entries(metadata.annotations || {})) {
    if (k.startsWith("container.apparmor.security.beta.kubernetes.io/") && v !== "runtime/default" && !v.startsWith("localhost/"))
      bad("AppArmor", `metadata.annotations[${k}]`, `is ${v}`);
  }
  const apparmor = (sc, at) => {
    const t = sc.appArmorProfile?.type;
    if (!unset(t) && !SECCOMP_OK.has(t)) bad("AppArmor", `${at}.appArmorProfile.type`, `is ${t}`);
  };
  const selinux = (sc, at) => {
    const o = sc.seLinuxOptions;
    if (!o) return;
    if (!unset(o.type) && !SELINUX_TYPES.has(o.type)) bad("SELinux", `${at}.seLinuxOptions.type`, `is ${o.type}`);
    for (const k of ["user", "role"]) if (!unset(o[k]) && o[k] !== "") bad("SELinux", `${at}.seLinuxOptions.${k}`, "is set");
  };
  apparmor(psc, "spec.securityContext");
  selinux(psc, "spec.securityContext");
  for (const s of psc.sysctls || []) if (!SAFE_SYSCTLS.has(s.name)) bad("Sysctls", `spec.securityContext.sysctls[${s.name}]`, "is not a safe sysctl");
  if (psc.seccompProfile?.type === "Unconfined") bad("Seccomp", "spec.securityContext.seccompProfile.type", "is Unconfined");

  // ---- restricted
  for (const v of spec.volumes || []) {
    const kind = Object.keys(v).find((k) => k !== "name");
    if (!RESTRICTED_VOLUMES.has(kind)) bad("Volume Types", `spec.volumes[${v.name}]`, `is a ${kind} volume`);
  }
  if (!unset(psc.runAsUser) && psc.runAsUser === 0) bad("Running as Non-root user", "spec.securityContext.runAsUser", "is 0");
  const podSeccomp = psc.seccompProfile?.type;
  if (!unset(podSeccomp) && !SECCOMP_OK.has(podSeccomp) && podSeccomp !== "Unconfined")
    bad("Seccomp", "spec.securityContext.seccompProfile.type", `is ${podSeccomp}`);

  for (const [at, c] of containers) {
    const sc = c.securityContext || {};
    const f = `${at}(${c.name}).securityContext`;
    if (sc.windowsOptions?.hostProcess) bad("HostProcess", `${f}.windowsOptions.hostProcess`, "is true");
    if (sc.privileged) bad("Privileged Containers", `${f}.privileged`, "is true");
    for (const cap of sc.capabilities?.add || []) if (!BASELINE_CAPS.has(cap)) bad("Capabilities (baseline)", `${f}.capabilities.add`, `has ${cap}`);
    for (const p of c.ports || []) if (p.hostPort) bad("Host Ports", `${at}(${c.name}).ports[${p.name ?? p.containerPort}].hostPort`, `is ${p.hostPort}`);
    apparmor(sc, f);
    selinux(sc, f);
    if (!unset(sc.procMount) && sc.procMount !== "Default") bad("/proc Mount Type", `${f}.procMount`, `is ${sc.procMount}`);
    const t = sc.seccompProfile?.type;
    if (t === "Unconfined") bad("Seccomp", `${f}.seccompProfile.type`, "is Unconfined");
    // restricted
    if (sc.allowPrivilegeEscalation !== false) bad("Privilege Escalation", `${f}.allowPrivilegeEscalation`, `is ${sc.allowPrivilegeEscalation ?? "not set"} (must be false)`);
    if (sc.runAsNonRoot === false) bad("Running as Non-root", `${f}.runAsNonRoot`, "is false");
    else if (unset(sc.runAsNonRoot) && psc.runAsNonRoot !== true) bad("Running as Non-root", `${f}.runAsNonRoot`, "is not set and spec.securityContext.runAsNonRoot is not true");
    if (sc.runAsUser === 0) bad("Running as Non-root user", `${f}.runAsUser`, "is 0");
    if (!unset(t) && !SECCOMP_OK.has(t) && t !== "Unconfined") bad("Seccomp", `${f}.seccompProfile.type`, `is ${t}`);
    if (unset(t) && !SECCOMP_OK.has(podSeccomp)) bad("Seccomp", `${f}.seccompProfile.type`, "is not set and the pod's is not RuntimeDefault or Localhost");
    const drop = sc.capabilities?.drop || [];
    if (!drop.includes("ALL")) bad("Capabilities", `${f}.capabilities.drop`, `is [${drop.join(", ")}], not including ALL`);
    for (const cap of sc.capabilities?.add || []) if (cap !== "NET_BIND_SERVICE") bad("Capabilities", `${f}.capabilities.add`, `has ${cap} (only NET_BIND_SERVICE)`);
  }
  return out;
}

/** Every pod an object list creates or is: [{id, metadata, spec}] (Pods, and the templates of Jobs, StatefulSets, ...). */
export function podSpecs(objs) {
  const out = [];
  for (const o of objs) {
    if (o.kind === "Pod") out.push({ id: `Pod/${o.metadata.name}`, metadata: o.metadata, spec: o.spec });
    else if (o.spec?.template?.spec) out.push({ id: `${o.kind}/${o.metadata.name}`, metadata: o.spec.template.metadata || {}, spec: o.spec.template.spec });
    else if (o.spec?.jobTemplate?.spec?.template?.spec) {
      const t = o.spec.jobTemplate.spec.template;
      out.push({ id: `${o.kind}/${o.metadata.name}`, metadata: t.metadata || {}, spec: t.spec });
    }
  }
  return out;
}
