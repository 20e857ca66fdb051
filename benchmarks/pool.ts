// npm run bench:pool: a CPU-heavy transform inline on the event loop vs in the worker pool, driven
// through the real engine (startFanOut with runtime.transformRunner) against a 20 ms loopback upstream.
//
//   node benchmarks/pool.ts [--n 2000] [--concurrency 50] [--latency-ms 20] [--cost-ms 10] [--threads N]
//   node benchmarks/pool.ts --inline-threshold      how INLINE_MAX_BODY_BYTES (pool.ts) was measured
//
// The upstream runs in a child process, as a remote API would: a blocked event loop here must not
// slow the server down too. The transform is the test fixtures' `cpu-burn` (busy for --cost-ms).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startFanOut } from '../functions/core/engine.ts';
import { parseItems, parseOptions } from '../functions/core/job.ts';
import { createTransformPool, INLINE_MAX_BODY_BYTES } from '../functions/core/pool.ts';
import { applyTransform, CHEAP_TRANSFORMS } from '../functions/core/transforms/inline.ts';
import type { FetchedResponse, TransformRunner } from '../functions/core/types.ts';
import { FIXTURE_TRANSFORMS } from '../test/fixtures/transforms/fixtures.ts';

const FIXTURE_WORKER = new URL('../test/fixtures/transforms/worker.ts', import.meta.url);

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    'latency-ms': { type: 'string', default: '20' },
    'cost-ms': { type: 'string', default: '10' },
    threads: { type: 'string' },
    'inline-threshold': { type: 'boolean', default: false },
  },
});

const UPSTREAM = `
  import http from 'node:http';
  const latencyMs = Number(process.argv[1]);
  const body = JSON.stringify({ pad: 'x'.repeat(1000) });
  const server = http.createServer((request, response) => {
    setTimeout(() => response.writeHead(200, { 'content-type': 'application/json' }).end(body), latencyMs);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => console.log(server.address().port));
  process.stdin.on('end', () => process.exit(0)).resume();`;

async function startUpstream(latencyMs: number): Promise<{ origin: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', UPSTREAM, String(latencyMs)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const [port] = (await once(lines, 'line')) as [string];
  lines.close();
  return { origin: `http://127.0.0.1:${port}`, child };
}

interface RunFigures {
  wallMs: number;
  lagP50Ms: number;
  lagP99Ms: number;
  succeeded: number;
}

async function fanOutOnce(urls: string[], runner: TransformRunner, concurrency: number, costMs: number) {
  const { items } = parseItems(urls);
  const options = parseOptions({
    concurrency,
    perHost: concurrency,
    adaptive: false,
    transform: { name: 'cpu-burn', options: { ms: costMs } },
  });
  const lag = monitorEventLoopDelay({ resolution: 1 });
  lag.enable();
  const startedAt = performance.now();
  let succeeded = 0;
  const run = startFanOut(items, options, { allow: ['127.0.0.1'], transformRunner: runner });
  for await (const outcome of run.outcomes) if (outcome.ok) succeeded++;
  const wallMs = performance.now() - startedAt;
  lag.disable();
  return {
    wallMs,
    lagP50Ms: lag.percentile(50) / 1e6,
    lagP99Ms: lag.percentile(99) / 1e6,
    succeeded,
  } satisfies RunFigures;
}

const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

async function comparePoolAndInline(): Promise<void> {
  const n = Number(values.n);
  const concurrency = Number(values.concurrency);
  const costMs = Number(values['cost-ms']);
  const threads = values.threads ? Number(values.threads) : availableParallelism();
  const upstream = await startUpstream(Number(values['latency-ms']));
  const burn = FIXTURE_TRANSFORMS['cpu-burn'];
  if (!burn) throw new Error('the cpu-burn fixture transform is missing');
  const inlineRunner: TransformRunner = (response, spec) => applyTransform(burn, response, spec.options);
  const pool = createTransformPool({ threads, inlineMaxBodyBytes: 0, workerFile: FIXTURE_WORKER });
  try {
    // Warm both paths (workers started, JIT warmed, sockets open) outside the measured runs.
    const warmUrls = Array.from({ length: concurrency }, (_, index) => `${upstream.origin}/warm/${index}`);
    await fanOutOnce(warmUrls, inlineRunner, concurrency, 1);
    await fanOutOnce(warmUrls, pool.run, concurrency, 1);

    const urls = Array.from({ length: n }, (_, index) => `${upstream.origin}/item/${index}`);
    process.stderr.write(
      `bench:pool: ${n} items, concurrency ${concurrency}, upstream ${values['latency-ms']} ms, ` +
        `transform ${costMs} ms CPU, ${threads} worker threads; driver: engine startFanOut\n`,
    );
    const figures: Record<'inline' | 'pool', RunFigures> = {
      inline: await fanOutOnce(urls, inlineRunner, concurrency, costMs),
      pool: await fanOutOnce(urls, pool.run, concurrency, costMs),
    };
    for (const mode of ['inline', 'pool'] as const) {
      const { wallMs, lagP50Ms, lagP99Ms, succeeded } = figures[mode];
      process.stdout.write(
        `${mode.padEnd(6)} wall ${round(wallMs, 0)} ms, loop delay p50 ${round(lagP50Ms)} ms, p99 ${round(lagP99Ms)} ms, ` +
          `${succeeded}/${n} succeeded\n`,
      );
    }
    const speedup = figures.inline.wallMs / figures.pool.wallMs;
    process.stdout.write(
      `speedup ${round(speedup, 2)}x (target >= 1.8x on 2 cores; pool p99 target < 20 ms)\n`,
    );
    for (const mode of ['inline', 'pool'] as const) {
      const { wallMs, lagP50Ms, lagP99Ms } = figures[mode];
      process.stdout.write(
        `${JSON.stringify({ scenario: 'pool', mode, wall_ms: round(wallMs, 0), lag_p50_ms: round(lagP50Ms, 2), lag_p99_ms: round(lagP99Ms, 2) })}\n`,
      );
    }
    process.stdout.write(`${JSON.stringify({ scenario: 'pool', speedup: round(speedup, 2) })}\n`);
  } finally {
    await pool.close();
    upstream.child.stdin?.end();
    await once(upstream.child, 'exit');
  }
}

/**
 * Main-thread time per item: inline (the transform itself) vs through the pool (post, transfer, clone
 * back), read as event-loop active time (eventLoopUtilization) while `tasks` items run 2 per thread.
 */
async function measureInlineThreshold(): Promise<void> {
  const sizes = [256, 1024, 4096, 16_384, 65_536, 262_144];
  const tasks = 2_000;
  const pool = createTransformPool({ inlineMaxBodyBytes: 0 });
  const signal = new AbortController().signal;
  const threads = pool.stats().threads;
  process.stdout.write(`current INLINE_MAX_BODY_BYTES = ${INLINE_MAX_BODY_BYTES}; ${threads} threads\n`);
  process.stdout.write(
    'transform  bytes    inline µs/item   pool main-thread µs/item   pool round trip µs\n',
  );
  try {
    for (const name of ['json', 'raw'] as const) {
      const transform = CHEAP_TRANSFORMS[name];
      if (!transform) throw new Error(`no ${name}`);
      for (const size of sizes) {
        const body = bodyOf(name, size);
        const response = (): FetchedResponse => ({
          itemId: 'i',
          url: 'https://example.com/',
          status: 200,
          headers: { 'content-type': name === 'json' ? 'application/json' : 'text/plain' },
          body: body.slice(),
        });
        const spec = { name, options: {} };
        const rounds = Math.max(50, Math.min(tasks, Math.floor((tasks * 4096) / size)));
        for (let index = 0; index < 50; index++) await applyTransform(transform, response(), {});
        let startedAt = performance.now();
        for (let index = 0; index < rounds; index++) await applyTransform(transform, response(), {});
        const inlineUs = ((performance.now() - startedAt) * 1000) / rounds;

        await Promise.all(Array.from({ length: threads * 2 }, () => pool.run(response(), spec, signal)));
        const elu = performance.eventLoopUtilization();
        let next = 0;
        const lane = async () => {
          while (next++ < rounds) await pool.run(response(), spec, signal);
        };
        await Promise.all(Array.from({ length: threads * 2 }, lane));
        const poolMainUs = (performance.eventLoopUtilization(elu).active * 1000) / rounds;

        startedAt = performance.now();
        for (let index = 0; index < 50; index++) await pool.run(response(), spec, signal);
        const roundTripUs = ((performance.now() - startedAt) * 1000) / 50;
        process.stdout.write(
          `${name.padEnd(10)} ${String(size).padStart(6)}   ${round(inlineUs).toString().padStart(14)}   ` +
            `${round(poolMainUs).toString().padStart(24)}   ${round(roundTripUs).toString().padStart(18)}\n`,
        );
      }
    }
  } finally {
    await pool.close();
  }
}

function bodyOf(name: 'json' | 'raw', size: number): Uint8Array {
  if (name === 'raw')
    return new TextEncoder().encode('lorem ipsum '.repeat(Math.ceil(size / 12)).slice(0, size));
  const records: unknown[] = [];
  let text = '[]';
  for (let index = 0; text.length < size; index++) {
    records.push({ id: index, name: `item ${index}`, price: index * 1.5, tags: ['a', 'b'] });
    text = JSON.stringify(records);
  }
  return new TextEncoder().encode(text);
}

if (values['inline-threshold']) await measureInlineThreshold();
else await comparePoolAndInline();
