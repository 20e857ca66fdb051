// One HTTP attempt on the job's undici Agent: timeouts, decompression under a byte limit, errors as codes.
//
// Built on `dispatch` with a handler object rather than `request()`: no Readable per response, no
// AbortSignal per attempt and no closure per chunk, which is what the throughput target needs.
// Deadlines are one sweep over the attempts in flight (bounded by concurrency) instead of timers per
// attempt: the total one, and the headers and body-gap ones too, because undici 8 runs those on its
// "fast timers" (~1 s granularity), too coarse for sub-second settings. undici's own are turned off
// (0 per request): the sweep covers every phase, and arming and clearing undici's timer on every
// request and every chunk cost about 3% of the client's CPU at 25k requests/s.
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { ErrorCode, ItemError } from './errors.ts';
import { isErrorCode } from './errors.ts';

export interface HttpClientOptions {
  /** The job's Agent (its connector enforces the destination policy). */
  dispatcher: Dispatcher;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  totalTimeoutMs: number;
  maxBodyBytes: number;
}

export interface AttemptRequest {
  /** `scheme://host[:port]` of a normalized URL (no credentials, default port dropped). */
  origin: string;
  /** Path and query, starting with `/`. */
  path: string;
  method: string;
  headers: Record<string, string>;
  body?: string | undefined;
}

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface HttpResponse {
  status: number;
  headers: ResponseHeaders;
  /** Decoded body chunks; kept for 2xx only (other statuses are drained and dropped). */
  chunks: Buffer[];
  bytes: number;
}

export type AttemptResult =
  | { ok: true; response: HttpResponse }
  | { ok: false; error: ItemError; temporary?: boolean };

export interface HttpClient {
  /** One attempt: never rejects; failures come back as codes. */
  fetchOnce(request: AttemptRequest): Promise<AttemptResult>;
  /** Aborts every attempt in flight (and any started later) with `code`. */
  abortAll(code: ErrorCode): void;
  readonly inFlight: number;
  /** Stops the timeout sweep; the Agent belongs to the caller. */
  close(): void;
}

/** A non-2xx body is read to keep the connection reusable, but only this much: past it we hang up. */
const DRAIN_LIMIT_BYTES = 64 * 1024;
const ACCEPT_ENCODING = 'gzip, deflate, br';

/** An abort we started: `itemCode` says why, so the error mapping never guesses. */
class AttemptAbort extends Error {
  readonly itemCode: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'AttemptAbort';
    this.itemCode = code;
  }
}

export function createHttpClient(options: HttpClientOptions): HttpClient {
  const active = new Set<AttemptHandler>();
  let abortCode: ErrorCode | null = null;
  // Sweep often enough that every deadline fires within ~10% of its setting (and at most 250 ms late).
  const shortestMs = Math.min(options.totalTimeoutMs, options.headersTimeoutMs, options.bodyTimeoutMs);
  const sweepMs = Math.min(250, Math.max(5, Math.floor(shortestMs / 10)));
  let sweep: NodeJS.Timeout | null = null;

  const onSweep = (): void => {
    const now = performance.now();
    for (const attempt of active) {
      if (now >= attempt.deadlineAt) {
        attempt.abort('TIMEOUT_TOTAL', `no complete response within ${options.totalTimeoutMs} ms`);
      } else if (now >= attempt.phaseDeadline) {
        if (attempt.phase === 'headers') {
          attempt.abort('TIMEOUT_HEADERS', `no response headers within ${options.headersTimeoutMs} ms`);
        } else {
          attempt.abort('TIMEOUT_BODY', `no body data for ${options.bodyTimeoutMs} ms`);
        }
      }
    }
  };

  return {
    fetchOnce(request) {
      if (sweep === null) {
        sweep = setInterval(onSweep, sweepMs);
        sweep.unref();
      }
      return new Promise<AttemptResult>((resolve) => {
        const attempt = new AttemptHandler(options, resolve, active, request.method === 'HEAD');
        active.add(attempt);
        if (abortCode !== null) {
          attempt.finish({ ok: false, error: { code: abortCode, message: 'aborted before it started' } });
          return;
        }
        const headers = withAcceptEncoding(request.headers);
        try {
          options.dispatcher.dispatch(
            {
              origin: request.origin,
              path: request.path,
              method: request.method as Dispatcher.HttpMethod,
              headers,
              body: request.body ?? null,
              // The sweep above owns both deadlines (see the header comment).
              headersTimeout: 0,
              bodyTimeout: 0,
            },
            attempt,
          );
        } catch (error) {
          attempt.finish(toAttemptFailure(error));
        }
      });
    },
    abortAll(code) {
      abortCode = code;
      for (const attempt of active) attempt.abort(code, 'aborted');
    },
    get inFlight() {
      return active.size;
    },
    close() {
      if (sweep !== null) clearInterval(sweep);
      sweep = null;
    },
  };
}

const DEFAULT_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'accept-encoding': ACCEPT_ENCODING,
});

/** We decode gzip, deflate and br, so say so unless the item chose; most items have no headers at all. */
function withAcceptEncoding(headers: Record<string, string>): Record<string, string> {
  if (headers['accept-encoding'] !== undefined) return headers;
  for (const _ in headers) return { ...headers, 'accept-encoding': ACCEPT_ENCODING };
  return DEFAULT_HEADERS;
}

type Decoder = zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress;

/** undici's handler for one attempt; methods on the prototype so a chunk costs no allocation. */
class AttemptHandler implements Dispatcher.DispatchHandler {
  readonly deadlineAt: number;
  /** When the current phase (waiting for headers, or the gap between body chunks) times out. */
  phaseDeadline = Number.POSITIVE_INFINITY;
  phase: 'headers' | 'body' = 'headers';
  private readonly options: HttpClientOptions;
  private readonly resolve: (result: AttemptResult) => void;
  private readonly active: Set<AttemptHandler>;
  private controller: Dispatcher.DispatchController | null = null;
  private pendingAbort: AttemptAbort | null = null;
  private settled = false;
  private status = 0;
  private headers: ResponseHeaders = {};
  private keepBody = false;
  private chunks: Buffer[] = [];
  private bytes = 0;
  private decoder: Decoder | null = null;
  private readonly headRequest: boolean;

  constructor(
    options: HttpClientOptions,
    resolve: (result: AttemptResult) => void,
    active: Set<AttemptHandler>,
    headRequest: boolean,
  ) {
    this.options = options;
    this.resolve = resolve;
    this.active = active;
    this.headRequest = headRequest;
    this.deadlineAt = performance.now() + options.totalTimeoutMs;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // The request is on a connected socket now: the wait for headers starts.
    this.phaseDeadline = performance.now() + this.options.headersTimeoutMs;
    if (this.pendingAbort !== null) controller.abort(this.pendingAbort);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: ResponseHeaders,
  ): void {
    if (statusCode < 200) return; // 1xx informational: the real answer follows
    this.status = statusCode;
    this.headers = headers;
    this.phase = 'body';
    this.phaseDeadline = performance.now() + this.options.bodyTimeoutMs;
    this.keepBody = statusCode < 300;
    // No body follows (RFC 9110 §6.4.1): its content-length and content-encoding describe one that is not sent.
    if (!this.keepBody || this.headRequest || statusCode === 204 || statusCode === 205) return;
    const encoding = headerValue(headers['content-encoding'])?.trim().toLowerCase() ?? '';
    if (encoding === '' || encoding === 'identity') {
      const declared = Number(headerValue(headers['content-length']));
      // Refuse before reading a byte: the declared size is the decoded size when nothing is encoded.
      if (declared > this.options.maxBodyBytes) {
        this.fail(
          controller,
          'BODY_TOO_LARGE',
          `content-length ${declared} exceeds maxBodyBytes ${this.options.maxBodyBytes}`,
        );
      }
      return;
    }
    const decoder = createDecoder(encoding);
    if (decoder === null) {
      this.fail(controller, 'BAD_CONTENT', `unsupported content-encoding "${encoding}"`);
      return;
    }
    this.decoder = decoder;
    decoder.on('data', (chunk: Buffer) => this.onDecoded(chunk));
    decoder.on('error', (error: Error) =>
      this.fail(controller, 'BAD_CONTENT', `bad ${encoding} body: ${error.message}`),
    );
    decoder.on('end', () => this.succeed());
    decoder.on('drain', () => controller.resume());
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    this.phaseDeadline = performance.now() + this.options.bodyTimeoutMs;
    if (!this.keepBody) {
      this.bytes += chunk.length;
      // Draining a big error page is not worth the bytes: hang up and report the status.
      if (this.bytes > DRAIN_LIMIT_BYTES) {
        this.finish(this.response());
        controller.abort(new AttemptAbort('CONNECTION', 'error body too long to drain'));
      }
      return;
    }
    if (this.decoder !== null) {
      // Backpressure: a bomb inflates in the decoder, so stop reading until it has caught up.
      if (!this.decoder.write(chunk)) controller.pause();
      return;
    }
    this.bytes += chunk.length;
    if (this.bytes > this.options.maxBodyBytes) {
      this.fail(controller, 'BODY_TOO_LARGE', `body exceeds maxBodyBytes ${this.options.maxBodyBytes}`);
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    if (this.decoder !== null) {
      // The decoder's 'end' settles once it has flushed what it holds.
      this.decoder.end();
      return;
    }
    this.succeed();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.settled) return;
    const reason = this.pendingAbort;
    this.finish(reason !== null ? toAttemptFailure(reason) : toAttemptFailure(error));
  }

  /**
   * Aborts from outside (total deadline, job abort). Before onRequestStart undici has no controller to
   * take it (DNS and connect may run for connectMs more), so the attempt settles now and onRequestStart
   * cancels the request if the connection ever comes.
   */
  abort(code: ErrorCode, message: string): void {
    if (this.settled || this.pendingAbort !== null) return;
    this.pendingAbort = new AttemptAbort(code, message);
    if (this.controller !== null) this.controller.abort(this.pendingAbort);
    else this.finish(toAttemptFailure(this.pendingAbort));
  }

  finish(result: AttemptResult): void {
    if (this.settled) return;
    this.settled = true;
    this.active.delete(this);
    if (this.decoder !== null && !result.ok) this.decoder.destroy();
    this.resolve(result);
  }

  private onDecoded(chunk: Buffer): void {
    if (this.settled) return;
    this.bytes += chunk.length;
    if (this.bytes > this.options.maxBodyBytes) {
      const controller = this.controller;
      const message = `decoded body exceeds maxBodyBytes ${this.options.maxBodyBytes}`;
      if (controller !== null) this.fail(controller, 'BODY_TOO_LARGE', message);
      else this.finish({ ok: false, error: { code: 'BODY_TOO_LARGE', message } });
      return;
    }
    this.chunks.push(chunk);
  }

  private succeed(): void {
    this.finish(this.response());
  }

  private response(): AttemptResult {
    return {
      ok: true,
      response: { status: this.status, headers: this.headers, chunks: this.chunks, bytes: this.bytes },
    };
  }

  private fail(controller: Dispatcher.DispatchController, code: ErrorCode, message: string): void {
    if (this.settled) return;
    this.finish({ ok: false, error: { code, message } });
    // Settled first, so the abort's own error callback is ignored.
    controller.abort(new AttemptAbort(code, message));
  }
}

function createDecoder(encoding: string): Decoder | null {
  // Z_SYNC_FLUSH: accept a stream cut short at a flush point, as browsers and curl do.
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (encoding === 'gzip' || encoding === 'x-gzip') return zlib.createGunzip(flush);
  if (encoding === 'deflate') return zlib.createInflate(flush);
  if (encoding === 'br') return zlib.createBrotliDecompress();
  return null;
}

export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

const CONNECTION_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
]);
const DNS_CODES: ReadonlySet<string> = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'ENODATA',
]);

/** Maps any error of an attempt to our codes by its `code` (never instanceof: errors cross realms). */
export function toAttemptFailure(error: unknown): { ok: false; error: ItemError; temporary?: boolean } {
  const record = (typeof error === 'object' && error !== null ? error : {}) as {
    code?: unknown;
    itemCode?: unknown;
    temporary?: unknown;
    message?: unknown;
    name?: unknown;
  };
  const message =
    typeof record.message === 'string' && record.message !== '' ? record.message : String(error);
  const code = typeof record.code === 'string' ? record.code : '';
  // The destination guard and our own aborts say exactly what they mean.
  if (isErrorCode(record.itemCode)) {
    const failure: { ok: false; error: ItemError; temporary?: boolean } = {
      ok: false,
      error: { code: record.itemCode, message },
    };
    if (record.temporary === true) failure.temporary = true;
    return failure;
  }
  return { ok: false, error: { code: mapCode(code, record.name), message }, ...temporaryOf(code) };
}

function temporaryOf(code: string): { temporary?: boolean } {
  return code === 'EAI_AGAIN' ? { temporary: true } : {};
}

function mapCode(code: string, name: unknown): ErrorCode {
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return 'TIMEOUT_CONNECT';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'TIMEOUT_HEADERS';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'TIMEOUT_BODY';
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
    case 'ERR_BUFFER_TOO_LARGE':
      return 'BODY_TOO_LARGE';
    case 'UND_ERR_ABORTED':
    case 'UND_ERR_ABORT':
    case 'UND_ERR_DESTROYED':
    case 'ABORT_ERR':
      return 'ABORTED';
    case 'Z_DATA_ERROR':
    case 'Z_BUF_ERROR':
      return 'BAD_CONTENT';
  }
  if (DNS_CODES.has(code)) return 'DNS';
  if (CONNECTION_CODES.has(code) || code.startsWith('HPE_')) return 'CONNECTION';
  if (name === 'AbortError') return 'ABORTED';
  return 'CONNECTION';
}
