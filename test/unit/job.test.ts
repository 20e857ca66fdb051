// The job schema: validation that names the path, URL normalization, stable ids, deduplication, source lines.
import { describe, expect, it } from 'vitest';
import { JobValidationError } from '../../functions/core/errors.ts';
import {
  formatPath,
  itemId,
  normalizeUrl,
  parseItems,
  parseJob,
  parseOptions,
  parseSourceLine,
  toJobForm,
} from '../../functions/core/job.ts';

function rejection(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(JobValidationError);
    return (error as Error).message;
  }
  throw new Error('expected the job to be rejected');
}

describe('normalizeUrl', () => {
  it.each([
    ['https://API.Example.com:443/a?b=1#frag', 'https://api.example.com/a?b=1'],
    ['http://example.com:80/x', 'http://example.com/x'],
    ['http://example.com:8080/x', 'http://example.com:8080/x'],
    ['https://example.com', 'https://example.com/'],
    // WHATWG gives a bare "#" an empty hash, yet keeps it in href.
    ['https://example.com/x#', 'https://example.com/x'],
  ])('normalizes %s to %s', (raw, expected) => {
    expect(normalizeUrl(raw)).toEqual({ ok: true, url: expected });
  });

  it.each([
    ['not a url', 'invalid URL'],
    ['ftp://example.com/x', 'scheme "ftp"'],
    ['file:///etc/passwd', 'scheme "file"'],
    ['https://user:pass@example.com/', 'credentials'],
    ['https://example.com/a\nb', 'control characters'],
    [`https://example.com/${'a'.repeat(2_100)}`, 'longer than 2048'],
  ])('refuses %s', (raw, message) => {
    const checked = normalizeUrl(raw);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.message).toContain(message);
  });
});

describe('parseItems', () => {
  it('assigns the same ids to the same items on every run', () => {
    const input = ['https://example.com/1', { url: 'https://example.com/2', method: 'post', body: '{}' }];
    const first = parseItems(input).items.map((item) => item.id);
    const second = parseItems(input).items.map((item) => item.id);
    expect(first).toEqual(second);
    expect(first[0]).toMatch(/^[0-9a-f]{16}$/);
    expect(first[0]).toBe(itemId('GET', 'https://example.com/1', undefined));
  });

  it('derives the id from the normalized URL, so spellings of one URL are one item', () => {
    const { items, duplicates } = parseItems([
      'https://EXAMPLE.com/a',
      'https://example.com:443/a#x',
      'https://example.com/a',
      'https://example.com/a',
    ]);
    expect(items).toHaveLength(1);
    expect(duplicates).toBe(3);
  });

  it('keeps a given id and defaults the method to GET', () => {
    const { items } = parseItems([{ id: 'item-2', url: 'https://example.com/2' }]);
    expect(items[0]).toEqual({ id: 'item-2', url: 'https://example.com/2', method: 'GET', headers: {} });
  });

  it('lower-cases header names', () => {
    const { items } = parseItems([{ url: 'https://example.com/', headers: { Accept: 'application/json' } }]);
    expect(items[0]?.headers).toEqual({ accept: 'application/json' });
  });

  it.each<[string, unknown[], string]>([
    ['an invalid URL', ['https://ok.example/', 'nope'], 'items[1].url: invalid URL'],
    ['another scheme', [{ url: 'gopher://x/' }], 'items[0].url: invalid URL: scheme "gopher"'],
    ['an unknown key', [{ url: 'https://x.example/', colour: 'red' }], 'items[0]: unknown key colour'],
    ['a bad method', [{ url: 'https://x.example/', method: 'BREW' }], 'items[0].method: must be one of'],
    ['a body on GET', [{ url: 'https://x.example/', body: 'x' }], 'items[0].body: not allowed with GET'],
    ['a forbidden header', [{ url: 'https://x.example/', headers: { Host: 'y' } }], 'items[0].headers.Host'],
    ['a bad id', [{ id: '-x', url: 'https://x.example/' }], 'items[0].id: must match'],
    ['no items', [], 'items: must hold at least one item'],
  ])('rejects %s with the path in the message', (_name, input, message) => {
    expect(rejection(() => parseItems(input))).toContain(message);
  });

  it('refuses more items than the inline limit', () => {
    expect(
      rejection(() => parseItems(['https://x.example/', 'https://y.example/'], { maxItems: 1 })),
    ).toContain('at most 1 inline');
  });
});

describe('parseOptions', () => {
  it('fills every default and derives perHost from concurrency', () => {
    const options = parseOptions({ concurrency: 4 });
    expect(options.perHost).toBe(4);
    expect(options.timeouts).toEqual({
      connectMs: 5_000,
      headersMs: 10_000,
      bodyMs: 10_000,
      totalMs: 30_000,
    });
    expect(options.retries).toEqual({ maxAttempts: 3, baseMs: 200, maxMs: 20_000 });
    expect(options.mode).toBe('settle');
    expect(options.transform).toEqual({ name: 'auto', options: {} });
  });

  it.each<[string, unknown, string]>([
    ['concurrency too high', { concurrency: 2_000 }, 'options.concurrency: must be <= 1024'],
    [
      'perHost above concurrency',
      { concurrency: 2, perHost: 3 },
      'options.perHost: must be <= concurrency (2)',
    ],
    ['an unknown option', { colour: 1 }, 'options: unknown key colour'],
    ['an unknown timeout', { timeouts: { idleMs: 1 } }, 'options.timeouts: unknown key idleMs'],
    ['a zero timeout', { timeouts: { totalMs: 0 } }, 'options.timeouts.totalMs: must be >= 1'],
    ['too many attempts', { retries: { maxAttempts: 11 } }, 'options.retries.maxAttempts: must be <= 10'],
    ['a bad mode', { mode: 'yolo' }, 'options.mode: must be "settle" or "fail-fast"'],
    ['a ratio above 1', { maxFailureRatio: 1.5 }, 'options.maxFailureRatio: must be <= 1'],
  ])('rejects %s naming the path', (_name, input, message) => {
    expect(rejection(() => parseOptions(input))).toContain(message);
  });
});

describe('parseJob', () => {
  it('derives a stable job id from items and options', () => {
    const job = { items: ['https://example.com/1'], options: { concurrency: 2 } };
    expect(parseJob(job).jobId).toBe(parseJob(job).jobId);
    expect(parseJob(job).jobId).toMatch(/^job-[0-9a-f]{16}$/);
    expect(parseJob({ ...job, options: { concurrency: 3 } }).jobId).not.toBe(parseJob(job).jobId);
  });

  it('derives the job id from whole items: another header or id is another job, header order is not', () => {
    const withHeaders = (headers: Record<string, string>, id?: string) =>
      parseJob({ items: [{ url: 'https://example.com/1', headers, ...(id ? { id } : {}) }] }).jobId;
    const a = withHeaders({ authorization: 'Bearer A', accept: 'application/json' });
    expect(withHeaders({ authorization: 'Bearer B', accept: 'application/json' })).not.toBe(a);
    expect(withHeaders({ accept: 'application/json', authorization: 'Bearer A' })).toBe(a);
    const byId = (url: string) => parseJob({ items: [{ id: 'x', url }] }).jobId;
    expect(byId('https://example.com/a')).not.toBe(byId('https://example.com/b'));
  });

  it('reads an S3 source without items', () => {
    const job = parseJob({ jobId: 'nightly', source: { s3: 's3://my-bucket/path/items.jsonl' } });
    expect(job.source).toEqual({
      uri: 's3://my-bucket/path/items.jsonl',
      bucket: 'my-bucket',
      key: 'path/items.jsonl',
    });
    expect(job.items).toEqual([]);
  });

  it.each<[string, unknown, string]>([
    ['not an object', 42, 'a job must be a JSON object'],
    ['neither items nor source', {}, 'items: required (or give source)'],
    [
      'both items and source',
      { items: ['https://x.example/'], source: { s3: 's3://bkt/k' } },
      'source: give items or source',
    ],
    ['a bad item', { items: ['https://x.example/', 'https://y.example/', 'x'] }, 'items[2].url: invalid URL'],
    [
      'a bad option',
      { items: ['https://x.example/'], options: { concurrency: 0 } },
      'options.concurrency: must be >= 1',
    ],
    ['a bad job id', { jobId: '../etc', items: ['https://x.example/'] }, 'jobId: must match'],
  ])('rejects %s naming the path', (_name, input, message) => {
    expect(rejection(() => parseJob(input))).toContain(message);
  });
});

describe('parseSourceLine', () => {
  it('reads a bare URL and a JSON item', () => {
    expect(parseSourceLine(' https://example.com/a ')).toMatchObject({
      ok: true,
      item: { url: 'https://example.com/a' },
    });
    expect(parseSourceLine('{"id":"x1","url":"https://example.com/b","method":"DELETE"}')).toMatchObject({
      ok: true,
      item: { id: 'x1', method: 'DELETE' },
    });
  });

  it('reads a JSONL line that is a bare URL as a JSON string, as the same item as the unquoted line', () => {
    const quoted = parseSourceLine('"https://example.com/a"');
    expect(quoted).toEqual(parseSourceLine('https://example.com/a'));
    expect(quoted.ok).toBe(true);
  });

  it('fails a bad line alone with INVALID_URL and a stable id', () => {
    const first = parseSourceLine('ftp://example.com/file');
    const second = parseSourceLine('ftp://example.com/file');
    expect(first).toMatchObject({ ok: false, url: 'ftp://example.com/file', error: { code: 'INVALID_URL' } });
    expect(first.ok === false && second.ok === false && first.id === second.id).toBe(true);
  });

  it('keeps a valid given id on a bad line', () => {
    expect(parseSourceLine('{"id":"mine","url":"nope"}')).toMatchObject({ ok: false, id: 'mine' });
  });
});

describe('toJobForm and formatPath', () => {
  it('writes an item back in job form without defaults', () => {
    const { items } = parseItems([
      { url: 'https://example.com/', method: 'POST', body: 'x', retryUnsafe: true },
    ]);
    const item = items[0];
    expect(item && toJobForm(item)).toEqual({
      id: item?.id,
      url: 'https://example.com/',
      method: 'POST',
      body: 'x',
      retryUnsafe: true,
    });
  });

  it('names the problems of the items and of the options in one rejection', () => {
    const message = rejection(() =>
      parseJob({ items: ['https://example.com/a', 'not a url'], options: { concurrency: 5_000 } }),
    );
    expect(message).toContain('options.concurrency');
    expect(message).toContain('items[1].url: invalid URL');
  });

  it('formats paths as items[3].url', () => {
    expect(formatPath(['items', 3, 'url'])).toBe('items[3].url');
    expect(formatPath(['options', 'timeouts', 'totalMs'])).toBe('options.timeouts.totalMs');
  });
});
