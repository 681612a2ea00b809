// MirFunction: every Rust Lambda of the platform, with one set of defaults.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Duration, RemovalPolicy, Tags } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { ENV } from './config';

/** Tag put on every MirFunction (and its role and log group): the routes.json function name. */
export const FUNCTION_TAG = 'mir:function';

/** The operation timeout stays this far below the function's timeout, to log and answer. */
export const SDK_TIMEOUT_MARGIN = Duration.seconds(1);
/** No single AWS call of a handler may take longer than this, whatever the function's timeout. */
export const MAX_SDK_OPERATION_TIMEOUT = Duration.seconds(10);
/** Attempts per operation the attempt timeout leaves room for (the SDK retries a hung attempt). */
export const SDK_ATTEMPTS_PER_OPERATION = 3;
export const MIN_SDK_ATTEMPT_TIMEOUT = Duration.seconds(1);

/**
 * The AWS SDK timeouts of a function (MIR_AWS_OPERATION_TIMEOUT_MS, MIR_AWS_ATTEMPT_TIMEOUT_MS):
 * the operation (every attempt of one call) ends SDK_TIMEOUT_MARGIN before the function
 * would, at most MAX_SDK_OPERATION_TIMEOUT; one attempt gets a third of that, at least
 * MIN_SDK_ATTEMPT_TIMEOUT (and never more than the operation).
 */
export function sdkTimeouts(functionTimeout: Duration): { operationMs: number; attemptMs: number } {
  const operationMs = Math.min(functionTimeout.toMilliseconds() - SDK_TIMEOUT_MARGIN.toMilliseconds(), MAX_SDK_OPERATION_TIMEOUT.toMilliseconds());
  if (operationMs < MIN_SDK_ATTEMPT_TIMEOUT.toMilliseconds()) {
    throw new Error(`a function timeout of ${functionTimeout.toHumanString()} leaves no room for AWS SDK calls`);
  }
  const attemptMs = Math.min(operationMs, Math.max(Math.floor(operationMs / SDK_ATTEMPTS_PER_OPERATION), MIN_SDK_ATTEMPT_TIMEOUT.toMilliseconds()));
  return { operationMs, attemptMs };
}

export interface MirFunctionProps {
  /** routes.json `name`, e.g. "hello". */
  readonly routeName: string;
  /** routes.json `crate`, which is also the binary name, e.g. "mir-fn-hello". */
  readonly crate: string;
  readonly description?: string;
  /** Absolute path of the workspace's root Cargo.toml (used when building with cargo lambda). */
  readonly manifestPath: string;
  /**
   * Prebuilt artifacts: `<artifactsDir>/<crate>/bootstrap` (the layout of
   * `cargo lambda build --release --arm64 --lambda-dir <artifactsDir>`). When unset, the
   * function is built by cargo-lambda-cdk's RustFunction during synth.
   */
  readonly artifactsDir?: string;
  /** API functions: 29 s (API Gateway stops waiting at 30 s); others: 30 s. */
  readonly timeout: Duration;
  readonly environment: Record<string, string>;
  /** Where failed asynchronous invocations go (after the retries). */
  readonly deadLetterQueue: sqs.IQueue;
  /** @default 256 */
  readonly memorySize?: number;
  /** @default one month */
  readonly logRetention?: logs.RetentionDays;
  /** Executions reserved for (and the cap of) this function. @default none: the account's unreserved pool */
  readonly reservedConcurrentExecutions?: number;
}

function sdkTimeoutEnvironment(timeout: Duration): Record<string, string> {
  const t = sdkTimeouts(timeout);
  return { [ENV.awsOperationTimeoutMs]: String(t.operationMs), [ENV.awsAttemptTimeoutMs]: String(t.attemptMs) };
}

export class MirFunction extends Construct {
  public readonly function: lambda.Function;
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: MirFunctionProps) {
    super(scope, id);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });

    const common: lambda.FunctionOptions = {
      description: props.description?.slice(0, 256),
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      environment: { ...props.environment, ...sdkTimeoutEnvironment(props.timeout) },
      logGroup: this.logGroup,
      // Asynchronous invocations (IoT rules, EventBridge): at least once, 2 retries at most,
      // then the event goes to the dead-letter queue.
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
      onFailure: new destinations.SqsDestination(props.deadLetterQueue),
    };

    if (props.artifactsDir) {
      const dir = path.join(props.artifactsDir, props.crate);
      if (!fs.existsSync(path.join(dir, 'bootstrap'))) {
        throw new Error(
          `prebuilt artifact missing: ${path.join(dir, 'bootstrap')} (build with ` +
            '`cargo lambda build --release --arm64 --lambda-dir <dir>` or drop the mir:artifacts context)',
        );
      }
      this.function = new lambda.Function(this, 'Function', {
        ...common,
        runtime: lambda.Runtime.PROVIDED_AL2023,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(dir),
      });
    } else {
      this.function = new RustFunction(this, 'Function', {
        ...common,
        runtime: 'provided.al2023',
        manifestPath: props.manifestPath,
        binaryName: props.crate,
        bundling: { architecture: lambda.Architecture.ARM_64 },
      });
    }
    Tags.of(this).add(FUNCTION_TAG, props.routeName);
  }
}
