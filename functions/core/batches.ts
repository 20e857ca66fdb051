// A job split for a Distributed Map: the plan (one deduplicated JSONL source), one batch's run, the merge.
//
// Layout under s3://<bucket>/<prefix>/<jobId>/:
//   job.json                 the job document (as a single run writes it: a later resume reads it)
//   map/plan.json            the plan: options, batch size, host share, distinct items, duplicates
//   map/items.jsonl          the map's source: one distinct item per line (what the ItemReader reads)
//   batches/<id>/            one batch, laid out as a job of its own (run.ts): items.jsonl, batch.json,
//                            manifest.json, results/, errors/, pending.jsonl; a retry resumes it in place
//   manifest.json            written by the merge: the parts of every batch, counts summed
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import * as z from 'zod';
import { FAILURE_RATIO_MIN_FINISHED } from './defaults.ts';
import { FanoutError } from './errors.ts';
import { IdSet } from './finished-ids.ts';
import { type JobOptions, parseJob, parseSourceLine, toJobDocument, toJobForm } from './job.ts';
import { type JobRuntime, runJob } from './run.ts';
import { type SourceObject, sourceEntries, toMapLine, toSourceLine } from './source.ts';
import {
  idOfLine,
  isNotFound,
  listKeys,
  newToken,
  putCreateOnly,
  readLines,
  readManifestVersion,
  type StoreLayout,
  StreamedObject,
  sendOptions,
  storeLayout,
  writeManifest,
} from './store.ts';
import type { HostStats, Manifest, ManifestCounts, ManifestStatus, StoreConfig } from './types.ts';

/** Items per batch when the deployment says nothing: infra/config.ts largeJobs.maxItemsPerBatch. */
export const DEFAULT_BATCH_SIZE = 1_000;
/** Batches at once when the deployment says nothing: infra/config.ts largeJobs.maxConcurrency. */
export const DEFAULT_MAP_CONCURRENCY = 40;
/** The ItemBatcher's MaxInputBytesPerBatch (infra/large-jobs.ts): a batch is also cut at this size. */
export const MAX_BATCH_INPUT_BYTES = 256 * 1024;
const BATCH_DIGITS = 5;
const BATCH_ID = /^\d{5}(?:-\d+)?$/;
const MAX_REPORTED_ORIGINS = 100;

export interface PlanSettings {
  /** The ItemBatcher's MaxItemsPerBatch. */
  batchSize?: number;
  /** The map's MaxConcurrency: how many batches may hit one host at once (the host budget's divisor). */
  mapConcurrency?: number;
}

/** What the merge needs to know of the split, stored as map/plan.json. */
export interface MapPlan {
  jobId: string;
  /** The deduplicated JSONL source the ItemReader reads. */
  source: SourceObject;
  /** The job's options, as the merged manifest reports them. */
  options: JobOptions;
  /** The options each batch runs with: perHost and perHostRate divided by `hostShare`. */
  batchOptions: JobOptions;
  batchSize: number;
  mapConcurrency: number;
  /** Batches that can run at once: min(mapConcurrency, number of batches). */
  hostShare: number;
  /** Distinct items (lines of `source`). */
  items: number;
  batches: number;
  /** Copies dropped while planning (the same ids a single run would drop). */
  duplicates: number;
  toleratedFailurePercentage: number;
}

/** The state machine's execution input (infra/large-jobs.ts). */
export interface ExecutionInput {
  jobId: string;
  source: SourceObject;
  options: JobOptions;
  toleratedFailurePercentage: number;
}

export interface MapItem {
  index: number;
  value: unknown;
}

/** What the ItemBatcher hands the runner: `{ Items: [{ index, value }], BatchInput: { jobId, options, batchSize } }`. */
export interface BatchEvent {
  Items: MapItem[];
  BatchInput: { jobId: string; options: unknown; batchSize: number };
}

export interface BatchSummary {
  jobId: string;
  /** `<jobId>/batches/<index>`: deterministic, so a retried or redriven batch lands in the same place. */
  batch: string;
  firstIndex: number;
  count: number;
  status: ManifestStatus;
  counts: ManifestCounts;
  /** The batch manifest's object key. */
  manifest: string;
}

// ---------------------------------------------------------------------------------------------------
// Planning

/**
 * Splits a job for the map: streams its items (inline, or the S3 source line by line), drops duplicate
 * ids exactly as a single run would, writes the map's JSONL source, the job document and the plan.
 * Bad source lines stay in as JSON strings: the batch that gets them fails them with INVALID_URL.
 */
export async function planBatches(
  job: unknown,
  runtime: JobRuntime,
  settings: PlanSettings = {},
): Promise<MapPlan> {
  const parsed = parseJob(job);
  const layout = storeLayout(runtime.store, parsed.jobId);
  const signal = runtime.signal;
  const token = newToken();
  await putCreateOnly(layout, layout.jobKey, JSON.stringify(toJobDocument(parsed)), token, signal);
  const source: SourceObject = { bucket: layout.bucket, key: `${layout.base}/map/items.jsonl` };
  const out = new StreamedObject({ layout, key: source.key, createOnly: false, token });
  let items = 0;
  let duplicates = parsed.duplicates;
  try {
    if (parsed.source) {
      const seen = new IdSet();
      for await (const entry of sourceEntries(runtime.store, parsed.source, signal)) {
        if (!seen.add(entry.ok ? entry.item.id : entry.id)) {
          duplicates++;
          continue;
        }
        await out.write(toMapLine(entry));
        items++;
      }
    } else {
      for (const item of parsed.items) {
        await out.write(JSON.stringify(toJobForm(item)));
        items++;
      }
    }
    await out.close();
  } catch (error) {
    await out.abort();
    throw error;
  }
  const batchSize = settings.batchSize ?? DEFAULT_BATCH_SIZE;
  const mapConcurrency = settings.mapConcurrency ?? DEFAULT_MAP_CONCURRENCY;
  const batches = Math.ceil(items / batchSize);
  const hostShare = Math.max(1, Math.min(mapConcurrency, batches));
  const options = parsed.options;
  const plan: MapPlan = {
    jobId: parsed.jobId,
    source,
    options,
    batchOptions: shareOf(options, hostShare),
    batchSize,
    mapConcurrency,
    hostShare,
    items,
    batches,
    duplicates,
    // A batch fails only when its own items abort it (fail-fast, failure ratio): fail-fast tolerates none.
    toleratedFailurePercentage: options.mode === 'fail-fast' ? 0 : Math.round(options.maxFailureRatio * 100),
  };
  await putJson(layout, planKey(layout), plan, signal);
  return plan;
}

/** The execution input for the plan (the execution's name is the job id: starting it twice is one run). */
export function executionInputOf(plan: MapPlan): ExecutionInput {
  return {
    jobId: plan.jobId,
    source: plan.source,
    options: plan.batchOptions,
    toleratedFailurePercentage: plan.toleratedFailurePercentage,
  };
}

/**
 * Each batch's share of a host's budget: with `share` batches running at once, perHost and perHostRate
 * are divided so the sum across batches stays within the job's. A batch keeps at least one connection
 * per host, so when share > perHost the bound is `share` connections (perHostRate still divides exactly).
 */
export function shareOf(options: JobOptions, share: number): JobOptions {
  if (share <= 1) return options;
  return {
    ...options,
    perHost: Math.max(1, Math.floor(options.perHost / share)),
    perHostRate: options.perHostRate === null ? null : options.perHostRate / share,
  };
}

/**
 * The batches the ItemBatcher makes of the plan's source, streamed: up to `batchSize` items, cut earlier
 * when the batch's JSON would pass MAX_BATCH_INPUT_BYTES. Used by the local simulation and tests.
 */
export async function* batchEvents(
  plan: MapPlan,
  store: StoreConfig,
  signal?: AbortSignal,
): AsyncGenerator<BatchEvent> {
  const layout = storeLayout(store, plan.jobId);
  const batchInput = { jobId: plan.jobId, options: plan.batchOptions, batchSize: plan.batchSize };
  const baseBytes = Buffer.byteLength(JSON.stringify({ Items: [], BatchInput: batchInput }));
  let items: MapItem[] = [];
  let bytes = baseBytes;
  let index = 0;
  for await (const line of readLines(layout, plan.source.key, signal, plan.source.bucket)) {
    const item: MapItem = { index: index++, value: JSON.parse(line) as unknown };
    const itemBytes = Buffer.byteLength(JSON.stringify(item)) + 1;
    if (items.length > 0 && (items.length >= plan.batchSize || bytes + itemBytes > MAX_BATCH_INPUT_BYTES)) {
      yield { Items: items, BatchInput: batchInput };
      items = [];
      bytes = baseBytes;
    }
    items.push(item);
    bytes += itemBytes;
  }
  if (items.length > 0) yield { Items: items, BatchInput: batchInput };
}

/**
 * `<jobId>/batches/<floor(first index / batchSize), 5 digits>`. The batcher cuts by count, so a batch
 * starts on a multiple of batchSize; one cut earlier by the byte bound starts elsewhere and gets its
 * offset appended (`00003-00250`), so two batches never share an id and ids still sort in source order.
 */
export function batchIdOf(firstIndex: number, batchSize: number): string {
  const index = String(Math.floor(firstIndex / batchSize)).padStart(BATCH_DIGITS, '0');
  const offset = firstIndex % batchSize;
  return offset === 0 ? index : `${index}-${String(offset).padStart(BATCH_DIGITS, '0')}`;
}

// ---------------------------------------------------------------------------------------------------
// One batch

const BatchEventSchema = z.object({
  Items: z
    .array(z.object({ index: z.number().int().min(0), value: z.unknown() }), { error: 'must be an array' })
    .min(1, { error: 'must hold at least one item' }),
  BatchInput: z.looseObject({
    jobId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: 'must be a job id' }),
    options: z.unknown(),
    batchSize: z.number().int().min(1),
  }),
});

/**
 * Runs one Distributed Map batch as a job of its own under `<jobId>/batches/<id>/` (run.ts: parts,
 * checkpoints, lease, resume). A retry or redrive of the batch resumes or returns that job, so its parts
 * are replaced or kept, never duplicated. A batch aborted by its items' rules (fail-fast, failure ratio)
 * throws BATCH_ABORTED, so the map counts it against ToleratedFailurePercentage.
 */
export async function runBatch(event: unknown, runtime: JobRuntime): Promise<BatchSummary> {
  const parsed = BatchEventSchema.safeParse(event);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FanoutError(
      'INVALID_EVENT',
      `batch event: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const { Items, BatchInput } = parsed.data;
  const items = [...Items].sort((a, b) => a.index - b.index);
  const firstIndex = items[0]?.index ?? 0;
  const id = batchIdOf(firstIndex, BatchInput.batchSize);
  const store = batchStore(runtime.store, BatchInput.jobId);
  const layout = storeLayout(store, id);
  const token = newToken();
  const itemsKey = `${layout.base}/items.jsonl`;
  const lines = items.map((item) => toSourceLine(item.value)).join('\n');
  // Create-only: a retry's items are the same items; the first copy stays what the batch's runs read.
  await putCreateOnly(layout, itemsKey, `${lines}\n`, token, runtime.signal);
  const record: BatchRecord = { jobId: BatchInput.jobId, firstIndex, count: items.length };
  await putCreateOnly(layout, batchRecordKey(layout), JSON.stringify(record), token, runtime.signal);
  const manifest = await runJob(
    { jobId: id, source: { s3: `s3://${layout.bucket}/${itemsKey}` }, options: BatchInput.options },
    { ...runtime, store },
  );
  const summary: BatchSummary = {
    jobId: BatchInput.jobId,
    batch: `${BatchInput.jobId}/batches/${id}`,
    firstIndex,
    count: items.length,
    status: manifest.status,
    counts: manifest.counts,
    manifest: layout.manifestKey,
  };
  if (manifest.status === 'failed' && manifest.error?.code === 'ABORTED') {
    throw new FanoutError('BATCH_ABORTED', `${summary.batch}: ${manifest.error.message}`);
  }
  return summary;
}

interface BatchRecord {
  jobId: string;
  firstIndex: number;
  count: number;
}

/** A batch's store: the same bucket, its jobs under `<prefix>/<jobId>/batches/`. */
function batchStore(store: StoreConfig, jobId: string): StoreConfig {
  const job = storeLayout(store, jobId);
  return { ...store, prefix: `${job.base}/batches` };
}

// ---------------------------------------------------------------------------------------------------
// The merge

/** The writer stamp of a merge's manifest: what a later merge may replace. */
const MERGE_WRITER = 'merge:';

/**
 * Writes the job's manifest from its batches, in the layout of a single run: every batch's listed parts,
 * counts summed, the planning's duplicates added, hosts merged. Items no batch finished (a batch that
 * never ran, died, or ran out of time) are collected into the job's pending.jsonl. Status by the DESIGN
 * rules: failed when a batch failed (with its error), partial when anything is pending, else complete.
 * Safe to repeat: it rewrites the same manifest from the same batches, until a run (a resume, a redrive)
 * has written one of its own.
 */
export async function mergeBatches(jobId: string, runtime: JobRuntime): Promise<Manifest> {
  const layout = storeLayout(runtime.store, jobId);
  const signal = runtime.signal;
  const plan = await getJson<MapPlan>(layout, planKey(layout), signal);
  if (!plan) throw new FanoutError('UNKNOWN_JOB', `job ${jobId}: no map plan at ${planKey(layout)}`);
  // Once a run, a resume or a redrive has taken the job on from a merge, its manifest is newer than
  // anything the batches hold: a repeated merge (a retried execution) returns it instead of undoing it.
  const existing = await readManifestVersion(layout, signal);
  if (existing && !existing.manifest.writer?.startsWith(MERGE_WRITER)) return existing.manifest;
  const token = newToken();
  let etag = existing?.etag ?? null;
  if (existing?.manifest.pending) {
    // The commit record lists pending.jsonl, which this merge rewrites in place: first commit a
    // checkpoint that lists none (as a run does), so a merge that fails before its final write never
    // leaves the record pointing at a rewritten pending.jsonl.
    const { manifest } = existing;
    etag = await writeManifest(
      layout,
      {
        ...manifest,
        status: 'running',
        pending: null,
        heartbeatAt: new Date(nowOf(runtime)).toISOString(),
        writer: `${MERGE_WRITER}${token}:checkpoint`,
      },
      etag,
      signal,
    );
  }
  const store = batchStore(runtime.store, jobId);
  const ids = new Set<string>();
  for (const { key } of await listKeys(layout, `${layout.base}/batches/`, signal)) {
    const id = key.slice(layout.base.length + '/batches/'.length).split('/')[0] ?? '';
    if (BATCH_ID.test(id)) ids.add(id);
  }

  const pending = new PendingWriter(layout, token);
  const merged = emptyMerge(plan);
  const covered: Array<[number, number]> = [];
  try {
    for (const id of [...ids].sort()) {
      const batchLayout = storeLayout(store, id);
      const record = await getJson<BatchRecord>(batchLayout, batchRecordKey(batchLayout), signal);
      if (!record) continue;
      covered.push([record.firstIndex, record.firstIndex + record.count]);
      const version = await readManifestVersion(batchLayout, signal);
      const manifest = version?.manifest;
      if (manifest) addBatch(merged, id, manifest);
      if (manifest?.status !== 'complete') {
        merged.total += await collectPending(batchLayout, manifest, pending, signal);
      }
    }
    merged.total += await collectGaps(layout, plan, covered, pending, signal);
    await pending.close();
  } catch (error) {
    await pending.abort();
    throw error;
  }

  const counts: ManifestCounts = {
    total: merged.total,
    succeeded: merged.succeeded,
    failed: merged.failed,
    pending: merged.total - merged.succeeded - merged.failed,
    duplicates: merged.duplicates,
  };
  const error = merged.error ?? ratioExceeded(plan.options, counts);
  const status: ManifestStatus = error ? 'failed' : counts.pending > 0 ? 'partial' : 'complete';
  const manifest: Manifest = {
    jobId,
    status,
    startedAt: merged.startedAt ?? new Date(nowOf(runtime)).toISOString(),
    finishedAt: new Date(nowOf(runtime)).toISOString(),
    runs: Math.max(1, merged.runs),
    counts,
    results: merged.results,
    errors: merged.errors,
    pending: pending.lines > 0 ? layout.pendingKey : null,
    options: plan.options,
    hosts: topHosts(merged.hosts),
  };
  if (error) manifest.error = error;
  // Against the version read at the start (or our checkpoint): a writer in between wins, we retry.
  await writeManifest(layout, { ...manifest, writer: `${MERGE_WRITER}${token}` }, etag, signal);
  return manifest;
}

interface Merge {
  total: number;
  succeeded: number;
  failed: number;
  duplicates: number;
  runs: number;
  startedAt: string | undefined;
  results: string[];
  errors: string[];
  hosts: Map<string, HostStats>;
  error: { code: string; message: string } | undefined;
}

function emptyMerge(plan: MapPlan): Merge {
  return {
    total: 0,
    succeeded: 0,
    failed: 0,
    duplicates: plan.duplicates,
    runs: 0,
    startedAt: undefined,
    results: [],
    errors: [],
    hosts: new Map(),
    error: undefined,
  };
}

function addBatch(merged: Merge, id: string, manifest: Manifest): void {
  merged.succeeded += manifest.counts.succeeded;
  merged.failed += manifest.counts.failed;
  merged.duplicates += manifest.counts.duplicates;
  if (manifest.status === 'complete') merged.total += manifest.counts.total;
  merged.runs = Math.max(merged.runs, manifest.runs);
  if (merged.startedAt === undefined || manifest.startedAt < merged.startedAt)
    merged.startedAt = manifest.startedAt;
  merged.results.push(...manifest.results);
  merged.errors.push(...manifest.errors);
  if (manifest.status === 'failed' && merged.error === undefined) {
    const code = manifest.error?.code ?? 'FATAL';
    merged.error = { code, message: `batch ${id}: ${manifest.error?.message ?? 'failed'}` };
  }
  for (const [origin, stats] of Object.entries(manifest.hosts ?? {})) {
    merged.hosts.set(origin, mergeHost(merged.hosts.get(origin), stats));
  }
}

/**
 * Per-origin figures across batches: counts summed; p50 the request-weighted mean of the batches' p50s
 * and p95 the worst batch's (the manifests keep percentiles, not samples); finalLimit summed, since the
 * batches' limits held at once.
 */
function mergeHost(into: HostStats | undefined, add: HostStats): HostStats {
  if (!into) return { ...add };
  const requests = into.requests + add.requests;
  const p50 = requests === 0 ? 0 : (into.p50Ms * into.requests + add.p50Ms * add.requests) / requests;
  return {
    requests,
    succeeded: into.succeeded + add.succeeded,
    failed: into.failed + add.failed,
    throttled: into.throttled + add.throttled,
    p50Ms: Math.round(p50 * 10) / 10,
    p95Ms: Math.max(into.p95Ms, add.p95Ms),
    finalLimit: into.finalLimit + add.finalLimit,
  };
}

function topHosts(hosts: Map<string, HostStats>): Record<string, HostStats> {
  const busiest = [...hosts.entries()].sort((a, b) => b[1].requests - a[1].requests);
  return Object.fromEntries(busiest.slice(0, MAX_REPORTED_ORIGINS));
}

/** The job's failure-ratio rule over the merged counts (each batch judged only its own share). */
function ratioExceeded(
  options: JobOptions,
  counts: ManifestCounts,
): { code: string; message: string } | undefined {
  const finished = counts.succeeded + counts.failed;
  // Judged as the engine judges it: once enough items, or all of them, have finished.
  const judged = finished >= FAILURE_RATIO_MIN_FINISHED || finished === counts.total;
  if (options.maxFailureRatio >= 1 || finished === 0 || !judged) return undefined;
  if (counts.failed / finished <= options.maxFailureRatio) return undefined;
  return {
    code: 'ABORTED',
    message: `${counts.failed} of ${finished} finished items failed: over maxFailureRatio ${options.maxFailureRatio}`,
  };
}

/** The job's pending.jsonl, opened on the first pending item. */
class PendingWriter {
  lines = 0;
  #object: StreamedObject | null = null;
  readonly #layout: StoreLayout;
  readonly #token: string;

  constructor(layout: StoreLayout, token: string) {
    this.#layout = layout;
    this.#token = token;
  }

  async write(line: string): Promise<void> {
    this.#object ??= new StreamedObject({
      layout: this.#layout,
      key: this.#layout.pendingKey,
      createOnly: false,
      token: this.#token,
    });
    await this.#object.write(line);
    this.lines++;
  }

  close(): Promise<void> {
    return this.#object?.close() ?? Promise.resolve();
  }

  abort(): Promise<void> {
    return this.#object?.abort() ?? Promise.resolve();
  }
}

/**
 * A batch that did not complete: its items that no listed part holds are pending (from its own
 * items.jsonl, so a batch that died before its first checkpoint loses nothing). Returns its total.
 */
async function collectPending(
  layout: StoreLayout,
  manifest: Manifest | undefined,
  pending: PendingWriter,
  signal: AbortSignal | undefined,
): Promise<number> {
  const finished = new IdSet();
  for (const key of [...(manifest?.results ?? []), ...(manifest?.errors ?? [])]) {
    for await (const line of readLines(layout, key, signal)) {
      const id = idOfLine(line);
      if (id !== null) finished.add(id);
    }
  }
  const seen = new IdSet();
  for await (const line of readLines(layout, `${layout.base}/items.jsonl`, signal)) {
    const entry = parseSourceLine(line);
    const id = entry.ok ? entry.item.id : entry.id;
    if (!seen.add(id) || finished.has(id)) continue;
    await pending.write(JSON.stringify(entry.ok ? toJobForm(entry.item) : { id, url: entry.url }));
  }
  return seen.size;
}

/** Items of the plan that no batch ever received (the map stopped before them): all pending. */
async function collectGaps(
  layout: StoreLayout,
  plan: MapPlan,
  covered: Array<[number, number]>,
  pending: PendingWriter,
  signal: AbortSignal | undefined,
): Promise<number> {
  const gaps: Array<[number, number]> = [];
  let cursor = 0;
  for (const [start, end] of [...covered].sort((a, b) => a[0] - b[0])) {
    if (start > cursor) gaps.push([cursor, start]);
    cursor = Math.max(cursor, end);
  }
  if (cursor < plan.items) gaps.push([cursor, plan.items]);
  if (gaps.length === 0) return 0;
  let index = 0;
  let added = 0;
  for await (const line of readLines(layout, plan.source.key, signal, plan.source.bucket)) {
    const at = index++;
    if (!gaps.some(([start, end]) => at >= start && at < end)) continue;
    const entry = parseSourceLine(toSourceLine(JSON.parse(line) as unknown));
    const form = entry.ok ? toJobForm(entry.item) : { id: entry.id, url: entry.url };
    await pending.write(JSON.stringify(form));
    added++;
  }
  return added;
}

// ---------------------------------------------------------------------------------------------------
// Small objects

function planKey(layout: StoreLayout): string {
  return `${layout.base}/map/plan.json`;
}

function batchRecordKey(layout: StoreLayout): string {
  return `${layout.base}/batch.json`;
}

async function putJson(
  layout: StoreLayout,
  key: string,
  value: unknown,
  signal: AbortSignal | undefined,
): Promise<void> {
  await layout.client.send(
    new PutObjectCommand({
      Bucket: layout.bucket,
      Key: key,
      Body: JSON.stringify(value),
      ContentType: 'application/json',
    }),
    sendOptions(signal),
  );
}

async function getJson<T>(
  layout: StoreLayout,
  key: string,
  signal: AbortSignal | undefined,
): Promise<T | null> {
  try {
    const reply = await layout.client.send(
      new GetObjectCommand({ Bucket: layout.bucket, Key: key }),
      sendOptions(signal),
    );
    return JSON.parse((await reply.Body?.transformToString('utf8')) ?? '') as T;
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

function nowOf(runtime: JobRuntime): number {
  return runtime.clock?.now() ?? Date.now();
}
