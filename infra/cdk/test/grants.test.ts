// No wildcard grant anywhere in the synthesized templates: every policy statement of every
// stack (identity policies: AWS::IAM::Policy, AWS::IAM::ManagedPolicy, the inline Policies
// of roles, users and groups; resource policies: S3, SQS, SNS) is walked, and no Allow may
// name the action `*` or a whole service (`svc:*`), nor the resource `*`, except for the
// actions below, each with the reason AWS makes it so. Deny statements may use wildcards
// (they take rights away: the enforceSSL bucket and queue policies deny `s3:*` / `sqs:*`).
// Trust policies (AssumeRolePolicyDocument) say who may assume a role, not what it may do.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { asArray, flatten, PARTS, synth } from './helpers';

/**
 * Actions AWS authorizes only on `Resource: "*"`: the Service Authorization Reference lists
 * no resource type for them, so no ARN can be named. A statement on `*` may hold only these.
 */
const ANY_RESOURCE_ACTIONS: Record<string, string> = {
  // The DescribeIotDataEndpoint custom resource (AwsCustomResource, functions stack) looks up
  // the account's iot:Data-ATS endpoint at deploy time; an account has one endpoint, not a resource.
  'iot:DescribeEndpoint': 'account-level endpoint lookup, no resource type',
  // Timestream endpoint discovery: the SDK calls it before WriteRecords / Select (telemetry and
  // api-telemetry on the timestream sink); the data actions themselves are scoped to the table.
  'timestream:DescribeEndpoints': 'endpoint discovery, no resource type',
  // api-devices provisions device certificates: the certificate does not exist before the call,
  // so there is no ARN to scope to.
  'iot:CreateCertificateFromCsr': 'creates the certificate, no resource type',
  'iot:CreateKeysAndCertificate': 'creates the certificate, no resource type',
};

/**
 * Grants on `*` that AWS does NOT require, found in lib/functions-stack.ts (api-devices,
 * certificates access) and left there: that code is not this folder's to change. The
 * Service Authorization Reference gives these actions the thing as resource type (AWS's own
 * AWSDeepLensServiceRolePolicy scopes them to thing/ and cert/ ARNs), so they could be
 * granted on arn:...:thing/* like the other thing actions. Listed so that nothing new joins
 * them; remove an entry once the grant is scoped (a test below fails while it is stale).
 */
const KNOWN_OVERBROAD: Record<string, string> = {
  'iot:AttachThingPrincipal': 'could be scoped to thing/*',
  'iot:DetachThingPrincipal': 'could be scoped to thing/*',
};

/**
 * AWS managed policies a role may attach by ARN (their statements are not in the template,
 * so they are allowed by name, with what they grant).
 */
const MANAGED_POLICIES: Record<string, string> = {
  // CDK's default for every Lambda role (the Mir functions and the custom resource's
  // provider): logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents on `*`. No
  // action wildcard; the functions write to their own log group (LoggingConfig).
  'service-role/AWSLambdaBasicExecutionRole': 'Lambda logging',
};

const IDENTITY_POLICIES = new Set(['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']);
const RESOURCE_POLICIES = new Set(['AWS::S3::BucketPolicy', 'AWS::SQS::QueuePolicy', 'AWS::SNS::TopicPolicy']);
const PRINCIPALS = new Set(['AWS::IAM::Role', 'AWS::IAM::User', 'AWS::IAM::Group']);

interface Located {
  readonly where: string;
  readonly statement: any;
}

/** Every policy statement of a template, with where it stands. */
function policyStatements(tpl: any, stack: string): Located[] {
  const out: Located[] = [];
  const add = (where: string, doc: any) => {
    asArray<any>(doc?.Statement).forEach((statement, i) => out.push({ where: `${where}[${i}]`, statement }));
  };
  for (const [id, r] of Object.entries<any>(tpl.Resources ?? {})) {
    if (IDENTITY_POLICIES.has(r.Type) || RESOURCE_POLICIES.has(r.Type)) add(`${stack}/${id}`, r.Properties?.PolicyDocument);
    if (PRINCIPALS.has(r.Type)) {
      for (const p of asArray<any>(r.Properties?.Policies)) add(`${stack}/${id}/${p.PolicyName}`, p.PolicyDocument);
    }
  }
  return out;
}

/** Problems in a template's grants: wildcard actions, and `*` resources beyond the allow-lists. */
function wildcardGrants(tpl: any, stack: string): string[] {
  const problems: string[] = [];
  for (const { where, statement: st } of policyStatements(tpl, stack)) {
    if (st.Effect === 'Deny') continue;
    if (st.NotAction !== undefined) problems.push(`${where}: Allow with NotAction`);
    if (st.NotResource !== undefined) problems.push(`${where}: Allow with NotResource`);
    const actions = asArray<string>(st.Action);
    for (const a of actions) {
      if (a === '*' || a.endsWith(':*')) problems.push(`${where}: wildcard action ${a}`);
    }
    if (asArray<any>(st.Resource).map(flatten).includes('*')) {
      for (const a of actions) {
        if (!(a in ANY_RESOURCE_ACTIONS) && !(a in KNOWN_OVERBROAD)) problems.push(`${where}: ${a} on resource *`);
      }
    }
  }
  for (const [id, r] of Object.entries<any>(tpl.Resources ?? {})) {
    if (!PRINCIPALS.has(r.Type)) continue;
    for (const arn of asArray<any>(r.Properties?.ManagedPolicyArns).map(flatten)) {
      const name = /:iam::aws:policy\/(.+)$/.exec(arn)?.[1];
      if (name === undefined || !(name in MANAGED_POLICIES)) problems.push(`${stack}/${id}: managed policy ${arn}`);
    }
  }
  return problems;
}

const FLAVOURS = ['default', 'timestream', 'artifacts'] as const;

for (const flavour of FLAVOURS) {
  test(`${flavour}: no grant allows a whole service, any action, or any resource beyond what AWS requires`, () => {
    const s = synth(flavour);
    assert.deepEqual(PARTS.flatMap((part) => wildcardGrants(s.json[part], part)), []);
  });
}

test('every allow-listed action and managed policy is still used by some flavour', () => {
  const onAny = new Set<string>();
  const managed = new Set<string>();
  for (const flavour of FLAVOURS) {
    const s = synth(flavour);
    for (const part of PARTS) {
      for (const { statement: st } of policyStatements(s.json[part], part)) {
        if (st.Effect !== 'Deny' && asArray<any>(st.Resource).map(flatten).includes('*')) {
          for (const a of asArray<string>(st.Action)) onAny.add(a);
        }
      }
      for (const r of Object.values<any>(s.json[part].Resources ?? {})) {
        for (const arn of asArray<any>(r.Properties?.ManagedPolicyArns).map(flatten)) managed.add(arn.replace(/^.*:iam::aws:policy\//, ''));
      }
    }
  }
  for (const a of [...Object.keys(ANY_RESOURCE_ACTIONS), ...Object.keys(KNOWN_OVERBROAD)]) {
    assert.ok(onAny.has(a), `${a} is no longer granted on *: remove it from the allow-list`);
  }
  for (const m of Object.keys(MANAGED_POLICIES)) assert.ok(managed.has(m), `${m} is no longer attached: remove it`);
});

test('the checker catches dynamodb:* on * wherever it stands, and leaves Deny statements alone', () => {
  const bad = { Effect: 'Allow', Action: 'dynamodb:*', Resource: '*' };
  const doc = { Version: '2012-10-17', Statement: [bad] };
  const tpl = {
    Resources: {
      Policy: { Type: 'AWS::IAM::Policy', Properties: { PolicyName: 'p', PolicyDocument: doc, Roles: [{ Ref: 'Role' }] } },
      Managed: { Type: 'AWS::IAM::ManagedPolicy', Properties: { PolicyDocument: doc } },
      Role: {
        Type: 'AWS::IAM::Role',
        Properties: {
          AssumeRolePolicyDocument: { Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { Service: 'lambda.amazonaws.com' } }] },
          Policies: [{ PolicyName: 'inline', PolicyDocument: doc }],
          ManagedPolicyArns: ['arn:aws:iam::aws:policy/AdministratorAccess'],
        },
      },
      Queue: {
        Type: 'AWS::SQS::QueuePolicy',
        Properties: { PolicyDocument: { Statement: [{ Effect: 'Deny', Action: 'sqs:*', Principal: { AWS: '*' }, Resource: '*' }] } },
      },
      Sneaky: {
        Type: 'AWS::IAM::Policy',
        Properties: {
          PolicyName: 's',
          PolicyDocument: {
            Statement: [
              { Effect: 'Allow', Action: ['iot:DescribeEndpoint', 'iot:DeleteThing'], Resource: ['*'] },
              { Effect: 'Allow', Action: '*', Resource: { 'Fn::GetAtt': ['Table', 'Arn'] } },
              { Effect: 'Allow', NotAction: 'iam:*', Resource: { 'Fn::GetAtt': ['Table', 'Arn'] } },
            ],
          },
        },
      },
    },
  };
  assert.deepEqual(wildcardGrants(tpl, 't'), [
    't/Policy[0]: wildcard action dynamodb:*',
    't/Policy[0]: dynamodb:* on resource *',
    't/Managed[0]: wildcard action dynamodb:*',
    't/Managed[0]: dynamodb:* on resource *',
    't/Role/inline[0]: wildcard action dynamodb:*',
    't/Role/inline[0]: dynamodb:* on resource *',
    't/Sneaky[0]: iot:DeleteThing on resource *',
    't/Sneaky[1]: wildcard action *',
    't/Sneaky[2]: Allow with NotAction',
    't/Role: managed policy arn:aws:iam::aws:policy/AdministratorAccess',
  ]);
});
