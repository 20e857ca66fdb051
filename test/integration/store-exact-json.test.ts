// A whole JSON body lands in the results as the origin wrote it: no precision lost to a parse and
// re-serialization, and on one line even when the origin pretty-printed it. Projections are serialized.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redriveJob } from '../../functions/core/redrive.ts';
import { runJob } from '../../functions/core/run.ts';
import { startTestS3, type TestS3 } from '../support/s3.ts';

// 2^64 - 1 and 2^53 + 1: JSON.parse rounds both; 1.10 would come back as 1.1.
const BODY =
  '{\r\n  "id": 18446744073709551615,\n  "next": 9007199254740993,\n  "price": 1.10,\n  "tags": ["a", "b"]\n}';

let s3: TestS3;
let origin: Server;
let base: string;

beforeAll(async () => {
  s3 = await startTestS3();
  let flakyHits = 0;
  origin = createServer((request, response) => {
    // /flaky fails its first hit: a job's first run records an error, its redrive the value.
    if (request.url?.startsWith('/flaky') && ++flakyHits === 1) {
      response.statusCode = 500;
      response.end();
      return;
    }
    response.setHeader('content-type', request.url?.startsWith('/text') ? 'text/plain' : 'application/json');
    response.end(BODY);
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(origin.address() as AddressInfo).port}/`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => origin.close(() => resolve()));
  await s3.stop();
});

const runtime = () => ({ store: { client: s3.client, bucket: s3.bucket }, allow: ['127.0.0.1'] });

async function resultLines(
  jobId: string,
  items: string[],
  options: Record<string, unknown> = {},
): Promise<string[]> {
  const manifest = await runJob({ jobId, items, options }, runtime());
  expect(manifest.counts.succeeded).toBe(items.length);
  const lines: string[] = [];
  for (const key of manifest.results) lines.push(...(await s3.getText(key)).split('\n').filter(Boolean));
  return lines;
}

describe('exact JSON in the results', () => {
  it('writes a whole JSON body (json and auto transforms) exactly, on one line', async () => {
    const whole = await resultLines('exact-json-whole', [`${base}json`], { transform: { name: 'json' } });
    const auto = await resultLines('exact-json-auto', [`${base}json`, `${base}text`]);
    for (const line of [...whole, ...auto]) {
      expect(line).toContain('"id": 18446744073709551615');
      expect(line).toContain('"next": 9007199254740993');
      expect(line).toContain('"price": 1.10');
      expect(JSON.parse(line).value.tags).toEqual(['a', 'b']);
    }
    expect(auto).toHaveLength(2);
  });

  it('writes the exact text on a redrive too', async () => {
    const first = await runJob(
      { jobId: 'exact-json-redrive', items: [`${base}flaky`], options: { retries: { maxAttempts: 1 } } },
      runtime(),
    );
    expect(first.counts.failed).toBe(1);
    const redriven = await redriveJob('exact-json-redrive', {}, runtime());
    expect(redriven.counts.succeeded).toBe(1);
    const [line] = (await s3.getText(redriven.results.at(-1) ?? '')).split('\n');
    expect(line).toContain('"id": 18446744073709551615');
    expect(line).toContain('"price": 1.10');
  });

  it('serializes a projection (select) from the parsed value', async () => {
    const [line] = await resultLines('exact-json-select', [`${base}json`], {
      transform: { name: 'json', options: { select: ['/tags', '/price'] } },
    });
    expect(JSON.parse(line ?? '{}').value).toEqual({ '/tags': ['a', 'b'], '/price': 1.1 });
    expect(line).not.toContain('1.10');
  });
});
