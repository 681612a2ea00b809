import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { asArray, devicePolicyViolations, flatten, functionNameOfArn, resourcesOfType, ROUTES, synth } from './helpers';

const THING = '${iot:Connection.Thing.ThingName}';

function devicePolicy() {
  const s = synth();
  const policies = resourcesOfType(s.json.iot, 'AWS::IoT::Policy');
  assert.equal(policies.length, 1, 'exactly one device policy');
  return policies[0][1];
}

test('every routes.json rule has a topic rule with the same SQL, SQL version 2016-03-23, a Lambda action to its function and an error action', () => {
  const s = synth();
  const rules = resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule');
  for (const f of ROUTES.functions) {
    for (const r of f.rules) {
      const hits = rules.filter(([, t]) => t.Properties.TopicRulePayload.Sql === r.sql);
      assert.equal(hits.length, 1, `one topic rule for ${r.topicFilter}`);
      const p = hits[0][1].Properties.TopicRulePayload;
      assert.equal(p.AwsIotSqlVersion, '2016-03-23');
      assert.equal(p.RuleDisabled, false);
      assert.equal(p.Actions.length, 1);
      assert.equal(functionNameOfArn(s, p.Actions[0].Lambda.FunctionArn), f.name);
      assert.ok(p.ErrorAction && Object.keys(p.ErrorAction).length === 1, `${r.topicFilter}: no error action`);
    }
  }
});

test('the presence rule reads the lifecycle events', () => {
  const s = synth();
  const sqls = resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule').map(([, t]) => t.Properties.TopicRulePayload.Sql as string);
  assert.ok(sqls.some((q) => q.includes("FROM '$aws/events/presence/+/+'")));
});

test('every topic rule may invoke its function: a Lambda permission for iot.amazonaws.com with the rule as source', () => {
  const s = synth();
  const perms = resourcesOfType(s.json.iot, 'AWS::Lambda::Permission');
  for (const [ruleId, rule] of resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule')) {
    const perm = perms.find(([, p]) => p.Properties.SourceArn?.['Fn::GetAtt']?.[0] === ruleId);
    assert.ok(perm, `no permission for ${ruleId}`);
    const p = perm[1].Properties;
    assert.equal(p.Principal, 'iot.amazonaws.com');
    assert.equal(p.Action, 'lambda:InvokeFunction');
    assert.equal(
      functionNameOfArn(s, p.FunctionName),
      functionNameOfArn(s, rule.Properties.TopicRulePayload.Actions[0].Lambda.FunctionArn),
      'the permission is on the rule target',
    );
  }
});

test('the device policy scopes every resource to the connecting thing, with no wildcard', () => {
  const doc = devicePolicy().Properties.PolicyDocument;
  assert.deepEqual(devicePolicyViolations(doc), []);
});

test('the device policy checker catches a policy that lets a device reach other devices', () => {
  const doc = JSON.parse(JSON.stringify(devicePolicy().Properties.PolicyDocument));
  const publish = doc.Statement.find((st: any) => asArray(st.Action).includes('iot:Publish'));
  publish.Resource.push('arn:aws:iot:eu-west-1:123456789012:topic/mir/*/tlm');
  assert.ok(devicePolicyViolations(doc).some((v) => v.includes('topic/mir/*/tlm')));

  const others = JSON.parse(JSON.stringify(devicePolicy().Properties.PolicyDocument));
  const custom = others.Statement.find((st: any) => st.Sid === 'PublishOwnCustomRoutes');
  custom.Resource = ['arn:aws:iot:eu-west-1:123456789012:topic/mir/*/x/*'];
  assert.ok(devicePolicyViolations(others).some((v) => v.includes('topic/mir/*/x/*')), 'custom routes of any device');

  const sneaky = JSON.parse(JSON.stringify(devicePolicy().Properties.PolicyDocument));
  const receive = sneaky.Statement.find((st: any) => asArray(st.Action).includes('iot:Receive'));
  receive.Resource = [`arn:aws:iot:eu-west-1:123456789012:topic/mir/other/cmd/req/${THING}`];
  assert.ok(devicePolicyViolations(sneaky).length > 0, 'thing name outside the device id position');

  const client = JSON.parse(JSON.stringify(devicePolicy().Properties.PolicyDocument));
  client.Statement[0].Resource = ['arn:aws:iot:eu-west-1:123456789012:client/*'];
  assert.ok(devicePolicyViolations(client).length > 0, 'any client id');
});

test('the device policy grants exactly: connect as itself, publish device->cloud and its own custom routes, subscribe/receive cloud->device', () => {
  const doc = devicePolicy().Properties.PolicyDocument;
  const byAction = new Map<string, string[]>();
  for (const st of doc.Statement) {
    assert.equal(st.Effect, 'Allow');
    for (const a of asArray<string>(st.Action)) {
      const rs = asArray(st.Resource).map(flatten).map((r) => r.replace(/^arn:[^:]+:iot:[^:]*:[^:]*:/, ''));
      byAction.set(a, [...(byAction.get(a) ?? []), ...rs]);
    }
  }
  assert.deepEqual([...byAction.keys()].sort(), ['iot:Connect', 'iot:Publish', 'iot:Receive', 'iot:Subscribe']);
  assert.deepEqual(byAction.get('iot:Connect'), [`client/${THING}`]);
  const up = ['hello', 'hb', 'tlm', 'cfg/reported', 'cfg/desired/get', 'cmd/resp'];
  const down = ['cmd/req', 'cfg/desired', 'hello/get'];
  assert.deepEqual(byAction.get('iot:Publish')!.sort(), [...up, 'x/*'].map((x) => `topic/mir/${THING}/${x}`).sort());
  assert.deepEqual(byAction.get('iot:Subscribe')!.sort(), down.map((x) => `topicfilter/mir/${THING}/${x}`).sort());
  assert.deepEqual(byAction.get('iot:Receive')!.sort(), down.map((x) => `topic/mir/${THING}/${x}`).sort());
});

test('devices may publish on every mir/+/<suffix> topic a rule listens to', () => {
  const doc = devicePolicy().Properties.PolicyDocument;
  const publish = doc.Statement.filter((st: any) => asArray(st.Action).includes('iot:Publish')).flatMap((st: any) =>
    asArray(st.Resource).map(flatten),
  );
  for (const f of ROUTES.functions) {
    for (const r of f.rules) {
      if (!r.topicFilter.startsWith('mir/+/')) continue;
      const suffix = r.topicFilter.slice('mir/+/'.length);
      assert.ok(
        publish.some((p: string) => p.endsWith(`:topic/mir/${THING}/${suffix}`)),
        `devices cannot publish to ${r.topicFilter}, which ${f.name} listens to`,
      );
    }
  }
});

test('the device policy name is stage-scoped and exported as DevicePolicyName', () => {
  const s = synth();
  assert.equal(devicePolicy().Properties.PolicyName, `mir-${s.stage}-device`);
  assert.equal(s.json.iot.Outputs.DevicePolicyName.Value, `mir-${s.stage}-device`);
});
