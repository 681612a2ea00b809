import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RustFunction } from 'cargo-lambda-cdk';
import { buildMirApp } from '../lib/app';
import { Access, StoreName } from '../lib/routes';
import { asArray, fakeArtifacts, flatten, mirFunctions, newApp, rateExpression, REPO_ROOT, resolveImport, resourcesOfType, ROUTES, Synth, synth } from './helpers';

/** The environment contract, written out independently of lib/config.ts. */
const CONTRACT = new Set([
  'MIR_TWINS_TABLE',
  'MIR_SCHEMAS_TABLE',
  'MIR_COMMANDS_TABLE',
  'MIR_EVENTS_TABLE',
  'MIR_TELEMETRY_SINK',
  'MIR_TIMESTREAM_DATABASE',
  'MIR_TIMESTREAM_TABLE',
  'MIR_TELEMETRY_TABLE',
  'MIR_IOT_DATA_ENDPOINT',
  'MIR_IOT_POLICY_NAME',
  'MIR_EVENTS_TTL_DAYS',
  'MIR_COMMANDS_TTL_DAYS',
  'MIR_TELEMETRY_RETENTION_DAYS',
  'MIR_EVENT_RETENTION',
  'MIR_EVENT_BUS_NAME',
  'MIR_AWS_OPERATION_TIMEOUT_MS',
  'MIR_AWS_ATTEMPT_TIMEOUT_MS',
  'RUST_LOG',
]);

function expectedEnv(a: Access, sink: 'timestream' | 'dynamodb'): string[] {
  const e = ['RUST_LOG', 'MIR_AWS_OPERATION_TIMEOUT_MS', 'MIR_AWS_ATTEMPT_TIMEOUT_MS'];
  if (a.twins) e.push('MIR_TWINS_TABLE');
  if (a.schemas) e.push('MIR_SCHEMAS_TABLE');
  if (a.commands) e.push('MIR_COMMANDS_TABLE', 'MIR_COMMANDS_TTL_DAYS');
  if (a.events) e.push('MIR_EVENTS_TABLE', 'MIR_EVENTS_TTL_DAYS');
  if (a.events?.includes('w')) e.push('MIR_EVENT_RETENTION');
  if (a.telemetry) {
    e.push('MIR_TELEMETRY_SINK', 'MIR_TELEMETRY_RETENTION_DAYS');
    if (sink === 'timestream') e.push('MIR_TIMESTREAM_DATABASE', 'MIR_TIMESTREAM_TABLE');
    else e.push('MIR_TELEMETRY_TABLE');
  }
  if (a.publish || a.certificates) e.push('MIR_IOT_DATA_ENDPOINT');
  if (a.certificates) e.push('MIR_IOT_POLICY_NAME');
  if (a.feed) e.push('MIR_EVENT_BUS_NAME');
  return e.sort();
}

/** All IAM statements attached to a function's role. */
function statementsOf(s: Synth, fnResource: any): any[] {
  const roleId = fnResource.Properties.Role['Fn::GetAtt'][0];
  const out: any[] = [];
  for (const [, p] of resourcesOfType(s.json.functions, 'AWS::IAM::Policy')) {
    if (p.Properties.Roles.some((r: any) => r.Ref === roleId)) out.push(...p.Properties.PolicyDocument.Statement);
  }
  return out;
}

function actionsOf(st: any): string[] {
  return asArray<string>(st.Action);
}

/** Export names (cross-stack imports) found anywhere inside a value. */
function importsIn(v: any): any[] {
  if (v === null || typeof v !== 'object') return [];
  if ('Fn::ImportValue' in v) return [v];
  return Object.values(v).flatMap(importsIn);
}

/** data-stack logical id -> store name, read from the data stack's outputs. */
function tableIds(s: Synth): Map<string, string> {
  const m = new Map<string, string>();
  const names: Record<string, string> = {
    TwinsTable: 'twins',
    SchemasTable: 'schemas',
    CommandsTable: 'commands',
    EventsTable: 'events',
    TelemetryTable: 'telemetry',
  };
  for (const [out, store] of Object.entries(names)) {
    const ref = s.json.data.Outputs?.[out]?.Value?.Ref;
    if (ref) m.set(ref, store);
  }
  return m;
}

/** store -> {read, write} as granted to a function by its IAM statements. */
/** The stream actions CDK grants a function its DynamoDB stream trigger needs. */
const STREAM_READ = ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'];

/** The tables whose streams a function may read, from its stream-only statements. */
function streamAccess(s: Synth, fnResource: any): string[] {
  const ids = tableIds(s);
  const out: string[] = [];
  for (const st of statementsOf(s, fnResource)) {
    const acts = actionsOf(st);
    for (const imp of importsIn(st.Resource)) {
      const target = resolveImport(s, imp);
      if (target?.['Fn::GetAtt']?.[1] !== 'StreamArn') continue;
      assert.deepEqual([...acts].sort(), STREAM_READ, 'only stream reads on a stream');
      out.push(ids.get(target['Fn::GetAtt'][0])!);
    }
  }
  return out.sort();
}

function dynamoAccess(s: Synth, fnResource: any): Map<string, { read: boolean; write: boolean }> {
  const ids = tableIds(s);
  const access = new Map<string, { read: boolean; write: boolean }>();
  for (const st of statementsOf(s, fnResource)) {
    const acts = actionsOf(st);
    if (!acts.some((a) => a.startsWith('dynamodb:'))) continue;
    for (const imp of importsIn(st.Resource)) {
      const target = resolveImport(s, imp);
      // A stream trigger's reads (streamAccess) are not table access.
      if (target?.['Fn::GetAtt']?.[1] === 'StreamArn') continue;
      const id = target?.['Fn::GetAtt']?.[0];
      const store = ids.get(id);
      assert.ok(store, `dynamodb grant on unknown resource ${JSON.stringify(target)}`);
      const cur = access.get(store) ?? { read: false, write: false };
      if (acts.includes('dynamodb:GetItem') || acts.includes('dynamodb:Query')) cur.read = true;
      if (acts.includes('dynamodb:PutItem') || acts.includes('dynamodb:UpdateItem')) cur.write = true;
      access.set(store, cur);
    }
  }
  return access;
}

for (const flavour of ['default', 'timestream', 'artifacts'] as const) {
  describe(`functions (${flavour})`, () => {
    const sink = flavour === 'default' ? 'dynamodb' : 'timestream';

    test('every routes.json function has one arm64 provided.al2023 Lambda with our defaults', () => {
      const s = synth(flavour);
      const fns = mirFunctions(s);
      for (const f of ROUTES.functions) {
        const entry = fns.get(f.name);
        assert.ok(entry, `no Lambda for ${f.name}`);
        const p = entry[1].Properties;
        assert.deepEqual(p.Architectures, ['arm64'], f.name);
        assert.equal(p.Runtime, 'provided.al2023', f.name);
        assert.equal(p.Handler, 'bootstrap', f.name);
        assert.equal(p.MemorySize, 256, f.name);
        assert.equal(p.Timeout, f.http.length > 0 ? 29 : 30, f.name);
        // Reserved concurrency: 20 for each device-facing function, 100 for telemetry, none for the API.
        assert.equal(p.ReservedConcurrentExecutions, f.rules.length === 0 ? undefined : f.name === 'telemetry' ? 100 : 20, f.name);
        const logGroupId = p.LoggingConfig?.LogGroup?.Ref;
        assert.ok(logGroupId, `${f.name}: no log group`);
        assert.equal(s.json.functions.Resources[logGroupId].Properties.RetentionInDays, 30, f.name);
      }
    });

    test('each function gets exactly the environment variables its access needs', () => {
      const s = synth(flavour);
      for (const f of ROUTES.functions) {
        const vars = mirFunctions(s).get(f.name)![1].Properties.Environment.Variables;
        const names = Object.keys(vars).sort();
        for (const n of names) assert.ok(CONTRACT.has(n), `${f.name}: ${n} is not in the env contract`);
        assert.deepEqual(names, expectedEnv(f.access, sink), f.name);
        if (vars.MIR_TELEMETRY_SINK) assert.equal(vars.MIR_TELEMETRY_SINK, sink);
        if (vars.MIR_EVENTS_TTL_DAYS) assert.equal(vars.MIR_EVENTS_TTL_DAYS, '30');
        if (vars.MIR_COMMANDS_TTL_DAYS) assert.equal(vars.MIR_COMMANDS_TTL_DAYS, '7');
        if (vars.MIR_TELEMETRY_RETENTION_DAYS) assert.equal(vars.MIR_TELEMETRY_RETENTION_DAYS, '365');
        if (vars.MIR_EVENT_RETENTION) assert.equal(vars.MIR_EVENT_RETENTION, 'default=90,DeviceOnline=7,DeviceOffline=7');
        if (vars.MIR_IOT_POLICY_NAME) assert.equal(vars.MIR_IOT_POLICY_NAME, `mir-${s.stage}-device`);
      }
    });

    test('every function gets AWS SDK timeouts below its own: operation = timeout - 1 s (at most 10 s), attempt = a third (at least 1 s)', () => {
      const s = synth(flavour);
      for (const [name, [, r]] of mirFunctions(s)) {
        const p = r.Properties;
        const vars = p.Environment.Variables;
        const operation = Number(vars.MIR_AWS_OPERATION_TIMEOUT_MS);
        const attempt = Number(vars.MIR_AWS_ATTEMPT_TIMEOUT_MS);
        assert.ok(Number.isInteger(operation) && Number.isInteger(attempt), `${name}: ${JSON.stringify(vars)}`);
        assert.ok(operation < p.Timeout * 1000, `${name}: operation timeout ${operation} ms is not below the function timeout ${p.Timeout} s`);
        assert.ok(attempt <= operation && attempt >= 1000, `${name}: attempt timeout ${attempt} ms`);
        assert.equal(operation, Math.min(p.Timeout * 1000 - 1000, 10000), name);
        assert.equal(attempt, Math.max(Math.floor(operation / 3), 1000), name);
      }
    });

    test('the certificates function gets each IoT control-plane action on its narrowest resource, and no policy but the device policy', () => {
      const s = synth(flavour);
      const policy = `policy/mir-${s.stage}-device`;
      for (const f of ROUTES.functions.filter((x) => x.access.certificates)) {
        const sts = statementsOf(s, mirFunctions(s).get(f.name)![1]);
        const granted = new Map<string, string[]>();
        for (const st of sts.filter((x) => x.Effect === 'Allow')) {
          for (const a of actionsOf(st).filter((x) => x.startsWith('iot:') && x !== 'iot:Publish')) {
            const rs = asArray(st.Resource).map(flatten).map((r) => (r === '*' ? '*' : r.replace(/^arn:[^:]+:iot:<token>:<token>:/, '')));
            granted.set(a, [...(granted.get(a) ?? []), ...rs].sort());
          }
        }
        assert.deepEqual(Object.fromEntries(granted), {
          'iot:CreateThing': ['thing/*'],
          'iot:DescribeThing': ['thing/*'],
          'iot:UpdateThing': ['thing/*'],
          'iot:DeleteThing': ['thing/*'],
          'iot:ListThingPrincipals': ['thing/*'],
          'iot:DescribeCertificate': ['cert/*'],
          'iot:UpdateCertificate': ['cert/*'],
          'iot:DeleteCertificate': ['cert/*'],
          'iot:AttachThingPrincipal': ['cert/*', 'thing/*'],
          'iot:DetachThingPrincipal': ['cert/*', 'thing/*'],
          'iot:AttachPolicy': ['cert/*', policy].sort(),
          'iot:DetachPolicy': ['cert/*', policy].sort(),
          'iot:GetPolicy': [policy],
          'iot:CreateCertificateFromCsr': ['*'],
          'iot:CreateKeysAndCertificate': ['*'],
        }, f.name);
        const deny = sts.filter((x) => x.Effect === 'Deny');
        assert.equal(deny.length, 1, `${f.name}: one Deny`);
        assert.deepEqual(actionsOf(deny[0]).sort(), ['iot:AttachPolicy', 'iot:AttachPrincipalPolicy']);
        assert.equal(deny[0].Resource, undefined);
        assert.deepEqual(
          asArray(deny[0].NotResource).map(flatten).map((r) => r.replace(/^arn:[^:]+:iot:<token>:<token>:/, '')).sort(),
          ['cert/*', policy].sort(),
          'anything but a certificate or the device policy is denied',
        );
      }
    });

    test('every function retries async events at most twice, then sends them to an encrypted queue', () => {
      const s = synth(flavour);
      const configs = resourcesOfType(s.json.functions, 'AWS::Lambda::EventInvokeConfig');
      for (const [name, [id]] of mirFunctions(s)) {
        const cfg = configs.find(([, c]) => c.Properties.FunctionName?.Ref === id);
        assert.ok(cfg, `${name}: no EventInvokeConfig`);
        const p = cfg[1].Properties;
        assert.ok(p.MaximumRetryAttempts <= 2, `${name}: ${p.MaximumRetryAttempts} retries`);
        assert.equal(p.MaximumEventAgeInSeconds, 3600);
        const dest = p.DestinationConfig?.OnFailure?.Destination?.['Fn::GetAtt']?.[0];
        assert.ok(dest, `${name}: no on-failure destination`);
        const queue = s.json.functions.Resources[dest];
        assert.equal(queue.Type, 'AWS::SQS::Queue');
        assert.ok(queue.Properties.SqsManagedSseEnabled === true || queue.Properties.KmsMasterKeyId, `${name}: DLQ not encrypted`);
      }
    });

    test('a function reads the stream of the tables its streams name, and no other stream', () => {
      const s = synth(flavour);
      for (const f of ROUTES.functions) {
        const want = (f.streams ?? []).map((st) => st.table).sort();
        assert.deepEqual(streamAccess(s, mirFunctions(s).get(f.name)![1]), want, f.name);
      }
    });

    test('DynamoDB grants follow access: r reads only, w writes only, rw both, nothing else', () => {
      const s = synth(flavour);
      for (const f of ROUTES.functions) {
        const got = dynamoAccess(s, mirFunctions(s).get(f.name)![1]);
        const stores: StoreName[] = ['twins', 'schemas', 'commands', 'events', ...(sink === 'dynamodb' ? (['telemetry'] as const) : [])];
        for (const store of stores) {
          const want = f.access[store];
          const g = got.get(store);
          if (!want) {
            assert.equal(g, undefined, `${f.name}: unexpected grant on ${store}`);
            continue;
          }
          assert.ok(g, `${f.name}: no grant on ${store}`);
          assert.equal(g.read, want.includes('r'), `${f.name}: read on ${store}`);
          assert.equal(g.write, want.includes('w'), `${f.name}: write on ${store}`);
        }
      }
    });

    test('telemetry store permissions match the sink', () => {
      const s = synth(flavour);
      for (const f of ROUTES.functions) {
        const sts = statementsOf(s, mirFunctions(s).get(f.name)![1]);
        const ts = sts.filter((st) => actionsOf(st).some((a) => a.startsWith('timestream:')));
        const acts = ts.flatMap(actionsOf);
        if (sink === 'dynamodb' || !f.access.telemetry) {
          assert.deepEqual(acts, [], `${f.name}: unexpected timestream actions`);
          continue;
        }
        assert.equal(acts.includes('timestream:WriteRecords'), f.access.telemetry.includes('w'), f.name);
        assert.equal(acts.includes('timestream:Select'), f.access.telemetry.includes('r'), f.name);
        for (const st of ts) {
          if (actionsOf(st).includes('timestream:DescribeEndpoints')) {
            assert.deepEqual(actionsOf(st), ['timestream:DescribeEndpoints'], 'DescribeEndpoints stands alone on *');
            assert.equal(st.Resource, '*');
          } else {
            assert.notEqual(st.Resource, '*', `${f.name}: timestream data actions must be scoped to the table`);
          }
        }
      }
    });

    test('publish grants exactly the topics routes.json lists; certificates grants only to functions that ask', () => {
      const s = synth(flavour);
      for (const f of ROUTES.functions) {
        const sts = statementsOf(s, mirFunctions(s).get(f.name)![1]);
        const publish = sts.filter((st) => actionsOf(st).includes('iot:Publish'));
        if (!f.access.publish) {
          assert.equal(publish.length, 0, `${f.name}: unexpected iot:Publish`);
        } else {
          const resources = publish.flatMap((st) => asArray(st.Resource).map(flatten)).map((r) => r.replace(/^.*:topic\//, 'topic/'));
          assert.deepEqual(resources.sort(), f.access.publish.map((t) => `topic/mir/*/${t}`).sort(), f.name);
        }
        const control = sts.flatMap(actionsOf).filter((a) => a.startsWith('iot:') && a !== 'iot:Publish');
        if (!f.access.certificates) {
          assert.deepEqual(control, [], `${f.name}: unexpected IoT control-plane actions`);
        } else {
          for (const a of [
            'iot:CreateThing',
            'iot:DescribeThing',
            'iot:DeleteThing',
            'iot:CreateCertificateFromCsr',
            'iot:CreateKeysAndCertificate',
            'iot:UpdateCertificate',
            'iot:DeleteCertificate',
            'iot:AttachPolicy',
            'iot:DetachPolicy',
            'iot:AttachThingPrincipal',
            'iot:DetachThingPrincipal',
          ]) {
            assert.ok(control.includes(a), `${f.name}: missing ${a}`);
          }
        }
      }
    });

    test('one EventBridge schedule per routes.json schedule, targeting its function', () => {
      const s = synth(flavour);
      const rules = resourcesOfType(s.json.functions, 'AWS::Events::Rule');
      const expected = ROUTES.functions.flatMap((f) => f.schedules.map((sc) => ({ name: f.name, rate: sc.rateMinutes })));
      assert.equal(rules.length, expected.length);
      const fns = mirFunctions(s);
      for (const e of expected) {
        const id = fns.get(e.name)![0];
        const expression = rateExpression(e.rate);
        const hit = rules.find(
          ([, r]) =>
            r.Properties.ScheduleExpression === expression &&
            r.Properties.Targets.some((t: any) => t.Arn?.['Fn::GetAtt']?.[0] === id),
        );
        assert.ok(hit, `no ${expression} schedule for ${e.name}`);
        assert.equal(hit[1].Properties.State, 'ENABLED');
      }
    });
  });
}

test('default synth builds with cargo-lambda-cdk RustFunction from the workspace; mir:artifacts uses prebuilt bootstraps', () => {
  const rust = synth('default');
  const prebuilt = synth('artifacts');
  for (const f of ROUTES.functions) {
    assert.ok(rust.mir.functions.functions.get(f.name) instanceof RustFunction, f.name);
    assert.ok(!(prebuilt.mir.functions.functions.get(f.name) instanceof RustFunction), f.name);
  }
  const assetSource = (s: Synth, fn: any) => {
    const key: string = fn.Properties.Code.S3Key;
    return s.assets.functions.get(key.replace(/\.zip$/, ''));
  };
  for (const [name, [, r]] of mirFunctions(rust)) {
    // bundling is skipped in tests: the asset still points at the workspace root (Cargo.toml)
    assert.equal(assetSource(rust, r), REPO_ROOT, name);
  }
  const hashes = new Set<string>();
  for (const [name, [, r]] of mirFunctions(prebuilt)) {
    const src = assetSource(prebuilt, r);
    assert.match(src ?? '', /^asset\.[0-9a-f]+$/, `${name}: staged copy of the prebuilt dir`);
    hashes.add(r.Properties.Code.S3Key);
  }
  assert.equal(hashes.size, ROUTES.functions.length, 'one distinct asset per function');
});

test('a missing prebuilt artifact fails the synth with a clear message', () => {
  const dir = fakeArtifacts();
  const victim = ROUTES.functions[ROUTES.functions.length - 1].crate;
  fs.rmSync(path.join(dir, victim), { recursive: true });
  const app = newApp({ 'mir:artifacts': dir, 'mir:stage': 'missing' });
  assert.throws(() => buildMirApp(app), new RegExp(`prebuilt artifact missing: .*${victim}/bootstrap`));
});
