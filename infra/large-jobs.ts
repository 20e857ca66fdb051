// The large-job state machine: a Distributed Map over an S3 JSONL source, one runner invocation per batch, then a merge.
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { objectsArnOf } from './results-bucket.ts';

/** Step Functions refuses a child execution whose input is over 256 KiB: batches are cut before that. */
export const MAX_INPUT_BYTES_PER_BATCH = 256 * 1024;

export interface LargeJobsProps {
  runner: lambda.IFunction;
  bucket: s3.Bucket;
  /** Job data prefix; the map runs' own records land under `<prefix>/_executions/`. */
  prefix: string;
  /** Buckets the ItemReader may read sources from (the results bucket's prefix is always readable). */
  sourceBuckets: readonly string[];
  maxItemsPerBatch: number;
  maxConcurrency: number;
  /** A fixed name, so the runner can know the ARN without a circular reference. */
  stateMachineName: string;
  logRetentionDays: number;
}

/**
 * ResultWriterV2 grants its writes on the whole bucket; this one grants them on the prefix it writes to.
 * The rendered ASL is the parent's.
 */
class PrefixScopedResultWriter extends sfn.ResultWriterV2 {
  readonly #objectsArn: string;

  constructor(bucket: s3.Bucket, prefix: string) {
    // aws-cdk-lib's Bucket is an IBucket; only its `isWebsite?` typing trips exactOptionalPropertyTypes.
    super({ bucket: bucket as s3.IBucket, prefix });
    this.#objectsArn = bucket.arnForObjects(`${prefix}*`);
  }

  override providePolicyStatements(): iam.PolicyStatement[] {
    return [
      new iam.PolicyStatement({
        actions: ['s3:PutObject', 's3:GetObject', 's3:ListMultipartUploadParts', 's3:AbortMultipartUpload'],
        resources: [this.#objectsArn],
      }),
    ];
  }
}

/**
 * Execution input: `{ jobId, source: { bucket, key }, options, toleratedFailurePercentage }`, the API (or a
 * scheduled runner) computing the percentage from the job's maxFailureRatio. Each child execution invokes
 * the runner with `{ Items: [{ index, value }], BatchInput: { jobId, options, batchSize } }`; the merge step
 * then invokes it with `{ jobId, merge: true }`, also after a failed map run, so the job always gets a manifest.
 */
export class LargeJobs extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: LargeJobsProps) {
    super(scope, id);
    const processBatch = tasks.LambdaInvoke.jsonPath(this, 'RunBatch', {
      lambdaFunction: props.runner,
      payload: sfn.TaskInput.fromObject({
        Items: sfn.JsonPath.listAt('$.Items'),
        BatchInput: sfn.JsonPath.objectAt('$.BatchInput'),
      }),
      payloadResponseOnly: true,
      // Retries Lambda's own failures (throttles, service errors) with backoff; a runner error is not retried
      // here, it counts against the tolerated failures (the runner already retried its items).
      retryOnServiceExceptions: true,
    });
    // Hundreds of batches starting at once can meet the account's concurrency limit: wait it out.
    processBatch.addRetry({
      errors: ['Lambda.TooManyRequestsException'],
      interval: Duration.seconds(5),
      maxAttempts: 8,
      backoffRate: 2,
      jitterStrategy: sfn.JitterType.FULL,
    });
    const distributedMap = sfn.DistributedMap.jsonPath(this, 'FanOut', {
      itemReader: new sfn.S3JsonLItemReader({
        bucketNamePath: sfn.JsonPath.stringAt('$.source.bucket'),
        key: sfn.JsonPath.stringAt('$.source.key'),
      }),
      // Each item carries its line number: the runner derives deterministic batch ids from it.
      itemSelector: {
        index: sfn.JsonPath.stringAt('$$.Map.Item.Index'),
        value: sfn.JsonPath.stringAt('$$.Map.Item.Value'),
      },
      itemBatcher: new sfn.ItemBatcher({
        maxItemsPerBatch: props.maxItemsPerBatch,
        maxInputBytesPerBatch: MAX_INPUT_BYTES_PER_BATCH,
        batchInput: { 'jobId.$': '$.jobId', 'options.$': '$.options', batchSize: props.maxItemsPerBatch },
      }),
      maxConcurrency: props.maxConcurrency,
      toleratedFailurePercentagePath: sfn.JsonPath.stringAt('$.toleratedFailurePercentage'),
      resultWriterV2: new PrefixScopedResultWriter(props.bucket, `${props.prefix}/_executions/`),
      // The map's own output (the ResultWriter's pointer) goes aside: the merge step needs the job id.
      resultPath: '$.mapRun',
      label: 'FanOut',
      // A batch can run for the runner's full 15 minutes: Express children stop at 5, so Standard it is.
      mapExecutionType: sfn.StateMachineType.STANDARD,
    });
    distributedMap.itemProcessor(processBatch);
    const merge = this.mergeStep('Merge', props.runner);
    const mergeAfterFailure = this.mergeStep('MergeAfterFailure', props.runner);
    distributedMap.addCatch(
      mergeAfterFailure.next(new sfn.Fail(this, 'MapRunFailed', { errorPath: '$.mapError.Error' })),
      { resultPath: '$.mapError' },
    );

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(distributedMap.next(merge)),
      timeout: Duration.hours(24),
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'Logs', {
          retention: props.logRetentionDays as logs.RetentionDays,
        }),
        level: sfn.LogLevel.ERROR,
        includeExecutionData: false,
      },
    });
    // The ItemReader names its bucket by path, so CDK grants nothing: grant exactly the readable sources.
    const sourceObjects = [
      props.bucket.arnForObjects(`${props.prefix}/*`),
      ...props.sourceBuckets.map((bucket) => objectsArnOf(bucket)),
    ];
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: sourceObjects }),
    );
  }

  private mergeStep(id: string, runner: lambda.IFunction): tasks.LambdaInvoke {
    return tasks.LambdaInvoke.jsonPath(this, id, {
      lambdaFunction: runner,
      payload: sfn.TaskInput.fromObject({ jobId: sfn.JsonPath.stringAt('$.jobId'), merge: true }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
    });
  }
}
