// The test that the chart and the binary agree: render the chart, and run
// every pod it would create as a real dtf process on this machine.
//
//   tests/chart/pods_agree [BUILD_DIR] [-- HELM TEMPLATE ARGS...]
//
// For each pod of each Job / StatefulSet (pod i of <name> has the hostname
// <name>-i, as Kubernetes names it):
//  - the command and args of its dtf container, the /bin/sh wrapper included
//    (a `dtf` on PATH is the build's binary);
//  - its env, valueFrom secretKeyRef resolved from the rendered Secret, plus
//    what Kubernetes adds: HOSTNAME, and JOB_COMPLETION_INDEX for indexed Jobs;
//  - its volumes: the ConfigMap's files written to a directory, hostPath and
//    emptyDir volumes as directories; every mountPath in the args, the env and
//    the ConfigMap files is rewritten to the directory that stands for it;
//  - the cluster's DNS names (<hostname>.<service>) rewritten in DTF_CLUSTER to
//    127.0.0.1 with a free port each. A name that is not a pod the chart
//    creates fails the test: that is the point. DTF_METRICS_PORT (each pod's
//    /metrics port) becomes a free port too.
// Then it checks that every task exits 0 (a StatefulSet pod that idles after
// training is sent SIGTERM then), that the workers reached trainsteps, and
// that deploy.log landed in the volume mounted at logdir.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync, symlinkSync, readFileSync, rmSync, readdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { render, pods, dtfContainer, root, tmpdir, byKind } from "./lib.mjs";

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

function rewritePaths(text, mounts) {
  // Longest mountPath first, whole path components only.
  for (const [from, to] of [...mounts].sort((a, b) => b[0].length - a[0].length)) {
    const re = new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?=$|/|[\"'\\s,])", "g");
    text = text.replace(re, to);
  }
  return text;
}

/**
 * opts: {dtf, args (helm template args), kube, release, timeoutMs, quiet,
 * objs (already rendered objects, instead of rendering args)}
 * returns {ok, report}
 */
export async function podsAgree({ dtf, args = [], kube = "1.29", release = "mnist", timeoutMs = 180000, quiet = false, objs }) {
  const lines = [];
  const log = (s) => { lines.push(s); if (!quiet) console.log(s); };
  const problems = [];
  objs = objs || render(args, { release, kube });
  const all = pods(objs);
  const work = tmpdir("dtf-pods-");
  const bin = path.join(work, "bin");
  mkdirSync(bin);
  symlinkSync(path.resolve(dtf), path.join(bin, "dtf"));

  // DNS: each pod's name -> 127.0.0.1:<free port>, keeping the chart's port
  // per host so the rewrite can check it.
  const dnsMap = new Map();
  for (const p of all) {
    const c = dtfContainer(p.template);
    const port = c.ports?.find((x) => x.name === p.role)?.containerPort;
    dnsMap.set(`${p.dns}:${port}`, `127.0.0.1:${await freePort()}`);
  }
  const rewriteCluster = (json) => {
    const spec = JSON.parse(json);
    for (const role of Object.keys(spec)) {
      spec[role] = spec[role].map((hp) => {
        if (!dnsMap.has(hp)) {
          problems.push(`DTF_CLUSTER names ${hp}, which is no pod of the chart (pods: ${[...dnsMap.keys()].join(" ")})`);
          return hp;
        }
        return dnsMap.get(hp);
      });
    }
    return JSON.stringify(spec);
  };

  const secrets = new Map(byKind(objs, "Secret").map((s) => [s.metadata.name, s]));
  const configMaps = new Map(byKind(objs, "ConfigMap").map((c) => [c.metadata.name, c]));
  const hostPaths = new Map(); // hostPath volumes: one node, shared by every pod
  const procs = [];
  const logdirs = [];
  let trainsteps = null;

  for (const p of all) {
    const podDir = path.join(work, "pods", p.hostname);
    mkdirSync(podDir, { recursive: true });
    const c = dtfContainer(p.template);
    const spec = p.template.spec;
    // volumes -> directories
    const volDirs = new Map();
    const cmVols = [];
    for (const v of spec.volumes || []) {
      if (v.configMap) {
        const d = path.join(podDir, "cm", v.name);
        mkdirSync(d, { recursive: true });
        volDirs.set(v.name, d);
        cmVols.push([v, d]);
      } else if (v.hostPath) {
        if (!hostPaths.has(v.hostPath.path)) {
          const d = path.join(work, "node", v.hostPath.path);
          mkdirSync(d, { recursive: true });
          hostPaths.set(v.hostPath.path, d);
        }
        volDirs.set(v.name, hostPaths.get(v.hostPath.path));
      } else if (v.emptyDir) {
        const d = path.join(podDir, "empty", v.name);
        mkdirSync(d, { recursive: true });
        volDirs.set(v.name, d);
      } else if (v.secret) {
        problems.push(`volume ${v.name}: secret volumes are not simulated`);
      } else {
        problems.push(`volume ${v.name}: unsupported kind ${Object.keys(v).join(",")}`);
      }
    }
    const mounts = new Map();
    for (const m of c.volumeMounts || []) {
      if (!volDirs.has(m.name)) { problems.push(`${p.hostname}: mount of unknown volume ${m.name}`); continue; }
      mounts.set(m.mountPath.replace(/\/$/, ""), path.join(volDirs.get(m.name), m.subPath || ""));
    }
    for (const [v, d] of cmVols) {
      const cm = configMaps.get(v.configMap.name);
      if (!cm) { problems.push(`${p.hostname}: ConfigMap ${v.configMap.name} is not rendered`); continue; }
      for (const [k, text] of Object.entries(cm.data || {})) writeFileSync(path.join(d, k), rewritePaths(text, mounts));
      if (cm.data?.["hparams.lua"]) {
        const m = cm.data["hparams.lua"].match(/^\s*trainsteps = (\d+),/m);
        if (m) trainsteps = Number(m[1]);
        const l = cm.data["hparams.lua"].match(/^\s*logdir = "([^"]*)",/m);
        if (l) logdirs.push(rewritePaths(l[1], mounts));
      }
    }
    // env, as the kubelet gives it
    const env = { PATH: `${bin}:${process.env.PATH}`, HOME: podDir, HOSTNAME: p.hostname };
    if (p.workload.kind === "Job") env.JOB_COMPLETION_INDEX = String(p.index);
    for (const e of c.env || []) {
      if (e.value !== undefined) env[e.name] = e.value;
      else if (e.valueFrom?.secretKeyRef) {
        const s = secrets.get(e.valueFrom.secretKeyRef.name);
        if (!s) { problems.push(`${p.hostname}: env ${e.name} from Secret ${e.valueFrom.secretKeyRef.name}, not rendered`); continue; }
        env[e.name] = Buffer.from(s.data[e.valueFrom.secretKeyRef.key], "base64").toString();
      } else problems.push(`${p.hostname}: env ${e.name}: unsupported valueFrom`);
    }
    // the metrics port: the pod's own in Kubernetes, a free one here (all
    // pods share this machine's loopback); it must be the port the pod declares
    if (env.DTF_METRICS_PORT !== undefined) {
      const declared = c.ports?.find((x) => x.name === "metrics")?.containerPort;
      if (String(declared) !== env.DTF_METRICS_PORT) problems.push(`${p.hostname}: DTF_METRICS_PORT ${env.DTF_METRICS_PORT}, but the metrics port it declares is ${declared}`);
      env.DTF_METRICS_PORT = String(await freePort());
    }
    if (!env.DTF_CLUSTER) problems.push(`${p.hostname}: no DTF_CLUSTER`);
    else env.DTF_CLUSTER = rewriteCluster(env.DTF_CLUSTER);
    for (const k of Object.keys(env)) if (k !== "DTF_CLUSTER") env[k] = rewritePaths(env[k], mounts);
    const argv = [...(c.command || ["dtf"]), ...(c.args || [])].map((a) => rewritePaths(a, mounts));
    if (argv[0] === "dtf") argv[0] = path.join(bin, "dtf");
    procs.push({ name: p.hostname, role: p.role, argv, env, cwd: c.workingDir ? rewritePaths(c.workingDir, mounts) : podDir });
  }

  if (problems.length) {
    rmSync(work, { recursive: true, force: true });
    return { ok: false, report: problems.join("\n") };
  }

  // run them all at once, as the pods would start
  log(`# pods_agree: ${procs.length} pods: ${procs.map((p) => p.name).join(" ")}`);
  const results = await Promise.all(procs.map((pr) => new Promise((resolve) => {
    const child = spawn(pr.argv[0], pr.argv.slice(1), { env: pr.env, cwd: pr.cwd });
    let out = "", idled = false, buf = "";
    const onData = (d) => {
      out += d;
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) { log(`${pr.name}: ${buf.slice(0, i)}`); buf = buf.slice(i + 1); }
      if (!idled && /training done; idling/.test(out)) { idled = true; child.kill("SIGTERM"); }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => { out += "\n[pods_agree: timed out, killed]"; child.kill("SIGKILL"); }, timeoutMs);
    child.on("exit", (code, sig) => { clearTimeout(timer); resolve({ ...pr, code, sig, out, idled }); });
  })));

  for (const r of results) {
    if (r.code !== 0) problems.push(`${r.name} (${r.role}) exited ${r.code ?? r.sig}; last lines:\n${r.out.split("\n").slice(-15).join("\n")}`);
  }
  // training completed: some worker logged a global step >= trainsteps
  const steps = results.filter((r) => r.role === "worker")
    .flatMap((r) => [...r.out.matchAll(/global step:? (\d+)/g)].map((m) => Number(m[1])));
  const top = steps.length ? Math.max(...steps) : -1;
  if (trainsteps && top < trainsteps) problems.push(`workers reached global step ${top}, not trainsteps ${trainsteps}`);
  for (const d of new Set(logdirs)) {
    if (!existsSync(path.join(d, "deploy.log"))) problems.push(`no deploy.log in logdir ${d} (files: ${existsSync(d) ? readdirSync(d).join(" ") : "none"})`);
  }
  const summary = results.map((r) => `${r.name}=${r.code ?? r.sig}${r.idled ? " (idled, then SIGTERM)" : ""}`).join(" ");
  log(`# pods_agree: exits ${summary}; top global step ${top}${trainsteps ? ` of ${trainsteps}` : ""}`);
  rmSync(work, { recursive: true, force: true });
  return { ok: problems.length === 0, report: [...problems, summary].join("\n") };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const dd = argv.indexOf("--");
  const pos = dd >= 0 ? argv.slice(0, dd) : argv;
  const extra = dd >= 0 ? argv.slice(dd + 1) : ["--values", path.join(root, "values.yml")];
  const dtf = path.join(root, pos[0] || "build", "dtf");
  if (!existsSync(dtf)) { console.error(`pods_agree: ${dtf} is not built`); process.exit(2); }
  const kube = process.env.KUBE_VERSION || "1.29";
  const r = await podsAgree({ dtf, args: extra, kube });
  console.log(r.ok ? "pods_agree: ok" : `pods_agree: FAILED\n${r.report}`);
  process.exit(r.ok ? 0 : 1);
}
