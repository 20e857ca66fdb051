// The jobs API's replies: JSON bodies, the one error shape, and the request checks that precede a job.
import { createHash } from 'node:crypto';
import {
  type ErrorCode,
  isErrorCode,
  type JobIssue,
  JobValidationError,
  type ParsedJob,
  parseJob,
} from '../core/index.ts';
import type { HandlerConfig } from './config.ts';
import { isJobId } from './config.ts';
import { isRecord } from './runner-events.ts';

export type ErrorCodeOfApi =
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'INVALID_JSON'
  | 'INVALID_JOB'
  | 'INVALID_IDEMPOTENCY_KEY'
  | 'IDEMPOTENCY_KEY_REUSED'
  | 'BODY_TOO_LARGE'
  | 'TOO_MANY_ITEMS'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'INVALID_REDRIVE'
  | 'INVALID_PATH'
  | 'JOB_RUNNING'
  | 'INTERNAL';

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export function errorReply(
  status: number,
  code: ErrorCodeOfApi,
  message: string,
  extra: { issues?: readonly JobIssue[]; errorId?: string; headers?: Record<string, string> } = {},
): Response {
  const error: Record<string, unknown> = { code, message };
  if (extra.issues) error.issues = extra.issues;
  if (extra.errorId) error.errorId = extra.errorId;
  return json(status, { error }, extra.headers);
}

export type CheckedJob =
  | { ok: true; job: ParsedJob; body: Record<string, unknown>; sha256: string }
  | { ok: false; reply: Response };

/** Every check of POST /jobs, cheapest first; nothing here fetches or writes anything. */
export async function checkJobRequest(request: Request, config: HandlerConfig): Promise<CheckedJob> {
  const contentType = request.headers.get('content-type') ?? '';
  if (!JSON_TYPE.test(contentType)) {
    const got = contentType === '' ? 'no content type' : `"${contentType}"`;
    return fail(errorReply(415, 'UNSUPPORTED_MEDIA_TYPE', `a job is sent as application/json, not ${got}`));
  }
  const text = await request.text();
  const bytes = Buffer.byteLength(text);
  if (bytes > config.maxRequestBytes) {
    return fail(
      errorReply(
        413,
        'BODY_TOO_LARGE',
        `the body is ${bytes} bytes; at most ${config.maxRequestBytes} (use an S3 source)`,
      ),
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    return fail(errorReply(400, 'INVALID_JSON', `the body is not valid JSON: ${(error as Error).message}`));
  }
  if (isRecord(body) && Array.isArray(body.items) && body.items.length > config.maxItems) {
    const message = `${body.items.length} items; at most ${config.maxItems} per request (use an S3 source for more)`;
    return fail(errorReply(413, 'TOO_MANY_ITEMS', message));
  }
  const key = request.headers.get('idempotency-key');
  if (key !== null && !isJobId(key)) {
    const message = 'Idempotency-Key must match [A-Za-z0-9][A-Za-z0-9._-]{0,127} (it becomes the job id)';
    return fail(errorReply(400, 'INVALID_IDEMPOTENCY_KEY', message));
  }
  const withKey = key !== null && isRecord(body) ? { ...body, jobId: key } : body;
  try {
    const job = parseJob(withKey, { maxItems: config.maxItems });
    const sha256 = createHash('sha256').update(text).digest('hex');
    return { ok: true, job, body: { ...(withKey as Record<string, unknown>), jobId: job.jobId }, sha256 };
  } catch (error) {
    if (!(error instanceof JobValidationError)) throw error;
    return fail(errorReply(422, 'INVALID_JOB', error.message, { issues: error.issues }));
  }
}

function fail(reply: Response): CheckedJob {
  return { ok: false, reply };
}

export type CheckedRedrive = { ok: true; codes?: ErrorCode[] } | { ok: false; reply: Response };

/** POST /jobs/{id}/redrive takes no body, or `{ "codes": ["HTTP_STATUS", ...] }`. */
export async function checkRedriveRequest(request: Request): Promise<CheckedRedrive> {
  const text = (await request.text()).trim();
  if (text === '') return { ok: true };
  const contentType = request.headers.get('content-type') ?? '';
  if (!JSON_TYPE.test(contentType)) {
    return fail(errorReply(415, 'UNSUPPORTED_MEDIA_TYPE', 'a redrive body is sent as application/json'));
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    return fail(errorReply(400, 'INVALID_JSON', `the body is not valid JSON: ${(error as Error).message}`));
  }
  const issues: JobIssue[] = [];
  if (!isRecord(body))
    issues.push({ path: '', message: 'must be a JSON object like {"codes":["HTTP_STATUS"]}' });
  else {
    for (const key of Object.keys(body))
      if (key !== 'codes') issues.push({ path: key, message: 'unknown key' });
    if (body.codes !== undefined) {
      if (!Array.isArray(body.codes) || body.codes.length === 0) {
        issues.push({ path: 'codes', message: 'must be a non-empty array of error codes' });
      } else {
        body.codes.forEach((code, index) => {
          if (!isErrorCode(code))
            issues.push({ path: `codes[${index}]`, message: `unknown error code ${JSON.stringify(code)}` });
        });
      }
    }
  }
  if (issues.length > 0) {
    const message = issues
      .map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message))
      .join('; ');
    return fail(errorReply(422, 'INVALID_REDRIVE', message, { issues }));
  }
  const codes = (body as { codes?: ErrorCode[] }).codes;
  return codes ? { ok: true, codes } : { ok: true };
}
