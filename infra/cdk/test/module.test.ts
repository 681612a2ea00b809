// MirModule (lib/module.ts): a team's module on the event bus, on its synthesized template.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DEVICE_STREAM_TOPICS, deviceStreamSql, MirModule, MirModuleProps, routeSql } from '../lib/module';
import { findRepoRoot, loadRoutes, routesPath } from '../lib/routes';
import { OFFLINE_ALERT_BINARY, OfflineAlertStack } from '../lib/offline-alert-stack';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resourcesOfType } from './helpers';

// Fake bootstraps of this process, removed at exit.
const fakeDirs: string[] = [];
process.on('exit', () => {
  for (const d of fakeDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fake bootstrap, as `cargo lambda build` leaves it. */
function fakeCode(): lambda.Code {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mir-module-'));
  fs.writeFileSync(path.join(dir, 'bootstrap'), '#!/bin/sh\n', { mode: 0o755 });
  fakeDirs.push(dir);
  return lambda.Code.fromAsset(dir);
}

const BUS_ARN = 'arn:aws:events:eu-west-1:111122223333:event-bus/mir-dev-data-EventFeedBus';

function moduleStack(props: Omit<MirModuleProps, 'bus' | 'handler'>): any {
  const app = new App();
  const stack = new Stack(app, 'Team', { env: { account: '111122223333', region: 'eu-west-1' } });
  const handler = new lambda.Function(stack, 'Alert', {
    runtime: lambda.Runtime.PROVIDED_AL2023,
    architecture: lambda.Architecture.ARM_64,
    handler: 'bootstrap',
    code: fakeCode(),
  });
  const bus = events.EventBus.fromEventBusArn(stack, 'Bus', BUS_ARN);
  new MirModule(stack, 'Module', { bus, handler, ...props });
  return Template.fromStack(stack).toJSON();
}

test('a module subscribed to events gets a rule on the bus with their pattern, retries and a dead-letter queue', () => {
  const t = moduleStack({ events: { reasons: ['DeviceOffline'], labels: { site: 'north' }, namespaces: ['plant-a'] } });
  const rules = resourcesOfType(t, 'AWS::Events::Rule');
  assert.equal(rules.length, 1);
  const [, rule] = rules[0];
  assert.equal(rule.Properties.EventBusName, 'mir-dev-data-EventFeedBus');
  assert.deepEqual(rule.Properties.EventPattern, {
    source: ['mir'],
    'detail-type': ['DeviceOffline'],
    detail: { namespace: ['plant-a'], labels: { site: ['north'] } },
  });
  const [target] = rule.Properties.Targets;
  assert.match(JSON.stringify(target.Arn), /Alert/);
  assert.equal(target.RetryPolicy.MaximumRetryAttempts, 8);
  assert.match(JSON.stringify(target.DeadLetterConfig.Arn), /DeadLetters/);
  const perms = resourcesOfType(t, 'AWS::Lambda::Permission');
  assert.ok(perms.some(([, p]) => p.Properties.Principal === 'events.amazonaws.com'));
  assert.equal(resourcesOfType(t, 'AWS::Lambda::EventSourceMapping').length, 0);
});

test('in worker mode the events go through one queue that the instances drain in batches with partial failures', () => {
  const t = moduleStack({ events: { reasons: ['DeviceOnline', 'DeviceOffline'] }, worker: { batchSize: 25, maxConcurrency: 4 } });
  const queues = resourcesOfType(t, 'AWS::SQS::Queue');
  const events = queues.find(([id]) => id.includes('Events'));
  assert.ok(events, 'a queue of events');
  assert.equal(events[1].Properties.RedrivePolicy.maxReceiveCount, 5);
  const [[, rule]] = resourcesOfType(t, 'AWS::Events::Rule');
  assert.match(JSON.stringify(rule.Properties.Targets[0].Arn), /Events/);
  const [[, esm]] = resourcesOfType(t, 'AWS::Lambda::EventSourceMapping');
  assert.equal(esm.Properties.BatchSize, 25);
  assert.deepEqual(esm.Properties.FunctionResponseTypes, ['ReportBatchItemFailures']);
  assert.equal(esm.Properties.ScalingConfig.MaximumConcurrency, 4);
  assert.match(JSON.stringify(esm.Properties.EventSourceArn), /Events/);
});

test('a delayed worker gets each event after the delay, which is at most SQS\'s 15 minutes', () => {
  const t = moduleStack({ events: { reasons: ['DeviceOffline'] }, worker: { delay: Duration.minutes(5) } });
  const events = resourcesOfType(t, 'AWS::SQS::Queue').find(([id]) => id.includes('Events'));
  assert.equal(events![1].Properties.DelaySeconds, 300);
  assert.throws(() => moduleStack({ events: {}, worker: { delay: Duration.minutes(16) } }), /at most 15 minutes/);
});

test('custom device routes become IoT rules of mir/+/x/<module>/<route> that may invoke the function', () => {
  const t = moduleStack({ module: 'alerts', routes: ['door', 'battery'] });
  const rules = resourcesOfType(t, 'AWS::IoT::TopicRule');
  assert.deepEqual(
    rules.map(([, r]) => r.Properties.TopicRulePayload.Sql).sort(),
    [routeSql('alerts', 'battery'), routeSql('alerts', 'door')],
  );
  assert.match(routeSql('alerts', 'door'), /FROM 'mir\/\+\/x\/alerts\/door'$/);
  const perms = resourcesOfType(t, 'AWS::Lambda::Permission').filter(([, p]) => p.Properties.Principal === 'iot.amazonaws.com');
  assert.equal(perms.length, 2);
  for (const [, p] of perms) assert.ok(p.Properties.SourceArn, 'scoped to its rule');
  assert.equal(resourcesOfType(t, 'AWS::Events::Rule').length, 0);
});

/** The SQL of the platform's own rule of `topic` in routes.json. */
function platformSql(topic: string): string {
  const routes = loadRoutes(routesPath(findRepoRoot()));
  const sqls = routes.functions.flatMap((f) => f.rules).filter((r) => r.topicFilter === topic).map((r) => r.sql);
  assert.equal(sqls.length, 1, `one platform rule of ${topic} in routes.json`);
  return sqls[0];
}

test('device streams become IoT rules of mir/+/hb and mir/+/hello with the SQL of the platform\'s own rules, each allowed to invoke the function', () => {
  const t = moduleStack({ deviceStreams: { heartbeats: true, schemas: true } });
  const rules = resourcesOfType(t, 'AWS::IoT::TopicRule');
  assert.equal(rules.length, 2);
  const sqls = rules.map(([, r]) => r.Properties.TopicRulePayload.Sql).sort();
  assert.deepEqual(sqls, [platformSql('mir/+/hb'), platformSql('mir/+/hello')].sort());
  assert.equal(deviceStreamSql(DEVICE_STREAM_TOPICS.heartbeats), platformSql('mir/+/hb'));
  assert.equal(deviceStreamSql(DEVICE_STREAM_TOPICS.schemas), platformSql('mir/+/hello'));
  for (const [, r] of rules) {
    assert.equal(r.Properties.TopicRulePayload.AwsIotSqlVersion, '2016-03-23');
    assert.equal(r.Properties.TopicRulePayload.RuleDisabled, false);
    const [action] = r.Properties.TopicRulePayload.Actions;
    assert.match(JSON.stringify(action.Lambda.FunctionArn), /Alert/);
  }
  const ruleIds = rules.map(([id]) => id).sort();
  const perms = resourcesOfType(t, 'AWS::Lambda::Permission').filter(([, p]) => p.Properties.Principal === 'iot.amazonaws.com');
  assert.equal(perms.length, 2);
  const scopedTo = perms.map(([, p]) => p.Properties.SourceArn['Fn::GetAtt'][0]).sort();
  assert.deepEqual(scopedTo, ruleIds, 'each permission scoped to its rule');
  for (const [, p] of perms) assert.equal(p.Properties.SourceAccount, '111122223333');
  assert.equal(resourcesOfType(t, 'AWS::Events::Rule').length, 0);
});

test('a module of heartbeats only gets the rule of mir/+/hb and no other', () => {
  const t = moduleStack({ deviceStreams: { heartbeats: true } });
  const rules = resourcesOfType(t, 'AWS::IoT::TopicRule');
  assert.deepEqual(rules.map(([, r]) => r.Properties.TopicRulePayload.Sql), [platformSql('mir/+/hb')]);
  const s = moduleStack({ deviceStreams: { schemas: true }, module: 'alerts', routes: ['door'] });
  const sqls = resourcesOfType(s, 'AWS::IoT::TopicRule').map(([, r]) => r.Properties.TopicRulePayload.Sql).sort();
  assert.deepEqual(sqls, [platformSql('mir/+/hello'), routeSql('alerts', 'door')].sort());
});

test('a module given an operator job policy carries it for its API calls', () => {
  const app = new App();
  const stack = new Stack(app, 'Team');
  const handler = new lambda.Function(stack, 'Fn', { runtime: lambda.Runtime.PROVIDED_AL2023, handler: 'bootstrap', code: fakeCode() });
  const policy = iam.ManagedPolicy.fromManagedPolicyArn(stack, 'Operator', 'arn:aws:iam::111122223333:policy/mir-dev-operator');
  new MirModule(stack, 'M', { bus: events.EventBus.fromEventBusArn(stack, 'Bus', BUS_ARN), handler, events: {}, apiPolicy: policy });
  const roles = resourcesOfType(Template.fromStack(stack).toJSON(), 'AWS::IAM::Role');
  assert.ok(roles.some(([, r]) => JSON.stringify(r.Properties.ManagedPolicyArns ?? []).includes('mir-dev-operator')));
});

test('a module refuses settings that cannot work, naming them', () => {
  assert.throws(() => moduleStack({ routes: ['door'] }), /routes need the module name/);
  assert.throws(() => moduleStack({ module: 'Bad Name', routes: ['door'] }), /module must match/);
  assert.throws(() => moduleStack({ module: 'alerts', routes: ['a/b'] }), /route must match/);
  assert.throws(() => moduleStack({}), /subscribe to events, telemetry, routes or device streams/);
  assert.throws(() => moduleStack({ deviceStreams: {} }), /deviceStreams selects no stream/);
  assert.throws(() => moduleStack({ deviceStreams: { heartbeats: false, schemas: false } }), /deviceStreams selects no stream/);
  assert.throws(() => moduleStack({ deviceStreams: { heartbeats: true }, worker: {} }), /worker mode shares events/);
  assert.throws(() => moduleStack({ module: 'alerts', routes: ['door'], worker: {} }), /worker mode shares events/);
});

test('a module subscribed to every event does not get the telemetry points', () => {
  const t = moduleStack({ events: {} });
  const [[, rule]] = resourcesOfType(t, 'AWS::Events::Rule');
  assert.deepEqual(rule.Properties.EventPattern, { source: ['mir'], 'detail-type': [{ 'anything-but': 'Telemetry' }] });
});

test('a module subscribed to telemetry gets a second rule of the points it selects, to the same worker queue', () => {
  const t = moduleStack({
    events: { reasons: ['DeviceOffline'] },
    telemetry: { messages: ['mir.examples.weather.v1.Weather'], labels: { site: 'north' } },
    worker: {},
  });
  const rules = resourcesOfType(t, 'AWS::Events::Rule');
  assert.equal(rules.length, 2);
  const telemetry = rules.find(([id]) => id.includes('TelemetryRule'))!;
  assert.deepEqual(telemetry[1].Properties.EventPattern, {
    source: ['mir'],
    'detail-type': ['Telemetry'],
    detail: { message: ['mir.examples.weather.v1.Weather'], labels: { site: ['north'] } },
  });
  const targets = rules.map(([, r]) => JSON.stringify(r.Properties.Targets[0].Arn));
  assert.equal(targets[0], targets[1], 'one queue for both');
  assert.equal(resourcesOfType(t, 'AWS::Lambda::EventSourceMapping').length, 1);
});

/** The example module's stack with a fake bootstrap. */
function offlineAlertStack(minutes = 5): any {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mir-offline-alert-'));
  fakeDirs.push(dir);
  fs.mkdirSync(path.join(dir, OFFLINE_ALERT_BINARY));
  fs.writeFileSync(path.join(dir, OFFLINE_ALERT_BINARY, 'bootstrap'), '#!/bin/sh\n', { mode: 0o755 });
  const app = new App();
  const stack = new OfflineAlertStack(app, 'OfflineAlert', {
    env: { account: '111122223333', region: 'eu-west-1' },
    eventBusArn: BUS_ARN,
    apiUrl: 'https://abc123.execute-api.eu-west-1.amazonaws.com',
    apiPolicyArn: 'arn:aws:iam::111122223333:policy/mir-dev-operator',
    minutes,
    manifestPath: '/nonexistent/Cargo.toml',
    artifactsDir: dir,
  });
  return Template.fromStack(stack).toJSON();
}

test('the example module offline-alert deploys as a delayed worker of DeviceOffline events that calls the API', () => {
  const t = offlineAlertStack(5);
  const [[, rule]] = resourcesOfType(t, 'AWS::Events::Rule');
  assert.deepEqual(rule.Properties.EventPattern, { source: ['mir'], 'detail-type': ['DeviceOffline'] });
  const queue = resourcesOfType(t, 'AWS::SQS::Queue').find(([id]) => id.includes('Events'))!;
  assert.equal(queue[1].Properties.DelaySeconds, 300);
  const fns = resourcesOfType(t, 'AWS::Lambda::Function');
  assert.equal(fns.length, 1);
  const env = fns[0][1].Properties.Environment.Variables;
  assert.deepEqual(env, { MIR_API_URL: 'https://abc123.execute-api.eu-west-1.amazonaws.com', MIR_OFFLINE_MINUTES: '5', RUST_LOG: 'info' });
  const roles = resourcesOfType(t, 'AWS::IAM::Role');
  assert.ok(roles.some(([, r]) => JSON.stringify(r.Properties.ManagedPolicyArns ?? []).includes('mir-dev-operator')));
  const [[, esm]] = resourcesOfType(t, 'AWS::Lambda::EventSourceMapping');
  assert.deepEqual(esm.Properties.FunctionResponseTypes, ['ReportBatchItemFailures']);
  assert.throws(() => offlineAlertStack(20), /minutes must be a whole number from 1 to 15/);
});
