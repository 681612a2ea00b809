// One MirFunction per routes.json entry, with the grants, environment and schedules its
// `access` and `schedules` ask for.
import { ArnFormat, CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import * as path from 'node:path';
import { ENV, MirConfig } from './config';
import { DataStack } from './data-stack';
import { MirFunction } from './mir-function';
import { FunctionSpec, isApiFunction, pascal, Rw } from './routes';
import { FunctionAlarms } from './alarms';

export interface FunctionsStackProps extends StackProps {
  readonly config: MirConfig;
  readonly data: DataStack;
  /** Name of the device IoT policy (created by the IoT stack). */
  readonly devicePolicyName: string;
}

export { pascal };

export class FunctionsStack extends Stack {
  /** routes.json function name -> Lambda function. */
  public readonly functions = new Map<string, lambda.IFunction>();
  public readonly deadLetterQueue: sqs.Queue;
  /** Where every alarm of the platform notifies. */
  public readonly alarmTopic: sns.Topic;
  public readonly iotDataEndpoint: string;

  constructor(scope: Construct, id: string, props: FunctionsStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.deadLetterQueue = new sqs.Queue(this, 'FailedInvocations', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });

    // The account's iot:Data-ATS endpoint host, looked up at deploy time.
    const endpoint = new cr.AwsCustomResource(this, 'DescribeIotDataEndpoint', {
      onUpdate: {
        service: 'Iot',
        action: 'DescribeEndpoint',
        parameters: { endpointType: 'iot:Data-ATS' },
        physicalResourceId: cr.PhysicalResourceId.of('iot-data-ats-endpoint'),
      },
      policy: cr.AwsCustomResourcePolicy.fromSdkCalls({ resources: cr.AwsCustomResourcePolicy.ANY_RESOURCE }),
      installLatestAwsSdk: false,
    });
    this.iotDataEndpoint = endpoint.getResponseField('endpointAddress');
    new CfnOutput(this, 'IotDataEndpoint', { value: this.iotDataEndpoint, description: 'MQTT endpoint for devices (port 8883, mTLS)' });

    const manifestPath = path.join(config.repoRoot, 'Cargo.toml');
    for (const spec of config.routes.functions) {
      const mf = new MirFunction(this, pascal(spec.name), {
        routeName: spec.name,
        crate: spec.crate,
        description: `mir ${spec.name}: ${spec.description}`,
        manifestPath,
        artifactsDir: config.artifactsDir,
        timeout: Duration.seconds(isApiFunction(spec) ? 29 : 30),
        // Device-facing functions (those with rules) only; undefined for the API functions.
        reservedConcurrentExecutions: config.deviceConcurrency.get(spec.name),
        environment: this.environmentFor(spec, props),
        deadLetterQueue: this.deadLetterQueue,
      });
      this.grant(mf.function, spec, props);
      for (const [i, s] of spec.schedules.entries()) {
        new events.Rule(this, `${pascal(spec.name)}Schedule${i}`, {
          description: `mir ${spec.name}: every ${s.rateMinutes} min`,
          schedule: events.Schedule.rate(Duration.minutes(s.rateMinutes)),
          targets: [new targets.LambdaFunction(mf.function, { retryAttempts: 2, maxEventAge: Duration.hours(1) })],
        });
      }
      for (const st of spec.streams ?? []) this.addStream(mf.function, st.table, props.data);
      this.functions.set(spec.name, mf.function);
    }

    this.alarmTopic = new sns.Topic(this, 'AlarmTopic', { displayName: 'Mir alarms', enforceSSL: true });
    new FunctionAlarms(this, 'Alarms', { topic: this.alarmTopic, failureQueue: this.deadLetterQueue, functions: this.functions });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn, description: 'Subscribe to it to get the alarms' });
    new CfnOutput(this, 'FailureQueueUrl', { value: this.deadLetterQueue.queueUrl, description: 'Invocations that failed after their retries (redrive: docs/architecture.md, Operations)' });
  }

  /** Only the variables a function's access needs (see ENV). */
  private environmentFor(spec: FunctionSpec, props: FunctionsStackProps): Record<string, string> {
    const { config, data } = props;
    const a = spec.access;
    const env: Record<string, string> = { [ENV.rustLog]: config.rustLog };
    if (a.twins) env[ENV.twinsTable] = data.twins.tableName;
    if (a.schemas) env[ENV.schemasTable] = data.schemas.tableName;
    if (a.commands) {
      env[ENV.commandsTable] = data.commands.tableName;
      env[ENV.commandsTtlDays] = String(config.commandsTtlDays);
    }
    if (a.events) {
      env[ENV.eventsTable] = data.events.tableName;
      env[ENV.eventsTtlDays] = String(config.eventsTtlDays);
      if (a.events.includes('w')) env[ENV.eventRetention] = config.eventRetention;
    }
    if (a.telemetry) {
      env[ENV.telemetrySink] = data.telemetrySink;
      env[ENV.telemetryRetentionDays] = String(config.telemetryRetentionDays);
      if (data.timestream) {
        env[ENV.timestreamDatabase] = data.timestream.databaseName;
        env[ENV.timestreamTable] = data.timestream.tableName;
      } else if (data.telemetryTable) {
        env[ENV.telemetryTable] = data.telemetryTable.tableName;
      }
    }
    if (a.publish || a.certificates) env[ENV.iotDataEndpoint] = this.iotDataEndpoint;
    if (a.certificates) env[ENV.iotPolicyName] = props.devicePolicyName;
    if (this.putsOnBus(spec, config)) env[ENV.eventBusName] = data.eventBus.bus.eventBusName;
    return env;
  }

  private grant(fn: lambda.IFunction, spec: FunctionSpec, props: FunctionsStackProps): void {
    const { data } = props;
    const a = spec.access;
    const grantTable = (table: dynamodb.ITable, rw: Rw) => {
      if (rw === 'r') table.grantReadData(fn);
      else if (rw === 'w') table.grantWriteData(fn);
      else table.grantReadWriteData(fn);
    };
    if (a.twins) grantTable(data.twins, a.twins);
    if (a.schemas) grantTable(data.schemas, a.schemas);
    if (a.commands) grantTable(data.commands, a.commands);
    if (a.events) grantTable(data.events, a.events);
    if (a.telemetry) {
      if (data.telemetryTable) {
        grantTable(data.telemetryTable, a.telemetry);
      } else if (data.timestream) {
        const ts = data.timestream;
        const actions: string[] = [];
        if (a.telemetry.includes('w')) actions.push('timestream:WriteRecords');
        if (a.telemetry.includes('r')) actions.push('timestream:Select', 'timestream:DescribeTable', 'timestream:ListMeasures');
        fn.addToRolePolicy(new iam.PolicyStatement({ actions, resources: [ts.tableArn] }));
        // Endpoint discovery does not support resource-level permissions.
        fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['timestream:DescribeEndpoints'], resources: ['*'] }));
        if (a.telemetry.includes('w')) {
          // Error reports for records rejected by magnetic store writes.
          ts.rejectedDataBucket.grantPut(fn, 'rejected/*');
        }
      }
    }
    if (a.publish) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['iot:Publish'],
          resources: a.publish.map((suffix) => this.iotArn('topic', `mir/*/${suffix}`)),
        }),
      );
    }
    if (a.certificates) this.grantCertificates(fn, props.devicePolicyName);
    if (this.putsOnBus(spec, props.config)) data.eventBus.bus.grantPutEventsTo(fn);
  }

  /** The event feed's publishers, and the telemetry feed's when the stage turns it on. */
  private putsOnBus(spec: FunctionSpec, config: MirConfig): boolean {
    return Boolean(spec.access.feed || (spec.access.telemetryFeed && config.telemetryFeed));
  }

  /**
   * The new events of the events table (the stream's inserts of `DAY#` items; the
   * directory of days and TTL deletions are filtered out before Lambda is invoked, so
   * they cost nothing). The handler reports the first record it could not publish
   * (ReportBatchItemFailures), Lambda retries from there, and a batch still failing
   * after its retries or a day old goes to the failure queue (as a pointer to the
   * records, which stay readable in the table).
   */
  private addStream(fn: lambda.IFunction, table: 'events', data: DataStack): void {
    const source = { events: data.events }[table];
    fn.addEventSource(
      new sources.DynamoEventSource(source, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(1),
        reportBatchItemFailures: true,
        retryAttempts: 10,
        maxRecordAge: Duration.days(1),
        onFailure: new sources.SqsDlq(this.deadLetterQueue),
        filters: [
          lambda.FilterCriteria.filter({
            eventName: lambda.FilterRule.isEqual('INSERT'),
            dynamodb: { NewImage: { pk: { S: lambda.FilterRule.beginsWith('DAY#') } } },
          }),
        ],
      }),
    );
  }

  /**
   * The IoT control plane of device provisioning (things, certificates, the device policy),
   * each action on the narrowest resource the Service Authorization Reference (SAR) allows.
   * Things are named by device id without a stage prefix: this is the only stage of the
   * account and region (the stage lock of the data stack), so thing/* is this stage's.
   */
  private grantCertificates(fn: lambda.IFunction, devicePolicyName: string): void {
    const things = this.iotArn('thing', '*');
    const certs = this.iotArn('cert', '*');
    const devicePolicy = this.iotArn('policy', devicePolicyName);
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'DeviceThings',
        actions: ['iot:CreateThing', 'iot:DescribeThing', 'iot:UpdateThing', 'iot:DeleteThing', 'iot:ListThingPrincipals'],
        resources: [things],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'DeviceCertificates',
        actions: ['iot:DescribeCertificate', 'iot:UpdateCertificate', 'iot:DeleteCertificate'],
        resources: [certs],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        // The IoT developer guide authorizes these on the certificate (the principal), AWS's
        // own managed policies (AWSDeepLensServiceRolePolicy) on the thing and the
        // certificate: both named, nothing else.
        sid: 'ThingPrincipals',
        actions: ['iot:AttachThingPrincipal', 'iot:DetachThingPrincipal'],
        resources: [things, certs],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        // AttachPolicy/DetachPolicy authorize on the target (SAR: cert or thinggroup): the
        // certificates, plus the device policy, the only policy the function attaches.
        sid: 'DevicePolicyOnCertificates',
        actions: ['iot:AttachPolicy', 'iot:DetachPolicy'],
        resources: [certs, devicePolicy],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        // Whatever else the account allows: no policy but the device policy, and no target
        // but a certificate (a thing group would pass the policy to every thing in it).
        sid: 'OnlyTheDevicePolicyOnCertificates',
        effect: iam.Effect.DENY,
        actions: ['iot:AttachPolicy', 'iot:AttachPrincipalPolicy'],
        notResources: [certs, devicePolicy],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        sid: 'DevicePolicyRead',
        actions: ['iot:GetPolicy'],
        resources: [devicePolicy],
      }),
    );
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        // No resource type in the SAR: the certificate does not exist before the call.
        sid: 'NewCertificates',
        actions: ['iot:CreateCertificateFromCsr', 'iot:CreateKeysAndCertificate'],
        resources: ['*'],
      }),
    );
  }

  private iotArn(resource: string, resourceName: string): string {
    return Stack.of(this).formatArn({ service: 'iot', resource, resourceName, arnFormat: ArnFormat.SLASH_RESOURCE_NAME });
  }
}
