// The large-job state machine: Distributed Map over an S3 JSONL source, batches to the runner, the merge, ASL validity.
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_INPUT_BYTES_PER_BATCH } from '../../infra/large-jobs.ts';
import { type CloudFormationTemplate, logicalIdOf, STACK_NAME, synthStack } from './synth.ts';

type Asl = {
  StartAt: string;
  TimeoutSeconds?: number;
  States: Record<string, Record<string, unknown> & { Type: string }>;
};
type AslValidator = (definition: unknown) => { isValid: boolean; errorsText: (separator?: string) => string };
// asl-validator ships CommonJS without an ESM entry.
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

const RUNNER_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:FanoutTest-runner';

/** The DefinitionString with its intrinsics replaced by plausible literals, parsed. */
function definitionOf(json: CloudFormationTemplate): Asl {
  const id = logicalIdOf(json, 'AWS::StepFunctions::StateMachine', 'LargeJobsStateMachine');
  const definition = json.Resources[id]?.Properties?.DefinitionString as { 'Fn::Join': [string, unknown[]] };
  const text = definition['Fn::Join'][1]
    .map((part) => {
      if (typeof part === 'string') return part;
      const token = JSON.stringify(part);
      if (token.includes('AWS::Partition')) return 'aws';
      if (token.includes('RunnerFunction')) return RUNNER_ARN;
      if (token.includes('ResultsBucket')) return 'fanout-results';
      throw new Error(`unexpected intrinsic in the definition: ${token}`);
    })
    .join('');
  return JSON.parse(text) as Asl;
}

let asl: Asl;
let json: CloudFormationTemplate;

beforeAll(() => {
  ({ json } = synthStack({ config: { largeJobs: { maxItemsPerBatch: 500, maxConcurrency: 25 } } }));
  asl = definitionOf(json);
});

const fanOut = () => asl.States.FanOut as Record<string, Record<string, unknown>>;

describe('the large-job state machine', () => {
  it('is a valid Amazon States Language definition (asl-validator)', () => {
    const result = aslValidator(asl);
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
  });

  it('is checked by a validator that does reject a broken definition', () => {
    const broken = structuredClone(asl);
    (broken.States.FanOut as Record<string, unknown>).Next = 'NoSuchState';
    expect(aslValidator(broken).isValid).toBe(false);
  });

  it('has a fixed name, so the runner can start it without a circular reference', () => {
    const id = logicalIdOf(json, 'AWS::StepFunctions::StateMachine', 'LargeJobsStateMachine');
    expect(json.Resources[id]?.Properties).toMatchObject({
      StateMachineName: `${STACK_NAME}-large-jobs`,
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
    });
  });

  it('starts with a Distributed Map whose child executions are Standard (batches may run 15 minutes)', () => {
    expect(asl.StartAt).toBe('FanOut');
    expect(fanOut()).toMatchObject({
      Type: 'Map',
      ItemProcessor: {
        ProcessorConfig: { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' },
        StartAt: 'RunBatch',
      },
    });
  });

  it('reads the JSONL source named by the execution input', () => {
    expect(fanOut().ItemReader).toEqual({
      Resource: 'arn:aws:states:::s3:getObject',
      ReaderConfig: { InputType: 'JSONL' },
      Parameters: { 'Bucket.$': '$.source.bucket', 'Key.$': '$.source.key' },
    });
  });

  it('gives every item its index in the source', () => {
    expect(fanOut().ItemSelector).toEqual({ 'index.$': '$$.Map.Item.Index', 'value.$': '$$.Map.Item.Value' });
  });

  it('batches items with the job id, options and batch size, under the 256 KiB input limit', () => {
    expect(fanOut().ItemBatcher).toEqual({
      MaxItemsPerBatch: 500,
      MaxInputBytesPerBatch: MAX_INPUT_BYTES_PER_BATCH,
      BatchInput: { 'jobId.$': '$.jobId', 'options.$': '$.options', batchSize: 500 },
    });
    expect(MAX_INPUT_BYTES_PER_BATCH).toBe(262_144);
  });

  it('bounds concurrency from config and takes the tolerated failure percentage from the input', () => {
    expect(fanOut().MaxConcurrency).toBe(25);
    expect(fanOut().ToleratedFailurePercentagePath).toBe('$.toleratedFailurePercentage');
    expect(fanOut().ToleratedFailurePercentage).toBeUndefined();
  });

  it('invokes the runner with { Items, BatchInput } and retries Lambda service errors and throttles', () => {
    const processor = (
      fanOut().ItemProcessor as unknown as { States: Record<string, Record<string, unknown>> }
    ).States.RunBatch;
    expect(processor).toMatchObject({
      Type: 'Task',
      Resource: RUNNER_ARN,
      Parameters: { 'Items.$': '$.Items', 'BatchInput.$': '$.BatchInput' },
      End: true,
    });
    const retried = ((processor?.Retry ?? []) as { ErrorEquals: string[] }[]).flatMap(
      (retry) => retry.ErrorEquals,
    );
    expect(retried).toEqual(
      expect.arrayContaining([
        'Lambda.ServiceException',
        'Lambda.AWSLambdaException',
        'Lambda.SdkClientException',
        'Lambda.TooManyRequestsException',
      ]),
    );
  });

  it('writes the map run records to <prefix>/_executions/ in the results bucket', () => {
    expect(fanOut().ResultWriter).toEqual({
      Resource: 'arn:aws:states:::s3:putObject',
      Parameters: { Bucket: 'fanout-results', Prefix: 'jobs/_executions/' },
    });
    expect(fanOut().ResultPath).toBe('$.mapRun');
  });

  it('merges the batch manifests with { jobId, merge: true } after the map', () => {
    expect(fanOut().Next).toBe('Merge');
    expect(asl.States.Merge).toMatchObject({
      Type: 'Task',
      Resource: RUNNER_ARN,
      Parameters: { 'jobId.$': '$.jobId', merge: true },
      End: true,
    });
  });

  it('still merges when the map run fails (tolerance exceeded), then fails the execution', () => {
    expect(fanOut().Catch).toEqual([
      { ErrorEquals: ['States.ALL'], ResultPath: '$.mapError', Next: 'MergeAfterFailure' },
    ]);
    expect(asl.States.MergeAfterFailure).toMatchObject({
      Parameters: { 'jobId.$': '$.jobId', merge: true },
      Next: 'MapRunFailed',
    });
    expect(asl.States.MapRunFailed).toMatchObject({ Type: 'Fail', ErrorPath: '$.mapError.Error' });
  });
});

describe('the ResultWriterV2 context flag', () => {
  it('is what makes CDK render the ResultWriter: without it the writer is dropped silently', () => {
    const { json: withoutFlag } = synthStack({
      context: { '@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2': false },
    });
    const map = definitionOf(withoutFlag).States.FanOut;
    expect(map?.ResultWriter).toBeUndefined();
    expect(fanOut().ResultWriter).toBeDefined();
  });
});
