// The result store: the job's S3 layout, streamed JSONL parts (multipart, bounded buffers), conditional writes, the manifest.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { createGunzip, createGzip, type Gzip } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
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
/** A multipart chunk: S3's minimum part size, so an object's memory is as small as S3 allows. */
const UPLOAD_CHUNK_BYTES = 5 * 1024 * 1024;
/** Parts in flight per object; a write waits when all are busy. Memory: (this + 1) chunks at most. */
const UPLOAD_QUEUE_SIZE = 2;
/** With gzip, encoded lines go to the compressor in batches of this many bytes (one call per batch). */
const GZIP_BATCH_BYTES = 64 * 1024;
/** A chunk buffer once full size: a part plus room for a typical line (a longer one grows the buffer). */
const FULL_CHUNK_BYTES = UPLOAD_CHUNK_BYTES + 256 * 1024;
/** A new object starts small: most errors parts and pending objects never need more. */
const FIRST_CHUNK_BYTES = 16 * 1024;
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
  const source: Readable = key.endsWith('.gz') ? body.pipe(createGunzip()) : body;
  let rest = '';
  try {
    for await (const chunk of source) {
      const text = rest + (typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8'));
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

/**
 * One object written as a stream: lines in, a multipart upload (or a single PUT when small) out.
 *
 * Each line is UTF-8 encoded straight into one 5 MiB chunk buffer (with gzip: into a 64 KiB batch that
 * the compressor's output then fills the chunk with); a full chunk goes out as an UploadPart while the
 * next one fills, its buffer reused after, at most UPLOAD_QUEUE_SIZE in flight, and writes wait
 * (backpressure) when they are all busy. So an open object holds at most (UPLOAD_QUEUE_SIZE + 1) chunks
 * whatever its size, with no per-line Buffer, string copy, promise or stream call, and no
 * re-concatenation (lib-storage's Upload copies each chunk out of a list of small buffers).
 * An object that never fills a chunk is one PUT. Create-only objects carry `IfNoneMatch: "*"` on that
 * PUT or on CompleteMultipartUpload.
 */
export class StreamedObject {
  readonly key: string;
  /** Uncompressed bytes and lines written so far. */
  bytes = 0;
  lines = 0;
  readonly #layout: StoreLayout;
  readonly #token: string;
  readonly #createOnly: boolean;
  readonly #contentType: string;
  readonly #gzip: Gzip | null;
  /** Cancels this object's requests when it is abandoned. */
  readonly #cancel = new AbortController();
  /** With gzip: encoded lines not yet handed to the compressor. */
  #batch: Buffer = EMPTY;
  #batchLength = 0;
  #chunk: Buffer = Buffer.allocUnsafe(FIRST_CHUNK_BYTES);
  #length = 0;
  /** A chunk buffer whose upload finished, kept for the next chunk (no new 5 MiB allocation). */
  #spare: Buffer | null = null;
  #uploadId: Promise<string> | null = null;
  #partNumber = 0;
  readonly #parts: CompletedPart[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  /** The flush a write is waiting on; close() waits for it too. */
  #busy: Promise<void> | null = null;
  /** The chunk the compressor's output filled, on its way out (the compressor is paused meanwhile). */
  #gzipShipping: Promise<void> | null = null;
  #failure: unknown;
  #state: 'open' | 'closing' | 'closed' | 'aborted' = 'open';

  constructor(options: PartOptions) {
    this.key = options.key;
    this.#layout = options.layout;
    this.#token = options.token;
    this.#createOnly = options.createOnly;
    const gzip = options.key.endsWith('.gz');
    this.#contentType = gzip ? 'application/gzip' : (options.contentType ?? 'application/x-ndjson');
    this.#gzip = gzip ? this.#startGzip() : null;
    if (gzip) this.#batch = Buffer.allocUnsafe(GZIP_BATCH_BYTES);
  }

  /**
   * Takes one line. Returns undefined when it was only buffered (the common case: no promise), or a
   * promise to await before the next write when a batch went out and the stream is full.
   */
  write(line: string): Promise<void> | undefined {
    if (this.#state !== 'open') throw new Error(`${this.key}: write after close`);
    if (this.#failure !== undefined) throw this.#failure;
    const written = this.#gzip ? this.#encodeToBatch(line) : this.#encodeToChunk(line);
    this.bytes += written;
    this.lines++;
    if (this.#gzip ? this.#batchLength < GZIP_BATCH_BYTES : this.#length < UPLOAD_CHUNK_BYTES)
      return undefined;
    const busy = this.#flush().finally(() => {
      if (this.#busy === busy) this.#busy = null;
    });
    this.#busy = busy;
    return busy;
  }

  /** Ends the object and waits until it is durable; a create-only conflict with our own retry is success. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    if (this.#state === 'aborted') throw new Error(`${this.key}: closed after abort`);
    this.#state = 'closing';
    try {
      await this.#busy;
      await this.#flush();
      if (this.#gzip) {
        const ended = once(this.#gzip, 'end');
        this.#gzip.end();
        await ended;
        await this.#gzipShipping;
      }
      await this.#drain();
      if (this.#uploadId === null) await this.#putWhole();
      else await this.#completeMultipart();
    } catch (error) {
      if (!isConditionFailure(error) || (await tokenOf(this.#layout, this.key, undefined)) !== this.#token) {
        await this.#abortUpload(finalWriteSignal(undefined)).catch(() => undefined);
        throw error;
      }
    }
    this.#state = 'closed';
    this.#release();
  }

  /** Abandons the object: the multipart upload is aborted on S3 too, so no invisible parts are billed. */
  async abort(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    this.#cancel.abort();
    this.#gzip?.destroy();
    await Promise.allSettled([...this.#inFlight]);
    await this.#abortUpload(signal ?? finalWriteSignal(undefined));
    this.#release();
  }

  #startGzip(): Gzip {
    const gzip = createGzip();
    gzip.on('data', (bytes: Buffer) => {
      this.#append(bytes);
      if (this.#length < UPLOAD_CHUNK_BYTES) return;
      // Hold the compressor while the chunk goes out: its buffers fill, and writes wait for 'drain'.
      gzip.pause();
      this.#gzipShipping = this.#ship().then(
        () => {
          gzip.resume();
        },
        (error: unknown) => {
          this.#failure ??= error;
          gzip.resume();
        },
      );
    });
    gzip.on('error', (error) => {
      this.#failure ??= error;
    });
    return gzip;
  }

  /** Encodes `line` and a newline into the chunk; returns the bytes written. */
  #encodeToChunk(line: string): number {
    // UTF-8 takes at most 3 bytes per UTF-16 unit: reserve that, then encode in place.
    this.#reserve(line.length * 3 + 1);
    const written = this.#chunk.write(line, this.#length);
    this.#chunk[this.#length + written] = NEWLINE;
    this.#length += written + 1;
    return written + 1;
  }

  #encodeToBatch(line: string): number {
    const needed = this.#batchLength + line.length * 3 + 1;
    if (needed > this.#batch.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, GZIP_BATCH_BYTES));
      this.#batch.copy(grown, 0, 0, this.#batchLength);
      this.#batch = grown;
    }
    const written = this.#batch.write(line, this.#batchLength);
    this.#batch[this.#batchLength + written] = NEWLINE;
    this.#batchLength += written + 1;
    return written + 1;
  }

  /** Sends what is buffered on: a full chunk to S3, or (gzip) the batch to the compressor. */
  async #flush(): Promise<void> {
    if (this.#gzip) {
      if (this.#batchLength === 0) return;
      // The compressor keeps the buffer until it is done with it: hand it over, start a new one.
      const batch = this.#batch.subarray(0, this.#batchLength);
      this.#batch = Buffer.allocUnsafe(GZIP_BATCH_BYTES);
      this.#batchLength = 0;
      if (!this.#gzip.write(batch))
        await Promise.race([once(this.#gzip, 'drain'), once(this.#gzip, 'close')]);
    } else if (this.#length >= UPLOAD_CHUNK_BYTES) {
      await this.#ship();
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  #append(bytes: Buffer): void {
    this.#reserve(bytes.length);
    bytes.copy(this.#chunk, this.#length);
    this.#length += bytes.length;
  }

  #reserve(extra: number): void {
    const needed = this.#length + extra;
    if (needed <= this.#chunk.length) return;
    // Small objects (most errors parts, pending) stay small; a big one reaches one full chunk quickly.
    const grown = Buffer.allocUnsafe(Math.max(needed, Math.min(this.#chunk.length * 4, FULL_CHUNK_BYTES)));
    this.#chunk.copy(grown, 0, 0, this.#length);
    this.#chunk = grown;
  }

  /** Sends the filled chunk as the next part (waiting for a free slot first) and starts a new chunk. */
  async #ship(): Promise<void> {
    while (this.#inFlight.size >= UPLOAD_QUEUE_SIZE) await Promise.race(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure;
    const buffer = this.#chunk;
    const body = buffer.subarray(0, this.#length);
    this.#chunk = this.#spare ?? Buffer.allocUnsafe(FULL_CHUNK_BYTES);
    this.#spare = null;
    this.#length = 0;
    const partNumber = ++this.#partNumber;
    const upload = this.#uploadPart(partNumber, body).then(
      (part) => {
        this.#parts.push(part);
        if (buffer.length >= FULL_CHUNK_BYTES) this.#spare = buffer;
      },
      (error: unknown) => {
        this.#failure ??= error;
      },
    );
    const tracked = upload.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  async #uploadPart(partNumber: number, body: Buffer): Promise<CompletedPart> {
    this.#uploadId ??= this.#createMultipart();
    const uploadId = await this.#uploadId;
    const reply = await this.#layout.client.send(
      new UploadPartCommand({
        Bucket: this.#layout.bucket,
        Key: this.key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
      }),
      { abortSignal: this.#cancel.signal },
    );
    if (!reply.ETag) throw new Error(`${this.key}: part ${partNumber} came back without an ETag`);
    return {
      PartNumber: partNumber,
      ETag: reply.ETag,
      ...(reply.ChecksumCRC32 ? { ChecksumCRC32: reply.ChecksumCRC32 } : {}),
      ...(reply.ChecksumCRC32C ? { ChecksumCRC32C: reply.ChecksumCRC32C } : {}),
      ...(reply.ChecksumCRC64NVME ? { ChecksumCRC64NVME: reply.ChecksumCRC64NVME } : {}),
      ...(reply.ChecksumSHA1 ? { ChecksumSHA1: reply.ChecksumSHA1 } : {}),
      ...(reply.ChecksumSHA256 ? { ChecksumSHA256: reply.ChecksumSHA256 } : {}),
    };
  }

  async #createMultipart(): Promise<string> {
    // As lib-storage does: with the SDK's default checksums, the upload declares CRC32 for its parts.
    const checksums = await this.#layout.client.config.requestChecksumCalculation();
    // Not cancellable: once created, abort() needs its id to abort it on S3.
    const reply = await this.#layout.client.send(
      new CreateMultipartUploadCommand({
        Bucket: this.#layout.bucket,
        Key: this.key,
        ContentType: this.#contentType,
        Metadata: { [TOKEN_METADATA]: this.#token },
        ...(checksums === 'WHEN_SUPPORTED' ? { ChecksumAlgorithm: 'CRC32' as const } : {}),
      }),
    );
    if (!reply.UploadId) throw new Error(`${this.key}: CreateMultipartUpload returned no UploadId`);
    return reply.UploadId;
  }

  async #drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
    if (this.#failure !== undefined) throw this.#failure;
  }

  async #putWhole(): Promise<void> {
    await this.#layout.client.send(
      new PutObjectCommand({
        Bucket: this.#layout.bucket,
        Key: this.key,
        Body: this.#chunk.subarray(0, this.#length),
        ContentType: this.#contentType,
        Metadata: { [TOKEN_METADATA]: this.#token },
        ...(this.#createOnly ? { IfNoneMatch: '*' } : {}),
      }),
      { abortSignal: this.#cancel.signal },
    );
  }

  async #completeMultipart(): Promise<void> {
    // The last part may be any size (S3's 5 MiB minimum is for the others).
    if (this.#length > 0) await this.#ship();
    await this.#drain();
    const uploadId = await this.#uploadId;
    if (!uploadId) throw new Error(`${this.key}: no multipart upload to complete`);
    this.#parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await this.#layout.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.#layout.bucket,
        Key: this.key,
        UploadId: uploadId,
        MultipartUpload: { Parts: this.#parts },
        ...(this.#createOnly ? { IfNoneMatch: '*' } : {}),
      }),
      { abortSignal: this.#cancel.signal },
    );
  }

  async #abortUpload(signal: AbortSignal): Promise<void> {
    const uploadId = await this.#uploadId?.catch(() => undefined);
    this.#uploadId = null;
    if (uploadId) await abortUploadQuietly(this.#layout, this.key, uploadId, signal);
  }

  #release(): void {
    this.#chunk = EMPTY;
    this.#spare = null;
    this.#batch = EMPTY;
  }
}
