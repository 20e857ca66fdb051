// Reading objects back line by line (sources, parts, job.json): whole characters, and a cut read that ends.
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSourceLine } from '../../functions/core/job.ts';
import { runJob } from '../../functions/core/run.ts';
import { readLines, storeLayout } from '../../functions/core/store.ts';
import { fakeEngine } from '../support/fake-engine.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';

let s3: TestS3;
beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  await s3.stop();
});

async function put(key: string, body: string | Uint8Array): Promise<void> {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
}

async function linesOf(key: string, signal?: AbortSignal): Promise<string[]> {
  const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, 'read');
  const out: string[] = [];
  for await (const line of readLines(layout, key, signal)) out.push(line);
  return out;
}

// 400 KB of 2-byte characters: the body arrives in chunks whose edges fall inside characters.
const wideBody = 'é'.repeat(200_000);
const wideLine = JSON.stringify({ url: 'http://upstream.test/post', method: 'POST', body: wideBody });

describe('characters split across chunks', () => {
  it.each([
    ['a plain object', 'wide/plain.jsonl', `${wideLine}\n`],
    ['a gzip object', 'wide/gz.jsonl.gz', gzipSync(`${wideLine}\n`)],
  ])('come back whole from %s', async (_name, key, body) => {
    await put(key, body);
    expect(await linesOf(key)).toEqual([wideLine]);
  });

  it('give a source item the id and body its line holds', async () => {
    await put('wide/source.jsonl.gz', gzipSync(`${wideLine}\n`));
    const expected = parseSourceLine(wideLine);
    if (!expected.ok) throw new Error('the fixture line does not parse');
    const seen: Array<{ id: string; body: string | undefined }> = [];
    const engine = fakeEngine((item) => {
      seen.push({ id: item.id, body: item.body });
      return 'ok';
    });
    await runJob(
      { jobId: 'wide-source', source: { s3: `s3://${s3.bucket}/wide/source.jsonl.gz` } },
      { store: { client: s3.client, bucket: s3.bucket }, startFanOut: engine.startFanOut },
    );
    expect(seen.map((item) => item.id)).toEqual([expected.item.id]);
    expect(seen[0]?.body === wideBody).toBe(true);
  });
});

describe('a read cut short', () => {
  // ~3.4 MB of random hex: gzip cannot shrink it much, so the body streams in many chunks.
  const text = `${Array.from({ length: 20_000 }, (_, i) => JSON.stringify({ id: `i${i}`, pad: randomBytes(80).toString('hex') })).join('\n')}\n`;

  it.each([
    ['a plain object', 'cut/big.jsonl', text],
    ['a gzip object', 'cut/big.jsonl.gz', gzipSync(text)],
  ])('by its signal rejects, for %s', async (_name, key, body) => {
    await put(key, body);
    const controller = new AbortController();
    let lines = 0;
    const reading = (async () => {
      const layout = storeLayout({ client: s3.client, bucket: s3.bucket }, 'read');
      for await (const _line of readLines(layout, key, controller.signal)) {
        if (++lines === 10) controller.abort(new Error('cancelled'));
      }
    })();
    // Only a failing read needs this: the old gzip path never settled.
    const hung = new Promise<string>((resolve) => setTimeout(() => resolve('never settled'), 10_000).unref());
    const result = await Promise.race([
      reading.then(
        () => 'ended',
        () => 'rejected',
      ),
      hung,
    ]);
    expect(result).toBe('rejected');
  });
});
