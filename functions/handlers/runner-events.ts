// What the runner was invoked with: one discriminated request per event shape the runner accepts.
import { type ErrorCode, FanoutError, isErrorCode } from '../core/index.ts';
import { isJobId } from './config.ts';

/** Events the handlers send to the runner themselves (asynchronous invokes). */
export type DispatchEvent =
  | { jobId: string; resume: true; continuation: number; chainStart?: number }
  | { jobId: string; accepted: true }
  | { jobId: string; redrive: true; codes?: ErrorCode[] };

export type RunnerRequest =
  /** EventBridge schedule: the job id is the rule and the scheduled time, so a redelivery is the same job. */
  | { kind: 'schedule'; job: Record<string, unknown>; jobId: string }
  /** A direct or asynchronous invoke whose event is the job. */
  | { kind: 'job'; job: unknown }
  /** A job POST /jobs accepted and stored as accepted.json. */
  | { kind: 'accepted'; jobId: string }
  /**
   * A continuation of a partial job. Numbers run on across triggers; a trigger's chain began after
   * `chainStart` and may go on to chainStart + FANOUT_MAX_CONTINUATIONS.
   */
  | { kind: 'resume'; jobId: string; continuation: number; chainStart: number }
  /** Step Functions Distributed Map: one batch of items, and the final merge. */
  | { kind: 'batch'; event: { Items: unknown[]; BatchInput: unknown } }
  | { kind: 'merge'; jobId: string }
  /** Re-run the failed items of a job (all, or those with the given codes) as a new run. */
  | { kind: 'redrive'; jobId: string; codes?: ErrorCode[] };

const MAX_JOB_ID_LENGTH = 128;

export function classifyRunnerEvent(event: unknown): RunnerRequest {
  if (!isRecord(event)) throw invalid('the event must be a JSON object');
  if (event['detail-type'] === 'Scheduled Event') return scheduleRequest(event);
  if (Array.isArray(event.Items) && 'BatchInput' in event) {
    return { kind: 'batch', event: { Items: event.Items, BatchInput: event.BatchInput } };
  }
  if (event.merge === true) return { kind: 'merge', jobId: requireJobId(event.jobId) };
  if (event.resume === true) {
    const continuation = event.continuation ?? 1;
    if (typeof continuation !== 'number' || !Number.isInteger(continuation) || continuation < 1) {
      throw invalid('continuation must be a positive integer');
    }
    const chainStart = event.chainStart ?? 0;
    if (
      typeof chainStart !== 'number' ||
      !Number.isInteger(chainStart) ||
      chainStart < 0 ||
      chainStart >= continuation
    ) {
      throw invalid('chainStart must be an integer from 0 to continuation - 1');
    }
    return { kind: 'resume', jobId: requireJobId(event.jobId), continuation, chainStart };
  }
  if (event.accepted === true) return { kind: 'accepted', jobId: requireJobId(event.jobId) };
  if (event.redrive === true) {
    const jobId = requireJobId(event.jobId);
    if (event.codes === undefined) return { kind: 'redrive', jobId };
    return { kind: 'redrive', jobId, codes: parseErrorCodes(event.codes) };
  }
  return { kind: 'job', job: event };
}

function scheduleRequest(event: Record<string, unknown>): RunnerRequest {
  const detail = event.detail;
  if (!isRecord(detail) || (!('items' in detail) && !('source' in detail))) {
    throw invalid('a scheduled event must carry the job in "detail" (items or source)');
  }
  const time = typeof event.time === 'string' ? Date.parse(event.time) : Number.NaN;
  if (Number.isNaN(time)) throw invalid('a scheduled event needs its "time" to name the job');
  const resources = Array.isArray(event.resources) ? event.resources : [];
  const base = isJobId(detail.jobId) ? detail.jobId : ruleName(resources[0]);
  // 2026-11-25T02:00:00.000Z -> 20261125T020000Z: sortable, and within the job-id grammar.
  const stamp = `${new Date(time).toISOString().slice(0, 19).replace(/[-:]/g, '')}Z`;
  const jobId = `${base.slice(0, MAX_JOB_ID_LENGTH - stamp.length - 1)}-${stamp}`;
  return { kind: 'schedule', job: { ...detail, jobId }, jobId };
}

/** `arn:aws:events:<region>:<account>:rule/[<bus>/]<name>` -> `<name>`, made a valid job-id start. */
function ruleName(arn: unknown): string {
  const name = typeof arn === 'string' ? (arn.split('/').pop() ?? '') : '';
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, '-');
  if (cleaned === '') return 'schedule';
  return /^[A-Za-z0-9]/.test(cleaned) ? cleaned : `s${cleaned}`;
}

/** A list of the stable error codes of DESIGN.md; anything else is named in the error. */
export function parseErrorCodes(value: unknown): ErrorCode[] {
  if (!Array.isArray(value) || value.length === 0)
    throw invalid('codes must be a non-empty array of error codes');
  const unknown = value.filter((code) => !isErrorCode(code));
  if (unknown.length > 0)
    throw invalid(`codes: unknown error code ${unknown.map((c) => JSON.stringify(c)).join(', ')}`);
  return value as ErrorCode[];
}

function requireJobId(value: unknown): string {
  if (!isJobId(value)) throw invalid('jobId must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}');
  return value;
}

function invalid(message: string): FanoutError {
  return new FanoutError('INVALID_EVENT', message);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
