// The routes table (shared/routes.json): one entry per Lambda function. It is the
// single source for topic rules, HTTP routes, schedules and grants; this module only
// reads and validates it, it never copies it.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type Rw = 'r' | 'w' | 'rw';

export interface Access {
  readonly twins?: Rw;
  readonly schemas?: Rw;
  readonly commands?: Rw;
  readonly events?: Rw;
  readonly telemetry?: Rw;
  /** iot:Publish on these cloud -> device topic suffixes (after `mir/{deviceId}/`). */
  readonly publish?: readonly string[];
  /** IoT control plane: things, certificates, policy attachment. */
  readonly certificates?: boolean;
  /** events:PutEvents on the event feed's bus. */
  readonly feed?: boolean;
  /** The same, only when the stage turns the telemetry feed on (context mir:telemetryFeed). */
  readonly telemetryFeed?: boolean;
}

export interface TopicRuleSpec {
  readonly topicFilter: string;
  readonly sql: string;
}

export type HttpMethodName = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface HttpRouteSpec {
  readonly method: HttpMethodName;
  readonly path: string;
}

export interface ScheduleSpec {
  readonly rateMinutes: number;
}

/** A DynamoDB stream trigger: the new items of a table (only `events` has a stream). */
export interface StreamSpec {
  readonly table: 'events';
}

export interface FunctionSpec {
  readonly name: string;
  readonly crate: string;
  readonly path: string;
  readonly description: string;
  readonly access: Access;
  readonly rules: TopicRuleSpec[];
  readonly http: HttpRouteSpec[];
  readonly schedules: ScheduleSpec[];
  /** Absent means none. */
  readonly streams?: StreamSpec[];
}

export interface RoutesTable {
  readonly version: number;
  readonly functions: FunctionSpec[];
}

export const TABLE_ACCESS_KEYS = ['twins', 'schemas', 'commands', 'events', 'telemetry'] as const;
export type StoreName = (typeof TABLE_ACCESS_KEYS)[number];

const RW_VALUES: readonly string[] = ['r', 'w', 'rw'];
const METHODS: readonly string[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
/** The topics a function may publish to (config.ts TOPICS.cloudToDevice). */
const CLOUD_TO_DEVICE: readonly unknown[] = ['cmd/req', 'cfg/desired', 'hello/get'];
const ACCESS_KEYS: readonly string[] = [...TABLE_ACCESS_KEYS, 'publish', 'certificates', 'feed', 'telemetryFeed'];
/** The tables with a stream (data-stack.ts). */
const STREAM_TABLES: readonly unknown[] = ['events'];
const NAME_RE = /^[a-z][a-z0-9-]*$/;
// API Gateway HTTP API paths: literal segments and {param} segments, no greedy params.
const HTTP_PATH_RE = /^\/v1(\/([a-z0-9-]+|\{[a-zA-Z][a-zA-Z0-9]*\}))+$/;

/** Walks up from `start` to the directory holding both Cargo.toml and shared/routes.json. */
export function findRepoRoot(start: string = __dirname): string {
  let dir = path.resolve(start);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'Cargo.toml')) && fs.existsSync(path.join(dir, 'shared', 'routes.json'))) {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`cannot find the repository root (Cargo.toml + shared/routes.json) above ${start}`);
    }
    dir = parent;
  }
}

export function routesPath(repoRoot: string): string {
  return path.join(repoRoot, 'shared', 'routes.json');
}

export function loadRoutes(file: string): RoutesTable {
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  return validateRoutes(raw, file);
}

/** Validates the parsed routes table; throws an Error naming every problem found. */
export function validateRoutes(raw: unknown, source = 'routes.json'): RoutesTable {
  const errors: string[] = [];
  const fail = (msg: string) => errors.push(msg);
  if (typeof raw !== 'object' || raw === null) {
    throw new Error(`${source}: not a JSON object`);
  }
  const table = raw as Record<string, unknown>;
  if (table.version !== 1) fail(`version must be 1, got ${JSON.stringify(table.version)}`);
  if (!Array.isArray(table.functions) || table.functions.length === 0) {
    throw new Error(`${source}: "functions" must be a non-empty array`);
  }
  const names = new Set<string>();
  const sqls = new Set<string>();
  const routeKeys = new Set<string>();
  for (const [i, f] of (table.functions as Record<string, unknown>[]).entries()) {
    const where = `functions[${i}]${typeof f?.name === 'string' ? ` (${f.name})` : ''}`;
    if (typeof f !== 'object' || f === null) {
      fail(`${where}: not an object`);
      continue;
    }
    if (typeof f.name !== 'string' || !NAME_RE.test(f.name)) fail(`${where}: bad name ${JSON.stringify(f.name)}`);
    else if (names.has(f.name)) fail(`${where}: duplicate name`);
    else names.add(f.name);
    if (f.crate !== `mir-fn-${f.name}`) fail(`${where}: crate must be "mir-fn-${f.name}", got ${JSON.stringify(f.crate)}`);
    if (typeof f.path !== 'string' || f.path.length === 0) fail(`${where}: missing path`);
    if (typeof f.description !== 'string') fail(`${where}: missing description`);
    const access = f.access as Record<string, unknown> | undefined;
    if (typeof access !== 'object' || access === null) {
      fail(`${where}: missing access`);
    } else {
      for (const [k, v] of Object.entries(access)) {
        if (!ACCESS_KEYS.includes(k)) fail(`${where}: unknown access key "${k}"`);
        else if (k === 'publish') {
          if (!Array.isArray(v) || v.length === 0 || !v.every((t) => CLOUD_TO_DEVICE.includes(t))) {
            fail(`${where}: access.publish must list cloud -> device topics (${CLOUD_TO_DEVICE.join(', ')})`);
          }
        } else if (k === 'certificates' || k === 'feed' || k === 'telemetryFeed') {
          if (typeof v !== 'boolean') fail(`${where}: access.${k} must be a boolean`);
        } else if (typeof v !== 'string' || !RW_VALUES.includes(v)) {
          fail(`${where}: access.${k} must be one of r, w, rw`);
        }
      }
    }
    for (const key of ['rules', 'http', 'schedules']) {
      if (!Array.isArray(f[key])) fail(`${where}: "${key}" must be an array`);
    }
    for (const r of (Array.isArray(f.rules) ? f.rules : []) as Record<string, unknown>[]) {
      if (typeof r.topicFilter !== 'string' || typeof r.sql !== 'string') {
        fail(`${where}: a rule needs topicFilter and sql`);
        continue;
      }
      if (!r.sql.includes(`FROM '${r.topicFilter}'`)) fail(`${where}: rule sql does not read FROM '${r.topicFilter}'`);
      if (sqls.has(r.sql)) fail(`${where}: duplicate rule sql`);
      sqls.add(r.sql);
    }
    for (const h of (Array.isArray(f.http) ? f.http : []) as Record<string, unknown>[]) {
      if (typeof h.method !== 'string' || !METHODS.includes(h.method)) fail(`${where}: bad http method ${JSON.stringify(h.method)}`);
      if (typeof h.path !== 'string' || !HTTP_PATH_RE.test(h.path)) fail(`${where}: bad http path ${JSON.stringify(h.path)}`);
      const key = `${h.method} ${h.path}`;
      if (routeKeys.has(key)) fail(`${where}: duplicate route ${key}`);
      routeKeys.add(key);
    }
    for (const s of (Array.isArray(f.schedules) ? f.schedules : []) as Record<string, unknown>[]) {
      if (typeof s.rateMinutes !== 'number' || !Number.isInteger(s.rateMinutes) || s.rateMinutes < 1) {
        fail(`${where}: schedule rateMinutes must be a positive integer`);
      }
    }
    if (f.streams !== undefined && !Array.isArray(f.streams)) fail(`${where}: "streams" must be an array`);
    for (const st of (Array.isArray(f.streams) ? f.streams : []) as Record<string, unknown>[]) {
      if (!STREAM_TABLES.includes(st.table)) fail(`${where}: a stream must name a table with a stream (${STREAM_TABLES.join(', ')}), got ${JSON.stringify(st.table)}`);
    }
    const triggers = (f.rules as unknown[] | undefined)?.length ?? 0;
    const routes = (f.http as unknown[] | undefined)?.length ?? 0;
    const schedules = (f.schedules as unknown[] | undefined)?.length ?? 0;
    const streams = Array.isArray(f.streams) ? f.streams.length : 0;
    if (triggers + routes + schedules + streams === 0) fail(`${where}: has no trigger (rules, http, schedules or streams)`);
  }
  if (errors.length > 0) {
    throw new Error(`${source} is invalid:\n  - ${errors.join('\n  - ')}`);
  }
  return raw as RoutesTable;
}

/** An API function answers HTTP routes (timeout below API Gateway's 30 s). */
export function isApiFunction(f: FunctionSpec): boolean {
  return f.http.length > 0;
}

/**
 * Invoked asynchronously (by an IoT topic rule or an EventBridge schedule): Lambda queues
 * its events, retries them and sends the failed ones to the failure queue.
 */
export function isAsyncFunction(f: FunctionSpec): boolean {
  return f.rules.length > 0 || f.schedules.length > 0;
}

/** Construct id of a function: "hello" -> "Hello", "api-devices" -> "ApiDevices". */
export function pascal(name: string): string {
  return name
    .split('-')
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1))
    .join('');
}
