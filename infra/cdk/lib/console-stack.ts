// The console's files: the built front end and its config.json, uploaded to the site of
// the api stack (console.ts). A stack of its own, deployed after the api stack, so that
// the upload function and its permissions stay out of the API's stack.
import { CfnOutput, Stack, StackProps } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { ApiStack } from './api-stack';
import { ConsoleDeployment } from './console';
import { DataStack } from './data-stack';

export interface ConsoleStackProps extends StackProps {
  readonly api: ApiStack;
  readonly data: DataStack;
}

export class ConsoleStack extends Stack {
  constructor(scope: Construct, id: string, props: ConsoleStackProps) {
    super(scope, id, props);
    const { api, data } = props;
    new ConsoleDeployment(this, 'Console', {
      site: api.console,
      config: {
        api: api.stage.url,
        auth: {
          kind: 'cognito',
          region: this.region,
          userPoolId: data.operators.userPoolId,
          userPoolClientId: api.consoleSignIn.client.userPoolClientId,
          identityPoolId: api.consoleSignIn.identityPool.ref,
          domain: api.consoleSignIn.domainName,
          redirectUri: api.console.url,
        },
      },
    });
    new CfnOutput(this, 'ConsoleUrl', {
      value: api.console.url,
      description: 'The Mir console: sign in as an operator of OperatorsUserPoolId (infra/cdk/README.md, Console)',
    });
  }
}
