// The chart tests' harness: test(name, fn) prints "ok - name" or "not ok -
// name" with the error, finish() the closing "chart: N passed, M failed".
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { validateDocs } from "./validate.mjs";
import { tmpdir, one } from "./lib.mjs";

let passed = 0, failed = 0;
export const tmp = tmpdir("dtf-chart-");

export async function test(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}`);
    for (const line of String(e.stack || e).split("\n").slice(0, 12)) console.log(`    ${line}`);
  }
}

export function skip(name, why) {
  console.log(`skip - ${name}: ${why}`);
}

export async function assertValid(objs) {
  const bad = (await validateDocs(objs)).filter((r) => r.errors.length);
  assert.deepEqual(bad.map((r) => `${r.id}: ${r.errors.join("; ")}`), [], "objects failing validation");
}

export function hparamsOf(objs) {
  return one(objs, "ConfigMap").data["hparams.lua"];
}

// Lua `key = value,` lines of hparams.lua as a map of strings.
export function hparamLines(objs) {
  const m = {};
  for (const line of hparamsOf(objs).split("\n")) {
    const r = line.match(/^\s+(\w+|\["[^"]*"\]) = (.*),$/);
    if (r) m[r[1]] = r[2];
  }
  return m;
}

export function finish() {
  rmSync(tmp, { recursive: true, force: true });
  console.log(`chart: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
