import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { PARTS, resourcesOfType, Synth, synth } from './helpers';

/** The output (TwinsTable, ...) naming each table of the data stack: logical id -> output key. */
function tablesByOutput(s: Synth): Map<string, string> {
  const m = new Map<string, string>();
  for (const [key, out] of Object.entries<any>(s.json.data.Outputs ?? {})) {
    const ref = out?.Value?.Ref;
    if (!key.startsWith('ExportsOutput') && ref && s.json.data.Resources[ref]?.Type === 'AWS::DynamoDB::Table') m.set(ref, key);
  }
  return m;
}

const keySchema = (pk: string, sk: string) => [
  { AttributeName: pk, KeyType: 'HASH' },
  { AttributeName: sk, KeyType: 'RANGE' },
];

/** Retained, deletion-protected, generated name, on demand, pk/sk, TTL, PITR; gsi1 (and gsi2 on twins) as the adapters query them. */
function assertTable(id: string, t: any, output: string | undefined) {
  assert.equal(t.DeletionPolicy, 'Retain', `${id}: DeletionPolicy`);
  assert.equal(t.UpdateReplacePolicy, 'Retain', `${id}: UpdateReplacePolicy`);
  const p = t.Properties;
  assert.equal(p.TableName, undefined, `${id}: physical name must be generated`);
  assert.equal(p.BillingMode, 'PAY_PER_REQUEST', id);
  assert.deepEqual(p.KeySchema, keySchema('pk', 'sk'));
  const twins = output === 'TwinsTable';
  const types = Object.fromEntries(p.AttributeDefinitions.map((a: any) => [a.AttributeName, a.AttributeType]));
  assert.deepEqual(
    types,
    { pk: 'S', sk: 'S', gsi1pk: 'S', gsi1sk: 'S', ...(twins ? { gsi2pk: 'S', gsi2sk: 'S' } : {}) },
    id,
  );
  const indexes = Object.fromEntries(p.GlobalSecondaryIndexes.map((g: any) => [g.IndexName, g]));
  assert.deepEqual(Object.keys(indexes).sort(), twins ? ['gsi1', 'gsi2'] : ['gsi1'], id);
  assert.deepEqual(indexes.gsi1.KeySchema, keySchema('gsi1pk', 'gsi1sk'), id);
  assert.equal(indexes.gsi1.Projection.ProjectionType, twins ? 'KEYS_ONLY' : 'ALL', `${id}: gsi1 projection`);
  if (twins) {
    assert.deepEqual(indexes.gsi2.KeySchema, keySchema('gsi2pk', 'gsi2sk'), id);
    assert.deepEqual(indexes.gsi2.Projection, { ProjectionType: 'KEYS_ONLY' }, `${id}: gsi2 projection`);
  }
  assert.deepEqual(p.TimeToLiveSpecification, { AttributeName: 'expiresAt', Enabled: true }, id);
  assert.equal(p.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled, true, `${id}: PITR`);
  assert.equal(p.DeletionProtectionEnabled, true, `${id}: deletion protection`);
}

function assertTables(s: Synth, want: string[]) {
  const tables = resourcesOfType(s.json.data, 'AWS::DynamoDB::Table');
  const outputs = tablesByOutput(s);
  assert.deepEqual([...outputs.values()].sort(), [...want].sort());
  assert.equal(tables.length, want.length);
  for (const [id, t] of tables) assertTable(id, t, outputs.get(id));
}

/** Problems: Timestream resources or IAM actions anywhere in the app. */
function timestreamTraces(s: Synth): string[] {
  const found: string[] = [];
  for (const part of PARTS) {
    for (const [id, r] of Object.entries<any>(s.json[part].Resources)) {
      if (r.Type.startsWith('AWS::Timestream::')) found.push(`${part}/${id}: ${r.Type}`);
    }
    if (JSON.stringify(s.json[part]).includes('timestream:')) found.push(`${part}: timestream IAM actions`);
  }
  return found;
}

test('with no context the telemetry goes to a fifth DynamoDB table and nothing of Timestream is created', () => {
  const s = synth('default');
  assert.equal(s.stage, 'dev');
  assertTables(s, ['TwinsTable', 'SchemasTable', 'CommandsTable', 'EventsTable', 'TelemetryTable']);
  assert.equal(s.json.data.Outputs.TelemetrySink.Value, 'dynamodb');
  assert.deepEqual(timestreamTraces(s), []);
  for (const fn of resourcesOfType(s.json.functions, 'AWS::Lambda::Function')) {
    const sink = fn[1].Properties.Environment?.Variables?.MIR_TELEMETRY_SINK;
    assert.ok(sink === undefined || sink === 'dynamodb', `${fn[0]}: MIR_TELEMETRY_SINK=${sink}`);
  }
});

test('the twins table projects only keys into gsi1 and has a sparse keys-only gsi2; the other tables keep gsi1 with all attributes', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const s = synth(flavour);
    const outputs = tablesByOutput(s);
    const twins = [...outputs].find(([, o]) => o === 'TwinsTable')![0];
    const p = s.json.data.Resources[twins].Properties;
    const byName = Object.fromEntries(p.GlobalSecondaryIndexes.map((g: any) => [g.IndexName, g.Projection.ProjectionType]));
    assert.deepEqual(byName, { gsi1: 'KEYS_ONLY', gsi2: 'KEYS_ONLY' }, flavour);
    for (const [id, out] of outputs) {
      if (out === 'TwinsTable') continue;
      const gsis = s.json.data.Resources[id].Properties.GlobalSecondaryIndexes;
      assert.deepEqual(gsis.map((g: any) => [g.IndexName, g.Projection.ProjectionType]), [['gsi1', 'ALL']], `${flavour} ${out}`);
    }
  }
});

test('timestream flavour: four retained tables twins/schemas/commands/events, all with the shared key schema', () => {
  const s = synth('timestream');
  assertTables(s, ['TwinsTable', 'SchemasTable', 'CommandsTable', 'EventsTable']);
  assert.equal(s.json.data.Outputs.TelemetryTable, undefined);
  // stateful resources live in the data stack only
  for (const part of PARTS.filter((p) => p !== 'data')) {
    assert.equal(resourcesOfType(s.json[part], 'AWS::DynamoDB::Table').length, 0, part);
  }
});

test('timestream flavour: database + table, 24 h memory, 365 d magnetic, magnetic writes with an S3 rejected-data location', () => {
  const s = synth('timestream');
  const dbs = resourcesOfType(s.json.data, 'AWS::Timestream::Database');
  const tables = resourcesOfType(s.json.data, 'AWS::Timestream::Table');
  assert.equal(dbs.length, 1);
  assert.equal(tables.length, 1);
  assert.equal(dbs[0][1].DeletionPolicy, 'Retain');
  assert.equal(dbs[0][1].Properties.DatabaseName, undefined, 'generated database name');
  const [, table] = tables[0];
  assert.equal(table.DeletionPolicy, 'Retain');
  assert.deepEqual(table.Properties.DatabaseName, { Ref: dbs[0][0] });
  assert.deepEqual(table.Properties.RetentionProperties, {
    MemoryStoreRetentionPeriodInHours: '24',
    MagneticStoreRetentionPeriodInDays: '365',
  });
  const w = table.Properties.MagneticStoreWriteProperties;
  assert.equal(w.EnableMagneticStoreWrites, true);
  const bucketId = w.MagneticStoreRejectedDataLocation.S3Configuration.BucketName.Ref;
  const bucket = s.json.data.Resources[bucketId];
  assert.equal(bucket.Type, 'AWS::S3::Bucket');
  assert.equal(bucket.DeletionPolicy, 'Retain');
  assert.equal(bucket.Properties.BucketName, undefined);
  assert.ok(bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration.length > 0, 'bucket encrypted');
  assert.deepEqual(bucket.Properties.PublicAccessBlockConfiguration, {
    BlockPublicAcls: true,
    BlockPublicPolicy: true,
    IgnorePublicAcls: true,
    RestrictPublicBuckets: true,
  });
  assert.equal(s.json.data.Outputs.TelemetrySink.Value, 'timestream');
  assert.deepEqual(s.json.data.Outputs.TimestreamDatabase.Value, { Ref: dbs[0][0] });
  assert.deepEqual(s.json.data.Outputs.TimestreamTable.Value, { 'Fn::GetAtt': [tables[0][0], 'Name'] });
});

test('dynamodb flavour: a fifth table for telemetry and no Timestream resource anywhere', () => {
  const s = synth('dynamodb');
  assertTables(s, ['TwinsTable', 'SchemasTable', 'CommandsTable', 'EventsTable', 'TelemetryTable']);
  assert.equal(s.json.data.Outputs.TelemetrySink.Value, 'dynamodb');
  assert.equal(s.json.data.Outputs.TimestreamDatabase, undefined);
  assert.deepEqual(timestreamTraces(s), []);
});

test('the timestream flavour does create Timestream (the checker of the default finds it)', () => {
  assert.ok(timestreamTraces(synth('timestream')).some((t) => t.includes('AWS::Timestream::Table')));
});

test('every DynamoDB table of every flavour has deletion protection on', () => {
  for (const flavour of ['default', 'timestream', 'dynamodb', 'artifacts'] as const) {
    const s = synth(flavour);
    const tables = PARTS.flatMap((part) => resourcesOfType(s.json[part], 'AWS::DynamoDB::Table'));
    assert.ok(tables.length >= 4, flavour);
    for (const [id, t] of tables) assert.equal(t.Properties.DeletionProtectionEnabled, true, `${flavour} ${id}`);
  }
});
