import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { PARTS, resourcesOfType, synth } from './helpers';

function assertTable(id: string, t: any) {
  assert.equal(t.DeletionPolicy, 'Retain', `${id}: DeletionPolicy`);
  assert.equal(t.UpdateReplacePolicy, 'Retain', `${id}: UpdateReplacePolicy`);
  const p = t.Properties;
  assert.equal(p.TableName, undefined, `${id}: physical name must be generated`);
  assert.equal(p.BillingMode, 'PAY_PER_REQUEST', id);
  assert.deepEqual(p.KeySchema, [
    { AttributeName: 'pk', KeyType: 'HASH' },
    { AttributeName: 'sk', KeyType: 'RANGE' },
  ]);
  const types = Object.fromEntries(p.AttributeDefinitions.map((a: any) => [a.AttributeName, a.AttributeType]));
  assert.deepEqual(types, { pk: 'S', sk: 'S', gsi1pk: 'S', gsi1sk: 'S' }, id);
  assert.equal(p.GlobalSecondaryIndexes.length, 1, id);
  const gsi = p.GlobalSecondaryIndexes[0];
  assert.equal(gsi.IndexName, 'gsi1');
  assert.deepEqual(gsi.KeySchema, [
    { AttributeName: 'gsi1pk', KeyType: 'HASH' },
    { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
  ]);
  assert.equal(gsi.Projection.ProjectionType, 'ALL');
  assert.deepEqual(p.TimeToLiveSpecification, { AttributeName: 'expiresAt', Enabled: true }, id);
  assert.equal(p.PointInTimeRecoverySpecification?.PointInTimeRecoveryEnabled, true, `${id}: PITR`);
}

test('timestream flavour: four retained tables twins/schemas/commands/events, all with the shared key schema', () => {
  const s = synth('timestream');
  const tables = resourcesOfType(s.json.data, 'AWS::DynamoDB::Table');
  assert.equal(tables.length, 4);
  for (const [id, t] of tables) assertTable(id, t);
  for (const out of ['TwinsTable', 'SchemasTable', 'CommandsTable', 'EventsTable']) {
    const ref = s.json.data.Outputs[out]?.Value?.Ref;
    assert.ok(ref && s.json.data.Resources[ref]?.Type === 'AWS::DynamoDB::Table', `output ${out}`);
  }
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
  const tables = resourcesOfType(s.json.data, 'AWS::DynamoDB::Table');
  assert.equal(tables.length, 5);
  for (const [id, t] of tables) assertTable(id, t);
  const ref = s.json.data.Outputs.TelemetryTable?.Value?.Ref;
  assert.ok(ref && s.json.data.Resources[ref].Type === 'AWS::DynamoDB::Table', 'TelemetryTable output');
  assert.equal(s.json.data.Outputs.TelemetrySink.Value, 'dynamodb');
  assert.equal(s.json.data.Outputs.TimestreamDatabase, undefined);
  for (const part of PARTS) {
    const ts = Object.values<any>(s.json[part].Resources).filter((r) => r.Type.startsWith('AWS::Timestream::'));
    assert.equal(ts.length, 0, `${part}: Timestream resources in the dynamodb flavour`);
    assert.ok(!JSON.stringify(s.json[part]).includes('timestream:'), `${part}: timestream IAM actions in the dynamodb flavour`);
  }
});
