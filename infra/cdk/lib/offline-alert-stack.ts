// The example module offline-alert (modules/offline-alert) deployed with MirModule: a
// Rust Lambda in worker mode whose queue holds each DeviceOffline event N minutes, then
// checks the device through the platform's API (SigV4, an operator job's policy) and
// records a custom DeviceOfflineAlert event. A stack of its own, beside a deployed stage:
//
//   npx cdk deploy --app 'node build/bin/offline-alert.js' \
//     -c mir:eventBusArn=<data stack EventBusArn> -c mir:apiUrl=<api stack ApiUrl> \
//     -c mir:apiPolicyArn=<api stack OperatorPolicyArn> [-c mir:offlineMinutes=5]
// (the operator job: it reads devices and records custom events; readOnly cannot).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { MirModule } from './module';

/** The example's crate and its Lambda binary (modules/offline-alert/Cargo.toml). */
export const OFFLINE_ALERT_CRATE = 'mir-module-offline-alert';
export const OFFLINE_ALERT_BINARY = 'offline-alert-lambda';

export interface OfflineAlertStackProps extends StackProps {
  /** The stage's bus (data stack output EventBusArn). */
  readonly eventBusArn: string;
  /** The stage's API (api stack output ApiUrl). */
  readonly apiUrl: string;
  /** The operator job's managed policy (api stack output OperatorPolicyArn): reads devices, records custom events. */
  readonly apiPolicyArn: string;
  /** Minutes offline before the alert, 1 to 15 (SQS's longest delivery delay). */
  readonly minutes: number;
  /** The workspace's Cargo.toml, to build the binary with cargo lambda. */
  readonly manifestPath: string;
  /** A prebuilt `<dir>/offline-alert-lambda/bootstrap` instead (tests, CI). */
  readonly artifactsDir?: string;
}

export class OfflineAlertStack extends Stack {
  public readonly module: MirModule;
  public readonly handler: lambda.Function;

  constructor(scope: Construct, id: string, props: OfflineAlertStackProps) {
    super(scope, id, props);
    if (!(Number.isInteger(props.minutes) && props.minutes >= 1 && props.minutes <= 15)) {
      throw new Error(`offline-alert: minutes must be a whole number from 1 to 15, got ${props.minutes}`);
    }
    const logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY });
    const common: lambda.FunctionOptions = {
      description: `Mir module offline-alert: a DeviceOfflineAlert event after ${props.minutes} minutes offline`,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 128,
      timeout: Duration.seconds(30),
      logGroup,
      environment: {
        MIR_API_URL: props.apiUrl,
        MIR_OFFLINE_MINUTES: String(props.minutes),
        RUST_LOG: 'info',
      },
    };
    if (props.artifactsDir) {
      const dir = path.join(props.artifactsDir, OFFLINE_ALERT_BINARY);
      if (!fs.existsSync(path.join(dir, 'bootstrap'))) throw new Error(`prebuilt artifact missing: ${path.join(dir, 'bootstrap')}`);
      this.handler = new lambda.Function(this, 'Handler', { ...common, runtime: lambda.Runtime.PROVIDED_AL2023, handler: 'bootstrap', code: lambda.Code.fromAsset(dir) });
    } else {
      this.handler = new RustFunction(this, 'Handler', {
        ...common,
        runtime: 'provided.al2023',
        manifestPath: props.manifestPath,
        binaryName: OFFLINE_ALERT_BINARY,
        bundling: { architecture: lambda.Architecture.ARM_64 },
      });
    }
    this.module = new MirModule(this, 'Module', {
      bus: events.EventBus.fromEventBusArn(this, 'Bus', props.eventBusArn),
      handler: this.handler,
      events: { reasons: ['DeviceOffline'] },
      worker: { delay: Duration.minutes(props.minutes), batchSize: 10 },
      apiPolicy: iam.ManagedPolicy.fromManagedPolicyArn(this, 'ApiPolicy', props.apiPolicyArn),
    });
  }
}
