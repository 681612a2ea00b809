// The event feed on AWS (lib/feed.ts, the events table's stream, the event-feed function),
// on the synthesized templates.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { EVENT_SOURCE, TELEMETRY_DETAIL_TYPE } from '../lib/feed';
import { asArray, mirFunctions, newApp, PARTS, resolveImport, resourcesOfType, ROUTES, synth, Synth, synthApp } from './helpers';

const s = synth();

function busLogicalId(): string {
  const buses = resourcesOfType(s.json.data, 'AWS::Events::EventBus');
  assert.equal(buses.length, 1, 'one event bus, in the data stack');
  return buses[0][0];
}

test('the data stack has one event bus with a generated name and an archive of the platform events', () => {
  const [[, bus]] = resourcesOfType(s.json.data, 'AWS::Events::EventBus');
  // CloudFormation requires Name; the CDK generates it from the construct path.
  assert.match(String(bus.Properties.Name), /EventFeed/);
  const archives = resourcesOfType(s.json.data, 'AWS::Events::Archive');
  assert.equal(archives.length, 1);
  const [, archive] = archives[0];
  // The platform's events; telemetry points (with the telemetry feed on) are not archived.
  assert.deepEqual(archive.Properties.EventPattern, { source: [EVENT_SOURCE], 'detail-type': [{ 'anything-but': TELEMETRY_DETAIL_TYPE }] });
  assert.equal(archive.Properties.RetentionDays, 7);
  for (const out of ['EventBusName', 'EventBusArn']) assert.ok(s.json.data.Outputs?.[out], `output ${out}`);
});

test('the events table streams its new images', () => {
  const tables = resourcesOfType(s.json.data, 'AWS::DynamoDB::Table');
  const events = tables.filter(([id]) => id.startsWith('Events'));
  assert.equal(events.length, 1);
  assert.deepEqual(events[0][1].Properties.StreamSpecification, { StreamViewType: 'NEW_IMAGE' });
  for (const [id, t] of tables.filter(([i]) => !i.startsWith('Events'))) {
    assert.equal(t.Properties.StreamSpecification, undefined, `${id} has no stream`);
  }
});

test('each stream function reads the events stream with item failures, retries, the failure queue and a filter on new events', () => {
  const streamFns = ROUTES.functions.filter((f) => (f.streams ?? []).length > 0);
  assert.deepEqual(
    streamFns.map((f) => f.name),
    ['event-feed'],
  );
  const fns = mirFunctions(s);
  const mappings = resourcesOfType(s.json.functions, 'AWS::Lambda::EventSourceMapping');
  assert.equal(mappings.length, 1);
  const [, m] = mappings[0];
  const [fnId] = fns.get('event-feed')!;
  assert.equal(m.Properties.FunctionName.Ref, fnId);
  assert.match(JSON.stringify(resolveImport(s, m.Properties.EventSourceArn)), /Events.*StreamArn/);
  assert.deepEqual(m.Properties.FunctionResponseTypes, ['ReportBatchItemFailures']);
  assert.equal(m.Properties.StartingPosition, 'TRIM_HORIZON');
  assert.equal(m.Properties.MaximumRetryAttempts, 10);
  assert.equal(m.Properties.MaximumRecordAgeInSeconds, 86400);
  const dlq = m.Properties.DestinationConfig.OnFailure.Destination;
  assert.equal(dlq['Fn::GetAtt'][0], resourcesOfType(s.json.functions, 'AWS::SQS::Queue').find(([id]) => id.startsWith('FailedInvocations'))![0]);
  const patterns = m.Properties.FilterCriteria.Filters.map((f: any) => JSON.parse(f.Pattern));
  assert.deepEqual(patterns, [{ eventName: ['INSERT'], dynamodb: { NewImage: { pk: { S: [{ prefix: 'DAY#' }] } } } }]);
});

/** The functions whose role may put events on the bus of `s` (and only on it). */
function putters(s: Synth): Set<string> {
  const [[busId]] = resourcesOfType(s.json.data, 'AWS::Events::EventBus');
  const fns = mirFunctions(s);
  const roleOf = new Map<string, string>();
  for (const [name, [, r]] of fns) roleOf.set(r.Properties.Role['Fn::GetAtt'][0], name);
  const putters = new Set<string>();
  for (const part of PARTS) {
    for (const [id, policy] of resourcesOfType(s.json[part], 'AWS::IAM::Policy')) {
      for (const st of asArray<any>(policy.Properties.PolicyDocument.Statement)) {
        if (!asArray<string>(st.Action).some((a) => a === 'events:PutEvents' || a === 'events:*' || a === '*')) continue;
        assert.equal(part, 'functions', `${id} in the ${part} stack may put events`);
        for (const r of asArray<any>(st.Resource)) {
          assert.match(JSON.stringify(resolveImport(s, r)), new RegExp(busId), `${id}: events:PutEvents on ${JSON.stringify(r)}`);
        }
        for (const role of asArray<any>(policy.Properties.Roles)) putters.add(roleOf.get(role.Ref) ?? `role ${role.Ref}`);
      }
    }
  }
  return putters;
}

test('only the functions with access.feed may put events on the bus, and only on that bus', () => {
  const allowed = new Set(ROUTES.functions.filter((f) => f.access.feed).map((f) => f.name));
  assert.deepEqual([...allowed], ['event-feed']);
  assert.deepEqual([...putters(s)].sort(), [...allowed].sort());
});

test('the telemetry feed is off by default: the telemetry function is not told the bus and may not put events', () => {
  assert.deepEqual(ROUTES.functions.filter((f) => f.access.telemetryFeed).map((f) => f.name), ['telemetry']);
  const [, fn] = mirFunctions(s).get('telemetry')!;
  assert.equal(fn.Properties.Environment.Variables.MIR_EVENT_BUS_NAME, undefined);
  assert.ok(!putters(s).has('telemetry'));
});

test('with mir:telemetryFeed the telemetry function is told the bus and may put events on it alone', () => {
  const on = synthApp(newApp({ 'mir:stage': 'ttfeed', 'mir:telemetryFeed': 'true' }));
  const [[busId]] = resourcesOfType(on.json.data, 'AWS::Events::EventBus');
  const [, fn] = mirFunctions(on).get('telemetry')!;
  assert.match(JSON.stringify(resolveImport(on, fn.Properties.Environment.Variables.MIR_EVENT_BUS_NAME)), new RegExp(busId));
  assert.deepEqual([...putters(on)].sort(), ['event-feed', 'telemetry']);
  assert.throws(() => synthApp(newApp({ 'mir:stage': 'ttbad', 'mir:telemetryFeed': 'yes' })), /mir:telemetryFeed must be true or false/);
});

test('the event-feed function is told the bus and the twins table, nothing else of the data', () => {
  const [, fn] = mirFunctions(s).get('event-feed')!;
  const env = fn.Properties.Environment.Variables;
  assert.match(JSON.stringify(resolveImport(s, env.MIR_EVENT_BUS_NAME)), new RegExp(busLogicalId()));
  assert.ok(env.MIR_TWINS_TABLE);
  for (const k of ['MIR_EVENTS_TABLE', 'MIR_IOT_DATA_ENDPOINT', 'MIR_TELEMETRY_TABLE']) assert.equal(env[k], undefined, k);
});
