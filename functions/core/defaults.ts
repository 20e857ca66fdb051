// Every default and bound of a job and of the runtime, named with its unit and, where not obvious, why.

export const DEFAULT_CONCURRENCY = 32;
export const MAX_CONCURRENCY = 1024;
export const DEFAULT_PER_HOST = 8;

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_BODY_TIMEOUT_MS = 10_000;
export const DEFAULT_TOTAL_TIMEOUT_MS = 30_000;
export const MIN_TIMEOUT_MS = 1;
/** 15 minutes: the longest a Lambda invocation can live. */
export const MAX_TIMEOUT_MS = 900_000;

export const DEFAULT_MAX_ATTEMPTS = 3;
export const MAX_ATTEMPTS_LIMIT = 10;
export const DEFAULT_RETRY_BASE_MS = 200;
export const DEFAULT_RETRY_MAX_MS = 20_000;
/** A server's Retry-After may exceed `maxMs`, but never this: a minute is all we wait for anyone. */
export const MAX_RETRY_AFTER_MS = 60_000;

export const DEFAULT_MAX_FAILURE_RATIO = 1;
/** The failure ratio is judged only once this many items (or all of them) have finished. */
export const FAILURE_RATIO_MIN_FINISHED = 10;

export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
export const MAX_BODY_BYTES_LIMIT = 1024 * 1024 * 1024;
export const DEFAULT_MAX_REDIRECTS = 5;
export const MAX_REDIRECTS_LIMIT = 20;
/** Requests per second per origin; generous enough for any sane politeness setting. */
export const MAX_PER_HOST_RATE = 100_000;

export const MAX_URL_LENGTH = 2_048;
/** Inline items per job document; bigger jobs go through an S3 source. */
export const MAX_INLINE_ITEMS = 100_000;
/** A request body carried inline in a job (bigger payloads do not belong in a fan-out job). */
export const MAX_ITEM_BODY_BYTES = 1024 * 1024;
export const MAX_ITEM_HEADERS = 64;
export const MAX_HEADER_VALUE_LENGTH = 8_192;

export const ALLOWED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** RFC 9110 §9.2.2: only these may be retried without the item opting in with `retryUnsafe`. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
/** Hop-by-hop headers and those the client owns: a job may never set them. */
export const FORBIDDEN_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
]);

export const DEFAULT_TRANSFORM = 'auto';

/** Where results land under the bucket: s3://<bucket>/<prefix>/<jobId>/ */
export const DEFAULT_PREFIX = 'jobs';
