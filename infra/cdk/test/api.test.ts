import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { buildMirApp } from '../lib/app';
import { functionNameOfArn, newApp, resolveImport, resourcesOfType, ROUTES, synth, synthApp } from './helpers';

test('one HTTP API with IAM authorization on every route and a default auto-deployed stage', () => {
  const s = synth();
  assert.equal(resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Api').length, 1);
  const stages = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage');
  assert.equal(stages.length, 1);
  assert.equal(stages[0][1].Properties.StageName, '$default');
  assert.equal(stages[0][1].Properties.AutoDeploy, true);
  const routes = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Route');
  assert.ok(routes.length > 0);
  for (const [id, r] of routes) assert.equal(r.Properties.AuthorizationType, 'AWS_IAM', id);
});

test('the $default stage keeps the logical id of the HttpApi default stage, so a deployed stage is updated in place', () => {
  const s = synth();
  const ids = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage').map(([id]) => id);
  // The id the stage had when HttpApi created it (createDefaultStage: true).
  assert.deepEqual(ids, ['HttpApiDefaultStage3EEB07D6']);
});

test('every routes.json http entry is a route (method + path) to its function, payload format 2.0', () => {
  const s = synth();
  const routes = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Route');
  for (const f of ROUTES.functions) {
    for (const h of f.http) {
      const key = `${h.method} ${h.path}`;
      const hits = routes.filter(([, r]) => r.Properties.RouteKey === key);
      assert.equal(hits.length, 1, `route ${key}`);
      const target: string = hits[0][1].Properties.Target['Fn::Join'][1][1].Ref;
      const integration = s.json.api.Resources[target];
      assert.equal(integration.Type, 'AWS::ApiGatewayV2::Integration');
      assert.equal(integration.Properties.IntegrationType, 'AWS_PROXY');
      assert.equal(integration.Properties.PayloadFormatVersion, '2.0');
      assert.equal(functionNameOfArn(s, integration.Properties.IntegrationUri), f.name, key);
    }
  }
});

test('API Gateway may invoke each API function', () => {
  const s = synth();
  const perms = resourcesOfType(s.json.api, 'AWS::Lambda::Permission');
  for (const f of ROUTES.functions.filter((x) => x.http.length > 0)) {
    const mine = perms.filter(([, p]) => functionNameOfArn(s, p.Properties.FunctionName) === f.name);
    assert.ok(mine.length >= 1, `${f.name}: no invoke permission`);
    for (const [, p] of mine) assert.equal(p.Properties.Principal, 'apigateway.amazonaws.com');
  }
});

test('the stage writes an access log line per request with the caller identity, request id, route and status', () => {
  const s = synth();
  const [[, stage]] = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage');
  const settings = stage.Properties.AccessLogSettings;
  assert.ok(settings, 'no access logs');
  const fields = JSON.parse(settings.Format);
  for (const [key, variable] of Object.entries({
    userArn: '$context.identity.userArn',
    caller: '$context.identity.caller',
    accountId: '$context.identity.accountId',
    requestId: '$context.requestId',
    routeKey: '$context.routeKey',
    status: '$context.status',
    sourceIp: '$context.identity.sourceIp',
    requestTime: '$context.requestTime',
  })) {
    assert.equal(fields[key], variable, key);
  }
  // Into the retained log group of the data stack.
  const target = resolveImport(s, settings.DestinationArn);
  const id = target?.['Fn::GetAtt']?.[0];
  assert.deepEqual(target, { 'Fn::GetAtt': [id, 'Arn'] });
  assert.equal(s.json.data.Resources[id]?.Type, 'AWS::Logs::LogGroup');
});

test('the access log group is stateful: in the data stack, retained, kept 365 days, generated name, an output', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const s = synth(flavour);
    const [[, stage]] = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Stage');
    const id = resolveImport(s, stage.Properties.AccessLogSettings.DestinationArn)['Fn::GetAtt'][0];
    const group = s.json.data.Resources[id];
    assert.equal(group.DeletionPolicy, 'Retain', flavour);
    assert.equal(group.UpdateReplacePolicy, 'Retain', flavour);
    assert.equal(group.Properties.RetentionInDays, 365, flavour);
    assert.equal(group.Properties.LogGroupName, undefined, flavour);
    assert.deepEqual(s.json.data.Outputs.ApiAccessLogGroup.Value, { Ref: id });
    assert.equal(resourcesOfType(s.json.api, 'AWS::Logs::LogGroup').length, 0, 'not in the api stack');
  }
});

test('mir:apiAccessLogRetentionDays sets the retention; a value CloudWatch Logs does not accept fails the synth', () => {
  const s = synthApp(newApp({ 'mir:stage': 'taccess', 'mir:apiAccessLogRetentionDays': '731' }));
  const [[, group]] = resourcesOfType(s.json.data, 'AWS::Logs::LogGroup');
  assert.equal(group.Properties.RetentionInDays, 731);
  for (const bad of ['0', '2', '366', 'forever', 1.5]) {
    assert.throws(
      () => buildMirApp(newApp({ 'mir:stage': 'tbad', 'mir:apiAccessLogRetentionDays': bad })),
      /context mir:apiAccessLogRetentionDays must be one of CloudWatch Logs' retention values \(1, 3, 5, /,
      String(bad),
    );
  }
});
