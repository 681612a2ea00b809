// Shared test helper: synthesizes the app once per flavour (per test process), offline and
// without bundling, and gives small utilities to read the templates.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildMirApp, MirApp } from '../lib/app';
import { THING_NAME_VAR } from '../lib/config';
import { FUNCTION_TAG } from '../lib/mir-function';
import { findRepoRoot, loadRoutes, routesPath, RoutesTable } from '../lib/routes';

export const REPO_ROOT = findRepoRoot(__dirname);
/** The routes table, read independently of the app. */
export const ROUTES: RoutesTable = loadRoutes(routesPath(REPO_ROOT));
export const CDK_DIR = path.resolve(__dirname, '..', '..');

/**
 * default: cdk.json's context only, what `cdk synth` / `cdk deploy` do without -c
 * (stage dev, DynamoDB telemetry); timestream: the opt-in sink; dynamodb: the sink named
 * explicitly; artifacts: prebuilt bootstraps (with the timestream sink).
 */
export type Flavour = 'default' | 'timestream' | 'dynamodb' | 'artifacts';
export type Part = 'data' | 'functions' | 'iot' | 'api' | 'console';
export const PARTS: Part[] = ['data', 'functions', 'iot', 'api', 'console'];

export interface Synth {
  readonly mir: MirApp;
  readonly stage: string;
  readonly sink: 'timestream' | 'dynamodb';
  /** Raw CloudFormation templates by part. */
  readonly json: Record<Part, any>;
  readonly template: Record<Part, Template>;
  readonly artifactsDir?: string;
  /** File assets of each stack: asset hash -> source path (from <stack>.assets.json). */
  readonly assets: Record<Part, Map<string, string>>;
}

// Temporary directories made by this process (cloud assemblies, fake artifacts), removed at exit.
const tmpDirs: string[] = [];
function tmpDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.push(dir);
  return dir;
}
process.on('exit', () => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** The feature flags and defaults of cdk.json, so tests synthesize what `cdk synth` does. */
function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(fs.readFileSync(path.join(CDK_DIR, 'cdk.json'), 'utf8'));
  return cdkJson.context ?? {};
}

/** A fake artifacts dir laid out like `cargo lambda build --lambda-dir <dir>`. */
export function fakeArtifacts(routes: RoutesTable = ROUTES): string {
  const dir = tmpDir('mir-cdk-artifacts-');
  for (const f of routes.functions) {
    fs.mkdirSync(path.join(dir, f.crate));
    fs.writeFileSync(path.join(dir, f.crate, 'bootstrap'), `#!/bin/sh\n# fake ${f.crate}\n`, { mode: 0o755 });
  }
  return dir;
}

export function newApp(extra: Record<string, unknown> = {}): App {
  return new App({
    outdir: tmpDir('mir-cdk-out-'),
    context: {
      ...cdkJsonContext(),
      // Never run cargo lambda (nor Docker) in tests.
      'aws:cdk:bundling-stacks': [],
      'mir:repoRoot': REPO_ROOT,
      ...extra,
    },
  });
}

const cache = new Map<Flavour, Synth>();

export function synth(flavour: Flavour = 'default'): Synth {
  const hit = cache.get(flavour);
  if (hit) return hit;
  const artifactsDir = flavour === 'artifacts' ? fakeArtifacts() : undefined;
  const app = newApp(
    flavour === 'default'
      ? {}
      : {
          'mir:stage': `t${flavour}`,
          'mir:telemetrySink': flavour === 'dynamodb' ? 'dynamodb' : 'timestream',
          ...(artifactsDir ? { 'mir:artifacts': artifactsDir } : {}),
        },
  );
  const s = synthApp(app, artifactsDir);
  cache.set(flavour, s);
  return s;
}

/** Builds the Mir app into `app` (from newApp) and synthesizes it. */
export function synthApp(app: App, artifactsDir?: string): Synth {
  const mir = buildMirApp(app);
  const stacks = { data: mir.data, functions: mir.functions, iot: mir.iot, api: mir.api, console: mir.console };
  const assembly = app.synth();
  const json = {} as Record<Part, any>;
  const template = {} as Record<Part, Template>;
  const assets = {} as Record<Part, Map<string, string>>;
  for (const part of PARTS) {
    const name = stacks[part].stackName;
    json[part] = assembly.getStackByName(name).template;
    template[part] = Template.fromJSON(json[part]);
    const manifest = JSON.parse(fs.readFileSync(path.join(assembly.directory, `${name}.assets.json`), 'utf8'));
    assets[part] = new Map(Object.entries<any>(manifest.files ?? {}).map(([hash, f]) => [hash, f.source.path as string]));
  }
  return { mir, stage: mir.config.stage, sink: mir.config.telemetrySink, json, template, artifactsDir, assets };
}

export function resourcesOfType(tpl: any, type: string): [string, any][] {
  return Object.entries(tpl.Resources ?? {}).filter(([, r]: [string, any]) => r.Type === type) as [string, any][];
}

function tagValue(resource: any, key: string): string | undefined {
  const tags = resource.Properties?.Tags;
  if (Array.isArray(tags)) return tags.find((t: any) => t.Key === key)?.Value;
  if (tags && typeof tags === 'object') return tags[key];
  return undefined;
}

/** routes.json name -> [logicalId, resource] of the functions tagged by MirFunction. */
export function mirFunctions(s: Synth): Map<string, [string, any]> {
  const out = new Map<string, [string, any]>();
  for (const [id, r] of resourcesOfType(s.json.functions, 'AWS::Lambda::Function')) {
    const name = tagValue(r, FUNCTION_TAG);
    if (name === undefined) continue;
    if (out.has(name)) throw new Error(`two Lambda functions tagged ${FUNCTION_TAG}=${name}`);
    out.set(name, [id, r]);
  }
  return out;
}

/** Replaces a cross-stack import by the value the producing stack exports. */
export function resolveImport(s: Synth, value: any): any {
  const name = value?.['Fn::ImportValue'];
  if (name === undefined) return value;
  for (const part of PARTS) {
    for (const out of Object.values<any>(s.json[part].Outputs ?? {})) {
      if (out.Export?.Name === name) return out.Value;
    }
  }
  throw new Error(`no stack exports ${JSON.stringify(name)}`);
}

/** The routes.json name of the MirFunction a (possibly imported) function ARN points to. */
export function functionNameOfArn(s: Synth, value: any): string {
  const v = resolveImport(s, value);
  const getAtt = v?.['Fn::GetAtt'];
  const logicalId = Array.isArray(getAtt) && getAtt[1] === 'Arn' ? getAtt[0] : v?.Ref;
  if (typeof logicalId !== 'string') throw new Error(`not a function ARN: ${JSON.stringify(value)}`);
  for (const [name, [id]] of mirFunctions(s)) if (id === logicalId) return name;
  throw new Error(`${logicalId} is not a MirFunction`);
}

/** Renders a string or Fn::Join to a string; other tokens become <token>. */
export function flatten(value: any): string {
  if (typeof value === 'string') return value;
  const join = value?.['Fn::Join'];
  if (Array.isArray(join)) return (join[1] as any[]).map(flatten).join(join[0]);
  return '<token>';
}

export function asArray<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * Problems in an IoT device policy: every resource must name the device's own thing
 * (${iot:Connection.Thing.ThingName}) in the device id position and contain no wildcard.
 */
export function devicePolicyViolations(doc: any): string[] {
  const problems: string[] = [];
  const statements = asArray<any>(doc?.Statement);
  if (statements.length === 0) problems.push('no statements');
  for (const st of statements) {
    if (st.Effect !== 'Allow') continue;
    const resources = asArray<any>(st.Resource).map(flatten);
    if (resources.length === 0) problems.push(`${st.Sid ?? '?'}: no resource`);
    for (const r of resources) {
      const where = `${asArray(st.Action).join(',')} on ${r}`;
      if (!r.includes(THING_NAME_VAR)) problems.push(`${where}: not scoped by ${THING_NAME_VAR}`);
      // The one wildcard allowed: below the device's own custom routes level.
      const ownCustom = r.endsWith(`:topic/mir/${THING_NAME_VAR}/x/*`) && r.indexOf('*') === r.length - 1;
      if (r.includes('*') && !ownCustom) problems.push(`${where}: wildcard`);
      const m = /:(client|topic|topicfilter)\/(.*)$/.exec(r);
      if (!m) {
        problems.push(`${where}: not a client/topic/topicfilter resource`);
        continue;
      }
      const [, kind, rest] = m;
      const idPosition = kind === 'client' ? rest : rest.startsWith('mir/') ? rest.slice(4).split('/')[0] : undefined;
      if (idPosition !== THING_NAME_VAR) problems.push(`${where}: device id position is ${JSON.stringify(idPosition)}`);
    }
  }
  return problems;
}

/**
 * The EventBridge rate expression of a schedule of `minutes`, in the largest whole unit
 * (as the CDK renders `Schedule.rate`): 60 minutes is `rate(1 hour)`.
 */
export function rateExpression(minutes: number): string {
  const [n, unit] =
    minutes % 1440 === 0 ? [minutes / 1440, 'day'] : minutes % 60 === 0 ? [minutes / 60, 'hour'] : [minutes, 'minute'];
  return `rate(${n} ${unit}${n === 1 ? '' : 's'})`;
}
