// The operator API: an HTTP API with IAM (SigV4) authorization on every route, and one
// role per operator job (operator-access.ts).
import { CfnOutput, Stack, StackProps } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { MirConfig } from './config';
import { pascal } from './functions-stack';
import { OperatorRoles } from './operator-access';

export interface ApiStackProps extends StackProps {
  readonly config: MirConfig;
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
}

export class ApiStack extends Stack {
  public readonly api: apigw.HttpApi;
  public readonly operatorRoles: OperatorRoles;

  constructor(scope: Construct, id: string, props: ApiStackProps) {
    super(scope, id, props);

    this.api = new apigw.HttpApi(this, 'HttpApi', {
      description: `mir ${props.config.stage} operator API (IAM auth)`,
      defaultAuthorizer: new HttpIamAuthorizer(),
      createDefaultStage: true,
    });

    for (const spec of props.config.routes.functions) {
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

    this.operatorRoles = new OperatorRoles(this, 'OperatorRoles', { api: this.api, routes: props.config.routes, stage: props.config.stage });

    new CfnOutput(this, 'ApiUrl', { value: this.api.url ?? this.api.apiEndpoint, description: 'Base URL of the operator API (SigV4, service execute-api)' });
    new CfnOutput(this, 'Region', { value: this.region });
  }
}
