// The console on AWS (lib/console.ts, lib/console-stack.ts): its site, its sign-in, and
// that signing in never opens the API.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { JOBS } from '../lib/operator-access';
import { GROUP_PRECEDENCE } from '../lib/console';
import { flatten, PARTS, resolveImport, resourcesOfType, ROUTES, Synth, synth } from './helpers';

function one(s: Synth, part: keyof Synth['json'], type: string): [string, any] {
  const found = resourcesOfType(s.json[part], type);
  assert.equal(found.length, 1, `one ${type} in the ${part} stack`);
  return found[0];
}

/** The logical id a `{Ref}` or `{Fn::GetAtt}` points at, across an import. */
function target(s: Synth, value: any): string {
  const v = resolveImport(s, value);
  return v?.Ref ?? v?.['Fn::GetAtt']?.[0];
}

test('the console is a private bucket behind CloudFront with origin access control and security headers', () => {
  const s = synth();
  const [bucketId, bucket] = one(s, 'api', 'AWS::S3::Bucket');
  assert.deepEqual(bucket.Properties.PublicAccessBlockConfiguration, {
    BlockPublicAcls: true,
    BlockPublicPolicy: true,
    IgnorePublicAcls: true,
    RestrictPublicBuckets: true,
  });
  assert.equal(bucket.Properties.BucketName, undefined, 'generated name');
  const [, dist] = one(s, 'api', 'AWS::CloudFront::Distribution');
  const cfg = dist.Properties.DistributionConfig;
  assert.equal(cfg.DefaultRootObject, 'index.html');
  assert.equal(cfg.DefaultCacheBehavior.ViewerProtocolPolicy, 'redirect-to-https');
  assert.equal(target(s, cfg.Origins[0].DomainName), bucketId);
  assert.ok(cfg.Origins[0].OriginAccessControlId, 'origin access control, not a public website');
  one(s, 'api', 'AWS::CloudFront::OriginAccessControl');
  const [, headers] = one(s, 'api', 'AWS::CloudFront::ResponseHeadersPolicy');
  const csp = headers.Properties.ResponseHeadersPolicyConfig.SecurityHeadersConfig.ContentSecurityPolicy.ContentSecurityPolicy;
  const text = JSON.stringify(flatten(csp));
  assert.match(text, /default-src 'self'/);
  assert.match(text, /script-src 'self'/);
  assert.match(text, /frame-ancestors 'none'/);
  // The bucket policy lets CloudFront read, and nobody else.
  const [, policy] = one(s, 'api', 'AWS::S3::BucketPolicy');
  for (const st of policy.Properties.PolicyDocument.Statement) {
    if (st.Effect !== 'Allow') continue;
    assert.deepEqual(st.Principal, { Service: 'cloudfront.amazonaws.com' }, JSON.stringify(st));
  }
});

test('the console stack uploads the built front end and a config.json naming the API and the sign-in', () => {
  const s = synth();
  const [, upload] = one(s, 'console', 'Custom::CDKBucketDeployment');
  assert.equal(upload.Properties.SourceObjectKeys.length, 2, 'console/dist and config.json');
  assert.deepEqual(upload.Properties.DistributionPaths, ['/index.html', '/config.json']);
  // config.json's deploy-time values: the API, the user pool, its client, the identity
  // pool, the sign-in domain and the console's own address.
  const markers = JSON.stringify(upload.Properties.SourceMarkers);
  for (const id of ['RefHttpApi', 'RefOperators', 'RefConsoleSignInConsoleClient', 'RefConsoleSignInIdentityPool', 'RefConsoleSignInSignInDomain', 'FnGetAttConsoleDistribution']) {
    assert.ok(markers.includes(`ExportsOutput${id}`), `${id} in config.json: ${markers}`);
  }
  assert.ok(s.json.console.Outputs.ConsoleUrl, 'ConsoleUrl output');
  assert.ok(s.mir.console.dependencies.map((d) => d.stackName).includes(s.mir.api.stackName));
});

test('the user pool has no self sign-up, is retained and protected, and wants strong passwords', () => {
  const s = synth();
  const [, pool] = one(s, 'data', 'AWS::Cognito::UserPool');
  assert.equal(pool.Properties.AdminCreateUserConfig.AllowAdminCreateUserOnly, true, 'no self sign-up');
  assert.equal(pool.DeletionPolicy, 'Retain');
  assert.equal(pool.Properties.DeletionProtection, 'ACTIVE');
  assert.ok(pool.Properties.Policies.PasswordPolicy.MinimumLength >= 12);
  assert.equal(pool.Properties.UserPoolName, undefined, 'generated name');
  for (const part of PARTS.filter((p) => p !== 'data')) {
    assert.equal(resourcesOfType(s.json[part], 'AWS::Cognito::UserPool').length, 0, part);
  }
  const [, client] = one(s, 'api', 'AWS::Cognito::UserPoolClient');
  assert.equal(client.Properties.GenerateSecret, false, 'a browser keeps no secret');
  assert.deepEqual(client.Properties.AllowedOAuthFlows, ['code']);
  assert.equal(client.Properties.PreventUserExistenceErrors, 'ENABLED');
});

test('sign-in gives the credentials of one operator job: a group per job, each mapped to a role with only that job\'s policy', () => {
  const s = synth();
  const [poolId, pool] = one(s, 'api', 'AWS::Cognito::IdentityPool');
  assert.equal(pool.Properties.AllowUnauthenticatedIdentities, false);
  assert.equal(pool.Properties.AllowClassicFlow, false);
  const [, attachment] = one(s, 'api', 'AWS::Cognito::IdentityPoolRoleAttachment');
  const mappings = Object.values<any>(attachment.Properties.RoleMappings);
  assert.equal(mappings.length, 1);
  assert.equal(mappings[0].Type, 'Token');
  assert.equal(mappings[0].AmbiguousRoleResolution, 'Deny', 'no group, no credentials');
  const roles = s.json.api.Resources;
  const noAccess = roles[target(s, attachment.Properties.Roles.authenticated)];
  assert.equal(noAccess.Properties.ManagedPolicyArns, undefined, 'the default role may do nothing');
  assert.equal(noAccess.Properties.Policies, undefined);

  const groups = resourcesOfType(s.json.api, 'AWS::Cognito::UserPoolGroup').map(([, g]) => g.Properties);
  assert.deepEqual(groups.map((g) => g.GroupName).sort(), [...JOBS].sort());
  const managed = new Map(resourcesOfType(s.json.api, 'AWS::IAM::ManagedPolicy').map(([id, p]) => [id, p]));
  for (const g of groups) {
    assert.equal(g.Precedence, GROUP_PRECEDENCE[g.GroupName as keyof typeof GROUP_PRECEDENCE]);
    const role = roles[target(s, g.RoleArn)];
    const trust = role.Properties.AssumeRolePolicyDocument.Statement[0];
    assert.equal(trust.Action, 'sts:AssumeRoleWithWebIdentity');
    assert.deepEqual(trust.Principal, { Federated: 'cognito-identity.amazonaws.com' });
    assert.deepEqual(trust.Condition.StringEquals['cognito-identity.amazonaws.com:aud'], { Ref: poolId });
    assert.equal(trust.Condition['ForAnyValue:StringLike']['cognito-identity.amazonaws.com:amr'], 'authenticated');
    const policies = role.Properties.ManagedPolicyArns.map((a: any) => target(s, a));
    assert.equal(policies.length, 1, g.GroupName);
    const actions = managed.get(policies[0]).Properties.PolicyDocument.Statement.flatMap((st: any) => [st.Action].flat());
    assert.deepEqual([...new Set(actions)], ['execute-api:Invoke'], `${g.GroupName}: API calls only`);
    const description: string = managed.get(policies[0]).Properties.Description;
    assert.ok(description.includes(`, ${g.GroupName}:`), `${g.GroupName} carries its own job's policy: ${description}`);
  }
});

test('no API route is reachable without authorization; only the console origin passes CORS', () => {
  const s = synth();
  const routes = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Route');
  assert.equal(routes.length, ROUTES.functions.flatMap((f) => f.http).length, 'no route besides routes.json');
  for (const [id, r] of routes) {
    assert.equal(r.Properties.AuthorizationType, 'AWS_IAM', id);
    assert.doesNotMatch(r.Properties.RouteKey, /^(OPTIONS|ANY) |\$default/, `${id}: preflight is API Gateway's own, not a route`);
  }
  const [, api] = one(s, 'api', 'AWS::ApiGatewayV2::Api');
  const cors = api.Properties.CorsConfiguration;
  assert.equal(cors.AllowOrigins.length, 1);
  const [distId] = one(s, 'api', 'AWS::CloudFront::Distribution');
  assert.deepEqual(cors.AllowOrigins[0], { 'Fn::Join': ['', ['https://', { 'Fn::GetAtt': [distId, 'DomainName'] }]] });
  assert.equal(cors.AllowCredentials, undefined, 'SigV4 headers, not cookies');
  assert.ok(cors.AllowHeaders.includes('authorization') && cors.AllowHeaders.includes('x-amz-security-token'));
});
