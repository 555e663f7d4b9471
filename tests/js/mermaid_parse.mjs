// Parse mermaid diagrams with mermaid itself (as GitHub renders them), under jsdom.
// stdin: a JSON list of diagram sources; stdout: a JSON list of null (parsed) or the error.
// NODE_PATH is not used by ES modules: the caller passes the folder holding node_modules.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.argv[2];
const require = createRequire(path.join(modules, 'noop.js'));
const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const entry = require.resolve('mermaid');
const { default: mermaid } = await import(pathToFileURL(entry).href);
mermaid.initialize({ startOnLoad: false });

let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = [];
for (const source of JSON.parse(input)) {
  try {
    await mermaid.parse(source);
    results.push(null);
  } catch (err) {
    results.push(String((err && err.message) || err).split('\n').slice(0, 3).join(' | '));
  }
}
process.stdout.write(JSON.stringify(results));
