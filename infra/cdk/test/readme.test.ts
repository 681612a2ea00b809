// What the READMEs say about the CDK app, checked against the app: deploy commands that
// write the outputs `mir ctx import` reads, the context defaults, and the removal commands.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { DEFAULT_DEVICE_CONCURRENCY, parseDeviceConcurrency, readConfig, stackName } from '../lib/config';
import { JOBS, routesOf } from '../lib/operator-access';
import { STAGE_LOCK_NAME } from '../lib/stage-lock';
import { mirFunctions, REPO_ROOT, ROUTES, synth } from './helpers';

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
    'mir:deviceConcurrency': DEFAULT_DEVICE_CONCURRENCY,
    'mir:apiThrottleRateLimit': String(c.apiThrottle.rateLimit),
    'mir:apiThrottleBurstLimit': String(c.apiThrottle.burstLimit),
    'mir:apiAccessLogRetentionDays': String(c.apiAccessLogRetentionDays),
  });
  assert.deepEqual(parseDeviceConcurrency(rows.get('mir:deviceConcurrency')!, ROUTES), c.deviceConcurrency);
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
  const outputs = new Set(
    (['default', 'timestream'] as const).flatMap((f) => [...Object.keys(synth(f).json.data.Outputs), ...Object.keys(synth(f).json.api.Outputs)]),
  );
  const tablesAndStores = [...outputs].filter((o) => /Table$|Database$|Bucket$|LogGroup$|UserPoolId$/.test(o) && !o.startsWith('ExportsOutput'));
  assert.deepEqual([...keys].sort(), tablesAndStores.sort(), 'the block removes exactly the retained stores of both sinks, the operators and the console bucket');
  // Each retained resource is retained indeed.
  for (const [part, type] of [['data', 'AWS::Cognito::UserPool'], ['api', 'AWS::S3::Bucket']] as const) {
    for (const [id, r] of Object.entries<any>(synth('default').json[part].Resources)) {
      if (r.Type === type) assert.equal(r.DeletionPolicy, 'Retain', `${part}/${id}`);
    }
  }
});

test('infra/cdk/README.md deploys and bootstraps every stage with its account\'s --profile (one stage per account)', () => {
  const md = read('infra/cdk/README.md');
  const cmds = [...deployCommands(md), ...shBlocks(md).flatMap(commands).filter((c) => /\bcdk bootstrap\b/.test(c))].filter((c) => !/\bcdklocal\b/.test(c));
  assert.ok(cmds.length >= 6, `${cmds.length} commands`);
  for (const c of cmds) assert.match(c, /--profile \S+/, c);
  // Two stages, two profiles (accounts), not two stages in one account.
  const block = shBlocks(md.slice(md.indexOf('## Deploy to AWS')))[0];
  const profiles = new Set([...block.matchAll(/\bcdk deploy .*--profile (\S+)/g)].map((m) => m[1]));
  assert.ok(profiles.size >= 2, `the deploy block uses ${[...profiles]}`);
});

test('every output a README command reads from a stack (require(...)[\'mir-dev-<part>\'].Output) is an output of that stack', () => {
  const s = synth('default');
  let seen = 0;
  for (const [file, md] of docs()) {
    for (const m of md.matchAll(/\['mir-dev-([a-z]+)'\]\??\.\??([A-Za-z]+)/g)) {
      seen++;
      const [, part, output] = m;
      const outs = { ...(s.json as any)[part]?.Outputs, ...(synth('timestream').json as any)[part]?.Outputs };
      assert.ok(output in outs, `${file}: ${m[0]}: no output ${output} in mir-dev-${part}`);
    }
  }
  assert.ok(seen >= 3, `${seen} references`);
});

test('the Console section of infra/cdk/README.md adds the first operator to an operator job\'s group', () => {
  const md = read('infra/cdk/README.md');
  const section = md.slice(md.indexOf('### Console'), md.indexOf('### Connecting the first device'));
  const cmds = shBlocks(section).flatMap(commands);
  assert.ok(cmds.some((c) => /^aws cognito-idp admin-create-user .*--user-pool-id "\$pool"/.test(c)), cmds.join('\n'));
  const groups = cmds.flatMap((c) => [...c.matchAll(/--group-name (\S+)/g)].map((m) => m[1]));
  assert.ok(groups.length > 0);
  for (const g of groups) assert.ok((JOBS as readonly string[]).includes(g), `${g} is a job`);
  assert.ok(section.includes('ConsoleUrl'));
});

test('infra/cdk/README.md names the stage lock the data stack creates', () => {
  const md = read('infra/cdk/README.md');
  assert.ok(md.includes(`\`${STAGE_LOCK_NAME}\``));
  assert.equal(STAGE_LOCK_NAME, '/mir/stage-lock');
});

test('the operator roles table of infra/cdk/README.md gives each job its outputs and exactly its changing routes', () => {
  const md = read('infra/cdk/README.md');
  const section = md.slice(md.indexOf('### Operator roles'), md.indexOf('### API access logs'));
  const outputs = synth().json.api.Outputs;
  const names: Record<string, string> = { 'read-only': 'readOnly', operator: 'operator', provisioner: 'provisioner', admin: 'admin' };
  const seen = new Set<string>();
  for (const m of section.matchAll(/^\| (read-only|operator|provisioner|admin) \| `(\w+)` \| `(\w+)` \| ([^|]+) \|/gm)) {
    const job = names[m[1]] as (typeof JOBS)[number];
    seen.add(job);
    assert.ok(outputs[m[2]] && m[2].endsWith('RoleArn'), m[2]);
    assert.ok(outputs[m[3]] && m[3].endsWith('PolicyArn'), m[3]);
    const listed = [...m[4].matchAll(/`((?:POST|PUT|PATCH|DELETE) \/\S+)`/g)].map((x) => x[1]).sort();
    const changing = routesOf(job, ROUTES).filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`).sort();
    if (job === 'admin') assert.match(m[4], /every route/);
    else if (job === 'readOnly') assert.deepEqual([listed, changing], [[], []]);
    else assert.deepEqual(listed, changing, m[1]);
  }
  assert.deepEqual([...seen].sort(), [...JOBS].sort());
});

test('infra/cdk/README.md gives the numbers of Isolation under load and AWS SDK timeouts the templates have', () => {
  const md = read('infra/cdk/README.md');
  const s = synth();
  const fns = mirFunctions(s);
  const device = ROUTES.functions.filter((f) => f.rules.length > 0);
  const reserved = device.reduce((n, f) => n + fns.get(f.name)![1].Properties.ReservedConcurrentExecutions, 0);
  const load = md.slice(md.indexOf('### Isolation under load'), md.indexOf('### AWS SDK timeouts'));
  assert.ok(load.includes(`(the routes.json entries with\n  \`rules\`: ${device.map((f) => f.name).join(', ')})`), 'the device-facing functions, by name');
  assert.match(load, new RegExp(`today's ${['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][device.length]}, ${reserved} of the account's default quota of 1,000`));
  assert.match(load, new RegExp(`run on the remaining ${1000 - reserved}\\.`));
  const timeouts = md.slice(md.indexOf('### AWS SDK timeouts'));
  for (const [, [, r]] of fns) {
    const v = r.Properties.Environment.Variables;
    assert.ok(timeouts.includes(`${v.MIR_AWS_OPERATION_TIMEOUT_MS} for every function today`), v.MIR_AWS_OPERATION_TIMEOUT_MS);
    assert.ok(timeouts.includes(`at least 1 s: ${v.MIR_AWS_ATTEMPT_TIMEOUT_MS})`), v.MIR_AWS_ATTEMPT_TIMEOUT_MS);
  }
});
