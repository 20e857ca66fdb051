// fanout as a contender of the shared peer bench: the library's fanOut with its limits, timeouts, retries and JSON transform on.
//
//   node benchmarks/fanout-contender.mjs <urlBase> <N> <C> [scenario]     (the bench contract)
//
// The harness runs contenders from its own copy of the bench (cwd = that copy), so the engine is
// imported by absolute path: FANOUT_ROOT (set by benchmarks/engine.ts) or this file's repository.
// Outcomes are streamed and checked one by one, never kept: that is how fanout runs a real job.
//
// Named `fanout-noguard*.mjs` (benchmarks/engine.ts makes that copy), it runs without the destination
// guard through the engine's benchmark-only seam, so the same run shows what the guard costs (S3-guard).
// Otherwise the guard is on, with loopback allowed as an operator would (`--allow 127.0.0.1`).
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = process.env.FANOUT_ROOT ?? fileURLToPath(new URL('..', import.meta.url));
const contractCandidates = [
  process.env.BENCH_CONTRACT,
  join(process.cwd(), 'lib', 'contract.mjs'),
  '/work/shared/bench/lib/contract.mjs',
].filter(Boolean);
const contractPath = contractCandidates.find((path) => existsSync(path));
if (!contractPath) throw new Error('cannot find the bench contract (lib/contract.mjs); set BENCH_CONTRACT');
const { readArgs, startMeter, transform } = await import(pathToFileURL(contractPath).href);
const { fanOut } = await import(pathToFileURL(join(root, 'functions', 'core', 'engine.ts')).href);

const args = readArgs(import.meta.url);
const options = {
  concurrency: args.C,
  perHost: args.C,
  timeouts: { connectMs: 5_000, headersMs: 10_000, bodyMs: 10_000, totalMs: 30_000 },
  retries: { maxAttempts: 3, baseMs: 200, maxMs: 20_000 },
  maxBodyBytes: 10 * 1024 * 1024,
  maxRedirects: 5,
  transform: { name: 'json' },
};
const guarded = !basename(fileURLToPath(import.meta.url)).startsWith('fanout-noguard');
const runtime = guarded ? { allow: ['127.0.0.1'] } : { benchmarkWithoutGuard: true };
const meter = startMeter(guarded ? 'fanout' : 'fanout-noguard', args);

let ok = 0;
let failed = 0;
const errors = {};
for await (const outcome of fanOut(args.urls, options, runtime)) {
  if (!outcome.ok) {
    failed++;
    const code = outcome.pending ? 'PENDING' : outcome.error.code;
    errors[code] = (errors[code] ?? 0) + 1;
    continue;
  }
  // The contract's check, per outcome: item i must come back processed with id i.
  const result = transform(outcome.value);
  const index = Number(outcome.url.slice(outcome.url.lastIndexOf('/') + 1));
  if (result.processed === true && result.id === index) ok++;
  else failed++;
}
meter.report({ ok, failed, ...(failed > 0 ? { errors: JSON.stringify(errors) } : {}) });
