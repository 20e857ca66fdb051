// The whole pipeline of one job: job -> resume set -> engine -> streamed parts -> checkpoints -> manifest.
import { type Clock, systemClock } from './clock.ts';
import { startFanOut } from './engine.ts';
import { FanoutError } from './errors.ts';
import { IdSet } from './finished-ids.ts';
import { type ParsedJob, parseJob, parseSourceLine, toJobDocument, toJobForm } from './job.ts';
import { badLineRecord, errorLine, succeededLine } from './lines.ts';
import {
  FINAL_WRITE_TIMEOUT_MS,
  finalWriteSignal,
  idOfLine,
  isConditionFailure,
  listKeys,
  ManifestConflictError,
  type ManifestVersion,
  newToken,
  type PartKind,
  partKey,
  putCreateOnly,
  readLines,
  readManifestVersion,
  removeDebris,
  runOfKey,
  type StoredManifest,
  type StoreLayout,
  StreamedObject,
  storeLayout,
  writeManifest,
} from './store.ts';
import type {
  HostStats,
  Item,
  Manifest,
  ManifestCounts,
  Outcome,
  PendingOutcome,
  StoreConfig,
} from './types.ts';

export type JobRuntime = import('./types.ts').Runtime & {
  store: StoreConfig;
  /** Test seam: the engine to run (default: engine.ts startFanOut). */
  startFanOut?: typeof startFanOut;
  /** Test seam: how long a silent `running` manifest holds the job (default: store.ts LEASE_MS, 8 s). */
  leaseMs?: number;
};

const MAX_RUN_CLAIMS = 1_000;
const MAX_TAKEOVER_ATTEMPTS = 20;
/** How often a run waiting for another live run looks at the manifest again (adds to the lease's wait). */
const LEASE_POLL_MS = 500;

/** Runs (or resumes) a job document to its manifest. */
export async function runJob(job: unknown, runtime: JobRuntime): Promise<Manifest> {
  return runParsedJob(parseJob(job), runtime);
}

/** Continues a job already started (its job document was saved by its first run). */
export async function resumeJob(jobId: string, runtime: JobRuntime): Promise<Manifest> {
  const layout = storeLayout(runtime.store, jobId);
  const lines: string[] = [];
  try {
    for await (const line of readLines(layout, layout.jobKey, runtime.signal)) lines.push(line);
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey' || isStatus(error, 404)) {
      throw new FanoutError('UNKNOWN_JOB', `job ${jobId}: no saved job document at ${layout.jobKey}`);
    }
    throw error;
  }
  return runJob(JSON.parse(lines.join('\n')) as unknown, runtime);
}

/** The committed manifest of a job, or null when none exists. A dead run's checkpoint reads as partial. */
export async function readManifest(
  store: StoreConfig,
  jobId: string,
  signal?: AbortSignal,
  clock: Clock = systemClock,
): Promise<Manifest | null> {
  const layout = storeLayout(store, jobId);
  const version = await readManifestVersion(layout, signal);
  if (!version) return null;
  return isDeadRun(version.manifest, clock.now(), layout.leaseMs)
    ? { ...version.manifest, status: 'partial' }
    : version.manifest;
}

/**
 * The manifest as stored: a dead run's checkpoint stays `running`. For a caller that must not act on a
 * job until its last run has finished (a redrive refuses both a live run and a dead one).
 */
export async function readStoredManifest(
  store: StoreConfig,
  jobId: string,
  signal?: AbortSignal,
): Promise<Manifest | null> {
  return (await readManifestVersion(storeLayout(store, jobId), signal))?.manifest ?? null;
}

function isDeadRun(manifest: StoredManifest, now: number, leaseMs: number): boolean {
  if (manifest.status !== 'running') return false;
  const beat = manifest.heartbeatAt ? Date.parse(manifest.heartbeatAt) : Number.NaN;
  return !Number.isFinite(beat) || now - beat > leaseMs;
}

function isStatus(error: unknown, status: number): boolean {
  return (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode === status;
}

interface CommittedState {
  results: string[];
  errors: string[];
  succeeded: number;
  failed: number;
}

async function runParsedJob(job: ParsedJob, runtime: JobRuntime): Promise<Manifest> {
  const clock = runtime.clock ?? systemClock;
  const base = storeLayout(runtime.store, job.jobId);
  const layout: StoreLayout = { ...base, leaseMs: runtime.leaseMs ?? base.leaseMs };
  const signal = runtime.signal;
  signal?.throwIfAborted();

  let current = await waitForLease(layout, clock, runtime);
  if (current.kind === 'done') return current.manifest;
  const token = newToken();
  await putCreateOnly(layout, layout.jobKey, JSON.stringify(toJobDocument(job)), token, signal);
  const run = await claimRunNumber(layout, current.version, token, signal);
  for (let attempt = 1; ; attempt++) {
    const session = new RunSession(job, layout, run, token, clock, runtime);
    try {
      return await session.execute(current.version);
    } catch (error) {
      // Lost the race to take the job (another run checkpointed or took it first): look again.
      if (!(error instanceof ManifestConflictError) || session.tookOver || attempt >= MAX_TAKEOVER_ATTEMPTS) {
        throw error;
      }
    }
    current = await waitForLease(layout, clock, runtime);
    if (current.kind === 'done') return current.manifest;
  }
}

type LeaseState = { kind: 'done'; manifest: Manifest } | { kind: 'go'; version: ManifestVersion | null };

/**
 * A complete job (or one aborted by its own rules) is returned as it is. A job another live run holds
 * is waited for until that run finishes or its heartbeat goes stale; if our deadline comes first, the
 * manifest is returned as it stands.
 */
async function waitForLease(layout: StoreLayout, clock: Clock, runtime: JobRuntime): Promise<LeaseState> {
  for (;;) {
    const version = await readManifestVersion(layout, runtime.signal);
    if (!version) return { kind: 'go', version: null };
    const manifest = version.manifest;
    if (manifest.status === 'complete') return { kind: 'done', manifest };
    if (manifest.status === 'failed' && manifest.error?.code === 'ABORTED') return { kind: 'done', manifest };
    if (manifest.status !== 'running' || isDeadRun(manifest, clock.now(), layout.leaseMs)) {
      return { kind: 'go', version };
    }
    const waitMs = Math.min(LEASE_POLL_MS, layout.leaseMs);
    if (runtime.deadline !== undefined && clock.now() + waitMs >= runtime.deadline) {
      return { kind: 'done', manifest };
    }
    await clock.sleep(waitMs, runtime.signal);
  }
}

/** Each run claims the next number with a create-only marker, so two runs never share part keys. */
async function claimRunNumber(
  layout: StoreLayout,
  version: ManifestVersion | null,
  token: string,
  signal: AbortSignal | undefined,
): Promise<number> {
  let highest = version?.manifest.runs ?? 0;
  for (const { key } of await listKeys(layout, `${layout.base}/runs/`, signal)) {
    highest = Math.max(highest, runOfKey(key) ?? 0);
  }
  for (let run = highest + 1; run <= highest + MAX_RUN_CLAIMS; run++) {
    const marker = JSON.stringify({ run, token });
    if (
      await putCreateOnly(
        layout,
        `${layout.base}/runs/${String(run).padStart(4, '0')}.json`,
        marker,
        token,
        signal,
      )
    ) {
      return run;
    }
  }
  throw new FanoutError('RUN_CLAIM', `could not claim a run number under ${layout.base}/runs/`);
}

/** Lines of one kind, rolled into parts at the size bound. */
class PartSink {
  current: StreamedObject | null = null;
  #next = 0;
  /** Full parts, detached at their roll and not yet closed by a checkpoint, oldest first. */
  #full: StreamedObject[] = [];
  /** The roll's checkpoint in flight, if any. */
  #rolling: Promise<void> | null = null;
  readonly #kind: PartKind;
  readonly #session: RunSession;

  constructor(kind: PartKind, session: RunSession) {
    this.#kind = kind;
    this.#session = session;
  }

  /** Takes one line (`head + body + tail`, see StreamedObject.write); a promise only when the caller must wait (backpressure, or a roll's checkpoint). */
  write(head: string, body = '', tail = ''): Promise<void> | undefined {
    if (!this.current) {
      this.current = new StreamedObject({
        layout: this.#session.layout,
        key: partKey(this.#session.layout, this.#kind, this.#session.run, this.#next++),
        createOnly: true,
        token: this.#session.token,
      });
    }
    const part = this.current;
    const wait = part.write(head, body, tail);
    return part.bytes >= this.#session.layout.partBytes ? this.#roll(part, wait) : wait;
  }

  /**
   * A full part is detached at once (the next line opens the next part) and closed and listed by a
   * checkpoint, while the lines go on: waiting for the close would stall the engine for the upload's
   * tail and a manifest write (~0.3 s a roll on the embedded S3). A checkpoint's failure fails the
   * session (#fail), which the consumer sees at its next outcome. One roll in flight at most: the next
   * waits for it, so full parts cannot pile up faster than S3 takes them.
   */
  #roll(part: StreamedObject, wait: Promise<void> | undefined): Promise<void> | undefined {
    this.#full.push(part);
    this.current = null;
    const previous = this.#rolling;
    const rolling = this.#session.checkpoint().catch(() => undefined);
    this.#rolling = rolling;
    void rolling.then(() => {
      if (this.#rolling === rolling) this.#rolling = null;
    });
    return previous ? Promise.all([wait, previous]).then(() => undefined) : wait;
  }

  /** Hands over the full parts and the open one (if any), oldest first, for closing; the next write opens a new one. */
  detach(): StreamedObject[] {
    const parts = this.#full;
    this.#full = [];
    if (this.current) parts.push(this.current);
    this.current = null;
    return parts;
  }
}

class RunSession {
  readonly layout: StoreLayout;
  readonly run: number;
  readonly token: string;
  /** True once this run's compare-and-swap took the job; a conflict after that means it was fenced out. */
  tookOver = false;
  readonly #job: ParsedJob;
  readonly #clock: Clock;
  readonly #runtime: JobRuntime;
  /** The engine's signal: fires on the caller's cancel (or deadline signal) and on a store failure. */
  readonly #controller = new AbortController();
  /** Fires only when the store itself failed (a write, a lost compare-and-swap): nothing more is written. */
  readonly #failed = new AbortController();
  /** Fires FINAL_WRITE_TIMEOUT_MS after a cancel or the start of the final writes (asyncio `shield`). */
  readonly #windDown = new AbortController();
  #windDownTimer: NodeJS.Timeout | null = null;
  /**
   * Every S3 call of the run carries this: a cancel does not cut a write short (that would lose finished
   * work and leave the manifest's ETag unknown); it starts the final deadline instead.
   */
  readonly #io = AbortSignal.any([this.#failed.signal, this.#windDown.signal]);
  readonly #results = new PartSink('results', this);
  readonly #errors = new PartSink('errors', this);
  #pending: StreamedObject | null = null;
  #pendingLines = 0;
  #committed: CommittedState = { results: [], errors: [], succeeded: 0, failed: 0 };
  #etag: string | null = null;
  #startedAt = '';
  #seq = 0;
  #chain: Promise<void> = Promise.resolve();
  #fatal: unknown;
  #aborted: { code: string; message: string } | null = null;
  #total = 0;
  #duplicates = 0;
  #intakeDone = false;
  #hosts: Record<string, HostStats> = {};
  #previousHosts: Record<string, HostStats> = {};
  #previousRuns = 0;

  constructor(
    job: ParsedJob,
    layout: StoreLayout,
    run: number,
    token: string,
    clock: Clock,
    runtime: JobRuntime,
  ) {
    this.#job = job;
    this.layout = layout;
    this.run = run;
    this.token = token;
    this.#clock = clock;
    this.#runtime = runtime;
    this.#duplicates = job.duplicates;
  }

  get #signal(): AbortSignal {
    return this.#controller.signal;
  }

  async execute(previous: ManifestVersion | null): Promise<Manifest> {
    const unlink = onAbort(this.#runtime.signal, (reason) => {
      this.#controller.abort(reason);
      this.#startWindDown();
    });
    try {
      this.#startedAt = previous?.manifest.startedAt ?? new Date(this.#clock.now()).toISOString();
      this.#previousHosts = previous?.manifest.hosts ?? {};
      this.#previousRuns = previous?.manifest.runs ?? 0;
      this.#committed = {
        results: [...(previous?.manifest.results ?? [])],
        errors: [...(previous?.manifest.errors ?? [])],
        succeeded: previous?.manifest.counts.succeeded ?? 0,
        failed: previous?.manifest.counts.failed ?? 0,
      };
      this.#total = this.#job.source ? (previous?.manifest.counts.total ?? 0) : this.#job.items.length;
      // Take the job: from here until our final write, a rival run waits or loses its compare-and-swap.
      this.#etag = previous?.etag ?? null;
      await this.#commit('running', this.#io);
      this.tookOver = true;
      // Beating from here: reading a big job's finished ids takes a while, and must not look like death.
      const heartbeat = this.#startHeartbeat();
      try {
        const finished = await this.#readFinished();
        await removeDebris(
          this.layout,
          new Set([...this.#committed.results, ...this.#committed.errors]),
          this.run,
          this.#signal,
        );
        await this.#consume(finished);
      } catch (error) {
        this.#fatal ??= error;
      } finally {
        await heartbeat.stop();
      }
      return await this.#finish();
    } finally {
      unlink();
      if (this.#windDownTimer !== null) clearTimeout(this.#windDownTimer);
    }
  }

  /** Starts the final deadline once: from a cancel, or from the start of the final writes. */
  #startWindDown(): void {
    if (this.#windDownTimer !== null || this.#windDown.signal.aborted) return;
    this.#windDownTimer = setTimeout(() => {
      this.#windDown.abort(
        new FanoutError('FINAL_WRITE_TIMEOUT', `final writes took longer than ${FINAL_WRITE_TIMEOUT_MS} ms`),
      );
    }, FINAL_WRITE_TIMEOUT_MS);
  }

  /** A store failure: stop the engine and every write; the last checkpoint stands. */
  #fail(error: unknown): void {
    this.#fatal ??= error;
    this.#failed.abort(error);
    this.#controller.abort(error);
  }

  /** Ids (and counts) of every line the listed parts hold: the items not to fetch again. */
  async #readFinished(): Promise<IdSet> {
    const finished = new IdSet();
    // Counted aside: a read cut short (a cancel) leaves the previous manifest's counts in place.
    const counts = { results: 0, errors: 0 };
    for (const kind of ['results', 'errors'] as const) {
      for (const key of this.#committed[kind]) {
        for await (const line of readLines(this.layout, key, this.#signal)) {
          const id = idOfLine(line);
          if (id !== null && finished.add(id)) counts[kind]++;
        }
      }
    }
    this.#committed.succeeded = counts.results;
    this.#committed.failed = counts.errors;
    return finished;
  }

  async #consume(finished: IdSet): Promise<void> {
    const engine = this.#runtime.startFanOut ?? startFanOut;
    const fanOut = engine(this.#intake(finished), this.#job.options, {
      ...this.#runtime,
      signal: this.#signal,
      keepExactJson: true,
    });
    try {
      for await (const outcome of fanOut.outcomes) {
        if (this.#fatal !== undefined) throw this.#fatal;
        // Most outcomes are only buffered: no promise to wait on (a promise per item costs at 10k/s).
        const wait = this.#record(outcome);
        if (wait) await wait;
      }
    } finally {
      this.#hosts = fanOut.hostStats();
    }
  }

  /** Items still to do, in job order; a source is streamed, deduplicated, its bad lines recorded as failed. */
  async *#intake(finished: IdSet): AsyncGenerator<Item> {
    const source = this.#job.source;
    if (!source) {
      this.#total = this.#job.items.length;
      for (const item of this.#job.items) if (!finished.has(item.id)) yield item;
      this.#intakeDone = true;
      return;
    }
    const seen = new IdSet();
    const resuming = finished.size > 0;
    // Read on the I/O signal: after a cancel the engine drains the rest of the source into pending.
    for await (const line of readLines(this.layout, source.key, this.#io, source.bucket)) {
      const parsed = parseSourceLine(line);
      const id = parsed.ok ? parsed.item.id : parsed.id;
      if (!seen.add(id)) {
        this.#duplicates++;
        continue;
      }
      this.#total = seen.size;
      // A first run has finished nothing: skip the lookup (its regex and hex parse) per line.
      if (resuming && finished.has(id)) continue;
      if (parsed.ok) yield parsed.item;
      else await this.#errors.write(badLineRecord(parsed));
    }
    this.#intakeDone = true;
  }

  /** Writes an outcome's line; a promise only when the caller must wait before the next one. */
  #record(outcome: Outcome): Promise<void> | undefined {
    if (outcome.ok) {
      const line = succeededLine(outcome);
      return line.kind === 'results'
        ? this.#results.write(line.head, line.value, '}')
        : this.#errors.write(line.line);
    }
    if (outcome.pending === true) return this.#recordPending(outcome);
    if (outcome.error.code === 'ABORTED' && !this.#aborted)
      this.#aborted = { code: 'ABORTED', message: outcome.error.message };
    return this.#errors.write(errorLine(outcome));
  }

  async #recordPending(outcome: PendingOutcome): Promise<void> {
    if (!this.#pending) {
      // Prove we still hold the job before touching the one fixed key a rival could also write.
      await this.checkpoint();
      this.#pending = new StreamedObject({
        layout: this.layout,
        key: this.layout.pendingKey,
        createOnly: false,
        token: this.token,
      });
    }
    await this.#pending.write(JSON.stringify(toJobForm(outcome.item)));
    this.#pendingLines++;
  }

  /** Closes the open parts and lists them in a `running` manifest; serialized, so parts list in order. */
  checkpoint(): Promise<void> {
    return this.#serialized(async () => {
      await this.#closeParts(this.#io);
      await this.#commit('running', this.#io);
    });
  }

  /** Rewrites the `running` manifest as it stands (no part closed): proof of life, cheap. */
  #beat(): Promise<void> {
    return this.#serialized(async () => {
      await this.#commit('running', this.#io);
    });
  }

  /** Manifest writes one at a time, in order; the first failure fails the store. */
  #serialized(write: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(write);
    this.#chain = next.catch((error: unknown) => this.#fail(error));
    return next;
  }

  async #closeParts(signal: AbortSignal): Promise<void> {
    const results = this.#results.detach();
    const errors = this.#errors.detach();
    const parts = [...results, ...errors];
    try {
      await Promise.all(parts.map((part) => part.close(signal)));
    } catch (error) {
      // Out of time already: abort without waiting (what is left on S3 is debris a later run removes).
      const deadline = signal.aborted ? signal : finalWriteSignal(signal);
      await Promise.all(parts.map((part) => part.abort(deadline)));
      throw error;
    }
    for (const part of results) {
      this.#committed.results.push(part.key);
      this.#committed.succeeded += part.lines;
    }
    for (const part of errors) {
      this.#committed.errors.push(part.key);
      this.#committed.failed += part.lines;
    }
  }

  /**
   * Heartbeats every `heartbeatMs` keep the lease (a rival waits while they are fresh); every
   * `checkpointMs` the beat is a checkpoint that also closes and lists the open parts. They go on after
   * a cancel, while the pending items are written, until the final writes start.
   */
  #startHeartbeat(): { stop(): Promise<void> } {
    const stopper = new AbortController();
    const sleepSignal = AbortSignal.any([stopper.signal, this.#failed.signal]);
    const loop = (async () => {
      let lastCheckpoint = this.#clock.now();
      while (!sleepSignal.aborted) {
        try {
          await this.#clock.sleep(this.layout.heartbeatMs, sleepSignal);
        } catch {
          return;
        }
        if (this.#clock.now() - lastCheckpoint >= this.layout.checkpointMs) {
          lastCheckpoint = this.#clock.now();
          await this.checkpoint().catch(() => undefined);
        } else {
          await this.#beat().catch(() => undefined);
        }
      }
    })();
    return {
      stop: async () => {
        stopper.abort();
        await loop;
        await this.#chain;
      },
    };
  }

  async #finish(): Promise<Manifest> {
    // The job's signal may have fired (deadline, cancel): the last writes run under the final deadline.
    this.#startWindDown();
    const signal = this.#io;
    if (this.#fatal instanceof ManifestConflictError) {
      await this.#abandon(finalWriteSignal(undefined));
      throw this.#fatal;
    }
    // A cancel is not a failure: what it cut short (a read, the engine) is pending, not failed.
    if (this.#runtime.signal?.aborted && !this.#failed.signal.aborted) this.#fatal = undefined;
    try {
      await this.#closeParts(signal);
      await this.#pending?.close(signal);
    } catch (error) {
      this.#fatal ??= error;
    }
    if (this.#fatal !== undefined && isS3Failure(this.#fatal)) {
      await this.#abandon(finalWriteSignal(undefined));
      throw this.#fatal;
    }
    const finishedCount = this.#committed.succeeded + this.#committed.failed;
    if (!this.#intakeDone || finishedCount + this.#pendingLines !== this.#total) {
      await this.#rewritePending(signal);
    }
    const status =
      this.#fatal !== undefined || this.#aborted ? 'failed' : this.#pendingLines > 0 ? 'partial' : 'complete';
    return this.#commit(status, signal);
  }

  /** Stops writing: open uploads are aborted so they leave no invisible parts behind. */
  async #abandon(signal: AbortSignal): Promise<void> {
    const parts = [...this.#results.detach(), ...this.#errors.detach(), this.#pending];
    await Promise.all(parts.map((part) => part?.abort(signal).catch(() => undefined)));
  }

  /**
   * The slow path, when the engine did not account for every item (a fatal error, an unread source):
   * pending = every item of the job that no listed part holds, recomputed from S3.
   */
  async #rewritePending(signal: AbortSignal): Promise<void> {
    await this.#pending?.abort(signal);
    const finished = new IdSet();
    for (const key of [...this.#committed.results, ...this.#committed.errors]) {
      for await (const line of readLines(this.layout, key, signal)) {
        const id = idOfLine(line);
        if (id !== null) finished.add(id);
      }
    }
    const pending = new StreamedObject({
      layout: this.layout,
      key: this.layout.pendingKey,
      createOnly: false,
      token: this.token,
    });
    let lines = 0;
    const seen = new IdSet();
    const write = async (item: Item): Promise<void> => {
      if (finished.has(item.id) || !seen.add(item.id)) return;
      await pending.write(JSON.stringify(toJobForm(item)));
      lines++;
    };
    const source = this.#job.source;
    if (source) {
      let badLines = 0;
      for await (const line of readLines(this.layout, source.key, signal, source.bucket)) {
        const parsed = parseSourceLine(line);
        if (parsed.ok) await write(parsed.item);
        else if (!finished.has(parsed.id) && seen.add(parsed.id)) {
          // A bad line the intake never reached: recorded failed, as the intake would have.
          await this.#errors.write(badLineRecord(parsed));
          badLines++;
        }
      }
      if (badLines > 0) await this.#closeParts(signal);
      // `seen` holds only ids no listed part had: each source line is counted once.
      this.#total = Math.max(this.#total, seen.size + finished.size);
    } else {
      for (const item of this.#job.items) await write(item);
    }
    if (lines === 0) {
      await pending.abort(signal);
      this.#pending = null;
    } else {
      await pending.close(signal);
      this.#pending = pending;
    }
    this.#pendingLines = lines;
  }

  async #commit(
    status: 'running' | 'complete' | 'partial' | 'failed',
    signal: AbortSignal,
  ): Promise<Manifest> {
    const now = new Date(this.#clock.now()).toISOString();
    const { succeeded, failed } = this.#committed;
    const total = Math.max(this.#total, succeeded + failed + this.#pendingLines);
    const counts: ManifestCounts = {
      total,
      succeeded,
      failed,
      pending: total - succeeded - failed,
      duplicates: this.#duplicates,
    };
    const manifest: StoredManifest = {
      jobId: this.#job.jobId,
      status,
      startedAt: this.#startedAt,
      finishedAt: status === 'running' ? null : now,
      runs: Math.max(this.run, this.#previousRuns),
      counts,
      results: [...this.#committed.results],
      errors: [...this.#committed.errors],
      pending: status !== 'running' && this.#pendingLines > 0 ? this.layout.pendingKey : null,
      options: this.#job.options,
      hosts: Object.keys(this.#hosts).length > 0 ? this.#hosts : this.#previousHosts,
      heartbeatAt: now,
      writer: `${this.run}:${this.token}:${++this.#seq}`,
    };
    if (status === 'failed') manifest.error = this.#failure();
    this.#etag = await writeManifest(this.layout, manifest, this.#etag, signal);
    return manifest;
  }

  #failure(): { code: string; message: string } {
    if (this.#aborted) return this.#aborted;
    const error = this.#fatal as { code?: unknown; message?: unknown } | undefined;
    return {
      code: typeof error?.code === 'string' ? error.code : 'FATAL',
      message: typeof error?.message === 'string' ? error.message : String(this.#fatal),
    };
  }
}

/** Failures of the store itself: nothing more can be written, so the last checkpoint stands. */
function isS3Failure(error: unknown): boolean {
  return (
    error instanceof ManifestConflictError ||
    isConditionFailure(error) ||
    typeof (error as { $metadata?: unknown } | null)?.$metadata === 'object'
  );
}

/** Calls `listener` once when `signal` aborts (at once if it has); returns the unsubscribe. */
function onAbort(signal: AbortSignal | undefined, listener: (reason: unknown) => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    listener(signal.reason);
    return () => undefined;
  }
  const handler = (): void => listener(signal.reason);
  signal.addEventListener('abort', handler, { once: true });
  return () => signal.removeEventListener('abort', handler);
}
