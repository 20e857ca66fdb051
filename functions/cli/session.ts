// One run's surroundings, opened and closed together: store, transform pool, progress, Ctrl-C, the core's runtime.
import type { JobRuntime, Manifest } from '../core/index.ts';
import { exitCodeFor } from './errors.ts';
import { trapInterrupts } from './interrupt.ts';
import { createStderrLog } from './log.ts';
import {
  createProgressReporter,
  formatDuration,
  type ProgressMode,
  type ProgressReporter,
} from './progress.ts';
import { type OpenStore, openStore, type StoreFlags } from './store.ts';

/** How long a run may show no progress at all before the CLI says why it might be waiting. */
const QUIET_START_NOTICE_MS = 2_000;

export interface SessionFlags extends StoreFlags {
  allow?: string[];
  allowPrivate?: boolean;
  /** Milliseconds from now. */
  deadline?: number;
  progress?: ProgressMode;
  verbose?: boolean;
  /** Items known before the run (inline jobs), shown until the engine reports its own total. */
  expectedTotal?: number;
}

export interface RunSession {
  runtime: JobRuntime;
  reporter: ProgressReporter;
  opened: OpenStore;
  /** A stderr line that keeps the bar intact. */
  say(line: string): void;
  interrupted(): boolean;
}

/** `--allow` entries (FANOUT_ALLOW arrives through the same flag) plus "private" for --allow-private. */
export function allowList(flags: Pick<SessionFlags, 'allow' | 'allowPrivate'>): string[] {
  return [...(flags.allow ?? []), ...(flags.allowPrivate ? ['private'] : [])];
}

export async function withRunSession<T>(
  flags: SessionFlags,
  work: (session: RunSession) => Promise<T>,
): Promise<T> {
  const reporter = createProgressReporter({
    mode: flags.progress ?? 'auto',
    ...(flags.expectedTotal === undefined ? {} : { expectedTotal: flags.expectedTotal }),
  });
  const say = (line: string): void => reporter.log(`fanout: ${line}`);
  const opened = await openStore(flags, process.env, say);
  const controller = new AbortController();
  try {
    const { createTransformPool } = await import('../core/index.ts');
    const pool = createTransformPool();
    try {
      using trap = trapInterrupts(controller, say);
      const allow = allowList(flags);
      // A rerun right after a killed run waits (silently, in the core) for the dead run's claim to lapse.
      const quiet = setTimeout(
        () =>
          say(
            'waiting to start: a previous run of this job may still hold it (a killed run lets go within 8.5 s)',
          ),
        QUIET_START_NOTICE_MS,
      );
      quiet.unref();
      const runtime: JobRuntime = {
        store: opened.store,
        signal: controller.signal,
        onProgress: (progress) => {
          clearTimeout(quiet);
          reporter.onProgress(progress);
        },
        transformRunner: pool.run,
        log: createStderrLog((line) => reporter.log(line), flags.verbose ?? false),
        ...(allow.length > 0 ? { allow } : {}),
        ...(flags.deadline === undefined ? {} : { deadline: Date.now() + flags.deadline }),
      };
      try {
        return await work({ runtime, reporter, opened, say, interrupted: () => trap.interrupted });
      } finally {
        clearTimeout(quiet);
        reporter.stop();
      }
    } finally {
      await pool.close();
    }
  } finally {
    await opened.close();
  }
}

/** The manifest alone on stdout (for jq), a one-line summary on stderr; returns the exit code it stands for. */
export async function reportManifest(manifest: Manifest, location: string): Promise<number> {
  const { counts } = manifest;
  const tookMs =
    manifest.finishedAt === null ? null : Date.parse(manifest.finishedAt) - Date.parse(manifest.startedAt);
  const took = tookMs === null || Number.isNaN(tookMs) ? '' : ` in ${formatDuration(tookMs)}`;
  const next =
    manifest.status === 'partial'
      ? '; rerun the same job to resume it'
      : manifest.status === 'failed' && manifest.error
        ? ` (${manifest.error.code}: ${manifest.error.message})`
        : '';
  process.stderr.write(
    `fanout: job ${manifest.jobId} ${manifest.status}: ${counts.succeeded} succeeded, ${counts.failed} failed, ` +
      `${counts.pending} pending of ${counts.total}${took}; manifest at ${location}/${manifest.jobId}/manifest.json${next}\n`,
  );
  await new Promise<void>((resolve, reject) =>
    process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`, (error) =>
      error ? reject(error) : resolve(),
    ),
  );
  return exitCodeFor(manifest);
}
