// Continuing a partial job: one claimed, bounded asynchronous self-invocation per continuation number.

import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Manifest } from '../core/index.ts';
import { claimObject, jobKey } from './job-objects.ts';
import type { ResolvedDeps } from './job-runtime.ts';
import type { Shell } from './lambda-shell.ts';

export type ContinuationOutcome =
  | { requested: number }
  | { alreadyRequested: number }
  | { exhausted: true; maxContinuations: number };

export function continuationKey(deps: ResolvedDeps, jobId: string, continuation: number): string {
  return jobKey(deps.store, jobId, `continuations/${String(continuation).padStart(4, '0')}.json`);
}

/** Where a continuation chain stands: the number to ask for next, and the last number before the chain. */
export interface ChainPosition {
  next: number;
  chainStart: number;
}

/**
 * A new chain for a job run by a trigger (not by a continuation): its numbers follow the highest one
 * any earlier chain of the job claimed, so a job left partial by an exhausted chain can be run again.
 */
export async function newChain(
  deps: ResolvedDeps,
  jobId: string,
  signal?: AbortSignal,
): Promise<ChainPosition> {
  const prefix = jobKey(deps.store, jobId, 'continuations/');
  let last = 0;
  let token: string | undefined;
  do {
    const page = await deps.store.client.send(
      new ListObjectsV2Command({ Bucket: deps.store.bucket, Prefix: prefix, ContinuationToken: token }),
      signal ? { abortSignal: signal } : {},
    );
    for (const object of page.Contents ?? []) {
      const number = Number(/(\d+)\.json$/.exec(object.Key ?? '')?.[1]);
      if (Number.isInteger(number) && number > last) last = number;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { next: last + 1, chainStart: last };
}

/**
 * Asks for continuation `next` of a partial job. The claim object makes it happen once however often
 * Lambda redelivers the event that asks; past FANOUT_MAX_CONTINUATIONS in this chain the job stays
 * partial and the log and a metric say why.
 */
export async function continueIfPartial(
  deps: ResolvedDeps,
  shell: Shell,
  manifest: Manifest,
  { next, chainStart }: ChainPosition,
): Promise<ContinuationOutcome | undefined> {
  if (manifest.status !== 'partial') return undefined;
  const { maxContinuations } = deps.config;
  if (next - chainStart > maxContinuations) {
    shell.metrics.addMetric('ContinuationsExhausted', MetricUnit.Count, 1);
    shell.logger.error('job left partial: continuations exhausted', {
      code: 'CONTINUATIONS_EXHAUSTED',
      maxContinuations,
      pending: manifest.counts.pending,
    });
    return { exhausted: true, maxContinuations };
  }
  const key = continuationKey(deps, manifest.jobId, next);
  const claim = await claimObject(deps.store, key, { jobId: manifest.jobId, continuation: next });
  if (claim === 'exists') return { alreadyRequested: next };
  try {
    // A first chain's event stays { jobId, resume, continuation }: chainStart 0 is the default.
    await deps.dispatcher.dispatch({
      jobId: manifest.jobId,
      resume: true,
      continuation: next,
      ...(chainStart > 0 ? { chainStart } : {}),
    });
  } catch (error) {
    // Release the claim so Lambda's retry of this invocation can ask again.
    await deps.store.client.send(new DeleteObjectCommand({ Bucket: deps.store.bucket, Key: key }));
    throw error;
  }
  shell.metrics.addMetric('Continuations', MetricUnit.Count, 1);
  shell.logger.info('continuation requested', { continuation: next, pending: manifest.counts.pending });
  return { requested: next };
}
