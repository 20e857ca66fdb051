// The transform pool: piscina worker threads behind a bounded queue that makes callers wait, with a
// per-task timeout, crash containment, an inline path for small cheap bodies, and a warm shared pool.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMarkedAsUntransferable } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import * as z from 'zod';
import { FanoutError } from './errors.ts';
import type { TransformSpec } from './job.ts';
import { describeError, TASK_STARTED, type WorkerTask } from './transforms/contract.ts';
import { applyCheapTransform } from './transforms/inline.ts';
import type { FetchedResponse, TransformResult, TransformRunner } from './types.ts';

export {
  assertKnownTransform,
  BUILTIN_TRANSFORMS,
  transformNames,
} from './transforms/catalog.ts';

/** Longest a transform may run once started before its worker is terminated (TRANSFORM_TIMEOUT). */
export const DEFAULT_TASK_TIMEOUT_MS = 30_000;
/** Tasks queued inside the pool per thread, beyond the one each runs; bodies waiting there are bounded. */
export const DEFAULT_QUEUE_PER_THREAD = 2;
/**
 * Old-space heap of one worker. A 1,769 MB Lambda (one full vCPU) keeps 2 workers, the main thread
 * and the in-flight bodies within its memory; a runaway transform dies alone (TRANSFORM_CRASHED).
 */
export const DEFAULT_WORKER_HEAP_MB = 256;
/**
 * Bodies up to this size run on the main thread for the cheap built-ins (auto, raw, json, digest).
 * Measured by `node benchmarks/pool.ts --inline-threshold` (Node 24.21, 2 cores, busy machine): main-thread
 * time per item inline vs through the pool (post, transfer, structured clone of the value back). json:
 * 18 vs 155 µs at 1 KiB, 171 vs 416 µs at 16 KiB, 847 vs 805 µs at 64 KiB (the crossover: the cloned
 * value costs the main thread about what parsing does); raw stays cheaper inline (25 vs 84 µs at 64 KiB).
 */
export const INLINE_MAX_BODY_BYTES = 64 * 1024;

/** Where the worker lives once bundled: next to the handler bundle (see infra/bundle-workers.ts). */
export const BUNDLED_WORKER_FILE = 'transform-worker.mjs';
/** piscina bundled as CommonJS in its own folder, so its `__dirname`-relative worker path still works. */
export const BUNDLED_PISCINA_DIR = 'piscina';

export interface TransformPoolOptions {
  /** Worker threads; defaults to os.availableParallelism(). */
  threads?: number;
  /** Tasks queued in the pool beyond the running ones; defaults to threads x DEFAULT_QUEUE_PER_THREAD. */
  maxQueue?: number;
  /** Per-task limit from the moment a worker starts the task. */
  taskTimeoutMs?: number;
  /** Old-space heap limit of each worker. */
  workerHeapMb?: number;
  /** Bodies up to this many bytes run inline for the cheap built-ins; 0 sends everything to the pool. */
  inlineMaxBodyBytes?: number;
  /** The worker module (a path or file: URL); defaults to the bundled worker, else the source one. */
  workerFile?: string | URL;
}

export interface TransformPoolStats {
  threads: number;
  /** Bodies handed to piscina and not yet answered (running plus queued); never above `bound`. */
  admitted: number;
  /** The most ever admitted at once. */
  peakAdmitted: number;
  /** threads + maxQueue. */
  bound: number;
  /** Callers waiting for room (their bodies are still theirs). */
  waiting: number;
  /** Tasks the pool has answered (success or failure), and those run inline instead. */
  pooled: number;
  inline: number;
}

export interface TransformPool {
  /**
   * Always resolves once started: a transform's failure, the caller's abort (TRANSFORM_TIMEOUT, "stopped")
   * and a close() meanwhile (TRANSFORM_CRASHED) are results. Throws POOL_CLOSED only on a closed pool.
   */
  run: TransformRunner;
  stats(): TransformPoolStats;
  readonly closed: boolean;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const OptionsSchema = z.strictObject({
  threads: z.number().int().min(1).max(256).optional(),
  maxQueue: z.number().int().min(0).max(100_000).optional(),
  taskTimeoutMs: z.number().int().min(1).max(900_000).optional(),
  workerHeapMb: z.number().int().min(16).max(16_384).optional(),
  inlineMaxBodyBytes: z
    .number()
    .int()
    .min(0)
    .max(1024 * 1024 * 1024)
    .optional(),
  workerFile: z.union([z.string().min(1), z.instanceof(URL)]).optional(),
});

interface ResolvedOptions {
  threads: number;
  maxQueue: number;
  taskTimeoutMs: number;
  workerHeapMb: number;
  inlineMaxBodyBytes: number;
  workerFile: string | URL | undefined;
}

/** Fills defaults; throws FanoutError INVALID_OPTIONS naming the field and its range. */
export function resolveTransformPoolOptions(options: TransformPoolOptions = {}): ResolvedOptions {
  const parsed = OptionsSchema.safeParse(options);
  if (!parsed.success) {
    const detail = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || 'options'}: ${issue.message}`,
    );
    throw new FanoutError('INVALID_OPTIONS', `transform pool ${detail.join('; ')}`);
  }
  const threads = parsed.data.threads ?? availableParallelism();
  return {
    threads,
    maxQueue: parsed.data.maxQueue ?? threads * DEFAULT_QUEUE_PER_THREAD,
    taskTimeoutMs: parsed.data.taskTimeoutMs ?? DEFAULT_TASK_TIMEOUT_MS,
    workerHeapMb: parsed.data.workerHeapMb ?? DEFAULT_WORKER_HEAP_MB,
    inlineMaxBodyBytes: parsed.data.inlineMaxBodyBytes ?? INLINE_MAX_BODY_BYTES,
    workerFile: parsed.data.workerFile,
  };
}

// piscina is loaded by a computed specifier so a bundler leaves it out of the handler bundle: bundled,
// its worker path (`__dirname + '/worker.js'`) would point nowhere. See infra/bundle-workers.ts.
const requireHere = createRequire(import.meta.url);

function locateRuntime(workerFile: string | URL | undefined): { workerFile: string; piscina: string } {
  const bundledWorker = new URL(`./${BUNDLED_WORKER_FILE}`, import.meta.url);
  const bundled = existsSync(fileURLToPath(bundledWorker));
  const sourceWorker = new URL('./transforms/worker.ts', import.meta.url);
  const chosen = workerFile ?? (bundled ? bundledWorker : sourceWorker);
  return {
    workerFile: chosen instanceof URL ? chosen.href : chosen,
    piscina: bundled ? `./${BUNDLED_PISCINA_DIR}/index.cjs` : 'piscina',
  };
}

export function createTransformPool(options: TransformPoolOptions = {}): TransformPool {
  const resolved = resolveTransformPoolOptions(options);
  const bound = resolved.threads + resolved.maxQueue;
  let piscina: Piscina<WorkerTask, TransformResult> | null = null;
  let closing: Promise<void> | null = null;
  let admitted = 0;
  let peakAdmitted = 0;
  let pooled = 0;
  let inline = 0;
  let sequence = 0;
  /** FIFO of callers waiting for room; each entry admits its caller. */
  const waiters: Array<{ admit: () => void; reject: (reason: unknown) => void }> = [];
  /** One controller per task handed to piscina, so close() can settle every one of them. */
  const inFlight = new Set<AbortController>();
  /** Tasks whose timeout starts when the worker says it began. */
  const onStarted = new Map<number, () => void>();

  const ensurePiscina = (): Piscina<WorkerTask, TransformResult> => {
    if (piscina) return piscina;
    const located = locateRuntime(resolved.workerFile);
    const { Piscina: PiscinaClass } = requireHere(located.piscina) as typeof import('piscina');
    const created = new PiscinaClass<WorkerTask, TransformResult>({
      filename: located.workerFile,
      minThreads: resolved.threads,
      maxThreads: resolved.threads,
      // The admission gate above holds bodies to threads + maxQueue; piscina's own limit is set to that
      // ceiling too, so a worker being replaced (fewer ready threads for a moment) never makes it reject.
      maxQueue: bound,
      resourceLimits: { maxOldGenerationSizeMb: resolved.workerHeapMb },
    });
    // piscina emits 'error' for a worker that dies with no task; without a listener that would throw.
    created.on('error', () => {});
    created.on('message', (message: unknown) => {
      if (isStartedMessage(message)) onStarted.get(message.seq)?.();
    });
    piscina = created;
    return created;
  };

  const admit = (signal: AbortSignal): Promise<void> | undefined => {
    if (admitted < bound && waiters.length === 0) {
      admitted++;
      peakAdmitted = Math.max(peakAdmitted, admitted);
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = waiters.indexOf(entry);
        if (index >= 0) waiters.splice(index, 1);
        reject(signal.reason);
      };
      const entry = {
        admit: () => {
          signal.removeEventListener('abort', onAbort);
          admitted++;
          peakAdmitted = Math.max(peakAdmitted, admitted);
          resolve();
        },
        reject: (reason: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(reason);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      waiters.push(entry);
    });
  };

  const release = () => {
    admitted--;
    if (admitted < bound) waiters.shift()?.admit();
  };

  const dispatch = async (
    pool: Piscina<WorkerTask, TransformResult>,
    response: FetchedResponse,
    spec: TransformSpec,
    signal: AbortSignal,
  ): Promise<TransformResult> => {
    const seq = ++sequence;
    const controller = new AbortController();
    inFlight.add(controller);
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const onCallerAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onCallerAbort, { once: true });
    onStarted.set(seq, () => {
      onStarted.delete(seq);
      timer = setTimeout(() => {
        timedOut = true;
        // Aborting a running piscina task terminates its worker and starts a replacement.
        controller.abort(new Error('transform timeout'));
      }, resolved.taskTimeoutMs);
    });
    const body = movableBody(response.body);
    const task: WorkerTask = {
      seq,
      response: {
        itemId: response.itemId,
        url: response.url,
        status: response.status,
        headers: response.headers,
        body,
      },
      spec: { name: spec.name, options: spec.options },
    };
    try {
      return await pool.run(task, { signal: controller.signal, transferList: [body.buffer] });
    } catch (error) {
      if (timedOut) {
        return {
          ok: false,
          code: 'TRANSFORM_TIMEOUT',
          message: `transform "${spec.name}" ran longer than ${resolved.taskTimeoutMs} ms`,
        };
      }
      if (signal.aborted) return stopped(spec, signal);
      if (closing) return closedMeanwhile(spec);
      // Out of memory, process.exit, a result that cannot be cloned: the worker is gone, the item failed.
      return {
        ok: false,
        code: 'TRANSFORM_CRASHED',
        message: `transform "${spec.name}" crashed its worker: ${describeError(error)}`,
      };
    } finally {
      pooled++;
      inFlight.delete(controller);
      clearTimeout(timer);
      onStarted.delete(seq);
      signal.removeEventListener('abort', onCallerAbort);
    }
  };

  const run: TransformRunner = async (response, spec, signal) => {
    if (closing) throw poolClosed();
    if (signal.aborted) return stopped(spec, signal);
    if (response.body.byteLength <= resolved.inlineMaxBodyBytes) {
      const result = applyCheapTransform(spec.name, response, spec.options);
      if (result) {
        inline++;
        return result;
      }
    }
    try {
      await admit(signal);
    } catch {
      return closing ? closedMeanwhile(spec) : stopped(spec, signal);
    }
    try {
      // close() may have run while this caller waited for room, even for a microtask.
      if (closing) return closedMeanwhile(spec);
      return await dispatch(ensurePiscina(), response, spec, signal);
    } finally {
      release();
    }
  };

  const close = (): Promise<void> => {
    closing ??= (async () => {
      for (const waiter of waiters.splice(0)) waiter.reject(poolClosed());
      const current = piscina;
      piscina = null;
      if (current) {
        const destroyed = current.destroy();
        // destroy() leaves running tasks unsettled: abort them, so each answers TRANSFORM_CRASHED.
        for (const controller of inFlight) controller.abort(poolClosed());
        await destroyed;
        current.removeAllListeners();
      }
    })();
    return closing;
  };

  return {
    run,
    stats: () => ({
      threads: resolved.threads,
      admitted,
      peakAdmitted,
      bound,
      waiting: waiters.length,
      pooled,
      inline,
    }),
    get closed() {
      return closing !== null;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

let shared: TransformPool | null = null;

/**
 * One pool per process, created on first use and kept while the Lambda container stays warm (workers
 * are unref'd, so an idle pool does not hold the process open). The first caller's options win.
 */
export function sharedTransformPool(options: TransformPoolOptions = {}): TransformPool {
  if (!shared || shared.closed) shared = createTransformPool(options);
  return shared;
}

/** For the CLI and tests: closes the shared pool; the next sharedTransformPool() starts a new one. */
export async function closeSharedTransformPool(): Promise<void> {
  const current = shared;
  shared = null;
  await current?.close();
}

/** The caller (the job) aborted: the engine reports such an item pending or ABORTED, not failed. */
function stopped(spec: TransformSpec, signal: AbortSignal): TransformResult {
  return {
    ok: false,
    code: 'TRANSFORM_TIMEOUT',
    message: `transform "${spec.name}" stopped: ${describeError(signal.reason)}`,
  };
}

function closedMeanwhile(spec: TransformSpec): TransformResult {
  return {
    ok: false,
    code: 'TRANSFORM_CRASHED',
    message: `the transform pool closed before "${spec.name}" finished`,
  };
}

function poolClosed(): FanoutError {
  return new FanoutError('POOL_CLOSED', 'the transform pool is closed');
}

function isStartedMessage(message: unknown): message is { type: typeof TASK_STARTED; seq: number } {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === TASK_STARTED &&
    typeof (message as { seq?: unknown }).seq === 'number'
  );
}

/**
 * The body's own buffer when it can be moved as is; otherwise an exact-size copy. A view on a larger
 * or pooled buffer (Node's Buffer pool is marked untransferable) must not detach its neighbours.
 */
function movableBody(body: Uint8Array): Uint8Array<ArrayBuffer> {
  const { buffer } = body;
  if (
    buffer instanceof ArrayBuffer &&
    !buffer.resizable &&
    body.byteOffset === 0 &&
    body.byteLength === buffer.byteLength &&
    !isMarkedAsUntransferable(buffer)
  ) {
    return body as Uint8Array<ArrayBuffer>;
  }
  const copy = new Uint8Array(body.byteLength);
  copy.set(body);
  return copy;
}
