// Builds the whole Mir platform into an App: data, functions, IoT, API, the console, and the dashboard.
import { App, Environment, Tags } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { MirConfig, readConfig, stackName } from './config';
import { ApiStack } from './api-stack';
import { ConsoleStack } from './console-stack';
import { MirDashboard } from './dashboard';
import { DataStack } from './data-stack';
import { FunctionsStack } from './functions-stack';
import { devicePolicyName, IotStack } from './iot-stack';
import { claimAccountRegion } from './stage-lock';

export interface MirApp {
  readonly config: MirConfig;
  readonly data: DataStack;
  readonly functions: FunctionsStack;
  readonly iot: IotStack;
  readonly api: ApiStack;
  readonly console: ConsoleStack;
}

export interface MirAppOptions {
  /** The stage to build, instead of the mir:stage context (an app that builds several). */
  readonly stage?: string;
}

/**
 * Builds one stage into `app`. Building a second stage into the same app for the same
 * explicit account and region fails: one stage per account and region (stage-lock.ts).
 */
export function buildMirApp(app: App, env?: Environment, options: MirAppOptions = {}): MirApp {
  const config = readConfig(app.node, options.stage);
  const policyName = devicePolicyName(config.stage);
  const common = { env };

  const data = new DataStack(app, stackName(config.stage, 'data'), {
    ...common,
    description: `Mir ${config.stage}: DynamoDB tables, telemetry store, API access logs (retained), the event bus; the stage lock of the account and region`,
    stage: config.stage,
    telemetrySink: config.telemetrySink,
    telemetryRetentionDays: config.telemetryRetentionDays,
    apiAccessLogRetentionDays: config.apiAccessLogRetentionDays,
    feedArchiveDays: config.feedArchiveDays,
  });
  claimAccountRegion(app, data, config.stage);
  const functions = new FunctionsStack(app, stackName(config.stage, 'functions'), {
    ...common,
    description: 'Mir: Rust Lambda functions (one per route)',
    config,
    data,
    devicePolicyName: policyName,
  });
  const iot = new IotStack(app, stackName(config.stage, 'iot'), {
    ...common,
    description: 'Mir: IoT device policy and topic rules; the CloudWatch dashboard',
    config,
    functions: functions.functions,
    devicePolicyName: policyName,
    alarmTopic: functions.alarmTopic,
  });
  const api = new ApiStack(app, stackName(config.stage, 'api'), {
    ...common,
    description: 'Mir: operator HTTP API (IAM auth) and the console (CloudFront, Cognito sign-in)',
    config,
    functions: functions.functions,
    accessLogs: data.apiAccessLogs,
    operators: data.operators,
  });

  const consoleStack = new ConsoleStack(app, stackName(config.stage, 'console'), {
    ...common,
    description: 'Mir: the console\'s files (front end and config.json) on the api stack\'s CloudFront site',
    api,
    data,
  });

  // In the iot stack, which then depends on every other stack and is deployed last (dashboard.ts).
  const tables = new Map<string, dynamodb.ITable>([
    ['twins', data.twins],
    ['schemas', data.schemas],
    ['commands', data.commands],
    ['events', data.events],
  ]);
  if (data.telemetryTable) tables.set('telemetry', data.telemetryTable);
  new MirDashboard(iot, 'Dashboard', {
    stage: config.stage,
    routes: config.routes,
    functions: functions.functions,
    reservedConcurrency: config.deviceConcurrency,
    rules: iot.rules,
    failureQueue: functions.deadLetterQueue,
    api: api.api,
    tables,
  });

  for (const stack of [data, functions, iot, api, consoleStack]) {
    Tags.of(stack).add('mir:stage', config.stage);
    Tags.of(stack).add('project', 'mir');
  }
  return { config, data, functions, iot, api, console: consoleStack };
}
