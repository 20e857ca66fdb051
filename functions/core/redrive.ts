// Redrive: re-runs a job's failed items (all, or those with given codes) as a new run of the same job.
//
// Exactly once, with the manifest as the commit record. The redrive claims a run number and takes the
// job by compare-and-swap (a `running` manifest that still lists the old parts, kept alive by heartbeats),
// so no other run writes meanwhile. It writes only create-only parts of its own run: results for the
// items that now succeed, errors for those that failed again, and a copy of every error part that held a
// selected item, minus the items that got a new outcome. The final compare-and-swap swaps those copies
// in for the originals and appends the new parts. Until then the old manifest is what readers (and a run
// taking over a dead redrive) see; after it, the replaced parts are debris the next run removes. An item
// the redrive did not finish (deadline, cancel, fail-fast) keeps its old error line.
import { type Clock, systemClock } from './clock.ts';
import { startFanOut } from './engine.ts';
import { type ErrorCode, FanoutError, type ItemError, isErrorCode } from './errors.ts';
import { IdSet } from './finished-ids.ts';
import { type ParsedJob, parseJob, parseSourceLine } from './job.ts';
import { errorLine, succeededLine } from './lines.ts';
import type { JobRuntime } from './run.ts';
import {
  finalWriteSignal,
  idOfLine,
  isNotFound,
  listKeys,
  ManifestConflictError,
  newToken,
  type PartKind,
  partKey,
  putCreateOnly,
  readLines,
  readManifestVersion,
  runMarkerKey,
  runOfKey,
  type StoredManifest,
  type StoreLayout,
  StreamedObject,
  storeLayout,
  writeManifest,
} from './store.ts';
import type { HostStats, Item, Manifest, Outcome } from './types.ts';

export interface RedriveOptions {
  /** Re-run only items that failed with one of these codes; all failed items when absent or empty. */
  codes?: readonly ErrorCode[];
}

const MAX_RUN_CLAIMS = 1_000;

/** Re-runs the failed items of `jobId` and returns the new manifest (unchanged when none was selected). */
export async function redriveJob(
  jobId: string,
  options: RedriveOptions,
  runtime: JobRuntime,
): Promise<Manifest> {
  const codes = new Set<string>(options.codes ?? []);
  for (const code of codes) {
    if (!isErrorCode(code)) throw new FanoutError('INVALID_OPTIONS', `codes: unknown error code ${code}`);
  }
  const clock = runtime.clock ?? systemClock;
  const base = storeLayout(runtime.store, jobId);
  const layout: StoreLayout = { ...base, leaseMs: runtime.leaseMs ?? base.leaseMs };
  const signal = runtime.signal;
  signal?.throwIfAborted();

  const version = await readManifestVersion(layout, signal);
  if (!version) throw new FanoutError('UNKNOWN_JOB', `job ${jobId}: no manifest at ${layout.manifestKey}`);
  const previous = version.manifest;
  if (previous.status === 'running') {
    throw new FanoutError(
      'JOB_RUNNING',
      `job ${jobId} is running, or its last run died: let it finish (or run it again) before a redrive`,
    );
  }
  const job = await readJobDocument(layout, signal);
  const selection = await selectFailed(layout, previous.errors, codes, signal);
  if (selection.ids.size === 0) return previous;

  const token = newToken();
  const run = await claimRunNumber(layout, previous.runs, token, signal);
  const redrive = new Redrive(job, layout, run, token, clock, runtime, previous, version.etag);
  return redrive.execute(selection);
}

interface Selection {
  ids: IdSet;
  /** Listed error parts holding at least one selected item: the ones to copy without the redriven. */
  parts: Set<string>;
}

async function readJobDocument(layout: StoreLayout, signal: AbortSignal | undefined): Promise<ParsedJob> {
  const lines: string[] = [];
  try {
    for await (const line of readLines(layout, layout.jobKey, signal)) lines.push(line);
  } catch (error) {
    if (isNotFound(error)) {
      throw new FanoutError('UNKNOWN_JOB', `no saved job document at ${layout.jobKey}`);
    }
    throw error;
  }
  return parseJob(JSON.parse(lines.join('\n')) as unknown);
}

async function selectFailed(
  layout: StoreLayout,
  errorParts: readonly string[],
  codes: ReadonlySet<string>,
  signal: AbortSignal | undefined,
): Promise<Selection> {
  const ids = new IdSet();
  const parts = new Set<string>();
  for (const key of errorParts) {
    for await (const line of readLines(layout, key, signal)) {
      const record = parseErrorLine(line);
      if (record === null || (codes.size > 0 && !codes.has(record.code))) continue;
      ids.add(record.id);
      parts.add(key);
    }
  }
  return { ids, parts };
}

function parseErrorLine(line: string): { id: string; code: string } | null {
  try {
    const parsed = JSON.parse(line) as { id?: unknown; error?: { code?: unknown } };
    if (typeof parsed.id !== 'string' || typeof parsed.error?.code !== 'string') return null;
    return { id: parsed.id, code: parsed.error.code };
  } catch {
    return null;
  }
}

/** The next free run number, claimed with a create-only marker (the same protocol as runJob). */
async function claimRunNumber(
  layout: StoreLayout,
  runs: number,
  token: string,
  signal: AbortSignal | undefined,
): Promise<number> {
  let highest = runs;
  for (const { key } of await listKeys(layout, `${layout.base}/runs/`, signal)) {
    highest = Math.max(highest, runOfKey(key) ?? 0);
  }
  for (let run = highest + 1; run <= highest + MAX_RUN_CLAIMS; run++) {
    const marker = JSON.stringify({ run, token, redrive: true });
    if (await putCreateOnly(layout, runMarkerKey(layout, run), marker, token, signal)) return run;
  }
  throw new FanoutError('RUN_CLAIM', `could not claim a run number under ${layout.base}/runs/`);
}

/** One kind of line of this run, rolled into create-only parts at the size bound. */
class PartRoller {
  readonly keys: string[] = [];
  lines = 0;
  #current: StreamedObject | null = null;
  #next = 0;
  readonly #layout: StoreLayout;
  readonly #kind: PartKind;
  readonly #run: number;
  readonly #token: string;

  constructor(layout: StoreLayout, kind: PartKind, run: number, token: string) {
    this.#layout = layout;
    this.#kind = kind;
    this.#run = run;
    this.#token = token;
  }

  /** One line, as `head + body + tail` (see StreamedObject.write). */
  async write(head: string, body = '', tail = ''): Promise<void> {
    this.#current ??= new StreamedObject({
      layout: this.#layout,
      key: partKey(this.#layout, this.#kind, this.#run, this.#next++),
      createOnly: true,
      token: this.#token,
    });
    await this.#current.write(head, body, tail);
    if (this.#current.bytes >= this.#layout.partBytes) await this.close();
  }

  /** Closes the open part; when that fails it stays open, for abort() to abort. */
  async close(signal?: AbortSignal): Promise<void> {
    const part = this.#current;
    if (!part) return;
    await part.close(signal);
    this.#current = null;
    this.keys.push(part.key);
    this.lines += part.lines;
  }

  async abort(signal: AbortSignal): Promise<void> {
    const part = this.#current;
    this.#current = null;
    await part?.abort(signal).catch(() => undefined);
  }
}

class Redrive {
  readonly #job: ParsedJob;
  readonly #layout: StoreLayout;
  readonly #run: number;
  readonly #token: string;
  readonly #clock: Clock;
  readonly #runtime: JobRuntime;
  readonly #previous: StoredManifest;
  #etag: string;
  #seq = 0;
  readonly #controller = new AbortController();
  readonly #results: PartRoller;
  readonly #errors: PartRoller;
  /** Items that got a final outcome in this run: their old error lines go. */
  readonly #finished = new IdSet();
  #moved = 0;
  #aborted: { code: string; message: string } | null = null;
  #hosts: Record<string, HostStats> = {};
  #fatal: unknown;

  constructor(
    job: ParsedJob,
    layout: StoreLayout,
    run: number,
    token: string,
    clock: Clock,
    runtime: JobRuntime,
    previous: StoredManifest,
    etag: string,
  ) {
    this.#job = job;
    this.#layout = layout;
    this.#run = run;
    this.#token = token;
    this.#clock = clock;
    this.#runtime = runtime;
    this.#previous = previous;
    this.#etag = etag;
    this.#results = new PartRoller(layout, 'results', run, token);
    this.#errors = new PartRoller(layout, 'errors', run, token);
  }

  async execute(selection: Selection): Promise<Manifest> {
    const parent = this.#runtime.signal;
    const onAbort = (): void => this.#controller.abort(parent?.reason);
    if (parent?.aborted) onAbort();
    else parent?.addEventListener('abort', onAbort, { once: true });
    try {
      // Take the job: from here until the final write, a rival run waits for our lease or loses its CAS.
      await this.#commit(this.#runningManifest(), this.#controller.signal);
      const heartbeat = this.#startHeartbeat();
      try {
        await this.#consume(selection.ids);
      } catch (error) {
        this.#fatal ??= error;
      } finally {
        await heartbeat.stop();
      }
      // Cancelled by the caller (or its deadline): not a failure; what did not finish keeps its old line.
      if (parent?.aborted && !(this.#fatal instanceof ManifestConflictError)) this.#fatal = undefined;
      // The last writes get their own short deadline, not the job's signal: a cancel that lands while
      // they run must not cut the commit (or the give-back), which would leave the job `running`.
      if (this.#fatal !== undefined) return await this.#giveBack(finalWriteSignal(undefined));
      const signal = finalWriteSignal(undefined);
      try {
        const copies = this.#finished.size > 0 ? await this.#copyErrorParts(selection.parts, signal) : [];
        await Promise.all([this.#results.close(signal), this.#errors.close(signal)]);
        return await this.#commit(this.#finalManifest(copies), signal);
      } catch (error) {
        this.#fatal = error;
        return await this.#giveBack(finalWriteSignal(undefined));
      }
    } finally {
      parent?.removeEventListener('abort', onAbort);
    }
  }

  async #consume(selected: IdSet): Promise<void> {
    const engine = this.#runtime.startFanOut ?? startFanOut;
    const fanOut = engine(this.#items(selected), this.#job.options, {
      ...this.#runtime,
      signal: this.#controller.signal,
      keepExactJson: true,
    });
    try {
      for await (const outcome of fanOut.outcomes) {
        if (this.#fatal !== undefined) throw this.#fatal;
        await this.#record(outcome);
      }
    } finally {
      this.#hosts = fanOut.hostStats();
    }
  }

  /** The selected items in job order, from the job document or streamed from its source. */
  async *#items(selected: IdSet): AsyncGenerator<Item> {
    const seen = new IdSet();
    const source = this.#job.source;
    if (!source) {
      for (const item of this.#job.items) if (selected.has(item.id) && seen.add(item.id)) yield item;
      return;
    }
    for await (const line of readLines(this.#layout, source.key, this.#controller.signal, source.bucket)) {
      const parsed = parseSourceLine(line);
      // A line that does not parse fails the same way again: its old error line stays.
      if (parsed.ok && selected.has(parsed.item.id) && seen.add(parsed.item.id)) yield parsed.item;
    }
  }

  async #record(outcome: Outcome): Promise<void> {
    if (outcome.ok) {
      // The same line a run writes: the exact JSON text as received, or TRANSFORM_ERROR when not JSON.
      const line = succeededLine(outcome);
      if (line.kind === 'results') {
        await this.#results.write(line.head, line.value, '}');
        this.#moved++;
      } else await this.#errors.write(line.line);
      this.#finished.add(outcome.id);
      return;
    }
    // Not finished by this run (deadline, cancel): it keeps its old error line.
    if (outcome.pending === true) return;
    const error: ItemError = outcome.error;
    if (error.code === 'ABORTED') {
      // Stopped by this run's own fail-fast or failure ratio: keep the line that says why it failed.
      this.#aborted ??= { code: 'ABORTED', message: error.message };
      return;
    }
    await this.#errors.write(errorLine(outcome));
    this.#finished.add(outcome.id);
  }

  /** Copies each listed error part that held a selected item, minus the items this run finished. */
  async #copyErrorParts(parts: ReadonlySet<string>, signal: AbortSignal): Promise<string[]> {
    const replaced: string[] = [];
    for (const key of this.#previous.errors) {
      if (!parts.has(key)) continue;
      for await (const line of readLines(this.#layout, key, signal)) {
        const id = idOfLine(line) ?? parseErrorLine(line)?.id ?? null;
        if (id !== null && this.#finished.has(id)) continue;
        await this.#errors.write(line);
      }
      replaced.push(key);
    }
    return replaced;
  }

  #startHeartbeat(): { stop(): Promise<void> } {
    const stopper = new AbortController();
    const loop = (async () => {
      const sleepSignal = AbortSignal.any([stopper.signal, this.#controller.signal]);
      while (!sleepSignal.aborted) {
        try {
          await this.#clock.sleep(this.#layout.heartbeatMs, sleepSignal);
          // Not cut short by stop() nor by a cancel: a write whose outcome we never learn (its ETag)
          // would fail our final compare-and-swap. Its own short deadline bounds it instead.
          await this.#commit(this.#runningManifest(), finalWriteSignal(undefined));
        } catch (error) {
          // Fenced out (another run took the job) or S3 failing: stop the redrive; a stop is not an error.
          if (!stopper.signal.aborted && !this.#controller.signal.aborted) {
            this.#fatal ??= error;
            this.#controller.abort(error);
          }
          return;
        }
      }
    })();
    return {
      stop: async () => {
        stopper.abort();
        await loop;
      },
    };
  }

  /** After a failure: the previous manifest goes back as it was (so the job is not left `running`). */
  async #giveBack(signal: AbortSignal): Promise<never> {
    await Promise.all([this.#results.abort(signal), this.#errors.abort(signal)]);
    if (!(this.#fatal instanceof ManifestConflictError)) {
      const { heartbeatAt: _beat, writer: _writer, ...restored } = this.#previous;
      await this.#commit(restored, signal).catch(() => undefined);
    }
    throw this.#fatal;
  }

  #runningManifest(): StoredManifest {
    const { error: _error, ...rest } = this.#previous;
    return {
      ...rest,
      status: 'running',
      finishedAt: null,
      pending: null,
      runs: Math.max(this.#run, this.#previous.runs),
    };
  }

  #finalManifest(replaced: readonly string[]): StoredManifest {
    const previous = this.#previous;
    const { error: _error, heartbeatAt: _beat, writer: _writer, ...rest } = previous;
    const gone = new Set(replaced);
    const counts = {
      ...previous.counts,
      succeeded: previous.counts.succeeded + this.#moved,
      failed: previous.counts.failed - this.#moved,
    };
    const manifest: StoredManifest = {
      ...rest,
      status: this.#aborted ? 'failed' : counts.pending > 0 ? 'partial' : 'complete',
      finishedAt: new Date(this.#clock.now()).toISOString(),
      runs: Math.max(this.#run, previous.runs),
      counts,
      results: [...previous.results, ...this.#results.keys],
      errors: [...previous.errors.filter((key) => !gone.has(key)), ...this.#errors.keys],
      hosts: Object.keys(this.#hosts).length > 0 ? this.#hosts : previous.hosts,
      redriven: (previous.redriven ?? 0) + this.#finished.size,
    };
    if (this.#aborted) manifest.error = this.#aborted;
    return manifest;
  }

  /** Compare-and-swap of the manifest, stamped with this run's writer and a heartbeat. */
  async #commit(manifest: StoredManifest, signal: AbortSignal): Promise<Manifest> {
    const stamped: StoredManifest = {
      ...manifest,
      heartbeatAt: new Date(this.#clock.now()).toISOString(),
      writer: `${this.#run}:${this.#token}:${++this.#seq}`,
    };
    this.#etag = await writeManifest(this.#layout, stamped, this.#etag, signal);
    return stamped;
  }
}
