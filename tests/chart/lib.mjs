// Shared by the chart tests: running helm, reading rendered objects, and the
// facts Kubernetes derives from them (pod hostnames, DNS names, env).
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocs } from "./validate.mjs";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const chartDir = path.join(root, "chart");
export const helmBin = process.env.HELM || path.join(root, ".tools/bin/helm");

// The repository's scripts, which the image carries (the chart's default)
// and which --set-file can give instead.
export function scriptFiles() {
  return { train: path.join(root, "train.lua"), model: path.join(root, "models/mnist.lua") };
}

export function scriptArgs(files = scriptFiles()) {
  return ["--set-file", `scripts.train=${files.train}`, "--set-file", `scripts.model=${files.model}`];
}

/** helm ARGS...: {status, stdout, stderr} */
export function helm(args, opts = {}) {
  const r = spawnSync(helmBin, args, { encoding: "utf8", maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * helm template RELEASE chart/ with extra args; returns the parsed objects,
 * or throws with helm's error. kube: the --kube-version (default 1.29);
 * scripts: add --set-file of the repository's train.lua and models/mnist.lua
 * (default: the image's own, as `helm install` with no --set-file).
 */
export function render(args = [], { release = "mnist", kube = "1.29", scripts = false, namespace } = {}) {
  const a = ["template", release, chartDir, "--kube-version", kube];
  if (namespace) a.push("--namespace", namespace);
  if (scripts) a.push(...scriptArgs());
  a.push(...args);
  const r = helm(a);
  if (r.status !== 0) {
    const e = new Error(`helm template failed: ${r.stderr.trim()}`);
    e.stderr = r.stderr;
    throw e;
  }
  return parseDocs(r.stdout);
}

/** helm template that must fail: returns its stderr, or throws if it rendered. */
export function renderFails(args, opts = {}) {
  try {
    render(args, opts);
  } catch (e) {
    if (e.stderr !== undefined) return e.stderr;
    throw e;
  }
  throw new Error(`helm template ${args.join(" ")} rendered, but should have failed`);
}

export const byKind = (objs, kind) => objs.filter((o) => o.kind === kind);
export const one = (objs, kind, name) => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? " " + name : ""}, found ${found.length}`);
  return found[0];
};

export function selects(selector, labels) {
  return Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
}

// matchLabels + matchExpressions (In, NotIn, Exists, DoesNotExist).
export function labelSelectorMatches(sel, labels = {}) {
  if (!selects(sel.matchLabels, labels)) return false;
  for (const e of sel.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    if (e.operator === "In" && !(has && e.values.includes(labels[e.key]))) return false;
    if (e.operator === "NotIn" && has && e.values.includes(labels[e.key])) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

/**
 * The pods the chart's workloads create, as Kubernetes names them:
 * [{role, index, hostname, subdomain, dns, template, workload}]. An indexed
 * Job's pod i has hostname <job>-<i> and subdomain spec.template.spec.subdomain;
 * a StatefulSet's pod i is <sts>-<i> in the domain of spec.serviceName.
 */
export function pods(objs) {
  const out = [];
  for (const o of objs) {
    let n, sub;
    if (o.kind === "Job") {
      if (o.spec.completionMode !== "Indexed") throw new Error(`Job ${o.metadata.name} is not Indexed`);
      n = o.spec.completions;
      sub = o.spec.template.spec.subdomain;
    } else if (o.kind === "StatefulSet") {
      n = o.spec.replicas;
      sub = o.spec.serviceName;
    } else continue;
    const role = o.spec.template.metadata.labels["app.kubernetes.io/component"];
    for (let i = 0; i < n; i++) {
      const hostname = `${o.metadata.name}-${i}`;
      out.push({ role, index: i, hostname, subdomain: sub, dns: `${hostname}.${sub}`, template: o.spec.template, workload: o });
    }
  }
  return out;
}

/** The dtf container of a pod template (named after its role). */
export function dtfContainer(template) {
  const role = template.metadata.labels["app.kubernetes.io/component"];
  const c = template.spec.containers.find((x) => x.name === role);
  if (!c) throw new Error(`no container named ${role}`);
  return c;
}

export function envOf(container) {
  const env = {};
  for (const e of container.env || []) env[e.name] = e.value ?? { valueFrom: e.valueFrom };
  return env;
}

export function tmpdir(prefix) {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function writeTemp(dir, name, text) {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

export { readFileSync };
