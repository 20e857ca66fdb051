// Store benchmark: peak RSS and wall per job size, each in a fresh child; throughput with results written vs discarded.
//
//   npm run bench:store                 sizes 1,000 / 10,000 / 100,000 (1 KB bodies), then the write cost at 100,000
//   npm run bench:store -- --sizes 1000,5000 --cost 5000    a quick check
//
// The parent runs the local upstream and the embedded S3, and writes each job's items to S3 as a source
// (one URL a line), so a child holds no item list: what grows with the job is the store's doing.
import { spawn } from 'node:child_process';
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

interface ChildArgs {
  endpoint: string;
  sourceKey: string;
  jobId: string;
  mode: 'written' | 'discarded';
}

interface ChildResult {
  items: number;
  wall_ms: number;
  peak_rss_mb: number;
}

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
  const started = performance.now();
  let items = 0;
  if (args.mode === 'written') {
    const manifest = await runJob(
      { jobId: args.jobId, source: { s3: `s3://${BUCKET}/${args.sourceKey}` }, options: OPTIONS },
      { store: { client, bucket: BUCKET }, allow: ['private'] },
    );
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
  const result: ChildResult = {
    items,
    wall_ms: Math.round(performance.now() - started),
    // maxRSS is in KiB: the process's peak, not a sample.
    peak_rss_mb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  client.destroy();
}

function runChild(args: ChildArgs): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), 'child', JSON.stringify(args)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
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

function flag(name: string): string | undefined {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

async function main(): Promise<void> {
  const sizes = (flag('--sizes') ?? '1000,10000,100000').split(',').map(Number);
  const costItems = Number(flag('--cost') ?? sizes[sizes.length - 1] ?? 100_000);
  const dir = mkdtempSync(join(tmpdir(), 'fanout-bench-s3-'));
  const s3 = await startEmbeddedS3({ dir, buckets: [BUCKET] });
  const upstream = await startUpstream();
  let counter = 0;
  const prepare = async (items: number): Promise<{ sourceKey: string; jobId: string }> => {
    const id = `bench-${items}-${++counter}`;
    const sourceKey = `sources/${id}.txt`;
    const lines = Array.from({ length: items }, (_, index) => `${upstream.url}item/${index}?r=${counter}`);
    await s3.client.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: sourceKey, Body: `${lines.join('\n')}\n` }),
    );
    return { sourceKey, jobId: id };
  };
  try {
    for (const items of sizes) {
      const result = await runChild({ endpoint: s3.endpoint, mode: 'written', ...(await prepare(items)) });
      process.stderr.write(
        `store: ${items} items in ${result.wall_ms} ms, peak RSS ${result.peak_rss_mb} MB\n`,
      );
      process.stdout.write(
        `${JSON.stringify({ scenario: 'store', items, wall_ms: result.wall_ms, peak_rss_mb: result.peak_rss_mb })}\n`,
      );
    }
    const written = await runChild({ endpoint: s3.endpoint, mode: 'written', ...(await prepare(costItems)) });
    const discarded = await runChild({
      endpoint: s3.endpoint,
      mode: 'discarded',
      ...(await prepare(costItems)),
    });
    const rpsWritten = Math.round((costItems / written.wall_ms) * 1000);
    const rpsDiscarded = Math.round((costItems / discarded.wall_ms) * 1000);
    const cost = Math.round((1 - rpsWritten / rpsDiscarded) * 1000) / 10;
    process.stderr.write(
      `store-cost: ${costItems} items: ${rpsWritten} rps written, ${rpsDiscarded} rps discarded (${cost}% cost); peak RSS ${written.peak_rss_mb} MB vs ${discarded.peak_rss_mb} MB\n`,
    );
    process.stdout.write(
      `${JSON.stringify({ scenario: 'store-cost', items: costItems, rps_written: rpsWritten, rps_discarded: rpsDiscarded })}\n`,
    );
  } finally {
    await upstream.close();
    await s3.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'child') await child(JSON.parse(process.argv[3] ?? '{}') as ChildArgs);
else await main();
