// The result store: the job's S3 layout, streamed JSONL parts (lib-storage multipart), conditional writes, the manifest.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, pipeline, type Readable, type Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { DEFAULT_PREFIX } from './defaults.ts';
import { FanoutError } from './errors.ts';
import type { Manifest, StoreConfig } from './types.ts';

/** Parts roll at this many uncompressed bytes: big enough for few objects, small enough to stream. */
export const DEFAULT_PART_BYTES = 64 * 1024 * 1024;
/**
 * A checkpoint (open parts closed and listed in the manifest) at least this often, and at each part roll:
 * the most work a SIGKILL can lose. The trade-off: each checkpoint ends the open parts, so a run makes
 * about one part per kind per checkpoint (a 10-minute run: ~60 parts at 10 s, ~200 at 3 s), and each
 * costs a CompleteMultipartUpload (or a PUT) and a new upload's buffers. A Ctrl-C, a deadline or a
 * cancel lose nothing either way: those flush.
 */
export const DEFAULT_CHECKPOINT_MS = 10_000;
/** Between checkpoints, a heartbeat rewrites the `running` manifest as it stands (no part closed). */
export const HEARTBEAT_MS = 2_500;
/**
 * A `running` manifest whose heartbeat is older than this belongs to a dead run. DESIGN: a killed run
 * blocks an immediate rerun for at most 10 s. The worst case is a kill right after a heartbeat: the rerun
 * waits LEASE_MS plus one poll (run.ts, 0.5 s), so 8.5 s; a live run misses three heartbeats before it
 * looks dead.
 */
export const LEASE_MS = 8_000;
/** Final writes get their own deadline: they must land even when the job's signal has fired. */
export const FINAL_WRITE_TIMEOUT_MS = 10_000;
/** lib-storage's part size: S3's minimum, so an object's memory is as small as S3 allows. */
const UPLOAD_CHUNK_BYTES = 5 * 1024 * 1024;
/** Parts in flight per object (lib-storage's queueSize): memory per open object is about (this + 1) parts. */
const UPLOAD_QUEUE_SIZE = 2;
/** Encoded lines go to the stream in batches of about this many bytes: one Buffer and one write each. */
const BATCH_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);
const NEWLINE = 0x0a;
const RUN_DIGITS = 4;
const PART_DIGITS = 5;
const TOKEN_METADATA = 'fanout-token';

export type PartKind = 'results' | 'errors';

/** The manifest as stored: the contract's fields plus who wrote it and when (for dead-run detection). */
export interface StoredManifest extends Manifest {
  /** While `running`: the run's last heartbeat; a stale one means the run died (treat as partial). */
  heartbeatAt?: string;
  /** `<run>:<nonce>:<seq>` of the write: tells a retried write of our own from someone else's. */
  writer?: string;
}

export interface ManifestVersion {
  manifest: StoredManifest;
  etag: string;
}

export interface StoreLayout {
  client: S3Client;
  bucket: string;
  /** `<prefix>/<jobId>` */
  base: string;
  manifestKey: string;
  jobKey: string;
  pendingKey: string;
  gzip: boolean;
  partBytes: number;
  checkpointMs: number;
  /** How often the `running` manifest is rewritten: never more than the checkpoint spacing. */
  heartbeatMs: number;
  leaseMs: number;
}

export function storeLayout(store: StoreConfig, jobId: string): StoreLayout {
  const prefix = (store.prefix ?? DEFAULT_PREFIX).replace(/^\/+|\/+$/g, '');
  const base = prefix ? `${prefix}/${jobId}` : jobId;
  const checkpointMs = store.checkpointMs ?? DEFAULT_CHECKPOINT_MS;
  return {
    client: store.client,
    bucket: store.bucket,
    base,
    manifestKey: `${base}/manifest.json`,
    jobKey: `${base}/job.json`,
    pendingKey: `${base}/pending.jsonl`,
    gzip: store.gzip ?? false,
    partBytes: store.partBytes ?? DEFAULT_PART_BYTES,
    checkpointMs,
    heartbeatMs: Math.min(checkpointMs, HEARTBEAT_MS),
    leaseMs: LEASE_MS,
  };
}

export function partKey(layout: StoreLayout, kind: PartKind, run: number, part: number): string {
  const name = `${String(run).padStart(RUN_DIGITS, '0')}-${String(part).padStart(PART_DIGITS, '0')}`;
  return `${layout.base}/${kind}/${name}.jsonl${layout.gzip ? '.gz' : ''}`;
}

export function runMarkerKey(layout: StoreLayout, run: number): string {
  return `${layout.base}/runs/${String(run).padStart(RUN_DIGITS, '0')}.json`;
}

/** The run number in a part or marker key, or null for keys that are not ours. */
export function runOfKey(key: string): number | null {
  const match = /\/(?:results|errors)\/(\d{4})-\d{5}\.jsonl(?:\.gz)?$|\/runs\/(\d{4})\.json$/.exec(key);
  const digits = match?.[1] ?? match?.[2];
  return digits === undefined ? null : Number(digits);
}

/** A random token naming one run's writes, so a retried write of our own is not mistaken for a rival's. */
export function newToken(): string {
  return randomBytes(6).toString('hex');
}

// ---------------------------------------------------------------------------------------------------
// Conditional writes

/** S3 answers 412 (precondition failed) or 409 (a concurrent conditional write) when a condition fails. */
export function isConditionFailure(error: unknown): boolean {
  const status = statusOf(error);
  return status === 412 || status === 409;
}

export function isNotFound(error: unknown): boolean {
  const status = statusOf(error);
  const name = (error as { name?: unknown } | null)?.name;
  return status === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

/** Per-call options: the job's signal on every S3 call (exact optional types forbid `undefined`). */
export function sendOptions(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/** A signal for a final write: the job's own while alive, else a fresh short deadline (asyncio `shield`). */
export function finalWriteSignal(jobSignal: AbortSignal | undefined): AbortSignal {
  const own = AbortSignal.timeout(FINAL_WRITE_TIMEOUT_MS);
  return jobSignal && !jobSignal.aborted ? AbortSignal.any([jobSignal, own]) : own;
}

/**
 * Creates `key` only if it does not exist. True when we created it (also when a retried request of ours
 * had already created it: the token in its metadata says so), false when someone else's object is there.
 */
export async function putCreateOnly(
  layout: StoreLayout,
  key: string,
  body: string,
  token: string,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  try {
    await layout.client.send(
      new PutObjectCommand({
        Bucket: layout.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/json',
        IfNoneMatch: '*',
        Metadata: { [TOKEN_METADATA]: token },
      }),
      sendOptions(signal),
    );
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return (await tokenOf(layout, key, signal)) === token;
  }
}

async function tokenOf(
  layout: StoreLayout,
  key: string,
  signal: AbortSignal | undefined,
): Promise<string | null> {
  try {
    const head = await layout.client.send(
      new HeadObjectCommand({ Bucket: layout.bucket, Key: key }),
      sendOptions(signal),
    );
    return head.Metadata?.[TOKEN_METADATA] ?? null;
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------
// The manifest

export async function readManifestVersion(
  layout: StoreLayout,
  signal: AbortSignal | undefined,
): Promise<ManifestVersion | null> {
  try {
    const reply = await layout.client.send(
      new GetObjectCommand({ Bucket: layout.bucket, Key: layout.manifestKey }),
      sendOptions(signal),
    );
    const text = (await reply.Body?.transformToString('utf8')) ?? '';
    let manifest: StoredManifest;
    try {
      manifest = JSON.parse(text) as StoredManifest;
    } catch (error) {
      throw new FanoutError('CORRUPT_MANIFEST', `s3://${layout.bucket}/${layout.manifestKey}: not JSON`, {
        cause: error,
      });
    }
    return { manifest, etag: reply.ETag ?? '' };
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

/** Thrown when the manifest changed under us (another run holds the job now). */
export class ManifestConflictError extends FanoutError {
  constructor(message: string) {
    super('MANIFEST_CONFLICT', message);
    this.name = 'ManifestConflictError';
  }
}

// Real S3 takes the quoted ETag in If-Match; radosgw (Ceph 19) takes only the unquoted one. Once a 412
// is proven spurious (the manifest did not change), this client is remembered as one that wants it bare.
const wantsBareEtag = new WeakMap<S3Client, boolean>();

/**
 * Compare-and-swap: writes the manifest only if it is still at `expectedEtag` (or absent, for null).
 * Returns the new ETag; throws ManifestConflictError when another writer got there first.
 */
export async function writeManifest(
  layout: StoreLayout,
  manifest: StoredManifest,
  expectedEtag: string | null,
  signal: AbortSignal | undefined,
): Promise<string> {
  const body = `${JSON.stringify(manifest, null, 2)}\n`;
  const input: PutObjectCommandInput = {
    Bucket: layout.bucket,
    Key: layout.manifestKey,
    Body: body,
    ContentType: 'application/json',
  };
  const bare = wantsBareEtag.get(layout.client) === true;
  if (expectedEtag === null) input.IfNoneMatch = '*';
  else input.IfMatch = bare ? unquote(expectedEtag) : quote(expectedEtag);
  try {
    const reply = await layout.client.send(new PutObjectCommand(input), sendOptions(signal));
    return reply.ETag ?? '';
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const current = await readManifestVersion(layout, signal);
    // Our own write landed and a retry (SDK or ours) met it: same writer stamp means it is ours.
    if (current && manifest.writer !== undefined && current.manifest.writer === manifest.writer) {
      return current.etag;
    }
    if (current && expectedEtag !== null && !bare && unquote(current.etag) === unquote(expectedEtag)) {
      wantsBareEtag.set(layout.client, true);
      return writeManifest(layout, manifest, expectedEtag, signal);
    }
    throw new ManifestConflictError(
      `s3://${layout.bucket}/${layout.manifestKey} changed under this run (another run of the job took over)`,
    );
  }
}

function quote(etag: string): string {
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

// ---------------------------------------------------------------------------------------------------
// Reading and listing

const LEADING_ID = /^\{"id":"([A-Za-z0-9._-]+)"/;

/** The id of a results or errors line. Our writers put it first, so it is read without parsing the line. */
export function idOfLine(line: string): string | null {
  const match = LEADING_ID.exec(line);
  if (match?.[1]) return match[1];
  try {
    const parsed = JSON.parse(line) as { id?: unknown };
    return typeof parsed.id === 'string' ? parsed.id : null;
  } catch {
    return null;
  }
}

/** pipeline's callback: its error reaches the reader through the destroyed stream. */
const ignoreError = (): void => undefined;

/** The lines of an object, streamed (gunzipped for .gz keys): memory stays at one chunk. */
export async function* readLines(
  layout: StoreLayout,
  key: string,
  signal: AbortSignal | undefined,
  bucket: string = layout.bucket,
): AsyncGenerator<string> {
  const reply = await layout.client.send(
    new GetObjectCommand({ Bucket: bucket, Key: key }),
    sendOptions(signal),
  );
  const body = reply.Body as Readable | undefined;
  if (!body) return;
  // pipeline, not pipe: a body that fails mid-read (a cancel, a reset) must fail the gunzip read too.
  const source: Readable = key.endsWith('.gz') ? pipeline(body, createGunzip(), ignoreError) : body;
  // A streaming decoder: a character split across two chunks stays whole (a source line's id hangs on it).
  source.setEncoding('utf8');
  let rest = '';
  try {
    for await (const chunk of source as AsyncIterable<string>) {
      const text = rest + chunk;
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') yield line;
    }
    if (rest.trim() !== '') yield rest;
  } finally {
    body.destroy();
  }
}

export async function listKeys(
  layout: StoreLayout,
  prefix: string,
  signal: AbortSignal | undefined,
): Promise<Array<{ key: string; lastModified: Date | undefined }>> {
  const out: Array<{ key: string; lastModified: Date | undefined }> = [];
  let token: string | undefined;
  do {
    const page = await layout.client.send(
      new ListObjectsV2Command({
        Bucket: layout.bucket,
        Prefix: prefix,
        ...(token ? { ContinuationToken: token } : {}),
      }),
      sendOptions(signal),
    );
    for (const object of page.Contents ?? [])
      if (object.Key) out.push({ key: object.Key, lastModified: object.LastModified });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

/**
 * Removes what other runs left behind: parts of any run but `currentRun` that `listed` does not name, and
 * their unfinished multipart uploads. Safe only right after this run took the job by compare-and-swap:
 * every other run has lost the manifest then, so it can never list those parts, and nobody will read them.
 */
export async function removeDebris(
  layout: StoreLayout,
  listed: ReadonlySet<string>,
  currentRun: number,
  signal: AbortSignal | undefined,
): Promise<number> {
  const keys: string[] = [];
  for (const kind of ['results', 'errors'] as const) {
    for (const { key } of await listKeys(layout, `${layout.base}/${kind}/`, signal)) {
      const run = runOfKey(key);
      if (run !== null && run !== currentRun && !listed.has(key)) keys.push(key);
    }
  }
  for (let start = 0; start < keys.length; start += 1000) {
    const batch = keys.slice(start, start + 1000);
    await layout.client.send(
      new DeleteObjectsCommand({
        Bucket: layout.bucket,
        Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }),
      sendOptions(signal),
    );
  }
  let uploads: ListMultipartUploadsCommandOutput;
  try {
    uploads = await layout.client.send(
      new ListMultipartUploadsCommand({ Bucket: layout.bucket, Prefix: `${layout.base}/` }),
      sendOptions(signal),
    );
  } catch {
    // Not every S3 implementation lists uploads (fauxqs does not); the bucket's lifecycle rule is the backstop.
    return keys.length;
  }
  for (const upload of uploads.Uploads ?? []) {
    const run = upload.Key ? runOfKey(upload.Key) : null;
    if (run === null || run === currentRun || !upload.UploadId) continue;
    await abortUploadQuietly(layout, upload.Key ?? '', upload.UploadId, signal);
  }
  return keys.length;
}

async function abortUploadQuietly(
  layout: StoreLayout,
  key: string,
  uploadId: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  try {
    await layout.client.send(
      new AbortMultipartUploadCommand({ Bucket: layout.bucket, Key: key, UploadId: uploadId }),
      sendOptions(signal),
    );
  } catch (error) {
    // Already completed or aborted: nothing left to clean.
    if (!isNotFound(error) && (error as { name?: string }).name !== 'NoSuchUpload') throw error;
  }
}

// ---------------------------------------------------------------------------------------------------
// Streamed parts

export interface PartOptions {
  layout: StoreLayout;
  key: string;
  /** Create-only (IfNoneMatch '*'): deterministic keys must never overwrite another run's part. */
  createOnly: boolean;
  token: string;
  contentType?: string;
}

/** lib-storage's Upload fields that abort() reads: private in its types, plain fields at runtime. */
interface UploadInternals {
  /** The CreateMultipartUpload in flight (`uploadId` is set only once it has answered). */
  createMultiPartPromise?: Promise<{ UploadId?: string }>;
  /** Its part uploaders: they settle once no UploadPart of theirs is in flight. */
  concurrentUploaders?: Promise<unknown>[];
}

/**
 * One object written as a stream: lines in, lib-storage's `Upload` out (a multipart upload in 5 MiB
 * parts, at most UPLOAD_QUEUE_SIZE in flight, or one PUT when the object is smaller than a part).
 *
 * Lines are UTF-8 encoded straight into ~64 KiB batches that go to the stream as one Buffer each (with
 * gzip: through the compressor, which also emits 64 KiB chunks): a Buffer per line would cost a stream
 * call and a small allocation per line, and lib-storage would hold and re-concatenate ~5,000 of them
 * per part. A write waits for 'drain' when the stream is full. Create-only objects carry
 * `IfNoneMatch: "*"`, which lib-storage sends on the single PUT and on CompleteMultipartUpload.
 */
export class StreamedObject {
  readonly key: string;
  /** Uncompressed bytes and lines written so far. */
  bytes = 0;
  lines = 0;
  readonly #layout: StoreLayout;
  readonly #token: string;
  /** What lib-storage reads. */
  readonly #body: PassThrough;
  /** Where batches go: the compressor (piped into the body) or the body itself. */
  readonly #input: Writable;
  readonly #upload: Upload;
  readonly #done: Promise<void>;
  #batch: Buffer = Buffer.allocUnsafe(BATCH_BYTES);
  #batchLength = 0;
  /** The 'drain' a write is waiting on; close() waits for it too. */
  #busy: Promise<void> | null = null;
  #failure: unknown;
  #state: 'open' | 'closing' | 'closed' | 'aborted' = 'open';

  constructor(options: PartOptions) {
    const { layout, key } = options;
    this.key = key;
    this.#layout = layout;
    this.#token = options.token;
    const gzip = key.endsWith('.gz') ? createGzip({ chunkSize: BATCH_BYTES }) : null;
    this.#body = new PassThrough({ highWaterMark: BATCH_BYTES });
    if (gzip) {
      gzip.pipe(this.#body);
      // pipe() does not forward errors: without this the upload would wait for the body forever.
      gzip.on('error', (error) => this.#body.destroy(error));
    }
    this.#input = gzip ?? this.#body;
    this.#upload = new Upload({
      client: layout.client,
      queueSize: UPLOAD_QUEUE_SIZE,
      partSize: UPLOAD_CHUNK_BYTES,
      leavePartsOnError: false,
      params: {
        Bucket: layout.bucket,
        Key: key,
        Body: this.#body,
        ContentType: gzip ? 'application/gzip' : (options.contentType ?? 'application/x-ndjson'),
        Metadata: { [TOKEN_METADATA]: options.token },
        ...(options.createOnly ? { IfNoneMatch: '*' } : {}),
      },
    });
    this.#done = this.#upload.done().then(
      () => undefined,
      (error: unknown) => {
        this.#failure ??= error;
        throw error;
      },
    );
    // Recorded and rethrown by write()/close(); the handler keeps an early failure from being unhandled.
    this.#done.catch(() => undefined);
  }

  /**
   * Takes one line: `head + body + tail` (body and tail optional). The pieces are encoded one after the
   * other, so a caller that builds a line around a large value (a result's JSON) never makes the joined
   * string: that would be one more copy of every line and ~100 MB more garbage per 100k 1 KB results.
   * Returns undefined when it was only buffered (the common case: no promise), or a promise to await
   * before the next write when a batch went out and the stream is full.
   */
  write(head: string, body = '', tail = ''): Promise<void> | undefined {
    if (this.#state !== 'open') throw new Error(`${this.key}: write after close`);
    if (this.#failure !== undefined) throw this.#failure;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: a batch that may not hold the line goes out first.
    const room = (head.length + body.length + tail.length) * 3 + 1;
    let full = false;
    if (this.#batchLength + room > this.#batch.length) full = !this.#handOver();
    let written: number;
    if (room > this.#batch.length) {
      // A line longer than a batch goes out on its own, at its exact size.
      const bytes = Buffer.from(`${head}${body}${tail}\n`);
      written = bytes.length;
      full = !this.#input.write(bytes) || full;
    } else {
      const batch = this.#batch;
      let at = this.#batchLength;
      at += batch.write(head, at);
      if (body !== '') at += batch.write(body, at);
      if (tail !== '') at += batch.write(tail, at);
      batch[at++] = NEWLINE;
      written = at - this.#batchLength;
      this.#batchLength = at;
    }
    this.bytes += written;
    this.lines++;
    if (!full) return undefined;
    const busy = this.#drained().finally(() => {
      if (this.#busy === busy) this.#busy = null;
    });
    this.#busy = busy;
    return busy;
  }

  /**
   * Ends the object and waits until it is durable; a create-only conflict with our own retry is success.
   * `signal` bounds the wait: lib-storage sends without one, so a stalled S3 would hold it forever. When
   * it fires, close() rejects with its reason and the object is the caller's to abort().
   */
  async close(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#state === 'aborted') throw new Error(`${this.key}: closed after abort`);
    this.#state = 'closing';
    try {
      await untilAborted(this.#endAndLand(), signal);
    } catch (error) {
      // lib-storage has aborted its multipart upload already (leavePartsOnError: false).
      this.#destroyStreams();
      if (signal?.aborted || !isConditionFailure(error)) throw error;
      if ((await tokenOf(this.#layout, this.key, signal)) !== this.#token) throw error;
    }
    this.#state = 'closed';
    this.#batch = EMPTY;
  }

  async #endAndLand(): Promise<void> {
    await this.#busy;
    this.#handOver();
    this.#input.end();
    await this.#done;
  }

  /** Abandons the object: the multipart upload is aborted on S3 too, so no invisible parts are billed. */
  async abort(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    this.#batch = EMPTY;
    const deadline = signal ?? finalWriteSignal(undefined);
    // done() rejects at once; the uploaders stop at their next part, and the ended body wakes those
    // waiting for data.
    await this.#upload.abort();
    this.#destroyStreams();
    await this.#done.catch(() => undefined);
    const internals = this.#upload as unknown as UploadInternals;
    // lib-storage sends its parts without a signal: let those in flight land (or the deadline pass)
    // before the abort, so none arrives after it. It aborts the upload too, but in the background, and
    // only one it knows of; this is done on return, also when CreateMultipartUpload was in flight.
    await untilAborted(Promise.allSettled(internals.concurrentUploaders ?? []), deadline).catch(
      () => undefined,
    );
    const creating = internals.createMultiPartPromise?.catch(() => undefined);
    const uploadId =
      this.#upload.uploadId ??
      (await untilAborted(creating ?? Promise.resolve(undefined), deadline).catch(() => undefined))?.UploadId;
    if (uploadId) await abortUploadQuietly(this.#layout, this.key, uploadId, deadline);
  }

  /** Hands the batch to the stream (which keeps the buffer) and starts a new one; false when the stream is full. */
  #handOver(): boolean {
    if (this.#batchLength === 0) return true;
    const batch = this.#batch.subarray(0, this.#batchLength);
    this.#batch = Buffer.allocUnsafe(BATCH_BYTES);
    this.#batchLength = 0;
    return this.#input.write(batch);
  }

  async #drained(): Promise<void> {
    // The upload's failure wakes a writer whose stream will never drain.
    await Promise.race([once(this.#input, 'drain'), this.#done]);
  }

  #destroyStreams(): void {
    this.#input.destroy();
    this.#body.destroy();
  }
}

/** `work`, or a rejection with the signal's reason if it fires first (`work` is then left to settle alone). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  work.catch(() => undefined); // settling after the signal is not an unhandled rejection
  if (signal.aborted) return Promise.reject(signal.reason);
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}
