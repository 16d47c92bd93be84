// Elastic ps and workers: an upgrade that changes the counts or a training
// value keeps the checkpoint directory (the release's), so the new pods go on
// from the last global step. Offline (the rendered values), then as real
// processes (pods_agree): a run stopped mid-way as a deletion stops it, and
// the upgrade's pods started on the same node. Imported by check.mjs.
import assert from "node:assert/strict";
import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { root, render, byKind, pods, tmpdir } from "./lib.mjs";
import { test, skip, hparamLines } from "./harness.mjs";
import { podsAgree, sandboxUnavailable } from "./pods_agree.mjs";

const buildDir = process.argv[2] || "build";
const values = ["--values", path.join(root, "values.yml")];

// ---- offline ---------------------------------------------------------------------
const keeps = [
  ["worker.number", "worker.number=3"], ["ps.number", "ps.number=3"], ["trainsteps", "hyperparams.trainsteps=5000"],
  ["learningrate", "hyperparams.learningrate=0.01"], ["optimizer settings", "hyperparams.beta1=0.8,hyperparams.weight_decay=0.01"],
  ["sync", "hyperparams.sync=true"], ["the model", "hyperparams.hidden=64"],
];
for (const workload of ["job", "statefulset"]) {
  await test(`${workload}: an upgrade keeps the checkpoint directory (the release's) whatever it changes: ${keeps.map((k) => k[0]).join(", ")}`, () => {
    const base = render([...values, "--set", `workload=${workload}`]);
    const dir = hparamLines(base).checkpoint_dir;
    const names = (o) => [...byKind(o, "Job"), ...byKind(o, "StatefulSet")].map((x) => x.metadata.name).sort().join(" ");
    for (const [what, set] of keeps) {
      const o = render([...values, "--set", `workload=${workload},${set}`]);
      assert.equal(hparamLines(o).checkpoint_dir, dir, what);
      if (workload === "job") assert.notEqual(names(o), names(base), `${what}: new Jobs (a Job's pod template is immutable)`);
      else assert.equal(names(o), names(base), `${what}: the StatefulSets roll`);
    }
    assert.equal(hparamLines(render([...values, "--set", `workload=${workload}`], { release: "other" })).checkpoint_dir, '"/tmp/mnist-log/ckpt/other"');
    assert.equal(hparamLines(render([...values, "--set", `workload=${workload},checkpoint.dir=/tmp/mnist-log/fresh`])).checkpoint_dir, '"/tmp/mnist-log/fresh"');
  });
}
await test("sync: replicas_to_aggregate is not written unless set, so each ps aggregates every worker of the new count", () => {
  assert.equal(hparamLines(render([...values, "--set", "hyperparams.sync=true,worker.number=3"])).replicas_to_aggregate, undefined);
  assert.equal(hparamLines(render([...values, "--set", "hyperparams.sync=true,worker.number=3,hyperparams.replicas_to_aggregate=2"])).replicas_to_aggregate, "2");
});

// ---- as real processes -------------------------------------------------------------
const dtf = path.join(root, buildDir, "dtf");
const noSandbox = existsSync(dtf) ? sandboxUnavailable() : `needs ${path.relative(root, dtf)}`;

const restoredSteps = (r) => r.results.filter((x) => x.role === "ps").map((x) => {
  const m = x.out.match(/ps \d+: restored step (\d+) from (\S+)/);
  return m ? Number(m[1]) : null;
});
const firstSteps = (r) => r.results.filter((x) => x.role === "worker").map((x) => Number(x.out.match(/global step: (\d+)/)?.[1] ?? -1));

// A run of `before` stopped at global step `at` (SIGTERM to every pod, as
// Helm's deletion of the old Jobs or a StatefulSet's roll does), then the
// upgrade's pods (`after`) on the same node. Returns {A, B, stop, run}.
async function upgradeMidRun({ before, after, at, kube, interval }) {
  const node = tmpdir("dtf-node-");
  const stop = await podsAgree({
    dtf, args: before, kube, node, quiet: true, graceMs: 2000,
    onLine: (pod, line, ctl) => { if (ctl.top >= at) ctl.stopAll(); },
  });
  assert.ok(stop.stopped, `the first run did not reach global step ${at}: ${stop.report}`);
  const run = await podsAgree({ dtf, args: after, kube, node, quiet: true });
  rmSync(node, { recursive: true, force: true });
  const restored = restoredSteps(run);
  return { A: stop.top, B: Math.min(...restored.map((x) => x ?? -1)), stop, run, restored, interval };
}

function assertWentOn(u, what) {
  assert.ok(u.run.ok, u.run.report);
  assert.ok(u.restored.every((x) => x !== null), `every new ps restored a checkpoint: ${u.restored}\n${u.run.report}`);
  console.log(`# elastic: ${what} at global step ${u.A}; training went on from global step ${u.B}`);
  assert.ok(u.B >= u.A - u.interval, `went on from ${u.B}, more than one checkpoint interval (${u.interval}) before ${u.A}`);
  for (const s of firstSteps(u.run)) assert.ok(s >= u.A - u.interval, `a new worker's first global step ${s} is before ${u.A} - ${u.interval}`);
}

const cases = [
  {
    name: "indexed Jobs: scaled workers 2 -> 3 mid-run (new Jobs) with a new learning rate, beta1 and trainsteps: training went on from the last global step",
    kube: "1.29", what: "scaled workers 2 -> 3, learningrate 0.001 -> 0.0005, beta1 0.9 -> 0.8, trainsteps 2000 -> 3000",
    before: ["--set", "hyperparams.trainsteps=2000,checkpoint.steps=200"],
    after: ["--set", "hyperparams.trainsteps=3000,checkpoint.steps=200,worker.number=3,hyperparams.learningrate=0.0005,hyperparams.beta1=0.8"],
  },
  {
    name: "StatefulSets, sync: scaled workers 2 -> 3 mid-run; each step then averages 3 of 3 workers",
    kube: "1.20", what: "scaled workers 2 -> 3 (sync)",
    before: ["--set", "hyperparams.trainsteps=1500,hyperparams.sync=true,checkpoint.steps=100"],
    after: ["--set", "hyperparams.trainsteps=1500,hyperparams.sync=true,checkpoint.steps=100,worker.number=3"],
    check: (u) => { for (const x of u.run.results.filter((y) => y.role === "ps")) assert.match(x.out, /sync: each step averages 3 of 3 workers' gradients/); },
  },
  {
    name: "indexed Jobs, persistence: scaled ps 2 -> 3 mid-run, every new ps restores its range from the old shards on the claim",
    kube: "1.29", what: "scaled ps 2 -> 3",
    before: ["--set", "hyperparams.trainsteps=3000,checkpoint.steps=200,checkpoint.persistence.enabled=true"],
    after: ["--set", "hyperparams.trainsteps=3000,checkpoint.steps=200,checkpoint.persistence.enabled=true,ps.number=3,worker.number=3"],
  },
];
for (const c of cases) {
  const name = `pods_agree: ${c.name}`;
  if (noSandbox) { skip(name, noSandbox); continue; }
  await test(name, async () => {
    const interval = Number(c.before.join(",").match(/checkpoint\.steps=(\d+)/)[1]);
    const u = await upgradeMidRun({ before: [...values, ...c.before], after: [...values, ...c.after], at: 600, kube: c.kube, interval });
    assertWentOn(u, c.what);
    if (c.check) c.check(u);
  });
}
const modelName = "pods_agree: another model on the same release starts from its initial parameters, the ps saying why";
if (noSandbox) skip(modelName, noSandbox);
else await test(modelName, async () => {
  const node = tmpdir("dtf-node-");
  const a = await podsAgree({ dtf, args: [...values, "--set", "hyperparams.trainsteps=300"], node, quiet: true });
  assert.ok(a.ok, a.report);
  const b = await podsAgree({ dtf, args: [...values, "--set", "hyperparams.trainsteps=300,hyperparams.hidden=64"], node, quiet: true });
  assert.ok(b.ok, b.report);
  for (const x of b.results.filter((y) => y.role === "ps")) {
    assert.doesNotMatch(x.out, /restored step/);
    assert.match(x.out, /ps \d: the \d+ checkpoints? in \/tmp\/mnist-log\/ckpt\/mnist belongs? to another model \(layout [0-9a-f]{16}; this model is [0-9a-f]{16}\): starting from the initial parameters/);
  }
  assert.ok(readdirSync(path.join(node, "hostpath/tmp/mnist/ckpt/mnist")).length > 0);
  rmSync(node, { recursive: true, force: true });
});
