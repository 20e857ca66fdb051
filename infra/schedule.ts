// EventBridge Scheduler schedules from the typed config, each invoking the runner with its job, retried, with a DLQ.
import { Aws, Duration, Stack, TimeZone } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { ScheduleConfig } from './config.ts';

export interface SchedulesProps {
  runner: lambda.IFunction;
  schedules: readonly ScheduleConfig[];
}

/**
 * The runner's input: an EventBridge "Scheduled Event" whose `detail` is the job. The schedule's ARN and the
 * scheduled time (not the delivery time) travel with it, so the runner derives the same job id for a
 * redelivered event and fetches nothing twice.
 */
export function scheduledEventInput(job: Record<string, unknown>): scheduler.ScheduleTargetInput {
  return scheduler.ScheduleTargetInput.fromObject({
    version: '0',
    id: scheduler.ContextAttribute.executionId,
    'detail-type': 'Scheduled Event',
    source: 'aws.scheduler',
    account: Aws.ACCOUNT_ID,
    time: scheduler.ContextAttribute.scheduledTime,
    region: Aws.REGION,
    resources: [scheduler.ContextAttribute.scheduleArn],
    detail: job,
  });
}

export class Schedules extends Construct {
  /** Events the scheduler could not deliver after its retries. */
  readonly deadLetterQueue: sqs.Queue;
  readonly schedules: scheduler.Schedule[] = [];

  constructor(scope: Construct, id: string, props: SchedulesProps) {
    super(scope, id);
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      // SQS's maximum: someone has two weeks to look at an undelivered schedule.
      retentionPeriod: Duration.days(14),
    });
    for (const config of props.schedules) {
      const schedule = new scheduler.Schedule(this, `Schedule-${config.name}`, {
        description: `fanout schedule ${config.name} (${Stack.of(this).stackName})`,
        schedule: toExpression(config),
        enabled: config.enabled,
        target: new targets.LambdaInvoke(props.runner, {
          input: scheduledEventInput(config.job),
          deadLetterQueue: this.deadLetterQueue,
          maxEventAge: Duration.seconds(config.retry.maxEventAgeSeconds),
          retryAttempts: config.retry.attempts,
        }),
      });
      this.schedules.push(schedule);
    }
  }
}

function toExpression(config: ScheduleConfig): scheduler.ScheduleExpression {
  // The expression was checked by the config schema; the time zone only applies to cron() and at().
  if (config.timeZone === undefined) return scheduler.ScheduleExpression.expression(config.expression);
  return scheduler.ScheduleExpression.expression(config.expression, TimeZone.of(config.timeZone));
}
