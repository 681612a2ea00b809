// AWS IoT Core: the device policy and one topic rule per routes.json rule.
import { ArnFormat, CfnOutput, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { MirConfig, THING_NAME_VAR, TOPICS } from './config';
import { RuleAlarms } from './alarms';
import { pascal } from './routes';

export interface IotStackProps extends StackProps {
  readonly config: MirConfig;
  /** routes.json function name -> Lambda function. */
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
  readonly devicePolicyName: string;
  /** Where the topic rules' alarms notify. */
  readonly alarmTopic: sns.ITopic;
}

/**
 * The device policy name. It is derived from the stage (not generated) because the
 * functions stack needs it and the IoT stack depends on the functions stack: a
 * reference the other way round would be a cycle.
 */
export function devicePolicyName(stage: string): string {
  return `mir-${stage}-device`;
}

/** Construct id of the topic rule of routes.json `functions[].rules[index]`: "HelloRule0". */
export function topicRuleId(functionName: string, index: number): string {
  return `${pascal(functionName)}Rule${index}`;
}

export class IotStack extends Stack {
  public readonly devicePolicy: iot.CfnPolicy;
  /** topicRuleId -> topic rule, one per routes.json rule. */
  public readonly rules: ReadonlyMap<string, iot.CfnTopicRule>;

  constructor(scope: Construct, id: string, props: IotStackProps) {
    super(scope, id, props);

    this.devicePolicy = new iot.CfnPolicy(this, 'DevicePolicy', {
      policyName: props.devicePolicyName,
      policyDocument: devicePolicyDocument(this),
    });
    new CfnOutput(this, 'DevicePolicyName', { value: props.devicePolicyName });

    // Where a rule's action errors go (e.g. the Lambda invoke was refused or throttled).
    const errorLogs = new logs.LogGroup(this, 'TopicRuleErrors', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const errorRole = new iam.Role(this, 'TopicRuleErrorRole', {
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com'),
      description: 'Lets the mir topic rules write their action errors to CloudWatch Logs',
    });
    const errorLogsWrite = errorLogs.grantWrite(errorRole);
    errorRole.addToPolicy(new iam.PolicyStatement({ actions: ['logs:DescribeLogStreams'], resources: [errorLogs.logGroupArn] }));

    const rules = new Map<string, iot.CfnTopicRule>();
    for (const spec of props.config.routes.functions) {
      const fn = props.functions.get(spec.name);
      if (!fn) throw new Error(`no function for routes.json entry "${spec.name}"`);
      for (const [i, r] of spec.rules.entries()) {
        const id = topicRuleId(spec.name, i);
        const rule = new iot.CfnTopicRule(this, id, {
          topicRulePayload: {
            description: `mir ${spec.name}: ${r.topicFilter} -> ${spec.crate}`,
            sql: r.sql,
            awsIotSqlVersion: '2016-03-23',
            ruleDisabled: false,
            actions: [{ lambda: { functionArn: fn.functionArn } }],
            errorAction: { cloudwatchLogs: { logGroupName: errorLogs.logGroupName, roleArn: errorRole.roleArn } },
          },
        });
        // The rule must not run before its error role may write: depend on the role's
        // policy (the role itself is already a dependency through roleArn).
        errorLogsWrite.applyBefore(rule);
        rules.set(id, rule);
        // The permission lives here (not in the functions stack) so that the
        // functions stack does not depend on the rules.
        new lambda.CfnPermission(this, `${id}Invoke`, {
          action: 'lambda:InvokeFunction',
          functionName: fn.functionArn,
          principal: 'iot.amazonaws.com',
          sourceArn: rule.attrArn,
          sourceAccount: this.account,
        });
      }
    }
    new RuleAlarms(this, 'RuleAlarms', { topic: props.alarmTopic, rules });
    this.rules = rules;
  }
}

/**
 * A device may connect only as its own thing, publish only its device->cloud topics and
 * its own custom routes (`mir/{id}/x/{module}/{route}`, for modules: lib/module.ts), and
 * subscribe/receive only its cloud->device topics: every resource carries
 * ${iot:Connection.Thing.ThingName} in the device id position.
 */
/** The level of custom device routes (mir-proto topics::CUSTOM). */
export const CUSTOM_ROUTES = 'x';

export function devicePolicyDocument(scope: Construct): Record<string, unknown> {
  const stack = Stack.of(scope);
  const arn = (resource: string, resourceName: string) =>
    stack.formatArn({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME });
  const own = (suffix: string) => `mir/${THING_NAME_VAR}/${suffix}`;
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ConnectAsOwnThing',
        Effect: 'Allow',
        Action: 'iot:Connect',
        Resource: [arn('client', THING_NAME_VAR)],
        // The certificate must be attached to the thing whose name is the client id.
        Condition: { Bool: { 'iot:Connection.Thing.IsAttached': 'true' } },
      },
      {
        Sid: 'PublishOwnTopics',
        Effect: 'Allow',
        Action: 'iot:Publish',
        Resource: TOPICS.deviceToCloud.map((s) => arn('topic', own(s))),
      },
      {
        // Below its own id only: the wildcard can never reach another device's topics.
        Sid: 'PublishOwnCustomRoutes',
        Effect: 'Allow',
        Action: 'iot:Publish',
        Resource: [arn('topic', own(`${CUSTOM_ROUTES}/*`))],
      },
      {
        Sid: 'SubscribeOwnTopics',
        Effect: 'Allow',
        Action: 'iot:Subscribe',
        Resource: TOPICS.cloudToDevice.map((s) => arn('topicfilter', own(s))),
      },
      {
        Sid: 'ReceiveOwnTopics',
        Effect: 'Allow',
        Action: 'iot:Receive',
        Resource: TOPICS.cloudToDevice.map((s) => arn('topic', own(s))),
      },
    ],
  };
}
