// The runner handler: schedule, direct job, accepted job, continuation; each run to a manifest summary.
import type { Context } from 'aws-lambda';
import {
  FanoutError,
  type JobRuntime,
  type Manifest,
  type ManifestCounts,
  parseJob,
  readManifest,
  resumeJob,
  runJob,
} from '../core/index.ts';
import { type ContinuationOutcome, continuationKey, continueIfPartial } from './continuation.ts';
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

export function createRunJobHandler(deps: HandlerDeps) {
  const shell = deps.shell ?? createShell({ tracing: deps.config.tracing });
  const resolved = resolveDeps(deps);
  return shell.wrap(async (event: unknown, context: Context, { signal }): Promise<RunSummary> => {
    const request = classifyRunnerEvent(event);
    const figures = emptyRunFigures();
    const runtime = buildRuntime(resolved, shell, context, signal, figures);
    const manifest = await run(request, runtime, resolved, shell);
    recordRunMetrics(shell.metrics, manifest, figures);
    const next = request.kind === 'resume' ? request.continuation + 1 : 1;
    const continuation = await continueIfPartial(resolved, shell, manifest, next);
    shell.logger.info('run finished', { status: manifest.status, counts: manifest.counts });
    return summarize(resolved, manifest, continuation);
  });
}

async function run(
  request: RunnerRequest,
  runtime: JobRuntime,
  deps: ResolvedDeps,
  shell: Shell,
): Promise<Manifest> {
  switch (request.kind) {
    case 'schedule':
      return startOnce(request.jobId, request.job, runtime, deps, shell);
    case 'job': {
      // Parsed here too so every log line of the run carries the job id, even a derived one.
      const { jobId } = parseJob(request.job);
      return startOnce(jobId, request.job, runtime, deps, shell);
    }
    case 'accepted': {
      shell.logger.appendKeys({ jobId: request.jobId });
      const accepted = await readJsonObject<AcceptedJob>(
        deps.store,
        jobKey(deps.store, request.jobId, 'accepted.json'),
      );
      if (!accepted) throw new FanoutError('UNKNOWN_JOB', `job ${request.jobId} was never accepted`);
      return startOnce(request.jobId, accepted.job, runtime, deps, shell);
    }
    case 'resume': {
      shell.logger.appendKeys({ jobId: request.jobId, continuation: request.continuation });
      const existing = await readManifest(deps.store, request.jobId, runtime.signal);
      if (existing && existing.status !== 'running' && existing.status !== 'partial') return existing;
      // A redelivered continuation whose successor is already asked for must not run beside it.
      const successor = continuationKey(deps, request.jobId, request.continuation + 1);
      if (existing && (await objectExists(deps.store, successor, runtime.signal))) return existing;
      return resumeJob(request.jobId, runtime);
    }
    case 'batch':
    case 'merge':
      // Issue 10 (scale) adds runBatch(event, runtime) and mergeBatches(jobId, runtime) to the core.
      throw new FanoutError(
        'NOT_IMPLEMENTED',
        `Distributed Map ${request.kind} events are not supported yet`,
      );
  }
}

/** A job that already has a final manifest is returned as it is: a redelivery fetches nothing twice. */
async function startOnce(
  jobId: string,
  job: unknown,
  runtime: JobRuntime,
  deps: ResolvedDeps,
  shell: Shell,
): Promise<Manifest> {
  shell.logger.appendKeys({ jobId });
  const existing = await readManifest(deps.store, jobId, runtime.signal);
  // 'running' means an earlier attempt died mid-run: run again, and the core resumes it.
  if (existing && existing.status !== 'running') {
    shell.logger.info('job already has a manifest: returned as is', { status: existing.status });
    return existing;
  }
  return runJob(job, runtime);
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
