// The mlops-ci Azure Pipelines task: run one mlops-ci verb with the task's inputs.
// Inputs and results go through Microsoft's azure-pipelines-task-lib (tl.getInput reads the
// task's inputs, tl.setResult writes the issue and the result the agent shows); the CLI is run
// with an argument list through spawnSync: no shell ever parses an input, so quotes, spaces and
// $(...) stay literal. task-lib takes INPUT_* and SECRET_* out of the environment when it loads,
// so the CLI and the training command it runs never see them.
'use strict';
const { spawnSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const tl = require('azure-pipelines-task-lib/task');

const VERBS = new Set(['validate', 'train', 'compare', 'register', 'promote', 'package', 'deploy',
  'approve', 'rollback', 'undeploy', 'status', 'drift', 'quality', 'batch-score', 'report']);

function input(name, fallback = '') {
  const value = tl.getInput(name, false);
  return value === undefined || value === '' ? fallback : value;
}

function fail(message) {
  tl.setResult(tl.TaskResult.Failed, message);
  process.exitCode = 2;
}

function run(program, args) {
  const done = spawnSync(program, args, { stdio: 'inherit', shell: false, env: process.env });
  if (done.error) return { code: 127, error: done.error };
  return { code: done.status === null ? 1 : done.status };
}

// The task installs the mlops-ci wheel it ships (wheel.json names it and its sha256; no package
// index has mlops-ci), with its dependencies from the package index, with uv where it can.
function ensureInstalled() {
  if (run('mlops-ci', ['--version']).code === 0) return true;
  const extras = input('extras', '');
  if (!/^[a-z,]*$/.test(extras)) {
    fail(`input extras '${extras}' is not a comma-separated list of names such as serve`);
    return false;
  }
  let shipped;
  try {
    shipped = JSON.parse(fs.readFileSync(path.join(__dirname, 'wheel.json'), 'utf8'));
  } catch (err) {
    fail('this task was packaged without its mlops-ci wheel (wheel.json): run '
      + '`python -m mlops_ci.packaging.wheel mlopsci` before `tfx extension create`');
    return false;
  }
  const wheel = path.join(__dirname, path.basename(String(shipped.file)));
  let digest;
  try {
    digest = crypto.createHash('sha256').update(fs.readFileSync(wheel)).digest('hex');
  } catch (err) {
    fail(`cannot read the shipped wheel ${wheel}: ${err.message}`);
    return false;
  }
  if (digest !== shipped.sha256) {
    fail(`the shipped wheel ${path.basename(wheel)} has sha256 ${digest}, not ${shipped.sha256} as wheel.json records: not installing it`);
    return false;
  }
  // report --pr posts to GitHub with PyGithub (the github extra) when the repository is there.
  const wanted = extras.split(',').filter(Boolean);
  const provider = process.env.BUILD_REPOSITORY_PROVIDER || '';
  if (provider.startsWith('GitHub') && !wanted.includes('github')) wanted.push('github');
  const spec = `${wheel}${wanted.length ? `[${wanted.join(',')}]` : ''}`;
  const python = process.platform === 'win32' ? 'python' : 'python3';
  if (installWithUv(python, spec)) return true;
  if (run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', spec]).code !== 0) {
    fail(`pip could not install ${spec}`);
    return false;
  }
  return true;
}

// uv installs in seconds what pip takes most of a minute for. It is installed with pip (one
// wheel) into the agent's Python and asked to install into that same interpreter, named by its
// full path (uv installs into a non-virtual environment only when told which); pip installs
// when any of that fails.
function installWithUv(python, spec) {
  const found = spawnSync(python, ['-c', 'import sys; print(sys.executable)'],
    { encoding: 'utf8', shell: false, env: process.env });
  const executable = found.status === 0 ? String(found.stdout).trim() : '';
  if (!executable) return false;
  const quiet = ['--disable-pip-version-check', '--quiet'];
  if (run(python, ['-m', 'pip', 'install', ...quiet, 'uv']).code !== 0) return false;
  return run(python, ['-m', 'uv', 'pip', 'install', '--python', executable, spec]).code === 0;
}

function main() {
  const command = input('command', 'train');
  if (command === 'setup') {  // install only, for the steps that call mlops-ci themselves
    if (ensureInstalled() && run('mlops-ci', ['--version']).code !== 0) {
      fail('mlops-ci was installed but does not run: is the Python of UsePythonVersion on PATH?');
    }
    return;
  }
  if (!VERBS.has(command)) {
    fail(`input command: '${command}' is not an mlops-ci verb (${[...VERBS].join(', ')})`);
    return;
  }
  const args = [command];
  const config = input('config', '');
  if (config) args.push('--config', config);  // every verb takes --config
  for (const line of input('arguments', '').split(/\r?\n/)) {
    if (line.trim() !== '') args.push(line.trim());
  }
  if (!ensureInstalled()) return;
  const { code, error } = run('mlops-ci', args);
  if (error) {
    fail(`cannot run mlops-ci: ${error.message}`);
  } else if (code !== 0) {
    // mlops-ci has written its own issue (the file and line at fault): only the result here,
    // not a second issue that says less.
    tl.command('task.complete', { result: 'Failed' }, `mlops-ci ${command} exited with ${code}`);
    process.exitCode = code;
  }
}

main();
