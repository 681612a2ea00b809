import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { functionNameOfArn, resourcesOfType, ROUTES, synth } from './helpers';

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
