import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { App } from 'aws-cdk-lib';
import { readConfig } from '../lib/config';
import { validateRoutes } from '../lib/routes';
import { REPO_ROOT, ROUTES } from './helpers';

const clone = () => JSON.parse(JSON.stringify(ROUTES));

test('the real routes.json is valid and names a crate mir-fn-<name> per function', () => {
  assert.ok(ROUTES.functions.length > 0);
  for (const f of ROUTES.functions) assert.equal(f.crate, `mir-fn-${f.name}`);
});

test('validateRoutes rejects a crate that is not mir-fn-<name>', () => {
  const bad = clone();
  bad.functions[0].crate = 'hello';
  assert.throws(() => validateRoutes(bad), /crate must be "mir-fn-/);
});

test('validateRoutes rejects a rule whose SQL reads another topic', () => {
  const bad = clone();
  const f = bad.functions.find((x: any) => x.rules.length > 0);
  f.rules[0].topicFilter = 'mir/+/other';
  assert.throws(() => validateRoutes(bad), /does not read FROM 'mir\/\+\/other'/);
});

test('validateRoutes rejects duplicate routes, bad methods, bad paths and bad access', () => {
  const dup = clone();
  const api = dup.functions.find((x: any) => x.http.length > 0);
  api.http.push({ ...api.http[0] });
  assert.throws(() => validateRoutes(dup), /duplicate route/);

  const method = clone();
  method.functions.find((x: any) => x.http.length > 0).http[0].method = 'FETCH';
  assert.throws(() => validateRoutes(method), /bad http method/);

  const p = clone();
  p.functions.find((x: any) => x.http.length > 0).http[0].path = '/v1/devices/{proxy+}';
  assert.throws(() => validateRoutes(p), /bad http path/);

  const access = clone();
  access.functions[0].access.twins = 'write';
  assert.throws(() => validateRoutes(access), /access.twins must be one of r, w, rw/);

  const unknown = clone();
  unknown.functions[0].access.secrets = 'r';
  assert.throws(() => validateRoutes(unknown), /unknown access key "secrets"/);
});

test('validateRoutes rejects a function without any trigger and duplicate names', () => {
  const none = clone();
  none.functions[0].rules = [];
  none.functions[0].schedules = [];
  none.functions[0].http = [];
  assert.throws(() => validateRoutes(none), /has no trigger/);

  const dup = clone();
  dup.functions.push({ ...dup.functions[0] });
  assert.throws(() => validateRoutes(dup), /duplicate name/);
});

test('readConfig rejects an unknown telemetry sink and a bad stage', () => {
  const sink = new App({ context: { 'mir:telemetrySink': 'influx', 'mir:repoRoot': REPO_ROOT } });
  assert.throws(() => readConfig(sink.node), /must be "timestream" or "dynamodb"/);
  const stage = new App({ context: { 'mir:stage': 'Prod_1', 'mir:repoRoot': REPO_ROOT } });
  assert.throws(() => readConfig(stage.node), /mir:stage/);
  const ttl = new App({ context: { 'mir:eventsTtlDays': '0', 'mir:repoRoot': REPO_ROOT } });
  assert.throws(() => readConfig(ttl.node), /mir:eventsTtlDays/);
});

test('readConfig defaults: stage dev, dynamodb telemetry kept 365 days, events 90 days (online/offline 7), ttl 30/7 days, RUST_LOG info', () => {
  const c = readConfig(new App({ context: { 'mir:repoRoot': REPO_ROOT } }).node);
  assert.equal(c.stage, 'dev');
  assert.equal(c.telemetrySink, 'dynamodb');
  assert.equal(c.telemetryRetentionDays, 365);
  assert.equal(c.eventRetention, 'default=90,DeviceOnline=7,DeviceOffline=7');
  assert.equal(c.eventsTtlDays, 30);
  assert.equal(c.commandsTtlDays, 7);
  assert.equal(c.rustLog, 'info');
  assert.equal(c.artifactsDir, undefined);
});
