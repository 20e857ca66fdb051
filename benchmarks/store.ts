// Store benchmark: peak RSS and wall per job size, each in a fresh child; throughput with results written vs discarded.
//
//   npm run bench:store                                    1,000 / 10,000 / 100,000 items (1 KB bodies), both heaps
//   npm run bench:store -- --sizes 1000,5000 --cost 5000 --rounds 1 --heaps default    a quick check
//
// The parent runs the local upstream (127.0.0.1), a second process the embedded S3 (its synchronous file
// writes must not stall the upstream: in production S3 is another service); each measurement is a fresh
// child process that runs one job and reports its peak RSS (the kernel's high-water mark), its wall time,
// the peaks of V8's heap and of memory outside it (Buffers), sampled every 50 ms, and its CPU.
//
// Two ways to hand over a job:
// - `source`: the items as an S3 object (one URL a line), `source: { s3 }` in the job. runJob streams it
//   line by line and never holds the list: the constant-memory path for big jobs, and the headline.
// - `inline`: the same items as the job's `items` array. The caller built that array in memory, so the
//   child holds it (and its parsed form) for the whole run: memory grows with the job by design.
//
// Two V8 heaps:
// - `default`: node's own sizing. V8 grows its heap lazily with the allocation rate (the live set after a
//   full GC stays ~30 MB at any size, measured with --trace-gc), so a long run's peak RSS sits well above
//   a 1-second run's whatever the job holds.
// - `bounded`: --max-old-space-size=128 --max-semi-space-size=4: the Lambda runtime sizes V8's heap from
//   the function's memory (NODE_OPTIONS aside), and a 128 MB function gets about this one.
//   The same job must then fit in a fixed heap: if memory grew with the job it would show here (or the
//   child would run out of heap), so this is the figure that tests "constant memory".
//
// The write cost runs the same 100k source job twice per round, alternating: `written` (runJob: parts,
// checkpoints, manifest, to the embedded S3) and `discarded` (the same source read and engine, outcomes
// dropped), best of the rounds (3 by default; the medians are printed too). The embedded S3 shares the
// machine's cores with the upstream and the job: its CPU (printed) is part of what writing costs here;
// on Lambda, S3 is remote.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startFanOut } from '../functions/core/engine.ts';
import { parseOptions, parseSourceLine } from '../functions/core/job.ts';
import { runJob } from '../functions/core/run.ts';
import { readLines, storeLayout } from '../functions/core/store.ts';
import type { Item } from '../functions/core/types.ts';
import { startEmbeddedS3 } from '../functions/local/embedded-s3.ts';
import { startUpstream } from '../test/support/upstream.ts';

const BUCKET = 'fanout-bench';
const OPTIONS = { concurrency: 64, perHost: 64, retries: { maxAttempts: 1 } };
const SAMPLE_MS = 50;
const HEAPS = {
  default: [] as string[],
  bounded: ['--max-old-space-size=128', '--max-semi-space-size=4'],
} as const;
type Heap = keyof typeof HEAPS;
/** Extra node flags for the job children only, e.g. FANOUT_BENCH_CHILD_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof'. */
const CHILD_FLAGS = (process.env.FANOUT_BENCH_CHILD_FLAGS ?? '').split(' ').filter((flag) => flag !== '');

interface ChildArgs {
  endpoint: string;
  jobId: string;
  mode: 'written' | 'discarded';
  /** S3 source key, or the URLs themselves for an inline job. */
  sourceKey: string;
  inline: boolean;
  urlPrefix: string;
  items: number;
}

interface ChildResult {
  items: number;
  wall_ms: number;
  peak_rss_mb: number;
  peak_heap_mb: number;
  peak_external_mb: number;
  /** CPU of the child (all its threads), and meanwhile of the upstream and of the embedded S3. */
  cpu_ms: number;
  /** The kernel's share of cpu_ms (socket writes, page faults). */
  sys_ms: number;
  upstream_cpu_ms: number;
  s3_cpu_ms: number;
}

const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

function clientFor(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
}

async function child(args: ChildArgs): Promise<void> {
  const client = clientFor(args.endpoint);
  const peak = { heap: 0, external: 0 };
  const sample = (): void => {
    const usage = process.memoryUsage();
    peak.heap = Math.max(peak.heap, usage.heapTotal);
    peak.external = Math.max(peak.external, usage.external);
  };
  const sampler = setInterval(sample, SAMPLE_MS);
  // The inline job's items are the caller's: built before the clock starts, as a caller would have them.
  const urls = args.inline
    ? Array.from({ length: args.items }, (_, index) => `${args.urlPrefix}item/${index}?j=${args.jobId}`)
    : [];
  const started = performance.now();
  let items = 0;
  if (args.mode === 'written') {
    const job = args.inline
      ? { jobId: args.jobId, items: urls, options: OPTIONS }
      : { jobId: args.jobId, source: { s3: `s3://${BUCKET}/${args.sourceKey}` }, options: OPTIONS };
    const manifest = await runJob(job, { store: { client, bucket: BUCKET }, allow: ['private'] });
    items = manifest.counts.succeeded + manifest.counts.failed;
  } else {
    // The same source and engine, outcomes dropped: what fetching alone costs.
    const layout = storeLayout({ client, bucket: BUCKET }, args.jobId);
    async function* source(): AsyncGenerator<Item> {
      for await (const line of readLines(layout, args.sourceKey, undefined)) {
        const parsed = parseSourceLine(line);
        if (parsed.ok) yield parsed.item;
      }
    }
    const run = startFanOut(source(), parseOptions(OPTIONS), { allow: ['private'] });
    for await (const _outcome of run.outcomes) items++;
  }
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage();
  sample();
  clearInterval(sampler);
  const result: ChildResult = {
    items,
    wall_ms: Math.round(wallMs),
    // maxRSS is in KiB: the process's peak, not a sample.
    peak_rss_mb: mb(process.resourceUsage().maxRSS * 1024),
    peak_heap_mb: mb(peak.heap),
    peak_external_mb: mb(peak.external),
    cpu_ms: Math.round((cpu.user + cpu.system) / 1000),
    sys_ms: Math.round(cpu.system / 1000),
    upstream_cpu_ms: 0,
    s3_cpu_ms: 0,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  client.destroy();
}

const cpuMs = (usage: NodeJS.CpuUsage): number => Math.round((usage.user + usage.system) / 1000);

/** The embedded S3 in its own process; answers 'cpu' with its CPU so far, exits on 'stop'. */
async function s3Server(dir: string): Promise<void> {
  const s3 = await startEmbeddedS3({ dir, buckets: [BUCKET] });
  process.on('message', (message) => {
    if (message === 'cpu') process.send?.({ cpu_ms: cpuMs(process.cpuUsage()) });
    else if (message === 'stop') void s3.stop().finally(() => process.exit(0));
  });
  process.send?.({ endpoint: s3.endpoint });
}

async function startS3Process(
  dir: string,
): Promise<{ endpoint: string; cpuMs(): Promise<number>; stop(): Promise<void> }> {
  const server: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), 's3', dir], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const [ready] = (await once(server, 'message')) as [{ endpoint: string }];
  return {
    endpoint: ready.endpoint,
    async cpuMs() {
      const answer = once(server, 'message') as Promise<[{ cpu_ms: number }]>;
      server.send('cpu');
      return (await answer)[0].cpu_ms;
    },
    async stop() {
      const exited = once(server, 'exit');
      server.send('stop');
      await exited;
    },
  };
}

async function runChild(args: ChildArgs, heap: Heap, s3: { cpuMs(): Promise<number> }): Promise<ChildResult> {
  const upstreamCpu = process.cpuUsage();
  const s3Cpu = await s3.cpuMs();
  const result = await spawnChild(args, heap);
  return {
    ...result,
    upstream_cpu_ms: cpuMs(process.cpuUsage(upstreamCpu)),
    s3_cpu_ms: (await s3.cpuMs()) - s3Cpu,
  };
}

function spawnChild(args: ChildArgs, heap: Heap): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [...HEAPS[heap], ...CHILD_FLAGS, fileURLToPath(import.meta.url), 'child', JSON.stringify(args)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => {
      if (code !== 0) reject(new Error(`child exited ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}') as ChildResult);
    });
  });
}

function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function flag(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

async function main(): Promise<void> {
  const sizes = (flag('--sizes') ?? '1000,10000,100000').split(',').map(Number);
  const costItems = Number(flag('--cost') ?? sizes[sizes.length - 1] ?? 100_000);
  const rounds = Number(flag('--rounds') ?? 3);
  const heaps = (flag('--heaps') ?? 'default,bounded').split(',') as Heap[];
  const dir = mkdtempSync(join(tmpdir(), 'fanout-bench-s3-'));
  const s3 = await startS3Process(dir);
  const client = clientFor(s3.endpoint);
  const upstream = await startUpstream();
  let counter = 0;
  const say = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const emit = (record: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(record)}\n`);
  };
  /** A fresh job (new id, new URLs) so no run resumes another's. */
  const prepare = async (
    items: number,
    inline: boolean,
    mode: ChildArgs['mode'] = 'written',
  ): Promise<ChildArgs> => {
    const jobId = `bench-${items}-${++counter}`;
    const sourceKey = `sources/${jobId}.txt`;
    if (!inline) {
      const lines = Array.from({ length: items }, (_, index) => `${upstream.url}item/${index}?j=${jobId}`);
      await client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: sourceKey, Body: `${lines.join('\n')}\n` }),
      );
    }
    return { endpoint: s3.endpoint, jobId, mode, sourceKey, inline, urlPrefix: upstream.url, items };
  };
  const describe = (result: ChildResult): string =>
    `${result.wall_ms} ms, peak RSS ${result.peak_rss_mb} MB (V8 heap ${result.peak_heap_mb} MB, outside it ${result.peak_external_mb} MB)`;
  const cpu = (result: ChildResult): string =>
    `${result.wall_ms} ms, CPU: job ${result.cpu_ms} ms (sys ${result.sys_ms}), S3 ${result.s3_cpu_ms} ms, upstream ${result.upstream_cpu_ms} ms`;
  try {
    for (const heap of heaps) {
      const flags = HEAPS[heap].join(' ') || 'node defaults';
      say(
        `\n== V8 heap: ${heap} (${flags}); 1 KB bodies, local upstream, embedded S3, a fresh child per job ==`,
      );
      const bySize = new Map<number, ChildResult>();
      for (const items of sizes) {
        const result = await runChild(await prepare(items, false), heap, s3);
        bySize.set(items, result);
        say(`store (S3 source, streamed): ${items} items: ${describe(result)}`);
        emit({
          scenario: heap === 'default' ? 'store' : `store-${heap}-heap`,
          items,
          wall_ms: result.wall_ms,
          peak_rss_mb: result.peak_rss_mb,
          source: 's3',
        });
      }
      const smallest = bySize.get(Math.min(...sizes));
      const largest = bySize.get(Math.max(...sizes));
      if (smallest && largest && sizes.length > 1) {
        const ratio = Math.round((largest.peak_rss_mb / smallest.peak_rss_mb) * 100) / 100;
        say(
          `store: peak RSS at ${Math.max(...sizes)} items is ${ratio}x that at ${Math.min(...sizes)} (target <= 1.3x)`,
        );
      }
      for (const items of sizes) {
        const result = await runChild(await prepare(items, true), heap, s3);
        say(`store (inline items, held by the caller): ${items} items: ${describe(result)}`);
        emit({
          scenario: heap === 'default' ? 'store-inline' : `store-inline-${heap}-heap`,
          items,
          wall_ms: result.wall_ms,
          peak_rss_mb: result.peak_rss_mb,
          source: 'inline',
        });
      }
      const walls = { written: [] as number[], discarded: [] as number[] };
      for (let round = 1; round <= rounds; round++) {
        const written = await runChild(await prepare(costItems, false, 'written'), heap, s3);
        const discarded = await runChild(await prepare(costItems, false, 'discarded'), heap, s3);
        say(`store-cost round ${round}: written ${cpu(written)}; discarded ${cpu(discarded)}`);
        walls.written.push(written.wall_ms);
        walls.discarded.push(discarded.wall_ms);
      }
      const rps = (wallMs: number): number => Math.round((costItems / wallMs) * 1000);
      const costOf = (written: number, discarded: number): number =>
        Math.round((1 - rps(written) / rps(discarded)) * 1000) / 10;
      const best = { written: Math.min(...walls.written), discarded: Math.min(...walls.discarded) };
      const median = { written: medianOf(walls.written), discarded: medianOf(walls.discarded) };
      const rpsWritten = rps(best.written);
      const rpsDiscarded = rps(best.discarded);
      const cost = costOf(best.written, best.discarded);
      say(
        `store-cost: ${costItems} items (S3 source), best of ${rounds}: ${rpsWritten} rps written, ${rpsDiscarded} rps discarded: writing costs ${cost}% (target < 15%); medians: ${rps(median.written)} vs ${rps(median.discarded)} rps, ${costOf(median.written, median.discarded)}%`,
      );
      emit({
        scenario: heap === 'default' ? 'store-cost' : `store-cost-${heap}-heap`,
        items: costItems,
        rps_written: rpsWritten,
        rps_discarded: rpsDiscarded,
      });
    }
  } finally {
    await upstream.close();
    client.destroy();
    await s3.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'child') await child(JSON.parse(process.argv[3] ?? '{}') as ChildArgs);
else if (process.argv[2] === 's3') await s3Server(process.argv[3] ?? '');
else await main();
