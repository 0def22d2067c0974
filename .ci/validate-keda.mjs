// Validates the KEDA objects (apiVersion keda.sh/...) of the manifests named on the command
// line against KEDA's CRD schemas as packaged in @kubernetes-models/keda. .ci/run installs
// it with `yaml` into a scratch directory and passes that node_modules as MODELS_NODE_MODULES.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.MODELS_NODE_MODULES;
if (!modules) {
  console.error("set MODELS_NODE_MODULES to a node_modules with @kubernetes-models/keda and yaml");
  process.exit(2);
}
const load = (path) => import(pathToFileURL(join(modules, path)).href);
const YAML = await load("yaml/dist/index.js");
const keda = await load("@kubernetes-models/keda/keda.sh/v1alpha1/index.js");

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(readFileSync(file, "utf8"))) {
    const obj = doc.toJS();
    if (!obj || !String(obj.apiVersion).startsWith("keda.sh/")) continue;
    const name = `${file}: ${obj.kind} ${obj.metadata?.name}`;
    const Model = keda[obj.kind];
    try {
      if (!Model) throw new Error("no schema for this kind");
      new Model(obj).validate();
      checked++;
    } catch (e) {
      console.error(`${name}: ${e.message}`);
      failed++;
    }
  }
}
console.log(`KEDA objects: ${checked} valid, ${failed} invalid`);
process.exit(failed > 0 || checked === 0 ? 1 : 0);
