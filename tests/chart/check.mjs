// The chart's offline checks: helm lint, helm template with several value
// sets, every object validated (validate.mjs), assertions on what rendered.
//
//   node tests/chart/check.mjs [BUILD_DIR]
//
// With BUILD_DIR/dtf built and train.lua + models/mnist.lua in the
// repository, it also runs pods_agree (every rendered pod as a real dtf
// process). Last line: "chart: N passed, M failed".
import assert from "node:assert/strict";
import { existsSync, writeFileSync, readFileSync, cpSync, rmSync } from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import {
  root, chartDir, helm, render, renderFails, byKind, one, pods, dtfContainer, envOf,
  scriptFiles, scriptArgs, tmpdir, labelSelectorMatches, selects,
} from "./lib.mjs";
import { parseDocs } from "./validate.mjs";
import { test, skip, tmp, assertValid, hparamsOf, hparamLines, finish } from "./harness.mjs";
import { podsAgree, sandboxUnavailable } from "./pods_agree.mjs";

const buildDir = process.argv[2] || "build";
const values = ["--values", path.join(root, "values.yml")];

const cluster = (objs) => {
  const specs = new Set(pods(objs).map((p) => envOf(dtfContainer(p.template)).DTF_CLUSTER));
  assert.equal(specs.size, 1, "every pod gets the same DTF_CLUSTER");
  return JSON.parse([...specs][0]);
};

// The cluster spec names exactly the pods the chart creates, the ps at the
// port its container declares, the workers at port.worker (a name: they
// listen on nothing and declare no port), and each name resolves: a headless
// Service named like the pod's subdomain selects the pod.
function assertClusterAgrees(objs, nps, nworkers) {
  const ps = pods(objs);
  const spec = cluster(objs);
  assert.deepEqual(Object.keys(spec).sort(), ["ps", "worker"]);
  for (const role of ["ps", "worker"]) {
    const mine = ps.filter((p) => p.role === role).sort((a, b) => a.index - b.index);
    const port = (p) => role === "ps" ? dtfContainer(p.template).ports.find((x) => x.name === "ps").containerPort : 9000;
    const expect = mine.map((p) => `${p.dns}:${port(p)}`);
    assert.deepEqual(spec[role], expect, `${role} list of DTF_CLUSTER`);
    assert.equal(mine.length, role === "ps" ? nps : nworkers, `number of ${role} pods`);
    for (const p of mine) {
      const svc = one(objs, "Service", p.subdomain);
      assert.equal(svc.spec.clusterIP, "None", `${svc.metadata.name} is headless`);
      assert.ok(selects(svc.spec.selector, p.template.metadata.labels), `${svc.metadata.name} selects ${p.hostname}`);
      assert.ok(p.hostname.length <= 63, `hostname ${p.hostname} <= 63 chars`);
    }
  }
}

const IMAGE_TRAIN = "/usr/local/share/dtf/train.lua", IMAGE_MODEL = "/usr/local/share/dtf/models/mnist.lua";
function dtfArgs(role, train = IMAGE_TRAIN) {
  return ["run", train, `--role=${role}`, "--config", "/etc/dtf/hparams.lua"];
}

const resOf = (objs, role) => dtfContainer(pods(objs).find((p) => p.role === role).template).resources;

// ---- lint ---------------------------------------------------------------------
await test("helm lint --strict with values.yml, with the scripts and without", () => {
  for (const extra of [[], scriptArgs()]) {
    const r = helm(["lint", "--strict", chartDir, ...values, ...extra]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  }
  const r = helm(["lint", "--strict", chartDir, ...values, "--values", path.join(chartDir, "values-restricted.yaml")]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
await test("helm lint --strict with the chart's defaults", () => {
  const r = helm(["lint", "--strict", chartDir]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

// ---- values.yml ------------------------------------------------------------------
const files = scriptFiles();
let main;
await test("helm template mnist chart/ --values values.yml, nothing else, renders (Kubernetes 1.29); every object validates", async () => {
  main = render(values);
  await assertValid(main);
  const kinds = main.map((o) => o.kind).sort();
  assert.deepEqual(kinds, ["ConfigMap", "Job", "Job", "NetworkPolicy", "Pod", "PodDisruptionBudget", "Service", "Service"]);
});
await test("values.yml: ps and workers are indexed Jobs, 2 + 2, cluster spec names exactly their pods", () => {
  for (const j of byKind(main, "Job")) {
    assert.equal(j.spec.completionMode, "Indexed");
    assert.equal(j.spec.completions, 2);
    assert.equal(j.spec.parallelism, 2);
    assert.ok(["OnFailure", "Never"].includes(j.spec.template.spec.restartPolicy));
  }
  assertClusterAgrees(main, 2, 2);
  assert.match(cluster(main).ps[0], /^mnist-ps-[0-9a-f]{8}-0\.mnist-ps:8000$/);
  assert.match(cluster(main).worker[1], /^mnist-worker-[0-9a-f]{8}-1\.mnist-worker:9000$/);
});
await test("values.yml: each container runs dtf run <the image's train.lua> with its role and the hparams", () => {
  for (const p of pods(main)) {
    const c = dtfContainer(p.template);
    assert.deepEqual(c.command, ["dtf"]);
    assert.deepEqual(c.args, dtfArgs(p.role));
    assert.equal(envOf(c).OPENBLAS_NUM_THREADS, "1");
    assert.equal(envOf(c).HOME, "/home/dtf");
    assert.equal(c.image, "localhost/dtf:latest");
    assert.equal(c.imagePullPolicy, "IfNotPresent");
  }
});
await test("values.yml: limits 125Mi/200m reach both roles' containers, no requests", () => {
  for (const role of ["ps", "worker"]) assert.deepEqual(resOf(main, role), { limits: { cpu: "200m", memory: "125Mi" } });
});
await test("values.yml: the ConfigMap holds hparams.lua and the liveness probe (no scripts: the image's), mounted at /etc/dtf", () => {
  const cm = one(main, "ConfigMap");
  assert.deepEqual(Object.keys(cm.data).sort(), ["hparams.lua", "liveness.sh"]);
  assert.equal(cm.data["liveness.sh"], readFileSync(path.join(chartDir, "files/liveness.sh"), "utf8"));
  for (const p of pods(main)) {
    const vol = p.template.spec.volumes.find((v) => v.configMap?.name === cm.metadata.name);
    assert.ok(vol, `${p.hostname} has the ConfigMap as a volume`);
    const m = dtfContainer(p.template).volumeMounts.find((x) => x.name === vol.name);
    assert.equal(m.mountPath, "/etc/dtf");
  }
});
await test("values.yml: hparams.lua carries the hyperparameters and the paths", () => {
  const h = hparamLines(main);
  assert.equal(h.batchsize, "20");
  assert.equal(h.learningrate, "0.001");
  assert.equal(h.trainsteps, "200");
  assert.equal(h.sync, "false");
  assert.equal(h.model, '"mlp"');
  assert.equal(h.seed, "1");
  assert.equal(h.modelfile, `"${IMAGE_MODEL}"`);
  assert.equal(h.datadir, '"/usr/share/datasets/fashion-mnist"');
  assert.equal(h.logdir, '"/tmp/mnist-log"');
  assert.equal(h.checkpoint_dir, '"/tmp/mnist-log/ckpt/mnist"', "the release's directory, on the hostPath");
  assert.equal(h.replicas_to_aggregate, undefined, "not written: the ps follows the worker count");
  assert.match(hparamsOf(main), /^return \{$/m);
});
await test("values.yml: the seed's hostPath at logdir in every pod, given to the dtf user by the init container it asks for (not world-writable)", () => {
  for (const p of pods(main)) {
    const v = p.template.spec.volumes.find((x) => x.name === "log-volume");
    assert.deepEqual(v.hostPath, { path: "/tmp/mnist", type: "DirectoryOrCreate" });
    assert.ok(dtfContainer(p.template).volumeMounts.some((m) => m.name === "log-volume" && m.mountPath === "/tmp/mnist-log"));
    const inits = p.template.spec.initContainers || [];
    assert.deepEqual(inits.map((c) => c.name), ["volume-permissions"]);
    const init = inits[0];
    const dirs = p.role === "ps" ? ["/tmp/mnist-log", "/tmp/mnist-log/ckpt/mnist"] : ["/tmp/mnist-log"];
    assert.deepEqual(init.args, ["10001:10001", ...dirs]);
    assert.ok(!/1777|777|o\+w|a\+w/.test(init.command.join(" ")), `no world-writable mode: ${init.command.join(" ")}`);
    assert.match(init.command.join(" "), /chown "\$owner" "\$d" && chmod u\+rwx,g\+rwx,o-w/);
    assert.deepEqual(init.securityContext.capabilities, { drop: ["ALL"], add: ["CHOWN", "FOWNER", "DAC_OVERRIDE"] });
  }
});
await test("values.yml: readiness probe on the ps port only; a container port only where something listens; labels; checksum annotation", () => {
  for (const p of pods(main)) {
    const c = dtfContainer(p.template);
    const l = p.template.metadata.labels;
    assert.equal(l["app.kubernetes.io/name"], "dtf");
    assert.equal(l["app.kubernetes.io/instance"], "mnist");
    assert.equal(l["app.kubernetes.io/managed-by"], "Helm");
    assert.ok(l["app.kubernetes.io/version"]);
    assert.equal(l["app.kubernetes.io/component"], p.role);
    assert.match(p.template.metadata.annotations["checksum/config"], /^[0-9a-f]{64}$/);
    const metrics = { name: "metrics", containerPort: 9100, protocol: "TCP" };
    if (p.role === "ps") {
      assert.equal(c.readinessProbe.tcpSocket.port, "ps");
      assert.deepEqual(c.ports, [{ name: "ps", containerPort: 8000, protocol: "TCP" }, metrics]);
    } else {
      assert.equal(c.readinessProbe, undefined);
      assert.deepEqual(c.ports, [metrics], "a worker listens on its metrics port alone (port.worker only names it)");
    }
  }
});
await test("values.yml: NetworkPolicy lets only the release's workers and test pod reach the ps port", () => {
  const np = one(main, "NetworkPolicy");
  const ps = pods(main).filter((p) => p.role === "ps");
  const workers = pods(main).filter((p) => p.role === "worker");
  for (const p of ps) assert.ok(selects(np.spec.podSelector.matchLabels, p.template.metadata.labels));
  for (const w of workers) assert.ok(!selects(np.spec.podSelector.matchLabels, w.template.metadata.labels));
  assert.equal(np.spec.ingress.length, 2, "the ps port's rule and the metrics port's");
  const rule = np.spec.ingress[0];
  assert.deepEqual(rule.ports, [{ port: 8000, protocol: "TCP" }]);
  const from = (labels) => rule.from.some((f) => f.podSelector && !f.namespaceSelector && labelSelectorMatches(f.podSelector, labels));
  for (const w of workers) assert.ok(from(w.template.metadata.labels), "a worker may connect");
  assert.ok(from(one(main, "Pod").metadata.labels), "the test pod may connect");
  assert.ok(!from(ps[0].template.metadata.labels), "a ps may not");
  const other = { ...workers[0].template.metadata.labels, "app.kubernetes.io/instance": "other" };
  assert.ok(!from(other), "another release's worker may not");
});
await test("values.yml: every pod serves /metrics on 9100, annotated for Prometheus, and the NetworkPolicy admits it", () => {
  for (const p of pods(main)) {
    const a = p.template.metadata.annotations;
    assert.equal(a["prometheus.io/scrape"], "true", `${p.hostname} scrape`);
    assert.equal(a["prometheus.io/port"], "9100", `${p.hostname} port`);
    assert.equal(a["prometheus.io/path"], "/metrics", `${p.hostname} path`);
    const c = dtfContainer(p.template);
    assert.deepEqual(c.ports.find((x) => x.name === "metrics"), { name: "metrics", containerPort: 9100, protocol: "TCP" });
    assert.equal(envOf(c).DTF_METRICS_PORT, "9100", "train.lua's metrics_port comes from DTF_METRICS_PORT");
  }
  const rule = one(main, "NetworkPolicy").spec.ingress[1];
  assert.deepEqual(rule, { ports: [{ port: 9100, protocol: "TCP" }] }, "the metrics port, from anywhere");
});
await test("metrics.enabled=false: no annotations, no metrics port, no DTF_METRICS_PORT, one NetworkPolicy rule", () => {
  const objs = render([...values, "--set", "metrics.enabled=false"]);
  for (const p of pods(objs)) {
    assert.equal(p.template.metadata.annotations["prometheus.io/scrape"], undefined);
    const c = dtfContainer(p.template);
    assert.equal((c.ports || []).find((x) => x.name === "metrics"), undefined);
    if (p.role === "worker") assert.equal(c.ports, undefined, "with metrics off a worker listens on nothing: no containerPort");
    assert.equal(envOf(c).DTF_METRICS_PORT, undefined);
  }
  assert.equal(one(objs, "NetworkPolicy").spec.ingress.length, 1);
});
await test("metrics.port=9400 reaches the annotation, the container port, the env and the NetworkPolicy", async () => {
  const objs = render([...values, "--set", "metrics.port=9400"]);
  await assertValid(objs);
  for (const p of pods(objs)) {
    assert.equal(p.template.metadata.annotations["prometheus.io/port"], "9400");
    const c = dtfContainer(p.template);
    assert.equal(c.ports.find((x) => x.name === "metrics").containerPort, 9400);
    assert.equal(envOf(c).DTF_METRICS_PORT, "9400");
  }
  assert.equal(one(objs, "NetworkPolicy").spec.ingress[1].ports[0].port, 9400);
});
await test("values.yml: helm test pod checks every ps of the cluster spec", () => {
  const t = one(main, "Pod");
  assert.equal(t.metadata.annotations["helm.sh/hook"], "test");
  assert.deepEqual(t.spec.containers[0].args, cluster(main).ps);
  assert.equal(t.spec.restartPolicy, "Never");
});
await test("values.yml: no token, no Secret, no DTF_TOKEN", () => {
  assert.equal(byKind(main, "Secret").length, 0);
  for (const p of pods(main)) assert.equal(envOf(dtfContainer(p.template)).DTF_TOKEN, undefined);
});

// ---- other value sets -----------------------------------------------------------
for (const [nps, nw] of [[1, 1], [3, 5]]) {
  for (const workload of ["job", "statefulset"]) {
    await test(`${nps} ps + ${nw} workers (${workload}): valid, cluster spec agrees`, async () => {
      const o = render([...values, "--set", `ps.number=${nps},worker.number=${nw},workload=${workload}`]);
      await assertValid(o);
      assertClusterAgrees(o, nps, nw);
      assert.equal(byKind(o, workload === "job" ? "Job" : "StatefulSet").length, 2);
      assert.equal(byKind(o, workload === "job" ? "StatefulSet" : "Job").length, 0);
      assert.equal(one(o, "Pod").spec.containers[0].args.length, nps);
      assert.equal(one(o, "PodDisruptionBudget").spec.minAvailable, nps - 1);
    });
  }
}
await test("trainsteps 0 (until stopped) is rendered, with --set and with a values file", async () => {
  const o = render([...values, "--set", "hyperparams.trainsteps=0"]);
  await assertValid(o);
  assert.equal(hparamLines(o).trainsteps, "0");
  const f = path.join(tmp, "zero.yml");
  writeFileSync(f, "hyperparams:\n  trainsteps: 0\n");
  assert.equal(hparamLines(render([...values, "--values", f])).trainsteps, "0");
});
let sts;
await test("workload statefulset: StatefulSets with the seed's podManagementPolicy, valid", async () => {
  sts = render([...values, "--set", "workload=statefulset"]);
  await assertValid(sts);
  for (const s of byKind(sts, "StatefulSet")) {
    assert.equal(s.spec.podManagementPolicy, "Parallel");
    assert.equal(s.spec.replicas, 2);
    assert.ok(selects(s.spec.selector.matchLabels, s.spec.template.metadata.labels));
    assert.equal(s.metadata.name, s.spec.serviceName, "pod names mnist-ps-0.mnist-ps");
  }
  assertClusterAgrees(sts, 2, 2);
  assert.deepEqual(cluster(sts).ps, ["mnist-ps-0.mnist-ps:8000", "mnist-ps-1.mnist-ps:8000"]);
});
await test("workload statefulset: dtf runs under the idle wrapper with the same args; off with idleWhenDone=false", () => {
  for (const p of pods(sts)) {
    const c = dtfContainer(p.template);
    assert.equal(c.command[0], "/bin/sh");
    assert.equal(c.command[3], "dtf");
    assert.deepEqual(c.args, dtfArgs(p.role));
  }
  const o = render([...values, "--set", "workload=statefulset,statefulset.idleWhenDone=false"]);
  for (const p of pods(o)) assert.deepEqual(dtfContainer(p.template).command, ["dtf"]);
});
for (const [kube, want] of [["1.20", "StatefulSet"], ["1.23", "StatefulSet"], ["1.24", "Job"], ["1.29", "Job"]]) {
  await test(`workload auto on Kubernetes ${kube}: ${want}`, async () => {
    const o = render(values, { kube });
    await assertValid(o);
    assert.equal(byKind(o, want).length, 2);
    assertClusterAgrees(o, 2, 2);
  });
}
await test("workload job on Kubernetes 1.20 is honoured (the values say otherwise)", () => {
  assert.equal(byKind(render([...values, "--set", "workload=job"], { kube: "1.20" }), "Job").length, 2);
});

// ---- resources per role -----------------------------------------------------------
await test("limits per role: worker.limit reaches only the workers, ps.requests only the ps", async () => {
  const o = render([...values, "--set", "worker.limit.memory=300Mi,ps.requests.cpu=50m,requests.memory=64Mi"]);
  await assertValid(o);
  assert.deepEqual(resOf(o, "worker"), { limits: { cpu: "200m", memory: "300Mi" }, requests: { memory: "64Mi" } });
  assert.deepEqual(resOf(o, "ps"), { limits: { cpu: "200m", memory: "125Mi" }, requests: { cpu: "50m", memory: "64Mi" } });
});
await test("limit changed at the top level reaches both roles", () => {
  const o = render([...values, "--set", "limit.memory=256Mi,limit.cpu=1"]);
  for (const role of ["ps", "worker"]) assert.deepEqual(resOf(o, role).limits, { cpu: 1, memory: "256Mi" });
});

// ---- token ------------------------------------------------------------------------
await test("token: a Secret, DTF_TOKEN from it in ps and workers", async () => {
  const o = render([...values, "--set", "token.value=s3cr3t"]);
  await assertValid(o);
  const s = one(o, "Secret");
  assert.equal(Buffer.from(s.data.token, "base64").toString(), "s3cr3t");
  for (const p of pods(o)) {
    const e = envOf(dtfContainer(p.template)).DTF_TOKEN;
    assert.deepEqual(e.valueFrom.secretKeyRef, { name: s.metadata.name, key: "token" });
  }
  assert.ok(!JSON.stringify(byKind(o, "ConfigMap")).includes("s3cr3t"), "the token is not in the ConfigMap");
});
await test("token.existingSecret: no Secret rendered, DTF_TOKEN from the named one", () => {
  const o = render([...values, "--set", "token.existingSecret=mine,token.key=tk"]);
  assert.equal(byKind(o, "Secret").length, 0);
  for (const p of pods(o)) assert.deepEqual(envOf(dtfContainer(p.template)).DTF_TOKEN.valueFrom.secretKeyRef, { name: "mine", key: "tk" });
});

// ---- hyperparameters --------------------------------------------------------------
await test("sync modes: true/sync render true, false/async render false", () => {
  for (const [v, want] of [["true", "true"], ["sync", "true"], ["false", "false"], ["async", "false"]]) {
    assert.equal(hparamLines(render([...values, "--set", `hyperparams.sync=${v}`])).sync, want, v);
  }
});
await test("hyperparameters and a model file's own (modelHyperparams) pass through as Lua literals", () => {
  const f = path.join(tmp, "extra.yml");
  writeFileSync(f, 'modelHyperparams:\n  note: "say \\"hi\\" \\\\ then\\nmore"\n  end: 1\n');
  const o = render([...values, "--values", f, "--set", "hyperparams.momentum=0.9,hyperparams.logevery=10,hyperparams.optimizer=adam,modelHyperparams.nesterov=true",
    "--set", "hyperparams.learningrate=3e-3"]);
  const h = hparamLines(o);
  assert.equal(h.momentum, "0.9");
  assert.equal(h.logevery, "10");
  assert.equal(h.optimizer, '"adam"');
  assert.equal(h.nesterov, "true");
  assert.equal(h.note, String.raw`"say \"hi\" \\ then\nmore"`);
  assert.equal(h['["end"]'], "1");
  assert.equal(h.learningrate, "3e-3");
});

// ---- the schema rejects bad values -------------------------------------------------
const rejects = [
  [["--set", "worker.number=two"], "worker.number: Invalid type. Expected: integer, given: string"],
  [["--set", "ps.number=-1"], "ps.number: Must be greater than or equal to 1"],
  [["--set", "worker.number=-3"], "worker.number: Must be greater than or equal to 1"],
  [["--set", "worker.number=0"], "worker.number: Must be greater than or equal to 1"],
  [["--set", "hyperparams.sync=maybe"], 'hyperparams.sync must be one of the following: false, true, "async", "sync"'],
  [["--set", "hyperparams.trainsteps=-5"], "hyperparams.trainsteps: Must be greater than or equal to 0"],
  [["--set", "hyperparams.batchsize=big"], "hyperparams.batchsize: Invalid type. Expected: integer, given: string"],
  [["--set", "workload=deployment"], 'workload must be one of the following: "auto", "job", "statefulset"'],
  [["--set", "workers.number=3"], "Additional property workers is not allowed"],
  [["--set", "port.ps=http"], "port.ps: Invalid type. Expected: integer, given: string"],
  [["--set", "limit.memory=lots"], "limit.memory: Does not match pattern"],
  [["--set", "metrics.port=0"], "metrics.port: Must be greater than or equal to 1"],
  [["--set", "metrics.port=web"], "metrics.port: Invalid type. Expected: integer, given: string"],
  [["--set", "metrics.enabled=yes"], "metrics.enabled: Invalid type. Expected: boolean, given: string"],
];
for (const [args, msg] of rejects) {
  await test(`schema rejects ${args[1]}: "${msg}"`, () => {
    const err = renderFails([...values, ...args]);
    assert.ok(err.includes("values don't meet the specifications of the schema"), err);
    assert.ok(err.includes(msg), `expected "${msg}" in:\n${err}`);
  });
}
await test("no --set-file: the image's train.lua and model; --set-file scripts.train / scripts.model replace each from the ConfigMap", () => {
  const args = (o, role) => dtfContainer(pods(o).find((p) => p.role === role).template).args;
  const both = render(values, { scripts: true });
  const cm = one(both, "ConfigMap");
  assert.deepEqual(Object.keys(cm.data).sort(), ["hparams.lua", "liveness.sh", "model.lua", "train.lua"]);
  assert.equal(cm.data["train.lua"], readFileSync(files.train, "utf8"));
  assert.equal(cm.data["model.lua"], readFileSync(files.model, "utf8"));
  assert.deepEqual(args(both, "ps"), dtfArgs("ps", "/etc/dtf/train.lua"));
  assert.equal(hparamLines(both).modelfile, '"/etc/dtf/model.lua"');
  const onlyModel = render([...values, "--set-file", `scripts.model=${files.model}`]);
  assert.deepEqual(Object.keys(one(onlyModel, "ConfigMap").data).sort(), ["hparams.lua", "liveness.sh", "model.lua"]);
  assert.deepEqual(args(onlyModel, "worker"), dtfArgs("worker"));
  assert.equal(hparamLines(onlyModel).modelfile, '"/etc/dtf/model.lua"');
  const onlyTrain = render([...values, "--set-file", `scripts.train=${files.train}`]);
  assert.deepEqual(args(onlyTrain, "worker"), dtfArgs("worker", "/etc/dtf/train.lua"));
  assert.equal(hparamLines(onlyTrain).modelfile, `"${IMAGE_MODEL}"`);
  const other = render([...values, "--set", "scripts.trainPath=/opt/t.lua,scripts.modelPath=/opt/m.lua"]);
  assert.deepEqual(args(other, "ps"), dtfArgs("ps", "/opt/t.lua"));
  assert.equal(hparamLines(other).modelfile, '"/opt/m.lua"');
});
await test("a ConfigMap over 1 MiB fails with a clear message; just under passes", () => {
  const big = path.join(tmp, "big.lua");
  writeFileSync(big, "-- " + "x".repeat(1100 * 1024) + "\n");
  const err = renderFails([...values, "--set-file", `scripts.model=${big}`]);
  assert.match(err, /ConfigMap mnist-config would hold \d+ bytes .*over Kubernetes' 1 MiB \(1048576 bytes\) limit/);
  const ok = path.join(tmp, "ok.lua");
  writeFileSync(ok, "-- " + "x".repeat(1000 * 1024) + "\n");
  assert.equal(one(render([...values, "--set-file", `scripts.model=${ok}`]), "ConfigMap").data["model.lua"].length, 1000 * 1024 + 4);
});

// ---- redeploying ------------------------------------------------------------------
await test("a changed model gives new Job names and checksum, the same checkpoint dir; same values give the same", () => {
  const edited = path.join(tmp, "model-edited.lua");
  writeFileSync(edited, readFileSync(files.model, "utf8") + "\n-- hidden = 200\n");
  const a = render(values), b = render(values), c = render([...values, "--set-file", `scripts.model=${edited}`]);
  const names = (o) => byKind(o, "Job").map((j) => j.metadata.name).join(",");
  const sum = (o) => byKind(o, "Job")[0].spec.template.metadata.annotations["checksum/config"];
  assert.equal(names(a), names(b));
  assert.equal(sum(a), sum(b));
  assert.notEqual(names(a), names(c));
  assert.notEqual(sum(a), sum(c));
  assert.equal(hparamLines(a).checkpoint_dir, hparamLines(c).checkpoint_dir, "the ps keys checkpoints by the model's layout itself");
  assert.equal(one(c, "ConfigMap").data["model.lua"], readFileSync(edited, "utf8"));
  // StatefulSets keep their names and roll through the checksum annotation.
  const s1 = render([...values, "--set", "workload=statefulset"]);
  const s2 = render([...values, "--set", "workload=statefulset", "--set-file", `scripts.model=${edited}`]);
  assert.equal(byKind(s1, "StatefulSet")[0].metadata.name, byKind(s2, "StatefulSet")[0].metadata.name);
  assert.notEqual(byKind(s1, "StatefulSet")[0].spec.template.metadata.annotations["checksum/config"],
    byKind(s2, "StatefulSet")[0].spec.template.metadata.annotations["checksum/config"]);
});
await test("a 53-character release name keeps every hostname and name within Kubernetes' limits", async () => {
  const rel = "a".repeat(53);
  for (const workload of ["job", "statefulset"]) {
    const o = render([...values, "--set", `workload=${workload},worker.number=120`], { release: rel });
    await assertValid(o);
    for (const p of pods(o)) assert.ok(p.hostname.length <= 63, p.hostname);
    for (const x of o) assert.ok(x.metadata.name.length <= 63, x.metadata.name);
    if (workload === "statefulset") for (const s of byKind(o, "StatefulSet")) assert.ok(s.metadata.name.length <= 52);
  }
});
await test("the chart's defaults with a namespace render and validate", async () => {
  const o = render([], { namespace: "training" });
  await assertValid(o);
  assert.equal(byKind(o, "Job").length, 2);
  for (const p of pods(o)) assert.equal(p.template.spec.initContainers, undefined, "no root init container unless asked");
});

// ---- NOTES.txt ----------------------------------------------------------------------
// helm template does not print NOTES.txt: render it through a copy of the chart.
function notes(args, kube) {
  const c = path.join(tmp, "notes-chart");
  rmSync(c, { recursive: true, force: true });
  cpSync(chartDir, c, { recursive: true });
  cpSync(path.join(c, "templates/NOTES.txt"), path.join(c, "notes.txt"));
  writeFileSync(path.join(c, "templates/zz-notes.yaml"),
    'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n');
  const r = helm(["template", "mnist", c, "--kube-version", kube, "--show-only", "templates/zz-notes.yaml", ...args]);
  assert.equal(r.status, 0, r.stderr);
  return parseDocs(r.stdout)[0].data.notes;
}
await test("NOTES.txt: kubectl get jobs/sts, kubectl logs, deploy.log path, where the checkpoints live, scaling, helm test", () => {
  const j = notes(values, "1.29"), s = notes(values, "1.20");
  assert.match(j, /kubectl get jobs,pods/);
  assert.match(s, /kubectl get sts,pods/);
  for (const n of [j, s]) {
    assert.match(n, /kubectl logs /);
    assert.match(n, /\/tmp\/mnist-log\/deploy\.log/);
    assert.match(n, /\/tmp\/mnist on the node/);
    assert.match(n, /helm test mnist/);
    assert.match(n, /helm uninstall mnist/);
    assert.match(n, /Checkpoints: \/tmp\/mnist-log\/ckpt\/mnist\n  on the node's \/tmp\/mnist\/ckpt\/mnist \(a hostPath\)/);
    assert.match(n, /lost with the node/);
    assert.match(n, /helm upgrade mnist <chart> -n default --reuse-values --set worker\.number=3/);
    assert.match(n, /Training loop \/usr\/local\/share\/dtf\/train\.lua \(the image's\), model \/usr\/local\/share\/dtf\/models\/mnist\.lua \(the image's\)/);
  }
  const empty = notes([], "1.29");
  assert.match(empty, /in an emptyDir of each ps pod: they survive a container restart, and are lost with the pod/);
  assert.match(empty, /--set checkpoint\.persistence\.enabled=true/);
  const claim = notes([...values, "--set", "checkpoint.persistence.enabled=true"], "1.29");
  assert.match(claim, /Checkpoints: \/var\/lib\/dtf\/checkpoints\/mnist\n  on the PersistentVolumeClaim mnist-checkpoints, which every ps pod mounts at \/var\/lib\/dtf\/checkpoints/);
  assert.match(claim, /one claim for all of them: a ps started with another ps\.number reads every old shard's files/);
  assert.match(claim, /ReadWriteOnce: the 2 ps pods can share the claim on one node only/);
  assert.match(claim, /helm uninstall deletes the claim/);
  const rwx = notes([...values, "--set", "checkpoint.persistence.enabled=true,checkpoint.persistence.accessModes={ReadWriteMany},checkpoint.persistence.existingClaim=mine"], "1.29");
  assert.doesNotMatch(rwx, /ReadWriteOnce|deletes the claim/);
  assert.match(rwx, /on the PersistentVolumeClaim mine/);
});

// ---- the idle wrapper of StatefulSet pods ----------------------------------------------
// Run the container's real command with a fake dtf on PATH.
function runWrapper(fakeDtf, { term = false, waitFor } = {}) {
  const c = dtfContainer(pods(sts).find((p) => p.role === "worker").template);
  const bin = tmpdir("dtf-fake-");
  writeFileSync(path.join(bin, "dtf"), `#!/bin/sh\n${fakeDtf}\n`, { mode: 0o755 });
  return new Promise((resolve, reject) => {
    const p = spawn(c.command[0], [...c.command.slice(1), ...c.args], {
      env: { PATH: `${bin}:${process.env.PATH}`, MARK: path.join(bin, "mark") },
    });
    let out = "";
    const timer = setTimeout(() => { p.kill("SIGKILL"); reject(new Error(`wrapper hung; output: ${out}`)); }, 10000);
    p.stdout.on("data", (d) => {
      out += d;
      if (term && waitFor && out.includes(waitFor)) p.kill("SIGTERM");
    });
    p.stderr.on("data", (d) => (out += d));
    p.on("exit", (code, sig) => {
      clearTimeout(timer);
      resolve({ code, sig, out, marked: existsSync(path.join(bin, "mark")) ? readFileSync(path.join(bin, "mark"), "utf8") : "" });
    });
  });
}
await test("idle wrapper: dtf exits 0 -> the container idles, then ends 0 on SIGTERM", async () => {
  const r = await runWrapper('echo "args: $*"; exit 0', { term: true, waitFor: "idling" });
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /args: run \/usr\/local\/share\/dtf\/train\.lua --role=worker --config \/etc\/dtf\/hparams\.lua/);
});
await test("idle wrapper: dtf's failure is the container's exit status", async () => {
  const r = await runWrapper("exit 3");
  assert.equal(r.code, 3, r.out);
});
await test("idle wrapper: SIGTERM reaches dtf (a ps can checkpoint) and the container ends with dtf's status", async () => {
  const r = await runWrapper(`trap 'echo term > "$MARK"; exit 0' TERM; echo started; while :; do sleep 0.1; done`, { term: true, waitFor: "started" });
  assert.equal(r.marked.trim(), "term");
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /idling/);
});

// ---- pods as real processes -----------------------------------------------------------
const dtf = path.join(root, buildDir, "dtf");

await test("values.schema.json knows the scripts' hyperparameters (scripts/chart-schema.mjs), and refuses a misspelt key", async () => {
  const { expectedSchema } = await import(path.join(root, "scripts/chart-schema.mjs"));
  assert.equal(readFileSync(path.join(chartDir, "values.schema.json"), "utf8"), expectedSchema(dtf),
               "chart/values.schema.json is stale: run make chart-schema");
  assert.match(renderFails([...values, "--set", "hyperparams.hiden=200"]), /hyperparams: Additional property hiden is not allowed/);
  assert.match(renderFails([...values, "--set", "hyperparams.optimizer=rmsprop"]), /hyperparams\.optimizer must be one of the following: "sgd", "adam", "adamw"/);
  assert.match(renderFails([...values, "--set", "hyperparams.hidden=0"]), /hyperparams\.hidden: Must be greater than or equal to 1/);
  assert.match(renderFails([...values, "--set", "hyperparams.datadir=/x"]), /hyperparams: Additional property datadir is not allowed/);
  // a custom model file's own keys pass through modelHyperparams
  const h = one(render([...values, "--set", "modelHyperparams.layers=3"]), "ConfigMap").data["hparams.lua"];
  assert.match(h, /^  layers = 3,$/m);
});
const noSandbox = sandboxUnavailable();
await test("pods_agree catches a cluster spec that names a pod the chart does not create", async () => {
  const o = render(values);
  const w = byKind(o, "Job").find((j) => j.metadata.name.includes("-worker-"));
  const env = dtfContainer(w.spec.template).env.find((e) => e.name === "DTF_CLUSTER");
  env.value = env.value.replace(/mnist-ps-[0-9a-f]{8}-1\.mnist-ps/, "mnist-ps-1.mnist-ps");
  const r = await podsAgree({ dtf: "/bin/false", objs: o, quiet: true });
  assert.equal(r.ok, false);
  assert.match(r.report, /DTF_CLUSTER names mnist-ps-1\.mnist-ps:8000, which is no ps pod of the chart/);
});
const pods_agree_cases = [
  { name: "values.yml as is (indexed Jobs, 2 ps + 2 workers, 200 steps)", args: values, kube: "1.29" },
  { name: "StatefulSets (Kubernetes 1.20), 1 ps + 1 worker, a token, the --set-file scripts of this tree (ConfigMap copies)",
    args: [...values, ...scriptArgs(), "--set", "ps.number=1,worker.number=1,token.value=tok3n,hyperparams.trainsteps=50"], kube: "1.20" },
  { name: "indexed Jobs, 3 ps + 2 workers, sync, 2 threads", args: [...values, "--set", "ps.number=3,worker.number=2,hyperparams.sync=sync,hyperparams.trainsteps=60,hyperparams.threads=2"], kube: "1.29" },
  { name: "the chart's defaults (no values file: emptyDirs only, no init container)", args: ["--set", "hyperparams.trainsteps=100"], kube: "1.29" },
  { name: "the restricted preset over values.yml (StatefulSets)", args: [...values, "--values", path.join(chartDir, "values-restricted.yaml"), "--set", "hyperparams.trainsteps=100"], kube: "1.20" },
];
for (const c of pods_agree_cases) {
  const name = `pods_agree: ${c.name}`;
  if (!existsSync(dtf)) { skip(name, `needs ${path.relative(root, dtf)}`); continue; }
  if (noSandbox) { skip(name, noSandbox); continue; }
  await test(name, async () => {
    const r = await podsAgree({ dtf, args: c.args, kube: c.kube, quiet: true });
    assert.ok(r.ok, r.report);
  });
}
if (existsSync(dtf) && !noSandbox) {
  await test("pods_agree catches a pod whose logdir is on the read-only root file system", async () => {
    const o = render([...values, "--set", "hyperparams.trainsteps=20"]);
    const w = byKind(o, "Job").find((j) => j.metadata.name.includes("-worker-")).spec.template;
    const c = dtfContainer(w);
    c.volumeMounts = c.volumeMounts.filter((m) => !["log-volume", "dtf-tmp"].includes(m.name));
    const r = await podsAgree({ dtf, objs: o, quiet: true, timeoutMs: 60000 });
    assert.equal(r.ok, false);
    assert.match(r.report, /mnist-worker-[0-9a-f]{8}-[01]: WARNING - cannot write the log file: .*(Read-only file system|Permission denied)/);
    assert.match(r.report, /logdir \/tmp\/mnist-log is on no volume/);
  });
}

await import("./hardening.mjs");
await import("./elastic.mjs");
finish();
