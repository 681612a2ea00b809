// One role and managed policy per operator job, each allowed execute-api:Invoke on exactly
// the routes of its job, written out here from routes.json independently of lib/.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { jobOfChangingRoute } from '../lib/operator-access';
import { asArray, flatten, resourcesOfType, ROUTES, Synth, synth } from './helpers';

const JOB_OUTPUTS = { readOnly: 'ReadOnly', operator: 'Operator', provisioner: 'Provisioner', admin: 'Admin' } as const;
type Job = keyof typeof JOB_OUTPUTS;

/** `METHOD /path` of every routes.json route. */
const ALL = ROUTES.functions.flatMap((f) => f.http.map((h) => `${h.method} ${h.path}`));
const GETS = ALL.filter((r) => r.startsWith('GET '));

/** The routes each job may call: the expectation, by route. */
function expected(job: Job): string[] {
  const ops = (r: string) => /^POST \/v1\/(commands|config|events)$/.test(r) || r === 'POST /v1/devices/{deviceId}/schema/refresh';
  const prov = (r: string) => !r.startsWith('GET ') && !ops(r) && / \/v1\/devices(\/|$)/.test(r);
  switch (job) {
    case 'readOnly':
      return GETS;
    case 'operator':
      return [...GETS, ...ALL.filter(ops)];
    case 'provisioner':
      return [...GETS, ...ALL.filter(prov)];
    case 'admin':
      return ALL;
  }
}

/** The managed policy a job's output names: [logicalId, resource]. */
function policyOf(s: Synth, job: Job): [string, any] {
  const ref = s.json.api.Outputs[`${JOB_OUTPUTS[job]}PolicyArn`]?.Value?.Ref;
  assert.ok(ref, `${job}: no ${JOB_OUTPUTS[job]}PolicyArn output`);
  const r = s.json.api.Resources[ref];
  assert.equal(r.Type, 'AWS::IAM::ManagedPolicy');
  return [ref, r];
}

/** `METHOD /path` granted by a policy, from its ARNs `...:<api>/*\/METHOD/path`. */
function granted(s: Synth, policy: any): string[] {
  const apiId = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Api')[0][0];
  const out: string[] = [];
  for (const st of asArray<any>(policy.Properties.PolicyDocument.Statement)) {
    assert.equal(st.Effect, 'Allow');
    assert.deepEqual(asArray(st.Action), ['execute-api:Invoke'], 'only execute-api:Invoke');
    for (const res of asArray<any>(st.Resource)) {
      // The API id is a Ref in the ARN: check it, then read the rest.
      const parts = res['Fn::Join'][1];
      const i = parts.findIndex((p: any) => p?.Ref === apiId);
      assert.ok(i > 0, `not this API: ${JSON.stringify(res)}`);
      assert.equal(flatten({ 'Fn::Join': ['', parts.slice(0, i)] }), 'arn:<token>:execute-api:<token>:<token>:');
      const tail = flatten({ 'Fn::Join': ['', parts.slice(i + 1)] });
      const m = /^\/\*\/(GET|POST|PUT|PATCH|DELETE)(\/.*)$/.exec(tail);
      assert.ok(m, `${tail}: not /*/<METHOD>/<path>`);
      out.push(`${m[1]} ${m[2]}`);
    }
  }
  return out.sort();
}

/** A routes.json route as its IAM resource path: each {param} segment a `*`. */
const asIam = (r: string) => r.replace(/\{[^}/]+\}/g, '*');

test('one managed policy and one role per job; each policy allows exactly the routes of its job', () => {
  const s = synth();
  for (const job of Object.keys(JOB_OUTPUTS) as Job[]) {
    const [id, policy] = policyOf(s, job);
    assert.deepEqual(granted(s, policy), expected(job).map(asIam).sort(), job);
    const roleId = s.json.api.Outputs[`${JOB_OUTPUTS[job]}RoleArn`]?.Value?.['Fn::GetAtt']?.[0];
    const role = s.json.api.Resources[roleId];
    assert.equal(role?.Type, 'AWS::IAM::Role', `${job}: role output`);
    assert.deepEqual(role.Properties.ManagedPolicyArns, [{ Ref: id }], `${job}: the role carries its policy`);
    assert.equal(role.Properties.Policies, undefined, `${job}: and nothing else`);
    assert.equal(role.Properties.RoleName, undefined, 'generated name');
    const trust = role.Properties.AssumeRolePolicyDocument.Statement;
    assert.equal(trust.length, 1);
    assert.equal(flatten(trust[0].Principal.AWS), 'arn:<token>:iam::<token>:root', `${job}: trusted by this account only`);
  }
  // Nothing else in the api stack grants execute-api.
  const others = resourcesOfType(s.json.api, 'AWS::IAM::Policy');
  assert.deepEqual(others.filter(([, p]) => JSON.stringify(p).includes('execute-api')), []);
});

test('every job is narrower than execute-api:Invoke on /*, and every route belongs to admin', () => {
  const s = synth();
  for (const job of Object.keys(JOB_OUTPUTS) as Job[]) {
    const routes = granted(s, policyOf(s, job)[1]);
    assert.ok(!routes.some((r) => /^\S+ \/\*$/.test(r) || r.endsWith(' /v1/*')), `${job}: a wildcard path`);
    if (job !== 'admin') assert.ok(routes.length < ALL.length, `${job} is not narrower than admin`);
  }
  assert.deepEqual(granted(s, policyOf(s, 'admin')[1]), ALL.map(asIam).sort());
});

test('read-only has no route that changes anything; operator no device or certificate route; provisioner no command or config send', () => {
  const s = synth();
  const ro = granted(s, policyOf(s, 'readOnly')[1]);
  assert.ok(ro.length > 0 && ro.every((r) => r.startsWith('GET ')), `${ro}`);
  const op = granted(s, policyOf(s, 'operator')[1]);
  assert.ok(!op.includes('POST /v1/devices/*/certificate') && !op.includes('DELETE /v1/devices/*') && !op.includes('POST /v1/devices'), `${op}`);
  const prov = granted(s, policyOf(s, 'provisioner')[1]);
  assert.ok(!prov.includes('POST /v1/commands') && !prov.includes('POST /v1/config'), `${prov}`);
  assert.ok(prov.includes('POST /v1/devices/*/certificate'));
  // The wildcard of a path parameter never spans a literal segment of another route:
  // the certificate route is not reachable through the schema refresh grant.
  assert.ok(op.includes('POST /v1/devices/*/schema/refresh'));
});

test('a changing route that belongs to no job fails the synth', () => {
  assert.throws(() => jobOfChangingRoute({ method: 'POST', path: '/v1/firmware' }), /POST \/v1\/firmware belongs to no operator job/);
  assert.equal(jobOfChangingRoute({ method: 'DELETE', path: '/v1/devices/{deviceId}' }), 'provisioner');
  assert.equal(jobOfChangingRoute({ method: 'POST', path: '/v1/commands' }), 'operator');
});
