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
  /** How long telemetry is kept (DynamoDB item TTL, Timestream magnetic store), in days. */
  readonly telemetryRetentionDays: number;
  /** Days to keep events per kind, `default=90,DeviceOnline=7,...` (normalized, validated). */
  readonly eventRetention: string;
  /** API Gateway throttling of every route: steady requests per second, and burst. */
  readonly apiThrottle: { readonly rateLimit: number; readonly burstLimit: number };
  /** Days the API access logs are kept (a CloudWatch Logs retention value). */
  readonly apiAccessLogRetentionDays: number;
  /**
   * Reserved concurrency per device-facing function (routes.json entries with `rules`):
   * function name -> executions, or undefined for "no reservation".
   */
  readonly deviceConcurrency: ReadonlyMap<string, number | undefined>;
  /** Days the event bus's archive keeps the platform's events, for replays. */
  readonly feedArchiveDays: number;
  /**
   * Whether the telemetry function also puts each decoded telemetry point on the event
   * bus (detail-type Telemetry). Off by default: it adds a PutEvents entry per point
   * (docs/cost.md, "Event feed").
   */
  readonly telemetryFeed: boolean;
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
  telemetryRetentionDays: 'mir:telemetryRetentionDays',
  eventRetention: 'mir:eventRetention',
  apiThrottleRateLimit: 'mir:apiThrottleRateLimit',
  apiThrottleBurstLimit: 'mir:apiThrottleBurstLimit',
  apiAccessLogRetentionDays: 'mir:apiAccessLogRetentionDays',
  deviceConcurrency: 'mir:deviceConcurrency',
  feedArchiveDays: 'mir:feedArchiveDays',
  telemetryFeed: 'mir:telemetryFeed',
} as const;

/** The telemetry sink of a deployment without `-c mir:telemetrySink=...`. */
export const DEFAULT_TELEMETRY_SINK: TelemetrySink = 'dynamodb';
export const DEFAULT_TELEMETRY_RETENTION_DAYS = 365;
export const DEFAULT_EVENT_RETENTION = 'default=90,DeviceOnline=7,DeviceOffline=7';
/**
 * API Gateway throttling of the operator API (every route, `$default` stage). People and
 * the CLI send a few requests per command; the account's regional HTTP API quota
 * (10,000 requests/s, shared by every API of the account) is far above. A leaked
 * credential or a runaway script gets 429 instead of Lambda concurrency and cost.
 */
export const DEFAULT_API_THROTTLE_RATE_LIMIT = 50;
export const DEFAULT_API_THROTTLE_BURST_LIMIT = 100;
/** API access logs: the audit trail of who called what; kept a year by default. */
export const DEFAULT_API_ACCESS_LOG_RETENTION_DAYS = 365;
/** The retention values CloudWatch Logs accepts (RetentionInDays). */
export const LOG_RETENTION_DAYS: readonly number[] = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];
/**
 * Reserved concurrency of the device-facing functions: each gets its own slice of the
 * account's concurrency (a guarantee and a cap), so that a device flood can neither
 * starve the operator API (which runs on the unreserved rest) nor be starved by it.
 * Throttled rule invocations are asynchronous: Lambda keeps and retries them (up to
 * the functions' maximum event age, 1 h), so a flood is delayed, not lost. telemetry
 * carries the volume; the others answer one message per device now and then.
 * 6 x 20 + 100 = 220 of the default account quota of 1,000 (AWS keeps at least 100
 * unreserved).
 */
export const DEFAULT_DEVICE_CONCURRENCY = 'default=20,telemetry=100';
/**
 * The event bus archives the platform's events this many days, so that a module that was
 * down (or a new one) can replay what it missed (EventBridge StartReplay).
 */
export const DEFAULT_FEED_ARCHIVE_DAYS = 7;
/** Upper bound of one function's reserved concurrency (the default account quota). */
export const MAX_RESERVED_CONCURRENCY = 1000;
/** Upper bound of every retention in days (100 years; Timestream's magnetic store allows 73000). */
export const MAX_RETENTION_DAYS = 36500;

const STAGE_RE = /^[a-z][a-z0-9-]{0,19}$/;

function positiveInt(node: Node, key: string, dflt: number): number {
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'number' ? v : Number(String(v));
  if (!Number.isInteger(n) || n < 1) throw new Error(`context ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

/** A whole number of days in 1..MAX_RETENTION_DAYS (a number, or its decimal digits). */
function retentionDays(v: unknown): number | undefined {
  const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= MAX_RETENTION_DAYS ? n : undefined;
}

function telemetryRetention(node: Node): number {
  const key = CONTEXT.telemetryRetentionDays;
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return DEFAULT_TELEMETRY_RETENTION_DAYS;
  const n = retentionDays(v);
  if (n === undefined) {
    throw new Error(`context ${key} must be a whole number of days from 1 to ${MAX_RETENTION_DAYS}, got ${JSON.stringify(v)}`);
  }
  return n;
}

const EVENT_KIND_RE = /^(default|[A-Z][A-Za-z0-9]*)$/;

/**
 * Parses `kind=days,kind=days`: kinds are `default` or an event kind in PascalCase
 * (e.g. DeviceOnline), each once, days as for retentionDays; `default` is required.
 * Returns the normalized string (no spaces) passed to the functions.
 */
export function parseEventRetention(raw: string, key: string = CONTEXT.eventRetention): string {
  const fail = (why: string): never => {
    throw new Error(`context ${key} must look like "${DEFAULT_EVENT_RETENTION}" (${why}), got ${JSON.stringify(raw)}`);
  };
  const seen = new Set<string>();
  const parts: string[] = [];
  for (const entry of raw.split(',')) {
    const [kind, days, extra] = entry.split('=').map((x) => x.trim());
    if (days === undefined || extra !== undefined) fail(`"${entry.trim()}" is not kind=days`);
    if (!EVENT_KIND_RE.test(kind)) fail(`"${kind}" is neither default nor a PascalCase event kind`);
    if (seen.has(kind)) fail(`${kind} is given twice`);
    const n = retentionDays(days);
    if (n === undefined) fail(`${kind}: days must be a whole number from 1 to ${MAX_RETENTION_DAYS}`);
    seen.add(kind);
    parts.push(`${kind}=${n}`);
  }
  if (!seen.has('default')) fail('default=<days> is required');
  return parts.join(',');
}

/** A whole number in [min, max] from context (a number, or its decimal digits), else dflt. */
function intInRange(node: Node, key: string, dflt: number, min: number, max: number): number {
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return dflt;
  const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : '';
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new Error(`context ${key} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/** true or false from context (a boolean, or its text), else dflt. */
function bool(node: Node, key: string, dflt: boolean): boolean {
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return dflt;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new Error(`context ${key} must be true or false, got ${JSON.stringify(v)}`);
}

function apiThrottle(node: Node): MirConfig['apiThrottle'] {
  const rateLimit = intInRange(node, CONTEXT.apiThrottleRateLimit, DEFAULT_API_THROTTLE_RATE_LIMIT, 1, 10000);
  const burstLimit = intInRange(node, CONTEXT.apiThrottleBurstLimit, DEFAULT_API_THROTTLE_BURST_LIMIT, 1, 5000);
  return { rateLimit, burstLimit };
}

function accessLogRetention(node: Node): number {
  const key = CONTEXT.apiAccessLogRetentionDays;
  const v = node.tryGetContext(key);
  if (v === undefined || v === null || v === '') return DEFAULT_API_ACCESS_LOG_RETENTION_DAYS;
  const n = retentionDays(v);
  if (n === undefined || !LOG_RETENTION_DAYS.includes(n)) {
    throw new Error(`context ${key} must be one of CloudWatch Logs' retention values (${LOG_RETENTION_DAYS.join(', ')}), got ${JSON.stringify(v)}`);
  }
  return n;
}

/**
 * Parses `default=N,<function>=N` (N a whole number from 1 to MAX_RESERVED_CONCURRENCY, or
 * `none` for no reservation) for the device-facing functions of routes.json (those with
 * `rules`); `default` is required and applies to the functions not named.
 */
export function parseDeviceConcurrency(raw: string, routes: RoutesTable, key: string = CONTEXT.deviceConcurrency): Map<string, number | undefined> {
  const fail = (why: string): never => {
    throw new Error(`context ${key} must look like "${DEFAULT_DEVICE_CONCURRENCY}" (${why}), got ${JSON.stringify(raw)}`);
  };
  const deviceFunctions = routes.functions.filter((f) => f.rules.length > 0).map((f) => f.name);
  const given = new Map<string, number | undefined>();
  for (const entry of raw.split(',')) {
    const [name, value, extra] = entry.split('=').map((x) => x.trim());
    if (value === undefined || extra !== undefined) fail(`"${entry.trim()}" is not name=value`);
    if (name !== 'default' && !deviceFunctions.includes(name)) fail(`"${name}" is neither default nor a device-facing function (${deviceFunctions.join(', ')})`);
    if (given.has(name)) fail(`${name} is given twice`);
    let n: number | undefined;
    if (value !== 'none') {
      n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
      if (!(n >= 1 && n <= MAX_RESERVED_CONCURRENCY)) fail(`${name}: a whole number from 1 to ${MAX_RESERVED_CONCURRENCY}, or none`);
    }
    given.set(name, n);
  }
  if (!given.has('default')) fail('default=<executions> is required');
  return new Map(deviceFunctions.map((f) => [f, given.has(f) ? given.get(f) : given.get('default')]));
}

/** The settings of one stage: `stage` if given, else the mir:stage context (default dev). */
export function readConfig(node: Node, stageOverride?: string): MirConfig {
  const stage = String(stageOverride ?? node.tryGetContext(CONTEXT.stage) ?? 'dev');
  if (!STAGE_RE.test(stage)) {
    throw new Error(`context ${CONTEXT.stage} must match ${STAGE_RE} (lower case, starts with a letter), got "${stage}"`);
  }
  const sink = String(node.tryGetContext(CONTEXT.telemetrySink) ?? DEFAULT_TELEMETRY_SINK);
  if (sink !== 'timestream' && sink !== 'dynamodb') {
    throw new Error(`context ${CONTEXT.telemetrySink} must be "timestream" or "dynamodb", got "${sink}"`);
  }
  const rootCtx = node.tryGetContext(CONTEXT.repoRoot);
  const repoRoot = rootCtx ? path.resolve(String(rootCtx)) : findRepoRoot(__dirname);
  const artifacts = node.tryGetContext(CONTEXT.artifacts);
  const routes = loadRoutes(routesPath(repoRoot));
  return {
    stage,
    telemetrySink: sink,
    artifactsDir: artifacts ? path.resolve(String(artifacts)) : undefined,
    repoRoot,
    routes,
    rustLog: String(node.tryGetContext(CONTEXT.rustLog) ?? 'info'),
    eventsTtlDays: positiveInt(node, CONTEXT.eventsTtlDays, 30),
    commandsTtlDays: positiveInt(node, CONTEXT.commandsTtlDays, 7),
    telemetryRetentionDays: telemetryRetention(node),
    eventRetention: parseEventRetention(String(node.tryGetContext(CONTEXT.eventRetention) ?? DEFAULT_EVENT_RETENTION)),
    apiThrottle: apiThrottle(node),
    apiAccessLogRetentionDays: accessLogRetention(node),
    deviceConcurrency: parseDeviceConcurrency(String(node.tryGetContext(CONTEXT.deviceConcurrency) ?? DEFAULT_DEVICE_CONCURRENCY), routes),
    feedArchiveDays: intInRange(node, CONTEXT.feedArchiveDays, DEFAULT_FEED_ARCHIVE_DAYS, 1, MAX_RETENTION_DAYS),
    telemetryFeed: bool(node, CONTEXT.telemetryFeed, false),
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
  telemetryRetentionDays: 'MIR_TELEMETRY_RETENTION_DAYS',
  eventRetention: 'MIR_EVENT_RETENTION',
  /** The event feed's EventBridge bus (functions with `access.feed`, and `access.telemetryFeed` when mir:telemetryFeed is on). */
  eventBusName: 'MIR_EVENT_BUS_NAME',
  /** Every function: the AWS SDK's operation timeout (all attempts of one call), in ms, below the function's timeout. */
  awsOperationTimeoutMs: 'MIR_AWS_OPERATION_TIMEOUT_MS',
  /** Every function: the AWS SDK's timeout of one attempt, in ms. */
  awsAttemptTimeoutMs: 'MIR_AWS_ATTEMPT_TIMEOUT_MS',
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
