// The stable error codes of an item's failure, and the one error type a rejected job raises.

export const ERROR_CODES = [
  'INVALID_URL',
  'BLOCKED_DESTINATION',
  'DNS',
  'CONNECTION',
  'TIMEOUT_CONNECT',
  'TIMEOUT_HEADERS',
  'TIMEOUT_BODY',
  'TIMEOUT_TOTAL',
  'HTTP_STATUS',
  'TOO_MANY_REDIRECTS',
  'BODY_TOO_LARGE',
  'BAD_CONTENT',
  'TRANSFORM_ERROR',
  'TRANSFORM_TIMEOUT',
  'TRANSFORM_CRASHED',
  'ABORTED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** How a failed item is recorded: a stable code, a human message, the final HTTP status if any. */
export interface ItemError {
  code: ErrorCode;
  message: string;
  status?: number;
}

/** One problem in a job document, located by a path such as `items[3].url`. */
export interface JobIssue {
  path: string;
  message: string;
}

/** A job rejected before anything was fetched; `message` lists every issue as `path: problem`. */
export class JobValidationError extends Error {
  readonly code = 'INVALID_JOB';
  readonly issues: readonly JobIssue[];

  constructor(issues: readonly JobIssue[]) {
    super(issues.map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message)).join('; '));
    this.name = 'JobValidationError';
    this.issues = issues;
  }
}

/** A failure of the job as a whole (S3 unreachable, a corrupt manifest), as opposed to one item's. */
export class FanoutError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FanoutError';
    this.code = code;
  }
}
