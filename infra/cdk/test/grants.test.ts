// No wildcard grant anywhere in the synthesized templates: every policy statement of every
// stack (identity policies: AWS::IAM::Policy, AWS::IAM::ManagedPolicy, the inline Policies
// of roles, users and groups; resource policies: S3, SQS, SNS) is walked, and no Allow may
// name the action `*` or a whole service (`svc:*`), nor the resource `*`, except for the
// actions below, each with the reason AWS makes it so. Deny statements may use wildcards
// (they take rights away: the enforceSSL bucket and queue policies deny `s3:*` / `sqs:*`).
// Trust policies (AssumeRolePolicyDocument) say who may assume a role, not what it may do.
// IoT grants are held to more: each IoT action only on the resource types AWS authorizes
// it on (IOT_RESOURCE_TYPES), in this account and region, and the only IoT policy named is
// the device policy.
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
  // event-feed's event source mapping reads the events table's stream; CDK grants the
  // stream reads on the stream ARN, and ListStreams, which has no resource type, on `*`.
  'dynamodb:ListStreams': 'lists the streams of the account, no resource type',
  // CDK's BucketDeployment (console stack, lib/console.ts) invalidates the console's
  // index.html and config.json after an upload; CDK grants its invalidations on `*`.
  'cloudfront:CreateInvalidation': "CDK's BucketDeployment, console stack only",
  'cloudfront:GetInvalidation': "CDK's BucketDeployment, console stack only",
};

/** The stack each `*`-resource action above may stand in, where it is not every stack. */
const ANY_RESOURCE_STACKS: Record<string, string> = {
  'cloudfront:CreateInvalidation': 'console',
  'cloudfront:GetInvalidation': 'console',
};

/**
 * IoT resource types each IoT action of the app may be granted on (the Service
 * Authorization Reference, `list_awsiot`; for Attach/DetachThingPrincipal the developer
 * guide's "How AWS IoT works with IAM" table and AWS's AWSDeepLensServiceRolePolicy, which
 * name the certificate and the thing). `*` only for the ANY_RESOURCE_ACTIONS above.
 */
const IOT_RESOURCE_TYPES: Record<string, readonly string[]> = {
  'iot:Publish': ['topic'],
  'iot:CreateThing': ['thing'],
  'iot:DescribeThing': ['thing'],
  'iot:UpdateThing': ['thing'],
  'iot:DeleteThing': ['thing'],
  'iot:ListThingPrincipals': ['thing'],
  'iot:DescribeCertificate': ['cert'],
  'iot:UpdateCertificate': ['cert'],
  'iot:DeleteCertificate': ['cert'],
  'iot:AttachThingPrincipal': ['thing', 'cert'],
  'iot:DetachThingPrincipal': ['thing', 'cert'],
  // Authorized on the target (cert or thinggroup; only certificates here) and, where IAM
  // evaluates it, the policy: the device policy alone (checked below).
  'iot:AttachPolicy': ['cert', 'policy'],
  'iot:DetachPolicy': ['cert', 'policy'],
  'iot:GetPolicy': ['policy'],
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

/** The device policy's name in a stack's ARNs: policies of the device policy only. */
const DEVICE_POLICY_RE = /^mir-[a-z][a-z0-9-]*-device$/;

/**
 * Problems in one Allow statement's IoT grants: an IoT action not in IOT_RESOURCE_TYPES
 * (nor allowed on `*`), a resource of another type, an ARN whose region or account is a
 * wildcard, a resource type wildcard (`iot:...:*`), a policy other than the device policy.
 */
function iotGrantProblems(where: string, st: any): string[] {
  const problems: string[] = [];
  const iotActions = asArray<string>(st.Action).filter((a) => a.startsWith('iot:'));
  if (iotActions.length === 0) return problems;
  for (const r of asArray<any>(st.Resource).map(flatten)) {
    if (r === '*') continue; // judged against ANY_RESOURCE_ACTIONS by the caller
    const m = /^arn:(?:<token>|aws[a-z-]*):iot:([^:]*):([^:]*):([a-z]+)\/(.+)$/.exec(r);
    if (!m) {
      problems.push(`${where}: ${iotActions.join(',')} on ${r}: not an IoT resource ARN of a type`);
      continue;
    }
    const [, region, account, type, name] = m;
    if (region.includes('*') || account.includes('*')) problems.push(`${where}: ${r}: any region or account`);
    for (const a of iotActions) {
      const types = IOT_RESOURCE_TYPES[a];
      if (!types) problems.push(`${where}: ${a}: not in IOT_RESOURCE_TYPES`);
      else if (!types.includes(type)) problems.push(`${where}: ${a} on a ${type} resource`);
    }
    if (type === 'policy' && !DEVICE_POLICY_RE.test(name)) problems.push(`${where}: ${r}: a policy other than the device policy`);
  }
  return problems;
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
        if (!(a in ANY_RESOURCE_ACTIONS)) problems.push(`${where}: ${a} on resource *`);
        else if (ANY_RESOURCE_STACKS[a] && ANY_RESOURCE_STACKS[a] !== stack) problems.push(`${where}: ${a} on resource * outside the ${ANY_RESOURCE_STACKS[a]} stack`);
      }
    }
    problems.push(...iotGrantProblems(where, st));
  }
  for (const [id, r] of Object.entries<any>(tpl.Resources ?? {})) {
    if (!PRINCIPALS.has(r.Type)) continue;
    for (const ref of asArray<any>(r.Properties?.ManagedPolicyArns)) {
      // A customer managed policy of this template: its statements are walked above.
      if (tpl.Resources?.[ref?.Ref]?.Type === 'AWS::IAM::ManagedPolicy') continue;
      const arn = flatten(ref);
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
  for (const a of Object.keys(ANY_RESOURCE_ACTIONS)) {
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

test('the IoT checker catches a wildcard account or region, a wrong resource type and a policy other than the device policy', () => {
  const st = (Action: string | string[], Resource: any) => ({ Effect: 'Allow', Action, Resource });
  const tpl = {
    Resources: {
      P: {
        Type: 'AWS::IAM::Policy',
        Properties: {
          PolicyName: 'p',
          PolicyDocument: {
            Statement: [
              st('iot:DeleteThing', 'arn:aws:iot:*:123456789012:thing/*'),
              st('iot:DeleteThing', 'arn:aws:iot:eu-west-1:123456789012:cert/*'),
              st('iot:AttachPolicy', ['arn:aws:iot:eu-west-1:123456789012:cert/*', 'arn:aws:iot:eu-west-1:123456789012:policy/admin']),
              st('iot:DeleteThing', 'arn:aws:iot:eu-west-1:123456789012:*'),
              st('iot:CreatePolicy', 'arn:aws:iot:eu-west-1:123456789012:policy/mir-dev-device'),
              st('iot:AttachPolicy', ['arn:aws:iot:eu-west-1:123456789012:cert/*', 'arn:aws:iot:eu-west-1:123456789012:policy/mir-dev-device']),
            ],
          },
        },
      },
    },
  };
  assert.deepEqual(wildcardGrants(tpl, 't'), [
    't/P[0]: arn:aws:iot:*:123456789012:thing/*: any region or account',
    't/P[1]: iot:DeleteThing on a cert resource',
    't/P[2]: arn:aws:iot:eu-west-1:123456789012:policy/admin: a policy other than the device policy',
    't/P[3]: iot:DeleteThing on arn:aws:iot:eu-west-1:123456789012:*: not an IoT resource ARN of a type',
    't/P[4]: iot:CreatePolicy: not in IOT_RESOURCE_TYPES',
  ]);
});
