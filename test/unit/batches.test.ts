// Batch ids and host shares: the pure parts of the Distributed Map split.
import { describe, expect, it } from 'vitest';
import { batchIdOf, shareOf } from '../../functions/core/batches.ts';
import { parseOptions } from '../../functions/core/job.ts';

describe('batchIdOf', () => {
  it.each([
    [0, 1000, '00000'],
    [1000, 1000, '00001'],
    [999_000, 1000, '00999'],
    [2500, 500, '00005'],
    [250, 500, '00000-00250'],
    [1250, 500, '00002-00250'],
  ])('names the batch starting at item %i (batch size %i) %s', (first, size, id) => {
    expect(batchIdOf(first, size)).toBe(id);
  });

  it('sorts batch ids in source order, early-cut batches included', () => {
    const firsts = [0, 300, 500, 800, 1000, 1300];
    const ids = firsts.map((first) => batchIdOf(first, 500));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('shareOf', () => {
  const options = parseOptions({ concurrency: 64, perHost: 16, perHostRate: 40 });

  it('divides perHost and perHostRate by the batches that run at once', () => {
    expect(shareOf(options, 4)).toMatchObject({ perHost: 4, perHostRate: 10, concurrency: 64 });
  });

  it('keeps one connection per host and batch when the share exceeds perHost', () => {
    expect(shareOf(options, 40)).toMatchObject({ perHost: 1, perHostRate: 1 });
  });

  it('leaves a lone batch its whole budget, and a null rate null', () => {
    expect(shareOf(options, 1)).toBe(options);
    expect(shareOf(parseOptions({}), 2).perHostRate).toBeNull();
  });
});
