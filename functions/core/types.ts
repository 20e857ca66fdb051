// The shapes that cross module boundaries: items, outcomes, progress, the runtime seams and the manifest.
import type { S3Client } from '@aws-sdk/client-s3';
import type { Clock } from './clock.ts';
import type { ErrorCode, ItemError } from './errors.ts';
import type { JobOptions, TransformSpec } from './job.ts';

/** One normalized request of a job: the unit the engine schedules and the store records. */
export interface Item {
  id: string;
  /** Normalized: WHATWG-parsed, host lower-cased, default port and fragment dropped. */
  url: string;
  method: string;
  headers: Record<string, string>;
  body?: string;
  retryUnsafe?: boolean;
}

interface OutcomeBase {
  id: string;
  url: string;
  /** Attempts made in this run (0 when the item never started). */
  attempts: number;
  /** Wall time from the item's first attempt to its outcome. */
  ms: number;
}

export interface SucceededOutcome extends OutcomeBase {
  ok: true;
  status: number;
  value: unknown;
}

export interface FailedOutcome extends OutcomeBase {
  ok: false;
  pending?: undefined;
  error: ItemError;
}

/** Not finished when the deadline came; `item` keeps the job form so a later run can resume it. */
export interface PendingOutcome extends OutcomeBase {
  ok: false;
  pending: true;
  item: Item;
}

export type Outcome = SucceededOutcome | FailedOutcome | PendingOutcome;

/** A snapshot for progress bars and logs; emitted often, so consumers must be cheap. */
export interface Progress {
  /** Distinct items known so far (null while a streamed source is still being read). */
  total: number | null;
  succeeded: number;
  failed: number;
  pending: number;
  inFlight: number;
  /** Attempts beyond each item's first. */
  retries: number;
  /** 429/503 answers seen. */
  throttled: number;
  failuresByCode: Partial<Record<ErrorCode, number>>;
  /** Event-loop delay p99 over the run so far (monitorEventLoopDelay), in ms. */
  loopDelayP99Ms: number;
  elapsedMs: number;
}

/** A fetched response handed to a transform. The body's buffer is moved to the worker, not copied. */
export interface FetchedResponse {
  itemId: string;
  url: string;
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type TransformResult =
  /** `json`: the text `value` was parsed from, when the value is the whole JSON body (inline path only). */
  | { ok: true; value: unknown; json?: string }
  | { ok: false; code: 'TRANSFORM_ERROR' | 'TRANSFORM_TIMEOUT' | 'TRANSFORM_CRASHED'; message: string };

/** Runs one named transform over one response; never throws for a transform's own failure. */
export type TransformRunner = (
  response: FetchedResponse,
  spec: TransformSpec,
  signal: AbortSignal,
) => Promise<TransformResult>;

/** Resolves a host name to every address it has (both families). Injected in tests. */
export type LookupAll = (hostname: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;

/** Per-origin figures kept in the manifest. */
export interface HostStats {
  requests: number;
  succeeded: number;
  failed: number;
  throttled: number;
  p50Ms: number;
  p95Ms: number;
  finalLimit: number;
}

/** Where and how results are written; chosen by the deployment, never by a job. */
export interface StoreConfig {
  client: S3Client;
  bucket: string;
  /** Defaults to DEFAULT_PREFIX ("jobs"). */
  prefix?: string;
  gzip?: boolean;
  /** Roll a part once it holds this many (uncompressed) bytes. */
  partBytes?: number;
  /** Write a checkpoint manifest at least this often while running. */
  checkpointMs?: number;
}

/** Structured log sink; handlers bind it to Powertools Logger, the CLI to stderr. */
export interface LogSink {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a deployment decides and a job never can. */
export interface Runtime {
  /** Destinations beyond the default policy: hosts, CIDRs, or "private" (the --allow-private ranges). */
  allow?: readonly string[];
  signal?: AbortSignal;
  /** Absolute deadline (ms since epoch): stop starting items, abort in-flight ones, report them pending. */
  deadline?: number;
  onProgress?: (progress: Progress) => void;
  store?: StoreConfig;
  /** Test and deployment seams. */
  clock?: Clock;
  lookup?: LookupAll;
  transformRunner?: TransformRunner;
  log?: LogSink;
  /** Which ports the default policy opens (80 and 443 unless the deployment says otherwise). */
  allowedPorts?: readonly number[];
  /** Divide each host's perHost and perHostRate by this (batches of one job sharing a host's budget). */
  hostShare?: number;
}

export type ManifestStatus = 'running' | 'complete' | 'partial' | 'failed';

export interface ManifestCounts {
  total: number;
  succeeded: number;
  failed: number;
  pending: number;
  duplicates: number;
}

/** The commit record of a job: readers trust the parts it lists and nothing else. */
export interface Manifest {
  jobId: string;
  status: ManifestStatus;
  startedAt: string;
  finishedAt: string | null;
  runs: number;
  counts: ManifestCounts;
  results: string[];
  errors: string[];
  pending: string | null;
  options: JobOptions;
  hosts: Record<string, HostStats>;
  error?: { code: string; message: string };
  /** Items re-run by `redrive` across all runs. */
  redriven?: number;
  /** Liveness of the run writing a `running` checkpoint: older than the lease means it died. */
  heartbeatAt?: string;
  /** Which run wrote this version (fencing between overlapping runs). */
  writer?: string;
}
