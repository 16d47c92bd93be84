// The chart's hardened pods, offline: the security context of every pod,
// a writable volume wherever dtf writes (the root file system is read-only),
// the liveness probes, the ps pods' PodDisruptionBudget and spread, the
// checkpoint claim, the Pod Security "restricted" preset checked against the
// standard's rules, and the image's default scripts. Imported by check.mjs.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { root, chartDir, render, renderFails, byKind, one, pods, dtfContainer, envOf, selects, labelSelectorMatches, scriptFiles } from "./lib.mjs";
import { test, skip, tmp, assertValid, hparamLines } from "./harness.mjs";
import { restrictedViolations, podSpecs } from "./restricted.mjs";
import { podsAgree, sandboxUnavailable, imageOf } from "./pods_agree.mjs";

const buildDir = process.argv[2] || "build";
const values = ["--values", path.join(root, "values.yml")];
const restricted = ["--values", path.join(chartDir, "values-restricted.yaml")];
const ps = (o) => pods(o).filter((p) => p.role === "ps");
const workers = (o) => pods(o).filter((p) => p.role === "worker");

// Value sets every pod of which must be hardened; [name, args, kube, meets
// Pod Security "restricted"].
const matrix = [
  ["values.yml (indexed Jobs)", values, "1.29", false],
  ["values.yml (StatefulSets, 1.20)", values, "1.20", false],
  ["the chart's defaults", [], "1.29", true],
  ["values.yml + persistence + a token, 3 ps", [...values, "--set", "checkpoint.persistence.enabled=true,token.value=t,ps.number=3"], "1.20", false],
  ["the restricted preset", [...values, ...restricted], "1.29", true],
  ["the restricted preset + persistence + a token (StatefulSets)", [...values, ...restricted, "--set", "checkpoint.persistence.enabled=true,token.value=t"], "1.20", true],
];

// ---- security context ----------------------------------------------------------------
for (const [name, args, kube] of matrix) {
  await test(`hardened pods, ${name}: no service account token, read-only root, non-root, no escalation, no capabilities, seccomp`, async () => {
    const o = render(args, { kube });
    await assertValid(o);
    for (const { id, spec } of podSpecs(o)) {
      assert.equal(spec.automountServiceAccountToken, false, `${id}: automountServiceAccountToken`);
      assert.equal(spec.securityContext.runAsNonRoot, true, id);
      assert.equal(spec.securityContext.seccompProfile.type, "RuntimeDefault", id);
      for (const c of spec.containers) {
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${id}/${c.name}: readOnlyRootFilesystem`);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${id}/${c.name}`);
        assert.deepEqual(c.securityContext.capabilities, { drop: ["ALL"] }, `${id}/${c.name}`);
      }
    }
    // a worker listens on nothing but its metrics port (when metrics are on)
    for (const p of workers(o))
      assert.deepEqual((dtfContainer(p.template).ports || []).map((x) => x.name).filter((n) => n !== "metrics"), [],
                       "workers declare no port but metrics");
  });
}

// ---- a writable volume wherever dtf writes ------------------------------------------------
// The mounts of a container that can be written: not readOnly, not a ConfigMap.
function writableMounts(template, c) {
  const ro = new Set(template.spec.volumes.filter((v) => v.configMap || v.secret).map((v) => v.name));
  return (c.volumeMounts || []).filter((m) => !m.readOnly && !ro.has(m.name)).map((m) => m.mountPath.replace(/\/$/, ""));
}
const onWritable = (p, mounts) => mounts.some((m) => p === m || p.startsWith(m + "/"));
const writePaths = [
  ["values.yml", values],
  ["the chart's defaults", []],
  ["logdir and checkpoint.dir outside every volume", ["--set", "logdir=/var/log/dtf,checkpoint.dir=/data/ckpt"]],
  ["persistence", [...values, "--set", "checkpoint.persistence.enabled=true"]],
  ["a volume of yours at /tmp, HOME elsewhere", ["--set", "home=/var/home", "--set-json",
    'volumes=[{"name":"scratch","emptyDir":{"medium":"Memory"}}]', "--set-json", 'volumeMounts=[{"name":"scratch","mountPath":"/tmp"}]']],
];
for (const [name, args] of writePaths) {
  await test(`every path dtf writes is on a writable volume (${name}): logdir, checkpoint_dir (ps), HOME, /tmp`, async () => {
    const o = render(args);
    await assertValid(o);
    const h = hparamLines(o);
    const unq = (v) => JSON.parse(v);
    for (const p of pods(o)) {
      const c = dtfContainer(p.template);
      const w = writableMounts(p.template, c);
      const paths = [unq(h.logdir), envOf(c).HOME, "/tmp", ...(p.role === "ps" ? [unq(h.checkpoint_dir)] : [])];
      for (const x of paths) assert.ok(onWritable(x, w), `${p.hostname}: ${x} is on no writable mount (${w.join(" ")})`);
      const paths2 = c.volumeMounts.map((m) => m.mountPath);
      assert.equal(new Set(paths2).size, paths2.length, `${p.hostname}: a mountPath twice: ${paths2.join(" ")}`);
    }
  });
}
await test("hyperparams.save must be on a writable volume: a clear error otherwise", () => {
  const err = renderFails(["--set", "hyperparams.save=/models/mnist.safetensors"]);
  assert.match(err, /hyperparams\.save=\/models\/mnist\.safetensors is on no writable volume \(the root file system is read-only\): mount one there with volumes and volumeMounts/);
  const o = render([...values, "--set", "hyperparams.save=/tmp/mnist-log/model.safetensors"]);
  assert.equal(hparamLines(o).save, '"/tmp/mnist-log/model.safetensors"');
});
await test("no root init container unless volumePermissions.enabled; with it, logdir and (ps) the checkpoint dir, also on a claim", () => {
  for (const args of [[], [...values, ...restricted], ["--set", "checkpoint.persistence.enabled=true"]]) {
    for (const p of pods(render(args))) assert.equal(p.template.spec.initContainers, undefined, args.join(" "));
  }
  const o = render(["--set", "checkpoint.persistence.enabled=true,volumePermissions.enabled=true,podSecurityContext.runAsUser=2000,podSecurityContext.runAsGroup=3000"]);
  for (const p of pods(o)) {
    const init = p.template.spec.initContainers[0];
    assert.deepEqual(init.args, p.role === "ps" ? ["2000:3000", "/tmp/mnist-log", "/var/lib/dtf/checkpoints/mnist"] : ["2000:3000", "/tmp/mnist-log"]);
    const mounts = init.volumeMounts.map((m) => m.mountPath);
    assert.ok(p.role !== "ps" || mounts.includes("/var/lib/dtf/checkpoints"), "the init container mounts the claim");
  }
});

// ---- threads -------------------------------------------------------------------------------
await test("OPENBLAS_NUM_THREADS follows hyperparams.threads (1 when unset); the schema wants a whole number >= 1", () => {
  const o = render([...values, "--set", "hyperparams.threads=4"]);
  for (const p of pods(o)) assert.equal(envOf(dtfContainer(p.template)).OPENBLAS_NUM_THREADS, "4");
  assert.equal(hparamLines(o).threads, "4");
  for (const p of pods(render(values))) assert.equal(envOf(dtfContainer(p.template)).OPENBLAS_NUM_THREADS, "1");
  assert.match(renderFails([...values, "--set", "hyperparams.threads=0"]), /hyperparams\.threads: Must be greater than or equal to 1/);
});

// ---- probes ----------------------------------------------------------------------------------
await test("liveness: /etc/dtf/liveness.sh (ps: listening; workers: stalled for workerStallSeconds), from the chart's file; off when disabled", () => {
  const o = render([...values, "--set", "livenessProbe.workerStallSeconds=120,livenessProbe.periodSeconds=15"]);
  const script = readFileSync(path.join(chartDir, "files/liveness.sh"), "utf8");
  assert.equal(one(o, "ConfigMap").data["liveness.sh"], script);
  for (const p of pods(o)) {
    const lp = dtfContainer(p.template).livenessProbe;
    assert.deepEqual(lp.exec.command, ["/bin/sh", "/etc/dtf/liveness.sh", p.role, "120"]);
    assert.equal(lp.periodSeconds, 15);
    assert.equal(lp.failureThreshold, 6);
    assert.equal(lp.enabled, undefined, "the chart's own keys stay out of the probe");
  }
  for (const p of pods(render([...values, "--set", "livenessProbe.enabled=false"]))) assert.equal(dtfContainer(p.template).livenessProbe, undefined);
});

// ---- PodDisruptionBudget and spread --------------------------------------------------------------
await test("PodDisruptionBudget: the ps pods only, minAvailable ps.number - 1 (or as set), policy/v1 from 1.21, v1beta1 before", async () => {
  for (const [kube, api] of [["1.29", "policy/v1"], ["1.21", "policy/v1"], ["1.20", "policy/v1beta1"]]) {
    const o = render([...values, "--set", "ps.number=3"], { kube });
    await assertValid(o);
    const pdb = one(o, "PodDisruptionBudget");
    assert.equal(pdb.apiVersion, api, kube);
    assert.equal(pdb.spec.minAvailable, 2);
    assert.equal(pdb.spec.maxUnavailable, undefined, "minAvailable also works for a Job's pods");
    for (const p of ps(o)) assert.ok(labelSelectorMatches(pdb.spec.selector, p.template.metadata.labels), p.hostname);
    for (const p of workers(o)) assert.ok(!labelSelectorMatches(pdb.spec.selector, p.template.metadata.labels), p.hostname);
  }
  assert.equal(one(render([...values, "--set", "ps.number=1"]), "PodDisruptionBudget").spec.minAvailable, 0);
  assert.equal(one(render([...values, "--set", "ps.podDisruptionBudget.minAvailable=1,ps.number=1"]), "PodDisruptionBudget").spec.minAvailable, 1);
  assert.equal(byKind(render([...values, "--set", "ps.podDisruptionBudget.enabled=false"]), "PodDisruptionBudget").length, 0);
});
await test("topology spread: the ps pods over nodes, soft (ScheduleAnyway), selecting the ps pods; a list replaces it, [] removes it", async () => {
  const o = render(values);
  for (const p of ps(o)) {
    const [c, ...more] = p.template.spec.topologySpreadConstraints;
    assert.equal(more.length, 0);
    assert.deepEqual([c.maxSkew, c.topologyKey, c.whenUnsatisfiable], [1, "kubernetes.io/hostname", "ScheduleAnyway"]);
    assert.ok(labelSelectorMatches(c.labelSelector, p.template.metadata.labels));
    for (const w of workers(o)) assert.ok(!labelSelectorMatches(c.labelSelector, w.template.metadata.labels));
  }
  for (const w of workers(o)) assert.equal(w.template.spec.topologySpreadConstraints, undefined);
  const zone = render([...values, "--set-json", 'ps.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app.kubernetes.io/component":"ps"}}}]']);
  await assertValid(zone);
  assert.equal(ps(zone)[0].template.spec.topologySpreadConstraints[0].topologyKey, "topology.kubernetes.io/zone");
  const none = render([...values, "--set-json", "ps.topologySpreadConstraints=[]"]);
  assert.equal(ps(none)[0].template.spec.topologySpreadConstraints, undefined);
});

// ---- the checkpoint claim -------------------------------------------------------------------------
await test("checkpoint.persistence: one claim, mounted by every ps pod (not the workers) at /var/lib/dtf/checkpoints; checkpoint_dir in it", async () => {
  for (const workload of ["job", "statefulset"]) {
    const o = render([...values, "--set", `checkpoint.persistence.enabled=true,ps.number=3,workload=${workload}`]);
    await assertValid(o);
    const pvc = one(o, "PersistentVolumeClaim", "mnist-checkpoints");
    assert.deepEqual(pvc.spec.accessModes, ["ReadWriteOnce"]);
    assert.equal(pvc.spec.resources.requests.storage, "1Gi");
    assert.equal(pvc.spec.storageClassName, undefined, "the cluster's default class");
    for (const p of ps(o)) {
      const v = p.template.spec.volumes.find((x) => x.persistentVolumeClaim);
      assert.equal(v.persistentVolumeClaim.claimName, "mnist-checkpoints");
      assert.ok(dtfContainer(p.template).volumeMounts.some((m) => m.name === v.name && m.mountPath === "/var/lib/dtf/checkpoints"));
    }
    for (const w of workers(o)) assert.ok(!w.template.spec.volumes.some((x) => x.persistentVolumeClaim));
    for (const s of byKind(o, "StatefulSet")) assert.equal(s.spec.volumeClaimTemplates, undefined, "one shared claim, not one per ps");
    assert.equal(hparamLines(o).checkpoint_dir, '"/var/lib/dtf/checkpoints/mnist"');
  }
});
await test("checkpoint.persistence: storageClass, size, accessModes; \"-\" is no class; existingClaim renders no claim", async () => {
  const o = render(["--set", "checkpoint.persistence.enabled=true,checkpoint.persistence.storageClass=nfs,checkpoint.persistence.size=5Gi",
    "--set", "checkpoint.persistence.accessModes={ReadWriteMany}"]);
  await assertValid(o);
  const pvc = one(o, "PersistentVolumeClaim");
  assert.deepEqual([pvc.spec.storageClassName, pvc.spec.resources.requests.storage, pvc.spec.accessModes], ["nfs", "5Gi", ["ReadWriteMany"]]);
  assert.equal(one(render(["--set", "checkpoint.persistence.enabled=true,checkpoint.persistence.storageClass=-"]), "PersistentVolumeClaim").spec.storageClassName, "");
  const mine = render(["--set", "checkpoint.persistence.enabled=true,checkpoint.persistence.existingClaim=ckpt"]);
  assert.equal(byKind(mine, "PersistentVolumeClaim").length, 0);
  for (const p of ps(mine)) assert.ok(p.template.spec.volumes.some((v) => v.persistentVolumeClaim?.claimName === "ckpt"));
  assert.match(renderFails(["--set", "checkpoint.persistence.accessModes={ReadWriteSometimes}"]), /checkpoint\.persistence\.accessModes\.0 must be one of the following/);
  assert.match(renderFails(["--set", "checkpoint.persistence.size=big"]), /checkpoint\.persistence\.size: Does not match pattern/);
});

// ---- Pod Security "restricted" ------------------------------------------------------------------------
const compliant = () => ({
  metadata: {},
  spec: {
    securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
    volumes: [{ name: "c", configMap: { name: "x" } }, { name: "e", emptyDir: {} }],
    containers: [{ name: "a", securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } } }],
  },
});
const breaches = [
  ["HostProcess", (s) => { s.spec.securityContext.windowsOptions = { hostProcess: true }; }],
  ["Host Namespaces", (s) => { s.spec.hostNetwork = true; }],
  ["Host Namespaces", (s) => { s.spec.hostPID = true; }],
  ["Privileged Containers", (s) => { s.spec.containers[0].securityContext.privileged = true; }],
  ["Capabilities (baseline)", (s) => { s.spec.containers[0].securityContext.capabilities.add = ["SYS_ADMIN"]; }],
  ["Capabilities", (s) => { s.spec.containers[0].securityContext.capabilities.add = ["CHOWN"]; }],
  ["Capabilities", (s) => { s.spec.containers[0].securityContext.capabilities.drop = ["NET_RAW"]; }],
  ["HostPath Volumes", (s) => { s.spec.volumes.push({ name: "h", hostPath: { path: "/tmp" } }); }],
  ["Volume Types", (s) => { s.spec.volumes.push({ name: "n", nfs: { server: "x", path: "/" } }); }],
  ["Host Ports", (s) => { s.spec.containers[0].ports = [{ containerPort: 80, hostPort: 80 }]; }],
  ["AppArmor", (s) => { s.metadata.annotations = { "container.apparmor.security.beta.kubernetes.io/a": "unconfined" }; }],
  ["SELinux", (s) => { s.spec.securityContext.seLinuxOptions = { type: "spc_t" }; }],
  ["SELinux", (s) => { s.spec.containers[0].securityContext.seLinuxOptions = { user: "root" }; }],
  ["/proc Mount Type", (s) => { s.spec.containers[0].securityContext.procMount = "Unmasked"; }],
  ["Seccomp", (s) => { s.spec.securityContext.seccompProfile.type = "Unconfined"; }],
  ["Seccomp", (s) => { delete s.spec.securityContext.seccompProfile; }],
  ["Sysctls", (s) => { s.spec.securityContext.sysctls = [{ name: "kernel.msgmax", value: "1" }]; }],
  ["Privilege Escalation", (s) => { delete s.spec.containers[0].securityContext.allowPrivilegeEscalation; }],
  ["Running as Non-root", (s) => { s.spec.containers[0].securityContext.runAsNonRoot = false; }],
  ["Running as Non-root", (s) => { delete s.spec.securityContext.runAsNonRoot; }],
  ["Running as Non-root user", (s) => { s.spec.securityContext.runAsUser = 0; }],
  ["Running as Non-root user", (s) => { s.spec.containers[0].securityContext.runAsUser = 0; }],
  ["Privileged Containers", (s) => { s.spec.initContainers = [{ name: "i", securityContext: { ...s.spec.containers[0].securityContext, privileged: true } }]; }],
];
await test(`the restricted checks: a compliant pod passes; each of ${breaches.length} breaches is caught by its control`, () => {
  assert.deepEqual(restrictedViolations(compliant().metadata, compliant().spec), []);
  for (const [control, breach] of breaches) {
    const s = compliant();
    breach(s);
    const v = restrictedViolations(s.metadata, s.spec);
    assert.ok(v.some((x) => x.startsWith(`${control}: `)), `${control} not caught by ${breach}: ${v.join("; ")}`);
  }
});
for (const [name, args, kube] of matrix.filter((m) => m[3])) {
  await test(`Pod Security "restricted": every pod and pod template of ${name} meets it`, () => {
    const o = render(args, { kube });
    const bad = podSpecs(o).flatMap(({ id, metadata, spec }) => restrictedViolations(metadata, spec).map((v) => `${id}: ${v}`));
    assert.deepEqual(bad, []);
    assert.ok(podSpecs(o).length >= 3);
  });
}
await test(`Pod Security "restricted": values.yml alone does not meet it (the seed's hostPath, the root init container), and says so`, () => {
  const v = podSpecs(render(values)).flatMap(({ metadata, spec }) => restrictedViolations(metadata, spec));
  for (const control of ["HostPath Volumes", "Volume Types", "Running as Non-root", "Running as Non-root user", "Capabilities"])
    assert.ok(v.some((x) => x.startsWith(`${control}: `)), `${control}: ${v.join("\n")}`);
  const preset = readFileSync(path.join(chartDir, "values-restricted.yaml"), "utf8");
  assert.match(preset, /helm install mnist chart\/ --values values\.yml --values chart\/values-restricted\.yaml/);
  assert.match(preset, /no PodSecurity admission/);
});

// ---- the image's scripts ---------------------------------------------------------------------------------
await test("the image carries the repository's train.lua and models/ at scripts.trainPath and scripts.modelPath; no copy in chart/", () => {
  const img = imageOf(buildDir);
  const at = (dst) => img.files.find((f) => dst === f.dst || dst.startsWith(f.dst + "/"));
  const o = render([]);
  const train = dtfContainer(pods(o)[0].template).args[1];
  const model = JSON.parse(hparamLines(o).modelfile);
  const { train: repoTrain, model: repoModel } = scriptFiles();
  for (const [dst, repo] of [[train, repoTrain], [model, repoModel]]) {
    const f = at(dst);
    assert.ok(f, `container/Dockerfile copies nothing to ${dst}`);
    assert.equal(path.join(f.src, dst.slice(f.dst.length)), repo, `${dst} comes from ${repo}`);
  }
  const lua = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? lua(path.join(d, e.name)) : e.name.endsWith(".lua") ? [path.join(d, e.name)] : []);
  assert.deepEqual(lua(chartDir), [], "one source of truth: the scripts are the repository's, copied by the image build only");
});

// ---- the liveness probe, run ---------------------------------------------------------------------------------
const dtf = path.join(root, buildDir, "dtf");
const noSandbox = existsSync(dtf) ? sandboxUnavailable() : `needs ${path.relative(root, dtf)}`;
const probeTest = "liveness probe in the pods: a worker stopped (SIGSTOP) fails it after workerStallSeconds and passes again once it goes on; a ps passes it, a worker's dtf as ps does not";
if (noSandbox) skip(probeTest, noSandbox);
else await test(probeTest, async () => {
  const seen = [];
  let phase = "train", w0, ps0, notListening;
  const r = await podsAgree({
    dtf, quiet: true, timeoutMs: 120000, probeMs: 300,
    args: [...values, "--set", "hyperparams.trainsteps=0,livenessProbe.workerStallSeconds=2,ps.number=1,worker.number=2"],
    onLine: (pod, line, ctl) => {
      if (pod.role === "worker" && pod.name.endsWith("-0")) w0 = pod.name;
      if (pod.role === "ps") ps0 = pod.name;
      if (phase === "train" && w0 && ctl.top >= 300) {
        phase = "stopped";
        ctl.signal(w0, "SIGSTOP");
        // (no startup grace: it has trained 300 steps, maybe within a second)
        ctl.exec(w0, ["/bin/sh", "/etc/dtf/liveness.sh", "ps", "0"]).then((x) => { notListening = x; });
      }
    },
    onProbe: (pod, pb, ctl) => {
      seen.push({ phase, pod: pod.name, ...pb });
      if (pod.name !== w0) return;
      if (phase === "stopped" && pb.code !== 0) { phase = "resumed"; ctl.signal(w0, "SIGCONT"); }
      else if (phase === "resumed" && pb.code === 0 && /is working/.test(pb.out)) { phase = "done"; ctl.stopAll(); }
    },
  });
  assert.equal(phase, "done", `the probe did not go fail -> pass: ${JSON.stringify(seen.filter((x) => x.pod === w0).slice(-5))}\n${r.report}`);
  const mine = seen.filter((x) => x.pod === w0);
  const fail = mine.find((x) => x.code !== 0);
  assert.match(fail.out, /^worker: dtf \(pid 1\) has used no CPU and read or written nothing for [2-9] s \(limit 2 s\)$/);
  assert.ok(mine.filter((x) => x.phase === "train").every((x) => x.code === 0), "passes while it trains");
  const psProbes = seen.filter((x) => x.pod === ps0);
  // every probe passes: "listens", or "is starting" before the ps port is open
  assert.ok(psProbes.length > 0 && psProbes.every((x) => x.code === 0 && /^ps: dtf \(pid 1\) (listens|is starting \(\d+ s\) and listens on no port yet)$/.test(x.out)),
            JSON.stringify(psProbes.slice(0, 3)));
  assert.ok(psProbes.some((x) => x.out === "ps: dtf (pid 1) listens"), "and it listens once it serves");
  assert.equal(notListening.code, 1);
  // a worker listens on its metrics port alone, which does not count
  assert.equal(notListening.out, "ps: dtf (pid 1) holds no listening TCP socket but its metrics port");
});
