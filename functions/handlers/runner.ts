// The runner handler: schedule, direct job, accepted job, continuation, Distributed Map batch and merge.
import { createHash } from 'node:crypto';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import {
  type BatchSummary,
  executionInputOf,
  FanoutError,
  type JobRuntime,
  type Manifest,
  type ManifestCounts,
  mergeBatches,
  parseJob,
  planBatches,
  readManifest,
  redriveJob,
  resumeJob,
  runBatch,
  runJob,
} from '../core/index.ts';
import { type ContinuationOutcome, continuationKey, continueIfPartial, newChain } from './continuation.ts';
import { type AcceptedJob, jobKey, objectExists, readJsonObject } from './job-objects.ts';
import { buildRuntime, type HandlerDeps, type ResolvedDeps, resolveDeps } from './job-runtime.ts';
import { createShell, emptyRunFigures, recordRunMetrics, type Shell } from './lambda-shell.ts';
import { classifyRunnerEvent, type RunnerRequest } from './runner-events.ts';

export interface RunSummary {
  jobId: string;
  status: Manifest['status'];
  counts: ManifestCounts;
  runs: number;
  /** The manifest's object key in the bucket. */
  manifest: string;
  continuation?: ContinuationOutcome;
}

/** A large job handed to the state machine: the execution runs its batches, then merges them. */
export interface StartedSummary {
  jobId: string;
  status: 'accepted';
  execution: { name: string; executionArn: string };
  items: number;
  batches: number;
}

export type StartExecution = (request: {
  stateMachineArn: string;
  name: string;
  input: string;
}) => Promise<{ executionArn: string }>;

/** How large jobs are split; the defaults match infra/config.ts largeJobs. */
export interface ScaleDeps {
  startExecution?: StartExecution;
  /** Inline jobs above this many items go to the state machine too (an S3 source always does). */
  mapMinItems?: number;
  batchSize?: number;
  mapConcurrency?: number;
}

/** Step Functions execution names: 1..80 characters. */
const MAX_EXECUTION_NAME = 80;

/** What the runner returns: a run's summary, a batch's, or a large job's execution. */
export type RunnerReply = RunSummary | BatchSummary | StartedSummary;

type Ran =
  | { kind: 'manifest'; manifest: Manifest }
  | { kind: 'batch'; summary: BatchSummary }
  | { kind: 'started'; summary: StartedSummary };

export function createRunJobHandler(deps: HandlerDeps, scale: ScaleDeps = {}) {
  const shell = deps.shell ?? createShell({ tracing: deps.config.tracing });
  const resolved = resolveDeps(deps);
  const large = resolveScale(deps, scale);
  return shell.wrap(async (event: unknown, context: Context, { signal }): Promise<RunnerReply> => {
    const request = classifyRunnerEvent(event);
    const figures = emptyRunFigures();
    const runtime = buildRuntime(resolved, shell, context, signal, figures);
    const ran = await run(request, runtime, resolved, shell, large);
    if (ran.kind === 'started') {
      shell.metrics.addMetric('LargeJobsStarted', MetricUnit.Count, 1);
      shell.logger.info('large job started as a state machine execution', { ...ran.summary });
      return ran.summary;
    }
    if (ran.kind === 'batch') {
      const { counts } = ran.summary;
      shell.metrics.addMetric('BatchItemsSucceeded', MetricUnit.Count, counts.succeeded);
      shell.metrics.addMetric('BatchItemsFailed', MetricUnit.Count, counts.failed);
      shell.metrics.addMetric('BatchItemsPending', MetricUnit.Count, counts.pending);
      shell.logger.info('batch finished', { ...ran.summary });
      return ran.summary;
    }
    const manifest = ran.manifest;
    recordRunMetrics(shell.metrics, manifest, figures);
    const chain =
      request.kind === 'resume'
        ? { next: request.continuation + 1, chainStart: request.chainStart }
        : manifest.status === 'partial'
          ? await newChain(resolved, manifest.jobId, signal)
          : undefined;
    const continuation = chain && (await continueIfPartial(resolved, shell, manifest, chain));
    shell.logger.info('run finished', { status: manifest.status, counts: manifest.counts });
    return summarize(resolved, manifest, continuation);
  });
}

async function run(
  request: RunnerRequest,
  runtime: JobRuntime,
  deps: ResolvedDeps,
  shell: Shell,
  large: LargeJobs,
): Promise<Ran> {
  switch (request.kind) {
    case 'schedule':
      return startOnce(request.jobId, request.job, runtime, deps, shell, large);
    case 'job': {
      // Parsed here too so every log line of the run carries the job id, even a derived one.
      const { jobId } = parseJob(request.job);
      return startOnce(jobId, request.job, runtime, deps, shell, large);
    }
    case 'accepted': {
      shell.logger.appendKeys({ jobId: request.jobId });
      const accepted = await readJsonObject<AcceptedJob>(
        deps.store,
        jobKey(deps.store, request.jobId, 'accepted.json'),
      );
      if (!accepted) throw new FanoutError('UNKNOWN_JOB', `job ${request.jobId} was never accepted`);
      return startOnce(request.jobId, accepted.job, runtime, deps, shell, large);
    }
    case 'resume': {
      shell.logger.appendKeys({ jobId: request.jobId, continuation: request.continuation });
      const existing = await readManifest(deps.store, request.jobId, runtime.signal);
      if (existing && existing.status !== 'running' && existing.status !== 'partial') return ran(existing);
      // A redelivered continuation whose successor is already asked for must not run beside it.
      const successor = continuationKey(deps, request.jobId, request.continuation + 1);
      if (existing && (await objectExists(deps.store, successor, runtime.signal))) return ran(existing);
      return ran(await resumeJob(request.jobId, runtime));
    }
    case 'batch': {
      const { BatchInput } = request.event as { BatchInput?: { jobId?: unknown } };
      shell.logger.appendKeys({ jobId: String(BatchInput?.jobId ?? '') });
      // A batch is one piece of a job: a partial batch is the merge's to collect, never continued alone.
      return { kind: 'batch', summary: await runBatch(request.event, runtime) };
    }
    case 'redrive':
      shell.logger.appendKeys({ jobId: request.jobId });
      return ran(await redriveJob(request.jobId, request.codes ? { codes: request.codes } : {}, runtime));
    case 'merge':
      shell.logger.appendKeys({ jobId: request.jobId });
      // A partial merged job continues like any other: a resume skips every item the batches finished.
      return ran(await mergeBatches(request.jobId, runtime));
  }
}

function ran(manifest: Manifest): Ran {
  return { kind: 'manifest', manifest };
}

/**
 * A job that already has a final manifest (complete or failed) is returned as it is: a redelivery
 * fetches nothing twice. A partial one is run again, which resumes it (DESIGN: a later run resumes
 * pending items); a large job (an S3 source, or many items) goes to the state machine when one is
 * configured.
 */
async function startOnce(
  jobId: string,
  job: unknown,
  runtime: JobRuntime,
  deps: ResolvedDeps,
  shell: Shell,
  large: LargeJobs,
): Promise<Ran> {
  shell.logger.appendKeys({ jobId });
  const existing = await readManifest(deps.store, jobId, runtime.signal);
  // 'running' (an earlier attempt died mid-run) and 'partial' run again: the core resumes them.
  if (existing && (existing.status === 'complete' || existing.status === 'failed')) {
    shell.logger.info('job already has a manifest: returned as is', { status: existing.status });
    return ran(existing);
  }
  if (large.isLarge(job)) return { kind: 'started', summary: await large.start(job, runtime) };
  return ran(await runJob(job, runtime));
}

interface LargeJobs {
  isLarge(job: unknown): boolean;
  start(job: unknown, runtime: JobRuntime): Promise<StartedSummary>;
}

function resolveScale(deps: HandlerDeps, scale: ScaleDeps): LargeJobs {
  const config = deps.config;
  const stateMachineArn = config.stateMachineArn;
  // The stack sets FANOUT_MAP_* to its ItemBatcher's settings, so this plan batches exactly as the map does.
  const minItems = scale.mapMinItems ?? config.mapMinItems;
  const batchSize = scale.batchSize ?? config.mapBatchSize;
  const mapConcurrency = scale.mapConcurrency ?? config.mapConcurrency;
  const startExecution = scale.startExecution ?? sfnStartExecution();
  return {
    isLarge(job) {
      if (stateMachineArn === undefined) return false;
      const parsed = parseJob(job);
      return parsed.source !== undefined || parsed.items.length > minItems;
    },
    async start(job, runtime) {
      // Planning streams the whole source (dedupe, JSONL for the ItemReader): the runner's 15 minutes, not
      // the API's 28 seconds. Repeating it for a redelivered event rewrites the same objects.
      const plan = await planBatches(job, runtime, { batchSize, mapConcurrency });
      const name = executionName(plan.jobId);
      const { executionArn } = await startExecution({
        stateMachineArn: stateMachineArn ?? '',
        name,
        input: JSON.stringify(executionInputOf(plan)),
      });
      return {
        jobId: plan.jobId,
        status: 'accepted',
        execution: { name, executionArn },
        items: plan.items,
        batches: plan.batches,
      };
    },
  };
}

/** The job id (names are unique per state machine: starting the same job twice is one execution). */
export function executionName(jobId: string): string {
  if (jobId.length <= MAX_EXECUTION_NAME) return jobId;
  const digest = createHash('sha256').update(jobId).digest('hex').slice(0, 16);
  return `${jobId.slice(0, MAX_EXECUTION_NAME - 17)}-${digest}`;
}

/** StartExecution on Step Functions; an execution of that name already there is this job, started before. */
function sfnStartExecution(): StartExecution {
  let client: Promise<import('@aws-sdk/client-sfn').SFNClient> | undefined;
  return async (request) => {
    const sfn = await import('@aws-sdk/client-sfn');
    client ??= Promise.resolve(new sfn.SFNClient({}));
    try {
      const reply = await (await client).send(new sfn.StartExecutionCommand(request));
      return { executionArn: reply.executionArn ?? '' };
    } catch (error) {
      if ((error as { name?: string }).name !== 'ExecutionAlreadyExists') throw error;
      // arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<execution>
      const executionArn = `${request.stateMachineArn.replace(':stateMachine:', ':execution:')}:${request.name}`;
      return { executionArn };
    }
  };
}

function summarize(
  deps: ResolvedDeps,
  manifest: Manifest,
  continuation: ContinuationOutcome | undefined,
): RunSummary {
  const summary: RunSummary = {
    jobId: manifest.jobId,
    status: manifest.status,
    counts: manifest.counts,
    runs: manifest.runs,
    manifest: jobKey(deps.store, manifest.jobId, 'manifest.json'),
  };
  if (continuation) summary.continuation = continuation;
  return summary;
}
