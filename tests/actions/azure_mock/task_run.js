// One run of the mlops-ci task under Microsoft's TaskMockRunner (azure-pipelines-task-lib's
// mock-run), as the agent starts it: every input task.json declares, its default where the case
// gives none, then the task's index.js. The case is the JSON in MLOPS_TASK_CASE.
'use strict';
const fs = require('fs');
const path = require('path');
const tmrm = require('azure-pipelines-task-lib/mock-run');

const taskDir = process.env.MLOPS_TASK_DIR;
const task = JSON.parse(fs.readFileSync(path.join(taskDir, 'task.json'), 'utf8'));
const given = JSON.parse(process.env.MLOPS_TASK_CASE).inputs;
const runner = new tmrm.TaskMockRunner(path.join(taskDir, task.execution.Node20_1.target));
for (const declared of task.inputs) {
  const value = Object.prototype.hasOwnProperty.call(given, declared.name)
    ? given[declared.name] : declared.defaultValue;
  if (value !== undefined) runner.setInput(declared.name, String(value));
}
runner.run();
