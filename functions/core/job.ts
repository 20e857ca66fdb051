// The job: zod schemas (the one source of truth for API, runner and CLI), URL normalization, ids.
import { createHash, hash } from 'node:crypto';
import * as z from 'zod';
import * as D from './defaults.ts';
import { type ItemError, type JobIssue, JobValidationError } from './errors.ts';
import { assertKnownTransform } from './transforms/catalog.ts';
import type { Item } from './types.ts';

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// C0 controls, DEL and C1 controls: WHATWG URL would silently strip some of them, so refuse first.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;
const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/;

const int = (min: number, max: number) =>
  z
    .number({ error: 'must be a number' })
    .int({ error: 'must be an integer' })
    .min(min, { error: `must be >= ${min}` })
    .max(max, { error: `must be <= ${max}` });
const ms = () => int(D.MIN_TIMEOUT_MS, D.MAX_TIMEOUT_MS);

const TimeoutsSchema = z.strictObject({
  connectMs: ms().default(D.DEFAULT_CONNECT_TIMEOUT_MS),
  headersMs: ms().default(D.DEFAULT_HEADERS_TIMEOUT_MS),
  bodyMs: ms().default(D.DEFAULT_BODY_TIMEOUT_MS),
  totalMs: ms().default(D.DEFAULT_TOTAL_TIMEOUT_MS),
});

const RetriesSchema = z.strictObject({
  maxAttempts: int(1, D.MAX_ATTEMPTS_LIMIT).default(D.DEFAULT_MAX_ATTEMPTS),
  baseMs: int(0, D.MAX_TIMEOUT_MS).default(D.DEFAULT_RETRY_BASE_MS),
  maxMs: int(0, D.MAX_TIMEOUT_MS).default(D.DEFAULT_RETRY_MAX_MS),
});

export const TransformSpecSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,63}$/, { error: 'must be a transform name like "json" or "my-transform"' }),
  options: z.record(z.string(), z.unknown()).default({}),
});
export type TransformSpec = z.output<typeof TransformSpecSchema>;

export const OptionsSchema = z
  .strictObject({
    concurrency: int(1, D.MAX_CONCURRENCY).default(D.DEFAULT_CONCURRENCY),
    perHost: int(1, D.MAX_CONCURRENCY).optional(),
    perHostRate: z
      .number({ error: 'must be a number or null' })
      .positive({ error: 'must be > 0' })
      .max(D.MAX_PER_HOST_RATE, { error: `must be <= ${D.MAX_PER_HOST_RATE}` })
      .nullable()
      .default(null),
    adaptive: z.boolean({ error: 'must be true or false' }).default(true),
    timeouts: TimeoutsSchema.prefault({}),
    retries: RetriesSchema.prefault({}),
    mode: z.enum(['settle', 'fail-fast'], { error: 'must be "settle" or "fail-fast"' }).default('settle'),
    maxFailureRatio: z
      .number({ error: 'must be a number' })
      .min(0, { error: 'must be >= 0' })
      .max(1, { error: 'must be <= 1' })
      .default(D.DEFAULT_MAX_FAILURE_RATIO),
    maxBodyBytes: int(1, D.MAX_BODY_BYTES_LIMIT).default(D.DEFAULT_MAX_BODY_BYTES),
    maxRedirects: int(0, D.MAX_REDIRECTS_LIMIT).default(D.DEFAULT_MAX_REDIRECTS),
    transform: TransformSpecSchema.prefault({ name: D.DEFAULT_TRANSFORM }),
  })
  .transform((options, ctx) => {
    // perHost defaults to min(DEFAULT_PER_HOST, concurrency) so a small job needs to set one number only.
    const perHost = options.perHost ?? Math.min(D.DEFAULT_PER_HOST, options.concurrency);
    if (perHost > options.concurrency) {
      ctx.issues.push({
        code: 'custom',
        path: ['perHost'],
        message: `must be <= concurrency (${options.concurrency})`,
        input: options.perHost,
      });
    }
    return { ...options, perHost };
  });
/** Options with every default filled in. */
export type JobOptions = z.output<typeof OptionsSchema>;

type UrlCheck = { ok: true; url: string } | { ok: false; message: string };

/** WHATWG parse, then refuse what a fan-out job must never carry; returns the normalized form. */
export function normalizeUrl(raw: string): UrlCheck {
  if (raw.length > D.MAX_URL_LENGTH)
    return { ok: false, message: `invalid URL: longer than ${D.MAX_URL_LENGTH} characters` };
  if (CONTROL_CHARS.test(raw)) return { ok: false, message: 'invalid URL: contains control characters' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: 'invalid URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { ok: false, message: `invalid URL: scheme "${url.protocol.slice(0, -1)}" is not http or https` };
  }
  if (url.username || url.password)
    return { ok: false, message: 'invalid URL: credentials in the URL are not allowed' };
  if (!url.hostname) return { ok: false, message: 'invalid URL: no host' };
  // By the raw text, not url.hash: a bare trailing "#" has hash "" but stays in href.
  if (raw.includes('#')) url.hash = '';
  const normalized = url.href;
  if (normalized.length > D.MAX_URL_LENGTH) {
    return { ok: false, message: `invalid URL: longer than ${D.MAX_URL_LENGTH} characters once normalized` };
  }
  return { ok: true, url: normalized };
}

const UrlSchema = z.string({ error: 'must be a URL string' }).transform((raw, ctx) => {
  const checked = normalizeUrl(raw);
  if (checked.ok) return checked.url;
  ctx.issues.push({ code: 'custom', message: checked.message, input: raw });
  return z.NEVER;
});

const HeadersSchema = z
  .record(z.string(), z.string({ error: 'header values must be strings' }))
  .transform((headers, ctx) => {
    const out: Record<string, string> = {};
    const names = Object.keys(headers);
    if (names.length > D.MAX_ITEM_HEADERS) {
      ctx.issues.push({ code: 'custom', message: `at most ${D.MAX_ITEM_HEADERS} headers`, input: headers });
    }
    for (const name of names) {
      const value = headers[name] ?? '';
      const lower = name.toLowerCase();
      if (!HEADER_NAME.test(name)) {
        ctx.issues.push({ code: 'custom', path: [name], message: 'invalid header name', input: name });
      } else if (D.FORBIDDEN_REQUEST_HEADERS.has(lower)) {
        ctx.issues.push({
          code: 'custom',
          path: [name],
          message: `header "${lower}" may not be set by a job`,
          input: name,
        });
      } else if (/[\r\n\0]/.test(value) || value.length > D.MAX_HEADER_VALUE_LENGTH) {
        ctx.issues.push({
          code: 'custom',
          path: [name],
          message: `invalid header value (no CR, LF or NUL; at most ${D.MAX_HEADER_VALUE_LENGTH} characters)`,
          input: value,
        });
      } else {
        out[lower] = value;
      }
    }
    return out;
  });

const ItemObjectSchema = z
  .strictObject({
    id: z.string().regex(ID_PATTERN, { error: 'must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}' }).optional(),
    url: UrlSchema,
    method: z
      .string({ error: 'must be a string' })
      .transform((method) => method.toUpperCase())
      .pipe(z.enum(D.ALLOWED_METHODS, { error: `must be one of ${D.ALLOWED_METHODS.join(', ')}` }))
      .default('GET'),
    headers: HeadersSchema.default({}),
    body: z
      .string({ error: 'must be a string' })
      .refine((body) => Buffer.byteLength(body) <= D.MAX_ITEM_BODY_BYTES, {
        error: `must be at most ${D.MAX_ITEM_BODY_BYTES} bytes`,
      })
      .optional(),
    retryUnsafe: z.boolean({ error: 'must be true or false' }).optional(),
  })
  .superRefine((item, ctx) => {
    if (item.body !== undefined && (item.method === 'GET' || item.method === 'HEAD')) {
      ctx.addIssue({ code: 'custom', path: ['body'], message: `not allowed with ${item.method}` });
    }
  });

/** An item as a job may write it: a bare URL (GET) or an object. */
export const ItemInputSchema = z.preprocess(
  (value) => (typeof value === 'string' ? { url: value } : value),
  ItemObjectSchema,
);

const SourceSchema = z.strictObject({
  s3: z.string().regex(S3_URI, { error: 'must be an s3://bucket/key URI' }),
});

export const JobSchema = z
  .strictObject(
    {
      jobId: z
        .string()
        .regex(ID_PATTERN, { error: 'must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}' })
        .optional(),
      items: z.array(z.unknown(), { error: 'must be an array' }).optional(),
      source: SourceSchema.optional(),
      options: OptionsSchema.prefault({}),
    },
    { error: 'a job must be a JSON object' },
  )
  .superRefine((job, ctx) => {
    if (job.items && job.source)
      ctx.addIssue({ code: 'custom', path: ['source'], message: 'give items or source, not both' });
    if (!job.items && !job.source)
      ctx.addIssue({ code: 'custom', path: ['items'], message: 'required (or give source)' });
  });

export interface S3Source {
  uri: string;
  bucket: string;
  key: string;
}

export interface ParsedJob {
  jobId: string;
  /** Distinct items in first-seen order; empty for an S3 source (read streamed by the runner). */
  items: Item[];
  /** Extra copies dropped (four copies of one item: 3). */
  duplicates: number;
  source?: S3Source;
  options: JobOptions;
}

/** Problems named in one rejection, at most. */
const MAX_REPORTED_ISSUES = 20;

export interface ParseLimits {
  /** Inline items allowed in one document (the API sets its own, lower). */
  maxItems?: number;
}

/** Validates a whole job; throws JobValidationError naming every problem's path. Fetches nothing. */
export function parseJob(input: unknown, limits: ParseLimits = {}): ParsedJob {
  const parsed = JobSchema.safeParse(input);
  if (!parsed.success) {
    // Items are checked apart (parseItems): add theirs, so one rejection names every problem.
    const issues = [...toIssues(parsed.error.issues), ...itemIssues(input, limits)];
    throw new JobValidationError(issues.slice(0, MAX_REPORTED_ISSUES));
  }
  const job = parsed.data;
  const options = job.options;
  // A transform the deployment does not have fails the job here, before anything is fetched.
  assertKnownTransform(options.transform);
  if (job.source) {
    const match = S3_URI.exec(job.source.s3);
    const source = { uri: job.source.s3, bucket: match?.[1] ?? '', key: match?.[2] ?? '' };
    const jobId = job.jobId ?? deriveJobId({ source: source.uri, options });
    return { jobId, items: [], duplicates: 0, source, options };
  }
  const { items, duplicates } = parseItems(job.items ?? [], limits);
  const jobId = job.jobId ?? deriveJobId({ items, options });
  return { jobId, items, duplicates, options };
}

/** The item problems of a job whose other fields failed (none when its items are not a list to check). */
function itemIssues(input: unknown, limits: ParseLimits): readonly JobIssue[] {
  const items =
    typeof input === 'object' && input !== null ? (input as { items?: unknown }).items : undefined;
  if (!Array.isArray(items)) return [];
  try {
    parseItems(items, limits);
    return [];
  } catch (error) {
    return error instanceof JobValidationError ? error.issues : [];
  }
}

/** Validates and resolves options alone (the library's `fanOut(items, options)`). */
export function parseOptions(input: unknown): JobOptions {
  const parsed = OptionsSchema.safeParse(input ?? {});
  if (!parsed.success) throw new JobValidationError(toIssues(parsed.error.issues, ['options']));
  // No transform-name check here: a library caller may bring its own runtime.transformRunner and names.
  return parsed.data;
}

/** Validates, normalizes, assigns ids and deduplicates; every issue names `items[i].field`. */
export function parseItems(
  input: readonly unknown[],
  limits: ParseLimits = {},
): { items: Item[]; duplicates: number } {
  const maxItems = limits.maxItems ?? D.MAX_INLINE_ITEMS;
  if (input.length === 0)
    throw new JobValidationError([{ path: 'items', message: 'must hold at least one item' }]);
  if (input.length > maxItems) {
    throw new JobValidationError([
      {
        path: 'items',
        message: `${input.length} items; at most ${maxItems} inline (use an S3 source for more)`,
      },
    ]);
  }
  const issues: JobIssue[] = [];
  const seen = new Set<string>();
  const items: Item[] = [];
  let duplicates = 0;
  input.forEach((raw, index) => {
    let item: Item;
    if (typeof raw === 'string') {
      // Bare URLs are the common case at scale: the same checks as the schema, without its per-item cost.
      const checked = normalizeUrl(raw);
      if (!checked.ok) {
        issues.push({ path: `items[${index}].url`, message: checked.message });
        return;
      }
      item = { id: itemId('GET', checked.url, undefined), url: checked.url, method: 'GET', headers: {} };
    } else {
      const parsed = ItemInputSchema.safeParse(raw);
      if (!parsed.success) {
        issues.push(...toIssues(parsed.error.issues, ['items', index]));
        return;
      }
      item = toItem(parsed.data);
    }
    if (seen.has(item.id)) {
      duplicates++;
      return;
    }
    seen.add(item.id);
    items.push(item);
  });
  // Report at most 20: a million bad lines must not become a megabyte of error text.
  if (issues.length > 0) throw new JobValidationError(issues.slice(0, MAX_REPORTED_ISSUES));
  return { items, duplicates };
}

export type SourceLine = { ok: true; item: Item } | { ok: false; id: string; url: string; error: ItemError };

/**
 * One line of an S3 source (a JSON item, or a bare URL). Unlike inline items, a bad line fails only
 * itself with INVALID_URL: the rest of a million-line source must still run.
 */
export function parseSourceLine(line: string): SourceLine {
  const text = line.trim();
  let raw: unknown = text;
  // JSONL: an object, or a bare URL as a JSON string; an unquoted line is a URL as written.
  if (text.startsWith('{') || text.startsWith('"')) {
    try {
      raw = JSON.parse(text);
    } catch {
      raw = text;
    }
  }
  const parsed = ItemInputSchema.safeParse(raw);
  if (parsed.success) return { ok: true, item: toItem(parsed.data) };
  const record = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : { url: raw };
  const url = typeof record.url === 'string' ? record.url : String(raw);
  const method = typeof record.method === 'string' ? record.method.toUpperCase() : 'GET';
  const body = typeof record.body === 'string' ? record.body : undefined;
  const givenId = typeof record.id === 'string' && ID_PATTERN.test(record.id) ? record.id : undefined;
  const message = toIssues(parsed.error.issues)
    .map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message))
    .join('; ');
  return {
    ok: false,
    id: givenId ?? itemId(method, url, body),
    url,
    error: { code: 'INVALID_URL', message },
  };
}

/** The item as a job would write it, defaults omitted (pending.jsonl, redrive). */
export function toJobForm(item: Item): Record<string, unknown> {
  const form: Record<string, unknown> = { id: item.id, url: item.url };
  if (item.method !== 'GET') form.method = item.method;
  if (Object.keys(item.headers).length > 0) form.headers = item.headers;
  if (item.body !== undefined) form.body = item.body;
  if (item.retryUnsafe) form.retryUnsafe = true;
  return form;
}

/** The job as stored in job.json (what a rerun or a batch reads back): items in job form, or the source. */
export function toJobDocument(job: ParsedJob): Record<string, unknown> {
  const document: Record<string, unknown> = { jobId: job.jobId };
  if (job.source) document.source = { s3: job.source.uri };
  else document.items = job.items.map(toJobForm);
  document.options = job.options;
  return document;
}

/** First 16 hex digits of SHA-256 over method, normalized URL and body: the same job, the same ids. */
export function itemId(method: string, normalizedUrl: string, body: string | undefined): string {
  return sha256Hex(`${method}\n${normalizedUrl}\n${body ?? ''}`).slice(0, 16);
}

/**
 * From the whole normalized job (DESIGN: "derived the same way from the normalized items and options"):
 * each item's job form with its headers in name order, so two jobs that differ only in a header or an
 * explicit id are two jobs. Hashed item by item: a big job never becomes one string.
 */
function deriveJobId(basis: { items?: readonly Item[]; source?: string; options: JobOptions }): string {
  const digest = createHash('sha256');
  digest.update(JSON.stringify({ source: basis.source ?? null, options: basis.options }));
  for (const item of basis.items ?? []) {
    const form = toJobForm(item);
    if (form.headers !== undefined) {
      form.headers = Object.fromEntries(Object.entries(item.headers).sort(([a], [b]) => (a < b ? -1 : 1)));
    }
    digest.update(`\n${JSON.stringify(form)}`);
  }
  return `job-${digest.digest('hex').slice(0, 16)}`;
}

function sha256Hex(text: string): string {
  // crypto.hash: one call, no Hash object; half the cost of createHash at a million ids.
  return hash('sha256', text, 'hex');
}

function toItem(parsed: z.output<typeof ItemObjectSchema>): Item {
  const item: Item = {
    id: parsed.id ?? itemId(parsed.method, parsed.url, parsed.body),
    url: parsed.url,
    method: parsed.method,
    headers: parsed.headers,
  };
  if (parsed.body !== undefined) item.body = parsed.body;
  if (parsed.retryUnsafe) item.retryUnsafe = true;
  return item;
}

function toIssues(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): JobIssue[] {
  return issues.map((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.join(', ');
      return { path: formatPath(path), message: `unknown ${issue.keys.length > 1 ? 'keys' : 'key'} ${keys}` };
    }
    return { path: formatPath(path), message: issue.message };
  });
}

/** ['items', 3, 'url'] -> "items[3].url" */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}
