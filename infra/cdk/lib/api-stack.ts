// The operator API: an HTTP API with IAM (SigV4) authorization on every route, throttled,
// with an access log line per request (caller identity, route, status) and one role per
// operator job (operator-access.ts); and the console that calls it (console.ts), whose
// origin alone passes the API's CORS.
import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { MirConfig } from './config';
import { consoleConnectSources, ConsoleSignIn, ConsoleSite, SIGNED_REQUEST_HEADERS } from './console';
import { pascal } from './functions-stack';
import { OperatorRoles } from './operator-access';

export interface ApiStackProps extends StackProps {
  readonly config: MirConfig;
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
  /** Retained, in the data stack: the access log outlives this stack. */
  readonly accessLogs: logs.ILogGroup;
  /** The console's operators (retained, in the data stack). */
  readonly operators: cognito.IUserPool;
}

/**
 * One JSON object per request. The identity fields are those of the SigV4 signer (IAM
 * authorization): the ARN of the user or assumed-role session, its principal id and
 * account. `requestId` is the id API Gateway returns in the `apigw-requestid` header.
 */
export const ACCESS_LOG_FORMAT: Record<string, string> = {
  requestId: '$context.requestId',
  extendedRequestId: '$context.extendedRequestId',
  requestTime: '$context.requestTime',
  userArn: '$context.identity.userArn',
  caller: '$context.identity.caller',
  user: '$context.identity.user',
  accountId: '$context.identity.accountId',
  principalOrgId: '$context.identity.principalOrgId',
  sourceIp: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  routeKey: '$context.routeKey',
  path: '$context.path',
  status: '$context.status',
  responseLength: '$context.responseLength',
  responseLatencyMs: '$context.responseLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integrationErrorMessage',
  error: '$context.error.message',
};

export class ApiStack extends Stack {
  public readonly api: apigw.HttpApi;
  public readonly stage: apigw.HttpStage;
  public readonly operatorRoles: OperatorRoles;
  /** The console's bucket and distribution; its files are the console stack's. */
  public readonly console: ConsoleSite;
  public readonly consoleSignIn: ConsoleSignIn;

  constructor(scope: Construct, id: string, props: ApiStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.console = new ConsoleSite(this, 'Console', { stage: config.stage, connectSources: consoleConnectSources(this.region) });
    this.api = new apigw.HttpApi(this, 'HttpApi', {
      description: `mir ${config.stage} operator API (IAM auth)`,
      defaultAuthorizer: new HttpIamAuthorizer(),
      // API Gateway answers the preflight itself; every real call still needs SigV4.
      corsPreflight: {
        allowOrigins: [this.console.origin],
        allowHeaders: SIGNED_REQUEST_HEADERS,
        allowMethods: [
          apigw.CorsHttpMethod.GET,
          apigw.CorsHttpMethod.POST,
          apigw.CorsHttpMethod.PUT,
          apigw.CorsHttpMethod.PATCH,
          apigw.CorsHttpMethod.DELETE,
        ],
        maxAge: Duration.hours(1),
      },
      // The stage below, with throttling and access logs.
      createDefaultStage: false,
    });
    // Where HttpApi puts its own default stage (createDefaultStage), so that a deployed
    // stage keeps its logical id and is updated in place: a new id would create a second
    // $default stage on the API, which API Gateway refuses.
    this.stage = new apigw.HttpStage(this.api, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      description: `mir ${config.stage}: throttled, access-logged`,
      // The default route settings: every route, every caller together.
      throttle: { rateLimit: config.apiThrottle.rateLimit, burstLimit: config.apiThrottle.burstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(props.accessLogs),
        // One JSON line; API Gateway writes "-" for a field without value.
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FORMAT)),
      },
    });

    for (const spec of config.routes.functions) {
      if (spec.http.length === 0) continue;
      const fn = props.functions.get(spec.name);
      if (!fn) throw new Error(`no function for routes.json entry "${spec.name}"`);
      const integration = new HttpLambdaIntegration(`${pascal(spec.name)}Integration`, fn, {
        payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
      });
      for (const route of spec.http) {
        this.api.addRoutes({
          path: route.path,
          methods: [apigw.HttpMethod[route.method]],
          integration,
        });
      }
    }

    this.operatorRoles = new OperatorRoles(this, 'OperatorRoles', { api: this.api, routes: config.routes, stage: config.stage });

    this.consoleSignIn = new ConsoleSignIn(this, 'ConsoleSignIn', {
      stage: config.stage,
      userPool: props.operators,
      callbackUrl: this.console.url,
      policies: this.operatorRoles.policies,
    });

    new CfnOutput(this, 'ConsoleBucket', { value: this.console.bucket.bucketName, description: "The console's files (retained; see Removing it)" });
    new CfnOutput(this, 'ApiUrl', { value: this.stage.url, description: 'Base URL of the operator API (SigV4, service execute-api)' });
    new CfnOutput(this, 'Region', { value: this.region });
  }
}

