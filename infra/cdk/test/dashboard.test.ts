// The stage's CloudWatch dashboard (lib/dashboard.ts), read back from the synthesized
// templates: one per stage, a generated name, and on it every function of routes.json,
// every topic rule, the failure queue, the API and the tables. The expectations come from
// routes.json and the templates, never from lib/dashboard.ts.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { RoutesTable } from '../lib/routes';
import { fakeArtifacts, mirFunctions, newApp, PARTS, REPO_ROOT, resolveImport, resourcesOfType, ROUTES, Synth, synth, synthApp } from './helpers';

/** A metric of a graph: namespace, name, dimensions and options, or a math expression. */
interface Metric {
  readonly namespace?: string;
  readonly metricName?: string;
  readonly dims: Record<string, string>;
  readonly stat?: string;
  readonly id?: string;
  readonly visible?: boolean;
  readonly expression?: string;
  readonly label?: string;
}

interface Widget {
  readonly type: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly title?: string;
  readonly markdown?: string;
  readonly metrics: Metric[];
  readonly annotations: any[];
}

interface Board {
  readonly logicalId: string;
  readonly resource: any;
  readonly widgets: Widget[];
}

/**
 * Renders a token of the dashboard body as a marker: `<Ref X>`, `<GetAtt X.Attr>`; an
 * imported value as what the producing stack exports.
 */
function marker(s: Synth, token: any): string {
  const v = resolveImport(s, token);
  if (typeof v === 'string') return v;
  if (v?.Ref !== undefined) return `<Ref ${v.Ref}>`;
  const getAtt = v?.['Fn::GetAtt'];
  if (Array.isArray(getAtt)) return `<GetAtt ${getAtt[0]}.${getAtt[1]}>`;
  throw new Error(`unexpected token in the dashboard body: ${JSON.stringify(token)}`);
}

function parseMetric(raw: any[]): Metric {
  const last = raw[raw.length - 1];
  const opts = typeof last === 'object' && last !== null && !Array.isArray(last) ? last : {};
  if (opts.expression !== undefined) return { dims: {}, ...opts };
  const names = raw.filter((x) => typeof x === 'string');
  assert.ok(!names.includes('.') && !names.includes('..'), `no shorthand metrics: ${JSON.stringify(raw)}`);
  const [namespace, metricName, ...rest] = names;
  const dims: Record<string, string> = {};
  for (let i = 0; i + 1 < rest.length; i += 2) dims[rest[i]] = rest[i + 1];
  return { namespace, metricName, dims, ...opts };
}

/** The one dashboard of a synthesized stage, its body parsed. */
function board(s: Synth): Board {
  const found = PARTS.flatMap((part) => resourcesOfType(s.json[part], 'AWS::CloudWatch::Dashboard').map(([id, r]) => ({ part, id, r })));
  assert.equal(found.length, 1, `one dashboard per stage, found ${found.length}`);
  assert.equal(found[0].part, 'iot', 'in the iot stack, deployed last');
  const body = found[0].r.Properties.DashboardBody;
  const text = typeof body === 'string' ? body : (body['Fn::Join'][1] as any[]).map((p) => (typeof p === 'string' ? p : marker(s, p))).join(body['Fn::Join'][0]);
  const parsed = JSON.parse(text);
  const widgets: Widget[] = parsed.widgets.map((w: any) => ({
    type: w.type,
    x: w.x,
    y: w.y,
    width: w.width,
    height: w.height,
    title: w.properties?.title,
    markdown: w.properties?.markdown,
    metrics: (w.properties?.metrics ?? []).map(parseMetric),
    annotations: w.properties?.annotations?.horizontal ?? [],
  }));
  return { logicalId: found[0].id, resource: found[0].r, widgets };
}

const allMetrics = (b: Board) => b.widgets.flatMap((w) => w.metrics);

/** routes.json name -> the marker the dashboard shows for its FunctionName. */
function functionMarkers(s: Synth): Map<string, string> {
  return new Map([...mirFunctions(s)].map(([name, [id]]) => [name, `<Ref ${id}>`]));
}

const isAsync = (f: RoutesTable['functions'][number]) => f.rules.length > 0 || f.schedules.length > 0;

/** [metric, statistic] of a function that the dashboard must show, from routes.json. */
function expectedFunctionMetrics(f: RoutesTable['functions'][number]): string[] {
  const always = ['Invocations Sum', 'Errors Sum', 'Throttles Sum', 'Duration p50', 'Duration p99', 'ConcurrentExecutions Maximum'];
  const async = ['AsyncEventAge Maximum', 'AsyncEventsDropped Sum', 'DestinationDeliveryFailures Sum'];
  return isAsync(f) ? [...always, ...async] : always;
}

/** Every function of `routes` has its metrics, its own row and a line in the overviews. */
function assertFunctions(s: Synth, routes: RoutesTable): void {
  const b = board(s);
  const markers = functionMarkers(s);
  assert.deepEqual([...markers.keys()].sort(), routes.functions.map((f) => f.name).sort(), 'the template has the routes.json functions');
  const lambda = allMetrics(b).filter((m) => m.namespace === 'AWS/Lambda' && m.dims.FunctionName !== undefined);
  const known = new Set(markers.values());
  for (const m of lambda) assert.ok(known.has(m.dims.FunctionName), `${m.metricName} of ${m.dims.FunctionName}, not a routes.json function`);
  for (const f of routes.functions) {
    const fnMarker = markers.get(f.name)!;
    const shown = new Set(lambda.filter((m) => m.dims.FunctionName === fnMarker).map((m) => `${m.metricName} ${m.stat}`));
    for (const want of expectedFunctionMetrics(f)) assert.ok(shown.has(want), `${f.name}: ${want} is not on the dashboard`);
    if (!isAsync(f)) assert.ok(!shown.has('AsyncEventAge Maximum'), `${f.name} is not invoked asynchronously`);
    // Its own row: widgets titled by the function, on one line, showing only that function.
    const own = b.widgets.filter((w) => w.title?.startsWith(`${f.name}: `));
    assert.equal(own.length, isAsync(f) ? 4 : 3, `${f.name}: its row`);
    assert.equal(new Set(own.map((w) => w.y)).size, 1, `${f.name}: one row`);
    for (const w of own) for (const m of w.metrics) assert.equal(m.dims.FunctionName, fnMarker, `${w.title} shows only ${f.name}`);
    for (const overview of ['Errors by function', 'Throttles by function']) {
      const w = b.widgets.find((x) => x.title === overview)!;
      assert.ok(w.metrics.some((m) => m.dims.FunctionName === fnMarker && m.label === f.name), `${overview}: ${f.name}`);
    }
  }
}

/** The topic rules of the template, each with its rule and Lambda action metrics. */
function assertRules(s: Synth, routes: RoutesTable): void {
  const b = board(s);
  const rules = resourcesOfType(s.json.iot, 'AWS::IoT::TopicRule').map(([id]) => `<Ref ${id}>`);
  assert.equal(rules.length, routes.functions.reduce((n, f) => n + f.rules.length, 0));
  const iot = allMetrics(b).filter((m) => m.namespace === 'AWS/IoT');
  for (const m of iot) assert.ok(rules.includes(m.dims.RuleName), `${m.metricName} of ${m.dims.RuleName}, not a topic rule of the template`);
  // The ActionType the rule alarms use (alarms.test.ts) for the Lambda action.
  const alarmActionTypes = new Set(
    resourcesOfType(s.json.iot, 'AWS::CloudWatch::Alarm').flatMap(([, a]) => (a.Properties.Dimensions ?? []).filter((d: any) => d.Name === 'ActionType').map((d: any) => d.Value)),
  );
  assert.deepEqual([...alarmActionTypes], ['Lambda']);
  for (const rule of rules) {
    const of = iot.filter((m) => m.dims.RuleName === rule);
    for (const name of ['TopicMatch', 'ParseError', 'RuleMessageThrottled']) {
      assert.ok(of.some((m) => m.metricName === name && Object.keys(m.dims).length === 1 && m.stat === 'Sum'), `${rule}: ${name}`);
    }
    for (const name of ['Success', 'Failure']) {
      assert.ok(of.some((m) => m.metricName === name && m.dims.ActionType === 'Lambda' && m.stat === 'Sum'), `${rule}: Lambda action ${name}`);
    }
    const overview = b.widgets.find((w) => w.title === 'Rule action failures')!;
    assert.ok(overview.metrics.some((m) => m.metricName === 'Failure' && m.dims.RuleName === rule && m.dims.ActionType === 'Lambda'), `${rule} in the rule action failures`);
  }
}

for (const flavour of ['default', 'timestream'] as const) {
  test(`${flavour}: exactly one dashboard, in the iot stack, its name generated (no DashboardName)`, () => {
    const s = synth(flavour);
    const b = board(s);
    assert.equal(b.resource.Properties.DashboardName, undefined);
    assert.ok(b.widgets.length > 0);
  });

  test(`${flavour}: every function of routes.json is on the dashboard: invocations, errors, throttles, duration p50/p99, concurrency; rule and schedule functions with event age, dropped events, failure queue deliveries`, () => {
    assertFunctions(synth(flavour), ROUTES);
  });

  test(`${flavour}: every topic rule of the template is on the dashboard: TopicMatch, Lambda action Success and Failure, parse errors, throttled messages`, () => {
    assertRules(synth(flavour), ROUTES);
  });

  test(`${flavour}: every DynamoDB table of the data stack is on the dashboard: throttled requests and system errors of every operation, summed`, () => {
    const s = synth(flavour);
    const b = board(s);
    const tables = resourcesOfType(s.json.data, 'AWS::DynamoDB::Table').map(([id]) => `<Ref ${id}>`);
    assert.equal(tables.length, s.sink === 'dynamodb' ? 5 : 4);
    const dynamo = allMetrics(b).filter((m) => m.namespace === 'AWS/DynamoDB');
    for (const m of dynamo) assert.ok(tables.includes(m.dims.TableName), `${m.dims.TableName} is not a table of the data stack`);
    for (const table of tables) {
      const widget = b.widgets.find((w) => w.metrics.some((m) => m.dims.TableName === table))!;
      for (const metricName of ['ThrottledRequests', 'SystemErrors']) {
        const parts = widget.metrics.filter((m) => m.metricName === metricName && m.dims.TableName === table);
        const operations = parts.map((m) => m.dims.Operation).sort();
        for (const op of ['GetItem', 'BatchGetItem', 'Query', 'Scan', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']) {
          assert.ok(operations.includes(op), `${table} ${metricName}: ${op}`);
        }
        for (const m of parts) assert.equal(m.visible, false, 'the operations are summed, not drawn one by one');
        const sum = widget.metrics.find((m) => m.expression !== undefined && parts.every((p) => m.expression!.includes(p.id!)));
        assert.ok(sum, `${table} ${metricName}: one line summing the operations`);
        assert.match(sum.expression!, /^SUM\(\[/);
      }
    }
  });
}

test('the failure queue is on the dashboard, first after the note: messages waiting and the age of the oldest', () => {
  const s = synth();
  const b = board(s);
  // The failure queue: the on-failure destination of every function, the FailureQueueUrl output.
  const queueId = s.json.functions.Outputs.FailureQueueUrl.Value.Ref;
  for (const [, c] of resourcesOfType(s.json.functions, 'AWS::Lambda::EventInvokeConfig')) {
    assert.deepEqual(c.Properties.DestinationConfig.OnFailure.Destination, { 'Fn::GetAtt': [queueId, 'Arn'] });
  }
  const queue = `<GetAtt ${queueId}.QueueName>`;
  const sqs = allMetrics(b).filter((m) => m.namespace === 'AWS/SQS');
  assert.deepEqual(sqs.map((m) => `${m.metricName} ${m.dims.QueueName} ${m.stat}`).sort(), [
    `ApproximateAgeOfOldestMessage ${queue} Maximum`,
    `ApproximateNumberOfMessagesVisible ${queue} Maximum`,
  ]);
  const metricWidgets = b.widgets.filter((w) => w.type === 'metric').sort((p, q) => p.y - q.y || p.x - q.x);
  assert.ok(metricWidgets[0].metrics.some((m) => m.namespace === 'AWS/SQS'), 'the first graph is the failure queue');
});

test('a note at the top says what to look at first: the failure queue, then the failing function, naming what exists', () => {
  const s = synth();
  const b = board(s);
  const first = b.widgets.find((w) => w.x === 0 && w.y === 0)!;
  assert.equal(first.type, 'text');
  assert.equal(first.width, 24, 'across the dashboard');
  assert.ok(b.widgets.every((w) => w === first || w.y >= first.height), 'above everything else');
  const md = first.markdown!;
  assert.ok(md.split('\n').length <= 10, 'short');
  assert.match(md, /mir dev/);
  const queue = md.indexOf('Failure queue');
  const errors = md.indexOf('Errors and throttles by function');
  assert.ok(queue >= 0 && errors > queue, 'failure queue first, then the errors by function');
  // What it names exists: the alarm, the log group, the overview graphs and the redrive doc.
  assert.ok(md.includes('`FailureQueueNotEmpty`'));
  assert.ok(resourcesOfType(s.json.functions, 'AWS::CloudWatch::Alarm').some(([id]) => id.startsWith('AlarmsFailureQueueNotEmpty')));
  assert.ok(md.includes('`TopicRuleErrors`'));
  assert.ok(resourcesOfType(s.json.iot, 'AWS::Logs::LogGroup').some(([id]) => id.startsWith('TopicRuleErrors')));
  for (const title of ['Errors by function', 'Throttles by function', 'Rule action failures']) {
    assert.ok(b.widgets.some((w) => w.title === title), title);
  }
  assert.ok(md.includes('docs/architecture.md, Operations'));
  const arch = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8');
  assert.match(arch.slice(arch.indexOf('## Operations')), /\*\*Redrive the failure queue\*\*/);
});

test('the API is on the dashboard: requests, 4xx, 5xx and latency', () => {
  const s = synth();
  const b = board(s);
  const apis = resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Api');
  assert.equal(apis.length, 1);
  const api = `<Ref ${apis[0][0]}>`;
  const shown = new Set(allMetrics(b).filter((m) => m.namespace === 'AWS/ApiGateway').map((m) => `${m.metricName} ${m.dims.ApiId} ${m.stat}`));
  for (const want of ['Count Sum', '4xx Sum', '5xx Sum', 'Latency p50', 'Latency p99']) {
    const [metric, stat] = want.split(' ');
    assert.ok(shown.has(`${metric} ${api} ${stat}`), want);
  }
});

test('the concurrency graph of each device-facing function draws its reserved concurrency', () => {
  const s = synth();
  const b = board(s);
  for (const [name, [, r]] of mirFunctions(s)) {
    const w = b.widgets.find((x) => x.title === `${name}: concurrent executions`)!;
    const reserved = r.Properties.ReservedConcurrentExecutions;
    if (reserved === undefined) assert.deepEqual(w.annotations, [], name);
    else assert.deepEqual(w.annotations.map((a: any) => a.value), [reserved], name);
  }
});

test('the dashboard stays within CloudWatch limits: 500 widgets, 100 metrics a graph, 24 columns', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const b = board(synth(flavour));
    assert.ok(b.widgets.length <= 500, `${b.widgets.length} widgets`);
    for (const w of b.widgets) {
      assert.ok(w.metrics.length <= 100, `${w.title}: ${w.metrics.length} metrics`);
      assert.ok(w.x >= 0 && w.x + w.width <= 24, `${w.title}: x ${w.x} width ${w.width}`);
    }
  }
});

test('two stages never collide on a dashboard name: neither fixes one (dashboards are global to the account)', () => {
  const dev = synth('default');
  const prod = synthApp(newApp({ 'mir:stage': 'prod' }));
  const [a, b] = [board(dev), board(prod)];
  assert.deepEqual([a.resource.Properties.DashboardName, b.resource.Properties.DashboardName], [undefined, undefined], 'CloudFormation generates a unique name');
  assert.notEqual(dev.mir.iot.stackName, prod.mir.iot.stackName);
  assert.match(a.widgets[0].markdown!, /mir dev:/);
  assert.match(b.widgets[0].markdown!, /mir prod:/);
});

test('the iot stack outputs the dashboard\'s console URL, without export name', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const s = synth(flavour);
    const b = board(s);
    const out = s.json.iot.Outputs.DashboardUrl;
    assert.ok(out, 'DashboardUrl');
    assert.equal(out.Export, undefined);
    const parts = out.Value['Fn::Join'][1];
    const rendered = parts
      .map((p: any) => (typeof p === 'string' ? p : p.Ref ? `<Ref ${p.Ref}>` : p['Fn::FindInMap'] ? `<host of ${p['Fn::FindInMap'][1].Ref}>` : '?'))
      .join('');
    assert.equal(rendered, `https://<host of AWS::Partition>/cloudwatch/home?region=<Ref AWS::Region>#dashboards/dashboard/<Ref ${b.logicalId}>`);
    const mapping = s.json.iot.Mappings[parts[1]['Fn::FindInMap'][0]];
    assert.equal(mapping.aws.host, 'console.aws.amazon.com');
    assert.equal(mapping['aws-cn'].host, 'console.amazonaws.cn');
  }
});

test('the iot stack, which holds the dashboard, is deployed last and nothing reads from it: deploying iot and api first still removes a function', () => {
  const s = synth();
  assert.deepEqual(s.mir.iot.dependencies.map((d) => d.stackName).sort(), [s.mir.api, s.mir.data, s.mir.functions].map((d) => d.stackName).sort());
  const iotExports = Object.values<any>(s.json.iot.Outputs ?? {}).filter((o) => o.Export).map((o) => o.Export.Name);
  assert.deepEqual(iotExports, [], 'no stack imports from the iot stack');
  // What the iot stack reads from the api stack never goes away with a route or function: the API id.
  // (The api stack also exports the console's site and sign-in, which the console stack reads.)
  const imported = new Set([...JSON.stringify(s.json.iot).matchAll(/"Fn::ImportValue":"([^"]+)"/g)].map((m) => m[1]));
  const fromApi = Object.values<any>(s.json.api.Outputs ?? {})
    .filter((o) => o.Export && imported.has(o.Export.Name))
    .map((o) => o.Value);
  assert.deepEqual(fromApi, [{ Ref: resourcesOfType(s.json.api, 'AWS::ApiGatewayV2::Api')[0][0] }]);
});

test('a function added to routes.json shows on the dashboard, with its topic rule (derived, not a hand-kept list)', () => {
  const routes: RoutesTable = JSON.parse(JSON.stringify(ROUTES));
  (routes.functions as any[]).push({
    name: 'dashboard-probe',
    crate: 'mir-fn-dashboard-probe',
    path: 'functions/dashboard-probe',
    description: 'A function only this test knows.',
    access: { events: 'w' },
    rules: [{ topicFilter: 'mir/+/probe', sql: "SELECT * FROM 'mir/+/probe'" }],
    http: [],
    schedules: [],
  });
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mir-dashboard-routes-'));
  try {
    fs.writeFileSync(path.join(root, 'Cargo.toml'), '[workspace]\n');
    fs.mkdirSync(path.join(root, 'shared'));
    fs.writeFileSync(path.join(root, 'shared', 'routes.json'), JSON.stringify(routes, null, 2));
    const s = synthApp(newApp({ 'mir:repoRoot': root, 'mir:stage': 'probe', 'mir:artifacts': fakeArtifacts(routes) }));
    assert.ok(mirFunctions(s).has('dashboard-probe'));
    assertFunctions(s, routes);
    assertRules(s, routes);
    assert.ok(board(s).widgets.some((w) => w.title === 'dashboard-probe mir/+/probe'), 'its rule has its graph');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
