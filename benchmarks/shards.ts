// Shard benchmark: one job of N items at a fixed upstream latency, run in one process and as the map plan in K processes.
//
//   npm run bench:shards                               20,000 items, 50 ms latency, K = 1 and 4
//   npm run bench:shards -- --items 2000 --shards 1,2  a quick check
//
// The items spread over 16 loopback origins (one upstream, 16 ports), so the per-host share each batch
// gets (perHost / K) does not cap the run and what K changes is the number of runner processes, each with
// the job's own `concurrency`. "identical" compares each sharded run's result and error id sets and
// counts with the single-process run of the same source.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { runJob } from '../functions/core/run.ts';
import type { Manifest } from '../functions/core/types.ts';
import { startEmbeddedS3 } from '../functions/local/embedded-s3.ts';
import { runSharded } from '../functions/local/shards.ts';
import { getObjectText } from '../test/support/s3.ts';
import { startUpstream } from '../test/support/upstream.ts';

const BUCKET = 'fanout-bench';
const ORIGINS = 16;
const OPTIONS = { concurrency: 32, perHost: 8, retries: { maxAttempts: 1 } };

const { values } = parseArgs({
  options: {
    items: { type: 'string', default: '20000' },
    latency: { type: 'string', default: '50' },
    shards: { type: 'string', default: '1,4' },
  },
});
const items = Number(values.items);
const latencyMs = Number(values.latency);
const shardCounts = values.shards.split(',').map(Number);

const dir = mkdtempSync(join(tmpdir(), 'fanout-bench-shards-'));
const [s3, upstream] = await Promise.all([
  startEmbeddedS3({ dir, buckets: [BUCKET] }),
  startUpstream({ origins: ORIGINS }),
]);
const runtime = () => ({ store: { client: s3.client, bucket: BUCKET, prefix: 'jobs' }, allow: ['private'] });

interface Row {
  scenario: string;
  k: number;
  wall_ms: number;
  items: number;
  identical: boolean;
}

try {
  const lines = Array.from(
    { length: items },
    (_, i) => `${upstream.originList[i % ORIGINS]}/item/${i}?bytes=256&latency=${latencyMs}`,
  );
  await s3.client.send(
    new PutObjectCommand({ Bucket: BUCKET, Key: 'sources/bench.txt', Body: `${lines.join('\n')}\n` }),
  );
  const source = { s3: `s3://${BUCKET}/sources/bench.txt` };

  let started = performance.now();
  const single = await runJob({ jobId: 'single', source, options: OPTIONS }, runtime());
  const singleMs = performance.now() - started;
  const reference = await fingerprint(single);
  const rows: Row[] = [];
  for (const k of shardCounts) {
    started = performance.now();
    const manifest = await runSharded({
      job: { jobId: `k${k}`, source, options: OPTIONS },
      shards: k,
      runtime: runtime(),
    });
    const wallMs = performance.now() - started;
    rows.push({
      scenario: 'shards',
      k,
      wall_ms: Math.round(wallMs),
      items: manifest.counts.total,
      identical: (await fingerprint(manifest)) === reference,
    });
  }

  const pad = (text: string | number, width: number) => String(text).padStart(width);
  process.stdout.write(
    `${items} items, ${latencyMs} ms latency, ${ORIGINS} origins, concurrency ${OPTIONS.concurrency} per process\n`,
  );
  process.stdout.write(
    `${'run'.padEnd(16)}${pad('wall s', 9)}${pad('items/s', 10)}${pad('identical', 11)}\n`,
  );
  process.stdout.write(
    `${'single process'.padEnd(16)}${pad((singleMs / 1000).toFixed(1), 9)}${pad(Math.round((items * 1000) / singleMs), 10)}${pad('-', 11)}\n`,
  );
  for (const row of rows) {
    process.stdout.write(
      `${`K=${row.k} shards`.padEnd(16)}${pad((row.wall_ms / 1000).toFixed(1), 9)}${pad(Math.round((row.items * 1000) / row.wall_ms), 10)}${pad(String(row.identical), 11)}\n`,
    );
  }
  for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`);
} finally {
  await Promise.all([s3.stop(), upstream.close()]);
  rmSync(dir, { recursive: true, force: true });
}

/** Counts plus the sorted result and error ids: equal fingerprints mean the same outcomes for the same items. */
async function fingerprint(manifest: Manifest): Promise<string> {
  const ids = async (keys: string[]) => {
    const out: string[] = [];
    for (const key of keys) {
      for (const line of (await getObjectText(s3.client, BUCKET, key)).split('\n'))
        if (line) out.push((JSON.parse(line) as { id: string }).id);
    }
    return out.sort();
  };
  const { total, succeeded, failed, pending, duplicates } = manifest.counts;
  return JSON.stringify({
    counts: [total, succeeded, failed, pending, duplicates],
    results: await ids(manifest.results),
    errors: await ids(manifest.errors),
  });
}
