import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { mirFunctions, resolveImport, resourcesOfType, ROUTES, synth } from './helpers';

/** Alarms of a template whose metric matches. */
function alarms(tpl: any, match: (p: any) => boolean): any[] {
  return resourcesOfType(tpl, 'AWS::CloudWatch::Alarm')
    .map(([, a]) => a.Properties)
    .filter(match);
}

function topicId(s: ReturnType<typeof synth>): string {
  const topics = resourcesOfType(s.json.functions, 'AWS::SNS::Topic');
  assert.equal(topics.length, 1, 'one alarm topic');
  return topics[0][0];
}

/** Every alarm notifies the alarm topic (same stack: a Ref; the IoT stack: an import). */
function notifiesTopic(s: ReturnType<typeof synth>, p: any): boolean {
  const id = topicId(s);
  return (p.AlarmActions ?? []).some((a: any) => a.Ref === id || JSON.stringify(resolveImport(s, a)).includes(id));
}

test('the failure queue alarms as soon as one invocation waits in it', () => {
  const s = synth();
  const [queueId] = resourcesOfType(s.json.functions, 'AWS::SQS::Queue')[0];
  const found = alarms(s.json.functions, (p) => p.MetricName === 'ApproximateNumberOfMessagesVisible');
  assert.equal(found.length, 1);
  const p = found[0];
  assert.equal(p.Namespace, 'AWS/SQS');
  assert.ok(JSON.stringify(p.Dimensions).includes(queueId), 'on the failure queue');
  assert.equal(p.Threshold, 1);
  assert.equal(p.ComparisonOperator, 'GreaterThanOrEqualToThreshold');
  assert.ok(notifiesTopic(s, p));
});

test('every function has an errors alarm and a throttles alarm', () => {
  const s = synth();
  for (const [name, [fnId]] of mirFunctions(s)) {
    for (const metric of ['Errors', 'Throttles']) {
      const found = alarms(
        s.json.functions,
        (p) => p.Namespace === 'AWS/Lambda' && p.MetricName === metric && JSON.stringify(p.Dimensions).includes(fnId),
      );
      assert.equal(found.length, 1, `${name}: one ${metric} alarm`);
      assert.equal(found[0].Threshold, 1);
      assert.ok(notifiesTopic(s, found[0]), `${name} ${metric} notifies the topic`);
    }
  }
  assert.equal(mirFunctions(s).size, ROUTES.functions.length);
});

test('every topic rule has an alarm on its failed Lambda actions', () => {
  const s = synth();
  const rules = resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule');
  assert.equal(rules.length, ROUTES.functions.reduce((n, f) => n + f.rules.length, 0));
  for (const [ruleId] of rules) {
    const found = alarms(
      s.json.iot,
      (p) => p.Namespace === 'AWS/IoT' && p.MetricName === 'Failure' && JSON.stringify(p.Dimensions).includes(ruleId),
    );
    assert.equal(found.length, 1, `${ruleId}: one failure alarm`);
    assert.ok(JSON.stringify(found[0].Dimensions).includes('"Lambda"'), 'on the Lambda action');
    assert.ok(notifiesTopic(s, found[0]), `${ruleId} notifies the topic`);
  }
});

test('the alarm topic and the failure queue are stack outputs', () => {
  const s = synth();
  const outputs = Object.keys(s.json.functions.Outputs ?? {});
  assert.ok(outputs.some((o) => o.startsWith('AlarmTopicArn')), `${outputs}`);
  assert.ok(outputs.some((o) => o.startsWith('FailureQueueUrl')), `${outputs}`);
});
