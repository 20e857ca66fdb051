// Redirects followed by the engine (hop limit, schemes, 303), body limits after decompression, and transforms.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fanOut } from '../../functions/core/engine.ts';
import type { ErrorCode } from '../../functions/core/errors.ts';
import { createTransformPool } from '../../functions/core/pool.ts';
import type { FetchedResponse, Outcome, Runtime, TransformRunner } from '../../functions/core/types.ts';
import { recordingClock } from '../support/clock.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let upstream: Upstream;

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});
beforeEach(() => upstream.reset());

async function one(
  item: unknown,
  options: Record<string, unknown> = {},
  runtime: Runtime = {},
): Promise<Outcome> {
  const all: Outcome[] = [];
  for await (const outcome of fanOut([item], options, {
    allow: ['127.0.0.1'],
    clock: recordingClock(),
    ...runtime,
  })) {
    all.push(outcome);
  }
  expect(all).toHaveLength(1);
  return all[0] as Outcome;
}

describe('redirects', () => {
  it('follows a chain of relative redirects within the hop limit, as one attempt', async () => {
    const outcome = await one(`${upstream.url}chain?redirect=3`, { maxRedirects: 3 });
    expect(outcome).toMatchObject({
      ok: true,
      status: 200,
      attempts: 1,
      value: { ok: true, path: '/chain' },
    });
    expect(upstream.hits('/chain')).toBe(4);
  });

  it('follows absolute redirects', async () => {
    expect(await one(`${upstream.url}abs?redirect=2&absolute=1`)).toMatchObject({ ok: true });
  });

  it('fails TOO_MANY_REDIRECTS past maxRedirects', async () => {
    const outcome = await one(`${upstream.url}chain?redirect=3`, { maxRedirects: 2 });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'TOO_MANY_REDIRECTS' } });
    expect(upstream.hits('/chain')).toBe(3);
  });

  it('stops a redirect loop', async () => {
    const outcome = await one(`${upstream.url}loop?loop=1`);
    expect(outcome).toMatchObject({ ok: false, error: { code: 'TOO_MANY_REDIRECTS' } });
    expect(upstream.hits('/loop')).toBe(6);
  });

  it('treats 0 maxRedirects as no redirect at all', async () => {
    const outcome = await one(`${upstream.url}chain?redirect=1`, { maxRedirects: 0 });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'TOO_MANY_REDIRECTS' } });
  });

  it.each<[string, ErrorCode]>([
    ['file:///etc/passwd', 'BLOCKED_DESTINATION'],
    ['ftp://example.com/x', 'BLOCKED_DESTINATION'],
    ['http://user:secret@127.0.0.1/', 'INVALID_URL'],
  ])('refuses a redirect to %s with %s', async (location, code) => {
    const outcome = await one(`${upstream.url}away?location=${encodeURIComponent(location)}`);
    expect(outcome).toMatchObject({ ok: false, error: { code } });
  });

  it('checks the policy on every hop: a redirect to a forbidden host is blocked without connecting', async () => {
    const outcome = await one(`${upstream.url}away?location=${encodeURIComponent('http://10.0.0.1/admin')}`);
    expect(outcome).toMatchObject({ ok: false, error: { code: 'BLOCKED_DESTINATION' } });
  });

  it('turns a POST into a GET after a 303', async () => {
    const outcome = await one({
      url: `${upstream.url}form?location=${encodeURIComponent('/echo')}&redirectStatus=303`,
      method: 'POST',
      body: 'a=1',
    });
    expect(outcome).toMatchObject({ ok: true, value: { method: 'GET', body: '' } });
  });

  it('keeps the method and body through a 307', async () => {
    const outcome = await one({
      url: `${upstream.url}keep?location=${encodeURIComponent('/echo')}&redirectStatus=307`,
      method: 'PUT',
      body: 'payload',
    });
    expect(outcome).toMatchObject({ ok: true, value: { method: 'PUT', body: 'payload' } });
  });
});

describe('body limits and decoding', () => {
  it.each<[string, string, number, ErrorCode]>([
    ['a declared length over the limit', 'big?size=200000', 100_000, 'BODY_TOO_LARGE'],
    ['a chunked body over the limit', 'chunky?size=200000&chunked=1', 100_000, 'BODY_TOO_LARGE'],
    ['a gzip bomb', 'bomb?bomb=1000000000', 1_000_000, 'BODY_TOO_LARGE'],
    ['a brotli bomb', 'bomb-br?bomb=1000000000&encoding=br', 1_000_000, 'BODY_TOO_LARGE'],
    ['broken gzip', 'bad?encoding=bad', 1_000_000, 'BAD_CONTENT'],
  ])('%s fails with %s', async (_name, path, maxBodyBytes, code) => {
    const outcome = await one(`${upstream.url}${path}`, { maxBodyBytes });
    expect(outcome).toMatchObject({ ok: false, attempts: 1, error: { code } });
  });

  it('accepts a body of exactly maxBodyBytes', async () => {
    const outcome = await one(`${upstream.url}exact?size=5000`, {
      maxBodyBytes: 5_000,
      transform: { name: 'raw' },
    });
    // The pool's `raw`, run inline: these bytes are not labelled text, so they come back base64.
    expect(outcome).toMatchObject({ ok: true, value: { encoding: 'base64', status: 200 } });
    const value = outcome.ok ? (outcome.value as { body: string }) : { body: '' };
    expect(Buffer.from(value.body, 'base64').length).toBe(5_000);
  });

  it.each(['gzip', 'deflate', 'br'])('decodes a %s body', async (encoding) => {
    const outcome = await one(`${upstream.url}item/7?encoding=${encoding}`);
    expect(outcome).toMatchObject({ ok: true, value: { id: 7 } });
  });

  it.each([
    ['a HEAD of a br resource', { url: 'head-br?encoding=br', method: 'HEAD' }],
    ['a HEAD of a gzip resource', { url: 'head-gzip?encoding=gzip', method: 'HEAD' }],
    ['a 204 labelled br', { url: 'none?status=204&encoding=br' }],
    ['a HEAD whose content-length is over the limit', { url: 'head-big?size=2000', method: 'HEAD' }],
  ])('succeeds on %s: no body follows, so nothing is decoded or counted', async (_name, item) => {
    const outcome = await one(
      { ...item, url: `${upstream.url}${item.url}` },
      { maxBodyBytes: 1_000, retries: { maxAttempts: 1 }, transform: { name: 'raw' } },
    );
    expect(outcome).toMatchObject({ ok: true, value: { body: '' } });
  });

  it('counts the limit after decompression', async () => {
    // ~1 KB of JSON compresses to far less: the decoded size is what counts
    const outcome = await one(`${upstream.url}item/8?encoding=gzip`, { maxBodyBytes: 500 });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'BODY_TOO_LARGE' } });
  });
});

describe('transforms', () => {
  it('parses JSON with auto, keeps HTML as text, and decodes a declared charset (the pool built-ins, inline)', async () => {
    expect(await one(`${upstream.url}item/3`)).toMatchObject({ ok: true, value: { id: 3 } });
    const html = await one(`${upstream.url}html`);
    expect(html).toMatchObject({ ok: true, value: { encoding: 'text', charset: 'utf-8' } });
    expect(html.ok && (html.value as { body: string }).body).toContain('<h1>Héllo</h1>');
    expect(await one(`${upstream.url}latin1`)).toMatchObject({
      ok: true,
      value: { encoding: 'text', charset: 'iso-8859-1', body: 'café crème\n' },
    });
  });

  it("gives the same values without a pool as the pool's worker threads give (auto, json, raw, digest)", async () => {
    // inlineMaxBodyBytes 0: every body goes to a worker and its full transform, not the inline shortcut.
    const pool = createTransformPool({ threads: 1, inlineMaxBodyBytes: 0 });
    try {
      for (const name of ['auto', 'json', 'raw', 'digest']) {
        for (const path of ['item/5', 'html', 'latin1']) {
          const url = `${upstream.url}${path}`;
          const spec = { transform: { name } };
          const inWorker = await one(url, spec, { transformRunner: pool.run });
          const inline = await one(url, spec);
          expect(inline.ok).toBe(inWorker.ok);
          if (inline.ok && inWorker.ok) expect(inline.value).toEqual(inWorker.value);
          if (!inline.ok && !inWorker.ok && !inline.pending && !inWorker.pending) {
            expect(inline.error).toEqual(inWorker.error);
          }
        }
      }
      expect(pool.stats().pooled).toBeGreaterThan(0);
    } finally {
      await pool.close();
    }
  });

  it('records TRANSFORM_ERROR for a JSON body that does not parse', async () => {
    const outcome = await one(`${upstream.url}broken-json`, { transform: { name: 'json' } });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'TRANSFORM_ERROR' } });
  });

  it('hands the runner a transferable body and maps its failure to a failed outcome', async () => {
    const seen: FetchedResponse[] = [];
    const runner: TransformRunner = async (response, spec) => {
      seen.push(response);
      if (spec.name === 'explode') return { ok: false, code: 'TRANSFORM_CRASHED', message: 'worker died' };
      return { ok: true, value: JSON.parse(Buffer.from(response.body).toString('utf8')).id };
    };
    const good = await one(
      `${upstream.url}item/42`,
      { transform: { name: 'ids' } },
      { transformRunner: runner },
    );
    expect(good).toMatchObject({ ok: true, value: 42 });
    const body = seen[0]?.body;
    expect(body?.byteLength).toBe(body?.buffer.byteLength);
    expect(seen[0]).toMatchObject({ status: 200, headers: { 'content-type': 'application/json' } });
    const bad = await one(
      `${upstream.url}item/43`,
      { transform: { name: 'explode' } },
      { transformRunner: runner },
    );
    expect(bad).toMatchObject({ ok: false, error: { code: 'TRANSFORM_CRASHED', message: 'worker died' } });
  });

  it('names a transform the inline default cannot run', async () => {
    const outcome = await one(`${upstream.url}item/1`, { transform: { name: 'html-links' } });
    expect(outcome).toMatchObject({ ok: false, error: { code: 'TRANSFORM_ERROR' } });
  });
});
