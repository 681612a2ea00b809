// routes.json and the synthesized templates must agree, both ways: nothing missing,
// nothing extra; and the table names of the Rust adapters agree with the tables.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KEYS } from '../lib/data-stack';
import { functionNameOfArn, mirFunctions, PARTS, rateExpression, REPO_ROOT, resourcesOfType, ROUTES, synth } from './helpers';

const sorted = (xs: string[]) => [...xs].sort();

for (const flavour of ['default', 'timestream'] as const) {
  test(`${flavour}: functions in the template == functions in routes.json`, () => {
    const s = synth(flavour);
    assert.deepEqual(sorted([...mirFunctions(s).keys()]), sorted(ROUTES.functions.map((f) => f.name)));
    // The only other Lambda is the AwsCustomResource provider (IoT endpoint lookup).
    const all = resourcesOfType(s.json.functions, 'AWS::Lambda::Function');
    assert.equal(all.length, ROUTES.functions.length + 1);
    for (const part of PARTS.filter((p) => p !== 'functions' && p !== 'console')) {
      assert.equal(resourcesOfType(s.json[part], 'AWS::Lambda::Function').length, 0, `${part} holds no function`);
    }
    // The console stack: CDK's BucketDeployment handler alone, which uploads the console.
    const uploaders = resourcesOfType(s.json.console, 'AWS::Lambda::Function');
    assert.equal(uploaders.length, 1);
    assert.match(uploaders[0][0], /^CustomCDKBucketDeployment/);
  });

  test(`${flavour}: topic rules in the template == rules in routes.json (SQL and target)`, () => {
    const s = synth(flavour);
    const inTemplate = resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule').map(
      ([, r]) => `${functionNameOfArn(s, r.Properties.TopicRulePayload.Actions[0].Lambda.FunctionArn)} ${r.Properties.TopicRulePayload.Sql}`,
    );
    const inRoutes = ROUTES.functions.flatMap((f) => f.rules.map((r) => `${f.name} ${r.sql}`));
    assert.deepEqual(sorted(inTemplate), sorted(inRoutes));
    for (const part of PARTS.filter((p) => p !== 'iot')) {
      assert.equal(resourcesOfType(s.json[part], 'AWS::IoT::TopicRule').length, 0, part);
    }
  });

  test(`${flavour}: HTTP routes in the template == http entries in routes.json (key and target)`, () => {
    const s = synth(flavour);
    const inTemplate = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Route').map(([, r]) => {
      const integrationId = r.Properties.Target['Fn::Join'][1][1].Ref;
      const uri = s.json.api.Resources[integrationId].Properties.IntegrationUri;
      return `${functionNameOfArn(s, uri)} ${r.Properties.RouteKey}`;
    });
    const inRoutes = ROUTES.functions.flatMap((f) => f.http.map((h) => `${f.name} ${h.method} ${h.path}`));
    assert.deepEqual(sorted(inTemplate), sorted(inRoutes));
  });

  test(`${flavour}: schedules in the template == schedules in routes.json`, () => {
    const s = synth(flavour);
    const ids = new Map([...mirFunctions(s)].map(([name, [id]]) => [id, name]));
    const inTemplate = resourcesOfType(s.json.functions, 'AWS::Events::Rule').flatMap(([, r]) =>
      r.Properties.Targets.map((t: any) => `${ids.get(t.Arn['Fn::GetAtt'][0])} ${r.Properties.ScheduleExpression}`),
    );
    const inRoutes = ROUTES.functions.flatMap((f) =>
      f.schedules.map((sc) => `${f.name} ${rateExpression(sc.rateMinutes)}`),
    );
    assert.deepEqual(sorted(inTemplate), sorted(inRoutes));
  });

  test(`${flavour}: the outputs mir ctx import reads exist, without export names`, () => {
    const s = synth(flavour);
    const outputs: Record<string, any> = {};
    for (const part of PARTS) {
      for (const [k, v] of Object.entries<any>(s.json[part].Outputs ?? {})) {
        if (k.startsWith('ExportsOutput')) continue; // CDK's own cross-stack references
        assert.equal(outputs[k], undefined, `output ${k} defined twice`);
        assert.equal(v.Export, undefined, `output ${k} must not be exported`);
        outputs[k] = v;
      }
    }
    const want = ['ApiUrl', 'Region', 'IotDataEndpoint', 'TwinsTable', 'SchemasTable', 'CommandsTable', 'EventsTable', 'TelemetrySink', 'DevicePolicyName'];
    want.push(...(s.sink === 'timestream' ? ['TimestreamDatabase', 'TimestreamTable', 'TelemetryRejectedDataBucket'] : ['TelemetryTable']));
    // For operators, not for `mir ctx import`: where alarms go, what to redrive, the access
    // logs, the dashboard, and the role (or managed policy) of each operator job.
    want.push('AlarmTopicArn', 'FailureQueueUrl', 'ApiAccessLogGroup', 'DashboardUrl');
    // The event feed, for the rules of modules (module-sdk's construct).
    want.push('EventBusName', 'EventBusArn');
    // The console (mir ctx import records ConsoleUrl; mir tlm list links to it) and its operators.
    want.push('ConsoleUrl', 'OperatorsUserPoolId', 'ConsoleBucket');
    for (const job of ['ReadOnly', 'Operator', 'Provisioner', 'Admin']) want.push(`${job}RoleArn`, `${job}PolicyArn`);
    assert.deepEqual(sorted(Object.keys(outputs)), sorted(want));
  });
}

test('stack names carry the mir:stage prefix', () => {
  const s = synth('dynamodb');
  assert.deepEqual(
    [s.mir.data, s.mir.functions, s.mir.iot, s.mir.api, s.mir.console].map((x) => x.stackName),
    PARTS.map((p) => `mir-${s.stage}-${p}`),
  );
});

/** `pub const GSI1: &str = "gsi1";` and the like, from the Rust DynamoDB adapters. */
function rustConsts(): Record<string, string> {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'shared/src/adapters/dynamodb/mod.rs'), 'utf8');
  return Object.fromEntries([...src.matchAll(/pub const (GSI\d+): &str = "([^"]+)";/g)].map((m) => [m[1], m[2]]));
}

/** Index name constant -> [hash, range] attribute names of the contract table (create.rs). */
function rustContractIndexes(): Record<string, [string, string]> {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'shared/src/adapters/dynamodb/create.rs'), 'utf8');
  const re = /\.index_name\((GSI\d+)\)\s*\.key_schema\(key\("(\w+)", KeyType::Hash\)\?\)\s*\.key_schema\(key\("(\w+)", KeyType::Range\)\?\)/g;
  return Object.fromEntries([...src.matchAll(re)].map((m) => [m[1], [m[2], m[3]]]));
}

test('index and key names agree between the Rust adapters (GSI1, GSI2, create.rs) and the tables of the template', () => {
  const consts: Record<string, string> = rustConsts();
  assert.deepEqual({ ...consts }, { GSI1: KEYS.gsi, GSI2: KEYS.gsi2 });
  const contract: Record<string, [string, string]> = rustContractIndexes();
  assert.deepEqual({ ...contract }, { GSI1: [KEYS.gsiPk, KEYS.gsiSk], GSI2: [KEYS.gsi2Pk, KEYS.gsi2Sk] });
  const s = synth();
  for (const [id, t] of resourcesOfType(s.json.data, 'AWS::DynamoDB::Table')) {
    for (const g of t.Properties.GlobalSecondaryIndexes) {
      const name: string | undefined = Object.keys(consts).find((k) => consts[k] === g.IndexName);
      assert.ok(name, `${id}: index ${g.IndexName} has no Rust constant`);
      assert.deepEqual(
        g.KeySchema.map((k: any) => k.AttributeName),
        contract[name],
        `${id}: ${g.IndexName} keys differ from create.rs`,
      );
    }
  }
  // The contract table has every index any deployed table has, so the Rust tests on moto
  // query the same index names.
  const twins = s.json.data.Resources[s.json.data.Outputs.TwinsTable.Value.Ref];
  assert.deepEqual(twins.Properties.GlobalSecondaryIndexes.map((g: any) => g.IndexName).sort(), Object.values(consts).sort());
});
