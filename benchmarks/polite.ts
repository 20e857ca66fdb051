// npm run bench:polite: one host that refuses above K in flight; a fixed per-host limit against the adaptive one.
//
//   node benchmarks/polite.ts [--items 2000] [--knee 10] [--latency 20] [--per-host 50] [--retry-after S]
//
// The host (test/support/throttling-upstream.ts, 127.0.0.1) answers 429 at once when K requests are
// already in flight, else 200 after `latency` ms: its ideal wall time is N / K x latency (4.0 s by
// default). Both runs use concurrency = perHost = 50 and 10 attempts per item (so the fixed run ends
// too); only `adaptive` differs. No Retry-After by default: a concurrency cap has no time to name, and a
// Retry-After of whole seconds would make each refusal a host-wide pause (pass --retry-after to see it).
// Prints a table, then one JSON line per run.
import { parseArgs } from 'node:util';
import { startFanOut } from '../functions/core/engine.ts';
import { parseItems, parseOptions } from '../functions/core/job.ts';
import { startThrottlingUpstream } from '../test/support/throttling-upstream.ts';

const { values } = parseArgs({
  options: {
    items: { type: 'string', default: '2000' },
    knee: { type: 'string', default: '10' },
    latency: { type: 'string', default: '20' },
    'per-host': { type: 'string', default: '50' },
    'retry-after': { type: 'string' },
  },
});
const items = Number(values.items);
const knee = Number(values.knee);
const latencyMs = Number(values.latency);
const perHost = Number(values['per-host']);
const idealMs = (items / knee) * latencyMs;

const upstream = await startThrottlingUpstream({
  maxInFlight: knee,
  latencyMs,
  retryAfter: values['retry-after'] ?? null,
});
const origin = upstream.originList[0] ?? '';
const parsed = parseItems(Array.from({ length: items }, (_, index) => `${origin}/item/${index}`)).items;

interface Figures {
  scenario: 'polite';
  mode: 'fixed' | 'adaptive';
  wall_ms: number;
  requests: number;
  throttled: number;
  ratio: number;
}

async function runOnce(
  mode: 'fixed' | 'adaptive',
): Promise<Figures & { failed: number; finalLimit: number }> {
  upstream.reset();
  const options = parseOptions({
    concurrency: perHost,
    perHost,
    adaptive: mode === 'adaptive',
    retries: { maxAttempts: 10 },
  });
  const started = performance.now();
  const run = startFanOut(parsed, options, { allow: ['127.0.0.1'] });
  let failed = 0;
  for await (const outcome of run.outcomes) if (!outcome.ok) failed++;
  const wallMs = performance.now() - started;
  const counters = upstream.counters(origin);
  return {
    scenario: 'polite',
    mode,
    wall_ms: Math.round(wallMs),
    requests: counters.requests,
    throttled: counters.throttled,
    ratio: Math.round((wallMs / idealMs) * 1000) / 1000,
    failed,
    finalLimit: run.hostStats()[origin]?.finalLimit ?? 0,
  };
}

try {
  process.stdout.write(
    `bench:polite: ${items} items, one host refusing above ${knee} in flight, ${latencyMs} ms latency, ` +
      `perHost ${perHost}, Retry-After ${values['retry-after'] ?? 'none'}; ideal ${(idealMs / 1000).toFixed(2)} s\n`,
  );
  const runs = [await runOnce('fixed'), await runOnce('adaptive')];
  process.stdout.write('mode      wall_s  requests  429s   429%   ratio  failed  finalLimit\n');
  for (const run of runs) {
    const share = (100 * run.throttled) / run.requests;
    process.stdout.write(
      `${run.mode.padEnd(8)}  ${(run.wall_ms / 1000).toFixed(2).padStart(6)}  ${String(run.requests).padStart(8)}  ` +
        `${String(run.throttled).padStart(4)}  ${share.toFixed(2).padStart(5)}  ${run.ratio.toFixed(3).padStart(6)}  ` +
        `${String(run.failed).padStart(6)}  ${String(run.finalLimit).padStart(10)}\n`,
    );
  }
  for (const { failed: _failed, finalLimit: _limit, ...figures } of runs) {
    process.stdout.write(`${JSON.stringify(figures)}\n`);
  }
} finally {
  await upstream.close();
}
