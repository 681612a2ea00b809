// MirModule: the construct a team uses to deploy a module of its own (module-sdk/) as a
// Lambda function subscribed to chosen platform events on the stage's event bus
// (feed.ts), and optionally to its devices' custom routes (mir/{id}/x/{module}/{name}).
//
// - Direct mode: a rule on the bus invokes the function with each EventBridge event
//   (retried by EventBridge, then kept in the module's dead-letter queue).
// - Worker mode: the rule feeds an SQS queue that the function drains in batches, with
//   partial batch failures; as many instances as Lambda runs share the queue, and each
//   event goes to one of them (at least once; the SDK deduplicates by event id).
// - Telemetry: with the stage's telemetry feed on (context mir:telemetryFeed), a
//   second rule delivers the decoded points (detail-type Telemetry) the same way.
// - Custom device routes: an IoT topic rule per route name invokes the function with
//   the device's bytes (base64), its id, the route and the receive time.
// - Device streams (`deviceStreams`): an IoT topic rule per stream, on mir/+/hb
//   (heartbeats) or mir/+/hello (schemas), with the same SQL as the platform's own
//   rule of that topic (routes.json), invokes the function with the device's bytes; the
//   SDK decodes them (mir_module_sdk::heartbeat_from_rule_event / schema_from_rule_event).
//
// The module calls the platform's API with SigV4: give it an operator job's managed
// policy (api stack outputs `<Job>PolicyArn`) through `apiPolicy`.
import { Duration, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { EVENT_SOURCE, TELEMETRY_DETAIL_TYPE } from './feed';

/** Which platform events a module receives; every field narrows, none means all. */
export interface ModuleEvents {
  /** Event reasons (the EventBridge detail-type): DeviceOnline, DeviceOffline, CommandCompleted, ... */
  readonly reasons?: readonly string[];
  readonly deviceIds?: readonly string[];
  readonly namespaces?: readonly string[];
  /** Every label must match (`site: north`). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** Which decoded telemetry points a module receives (the stage's telemetry feed must be on). */
export interface ModuleTelemetry {
  readonly deviceIds?: readonly string[];
  /** Telemetry message full names (`mir.examples.weather.v1.Weather`). */
  readonly messages?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}

/** Which device streams a module receives from IoT Core (at least one). */
export interface ModuleDeviceStreams {
  /** Every heartbeat (`mir/+/hb`). */
  readonly heartbeats?: boolean;
  /** Every hello with its schema (`mir/+/hello`). */
  readonly schemas?: boolean;
}

/** The topic filter of each device stream: the platform's own rule of it is in routes.json. */
export const DEVICE_STREAM_TOPICS = { heartbeats: 'mir/+/hb', schemas: 'mir/+/hello' } as const;

export interface ModuleWorker {
  /** Events per invocation (default 10). */
  readonly batchSize?: number;
  /** Most instances at once (default: as many as Lambda runs, at least 2). */
  readonly maxConcurrency?: number;
  /**
   * Hold each event this long before a worker gets it (SQS delivery delay, at most 15
   * minutes): "still offline after N minutes" is a check when the event arrives.
   */
  readonly delay?: Duration;
}

export interface MirModuleProps {
  /** The stage's event bus: `events.EventBus.fromEventBusArn(this, 'Bus', <EventBusArn output>)`. */
  readonly bus: events.IEventBus;
  /** The module's function (for a Rust module, cargo-lambda-cdk's RustFunction). */
  readonly handler: lambda.IFunction;
  /** The events it subscribes to; without it, none (a module of custom routes only). */
  readonly events?: ModuleEvents;
  /** The telemetry points it subscribes to (needs the stage's mir:telemetryFeed). */
  readonly telemetry?: ModuleTelemetry;
  /** Share the events among the function's instances through an SQS queue. */
  readonly worker?: ModuleWorker;
  /** The module's name in its devices' custom routes (`mir/{id}/x/{module}/{route}`). */
  readonly module?: string;
  /** Custom device routes the function receives (needs `module`). */
  readonly routes?: readonly string[];
  /** The device streams (heartbeats, schemas) the function receives, one IoT rule each. */
  readonly deviceStreams?: ModuleDeviceStreams;
  /** An operator job's managed policy, for the module's calls to the platform API. */
  readonly apiPolicy?: iam.IManagedPolicy;
}

const NAME_RE = /^[a-z][a-z0-9-]{0,31}$/;

/** The `detail` part of a pattern: only the fields given. */
function detailPattern(f: ModuleTelemetry): Record<string, unknown> {
  const detail: Record<string, unknown> = {};
  if (f.deviceIds?.length) detail.deviceId = [...f.deviceIds];
  if (f.namespaces?.length) detail.namespace = [...f.namespaces];
  if (f.messages?.length) detail.message = [...f.messages];
  if (f.labels && Object.keys(f.labels).length > 0) {
    detail.labels = Object.fromEntries(Object.entries(f.labels).map(([k, v]) => [k, [v]]));
  }
  return detail;
}

/**
 * The EventBridge pattern of `e`: source mir, then only the fields given; without
 * reasons, every event but the telemetry points.
 */
export function eventPattern(e: ModuleEvents): events.EventPattern {
  const detail = detailPattern({ deviceIds: e.deviceIds, namespaces: e.namespaces, labels: e.labels });
  const detailType = e.reasons?.length ? [...e.reasons] : ([{ 'anything-but': TELEMETRY_DETAIL_TYPE }] as unknown as string[]);
  return {
    source: [EVENT_SOURCE],
    detailType,
    ...(Object.keys(detail).length > 0 ? { detail } : {}),
  };
}

/** The EventBridge pattern of the telemetry points `t` selects. */
export function telemetryPattern(t: ModuleTelemetry): events.EventPattern {
  const detail = detailPattern(t);
  return {
    source: [EVENT_SOURCE],
    detailType: [TELEMETRY_DETAIL_TYPE],
    ...(Object.keys(detail).length > 0 ? { detail } : {}),
  };
}

/** The IoT SQL of a custom device route: the same fields as the platform's own rules, and the route. */
export function routeSql(module: string, route: string): string {
  const topic = `mir/+/x/${module}/${route}`;
  return `SELECT encode(*, 'base64') AS payload, topic(2) AS deviceId, topic(4) AS module, topic(5) AS route, clientid() AS clientId, timestamp() AS receivedAt FROM '${topic}'`;
}

/** The IoT SQL of a device stream's topic: the same SELECT as the platform's own rule of it. */
export function deviceStreamSql(topic: string): string {
  return `SELECT encode(*, 'base64') AS payload, topic(2) AS deviceId, clientid() AS clientId, timestamp() AS receivedAt FROM '${topic}'`;
}

export class MirModule extends Construct {
  public readonly rule?: events.Rule;
  /** The rule of the telemetry points (`telemetry`). */
  public readonly telemetryRule?: events.Rule;
  /** Worker mode: the queue the instances share. */
  public readonly queue?: sqs.Queue;
  /** Events that could not be delivered or handled after their retries. */
  public readonly deadLetters: sqs.Queue;
  public readonly topicRules: iot.CfnTopicRule[] = [];

  constructor(scope: Construct, id: string, props: MirModuleProps) {
    super(scope, id);
    if (props.routes?.length && !props.module) throw new Error('MirModule: routes need the module name');
    if (props.module !== undefined && !NAME_RE.test(props.module)) {
      throw new Error(`MirModule: module must match ${NAME_RE}, got ${JSON.stringify(props.module)}`);
    }
    for (const r of props.routes ?? []) {
      if (!NAME_RE.test(r)) throw new Error(`MirModule: route must match ${NAME_RE}, got ${JSON.stringify(r)}`);
    }
    const streams = (Object.keys(DEVICE_STREAM_TOPICS) as (keyof ModuleDeviceStreams)[]).filter((k) => props.deviceStreams?.[k]);
    if (props.deviceStreams && streams.length === 0) {
      throw new Error('MirModule: deviceStreams selects no stream: set heartbeats or schemas to true, or leave deviceStreams out');
    }
    if (!props.events && !props.telemetry && !props.routes?.length && streams.length === 0) {
      throw new Error('MirModule: subscribe to events, telemetry, routes or device streams');
    }
    if (props.worker && !props.events && !props.telemetry) throw new Error('MirModule: worker mode shares events: give events or telemetry');
    const delay = props.worker?.delay?.toSeconds() ?? 0;
    if (delay > 900) throw new Error(`MirModule: worker.delay is at most 15 minutes (SQS), got ${delay} s`);

    this.deadLetters = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });

    const patterns: [string, events.EventPattern][] = [];
    if (props.events) patterns.push(['Rule', eventPattern(props.events)]);
    if (props.telemetry) patterns.push(['TelemetryRule', telemetryPattern(props.telemetry)]);
    if (patterns.length > 0) {
      let target: events.IRuleTarget;
      if (props.worker) {
        const timeout = props.handler instanceof lambda.Function ? props.handler.timeout : undefined;
        this.queue = new sqs.Queue(this, 'Events', {
          encryption: sqs.QueueEncryption.SQS_MANAGED,
          enforceSSL: true,
          // AWS: at least six times the function's timeout.
          visibilityTimeout: Duration.seconds(Math.max(30, 6 * (timeout?.toSeconds() ?? 30))),
          retentionPeriod: Duration.days(4),
          deliveryDelay: props.worker.delay,
          deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: 5 },
        });
        target = new targets.SqsQueue(this.queue, { deadLetterQueue: this.deadLetters, retryAttempts: 8 });
        props.handler.addEventSource(
          new sources.SqsEventSource(this.queue, {
            batchSize: props.worker.batchSize ?? 10,
            // SQS allows more than 10 per batch only with a batching window.
            maxBatchingWindow: (props.worker.batchSize ?? 10) > 10 ? Duration.seconds(1) : undefined,
            reportBatchItemFailures: true,
            maxConcurrency: Math.max(2, props.worker.maxConcurrency ?? 1000),
          }),
        );
      } else {
        target = new targets.LambdaFunction(props.handler, {
          deadLetterQueue: this.deadLetters,
          retryAttempts: 8,
          maxEventAge: Duration.hours(24),
        });
      }
      for (const [id, eventPattern] of patterns) {
        const rule = new events.Rule(this, id, { eventBus: props.bus, eventPattern, targets: [target] });
        if (id === 'Rule') this.rule = rule;
        else this.telemetryRule = rule;
      }
    }

    for (const [i, route] of (props.routes ?? []).entries()) {
      const rule = new iot.CfnTopicRule(this, `Route${i}`, {
        topicRulePayload: {
          description: `mir module ${props.module}: custom device route ${route}`,
          sql: routeSql(props.module!, route),
          awsIotSqlVersion: '2016-03-23',
          ruleDisabled: false,
          actions: [{ lambda: { functionArn: props.handler.functionArn } }],
        },
      });
      props.handler.addPermission(`IotRoute${i}`, {
        principal: new iam.ServicePrincipal('iot.amazonaws.com'),
        sourceArn: rule.attrArn,
        sourceAccount: Stack.of(this).account,
      });
      this.topicRules.push(rule);
    }

    for (const stream of streams) {
      const topic = DEVICE_STREAM_TOPICS[stream];
      const id = stream === 'heartbeats' ? 'Heartbeats' : 'Schemas';
      const rule = new iot.CfnTopicRule(this, `${id}Stream`, {
        topicRulePayload: {
          description: `mir module${props.module ? ` ${props.module}` : ''}: device stream ${stream} (${topic})`,
          sql: deviceStreamSql(topic),
          awsIotSqlVersion: '2016-03-23',
          ruleDisabled: false,
          actions: [{ lambda: { functionArn: props.handler.functionArn } }],
        },
      });
      props.handler.addPermission(`Iot${id}Stream`, {
        principal: new iam.ServicePrincipal('iot.amazonaws.com'),
        sourceArn: rule.attrArn,
        sourceAccount: Stack.of(this).account,
      });
      this.topicRules.push(rule);
    }

    if (props.apiPolicy) props.handler.role?.addManagedPolicy(props.apiPolicy);
  }
}
