// What the READMEs say about the CDK app, checked against the app: deploy commands that
// write the outputs `mir ctx import` reads, the context defaults, and the removal commands.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { readConfig, stackName } from '../lib/config';
import { REPO_ROOT, synth } from './helpers';

function read(rel: string): string {
  return fs.readFileSync(path.join(REPO_ROOT, rel), 'utf8');
}

/** README.md, infra/cdk/README.md and docs/*.md. */
function docs(): Map<string, string> {
  const files = ['README.md', 'infra/cdk/README.md', ...fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  return new Map(files.map((f) => [f, read(f)]));
}

/** The bodies of the ```sh blocks of a markdown text. */
function shBlocks(md: string): string[] {
  return [...md.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Shell commands of a block, continuation lines joined, comments dropped. */
function commands(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
}

/** `cdk deploy` / `cdklocal deploy` with arguments, in sh blocks and in inline code. */
function deployCommands(md: string): string[] {
  const inBlocks = shBlocks(md).flatMap(commands);
  const withoutBlocks = md.replace(/```[\s\S]*?```/g, '');
  const inline = [...withoutBlocks.matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/\s+/g, ' '));
  return [...inBlocks, ...inline].filter((c) => /\bcdk(local)? deploy \S/.test(c));
}

test('every cdk deploy command in the READMEs and docs writes an outputs file', () => {
  let seen = 0;
  for (const [file, md] of docs()) {
    for (const c of deployCommands(md)) {
      seen++;
      assert.match(c, /--outputs-file \S+\.json\b/, `${file}: ${c}`);
    }
  }
  assert.ok(seen >= 5, `only ${seen} deploy commands found: is the parser still right?`);
});

test('every mir ctx import in a README block reads a file a cdk deploy before it in that block wrote', () => {
  let seen = 0;
  for (const [file, md] of docs()) {
    for (const block of shBlocks(md)) {
      const written = new Set<string>();
      for (const c of commands(block)) {
        const out = /\bcdk(?:local)? deploy .*--outputs-file (\S+)/.exec(c)?.[1];
        if (out) written.add(out);
        const imported = /\bmir ctx import --outputs (\S+)/.exec(c)?.[1];
        if (/\bmir ctx import\b/.test(c)) {
          seen++;
          assert.ok(imported && written.has(imported), `${file}: \`${c}\` reads no file written above it (${[...written].join(', ')})`);
        }
      }
    }
  }
  assert.ok(seen >= 3, `only ${seen} imports found`);
});

test('the context table of infra/cdk/README.md gives the defaults the app uses', () => {
  const md = read('infra/cdk/README.md');
  const rows = new Map([...md.matchAll(/^\| `(mir:[A-Za-z]+)` \| `([^`]*)` \|/gm)].map((m) => [m[1], m[2]]));
  // cdk.json's context is part of what `cdk deploy` uses without -c.
  const cdkJson = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'cdk.json'), 'utf8')).context;
  const c = readConfig(new App({ context: { ...cdkJson, 'mir:repoRoot': REPO_ROOT } }).node);
  assert.deepEqual(Object.fromEntries(rows), {
    'mir:stage': c.stage,
    'mir:telemetrySink': c.telemetrySink,
    'mir:telemetryRetentionDays': String(c.telemetryRetentionDays),
    'mir:eventRetention': c.eventRetention,
    'mir:rustLog': c.rustLog,
  });
  // The code's own default (no cdk.json) is the same sink.
  assert.equal(readConfig(new App({ context: { 'mir:repoRoot': REPO_ROOT } }).node).telemetrySink, c.telemetrySink);
});

test('the removal commands of infra/cdk/README.md read the default stage data stack and outputs it has', () => {
  const md = read('infra/cdk/README.md');
  const section = md.slice(md.indexOf('### Removing it'));
  const block = shBlocks(section)[0];
  const stack = /\bstack=(\S+)/.exec(block)?.[1];
  assert.equal(stack, stackName(synth('default').stage, 'data'));
  assert.equal(synth('default').stage, 'dev');
  const keys = new Set([...block.matchAll(/\bget ([A-Z][A-Za-z]+)\)/g)].map((m) => m[1]));
  for (const m of block.matchAll(/\bfor key in ([A-Za-z ]+);/g)) for (const k of m[1].trim().split(/\s+/)) keys.add(k);
  const outputs = new Set([...Object.keys(synth('default').json.data.Outputs), ...Object.keys(synth('timestream').json.data.Outputs)]);
  const tablesAndStores = [...outputs].filter((o) => /Table$|Database$|Bucket$/.test(o) && !o.startsWith('ExportsOutput'));
  assert.deepEqual([...keys].sort(), tablesAndStores.sort(), 'the block removes exactly the retained stores of both sinks');
});
