// The mlops-ci Azure Pipelines task: run one mlops-ci verb with the task's inputs.
// Inputs arrive as INPUT_* environment variables (as the agent sets them) and reach the CLI as
// an argument list through spawnSync: no shell ever parses them, so quotes, spaces and $(...)
// in an input stay literal. Only Node's own modules are used.
'use strict';
const { spawnSync } = require('child_process');

const VERBS = new Set(['validate', 'train', 'compare', 'register', 'promote', 'package', 'deploy',
  'approve', 'rollback', 'undeploy', 'status', 'drift', 'batch-score', 'report']);

function input(name, fallback = '') {
  const value = process.env[`INPUT_${name.toUpperCase()}`];
  return value === undefined || value === '' ? fallback : value;
}

function fail(message) {
  console.log(`##vso[task.logissue type=error;]${message.replace(/%/g, '%AZP25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')}`);
  console.log('##vso[task.complete result=Failed;]');
  process.exitCode = 2;
}

function run(program, args) {
  const done = spawnSync(program, args, { stdio: 'inherit', shell: false, env: process.env });
  if (done.error) return { code: 127, error: done.error };
  return { code: done.status === null ? 1 : done.status };
}

function ensureInstalled() {
  if (run('mlops-ci', ['--version']).code === 0) return true;
  const version = input('version', '0.1.0');
  const extras = input('extras', '');
  if (!/^[0-9][0-9A-Za-z.+-]*$/.test(version) || !/^[a-z,]*$/.test(extras)) {
    fail(`input version '${version}' or extras '${extras}' is not valid`);
    return false;
  }
  const spec = `mlops-ci${extras ? `[${extras}]` : ''}==${version}`;
  const python = process.platform === 'win32' ? 'python' : 'python3';
  if (run(python, ['-m', 'pip', 'install', '--disable-pip-version-check', spec]).code !== 0) {
    fail(`pip could not install ${spec}`);
    return false;
  }
  return true;
}

function main() {
  const command = input('command', 'train');
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
    console.log(`##vso[task.complete result=Failed;]mlops-ci ${command} exited with ${code}`);
    process.exitCode = code;
  }
}

main();
