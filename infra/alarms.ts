// CloudWatch alarms: runner errors, throttles, failed-job and undelivered-schedule queues, failed large-job runs.
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

export interface FanoutAlarmsProps {
  runner: lambda.IFunction;
  api: lambda.IFunction;
  /** The runner's on-failure destination: a message there is a job that failed for good. */
  failedJobsQueue: sqs.IQueue;
  /** Scheduled events the scheduler could not deliver. */
  scheduleDeadLetterQueue: sqs.IQueue;
  stateMachine: sfn.IStateMachine;
  thresholds: { runnerErrors: number; queueDepth: number; throttles: number };
}

const PERIOD = Duration.minutes(5);

/** The alarms carry no actions: wire them to your paging (an SNS topic, Chatbot) where the stack is deployed. */
export class FanoutAlarms extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: FanoutAlarmsProps) {
    super(scope, id);
    const { thresholds } = props;
    this.add(
      'RunnerErrors',
      props.runner.metricErrors({ period: PERIOD, statistic: 'Sum' }),
      thresholds.runnerErrors,
      'The runner threw (a job failed as a whole or the handler crashed).',
    );
    this.add(
      'RunnerThrottles',
      props.runner.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
      thresholds.throttles,
      'Runner invocations throttled: reserved concurrency or the account limit is too low.',
    );
    this.add(
      'ApiThrottles',
      props.api.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
      thresholds.throttles,
      'API invocations throttled: callers see 5xx.',
    );
    this.add(
      'FailedJobsQueueDepth',
      props.failedJobsQueue.metricApproximateNumberOfMessagesVisible({
        period: PERIOD,
        statistic: 'Maximum',
      }),
      thresholds.queueDepth,
      'Asynchronous runner invocations failed after all retries: the events wait in the queue.',
    );
    this.add(
      'ScheduleDeadLetterQueueDepth',
      props.scheduleDeadLetterQueue.metricApproximateNumberOfMessagesVisible({
        period: PERIOD,
        statistic: 'Maximum',
      }),
      thresholds.queueDepth,
      'Scheduled jobs the scheduler could not deliver to the runner.',
    );
    this.add(
      'LargeJobsFailed',
      props.stateMachine.metricFailed({ period: PERIOD, statistic: 'Sum' }),
      1,
      'A large-job execution failed (tolerated failures exceeded or a step failed).',
    );
  }

  private add(id: string, metric: cloudwatch.IMetric, threshold: number, description: string): void {
    this.alarms.push(
      new cloudwatch.Alarm(this, id, {
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // No data means no invocations and no messages: that is healthy, not unknown.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      }),
    );
  }
}
