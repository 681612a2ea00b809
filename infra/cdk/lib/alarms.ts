// Alarms on what a retry cannot make right by itself: invocations waiting in the failure
// queue, function errors and throttles, and topic rules that could not invoke their
// function. Every alarm notifies one SNS topic (subscribe to it to be told).
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iot from 'aws-cdk-lib/aws-iot';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { pascal } from './routes';

const PERIOD = Duration.minutes(5);

function alarmOn(scope: Construct, id: string, metric: cloudwatch.IMetric, description: string, topic: sns.ITopic): cloudwatch.Alarm {
  const alarm = new cloudwatch.Alarm(scope, id, {
    metric,
    threshold: 1,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    alarmDescription: description,
  });
  alarm.addAlarmAction(new actions.SnsAction(topic));
  return alarm;
}

export interface FunctionAlarmsProps {
  readonly topic: sns.ITopic;
  readonly failureQueue: sqs.IQueue;
  /** routes.json function name -> function. */
  readonly functions: ReadonlyMap<string, lambda.IFunction>;
}

/** The failure queue's depth, and each function's errors and throttles. */
export class FunctionAlarms extends Construct {
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: FunctionAlarmsProps) {
    super(scope, id);
    this.alarms.push(
      alarmOn(
        this,
        'FailureQueueNotEmpty',
        props.failureQueue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' }),
        'Invocations failed after their retries and wait in the failure queue: fix the cause, then redrive (docs/architecture.md, Operations)',
        props.topic,
      ),
    );
    for (const [name, fn] of props.functions) {
      const construct = pascal(name);
      this.alarms.push(
        alarmOn(this, `${construct}Errors`, fn.metricErrors({ period: PERIOD, statistic: 'Sum' }), `mir ${name}: invocations failed`, props.topic),
        alarmOn(this, `${construct}Throttles`, fn.metricThrottles({ period: PERIOD, statistic: 'Sum' }), `mir ${name}: invocations throttled`, props.topic),
      );
    }
  }
}

export interface RuleAlarmsProps {
  readonly topic: sns.ITopic;
  /** Construct id prefix -> topic rule. */
  readonly rules: ReadonlyMap<string, iot.CfnTopicRule>;
}

/** Each topic rule's failed actions (the rule could not invoke its function). */
export class RuleAlarms extends Construct {
  public readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: RuleAlarmsProps) {
    super(scope, id);
    for (const [ruleId, rule] of props.rules) {
      const metric = new cloudwatch.Metric({
        namespace: 'AWS/IoT',
        metricName: 'Failure',
        dimensionsMap: { RuleName: rule.ref, ActionType: 'Lambda' },
        period: PERIOD,
        statistic: 'Sum',
      });
      this.alarms.push(alarmOn(this, `${ruleId}Failures`, metric, `topic rule ${ruleId}: the Lambda action failed (see the TopicRuleErrors log group)`, props.topic));
    }
  }
}
