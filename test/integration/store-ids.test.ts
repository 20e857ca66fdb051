// The compact finished-id set: exact membership for packed hex ids and for ids a job gives.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdSet } from '../../functions/core/finished-ids.ts';

const hexId = (index: number): string =>
  createHash('sha256').update(String(index)).digest('hex').slice(0, 16);

describe('IdSet', () => {
  it('holds a million 16-hex ids exactly, in under 20 MiB of typed arrays', () => {
    const ids = new IdSet();
    for (let index = 0; index < 1_000_000; index++) expect(ids.add(hexId(index))).toBe(true);
    expect(ids.size).toBe(1_000_000);
    expect(ids.add(hexId(123_456))).toBe(false);
    for (let index = 0; index < 1_000_000; index += 997) expect(ids.has(hexId(index))).toBe(true);
    for (let index = 1_000_000; index < 1_010_000; index++) expect(ids.has(hexId(index))).toBe(false);
    // 2^21 slots x (4 + 4 + 1) bytes = 18.9 MB (measured: 18.0 MiB of heap + array buffers for 1M ids).
    expect(ids.packedBytes).toBeLessThanOrEqual(20 * 1024 * 1024);
  });

  it('keeps other ids exactly, including ones that look almost hex', () => {
    const ids = new IdSet();
    for (const id of ['item-2', 'ABCDEF0123456789', '0000000000000000', 'abcdef012345678', 'a.b_c-d']) {
      expect(ids.add(id)).toBe(true);
    }
    expect(ids.has('0000000000000000')).toBe(true);
    expect(ids.has('abcdef0123456789')).toBe(false);
    expect(ids.has('item-2')).toBe(true);
    expect(ids.has('item-3')).toBe(false);
    expect(ids.size).toBe(5);
  });
});
