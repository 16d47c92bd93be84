// Validates rendered Kubernetes objects offline.
//
//   node tests/chart/validate.mjs [FILE.yaml ...]     (stdin when no file)
//
// Each object goes through two checks:
//  1. the kubernetes-models class of its apiVersion/kind validates it against
//     the Kubernetes OpenAPI schema (types, enums, required fields);
//  2. every field name is looked up in the TypeScript declarations that ship
//     with kubernetes-models (*.d.ts), since the schema check lets unknown
//     (misspelled) fields through, which a real API server would reject.
// Prints one line per object and exits 1 when any object fails.
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../package.json"));
const modelsDir = path.dirname(require.resolve("kubernetes-models/package.json"));
const nodeModules = path.dirname(modelsDir);

/** Parse a multi-document YAML string into plain objects (nulls dropped). */
export function parseDocs(text) {
  const out = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`YAML: ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (obj != null) out.push(obj);
  }
  return out;
}

function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const dir = group === "" ? version : `${group}/${version}`;
  return path.join(modelsDir, dir, `${kind}.js`);
}

// ---- field names from the .d.ts declarations --------------------------------
const ifaceCache = new Map();

// The first interface of a declaration file: its fields and their types, and
// where the types it names come from.
function readInterface(dtsFile) {
  if (ifaceCache.has(dtsFile)) return ifaceCache.get(dtsFile);
  let result = null;
  if (existsSync(dtsFile)) {
    const src = readFileSync(dtsFile, "utf8").replace(/\/\*\*[\s\S]*?\*\//g, "");
    const imports = new Map();
    for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
      for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
        imports.set(name, resolveImport(dtsFile, m[2]));
      }
    }
    const im = src.match(/export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/);
    if (im) {
      // Fields are `"name"?: Type;` at the interface's first indentation
      // level; a type may span lines (`{ [key: string]: T; }`).
      const fields = new Map();
      const body = im[1].replace(/\{\s*\n\s*(\[key: string\]: [^;]+;)\s*\n\s*\}/g, "{ $1 }");
      for (const line of body.split("\n")) {
        const fm = line.match(/^ {4}"([^"]+)"\??:\s*(.*);\s*$/);
        if (fm) fields.set(fm[1], fm[2]);
      }
      result = { fields, imports };
    }
  }
  ifaceCache.set(dtsFile, result);
  return result;
}

function resolveImport(fromFile, spec) {
  let p;
  if (spec.startsWith(".")) p = path.resolve(path.dirname(fromFile), spec);
  else p = path.join(nodeModules, spec);
  p = p.replace(/\.js$/, "");
  return p + ".d.ts";
}

// Where the type expression of a field leads: an interface file, an array or
// map of one, or nothing to check (strings, numbers, IntOrString...).
function typeTarget(expr, imports) {
  let m = expr.match(/^Array<(\w+)>$/);
  if (m) return imports.has(m[1]) ? { kind: "array", file: imports.get(m[1]) } : null;
  m = expr.match(/^\{\s*\[key: string\]: (\w+);?\s*\}$/);
  if (m) return imports.has(m[1]) ? { kind: "map", file: imports.get(m[1]) } : null;
  m = expr.match(/^(\w+)$/);
  if (m && imports.has(m[1])) return { kind: "object", file: imports.get(m[1]) };
  return null;
}

function checkFields(value, dtsFile, at, errors) {
  if (value == null || typeof value !== "object" || Array.isArray(value)) return;
  const iface = readInterface(dtsFile);
  if (!iface) return;
  for (const [key, v] of Object.entries(value)) {
    if (!iface.fields.has(key)) {
      errors.push(`${at}.${key}: unknown field (not in ${path.basename(dtsFile, ".d.ts")})`);
      continue;
    }
    const t = typeTarget(iface.fields.get(key), iface.imports);
    if (!t) continue;
    if (t.kind === "object") checkFields(v, t.file, `${at}.${key}`, errors);
    else if (t.kind === "array" && Array.isArray(v))
      v.forEach((e, i) => checkFields(e, t.file, `${at}.${key}[${i}]`, errors));
    else if (t.kind === "map" && v && typeof v === "object")
      for (const [k, e] of Object.entries(v)) checkFields(e, t.file, `${at}.${key}.${k}`, errors);
  }
}

/** Validate one object; returns a list of error strings (empty: valid). */
export async function validateObject(obj) {
  const errors = [];
  if (!obj.apiVersion || !obj.kind) return ["no apiVersion or kind"];
  const file = modelPath(obj.apiVersion, obj.kind);
  if (!existsSync(file)) return [`no kubernetes-models class for ${obj.apiVersion} ${obj.kind}`];
  const mod = await import(file);
  const Cls = mod[obj.kind];
  try {
    new Cls(obj).validate();
  } catch (e) {
    errors.push(`schema: ${e.message}`);
  }
  checkFields(obj, file.replace(/\.js$/, ".d.ts"), obj.kind, errors);
  return errors;
}

/** Validate every object; returns [{id, errors}]. */
export async function validateDocs(docs) {
  const out = [];
  for (const obj of docs) {
    const id = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
    out.push({ id, errors: await validateObject(obj) });
  }
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2);
  const text = files.length ? files.map((f) => readFileSync(f, "utf8")).join("\n---\n") : readFileSync(0, "utf8");
  const results = await validateDocs(parseDocs(text));
  let bad = 0;
  for (const r of results) {
    if (r.errors.length) {
      bad++;
      console.log(`FAIL ${r.id}`);
      for (const e of r.errors) console.log(`  ${e}`);
    } else console.log(`ok   ${r.id}`);
  }
  console.log(`validate: ${results.length - bad} valid, ${bad} invalid`);
  process.exit(bad ? 1 : 0);
}
