// The fanout stack: composes the bucket, the runner and API functions, schedules, the HTTP API, large jobs and alarms.
import { ArnFormat, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { FanoutAlarms } from './alarms.ts';
import { API_TIMEOUT_SECONDS, type FanoutConfig, RUNNER_TIMEOUT_SECONDS } from './config.ts';
import { FanoutFunction } from './fanout-function.ts';
import { JobsApi } from './http-api.ts';
import { LargeJobs } from './large-jobs.ts';
import { addNagSuppressions } from './nag-suppressions.ts';
import { bucketArnOf, objectsArnOf, ResultsBucket } from './results-bucket.ts';
import { Schedules } from './schedule.ts';

export const RUNNER_ENTRY = 'functions/handlers/run-job.ts';
export const API_ENTRY = 'functions/handlers/api.ts';

/** Lambda and Step Functions names are at most 64 and 80 characters; the suffixes below need 11. */
const MAX_STACK_NAME_LENGTH = 50;

export interface FanoutStackProps extends StackProps {
  config: FanoutConfig;
  /** The handler modules; tests may point them elsewhere. */
  entries?: { runner: string; api: string };
}

export class FanoutStack extends Stack {
  readonly runner: FanoutFunction;
  readonly api: FanoutFunction;

  constructor(scope: Construct, id: string, props: FanoutStackProps) {
    super(scope, id, props);
    const { config } = props;
    const entries = props.entries ?? { runner: RUNNER_ENTRY, api: API_ENTRY };
    if (this.stackName.length > MAX_STACK_NAME_LENGTH) {
      throw new Error(`stack name "${this.stackName}" is longer than ${MAX_STACK_NAME_LENGTH} characters`);
    }
    // Fixed names break the cycles "the runner invokes itself" and "the state machine runs the runner, the
    // runner starts the state machine": each side knows the other's ARN without a reference.
    const { runner: runnerName, stateMachine: stateMachineName } = fixedNames(this.stackName);
    const runnerArn = this.formatArn({
      service: 'lambda',
      resource: 'function',
      resourceName: runnerName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    const stateMachineArn = this.formatArn({
      service: 'states',
      resource: 'stateMachine',
      resourceName: stateMachineName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    const { bucket } = new ResultsBucket(this, 'Results', {
      prefix: config.prefix,
      expireAfterDays: config.expireAfterDays,
    });
    const environment = {
      FANOUT_BUCKET: bucket.bucketName,
      FANOUT_PREFIX: config.prefix,
      FANOUT_ALLOW: config.allow.join(','),
      FANOUT_GZIP: String(config.gzip),
      FANOUT_SYNC_MAX_ITEMS: String(config.api.syncMaxItems),
      FANOUT_MAX_ITEMS: String(config.api.maxItems),
      FANOUT_MAX_REQUEST_BYTES: String(config.api.maxRequestBytes),
      FANOUT_RUNNER_FUNCTION: runnerName,
      FANOUT_STATE_MACHINE_ARN: stateMachineArn,
      FANOUT_MAX_CONTINUATIONS: String(config.runner.maxContinuations),
      // The runner plans batches the way the ItemBatcher cuts them: both read the same config.
      FANOUT_MAP_BATCH_SIZE: String(config.largeJobs.maxItemsPerBatch),
      FANOUT_MAP_CONCURRENCY: String(config.largeJobs.maxConcurrency),
      POWERTOOLS_SERVICE_NAME: config.serviceName,
      POWERTOOLS_METRICS_NAMESPACE: config.metricsNamespace,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
    };

    this.runner = new FanoutFunction(this, 'Runner', {
      entry: entries.runner,
      description: 'fanout runner: scheduled, asynchronous and Distributed Map jobs',
      functionName: runnerName,
      memoryMb: config.runner.memoryMb,
      timeout: Duration.seconds(RUNNER_TIMEOUT_SECONDS),
      reservedConcurrency: config.runner.reservedConcurrency,
      logRetentionDays: config.logRetentionDays,
      environment,
    });
    this.api = new FanoutFunction(this, 'Api', {
      entry: entries.api,
      description: 'fanout jobs API: POST /jobs, GET /jobs/{id}, POST /jobs/{id}/redrive',
      memoryMb: config.api.memoryMb,
      timeout: Duration.seconds(API_TIMEOUT_SECONDS),
      reservedConcurrency: config.api.reservedConcurrency,
      logRetentionDays: config.logRetentionDays,
      environment,
    });
    const runner = this.runner.function;
    const api = this.api.function;

    // A job that fails every asynchronous attempt lands here with its event, never silently lost.
    const failedJobs = new sqs.Queue(this, 'FailedJobs', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    runner.configureAsyncInvoke({
      retryAttempts: config.runner.asyncRetryAttempts,
      maxEventAge: Duration.seconds(config.runner.asyncMaxEventAgeSeconds),
      onFailure: new destinations.SqsDestination(failedJobs),
    });

    // Both functions run jobs (the API runs small ones in the request) under the prefix, and nowhere else.
    // DeleteObject: a run removes the debris of dead runs, the API frees a claim nothing will run.
    const jobObjects = bucket.arnForObjects(`${config.prefix}/*`);
    for (const fn of [runner, api]) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'JobObjects',
          actions: [
            's3:GetObject',
            's3:PutObject',
            's3:DeleteObject',
            's3:AbortMultipartUpload',
            's3:ListMultipartUploadParts',
          ],
          resources: [jobObjects],
        }),
      );
      // Without ListBucket a missing manifest reads as 403 instead of 404. The bucket holds only fanout's
      // data, and listing names reads no object. ListBucketMultipartUploads finds dead runs' uploads.
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'JobListing',
          actions: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
          resources: [bucket.bucketArn],
        }),
      );
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'InvokeRunner',
          actions: ['lambda:InvokeFunction'],
          resources: [runnerArn],
        }),
      );
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'StartLargeJob',
          actions: ['states:StartExecution'],
          resources: [stateMachineArn],
        }),
      );
    }
    if (config.sourceBuckets.length > 0) {
      runner.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'ReadSources',
          actions: ['s3:GetObject'],
          resources: config.sourceBuckets.map(objectsArnOf),
        }),
      );
      runner.addToRolePolicy(
        new iam.PolicyStatement({
          sid: 'ListSources',
          actions: ['s3:ListBucket'],
          resources: config.sourceBuckets.map(bucketArnOf),
        }),
      );
    }

    const schedules = new Schedules(this, 'Schedules', { runner, schedules: config.schedules });
    const jobsApi = new JobsApi(this, 'JobsApi', {
      handler: api,
      auth: config.api.auth,
      throttle: config.api.throttle,
      logRetentionDays: config.logRetentionDays,
    });
    const largeJobs = new LargeJobs(this, 'LargeJobs', {
      runner,
      bucket,
      prefix: config.prefix,
      sourceBuckets: config.sourceBuckets,
      maxItemsPerBatch: config.largeJobs.maxItemsPerBatch,
      maxConcurrency: config.largeJobs.maxConcurrency,
      stateMachineName,
      logRetentionDays: config.logRetentionDays,
    });
    new FanoutAlarms(this, 'Alarms', {
      runner,
      api,
      failedJobsQueue: failedJobs,
      scheduleDeadLetterQueue: schedules.deadLetterQueue,
      stateMachine: largeJobs.stateMachine,
      thresholds: config.alarms,
    });

    new CfnOutput(this, 'ApiUrl', { value: jobsApi.url, description: 'Base URL of the jobs API' });
    new CfnOutput(this, 'BucketName', { value: bucket.bucketName, description: 'Results bucket' });
    new CfnOutput(this, 'RunnerFunctionName', { value: runner.functionName });
    new CfnOutput(this, 'ApiFunctionName', { value: api.functionName });
    new CfnOutput(this, 'StateMachineArn', { value: largeJobs.stateMachine.stateMachineArn });
    new CfnOutput(this, 'FailedJobsQueueUrl', { value: failedJobs.queueUrl });
    addNagSuppressions(this, {
      bucket,
      prefix: config.prefix,
      sourceBuckets: config.sourceBuckets,
      functions: [runner, api],
      stateMachine: largeJobs.stateMachine,
      queues: [failedJobs, schedules.deadLetterQueue],
    });
  }
}

/** The runner's and the state machine's physical names (fixed: see the constructor). */
export function fixedNames(stackName: string): { runner: string; stateMachine: string } {
  return { runner: `${stackName}-runner`, stateMachine: `${stackName}-large-jobs` };
}
