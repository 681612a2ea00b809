// Isolation under load: reserved concurrency of the device-facing functions and API
// throttling, their defaults and their context settings.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { buildMirApp } from '../lib/app';
import { mirFunctions, newApp, resourcesOfType, ROUTES, synth, synthApp } from './helpers';

const deviceFacing = ROUTES.functions.filter((f) => f.rules.length > 0).map((f) => f.name);

test('by default each device-facing function reserves 20 executions (telemetry 100), the API functions none, leaving most of a 1,000 account', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const s = synth(flavour);
    let reserved = 0;
    for (const f of ROUTES.functions) {
      const p = mirFunctions(s).get(f.name)![1].Properties;
      if (f.rules.length === 0) {
        assert.equal(p.ReservedConcurrentExecutions, undefined, `${flavour} ${f.name}: an API function runs on the unreserved pool`);
        continue;
      }
      assert.equal(p.ReservedConcurrentExecutions, f.name === 'telemetry' ? 100 : 20, `${flavour} ${f.name}`);
      reserved += p.ReservedConcurrentExecutions;
    }
    assert.ok(deviceFacing.length >= 6, 'the device routes');
    // README (Isolation under load): 220 of 1,000, the API functions on the other 780.
    assert.equal(reserved, (deviceFacing.length - 1) * 20 + 100, `${flavour}: ${reserved} reserved`);
    assert.ok(reserved <= 300, `${reserved} reserved: at least 700 of a default account of 1,000 stay for the API`);
  }
});

test('mir:deviceConcurrency sets each device-facing function, default for the others, none for no reservation', () => {
  const s = synthApp(newApp({ 'mir:stage': 'tconc', 'mir:deviceConcurrency': 'default=5, telemetry=none, heartbeat=50' }));
  for (const f of ROUTES.functions) {
    const p = mirFunctions(s).get(f.name)![1].Properties;
    const want = f.rules.length === 0 || f.name === 'telemetry' ? undefined : f.name === 'heartbeat' ? 50 : 5;
    assert.equal(p.ReservedConcurrentExecutions, want, f.name);
  }
  // default=none reserves nothing (accounts with a small concurrency quota).
  const none = synthApp(newApp({ 'mir:stage': 'tnone', 'mir:deviceConcurrency': 'default=none' }));
  for (const [name, [, r]] of mirFunctions(none)) assert.equal(r.Properties.ReservedConcurrentExecutions, undefined, name);
});

test('a malformed mir:deviceConcurrency fails the synth naming what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['telemetry=10', /default=<executions> is required/],
    ['default=0', /default: a whole number from 1 to 1000, or none/],
    ['default=1001', /default: a whole number from 1 to 1000, or none/],
    ['default=2.5', /default: a whole number/],
    ['default=10,api-devices=5', /"api-devices" is neither default nor a device-facing function/],
    ['default=10,telemetry=1,telemetry=2', /telemetry is given twice/],
    ['default', /"default" is not name=value/],
  ];
  for (const [bad, why] of cases) {
    const app = newApp({ 'mir:stage': 'tbad', 'mir:deviceConcurrency': bad });
    assert.throws(() => buildMirApp(app), (e: Error) => {
      assert.match(e.message, /^context mir:deviceConcurrency must look like "default=20,telemetry=100" \(/);
      assert.match(e.message, why, bad);
      return true;
    });
  }
});

test('the API stage throttles every route: 50 requests/s, burst 100 by default', () => {
  const s = synth();
  const [[, stage]] = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage');
  assert.deepEqual(stage.Properties.DefaultRouteSettings, { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 });
  assert.equal(stage.Properties.RouteSettings, undefined, 'no route escapes the default');
});

test('mir:apiThrottleRateLimit and mir:apiThrottleBurstLimit set the throttling, and bad values fail the synth', () => {
  const s = synthApp(newApp({ 'mir:stage': 'tthrottle', 'mir:apiThrottleRateLimit': '5', 'mir:apiThrottleBurstLimit': 7 }));
  const [[, stage]] = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage');
  assert.deepEqual(stage.Properties.DefaultRouteSettings, { ThrottlingRateLimit: 5, ThrottlingBurstLimit: 7 });
  for (const [key, bad] of [
    ['mir:apiThrottleRateLimit', '0'],
    ['mir:apiThrottleRateLimit', '10001'],
    ['mir:apiThrottleBurstLimit', '5001'],
    ['mir:apiThrottleBurstLimit', 'lots'],
    ['mir:apiThrottleRateLimit', 1.5],
  ] as const) {
    assert.throws(() => buildMirApp(newApp({ 'mir:stage': 'tbad', [key]: bad })), new RegExp(`context ${key} must be a whole number from 1 to `), `${key}=${bad}`);
  }
});
