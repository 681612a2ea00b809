// Who may call which route of the operator API: one IAM role (and the managed policy it
// carries) per job, each allowed `execute-api:Invoke` on exactly the routes of that job,
// derived from the `http` entries of routes.json.
import { ArnFormat, CfnOutput, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { HttpRouteSpec, RoutesTable } from './routes';

export type Job = 'readOnly' | 'operator' | 'provisioner' | 'admin';
export const JOBS: readonly Job[] = ['readOnly', 'operator', 'provisioner', 'admin'];

/** What each job is for (role and policy descriptions, README). */
export const JOB_DESCRIPTIONS: Record<Job, string> = {
  readOnly: 'reads devices, commands catalog and records, configuration, telemetry and events (every GET route)',
  operator: 'read-only, plus sends commands and sets desired configuration (POST /v1/commands, POST /v1/config, schema refresh)',
  provisioner: 'read-only, plus creates, edits, disables and deletes devices and issues their certificates',
  admin: 'every route of the API',
};

/**
 * The job that a changing (non-GET) route belongs to besides admin: commands and
 * configuration are the operator's, devices and certificates the provisioner's. A new
 * changing route must be placed here, or the synth fails: no route is granted by accident.
 */
export function jobOfChangingRoute(route: HttpRouteSpec): 'operator' | 'provisioner' {
  const { path } = route;
  if (path === '/v1/commands' || path.startsWith('/v1/commands/')) return 'operator';
  if (path === '/v1/config' || path.startsWith('/v1/config/')) return 'operator';
  // Records a module's custom event (POST /v1/events): operations, like commands.
  if (path === '/v1/events') return 'operator';
  // Asks the device to send its hello again (publishes hello/get): operations, not provisioning.
  if (path === '/v1/devices/{deviceId}/schema/refresh') return 'operator';
  if (path === '/v1/devices' || path.startsWith('/v1/devices/')) return 'provisioner';
  throw new Error(
    `routes.json route ${route.method} ${route.path} belongs to no operator job: place it in jobOfChangingRoute (lib/operator-access.ts)`,
  );
}

/** The routes.json routes a job may call. */
export function routesOf(job: Job, routes: RoutesTable): HttpRouteSpec[] {
  const all = routes.functions.flatMap((f) => f.http);
  if (job === 'admin') return all;
  return all.filter((r) => r.method === 'GET' || (job !== 'readOnly' && jobOfChangingRoute(r) === job));
}

/**
 * The IAM resource of one route: `<api>/*\/<METHOD><path>` with every `{param}` segment
 * as `*` and the literal segments kept. (HttpRoute.grantInvoke would do it, but it turns
 * everything after the first parameter into `*`: `POST /v1/devices/*` would let the
 * operator's schema refresh also issue certificates.) The stage is `*`: the API has one.
 */
export function routeResourceName(apiId: string, route: HttpRouteSpec): string {
  const path = route.path
    .split('/')
    .map((segment) => (/^\{.+\}$/.test(segment) ? '*' : segment))
    .join('/');
  return `${apiId}/*/${route.method}${path}`;
}

export interface OperatorRolesProps {
  readonly api: apigw.IHttpApi;
  readonly routes: RoutesTable;
  readonly stage: string;
}

export class OperatorRoles extends Construct {
  public readonly roles = new Map<Job, iam.Role>();
  public readonly policies = new Map<Job, iam.ManagedPolicy>();

  constructor(scope: Construct, id: string, props: OperatorRolesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    for (const job of JOBS) {
      const name = job.charAt(0).toUpperCase() + job.slice(1);
      const resources = routesOf(job, props.routes).map((r) =>
        stack.formatArn({ service: 'execute-api', resource: routeResourceName(props.api.apiId, r), arnFormat: ArnFormat.NO_RESOURCE_NAME }),
      );
      const policy = new iam.ManagedPolicy(this, `${name}Policy`, {
        description: `mir ${props.stage} API, ${job}: ${JOB_DESCRIPTIONS[job]}`.slice(0, 1000),
        statements: [new iam.PolicyStatement({ sid: 'InvokeRoutes', actions: ['execute-api:Invoke'], resources })],
      });
      // Trusts the account: whoever the account's own IAM (or IAM Identity Center) lets
      // call sts:AssumeRole on it. Name generated; the stack output gives the ARN.
      const role = new iam.Role(this, `${name}Role`, {
        assumedBy: new iam.AccountRootPrincipal(),
        description: `mir ${props.stage} API, ${job}: ${JOB_DESCRIPTIONS[job]}`.slice(0, 1000),
        managedPolicies: [policy],
      });
      this.policies.set(job, policy);
      this.roles.set(job, role);
      new CfnOutput(stack, `${name}RoleArn`, { value: role.roleArn, description: `Assume to use the API as ${job}` });
      new CfnOutput(stack, `${name}PolicyArn`, { value: policy.managedPolicyArn, description: `execute-api:Invoke on the ${job} routes` });
    }
  }
}
