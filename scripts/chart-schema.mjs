// scripts/chart-schema.mjs DTF [--check]: the chart's values.schema.json
// knows the training's hyperparameters (train.lua's, lua/dtf/schema.lua, and
// models/mnist.lua's), so that a misspelt key (hyperparams.hiden) or a bad
// value (optimizer=rmsprop) fails at `helm template`, not inside the pods.
// Its hyperparams.properties are generated from `dtf run train.lua --set
// help=json`; this rewrites them (make chart-schema), or with --check says
// whether the committed file is what the scripts give (the chart test).
// Keys the chart sets itself (where the model, data, logs and checkpoints
// are) are left out: they are refused under hyperparams and have values of
// their own.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
const schemaFile = path.join(root, "chart/values.schema.json");
export const chartManaged = ["modelfile", "datadir", "logdir", "checkpoint_dir", "checkpoint_secs", "checkpoint_steps"];

// One hyperparameter as a JSON schema property.
function property(e) {
  const p = {};
  if (e.help) p.description = e.help;
  if (e.name === "sync") {
    // the chart's own spelling of the mode, kept from the seed's values
    p.description = "the sync mode: false or async (each gradient applied on arrival), true or sync (gradients averaged per step)";
    p.enum = [false, true, "async", "sync"];
    return p;
  }
  if (e.choices) p.enum = e.choices;
  else if (e.type === "int") p.type = "integer";
  else if (e.type === "number") p.allOf = [{ $ref: "#/definitions/number" }]; // a numeric string too (helm --set)
  else if (e.type === "bool") p.type = "boolean";
  else p.type = "string";
  if (e.min !== undefined && (e.type === "int" || e.type === "number")) p.minimum = e.min;
  if (e.max !== undefined && (e.type === "int" || e.type === "number")) p.maximum = e.max;
  return p;
}

// The hyperparams.properties the scripts of this tree give.
export function hyperparamProperties(dtf) {
  const out = execFileSync(dtf, ["run", path.join(root, "train.lua"), "--set", "help=json"],
    { encoding: "utf8", env: { ...process.env, DTF_METRICS_PORT: "" } });
  const props = {};
  for (const e of JSON.parse(out)) if (!chartManaged.includes(e.name)) props[e.name] = property(e);
  return props;
}

// The schema file as it should be: its hyperparams.properties regenerated.
export function expectedSchema(dtf) {
  const schema = JSON.parse(readFileSync(schemaFile, "utf8"));
  schema.properties.hyperparams.properties = hyperparamProperties(dtf);
  return JSON.stringify(schema, null, 2) + "\n";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [dtf, flag] = process.argv.slice(2);
  if (!dtf) {
    console.error("usage: scripts/chart-schema.mjs DTF [--check]");
    process.exit(2);
  }
  const want = expectedSchema(dtf), have = readFileSync(schemaFile, "utf8");
  if (flag === "--check") {
    if (want !== have) {
      console.error("chart/values.schema.json does not match the scripts' hyperparameters: run `make chart-schema`");
      process.exit(1);
    }
  } else if (want !== have) {
    writeFileSync(schemaFile, want);
    console.log("chart/values.schema.json: hyperparams regenerated");
  }
}
