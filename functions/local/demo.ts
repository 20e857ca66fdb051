// `npm start`: the same 200 requests run sequentially and fanned out against a local flaky API, then a report.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { readFirstLines } from '../cli/parts.ts';
import { createProgressReporter, formatDuration, type ProgressMode } from '../cli/progress.ts';
import { EMBEDDED_BUCKET, localDir } from '../cli/store.ts';
import type { JobRuntime, Manifest, TransformPool } from '../core/index.ts';
import { startDemoUpstream } from './demo-upstream.ts';
import { type EmbeddedS3, startEmbeddedS3 } from './embedded-s3.ts';

export const DEMO_ITEMS = 200;
export const DEMO_CONCURRENCY = 20;
/** The sequential baseline would take ~45 s: it runs this long, then the rest is extrapolated. */
export const DEFAULT_SEQUENTIAL_MS = 6_000;
export const QUICK_SEQUENTIAL_MS = 2_000;

export interface DemoOptions {
  sequentialMs: number;
  progress: ProgressMode;
  signal?: AbortSignal;
  out?: NodeJS.WriteStream;
}

export interface DemoSummary {
  sequential: { manifest: Manifest; measuredMs: number; extrapolatedMs: number; extrapolated: boolean };
  fanned: { manifest: Manifest; wallMs: number };
  speedup: number;
}

interface ResultLine {
  id: string;
  url: string;
  attempts: number;
  ms: number;
}
interface ErrorLine extends ResultLine {
  error: { code: string; message: string; status?: number };
}

export async function runDemo(options: DemoOptions): Promise<DemoSummary> {
  const out = options.out ?? process.stdout;
  const style = stylesFor(out);
  const { createTransformPool, runJob } = await import('../core/index.ts');
  const say = (line = ''): void => void out.write(`${line}\n`);

  await using resources = new AsyncDisposableStack();
  const upstream = await startDemoUpstream();
  resources.defer(() => upstream.close());
  const s3Dir = join(localDir(process.env), 's3');
  const s3: EmbeddedS3 = await startEmbeddedS3({ dir: s3Dir, buckets: [EMBEDDED_BUCKET] });
  resources.defer(() => s3.stop());
  const pool: TransformPool = createTransformPool();
  resources.defer(() => pool.close());

  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const items = upstream.productUrls(DEMO_ITEMS);
  const store = { client: s3.client, bucket: EMBEDDED_BUCKET };
  // The demo's own upstream is on loopback: allow exactly that, nothing else private.
  const base: Omit<JobRuntime, 'onProgress'> = {
    store,
    allow: ['127.0.0.1'],
    transformRunner: pool.run,
    ...(options.signal ? { signal: options.signal } : {}),
  };

  say();
  say(style.bold(`fanout demo: ${DEMO_ITEMS} calls to a product API that answers in ~200 ms`));
  say();
  say(`  ${style.dim('upstream')}   ${upstream.origin}  ~200 ms a call, 8 flaky, 1 broken`);
  say(`  ${style.dim('S3')}         ${s3.endpoint}  embedded, files in ${s3Dir}/`);
  say(`  ${style.dim('policy')}     allow 127.0.0.1 only (the demo's own upstream)`);
  say();

  // 1. Sequential: one request at a time, stopped by a deadline and extrapolated.
  say(
    style.bold(`1/2  sequential, concurrency 1`) +
      style.dim(`  (stopped after ${formatDuration(options.sequentialMs)}, the rest extrapolated)`),
  );
  const sequentialJob = {
    jobId: `demo-${stamp}-sequential`,
    items,
    options: { concurrency: 1, perHost: 1 },
  };
  const sequentialBar = createProgressReporter({
    mode: options.progress,
    stream: out,
    label: ' ',
    expectedTotal: DEMO_ITEMS,
  });
  const sequentialStart = performance.now();
  let sequential: Manifest;
  try {
    sequential = await runJob(sequentialJob, {
      ...base,
      deadline: Date.now() + options.sequentialMs,
      onProgress: sequentialBar.onProgress,
    });
  } finally {
    sequentialBar.stop();
  }
  const sequentialWallMs = performance.now() - sequentialStart;
  const sequentialDone = sequential.counts.succeeded + sequential.counts.failed;
  const cutShort = sequential.counts.pending > 0;
  // The run stopped starting items at the deadline: time per item is the budget over the items it finished.
  const measuredMs = cutShort ? Math.min(sequentialWallMs, options.sequentialMs) : sequentialWallMs;
  const extrapolatedMs =
    cutShort && sequentialDone > 0 ? (measuredMs * sequential.counts.total) / sequentialDone : measuredMs;
  options.signal?.throwIfAborted();
  say();

  // 2. Fanned out: the same calls, twenty at a time, meeting the same faults.
  upstream.reset();
  say(style.bold(`2/2  fanned out, concurrency ${DEMO_CONCURRENCY}`));
  const fannedJob = {
    jobId: `demo-${stamp}-fanout`,
    items,
    options: { concurrency: DEMO_CONCURRENCY, perHost: DEMO_CONCURRENCY },
  };
  const fannedBar = createProgressReporter({
    mode: options.progress,
    stream: out,
    label: ' ',
    expectedTotal: DEMO_ITEMS,
  });
  const fannedStart = performance.now();
  let fanned: Manifest;
  try {
    fanned = await runJob(fannedJob, { ...base, onProgress: fannedBar.onProgress });
  } finally {
    fannedBar.stop();
  }
  const fannedWallMs = performance.now() - fannedStart;
  say();

  // 3. The report, from the parts the manifest lists (the commit record), not from memory.
  const results = (await readFirstLines(store, fanned.results, Number.POSITIVE_INFINITY)) as ResultLine[];
  const errors = (await readFirstLines(store, fanned.errors, Number.POSITIVE_INFINITY)) as ErrorLine[];
  const outcomes = [...results, ...errors];
  const retries = outcomes.reduce((sum, line) => sum + Math.max(0, line.attempts - 1), 0);
  const recovered = results.filter((line) => line.attempts > 1).length;
  const latencies = outcomes.map((line) => line.ms).sort((a, b) => a - b);
  const speedup = extrapolatedMs / fannedWallMs;

  const label = (text: string): string => style.dim(text.padEnd(12));
  say(style.bold('Report'));
  say(
    `  ${label('sequential')}${formatDuration(extrapolatedMs)}  ` +
      (cutShort
        ? style.warn('extrapolated') +
          style.dim(
            ` from ${sequentialDone} of ${sequential.counts.total} items in ${formatDuration(measuredMs)}`,
          )
        : style.dim('measured')),
  );
  say(`  ${label('fanned out')}${formatDuration(fannedWallMs)}  ${style.dim('measured, wall time')}`);
  say(`  ${label('speedup')}${style.bold(style.good(`${speedup.toFixed(1)}x`))}`);
  say(
    `  ${label('items')}${fanned.counts.succeeded} succeeded, ${fanned.counts.failed} failed, ` +
      `${fanned.counts.pending} pending (of ${fanned.counts.total})`,
  );
  say(`  ${label('retries')}${retries}${style.dim(`  (${recovered} flaky items succeeded on a retry)`)}`);
  say(`  ${label('failures')}${errors.length === 0 ? 'none' : describeFailures(errors)}`);
  for (const line of errors.slice(0, 3)) {
    say(
      `  ${label('')}${style.dim(`${new URL(line.url).pathname}: ${line.error.code}${line.error.status ? ` ${line.error.status}` : ''} after ${line.attempts} attempts`)}`,
    );
  }
  say(
    `  ${label('latency')}p50 ${formatDuration(percentile(latencies, 0.5))}, ` +
      `p95 ${formatDuration(percentile(latencies, 0.95))}, p99 ${formatDuration(percentile(latencies, 0.99))}` +
      style.dim('  (per item, retries included)'),
  );
  say();
  const where = `s3://${EMBEDDED_BUCKET}/jobs/${fanned.jobId}/`;
  say(`${style.bold('Where the results are')}  ${where}`);
  const relative = (key: string): string =>
    key.slice(key.indexOf(`${fanned.jobId}/`) + fanned.jobId.length + 1);
  say(`  ${'manifest.json'.padEnd(28)}${style.dim('the commit record: lists every part below')}`);
  for (const key of fanned.results)
    say(`  ${relative(key).padEnd(28)}${style.dim('succeeded items, one JSON line each')}`);
  for (const key of fanned.errors)
    say(`  ${relative(key).padEnd(28)}${style.dim('failed items, with their error code')}`);
  say(style.dim(`  (the embedded bucket lives in ${s3Dir}/)`));
  say();
  say(`  Read them:  ${style.bold(`npx fanout show ${fanned.jobId}`)}`);
  say(`  Your job:   ${style.dim('npx fanout run job.json   (npx fanout --help for more)')}`);
  say();

  return {
    sequential: { manifest: sequential, measuredMs, extrapolatedMs, extrapolated: cutShort },
    fanned: { manifest: fanned, wallMs: fannedWallMs },
    speedup,
  };
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], quantile: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(quantile * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

function describeFailures(errors: readonly ErrorLine[]): string {
  const byCode = new Map<string, number>();
  for (const line of errors) byCode.set(line.error.code, (byCode.get(line.error.code) ?? 0) + 1);
  return [...byCode].map(([code, count]) => `${code} ${count}`).join(', ');
}

interface Styles {
  bold(text: string): string;
  dim(text: string): string;
  good(text: string): string;
  warn(text: string): string;
}

function stylesFor(stream: NodeJS.WriteStream): Styles {
  const on = typeof stream.hasColors === 'function' && stream.hasColors();
  const wrap = (open: string, close: string) => (text: string) =>
    on ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return { bold: wrap('1', '22'), dim: wrap('2', '22'), good: wrap('32', '39'), warn: wrap('33', '39') };
}
