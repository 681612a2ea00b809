// The event feed on AWS: an EventBridge bus that receives every event the platform
// stores (the `event-feed` function reads the events table's stream and puts them on
// it), archived for replays. Teams attach rules to the bus, with any target (Lambda,
// SQS, Step Functions); the module SDK's construct (module-sdk/cdk) is one such rule.
//
// Each entry: source `mir`, detail-type the event's reason (DeviceOnline, ...), detail
// the event document (id, time, type, reason, deviceId, name, namespace, labels,
// message, payload, actor). Only the event-feed function may put events on the bus.
import { CfnOutput, Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import { Construct } from 'constructs';

/** The `source` of the platform's events (shared/src/domain/feed.rs, EVENTBRIDGE_SOURCE). */
export const EVENT_SOURCE = 'mir';

/**
 * The detail-type of a decoded telemetry point (shared/src/domain/feed.rs,
 * TELEMETRY_DETAIL_TYPE), on the bus only when the stage turns the telemetry feed on
 * (context mir:telemetryFeed). The archive and a module's event rules leave them out.
 */
export const TELEMETRY_DETAIL_TYPE = 'Telemetry';

/** The pattern of the platform's events: source mir, no telemetry point. */
export const EVENTS_PATTERN: events.EventPattern = {
  source: [EVENT_SOURCE],
  detailType: [{ 'anything-but': TELEMETRY_DETAIL_TYPE }] as unknown as string[],
};

export interface EventFeedBusProps {
  /** Days the archive keeps the platform's events. */
  readonly archiveDays: number;
}

export class EventFeedBus extends Construct {
  public readonly bus: events.EventBus;
  public readonly archive: events.Archive;

  constructor(scope: Construct, id: string, props: EventFeedBusProps) {
    super(scope, id);
    // A generated name: two stages never share a bus.
    this.bus = new events.EventBus(this, 'Bus', { description: 'Mir: every event the platform stores (source mir)' });
    this.archive = this.bus.archive('Archive', {
      description: 'Mir events, for replays to modules that missed them',
      eventPattern: EVENTS_PATTERN,
      retention: Duration.days(props.archiveDays),
    });
    new CfnOutput(scope, 'EventBusName', { value: this.bus.eventBusName, description: 'The event feed: attach rules with source mir, detail-type = the event reason' });
    new CfnOutput(scope, 'EventBusArn', { value: this.bus.eventBusArn });
  }
}
