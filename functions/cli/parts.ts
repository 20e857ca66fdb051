// Reading the first lines of a job's listed parts (JSONL, gzipped or not) without downloading whole parts.
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { StoreConfig } from '../core/index.ts';

/** Parsed JSON lines from `keys` in order, at most `limit` of them; a part is streamed and left early. */
export async function readFirstLines(
  store: Pick<StoreConfig, 'client' | 'bucket'>,
  keys: readonly string[],
  limit: number,
): Promise<unknown[]> {
  const lines: unknown[] = [];
  for (const key of keys) {
    if (lines.length >= limit) break;
    const reply = await store.client.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    if (!(reply.Body instanceof Readable)) continue;
    const body: Readable = reply.Body;
    const text = key.endsWith('.gz') ? body.pipe(createGunzip()) : body;
    const reader = createInterface({ input: text, crlfDelay: Number.POSITIVE_INFINITY });
    try {
      for await (const line of reader) {
        if (line.trim() === '') continue;
        lines.push(parseLine(line));
        if (lines.length >= limit) break;
      }
    } finally {
      reader.close();
      // Leaving a part early: drop the connection rather than read the rest of a large object.
      body.destroy();
    }
  }
  return lines;
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return { unparsable: line.slice(0, 200) };
  }
}
