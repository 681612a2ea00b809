// Deploy-time settings read from CDK context (cdk.json, or `-c key=value`).
import * as path from 'node:path';
import { Node } from 'constructs';
import { findRepoRoot, loadRoutes, routesPath, RoutesTable } from './routes';

export type TelemetrySink = 'timestream' | 'dynamodb';

export interface MirConfig {
  /** Stack name prefix: mir-<stage>-... */
  readonly stage: string;
  readonly telemetrySink: TelemetrySink;
  /** Directory of prebuilt functions laid out as <dir>/<crate>/bootstrap; undefined = build with cargo lambda. */
  readonly artifactsDir?: string;
  readonly repoRoot: string;
  readonly routes: RoutesTable;
  readonly rustLog: string;
  readonly eventsTtlDays: number;
  readonly commandsTtlDays: number;
}

/** Context keys understood by the app. */
export const CONTEXT = {
  stage: 'mir:stage',
  telemetrySink: 'mir:telemetrySink',
  artifacts: 'mir:artifacts',
  repoRoot: 'mir:repoRoot',
  rustLog: 'mir:rustLog',
  eventsTtlDays: 'mir:eventsTtlDays',
  commandsTtlDays: 'mir:commandsTtlDays',
} as const;

const STAGE_RE = /^[a-z][a-z0-9-]{0,19}$/;

function positiveInt(node: Node, key: string, dflt: number): number {
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'number' ? v : Number(String(v));
  if (!Number.isInteger(n) || n < 1) throw new Error(`context ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

export function readConfig(node: Node): MirConfig {
  const stage = String(node.tryGetContext(CONTEXT.stage) ?? 'dev');
  if (!STAGE_RE.test(stage)) {
    throw new Error(`context ${CONTEXT.stage} must match ${STAGE_RE} (lower case, starts with a letter), got "${stage}"`);
  }
  const sink = String(node.tryGetContext(CONTEXT.telemetrySink) ?? 'timestream');
  if (sink !== 'timestream' && sink !== 'dynamodb') {
    throw new Error(`context ${CONTEXT.telemetrySink} must be "timestream" or "dynamodb", got "${sink}"`);
  }
  const rootCtx = node.tryGetContext(CONTEXT.repoRoot);
  const repoRoot = rootCtx ? path.resolve(String(rootCtx)) : findRepoRoot(__dirname);
  const artifacts = node.tryGetContext(CONTEXT.artifacts);
  return {
    stage,
    telemetrySink: sink,
    artifactsDir: artifacts ? path.resolve(String(artifacts)) : undefined,
    repoRoot,
    routes: loadRoutes(routesPath(repoRoot)),
    rustLog: String(node.tryGetContext(CONTEXT.rustLog) ?? 'info'),
    eventsTtlDays: positiveInt(node, CONTEXT.eventsTtlDays, 30),
    commandsTtlDays: positiveInt(node, CONTEXT.commandsTtlDays, 7),
  };
}

/** Environment variables read by the Rust functions (the contract with shared/ and functions/). */
export const ENV = {
  twinsTable: 'MIR_TWINS_TABLE',
  schemasTable: 'MIR_SCHEMAS_TABLE',
  commandsTable: 'MIR_COMMANDS_TABLE',
  eventsTable: 'MIR_EVENTS_TABLE',
  telemetrySink: 'MIR_TELEMETRY_SINK',
  timestreamDatabase: 'MIR_TIMESTREAM_DATABASE',
  timestreamTable: 'MIR_TIMESTREAM_TABLE',
  telemetryTable: 'MIR_TELEMETRY_TABLE',
  iotDataEndpoint: 'MIR_IOT_DATA_ENDPOINT',
  iotPolicyName: 'MIR_IOT_POLICY_NAME',
  eventsTtlDays: 'MIR_EVENTS_TTL_DAYS',
  commandsTtlDays: 'MIR_COMMANDS_TTL_DAYS',
  rustLog: 'RUST_LOG',
} as const;

/** MQTT topic suffixes after `mir/{deviceId}/` (docs/architecture.md, Topics and rule events). */
export const TOPICS = {
  /** device -> cloud: the device may publish these. */
  deviceToCloud: ['hello', 'hb', 'tlm', 'cfg/reported', 'cfg/desired/get', 'cmd/resp'],
  /** cloud -> device: the device may subscribe/receive these; functions with `publish` may publish them. */
  cloudToDevice: ['cmd/req', 'cfg/desired', 'hello/get'],
} as const;

/** The IoT policy variable that scopes a device to its own client id and topics. */
export const THING_NAME_VAR = '${iot:Connection.Thing.ThingName}';

export function stackName(stage: string, part: string): string {
  return `mir-${stage}-${part}`;
}
