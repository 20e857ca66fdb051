// Live progress on stderr: a cli-progress bar on a terminal, else a JSON (or text) line every few seconds.
import cliProgress from 'cli-progress';
import type { Progress } from '../core/index.ts';

export type ProgressMode = 'auto' | 'bar' | 'json' | 'text' | 'none';
export const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'bar', 'json', 'text', 'none'];

/** How often a line is written when stderr is not a terminal (a log file, CI): "every few seconds". */
export const DEFAULT_LINE_INTERVAL_MS = 3_000;
/** The rate shown is over this trailing window, so it follows the run rather than its average. */
const RATE_WINDOW_MS = 5_000;
const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 10;

export interface ProgressReporter {
  /** runtime.onProgress: keeps the latest snapshot only; drawing happens on a timer. */
  onProgress(progress: Progress): void;
  /** A message line that does not break the bar. */
  log(line: string): void;
  /** Draws the last snapshot and stops every timer; idempotent. */
  stop(): void;
  /** The last snapshot seen (for reports). */
  last(): Progress | undefined;
}

export interface ProgressOptions {
  mode: ProgressMode;
  stream?: NodeJS.WriteStream;
  /** Shown before the bar: "sequential", "fanned out". */
  label?: string;
  /** For json/text lines; FANOUT_PROGRESS_INTERVAL_MS overrides it (tests make it short). */
  intervalMs?: number;
  /** Shown while the engine's own total is still unknown (inline items are counted before the run). */
  expectedTotal?: number;
}

/** The figures every view shows, derived once from a snapshot. */
export interface ProgressLine {
  done: number;
  total: number | null;
  succeeded: number;
  failed: number;
  pending: number;
  inFlight: number;
  retries: number;
  throttled: number;
  ratePerSec: number;
  elapsedMs: number;
}

export function createProgressReporter(options: ProgressOptions): ProgressReporter {
  const reporter = createReporter(options);
  const expected = options.expectedTotal;
  if (expected === undefined) return reporter;
  return {
    ...reporter,
    onProgress: (progress) =>
      reporter.onProgress(progress.total === null ? { ...progress, total: expected } : progress),
  };
}

function createReporter(options: ProgressOptions): ProgressReporter {
  const stream = options.stream ?? process.stderr;
  const mode = options.mode === 'auto' ? (stream.isTTY ? 'bar' : 'json') : options.mode;
  if (mode === 'none') return silentReporter(stream);
  if (mode === 'bar') return barReporter(stream, options.label);
  const envInterval = Number(process.env.FANOUT_PROGRESS_INTERVAL_MS);
  const intervalMs =
    Number.isFinite(envInterval) && envInterval > 0
      ? envInterval
      : (options.intervalMs ?? DEFAULT_LINE_INTERVAL_MS);
  return lineReporter(stream, mode, intervalMs, options.label);
}

/** Done items per second over the trailing window, from snapshots' own elapsed time (no wall clock). */
function createRateMeter(): (progress: Progress) => number {
  const samples: Array<{ atMs: number; done: number }> = [];
  return (progress) => {
    const done = doneOf(progress);
    samples.push({ atMs: progress.elapsedMs, done });
    while (samples.length > 2 && (samples[1]?.atMs ?? 0) <= progress.elapsedMs - RATE_WINDOW_MS)
      samples.shift();
    const first = samples[0];
    if (!first || progress.elapsedMs - first.atMs < 250) {
      return progress.elapsedMs > 0 ? (done * 1000) / progress.elapsedMs : 0;
    }
    return ((done - first.done) * 1000) / (progress.elapsedMs - first.atMs);
  };
}

/** Items with a final outcome; pending ones are shown apart (a rerun finishes them). */
function doneOf(progress: Progress): number {
  return progress.succeeded + progress.failed;
}

export function toProgressLine(progress: Progress, ratePerSec: number): ProgressLine {
  return {
    done: doneOf(progress),
    total: progress.total,
    succeeded: progress.succeeded,
    failed: progress.failed,
    pending: progress.pending,
    inFlight: progress.inFlight,
    retries: progress.retries,
    throttled: progress.throttled,
    ratePerSec: Math.round(ratePerSec * 10) / 10,
    elapsedMs: Math.round(progress.elapsedMs),
  };
}

function silentReporter(stream: NodeJS.WriteStream): ProgressReporter {
  let latest: Progress | undefined;
  return {
    onProgress: (progress) => {
      latest = progress;
    },
    log: (line) => stream.write(`${line}\n`),
    stop: () => {},
    last: () => latest,
  };
}

function lineReporter(
  stream: NodeJS.WriteStream,
  mode: 'json' | 'text',
  intervalMs: number,
  label: string | undefined,
): ProgressReporter {
  const rate = createRateMeter();
  let latest: Progress | undefined;
  let written: Progress | undefined;
  let stopped = false;
  const write = (): void => {
    if (!latest || latest === written) return;
    written = latest;
    const line = toProgressLine(latest, rate(latest));
    if (mode === 'json') {
      stream.write(`${JSON.stringify({ type: 'progress', ...(label ? { label } : {}), ...line })}\n`);
    } else {
      stream.write(`${label ? `${label} ` : ''}${describe(line, plainStyle)}\n`);
    }
  };
  const timer = setInterval(write, intervalMs);
  // The run, not the progress timer, decides when the process may exit.
  timer.unref();
  return {
    onProgress: (progress) => {
      latest = progress;
    },
    log: (line) => stream.write(`${line}\n`),
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      write();
    },
    last: () => latest,
  };
}

interface Style {
  good(text: string): string;
  warn(text: string): string;
  bad(text: string): string;
  dim(text: string): string;
}
const plainStyle: Style = { good: (t) => t, warn: (t) => t, bad: (t) => t, dim: (t) => t };
const ansiStyle: Style = {
  good: (t) => `\x1b[32m${t}\x1b[39m`,
  warn: (t) => `\x1b[33m${t}\x1b[39m`,
  bad: (t) => `\x1b[31m${t}\x1b[39m`,
  dim: (t) => `\x1b[2m${t}\x1b[22m`,
};

/**
 * "120/200 · 20 in flight · 9 retries · 1 failed · 1 throttled · 81.2/s · 2.4 s". `compact` (narrow
 * terminals) leaves out the counters that are still zero, and then the elapsed time.
 */
export function describe(line: ProgressLine, style: Style, compact: 0 | 1 | 2 = 0): string {
  const width = String(line.total ?? line.done).length;
  const count = `${String(line.done).padStart(width)}/${line.total ?? '?'}`;
  const counter = (value: number, text: string, color: (text: string) => string): string[] =>
    compact > 0 && value === 0 ? [] : [tint(value, text, color, style)];
  const parts = [
    count,
    ...counter(line.inFlight, `${line.inFlight} in flight`, (text) => text),
    ...counter(line.retries, `${line.retries} ${line.retries === 1 ? 'retry' : 'retries'}`, style.warn),
    ...counter(line.failed, `${line.failed} failed`, style.bad),
    ...counter(line.throttled, `${line.throttled} throttled`, style.warn),
    ...(line.pending > 0 ? [style.warn(`${line.pending} pending`)] : []),
    `${line.ratePerSec.toFixed(1)}/s`,
    ...(compact < 2 ? [formatDuration(line.elapsedMs)] : []),
  ];
  return parts.join(style.dim(' · '));
}

function tint(count: number, text: string, color: (text: string) => string, style: Style): string {
  return count > 0 ? color(text) : style.dim(text);
}

/** 950 ms, 4.2 s, 1m 05s. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1_000);
  return `${minutes}m ${String(seconds).padStart(2, '0')}s`;
}

function barReporter(stream: NodeJS.WriteStream, label: string | undefined): ProgressReporter {
  const colors = typeof stream.hasColors === 'function' && stream.hasColors();
  const style = colors ? ansiStyle : plainStyle;
  const rate = createRateMeter();
  let latest: Progress | undefined;
  let line: ProgressLine | undefined;
  let stopped = false;
  const bar = new cliProgress.SingleBar({
    stream,
    fps: 10,
    hideCursor: true,
    format: (_options, params) => {
      const prefix = label ? `${label} ` : '';
      if (!line) return `${prefix}starting`;
      const current = line;
      // The bar takes what the terminal has left; narrow terminals get fewer words before losing the bar.
      const fit = ([0, 1, 2] as const)
        .map((compact) => {
          const figures = describe(current, style, compact);
          return { figures, room: params.maxWidth - visibleLength(prefix) - visibleLength(figures) - 2 };
        })
        .find((candidate) => candidate.room >= MIN_BAR_WIDTH);
      if (!fit) return `${prefix}${describe(current, style, 2)}`;
      const size = Math.min(MAX_BAR_WIDTH, fit.room);
      const known = current.total !== null;
      const filled = known ? Math.round(params.progress * size) : 0;
      const barText = known
        ? style.good('█'.repeat(filled)) + style.dim('░'.repeat(size - filled))
        : style.dim('·'.repeat(size));
      return `${prefix}${barText} ${fit.figures}`;
    },
  });
  let started = false;
  return {
    onProgress: (progress) => {
      if (stopped) return;
      latest = progress;
      line = toProgressLine(progress, rate(progress));
      const total = progress.total ?? 0;
      if (!started) {
        started = true;
        bar.start(total, line.done);
      } else {
        bar.setTotal(total);
        bar.update(line.done);
      }
    },
    log: (text) => {
      if (!started || stopped) {
        stream.write(`${text}\n`);
        return;
      }
      // Clear the bar's line, print, then save the cursor again: cli-progress restores the saved position
      // when it stops, which would otherwise land above (and overwrite) what we printed.
      stream.write(`\r\x1b[2K${text}\n\x1b7`);
      // SingleBar.render() only redraws a changed line; the generic one can be forced.
      cliProgress.GenericBar.prototype.render.call(bar, true);
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      if (started) bar.stop();
    },
    last: () => latest,
  };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI color codes is the point.
const ANSI = /\x1b\[[0-9;]*m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}
