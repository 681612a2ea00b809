// Retention settings: context -> Timestream's magnetic store and the functions' environment,
// and the errors a bad value gives.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { buildMirApp } from '../lib/app';
import { mirFunctions, newApp, resourcesOfType, ROUTES, synthApp } from './helpers';

test('mir:telemetryRetentionDays sets the Timestream magnetic retention and MIR_TELEMETRY_RETENTION_DAYS of the telemetry functions', () => {
  // CLI context values are strings: `-c mir:telemetryRetentionDays=30`.
  const s = synthApp(
    newApp({
      'mir:stage': 'tretention',
      'mir:telemetrySink': 'timestream',
      'mir:telemetryRetentionDays': '30',
      'mir:eventRetention': 'default=30, DeviceOnline=1',
    }),
  );
  const [[, table]] = resourcesOfType(s.json.data, 'AWS::Timestream::Table');
  assert.equal(table.Properties.RetentionProperties.MagneticStoreRetentionPeriodInDays, '30');
  assert.equal(table.Properties.RetentionProperties.MemoryStoreRetentionPeriodInHours, '24');
  const fns = mirFunctions(s);
  const telemetryFns = ROUTES.functions.filter((f) => f.access.telemetry).map((f) => f.name);
  assert.ok(telemetryFns.length >= 2, 'the writer and the reader');
  assert.ok(ROUTES.functions.some((f) => !f.access.events?.includes('w')), 'a function that writes no events, which must not get MIR_EVENT_RETENTION');
  for (const f of ROUTES.functions) {
    const vars = fns.get(f.name)![1].Properties.Environment.Variables;
    assert.equal(vars.MIR_TELEMETRY_RETENTION_DAYS, f.access.telemetry ? '30' : undefined, f.name);
    // Written without the space the context had.
    assert.equal(vars.MIR_EVENT_RETENTION, f.access.events?.includes('w') ? 'default=30,DeviceOnline=1' : undefined, f.name);
  }
});

test('a telemetry retention that is not a whole number of days from 1 to 36500 fails the synth and says so', () => {
  for (const bad of ['0', '36501', '1.5', 'a year', '-1', '1e3', 0, 2.5, true]) {
    const app = newApp({ 'mir:stage': 'tbad', 'mir:telemetryRetentionDays': bad });
    assert.throws(
      () => buildMirApp(app),
      /context mir:telemetryRetentionDays must be a whole number of days from 1 to 36500, got /,
      `accepted ${JSON.stringify(bad)}`,
    );
  }
  for (const good of ['1', '36500', 7, ' 90 ']) {
    const app = newApp({ 'mir:stage': 'tgood', 'mir:telemetryRetentionDays': good });
    assert.equal(buildMirApp(app).config.telemetryRetentionDays, Number(String(good).trim()), `rejected ${JSON.stringify(good)}`);
  }
});

test('a malformed event retention fails the synth naming what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['DeviceOnline=7', /default=<days> is required/],
    ['default=90,default=7', /default is given twice/],
    ['default=0', /default: days must be a whole number from 1 to 36500/],
    ['default=90,DeviceOnline=36501', /DeviceOnline: days must be a whole number/],
    ['default', /"default" is not kind=days/],
    ['default=90,,DeviceOnline=7', /"" is not kind=days/],
    ['default=90,device-online=7', /"device-online" is neither default nor a PascalCase event kind/],
    ['default=9=0', /is not kind=days/],
  ];
  for (const [bad, why] of cases) {
    const app = newApp({ 'mir:stage': 'tbad', 'mir:eventRetention': bad });
    assert.throws(() => buildMirApp(app), (e: Error) => {
      assert.match(e.message, /^context mir:eventRetention must look like "default=90,DeviceOnline=7,DeviceOffline=7" \(/);
      assert.match(e.message, why, bad);
      return true;
    });
  }
});
