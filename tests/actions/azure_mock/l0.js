// Runs each case of the JSON file argv[2] with Microsoft's MockTestRunner
// (azure-pipelines-task-lib/mock-test) and writes what it saw to argv[3]: succeeded, the
// issues it parsed, stdout and stderr.
'use strict';
const fs = require('fs');
const path = require('path');
const { MockTestRunner } = require('azure-pipelines-task-lib/mock-test');

async function main() {
  const cases = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const taskJson = path.join(process.env.MLOPS_TASK_DIR, 'task.json');
  const seen = [];
  for (const one of cases) {
    process.env.MLOPS_TASK_CASE = JSON.stringify(one);
    const runner = new MockTestRunner(path.join(__dirname, 'task_run.js'), taskJson);
    await runner.runAsync();
    seen.push({
      name: one.name,
      succeeded: runner.succeeded,
      errorIssues: runner.errorIssues,
      warningIssues: runner.warningIssues,
      stdout: runner.stdout,
      stderr: runner.stderr,
    });
  }
  fs.writeFileSync(process.argv[3], JSON.stringify(seen));
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
