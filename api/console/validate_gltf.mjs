// Validate a glTF/GLB file with the Khronos glTF validator and print its JSON report.
// Usage: node validate_gltf.mjs FILE.glb   (exit status 0 when the report has no errors, 1 when
// it has errors, 2 on bad usage). Used by tests/simulation/test_gltf.py.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate_gltf.mjs FILE.glb");
  process.exit(2);
}
const bytes = new Uint8Array(await readFile(path));
const report = await validator.validateBytes(bytes, {
  uri: path,
  maxIssues: 0, // report every issue
  writeTimestamp: false,
});
console.log(JSON.stringify(report, null, 2));
process.exit(report.issues.numErrors > 0 ? 1 : 0);
