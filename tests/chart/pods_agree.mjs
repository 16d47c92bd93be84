// The test that the chart, the image and the binary agree: render the chart,
// and run every pod it would create as real dtf processes on this machine,
// each container in a sandbox (tests/chart/sandbox) that stands for what a
// container runtime gives it.
//
//   tests/chart/pods_agree [BUILD_DIR] [-- HELM TEMPLATE ARGS...]
//
// For each pod of each Job / StatefulSet (pod i of <name> has the hostname
// <name>-i, as Kubernetes names it):
//  - the image: the files container/Dockerfile copies into its last stage
//    (the build's dtf, lua/, train.lua, models/) at the paths it copies them
//    to, over this machine's own Debian as the rest of the image; its ENV,
//    WORKDIR and USER;
//  - the container: command and args (the /bin/sh wrapper included), env
//    (secretKeyRef resolved from the rendered Secret; HOSTNAME, and
//    JOB_COMPLETION_INDEX for indexed Jobs, as Kubernetes adds them), its
//    securityContext over the pod's (user, group, fsGroup, capabilities,
//    readOnlyRootFilesystem), PID 1 of its own PID namespace;
//  - the volumes, at their mount paths: the ConfigMap's files (read-only),
//    emptyDirs (0777, fsGroup), hostPath directories of one node (created
//    root-owned 0755 by DirectoryOrCreate, fsGroup does not reach them) and
//    persistentVolumeClaims (a directory per claim on that node, fsGroup
//    applied, as on a block volume);
//  - the init containers, in order, before the pod's container;
//  - the liveness probe (exec), run inside the container while it runs;
//  - the cluster's DNS names (<hostname>.<service>) in DTF_CLUSTER rewritten
//    to 127.0.0.1 with a free port each. A name that is not a pod the chart
//    creates (or a ps port its container does not declare) fails the test.
//    DTF_METRICS_PORT (each pod's /metrics port) becomes a free port too, and
//    must be the metrics port the container declares.
// Then it checks that every task exits 0 (a StatefulSet pod that idles after
// training is sent SIGTERM then), that the workers reached trainsteps, that
// deploy.log landed where logdir is, and that every probe passed.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync, readFileSync, rmSync, readdirSync, chmodSync, chownSync, statSync, readlinkSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { render, pods, dtfContainer, root, tmpdir, byKind } from "./lib.mjs";

const sandboxBin = path.join(root, "tests/chart/sandbox");
const dockerfile = path.join(root, "container/Dockerfile");
// The default capabilities of a container (containerd's, as Docker's).
const DEFAULT_CAPS = ["chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
  "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write"];

/** Whether this machine can run the sandboxes: null when it can, else why not. */
export function sandboxUnavailable() {
  const r = spawnSync(sandboxBin, ["check"], { encoding: "utf8" });
  return r.status === 0 ? null : (r.stdout + r.stderr).trim() || `sandbox check exited ${r.status}`;
}

/**
 * What the image holds, from container/Dockerfile's last stage: files
 * [{src (on this machine), dst}], env {K: V}, workdir, user, entrypoint, cmd.
 */
export function imageOf(buildDir) {
  const lines = readFileSync(dockerfile, "utf8").replace(/\\\n/g, " ").split("\n");
  let last = 0;
  lines.forEach((l, i) => { if (/^FROM\s/i.test(l)) last = i; });
  const img = { files: [], env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }, workdir: "/", user: "0:0", entrypoint: [], cmd: [] };
  for (const l of lines.slice(last + 1)) {
    let m;
    if ((m = l.match(/^COPY\s+--from=build\s+(\S+)\s+(\S+)\s*$/i))) {
      // The build stage's `make BUILD=build build/dtf`: this machine's build of it.
      if (m[1] !== "/src/build/dtf") throw new Error(`Dockerfile: COPY --from=build ${m[1]}: pods_agree knows only /src/build/dtf`);
      img.files.push({ src: path.resolve(root, buildDir, "dtf"), dst: m[2] });
    } else if ((m = l.match(/^COPY\s+(\S+)\s+(\S+)\s*$/i))) {
      img.files.push({ src: path.join(root, m[1]), dst: m[2].replace(/\/$/, "") });
    } else if ((m = l.match(/^ENV\s+(\w+)=(\S*)\s*$/i))) img.env[m[1]] = m[2];
    else if ((m = l.match(/^WORKDIR\s+(\S+)/i))) img.workdir = m[1];
    else if ((m = l.match(/^USER\s+(\S+)/i))) img.user = m[1].includes(":") ? m[1] : `${m[1]}:${m[1]}`;
    else if ((m = l.match(/^ENTRYPOINT\s+(\[.*\])/i))) img.entrypoint = JSON.parse(m[1]);
    else if ((m = l.match(/^CMD\s+(\[.*\])/i))) img.cmd = JSON.parse(m[1]);
  }
  return img;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A directory as the kubelet makes a volume that supports ownership management.
function ownVolume(dir, mode, fsGroup) {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, mode);
  if (fsGroup != null) {
    chownSync(dir, 0, fsGroup);
    chmodSync(dir, mode | 0o2070);
  }
}

// The sandbox options of one container: user, groups, capabilities, env.
function identity(c, spec, img) {
  const psc = spec.securityContext || {}, sc = c.securityContext || {};
  const [iu, ig] = img.user.split(":").map(Number);
  const uid = sc.runAsUser ?? psc.runAsUser ?? iu;
  const gid = sc.runAsGroup ?? psc.runAsGroup ?? (sc.runAsUser ?? psc.runAsUser ? 0 : ig);
  const groups = [psc.fsGroup, ...(psc.supplementalGroups || [])].filter((g) => g != null);
  const drop = (sc.capabilities?.drop || []).map((x) => x.toLowerCase());
  const add = (sc.capabilities?.add || []).map((x) => x.toLowerCase());
  const caps = [...new Set([...(drop.includes("all") ? [] : DEFAULT_CAPS.filter((x) => !drop.includes(x))), ...add])];
  const opts = ["--user", `${uid}:${gid}`];
  if (groups.length) opts.push("--groups", groups.join(","));
  if (caps.length) opts.push("--caps", caps.join(","));
  return opts;
}

/**
 * opts: {dtf, buildDir, args (helm template args), kube, release, timeoutMs,
 *   quiet, objs (already rendered objects, instead of rendering args),
 *   node (a directory standing for the node: hostPath and claim directories;
 *   the same one for two runs is an upgrade on the same node), claims (names
 *   of claims that exist without being rendered: existingClaim),
 *   onLine(pod, line, ctl) for each line of a pod's dtf container, and
 *   onProbe(pod, {code, out}, ctl) for each of its liveness probes, where
 *   ctl.stopAll() sends SIGTERM to every pod, then SIGKILL after graceMs (as a
 *   deletion does), ctl.signal(pod, sig) signals a pod's PID 1, ctl.exec(pod,
 *   argv) runs a command in it ({code, out}), ctl.top is the highest global
 *   step a worker logged; graceMs, probeMs (between probes)}
 * returns {ok, report, results: [{name, role, code, sig, out, probes}], top, stopped}
 */
export async function podsAgree({ dtf, buildDir = "build", args = [], kube = "1.29", release = "mnist", timeoutMs = 180000,
  quiet = false, objs, node, claims = [], onLine, onProbe, graceMs = 5000, probeMs = 700 }) {
  const lines = [];
  const log = (s) => { lines.push(s); if (!quiet) console.log(s); };
  const problems = [];
  objs = objs || render(args, { release, kube });
  const all = pods(objs);
  const img = imageOf(dtf ? path.relative(root, path.dirname(path.resolve(dtf))) : buildDir);
  for (const f of img.files) if (!existsSync(f.src)) problems.push(`the image's ${f.dst} (${path.relative(root, f.src)}) does not exist`);
  const work = tmpdir("dtf-pods-");
  const ownNode = !node;
  node = node || path.join(work, "node");
  mkdirSync(node, { recursive: true });

  // DNS: each pod's name -> 127.0.0.1:<free port>. A ps entry must name the
  // port its container declares (the Service's target); a worker's port only
  // names it.
  const dns = new Map();
  for (const p of all) {
    const port = dtfContainer(p.template).ports?.find((x) => x.name === p.role)?.containerPort ?? null;
    dns.set(p.dns, { role: p.role, port, local: `127.0.0.1:${await freePort()}` });
  }
  const rewriteCluster = (json) => {
    const spec = JSON.parse(json);
    for (const key of Object.keys(spec)) {
      const role = key === "ps" ? "ps" : "worker";
      spec[key] = spec[key].map((hp) => {
        const i = hp.lastIndexOf(":"), host = hp.slice(0, i), port = Number(hp.slice(i + 1));
        const d = dns.get(host);
        if (!d || d.role !== role) {
          problems.push(`DTF_CLUSTER names ${hp}, which is no ${role} pod of the chart (pods: ${[...dns.keys()].join(" ")})`);
          return hp;
        }
        if (role === "ps" && d.port !== port) problems.push(`DTF_CLUSTER names ${hp}, but the pod's ps container declares port ${d.port}`);
        return d.local;
      });
    }
    return JSON.stringify(spec);
  };

  const secrets = new Map(byKind(objs, "Secret").map((s) => [s.metadata.name, s]));
  const configMaps = new Map(byKind(objs, "ConfigMap").map((c) => [c.metadata.name, c]));
  const knownClaims = new Set([...byKind(objs, "PersistentVolumeClaim").map((c) => c.metadata.name), ...claims]);
  const procs = [];
  let trainsteps = null;

  for (const p of all) {
    const podDir = path.join(work, "pods", p.hostname);
    const spec = p.template.spec;
    const fsGroup = spec.securityContext?.fsGroup;
    const volDirs = new Map(), volRo = new Set();
    for (const v of spec.volumes || []) {
      if (v.configMap) {
        const d = path.join(podDir, "configmap", v.name);
        mkdirSync(d, { recursive: true });
        const cm = configMaps.get(v.configMap.name);
        if (!cm) { problems.push(`${p.hostname}: ConfigMap ${v.configMap.name} is not rendered`); continue; }
        for (const [k, text] of Object.entries(cm.data || {})) writeFileSync(path.join(d, k), text, { mode: 0o644 });
        const h = cm.data?.["hparams.lua"]?.match(/^\s*trainsteps = (\d+),/m);
        if (h) trainsteps = Number(h[1]);
        volDirs.set(v.name, d);
        volRo.add(v.name); // the kubelet mounts ConfigMap volumes read-only
      } else if (v.emptyDir) {
        const d = path.join(podDir, "emptydir", v.name);
        ownVolume(d, 0o777, fsGroup);
        volDirs.set(v.name, d);
      } else if (v.hostPath) {
        const d = path.join(node, "hostpath", v.hostPath.path);
        if (!existsSync(d)) {
          if (v.hostPath.type !== "DirectoryOrCreate") { problems.push(`${p.hostname}: hostPath ${v.hostPath.path} (type ${v.hostPath.type}) does not exist on the node`); continue; }
          mkdirSync(d, { recursive: true, mode: 0o755 });
        }
        volDirs.set(v.name, d);
      } else if (v.persistentVolumeClaim) {
        const name = v.persistentVolumeClaim.claimName;
        if (!knownClaims.has(name)) { problems.push(`${p.hostname}: volume ${v.name}: claim ${name} is neither rendered nor given`); continue; }
        const d = path.join(node, "claims", name);
        if (!existsSync(d)) ownVolume(d, 0o755, fsGroup);
        else if (fsGroup != null && statSync(d).gid !== fsGroup) ownVolume(d, statSync(d).mode & 0o7777, fsGroup);
        volDirs.set(v.name, d);
      } else {
        problems.push(`${p.hostname}: volume ${v.name}: ${Object.keys(v).filter((k) => k !== "name").join(",")} volumes are not simulated`);
      }
    }
    const containerOf = async (c, kind) => {
      const binds = [];
      for (const f of img.files) binds.push("--ro-bind", `${f.src}:${f.dst}`);
      const mounts = [];
      for (const m of c.volumeMounts || []) {
        if (!volDirs.has(m.name)) { problems.push(`${p.hostname}/${c.name}: mount of unknown volume ${m.name}`); continue; }
        const src = path.join(volDirs.get(m.name), m.subPath || "");
        mkdirSync(src, { recursive: true });
        const ro = m.readOnly || volRo.has(m.name);
        binds.push(ro ? "--ro-bind" : "--bind", `${src}:${m.mountPath.replace(/\/$/, "")}`);
        mounts.push({ path: m.mountPath.replace(/\/$/, ""), src });
      }
      const env = { ...img.env, HOSTNAME: p.hostname };
      if (p.workload.kind === "Job") env.JOB_COMPLETION_INDEX = String(p.index);
      for (const e of c.env || []) {
        if (e.value !== undefined) env[e.name] = e.value;
        else if (e.valueFrom?.secretKeyRef) {
          const s = secrets.get(e.valueFrom.secretKeyRef.name);
          if (!s) { problems.push(`${p.hostname}: env ${e.name} from Secret ${e.valueFrom.secretKeyRef.name}, not rendered`); continue; }
          env[e.name] = Buffer.from(s.data[e.valueFrom.secretKeyRef.key], "base64").toString();
        } else problems.push(`${p.hostname}: env ${e.name}: unsupported valueFrom`);
      }
      if (kind === "main") {
        if (!env.DTF_CLUSTER) problems.push(`${p.hostname}: no DTF_CLUSTER`);
        else env.DTF_CLUSTER = rewriteCluster(env.DTF_CLUSTER);
        // the metrics port: the pod's own in Kubernetes, a free one here (all
        // pods share this machine's loopback); it must be the port the pod declares
        if (env.DTF_METRICS_PORT !== undefined) {
          const declared = c.ports?.find((x) => x.name === "metrics")?.containerPort;
          if (String(declared) !== env.DTF_METRICS_PORT) problems.push(`${p.hostname}: DTF_METRICS_PORT ${env.DTF_METRICS_PORT}, but the metrics port it declares is ${declared}`);
          env.DTF_METRICS_PORT = String(await freePort());
        }
      }
      if (!env.HOME) env.HOME = "/";
      const ident = identity(c, spec, img);
      const envOpts = Object.entries(env).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
      const argv = c.command ? [...c.command, ...(c.args || [])] : [...img.entrypoint, ...(c.args || img.cmd)];
      const sbox = [...binds, ...(c.securityContext?.readOnlyRootFilesystem ? ["--ro-root"] : []), ...ident,
        "--workdir", c.workingDir || img.workdir, ...envOpts];
      const probe = c.livenessProbe?.exec?.command;
      const initialDelay = c.livenessProbe?.initialDelaySeconds ?? 0, failureThreshold = c.livenessProbe?.failureThreshold ?? 3;
      return { name: `${p.hostname}/${c.name}`, argv, sbox, probe, initialDelay, failureThreshold, probeOpts: [...ident, "--workdir", c.workingDir || img.workdir, ...envOpts], mounts };
    };
    const main = await containerOf(dtfContainer(p.template), "main");
    const inits = [];
    for (const c of spec.initContainers || []) inits.push(await containerOf(c, "init"));
    const logdir = readFileSync(path.join(volDirs.get("dtf-config") || podDir, "hparams.lua"), "utf8").match(/^\s*logdir = "([^"]*)",/m)?.[1];
    procs.push({ name: p.hostname, role: p.role, dir: path.join(podDir, "sandbox"), main, inits, logdir });
  }

  if (problems.length) {
    rmSync(work, { recursive: true, force: true });
    return { ok: false, report: problems.join("\n"), results: [] };
  }

  // Run them all at once, as the pods would start; each pod's init
  // containers first.
  log(`# pods_agree: ${procs.length} pods: ${procs.map((p) => p.name).join(" ")}`);
  const running = new Map();
  let stopped = false, top = -1;
  const ctl = {
    stopAll() {
      if (stopped) return;
      stopped = true;
      log(`# pods_agree: stopping every pod (SIGTERM, SIGKILL after ${graceMs} ms) at global step ${top}`);
      for (const r of running.values()) r.term();
    },
    get top() { return top; },
  };
  let seq = 0;
  const runContainer = (pr, c, { main }) => new Promise((resolve) => {
    const base = path.join(pr.dir, String(seq++));
    mkdirSync(base, { recursive: true });
    const child = spawn(sandboxBin, ["run", base, ...c.sbox, "--", ...c.argv], { stdio: ["ignore", "pipe", "pipe"] });
    const t0 = Date.now();
    let out = "", buf = "", idled = false, killTimer = null, probeTimer = null, pid1 = null, exited = false;
    const probes = [];
    const findPid1 = () => {
      if (pid1) return pid1;
      try { pid1 = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/)[0]) || null; } catch { pid1 = null; }
      return pid1;
    };
    const signal = (sig) => { const p1 = findPid1(); try { if (p1) process.kill(p1, sig); } catch { /* gone */ } };
    const term = () => {
      signal("SIGTERM");
      killTimer = killTimer || setTimeout(() => signal("SIGKILL"), graceMs);
    };
    const onData = (d) => {
      out += d;
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        log(`${c.name}: ${line}`);
        if (main && pr.role === "worker") {
          const m = line.match(/global step:? (\d+)/);
          if (m) top = Math.max(top, Number(m[1]));
        }
        if (onLine && main) onLine(pr, line, ctl);
      }
      if (main && !idled && /training done; idling/.test(out)) { idled = true; probeOnce().then(term); }
    };
    // The liveness probe, as the kubelet runs it: inside the container, once
    // the container runs (its PID 1 is in its own root), not once it ended.
    const started = (p1) => { try { return readlinkSync(`/proc/${p1}/root`) !== "/"; } catch { return false; } };
    const probeOnce = () => new Promise((res) => {
      const p1 = findPid1();
      if (!c.probe || !p1 || !started(p1)) return res();
      const r = spawn(sandboxBin, ["exec", String(p1), ...c.probeOpts, "--", ...c.probe], { stdio: ["ignore", "pipe", "pipe"] });
      let po = "";
      r.stdout.on("data", (d) => (po += d));
      r.stderr.on("data", (d) => (po += d));
      r.on("exit", (code, sig) => {
        if (!exited && started(p1)) {
          const pb = { code: code ?? sig, out: po.trim(), at: top };
          probes.push(pb);
          if (onProbe) onProbe(pr, pb, ctl);
        }
        res();
      });
    });
    if (main && c.probe) {
      const tick = async () => { await probeOnce(); if (probeTimer !== false) probeTimer = setTimeout(tick, probeMs); };
      probeTimer = setTimeout(tick, probeMs);
    }
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => { out += "\n[pods_agree: timed out, killed]"; signal("SIGKILL"); }, timeoutMs);
    const exec = (argv) => new Promise((res) => {
      const p1 = findPid1();
      if (!p1 || !started(p1)) return res({ code: null, out: "not running" });
      const r = spawn(sandboxBin, ["exec", String(p1), ...c.probeOpts, "--", ...argv], { stdio: ["ignore", "pipe", "pipe"] });
      let eo = "";
      r.stdout.on("data", (d) => (eo += d));
      r.stderr.on("data", (d) => (eo += d));
      r.on("exit", (code, sig) => res({ code: code ?? sig, out: eo.trim() }));
    });
    if (main) running.set(pr.name, { term, signal, exec, get pid1() { return findPid1(); } });
    child.on("exit", (code, sig) => {
      exited = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      clearTimeout(probeTimer);
      probeTimer = false;
      running.delete(pr.name);
      resolve({ code, sig, out, idled, probes, ranMs: Date.now() - t0 });
    });
  });

  ctl.signal = (name, sig) => running.get(name)?.signal(sig);
  ctl.exec = (name, argv) => running.get(name)?.exec(argv) ?? Promise.resolve({ code: null, out: "not running" });
  const results = await Promise.all(procs.map(async (pr) => {
    for (const c of pr.inits) {
      const r = await runContainer(pr, c, { main: false });
      if (r.code !== 0) return { ...pr, code: r.code, sig: r.sig, out: r.out, probes: [], failedInit: c.name };
    }
    return { ...pr, ...(await runContainer(pr, pr.main, { main: true })) };
  }));

  for (const r of results) {
    if (r.failedInit) problems.push(`${r.name}: init container ${r.failedInit} exited ${r.code ?? r.sig}:\n${r.out.split("\n").slice(-10).join("\n")}`);
    else if (!stopped && r.code !== 0) problems.push(`${r.name} (${r.role}) exited ${r.code ?? r.sig}; last lines:\n${r.out.split("\n").slice(-15).join("\n")}`);
    const lw = (r.out || "").match(/.*cannot write the log file.*/);
    if (lw) problems.push(`${r.name}: ${lw[0].replace(/^.* - dtf - /, "")}`);
    // As the kubelet counts them: failureThreshold failures in a row restart
    // the container; none count before the first pass (the container starting:
    // its initialDelaySeconds), and a container that never passed in longer
    // than that is one that would be restarted too.
    const firstOk = (r.probes || []).findIndex((pb) => pb.code === 0);
    let row = [];
    for (const pb of firstOk < 0 ? [] : r.probes.slice(firstOk)) {
      row = pb.code === 0 ? [] : [...row, pb];
      if (row.length === r.main.failureThreshold)
        problems.push(`${r.name}: liveness probe failed ${row.length} times in a row (exit ${pb.code}) at global step ${pb.at}: ${pb.out}`);
    }
    if (r.probes?.length && firstOk < 0 && r.ranMs > 1000 * (r.main.initialDelay ?? 0))
      problems.push(`${r.name}: no liveness probe passed in ${r.ranMs} ms (initialDelaySeconds ${r.main.initialDelay}): ${r.probes.at(-1).out}`);
  }
  if (!stopped && trainsteps && top < trainsteps) problems.push(`workers reached global step ${top}, not trainsteps ${trainsteps}`);
  // deploy.log where logdir is: on the volume mounted there.
  for (const r of results) {
    if (!r.logdir || r.failedInit) continue;
    const m = r.main.mounts.filter((x) => r.logdir === x.path || r.logdir.startsWith(x.path + "/")).sort((a, b) => b.path.length - a.path.length)[0];
    if (!m) { problems.push(`${r.name}: logdir ${r.logdir} is on no volume`); continue; }
    const f = path.join(m.src, r.logdir.slice(m.path.length), "deploy.log");
    if (!existsSync(f)) problems.push(`${r.name}: no deploy.log in logdir ${r.logdir} (volume dir ${path.dirname(f)}: ${existsSync(path.dirname(f)) ? readdirSync(path.dirname(f)).join(" ") : "missing"})`);
  }
  const summary = results.map((r) => `${r.name}=${r.code ?? r.sig}${r.idled ? " (idled, then SIGTERM)" : ""}${r.probes?.length ? ` probes ${r.probes.filter((x) => x.code === 0).length}/${r.probes.length}` : ""}`).join(" ");
  log(`# pods_agree: exits ${summary}; top global step ${top}${trainsteps ? ` of ${trainsteps}` : ""}`);
  rmSync(work, { recursive: true, force: true });
  if (ownNode) rmSync(node, { recursive: true, force: true });
  return { ok: problems.length === 0, report: [...problems, summary].join("\n"), results, top, stopped };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const dd = argv.indexOf("--");
  const pos = dd >= 0 ? argv.slice(0, dd) : argv;
  const extra = dd >= 0 ? argv.slice(dd + 1) : ["--values", path.join(root, "values.yml")];
  const dtf = path.join(root, pos[0] || "build", "dtf");
  if (!existsSync(dtf)) { console.error(`pods_agree: ${dtf} is not built`); process.exit(2); }
  const why = sandboxUnavailable();
  if (why) { console.error(`pods_agree: cannot run the pods here: ${why}`); process.exit(2); }
  const kube = process.env.KUBE_VERSION || "1.29";
  const r = await podsAgree({ dtf, args: extra, kube });
  console.log(r.ok ? "pods_agree: ok" : `pods_agree: FAILED\n${r.report}`);
  process.exit(r.ok ? 0 : 1);
}
