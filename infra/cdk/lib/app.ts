// Builds the whole Mir platform into an App: data, functions, IoT, API.
import { App, Environment, Tags } from 'aws-cdk-lib';
import { MirConfig, readConfig, stackName } from './config';
import { ApiStack } from './api-stack';
import { DataStack } from './data-stack';
import { FunctionsStack } from './functions-stack';
import { devicePolicyName, IotStack } from './iot-stack';

export interface MirApp {
  readonly config: MirConfig;
  readonly data: DataStack;
  readonly functions: FunctionsStack;
  readonly iot: IotStack;
  readonly api: ApiStack;
}

export function buildMirApp(app: App, env?: Environment): MirApp {
  const config = readConfig(app.node);
  const policyName = devicePolicyName(config.stage);
  const common = { env };

  const data = new DataStack(app, stackName(config.stage, 'data'), {
    ...common,
    description: `Mir ${config.stage}: DynamoDB tables, telemetry store, API access logs (retained)`,
    telemetrySink: config.telemetrySink,
    telemetryRetentionDays: config.telemetryRetentionDays,
    apiAccessLogRetentionDays: config.apiAccessLogRetentionDays,
  });
  const functions = new FunctionsStack(app, stackName(config.stage, 'functions'), {
    ...common,
    description: 'Mir: Rust Lambda functions (one per route)',
    config,
    data,
    devicePolicyName: policyName,
  });
  const iot = new IotStack(app, stackName(config.stage, 'iot'), {
    ...common,
    description: 'Mir: IoT device policy and topic rules',
    config,
    functions: functions.functions,
    devicePolicyName: policyName,
    alarmTopic: functions.alarmTopic,
  });
  const api = new ApiStack(app, stackName(config.stage, 'api'), {
    ...common,
    description: 'Mir: operator HTTP API (IAM auth)',
    config,
    functions: functions.functions,
    accessLogs: data.apiAccessLogs,
  });

  Tags.of(app).add('mir:stage', config.stage);
  Tags.of(app).add('project', 'mir');
  return { config, data, functions, iot, api };
}
